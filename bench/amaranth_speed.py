"""Amaranth-simulator backend: simulated cycles per second for ArrayCore GEMMs."""

from __future__ import annotations

import time

import numpy as np

from oasa.config import ArrayConfig
from oasa.sim.backends.amaranth_core import run_core_gemm


def main() -> None:
    print(f"{'array':<6} {'M x K x N':<14} {'cycles':>7} {'seconds':>8} {'cycles/s':>9}")
    rng = np.random.default_rng(0)
    for rows, cols, (m, k, n) in [(4, 4, (16, 64, 16)), (8, 8, (16, 64, 16)), (8, 8, (64, 64, 64))]:
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


if __name__ == "__main__":
    main()
