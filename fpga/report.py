"""What a build used and how fast it runs, read from nextpnr's report and log.

nextpnr writes a JSON report (``--report``: utilization per cell type, Fmax per clock);
the log (``top.tim``) has the same figures as text and is the fallback when the JSON is
missing (e.g. placement failed after printing utilisation). Resource names differ per
family; :data:`SUMMARY_CELLS` maps them onto LUT / FF / BRAM / DSP columns.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from oasa.errors import ToolError

__all__ = ["BuildReport", "ReportError", "parse_nextpnr_json", "parse_nextpnr_log", "read_report"]

#: Report columns -> the cell types that count towards them, per family.
SUMMARY_CELLS: dict[str, dict[str, tuple[str, ...]]] = {
    "ice40": {
        "LUT": ("ICESTORM_LC",),
        "BRAM": ("ICESTORM_RAM",),
        "DSP": ("ICESTORM_DSP",),
    },
    "ecp5": {
        "LUT": ("TRELLIS_COMB",),
        "FF": ("TRELLIS_FF",),
        "BRAM": ("DP16KD",),
        "DSP": ("MULT18X18D",),
    },
}


class ReportError(ToolError):
    """A build left no report that can be read."""


@dataclass
class BuildReport:
    """The figures of one build. ``fmax_mhz`` is after routing; ``target_mhz`` the clock
    the design was constrained to (met when ``fmax_mhz >= target_mhz``)."""

    board: str
    family: str
    config: dict
    target_mhz: float
    fmax_mhz: float | None
    used: dict[str, int]
    available: dict[str, int]
    cells: dict[str, tuple[int, int]] = field(default_factory=dict)
    routed: bool = True
    bitstream: str | None = None
    seconds: float | None = None
    multiplier: str = "lut"
    seed: int = 1

    @property
    def timing_met(self) -> bool:
        return self.fmax_mhz is not None and self.fmax_mhz >= self.target_mhz

    @property
    def pes(self) -> int:
        return int(self.config["rows"]) * int(self.config["cols"])

    def utilization(self, what: str) -> float:
        return self.used.get(what, 0) / self.available[what] if self.available.get(what) else 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["cells"] = {k: list(v) for k, v in self.cells.items()}
        d["timing_met"] = self.timing_met
        return d

    @classmethod
    def from_json(cls, d: dict) -> BuildReport:
        d = dict(d)
        d.pop("timing_met", None)
        d["cells"] = {k: tuple(v) for k, v in d.get("cells", {}).items()}
        return cls(**d)

    def table(self) -> str:
        """A few aligned lines for the terminal."""
        rows = []
        for what in ("LUT", "FF", "BRAM", "DSP"):
            if what in self.available:
                used, avail = self.used.get(what, 0), self.available[what]
                name = "LC" if what == "LUT" and self.family == "ice40" else what
                rows.append(f"  {name:<5} {used:>7,} / {avail:>7,}  {100 * used / avail:5.1f} %")
        fmax = f"{self.fmax_mhz:.1f} MHz" if self.fmax_mhz is not None else "n/a"
        verdict = "met" if self.timing_met else "NOT met"
        rows.append(f"  Fmax  {fmax} against a {self.target_mhz:g} MHz target: timing {verdict}")
        return "\n".join(rows)


def _summarize(family: str, cells: dict[str, tuple[int, int]]) -> tuple[dict, dict]:
    used, available = {}, {}
    for what, names in SUMMARY_CELLS[family].items():
        present = [cells[n] for n in names if n in cells]
        if present:
            used[what] = sum(u for u, _ in present)
            available[what] = sum(a for _, a in present)
    return used, available


def parse_nextpnr_json(text: str) -> tuple[dict[str, tuple[int, int]], dict[str, float]]:
    """(cells: type -> (used, available), fmax: clock -> MHz) from nextpnr ``--report``."""
    try:
        data = json.loads(text)
        cells = {k: (int(v["used"]), int(v["available"])) for k, v in data["utilization"].items()}
        fmax = {k: float(v["achieved"]) for k, v in data.get("fmax", {}).items()}
    except (ValueError, KeyError, TypeError) as e:
        raise ReportError(f"not a nextpnr report: {e}") from None
    return cells, fmax


_UTIL = re.compile(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%")
_FMAX = re.compile(r"Info: Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz")


def parse_nextpnr_log(text: str) -> tuple[dict[str, tuple[int, int]], dict[str, float]]:
    """The same from nextpnr's log: the last utilisation block and the last Fmax per
    clock (the log prints an estimate after placement, then the routed figure)."""
    cells: dict[str, tuple[int, int]] = {}
    blocks = text.split("Device utilisation:")
    if len(blocks) < 2:
        raise ReportError("no 'Device utilisation' block in the nextpnr log")
    for line in blocks[-1].splitlines()[1:]:
        mt = _UTIL.search(line)
        if not mt:
            if cells:
                break
            continue
        cells[mt.group(1)] = (int(mt.group(2)), int(mt.group(3)))
    fmax: dict[str, float] = {}
    for mt in _FMAX.finditer(text):
        fmax[mt.group(1)] = float(mt.group(2))
    return cells, fmax


def read_report(
    build_dir: Path, *, board: str, family: str, config: dict, target_mhz: float, name: str = "top"
) -> BuildReport:
    """The report of the build in ``build_dir``: the JSON when nextpnr wrote one, else
    the log. Fmax is that of the design clock (the fastest-constrained clock)."""
    build_dir = Path(build_dir)
    js, log = build_dir / f"{name}.report.json", build_dir / f"{name}.tim"
    if js.exists():
        cells, fmax = parse_nextpnr_json(js.read_text())
        routed = True
    elif log.exists():
        cells, fmax = parse_nextpnr_log(log.read_text())
        routed = False
    else:
        raise ReportError(f"no nextpnr report or log in {build_dir}")
    used, available = _summarize(family, cells)
    achieved = _design_clock_fmax(fmax)
    bit = next(
        (p for p in (build_dir / f"{name}.bin", build_dir / f"{name}.bit") if p.exists()), None
    )
    return BuildReport(
        board=board,
        family=family,
        config=config,
        target_mhz=target_mhz,
        fmax_mhz=achieved,
        used=used,
        available=available,
        cells=cells,
        routed=routed and bit is not None,
        bitstream=str(bit) if bit else None,
    )


def _design_clock_fmax(fmax: dict[str, float]) -> float | None:
    """The board tops have one clock (the PLL's output); with several, the slowest limits."""
    return min(fmax.values()) if fmax else None
