"""Integer output stages that round where a real-valued QONNX graph rounds.

A QONNX model requantizes with real scales, y = round((acc * s_in * s_w + b) / s_out);
oasa's output stage is integer, floor((acc + B) * m / 2**s + 1/2). The plain choice
(B = round(b / (s_in s_w)), (m, s) = dyadic) moves a rounding step by one accumulator
value wherever rounding the bias crosses it; :func:`match_thresholds` searches the nearby
(B, m, s) that keep every step in place over the accumulator values the layer's weights
can produce, so an imported network predicts as the file does.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from oasa.config import ArrayConfig
from oasa.quant.ptq import QuantError, dyadic
from oasa.sim.certificates import worst_case_partial_sums
from oasa.sim.netfile import Layer, gemm_weight

__all__ = ["MATCH_LEVELS", "match_channel", "match_thresholds"]

#: Output levels up to which the rounding thresholds are matched one by one.
MATCH_LEVELS = 4096


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def match_thresholds(
    layer: Layer, ratio: NDArray, beta: NDArray, out: tuple[int, int]
) -> tuple[int, int, int] | None:
    """Make the layer's integer output stage round where the real-valued QONNX graph
    rounds, for the accumulator values its weights can produce. Returns (channels that
    match at every step, steps that do not match, steps in all).

    QONNX computes y = round((acc * s_in * s_w + b) / s_out) = round((acc + beta) * r);
    the output stage computes floor((acc + B) * m / 2**s + 1/2) with an integer bias B. As
    functions of the integer acc both are staircases, equal iff every step (the smallest
    acc reaching output level k + 1, for k in [lo, hi)) is at the same place inside the
    reachable range [wc_lo, wc_hi] (None: an output of more than MATCH_LEVELS levels,
    left as round(beta) and dyadic(r)). round(beta) and dyadic(r) move a step by one
    accumulator value whenever rounding beta crosses it; then the (B, m, s) nearby that
    keeps the most steps in place is searched: for a given B each step bounds u = 2**s / m
    to an interval, and the point covered by the most intervals is the best u. A step out of
    place changes the output for one accumulator value only.
    """
    lo, hi = out
    cfg = layer.cfg
    if hi - lo > MATCH_LEVELS:
        return None
    wc_lo, wc_hi = worst_case_partial_sums(gemm_weight(layer), cfg=cfg)
    ks = range(lo, hi)
    exact = missed = 0
    for c in range(len(ratio)):
        (m, s, b), bad = match_channel(
            float(ratio[c]), float(beta[c]), ks, int(wc_lo[c]), int(wc_hi[c]), cfg,
            (int(layer.mult[c]), int(layer.shift[c]), int(layer.bias[c])),
        )  # fmt: skip
        layer.mult[c], layer.shift[c], layer.bias[c] = m, s, b
        exact += bad == 0
        missed += bad
    return exact, missed, len(ratio) * len(ks)


def match_channel(
    r: float, beta: float, ks: range, a_lo: int, a_hi: int, cfg: ArrayConfig,
    start: tuple[int, int, int],
) -> tuple[tuple[int, int, int], int]:  # fmt: skip
    """The (m, s, B) whose steps differ from the real ones at the fewest places over
    [a_lo, a_hi] (``start`` unless another does better), and that number."""

    def clamp(t: int) -> int:
        return min(max(t, a_lo), a_hi + 1)

    want = [clamp(math.ceil((k + 0.5) / r - beta)) for k in ks]

    def misses(m: int, s: int, b: int) -> int:
        if not (1 <= m <= cfg.mult_max and 0 <= s <= cfg.shift_max):
            return len(ks) + 1
        if not cfg.bias_min <= b <= cfg.bias_max:
            return len(ks) + 1
        return sum(
            clamp(_ceil_div((2 * k + 1) << s, 2 * m) - b) != t
            for k, t in zip(ks, want, strict=True)
        )

    best, best_misses = start, misses(*start)
    if best_misses == 0:
        return best, 0
    base = math.floor(beta)
    for b in sorted(range(base - 3, base + 5), key=lambda v: abs(v - beta)):
        events = []  # (u, +1 opens / -1 closes) of each step's interval of u = 2**s / m
        for k, t in zip(ks, want, strict=True):
            c = k + 0.5  # the step of level k + 1 stays at t iff t - 1 < c * u - b <= t
            v_lo = t - 1 + b if t > a_lo else -math.inf
            v_hi = t + b if t <= a_hi else math.inf
            u_lo, u_hi = (v_lo / c, v_hi / c) if c > 0 else (v_hi / c, v_lo / c)
            u_lo = max(u_lo, 0.0)
            if u_lo < u_hi:
                events += [(u_lo, 1), (u_hi, -1)]
        events.sort(key=lambda e: (e[0], e[1]))
        cover, top, seg = 0, -1, (0.0, 0.0)
        for i, (u, d) in enumerate(events):
            cover += d
            if d > 0 and cover > top and i + 1 < len(events):
                top, seg = cover, (u, events[i + 1][0])
        u_lo, u_hi = seg
        if not u_lo < u_hi:
            continue
        tries = [min(max(1 / r, u_lo), u_hi)]
        if math.isfinite(u_hi):
            tries.append((u_lo + u_hi) / 2)
        for u in tries:
            try:
                (m,), (s,) = dyadic(np.array([1 / u]), cfg)
            except QuantError:
                continue
            for mm in (int(m), int(m) - 1, int(m) + 1):
                n = misses(mm, int(s), b)
                if n < best_misses:
                    best, best_misses = (mm, int(s), b), n
                    if n == 0:
                        return best, 0
    return best, best_misses
