"""Amaranth-simulator backend: simulated cycles per second for ArrayCore GEMMs.

Prints the table and writes its section of docs/results.md
(``docs/results/amaranth_speed.md``).
"""

from __future__ import annotations

import time

import numpy as np
from results import Section

from oasa.config import ArrayConfig
from oasa.sim.backends.amaranth_core import run_core_gemm

CASES = [(4, 4, (16, 64, 16)), (8, 8, (16, 64, 16)), (8, 8, (64, 64, 64))]


def main() -> None:
    section = Section("amaranth_speed", "Amaranth simulator speed")
    print(f"{'array':<6} {'M x K x N':<14} {'cycles':>7} {'seconds':>8} {'cycles/s':>9}")
    rng = np.random.default_rng(0)
    rows_out = []
    for rows, cols, (m, k, n) in CASES:
        cfg = ArrayConfig(rows=rows, cols=cols)
        x = rng.integers(0, 16, (m, k))
        w = rng.integers(-8, 8, (k, n))
        t = time.perf_counter()
        r = run_core_gemm(x, w, cfg=cfg)
        secs = time.perf_counter() - t
        print(
            f"{rows}x{cols:<4} {f'{m}x{k}x{n}':<14} {r.cycles:>7} {secs:8.2f} "
            f"{r.cycles / secs:9.0f}"
        )
        rows_out.append(
            [f"{rows} x {cols}", f"{m} x {k} x {n}", f"{r.cycles:,}", f"{secs:.2f}",
             f"{r.cycles / secs:,.0f}"]
        )  # fmt: skip
    section.para(
        "The array core (PEs and output stage, streams in and rows out) on Amaranth's own "
        "simulator (pure Python, no external tools), random 4-bit operands, one run each."
    )
    section.table(["array", "M x K x N", "cycles", "seconds", "cycles/s"], rows_out)
    section.write()


if __name__ == "__main__":
    main()
