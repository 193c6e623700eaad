"""Golden model throughput: a 256 x 1024 x 256 GEMM with both flags, in M MAC/s.

The default P = 16 on random full-range 4-bit operands, and narrower P: there the
positive/negative bound clears fewer outputs and more of them need a prefix scan. Prints
the table and writes its section of docs/results.md (``docs/results/golden_speed.md``).
"""

from __future__ import annotations

import time

import numpy as np
from results import Section

from oasa.config import ArrayConfig
from oasa.sim import golden

M, K, N = 256, 1024, 256
WIDTHS = (16, 14, 12)
MODES = ("wrap", "saturate")


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    section = Section("golden_speed", "Golden model speed")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 16, (M, K))
    w = rng.integers(-8, 8, (K, N))
    macs = M * K * N
    print(f"golden.gemm, {M} x {K} x {N}, random 4-bit operands, best of 3")
    print(f"{'P':>3} {'mode':<9} {'time ms':>8} {'M MAC/s':>8} {'flagged':>8} {'bound>P':>8}")
    speed: dict[tuple[int, str], float] = {}
    scanned: dict[int, int] = {}
    flagged: dict[tuple[int, str], int] = {}
    for p in WIDTHS:
        for mode in MODES:
            cfg = ArrayConfig(acc_bits=p, overflow=mode)
            secs = best_of(lambda cfg=cfg: golden.gemm(x, w, cfg=cfg))
            r = golden.gemm(x, w, cfg=cfg)
            lo, hi = golden.partial_sum_bounds(x, w, cfg=cfg)
            scanned[p] = int(((hi > cfg.acc_max) | (lo < cfg.acc_min)).sum())
            speed[p, mode] = macs / secs / 1e6
            flagged[p, mode] = int(r.overflow.sum())
            print(
                f"{p:>3} {mode:<9} {secs * 1e3:8.1f} {speed[p, mode]:8.0f} "
                f"{flagged[p, mode]:>8} {scanned[p]:>8}"
            )

    outputs = M * N
    section.para(
        f"`oasa.sim.golden.gemm` on a {M} x {K} x {N} GEMM of random full-range 4-bit "
        "operands (unsigned activations, signed weights), results and both flags, best of 3. "
        "*scanned* counts the outputs whose positive and negative partial-sum bounds leave "
        "the P-bit range: only those need a prefix scan over K; the rest are settled by two "
        f"more matrix products. {outputs:,} outputs in all."
    )
    section.table(
        ["P", "wrap (M MAC/s)", "saturate (M MAC/s)", "scanned outputs", "flagged (wrap)"],
        [
            [
                p,
                f"{speed[p, 'wrap']:,.0f}",
                f"{speed[p, 'saturate']:,.0f}",
                f"{scanned[p]:,}",
                f"{flagged[p, 'wrap']:,}",
            ]
            for p in WIDTHS
        ],
    )
    section.write()


if __name__ == "__main__":
    main()
