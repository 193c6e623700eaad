"""Golden model throughput: a 256 x 1024 x 256 GEMM with both flags, in M MAC/s.

Targets (issue 3): >= 500 M MAC/s in wrap mode and >= 300 M MAC/s in saturate mode, at
the default P = 16 on random full-range 4-bit operands. Narrower P is reported too: there
the positive/negative bound clears fewer outputs and more of them need a prefix scan.
"""

from __future__ import annotations

import time

import numpy as np

from oasa.config import ArrayConfig
from oasa.sim import golden


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    m, k, n = 256, 1024, 256
    rng = np.random.default_rng(0)
    x = rng.integers(0, 16, (m, k))
    w = rng.integers(-8, 8, (k, n))
    macs = m * k * n
    print(f"golden.gemm, {m} x {k} x {n}, random 4-bit operands, best of 3")
    print(f"{'P':>3} {'mode':<9} {'time ms':>8} {'M MAC/s':>8} {'flagged':>8} {'bound>P':>8}")
    for p in (16, 14, 12):
        for mode in ("wrap", "saturate"):
            cfg = ArrayConfig(acc_bits=p, overflow=mode)
            secs = best_of(lambda cfg=cfg: golden.gemm(x, w, cfg=cfg))
            r = golden.gemm(x, w, cfg=cfg)
            lo, hi = golden.partial_sum_bounds(x, w, cfg=cfg)
            scanned = int(((hi > cfg.acc_max) | (lo < cfg.acc_min)).sum())
            print(
                f"{p:>3} {mode:<9} {secs * 1e3:8.1f} {macs / secs / 1e6:8.0f} "
                f"{int(r.overflow.sum()):>8} {scanned:>8}"
            )


if __name__ == "__main__":
    main()
