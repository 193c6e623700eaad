"""Per-output-channel weight quantizers and the accumulator budgets they respect.

Every function works on a float weight matrix W (O, K), one row per output channel, and
returns integer weights q (O, K) within the M-bit range for given per-channel scales s
(O,), so that s[:, None] * q approximates W. The methods differ in the constraint that
keeps a P-bit accumulator safe (unsigned N-bit inputs, A = 2**N - 1):

- ``rtn``: round to nearest, no constraint.
- ``a2q``: A2Q's L1 bound ||q||_1 <= (2**(P-1) - 1) * 2**-N, reached as A2Q does it: the
  float vector is scaled down to the bound, then rounded toward zero.
- ``a2q+``: A2Q+'s zero-centred weights with ||q||_1 <= floor(2 (2**(P-1) - 1) / A): the
  weights are centred, projected onto the L1 ball in the Euclidean sense (A2Q+'s
  initialisation), centred again, then rounded toward zero.
- ``exact``: the tight condition of DESIGN.md section 3, positive and negative parts
  bounded separately: sum(q+) <= floor((2**(P-1) - 1) / A) and sum(q-) <= floor(2**(P-1)
  / A). :func:`exact_project` finds the integer q that minimises the weighted error
  sum_i h_i (s q_i - W_i)**2 under both budgets exactly (a greedy over unit steps, which is
  optimal for a separable convex objective with one budget per sign).

Every a2q / a2q+ solution satisfies the exact budgets (tested), so ``exact`` searches a
superset and, at the same scale, never has a larger weighted error than either.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from oasa.config import ArrayConfig

__all__ = [
    "CERTIFIED_METHODS",
    "METHODS",
    "a2q_bound",
    "a2q_plus_bound",
    "a2q_plus_project",
    "a2q_project",
    "exact_budgets",
    "exact_project",
    "l1_ball_projection",
    "rtn_project",
    "smallest_usable_acc_bits",
]

METHODS = ("rtn", "a2q", "a2q+", "exact", "oaq")
CERTIFIED_METHODS = ("a2q", "a2q+", "exact")


def exact_budgets(cfg: ArrayConfig) -> tuple[int, int]:
    """(positive budget, negative budget) on the integer weight sums of one channel.

    Unsigned N-bit inputs (A = 2**N - 1) make the two sides independent: the highest
    partial sum is A * sum(q+), the lowest -A * sum(q-). With signed inputs each side
    reaches both ends (x = -2**(N-1) turns a negative weight positive), so the joint
    condition 2**(N-1) (sum(q+) + sum(q-)) <= 2**(P-1) - 1 is split evenly: each side gets
    floor((2**(P-1) - 1) / 2**N), a sufficient (slightly conservative) choice.

    >>> exact_budgets(ArrayConfig(acc_bits=10))
    (34, 34)
    >>> exact_budgets(ArrayConfig(acc_bits=16))
    (2184, 2184)
    >>> exact_budgets(ArrayConfig(acc_bits=16, act_bits=8, act_signed=True))
    (127, 127)
    """
    if cfg.act_signed:
        b = cfg.acc_max >> cfg.act_bits
        return (b, b)
    a = cfg.act_max
    return (cfg.acc_max // a, (-cfg.acc_min) // a)


def a2q_bound(cfg: ArrayConfig) -> float:
    """A2Q's L1 bound (as in Brevitas): (2**(P-1) - 1) * 2**(signed - N)."""
    return cfg.acc_max * 2.0 ** (int(cfg.act_signed) - cfg.act_bits)


def a2q_plus_bound(cfg: ArrayConfig) -> float:
    """A2Q+'s L1 bound for zero-centred weights: floor(2 (2**(P-1) - 1) / (2**N - 1)).
    Zero-centring helps only unsigned inputs; with signed ones the bound is A2Q's."""
    if cfg.act_signed:
        return a2q_bound(cfg)
    return float(np.floor(2.0 * cfg.acc_max / cfg.act_max))


def smallest_usable_acc_bits(cfg: ArrayConfig) -> int:
    """The smallest P at which a certified channel can hold one non-zero weight (both
    budgets >= 1), never below the product width."""
    p = cfg.product_bits
    while True:
        c = cfg.replace(acc_bits=p)
        if min(exact_budgets(c)) >= 1 and a2q_bound(c) >= 1:
            return p
        p += 1


def rtn_project(w: NDArray, s: NDArray, cfg: ArrayConfig) -> NDArray[np.int64]:
    """Round to nearest (half away from zero), clipped to the M-bit range."""
    u = w / s[:, None]
    q = np.sign(u) * np.floor(np.abs(u) + 0.5)
    return np.clip(q, cfg.weight_min, cfg.weight_max).astype(np.int64)


def _trunc_clip(u: NDArray, cfg: ArrayConfig) -> NDArray[np.int64]:
    return np.clip(np.trunc(u), cfg.weight_min, cfg.weight_max).astype(np.int64)


# Float round-off must never let a truncated weight vector exceed its integer bound.
_SAFETY = 1.0 - 1e-9


def a2q_project(w: NDArray, s: NDArray, cfg: ArrayConfig) -> NDArray[np.int64]:
    """A2Q: scale each channel down to ||u||_1 <= bound (its weight-norm g clamped), then
    round toward zero, so that ||q||_1 <= ||u||_1 <= bound."""
    u = w / s[:, None]
    l1 = np.abs(u).sum(axis=1)
    t = a2q_bound(cfg) * _SAFETY
    factor = np.where(l1 > t, t / np.maximum(l1, 1e-300), 1.0)
    return _trunc_clip(u * factor[:, None], cfg)


def l1_ball_projection(u: NDArray, radius: float | NDArray) -> NDArray:
    """Euclidean projection of each row of u onto the L1 ball of the given radius
    (Duchi et al. 2008: soft thresholding at the threshold that meets the radius).

    >>> l1_ball_projection(np.array([[3.0, -1.0, 0.5]]), 2.0).tolist()
    [[2.0, -0.0, 0.0]]
    """
    a = np.abs(u)
    r = np.broadcast_to(np.asarray(radius, dtype=float), (u.shape[0],))
    inside = a.sum(axis=1) <= r
    srt = -np.sort(-a, axis=1)
    css = np.cumsum(srt, axis=1) - r[:, None]
    j = np.arange(1, u.shape[1] + 1)
    cond = srt - css / j > 0
    rho = u.shape[1] - np.argmax(cond[:, ::-1], axis=1)  # last index where cond holds
    theta = css[np.arange(u.shape[0]), rho - 1] / rho
    theta = np.where(inside, 0.0, np.maximum(theta, 0.0))
    return np.sign(u) * np.maximum(a - theta[:, None], 0.0)


def a2q_plus_project(w: NDArray, s: NDArray, cfg: ArrayConfig) -> NDArray[np.int64]:
    """A2Q+: zero-centre, Euclidean projection onto the L1 ball of radius bound, centre
    again (shrinking onto the ball if needed), round toward zero.

    A zero-mean float vector with ||u||_1 <= T has positive and negative parts of T / 2
    each; truncation only shrinks magnitudes, so sum(q+) and sum(q-) stay <= T / 2, which
    is within the exact budgets.
    """
    t = a2q_plus_bound(cfg) * _SAFETY
    u = (w - w.mean(axis=1, keepdims=True)) / s[:, None]
    u = l1_ball_projection(u, t)
    u = u - u.mean(axis=1, keepdims=True)
    l1 = np.abs(u).sum(axis=1)
    u = u * np.where(l1 > t, t / np.maximum(l1, 1e-300), 1.0)[:, None]
    return _trunc_clip(u, cfg)


def _greedy_side(u: NDArray, h: NDArray, levels: int, budget: int) -> NDArray[np.int64]:
    """Non-negative integers c (O, K), c <= levels, sum(c) <= budget per row, minimising
    sum h (c - u)**2 for u >= 0. A unit step from c to c + 1 gains h (2u - 2c - 1) > 0,
    decreasing in c, so taking the ``budget`` largest positive gains is optimal."""
    o, k = u.shape
    if budget <= 0:
        return np.zeros((o, k), dtype=np.int64)
    steps = np.arange(levels)
    gain = (
        h[:, :, None] * (u[:, :, None] - steps - 0.5)
        if h.ndim == 2
        else (h[None, :, None] * (u[:, :, None] - steps - 0.5))
    )
    gain = gain.reshape(o, k * levels)
    positive = gain > 0
    n_pos = positive.sum(axis=1)
    c = np.zeros((o, k * levels), dtype=bool)
    full = n_pos <= budget
    c[full] = positive[full]
    rows = np.nonzero(~full)[0]
    if rows.size:
        top = np.argpartition(-gain[rows], budget - 1, axis=1)[:, :budget]
        sel = np.zeros((rows.size, k * levels), dtype=bool)
        np.put_along_axis(sel, top, True, axis=1)
        c[rows] = sel & positive[rows]
    return c.reshape(o, k, levels).sum(axis=2).astype(np.int64)


def exact_project(
    w: NDArray, s: NDArray, cfg: ArrayConfig, h: NDArray | None = None
) -> NDArray[np.int64]:
    """The integer q closest to w / s in the h-weighted norm under both exact budgets.

    A weight never takes the sign opposite to its float value (that costs error and
    budget), so the positive and negative parts are two independent problems.

    >>> cfg = ArrayConfig(acc_bits=8)   # budgets 8 and 8 (A = 15)
    >>> exact_project(np.array([[5.0, 3.8, -3.0, 0.4]]), np.array([1.0]), cfg).tolist()
    [[5, 3, -3, 0]]
    """
    bp, bn = exact_budgets(cfg)
    u = w / s[:, None]
    if h is None:
        h = np.ones(u.shape[1])
    h = np.asarray(h, dtype=float)
    pos = _greedy_side(np.maximum(u, 0), h, cfg.weight_max, bp)
    neg = _greedy_side(np.maximum(-u, 0), h, -cfg.weight_min, bn)
    return pos - neg
