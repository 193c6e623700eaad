"""An independent plain-Python statement of the arithmetic contract (DESIGN.md section 2).

Written from the contract text, not from the golden model: one dot product at a time, one
term at a time, Python integers only. Tests compare the golden model and the RTL with it.
"""

from __future__ import annotations

import numpy as np


def dot(xs, ws, acc_bits: int, mode: str) -> tuple[int, bool, bool]:
    """(P-bit result, some partial sum left the range, the exact sum is out of range)."""
    lo, hi = -(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1
    s, exact, flag = 0, 0, False
    for a, b in zip(xs, ws, strict=True):
        t = s + int(a) * int(b)
        exact += int(a) * int(b)
        if t < lo or t > hi:
            flag = True
        s = (t - lo) % 2**acc_bits + lo if mode == "wrap" else min(max(t, lo), hi)
    return s, flag, not lo <= exact <= hi


def gemm(x, w, acc_bits: int, mode: str):
    m, n = len(x), len(w[0])
    acc = np.zeros((m, n), dtype=np.int64)
    ovf = np.zeros((m, n), dtype=bool)
    fin = np.zeros((m, n), dtype=bool)
    for i in range(m):
        for j in range(n):
            acc[i, j], ovf[i, j], fin[i, j] = dot(x[i], [row[j] for row in w], acc_bits, mode)
    return acc, ovf, fin


def requantize(acc: int, bias: int, mult: int, shift: int, relu: bool, lo: int, hi: int) -> int:
    """Output stage on one value, with exact rational rounding (half up)."""
    import math
    from fractions import Fraction

    r = math.floor(Fraction((acc + bias) * mult, 2**shift) + Fraction(1, 2))
    if relu:
        r = max(r, 0)
    return min(max(r, lo), hi)


def random_operands(rng: np.random.Generator, cfg, m: int, k: int, n: int):
    """Operands over the whole legal range, with the extreme values made common."""
    x = rng.integers(cfg.act_min, cfg.act_max + 1, (m, k))
    w = rng.integers(cfg.weight_min, cfg.weight_max + 1, (k, n))
    x[rng.random((m, k)) < 0.2] = cfg.act_max
    w[rng.random((k, n)) < 0.1] = cfg.weight_min
    return x, w
