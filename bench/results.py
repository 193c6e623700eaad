"""docs/results.md, assembled from the sections the benches write.

Every bench writes its own section, ``docs/results/<name>.md``, through :class:`Section`:
its tables and sentences are formatted from what that run measured, and its first line says
which command wrote it, on what machine, when, and how long it took. This script joins the
sections in a fixed order into ``docs/results.md``::

    python bench/results.py            # after any bench; `make bench` runs it last

A section a bench has not written yet is listed as missing, so the page never shows a
number no run produced. Edit the benches, never the page.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SECTIONS = DOCS / "results"
FIGURES = DOCS / "figures"
PAGE = DOCS / "results.md"

#: Section files in page order, with the command that writes each.
ORDER = [
    ("golden_speed", "python bench/golden_speed.py"),
    ("amaranth_speed", "python bench/amaranth_speed.py"),
    ("accelerator", "python bench/accelerator.py"),
    ("network_run", "python bench/network_run.py"),
    ("accuracy_sweep", "python bench/accuracy_sweep.py"),
    ("cluster", "python bench/cluster_sweep.py"),
    ("quant_ptq", "python bench/quant_figures.py"),
    ("quant_qat", "python bench/quant_figures.py --qat-epochs 10 --skip-ptq"),
    ("residual", "python bench/residual_figures.py"),
    ("brevitas", "python bench/brevitas_compare.py"),
    ("fpga_cost", "python bench/fpga_cost.py"),
    ("fpga_pareto", "python bench/fpga_pareto.py"),
    ("fpga_builds", "python bench/fpga_builds.py"),
    ("explore", "python bench/explore_speed.py"),
    ("scalesim", "python bench/scalesim_compare.py"),
]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: OS, CPU model and count, Python."""
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, {cpu_model()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command_line() -> str:
    """How this process was started, relative to the repository (``python bench/x.py ...``)."""
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(ROOT):
        script = script.relative_to(ROOT)
    return shlex.join(["python", str(script), *sys.argv[1:]])


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def oasa_json(*args: str) -> dict:
    """Run ``oasa ARGS --json`` (the command installed next to this Python) and return the
    JSON result it prints; its report (stderr) is passed through. A failure raises
    ``SystemExit`` with the command's exit code."""
    exe = Path(sys.executable).with_name("oasa")
    print("$ oasa " + shlex.join(args), flush=True)
    proc = subprocess.run(
        [str(exe), *args, "--json"], stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode:
        print(proc.stdout, file=sys.stderr)
        raise SystemExit(proc.returncode)
    return json.loads(proc.stdout)


def digits_data_file(out_dir: Path) -> str:
    """The digits split written as a user's ``--data`` file (x_train, y_train, x_test,
    y_test), for benches that run commands on models from outside."""
    import numpy as np

    from oasa.quant.data import digits_split

    s = digits_split()
    path = Path(out_dir) / "digits_data.npz"
    np.savez(path, x_train=s.x_train, y_train=s.y_train, x_test=s.x_test, y_test=s.y_test)
    return str(path)


def md_table(header: list[str], rows: list[list[object]]) -> list[str]:
    """A Markdown table; cells are written with ``str`` (format them before)."""

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|")

    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows),
    ]


class Section:
    """One bench's section of the results page.

    Create it when the bench starts (it notes the time and the machine's load), add lines,
    tables and figures, then :meth:`write` it.
    """

    def __init__(self, name: str, title: str, *, command: str | None = None) -> None:
        self.name = name
        self.title = title
        self.command = command or command_line()
        self.started = time.perf_counter()
        self.load = load_average()
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def para(self, text: str) -> None:
        self.lines.extend(["", text, ""] if self.lines and self.lines[-1] else [text, ""])

    def table(self, header: list[str], rows: list[list[object]]) -> None:
        if self.lines and self.lines[-1]:
            self.lines.append("")
        self.lines.extend([*md_table(header, rows), ""])

    def figure(self, path: Path, alt: str) -> None:
        rel = Path(os.path.relpath(path, DOCS)).as_posix()
        self.para(f"![{alt}]({rel})")

    def text(self) -> str:
        took = time.perf_counter() - self.started
        load = "" if self.load != self.load else f"; load average {self.load:.1f} at the start"
        head = [
            f"## {self.title}",
            "",
            f"*Written by `{self.command}` on {now()}, on {machine()}{load}; the run took "
            f"{duration(took)}.*",
            "",
        ]
        body = list(self.lines)
        while body and not body[-1]:
            body.pop()
        return "\n".join([*head, *body]) + "\n"

    def write(self) -> Path:
        SECTIONS.mkdir(parents=True, exist_ok=True)
        path = SECTIONS / f"{self.name}.md"
        tmp = path.with_suffix(".md.part")
        tmp.write_text(self.text())
        tmp.replace(path)
        print(f"wrote {path.relative_to(ROOT)}")
        return path


def assemble() -> Path:
    """Join the sections into docs/results.md."""
    known = {name for name, _ in ORDER}
    extra = sorted(p.stem for p in SECTIONS.glob("*.md") if p.stem not in known)
    parts = [
        "# Results",
        "",
        "Every number and plot on this page comes from a bench run: each section is written",
        "by the command named under its title, which also records the machine, the date, the",
        "load on the machine when it started and how long it ran. `make bench` runs the benches",
        "that take minutes and then `python bench/results.py`, which joins the sections (kept in",
        "`docs/results/`) into this page; `make bench-long` runs the long ones (QAT, the full",
        "FPGA builds). A section that ran a reduced configuration says which. Edit the",
        "benches, never this page.",
        "",
        f"Page assembled by `python bench/results.py` on {now()}, on {machine()}.",
        "",
    ]
    missing = []
    for name in [n for n, _ in ORDER] + extra:
        path = SECTIONS / f"{name}.md"
        if not path.exists():
            missing.append(name)
            continue
        parts.extend([path.read_text().rstrip("\n"), ""])
    if missing:
        commands = dict(ORDER)
        parts.extend(["## Not measured yet", ""])
        parts.extend(f"- `{n}`: run `{commands.get(n, n)}`" for n in missing)
        parts.append("")
    tmp = PAGE.with_suffix(".md.part")
    tmp.write_text("\n".join(parts))
    tmp.replace(PAGE)
    print(f"wrote {PAGE.relative_to(ROOT)} ({len(ORDER) - len(missing)} of {len(ORDER)} sections)")
    return PAGE


if __name__ == "__main__":
    assemble()
