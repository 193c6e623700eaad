"""Pytest side of the benches: Verilog generation, cached builds, running a bench.

A build is keyed by a hash of everything that affects the simulator binary: the Verilog
text, the simulator, its flags, waveform tracing and the tool versions. The key names
the build folder (``build/cocotb/<sim>/<tag>_<hash>``), and a stamp written after a
successful build makes the next run skip it. A file lock per build folder lets two
pytest-xdist workers that need the same build (e.g. the array and the overflow bench on
one configuration) build it once, and builds of different configurations run in
parallel, one per worker.

Verilator: the run-time library objects (verilated.o, verilated_vpi.o, ...) do not
depend on the design; they are compiled once per tool version into
``build/cocotb/verilator/runtime-<key>`` and copied into every new build, which saves
about 14 s of compiling per build. Only the design and cocotb's ``verilator.cpp``
(which includes the design's header) are compiled per build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import cocotb_tools.runner as cocotb_runner
from cocotb_tools.runner import get_runner

from oasa.hw.verilog import to_verilog
from oasa.sim.backends.verilator_tool import AMARANTH_LINT_WAIVERS, verilator_bin_dir, verilator_env

__all__ = [
    "BUILD_ROOT",
    "SIMULATORS",
    "BenchFailed",
    "Build",
    "Outcome",
    "build_component",
    "run_bench",
    "sim_unavailable",
]

REPO = Path(__file__).resolve().parents[3]
BUILD_ROOT = Path(os.environ.get("OASA_COCOTB_BUILD", REPO / "build" / "cocotb"))
SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")
# Verilator's runtime objects shared between builds (compiled once per tool version).
_RUNTIME_OBJS = ("verilated", "verilated_dpi", "verilated_threads", "verilated_vpi")
_SEED_SCRIPT = Path(__file__).with_name("seed_runtime.py")
# Make variables of every Verilator build. The design's C++ is compiled unoptimized and
# as one file: the benches spend their time in Python, so optimization buys little at
# run time, while gcc -O1 on an 8 x 8 array took minutes (-O0: about 5 s). One file
# (VM_PARALLEL_BUILDS=0) is also the least total compile work; besides, the PyPI wheel's
# verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks its split (parallel) build
# of larger designs ("Vtop__pch.h.fast: linker input file not found"), so it is set too.
_OPT = ("OPT_FAST=-O0", "OPT_SLOW=-O0", "VM_PARALLEL_BUILDS=0", "CFG_CXXFLAGS_PCH_I=-include")


class BenchFailed(AssertionError):
    """A bench reported failing cocotb tests (or the simulator crashed)."""


def sim_unavailable(sim: str) -> str | None:
    """Why ``sim`` cannot run here, or None when it can."""
    if sim == "verilator":
        try:
            verilator_bin_dir()
        except Exception as exc:
            return str(exc)
        if shutil.which("make") is None or shutil.which(os.environ.get("CXX", "c++")) is None:
            return "Verilator needs make and a C++ compiler on PATH"
        return None
    if sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            return "Icarus Verilog is not installed (apt-get install iverilog)"
        return None
    return f"unknown simulator {sim!r}"


def build_jobs() -> int:
    """Parallel compile jobs of one build: 1 under pytest-xdist (the workers already
    build in parallel), else 2; ``OASA_BUILD_JOBS`` overrides."""
    if "OASA_BUILD_JOBS" in os.environ:
        return max(1, int(os.environ["OASA_BUILD_JOBS"]))
    return 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


def waves_requested() -> bool:
    """cocotb's ``WAVES=1`` asks for a waveform; it is part of the build key."""
    return os.environ.get("WAVES", "0") not in ("", "0")


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tool_versions(sim: str) -> str:
    import cocotb

    parts = [f"cocotb {cocotb.__version__}", f"python {sys.version.split()[0]}"]
    if sim == "verilator":
        root = verilator_bin_dir().parent
        cfg_h = root / "include" / "verilated_config.h"
        parts.append(f"verilator {root} {cfg_h.stat().st_mtime_ns if cfg_h.exists() else 0}")
        parts.append(" ".join(_OPT))
    else:
        out = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, check=False)
        parts.append(out.stdout.splitlines()[0] if out.stdout else "iverilog")
    return "\n".join(parts)


def _verilator_runtime_key(waves: bool) -> str:
    h = hashlib.sha256(_tool_versions("verilator").encode())
    h.update(b"waves" if waves else b"nowaves")
    cxx = subprocess.run(
        [os.environ.get("CXX", "c++"), "--version"], capture_output=True, text=True, check=False
    )
    h.update(cxx.stdout.encode())
    return h.hexdigest()[:12]


class _CachedVerilator(cocotb_runner.Verilator):
    """cocotb's Verilator runner with two changes to its build commands: the make job
    count is ours, and the design-independent runtime objects come from a shared cache
    (copied in after Verilator wrote the makefile, so make sees them up to date)."""

    runtime_dir: Path | None = None
    jobs: int = 1

    def _build_command(self):
        cmds = super()._build_command()
        verilate, make = cmds
        j = make.index("-j")
        make = [*make[: j + 1], str(self.jobs), *make[j + 2 :], *_OPT]
        if self.runtime_dir is None:
            return [verilate, make]
        seed = [sys.executable, str(_SEED_SCRIPT), str(self.runtime_dir), str(self.build_dir)]
        return [verilate, seed, make]


def _ensure_verilator_runtime(waves: bool) -> Path:
    """Compile the runtime objects once (with a one-register design) and keep them."""
    key = _verilator_runtime_key(waves)
    runtime_dir = BUILD_ROOT / "verilator" / f"runtime-{key}"
    if (runtime_dir / "verilated.o").exists():
        return runtime_dir
    with _locked(runtime_dir.with_suffix(".lock")):
        if (runtime_dir / "verilated.o").exists():
            return runtime_dir
        scratch = runtime_dir.with_name(runtime_dir.name + ".tmp")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        src = scratch / "oasa_runtime_seed.v"
        src.write_text(
            "module oasa_runtime_seed(input clk, input rst, input d, output reg q);\n"
            "  always @(posedge clk) q <= rst ? 1'b0 : d;\nendmodule\n"
        )
        runner = _CachedVerilator()
        runner.jobs = max(2, build_jobs())
        _run_build(runner, src, "oasa_runtime_seed", scratch, waves)
        out = runtime_dir.with_name(runtime_dir.name + ".new")
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        for stem in _RUNTIME_OBJS:
            for ext in (".o", ".d"):
                shutil.copy2(scratch / f"{stem}{ext}", out / f"{stem}{ext}")
        os.replace(out, runtime_dir)
        shutil.rmtree(scratch, ignore_errors=True)
    return runtime_dir


def _run_build(runner, src: Path, top: str, build_dir: Path, waves: bool) -> None:
    log = build_dir / "build.log"
    build_args = list(AMARANTH_LINT_WAIVERS) if isinstance(runner, cocotb_runner.Verilator) else []
    env_backup = dict(os.environ)
    os.environ.update(verilator_env())
    try:
        runner.build(
            sources=[src],
            hdl_toplevel=top,
            build_dir=build_dir,
            build_args=build_args,
            timescale=TIMESCALE,
            waves=waves,
            always=True,
            log_file=log,
        )
    except (RuntimeError, SystemExit) as exc:
        text = log.read_text(errors="replace") if log.exists() else ""
        errors = [ln for ln in text.splitlines() if "%Error" in ln or "error" in ln.lower()]
        detail = "\n".join(errors[:10]) or "\n".join(text.splitlines()[-20:])
        raise RuntimeError(
            f"{runner.__class__.__name__} build of {top} failed ({log}):\n{detail}"
        ) from exc
    finally:
        os.environ.clear()
        os.environ.update(env_backup)


@dataclass(frozen=True)
class Build:
    """A simulator build of one toplevel, ready to run benches."""

    sim: str
    top: str
    tag: str
    build_dir: Path
    key: str
    waves: bool
    built_now: bool
    seconds: float


def build_component(component, *, top: str, tag: str, sim: str) -> Build:
    """Generate ``component``'s Verilog as module ``top`` and build it for ``sim``,
    reusing an earlier build with the same key."""
    verilog = to_verilog(component, top)
    waves = waves_requested()
    h = hashlib.sha256()
    for part in (verilog, sim, top, repr(AMARANTH_LINT_WAIVERS), repr(TIMESCALE), str(waves)):
        h.update(part.encode())
        h.update(b"\0")
    h.update(_tool_versions(sim).encode())
    key = h.hexdigest()[:16]
    build_dir = BUILD_ROOT / sim / f"{tag}_{key}"
    stamp = build_dir / "oasa-build.json"
    t0 = time.monotonic()
    if stamp.exists():
        return Build(sim, top, tag, build_dir, key, waves, False, 0.0)
    runtime = _ensure_verilator_runtime(waves) if sim == "verilator" else None
    with _locked(build_dir.with_suffix(".lock")):
        if stamp.exists():
            return Build(sim, top, tag, build_dir, key, waves, False, time.monotonic() - t0)
        shutil.rmtree(build_dir, ignore_errors=True)
        build_dir.mkdir(parents=True)
        src = build_dir / f"{top}.v"
        src.write_text(verilog)
        if sim == "verilator":
            runner = _CachedVerilator()
            runner.runtime_dir = runtime
            runner.jobs = build_jobs()
        else:
            runner = get_runner(sim)
        t1 = time.monotonic()
        _run_build(runner, src, top, build_dir, waves)
        seconds = time.monotonic() - t1
        stamp.write_text(json.dumps({"key": key, "top": top, "tag": tag, "seconds": seconds}))
    return Build(sim, top, tag, build_dir, key, waves, True, seconds)


@dataclass
class Outcome:
    """What one bench run reported, per cocotb test."""

    results: dict[str, str] = field(default_factory=dict)  # name -> passed/failed/skipped
    messages: dict[str, str] = field(default_factory=dict)
    log: Path | None = None
    waves: Path | None = None
    sim_exit: int = 0

    @property
    def failed(self) -> list[str]:
        return [n for n, r in self.results.items() if r == "failed"]

    @property
    def passed(self) -> list[str]:
        return [n for n, r in self.results.items() if r == "passed"]


def _parse_results(path: Path) -> Outcome:
    out = Outcome()
    if not path.exists():
        return out
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        if case.find("failure") is not None or case.find("error") is not None:
            node = case.find("failure") if case.find("failure") is not None else case.find("error")
            out.results[name] = "failed"
            out.messages[name] = (node.get("message") or node.text or "").strip()
        elif case.find("skipped") is not None:
            out.results[name] = "skipped"
        else:
            out.results[name] = "passed"
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120]


def run_bench(
    build: Build,
    *,
    bench_dir: Path,
    cfg,
    run_name: str,
    module: str = "bench",
    testcase: str | list[str] | None = None,
    options: dict | None = None,
    seed: int | None = None,
    check: bool = True,
) -> Outcome:
    """Run the cocotb module ``bench_dir/module.py`` on ``build``.

    ``cfg`` travels as ``OASA_CFG`` (JSON); ``options`` as ``OASA_BENCH``. The seed is
    ``OASA_SEED`` if set, else ``seed``, else a hash of ``run_name`` without the simulator
    (so reruns repeat, and both simulators see the same stimulus).
    With ``check`` (the default) a failing cocotb test raises :class:`BenchFailed` naming
    the tests, the configuration and the log; without it the :class:`Outcome` is returned
    for the caller to judge (the broken-variant test expects failures).
    """
    __tracebackhide__ = True
    test_dir = BUILD_ROOT / "runs" / build.sim / _safe(run_name)
    shutil.rmtree(test_dir, ignore_errors=True)
    test_dir.mkdir(parents=True)
    log = test_dir / "sim.log"
    results = test_dir / "results.xml"
    if os.environ.get("OASA_SEED"):
        seed = int(os.environ["OASA_SEED"])
    elif seed is None:
        # Same stimulus on every simulator: the seed ignores the simulator's name.
        name = run_name.replace(build.sim, "")
        seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    env = {
        "OASA_CFG": cfg.to_json(),
        "OASA_BENCH": json.dumps(options) if options else os.environ.get("OASA_BENCH", "{}"),
        "OASA_SIM": build.sim,
        "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "INFO"),
    }
    plusargs = []
    waves = None
    if build.waves:
        if build.sim == "icarus":
            waves = test_dir / f"{build.top}.fst"
            plusargs.append(f"+dumpfile_path={waves}")
        else:
            waves = test_dir / "dump.vcd"
    runner = get_runner(build.sim)
    # The simulator's Python gets this process's sys.path as PYTHONPATH: put the bench
    # folder first so ``module`` is the bench of this DUT.
    sys.path.insert(0, str(bench_dir))
    saved_env = dict(os.environ)
    os.environ.update(env)
    try:
        runner.test(
            test_module=module,
            hdl_toplevel=build.top,
            hdl_toplevel_lang="verilog",
            build_dir=build.build_dir,
            test_dir=test_dir,
            testcase=testcase,
            seed=seed,
            extra_env=env,
            plusargs=plusargs,
            waves=build.waves,
            results_xml=str(results),
            log_file=log,
        )
        sim_exit = 0
    except SystemExit as exc:  # the runner exits when a test failed or the simulator died
        sim_exit = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.path.remove(str(bench_dir))
        os.environ.clear()
        os.environ.update(saved_env)
    outcome = _parse_results(results)
    outcome.log = log
    outcome.waves = waves
    outcome.sim_exit = sim_exit
    if check:
        if not outcome.results:
            raise BenchFailed(
                f"{run_name}: no cocotb results (exit {sim_exit}); log {log}:\n{_tail(log)}"
            )
        if outcome.failed or sim_exit:
            lines = [f"{n}: {outcome.messages.get(n, '')[:400]}" for n in outcome.failed]
            raise BenchFailed(
                f"{run_name} ({build.sim}, {cfg.name}, seed {seed}): "
                f"{len(outcome.failed)} of {len(outcome.results)} cocotb test(s) failed; "
                f"log {log}\n" + "\n".join(lines) + "\n--- log tail ---\n" + _tail(log)
            )
    return outcome


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])
