"""Coverage counters of one cocotb test, written as JSON for the pytest session summary.

Each bench test fills a :class:`Coverage` and calls :meth:`Coverage.write` once its checks
passed, so the summary counts only comparisons that were made and agreed. The pytest side
(``tests/cocotb/conftest.py``) reads every record of the session and prints the totals.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

__all__ = ["Coverage"]


class Coverage:
    """Counters for one test.

    ``counts`` holds plain event counts (``dot_products``, ``overflow_events``,
    ``flag_none``, ``flag_transient``, ``flag_final``, ``stage_rows``, ...); ``stalls``
    maps ``"<stream>:<pattern>"`` to the number of paused or back-pressured cycles;
    ``notes`` keeps short strings such as a reason why a case could not be reached.
    """

    def __init__(self, bench: str, test: str, cfg):
        self.bench = bench
        self.test = test
        self.cfg = cfg
        self.counts: Counter = Counter()
        self.stalls: Counter = Counter()
        self.runs: Counter = Counter()  # "<stream>:<pattern>" -> number of runs using it
        self.notes: list[str] = []

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += int(n)

    def flags(self, overflow, final_overflow) -> None:
        """Count the three flag outcomes of compared outputs (golden model's view):
        no overflow, a transient overflow only (final sum in range), a final overflow."""
        ovf = np.asarray(overflow, dtype=bool)
        fin = np.asarray(final_overflow, dtype=bool)
        self.counts["flag_none"] += int((~ovf).sum())
        self.counts["flag_transient"] += int((ovf & ~fin).sum())
        self.counts["flag_final"] += int(fin.sum())
        self.counts["overflow_events"] += int(ovf.sum())

    def stream(self, agent) -> None:
        """Record the pause pattern of a stream agent and how many cycles it stalled."""
        key = f"{agent.name}:{agent.pause_name}"
        self.runs[key] += 1
        stalled = getattr(agent, "paused_cycles", 0) + getattr(agent, "backpressure_cycles", 0)
        self.stalls[key] += int(stalled)
        waited = getattr(agent, "waited_cycles", 0)
        if waited:
            self.stalls[f"{agent.name}:dut-not-ready"] += int(waited)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def record(self) -> dict:
        return {
            "bench": self.bench,
            "test": self.test,
            "sim": os.environ.get("OASA_SIM", "unknown"),
            "cfg": self.cfg.name,
            "cfg_fields": self.cfg.to_dict(),
            "counts": dict(self.counts),
            "stalls": dict(self.stalls),
            "runs": dict(self.runs),
            "notes": self.notes,
        }

    def write(self) -> Path | None:
        """Write the record into ``OASA_COV_DIR`` (no-op when it is not set)."""
        folder = os.environ.get("OASA_COV_DIR")
        if not folder:
            return None
        rec = self.record()
        stem = re.sub(
            r"[^A-Za-z0-9_.-]+", "_", f"{rec['sim']}-{self.bench}-{self.cfg.name}-{self.test}"
        )
        path = Path(folder) / f"{stem}-{os.getpid()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec, sort_keys=True))
        return path
