"""pytest glue for the cocotb benches: the coverage directory, and the coverage summary
printed at the end of the session. Which simulator runs which configuration is
:func:`oasa_tb.matrix.sim_params`, used by every bench's test module.

The summary is printed by the process that reports (the xdist controller): this conftest
must be an initial conftest there, which is why the Makefile names ``tests/cocotb`` among
pytest's arguments. Running ``pytest tests/cocotb/...`` directly also loads it.

The benches' helper package ``oasa_tb`` is importable through pytest's ``pythonpath``
setting (pyproject.toml), which puts ``tests/cocotb`` on ``sys.path``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from pathlib import Path

from oasa_tb.build import BUILD_ROOT, SIMULATORS
from oasa_tb.summary import load_records, summarize

_DURATIONS: dict[str, float] = defaultdict(float)

# Every DUT folder has a ``bench.py`` that only the simulator imports (as ``bench``);
# pytest --doctest-modules would import them all under that one name and clash.
collect_ignore_glob = ["*/bench.py", "oasa_tb/seed_runtime.py", "conftest.py"]


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput") or "PYTEST_XDIST_WORKER" in os.environ


def pytest_configure(config):
    if _is_worker(config):
        return
    # One fresh folder per session, inherited by the xdist workers and the simulators.
    root = BUILD_ROOT / "coverage"
    if root.exists():
        sessions = sorted(root.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in sessions[:-4]:
            shutil.rmtree(old, ignore_errors=True)
    folder = root / f"session-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["OASA_COV_DIR"] = str(folder)


def pytest_runtest_logreport(report):
    if report.when != "call" and not (report.when == "setup" and report.skipped):
        return
    if "tests/cocotb/" not in report.nodeid.replace("\\", "/"):
        return
    for s in SIMULATORS:
        if f"[{s}" in report.nodeid or f"-{s}-" in report.nodeid or f"{s}]" in report.nodeid:
            _DURATIONS[s] += report.duration
            break


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _is_worker(config):
        return
    folder = os.environ.get("OASA_COV_DIR")
    records = load_records(Path(folder)) if folder else []
    if not records:
        return
    terminalreporter.section("cocotb coverage summary")
    for line in summarize(records, dict(_DURATIONS)):
        terminalreporter.write_line(line)
