"""Worst-case stimulus against the data-free overflow bound (DESIGN.md section 3), shared by
the overflow bench (``ArrayCore``) and the accelerator bench (the whole ``Accelerator``).

For a weight column w, ``certificates.worst_case_partial_sums`` gives the lowest and highest
value any partial sum can take over every legal input. Two inputs reach them: x_hi makes
every term as large as it can be and never negative (for unsigned activations: the
largest activation where w > 0, zero where w < 0), x_lo the converse. Every prefix sum of
x_hi . w is non-decreasing and ends at the upper bound, so the hardware flag must fire
exactly when that bound exceeds 2**(P-1) - 1, and likewise for x_lo and -2**(P-1).

Pure numpy and assertions: the benches run the GEMM their own way and hand the flags of
the worst-case rows to :func:`check_against_bound`.
"""

from __future__ import annotations

import numpy as np

from oasa.sim.certificates import worst_case_partial_sums

__all__ = [
    "EDGE_KINDS",
    "assert_edges_built",
    "check_against_bound",
    "column_with_sum",
    "design_condition",
    "edge_k",
    "edge_sums",
    "edge_weights",
    "leaning_weights",
    "term_gain",
    "worst_case_rows",
    "worst_inputs",
]

#: The constructed columns of :func:`edge_weights`, in order: (name, bound, one step over).
EDGE_KINDS = (
    ("hi at edge", "hi", False),
    ("hi over", "hi", True),
    ("lo at edge", "lo", False),
    ("lo over", "lo", True),
)


def worst_inputs(cfg, w):
    """(x_hi, x_lo) for each column of w (K, N): arrays (N, K)."""
    cand = np.array([cfg.act_min, cfg.act_max], dtype=np.int64)
    terms = w.T[:, :, None] * cand[None, None, :]  # (N, K, 2)
    x_hi = np.where(terms.max(axis=2) > 0, cand[terms.argmax(axis=2)], 0)
    x_lo = np.where(terms.min(axis=2) < 0, cand[terms.argmin(axis=2)], 0)
    return x_hi, x_lo


def design_condition(cfg, w):
    """DESIGN.md section 3 as written, for unsigned activations: (hi safe, lo safe)."""
    top = (1 << cfg.act_bits) - 1
    pos = np.maximum(w, 0).sum(axis=0)
    neg = np.maximum(-w, 0).sum(axis=0)
    return top * pos <= (1 << (cfg.acc_bits - 1)) - 1, top * neg <= (1 << (cfg.acc_bits - 1))


def worst_case_rows(cfg, w):
    """X (2N, K) holding x_hi of column j in row 2j and x_lo in row 2j + 1, and the
    data-free bounds (lo, hi) of every column; for unsigned activations the bound is
    also checked against DESIGN.md's condition as written."""
    w = np.asarray(w, dtype=np.int64)
    k, n = w.shape
    x_hi, x_lo = worst_inputs(cfg, w)
    x = np.empty((2 * n, k), dtype=np.int64)
    x[0::2], x[1::2] = x_hi, x_lo
    lo, hi = worst_case_partial_sums(w, cfg=cfg)
    if not cfg.act_signed:
        safe_hi, safe_lo = design_condition(cfg, w)
        assert (safe_hi == (hi <= cfg.acc_max)).all() and (safe_lo == (lo >= cfg.acc_min)).all()
    return x, lo, hi


def check_against_bound(cfg, ovf, lo, hi, *, tag, cov=None):
    """Compare the flags ``ovf`` (2N, N) of X = :func:`worst_case_rows` times W with the
    bound: the hi row of column j must flag exactly when hi[j] > acc_max, the lo row
    exactly when lo[j] < acc_min. Returns (want_hi, want_lo); counts into ``cov``."""
    ovf = np.asarray(ovf, dtype=bool)
    n = len(hi)
    cols = np.arange(n)
    got_hi, got_lo = ovf[2 * cols, cols], ovf[2 * cols + 1, cols]
    want_hi, want_lo = hi > cfg.acc_max, lo < cfg.acc_min
    bad = [
        f"column {j} {side}: flag {int(g)}, bound {b} says {'over' if wnt else 'within'}"
        for side, got_, want_, bound in (("hi", got_hi, want_hi, hi), ("lo", got_lo, want_lo, lo))
        for j, (g, wnt, b) in enumerate(zip(got_, want_, bound, strict=True))
        if bool(g) != bool(wnt)
    ]
    assert not bad, f"{tag}: flag disagrees with the data-free bound: " + "; ".join(bad[:6])
    if cov is not None:
        checked = 2 * n
        fired = int(want_hi.sum() + want_lo.sum())
        cov.add("adv_checked", checked)
        cov.add("adv_fired", fired)
        cov.add("adv_quiet", checked - fired)
    return want_hi, want_lo


def column_with_sum(rng, total, k, wmax, sign, *, front=False):
    """k weights of one sign (values 1..wmax in magnitude, zeros elsewhere) summing to
    ``sign * total``, in random order, or with ``front`` packed into the first rows (the
    bound is then reached early and every later term is zero)."""
    col = np.zeros(k, dtype=np.int64)
    full, rest = divmod(int(total), wmax)
    col[:full] = wmax
    if rest:
        col[full] = rest
    if not front:
        rng.shuffle(col)
    return sign * col


def edge_sums(cfg):
    """Sums of positive (negative) weights that put the upper (lower) bound exactly at
    the range's end: S * act_max <= acc_max (S * act_max <= 2**(P-1)), for one-signed
    columns."""
    return cfg.acc_max // cfg.act_max, (-cfg.acc_min) // cfg.act_max


def edge_k(cfg):
    """The K that :func:`edge_weights` needs: room for one step over either edge, + 2."""
    s_hi, s_lo = edge_sums(cfg)
    return max(-(-(s_hi + 1) // cfg.weight_max), -(-(s_lo + 1) // -cfg.weight_min)) + 2


def edge_weights(cfg, rng, k, n, *, front=0):
    """(k, n) weights whose bounds sit at the range's ends: the columns of
    :data:`EDGE_KINDS` (at the edge: no flag allowed; one unit of weight over: the flag must
    fire), then ``front`` columns one step over an edge (hi, lo, hi, ...) with their
    weights packed into the first rows, then random columns near either edge.
    ``k >= edge_k(cfg)`` and ``n >= len(EDGE_KINDS) + front``."""
    s_hi, s_lo = edge_sums(cfg)
    if k < edge_k(cfg) or n < len(EDGE_KINDS) + front:
        raise ValueError(f"edge weights of {cfg.name} need K >= {edge_k(cfg)}, got {k} x {n}")
    sides = {"hi": (s_hi, 1, cfg.weight_max), "lo": (s_lo, -1, -cfg.weight_min)}
    cols = []
    for j in range(n):
        packed = False
        if j < len(EDGE_KINDS):
            _, side, over = EDGE_KINDS[j]
            base, sign, wmax = sides[side]
            total = base + over
        elif j < len(EDGE_KINDS) + front:
            base, sign, wmax = sides["hi" if (j - len(EDGE_KINDS)) % 2 == 0 else "lo"]
            total, packed = base + 1, True
        else:  # near the edge, either side
            base, sign, wmax = sides["hi" if int(rng.choice([1, -1])) > 0 else "lo"]
            total = int(rng.integers(max(0, base - 3), base + 4))
        col = column_with_sum(rng, total, k, wmax, sign, front=packed)
        if not cfg.act_signed and j < len(EDGE_KINDS) + front:
            # Weights of the other sign leave this bound alone (unsigned activations).
            other = np.nonzero(col == 0)[0][: k // 4]
            col[other] = -sign * rng.integers(0, 3, other.size)
        cols.append(col)
    return np.stack(cols, axis=1)


def assert_edges_built(want_hi, want_lo, front=0):
    """The constructed columns of :func:`edge_weights` are where they were meant to be:
    at the edge quiet, one over fires (front-loaded ones too)."""
    for j, (name, side, over) in enumerate(EDGE_KINDS):
        assert (want_hi if side == "hi" else want_lo)[j] == over, f"column {j} is not {name}"
    for j in range(len(EDGE_KINDS), len(EDGE_KINDS) + front):
        side = "hi" if (j - len(EDGE_KINDS)) % 2 == 0 else "lo"
        assert (want_hi if side == "hi" else want_lo)[j], f"column {j} is not {side} over"


def term_gain(cfg):
    """Mean contribution of one uniformly random weight to the upper bound."""
    ws = np.arange(cfg.weight_min, cfg.weight_max + 1)
    best = np.maximum(np.maximum(ws * cfg.act_max, ws * cfg.act_min), 0)
    return float(best.mean())


def leaning_weights(cfg, rng, k, n):
    """Uniformly random (k, n) weights, some columns made one-signed, so that both bounds
    get near the range."""
    w = rng.integers(cfg.weight_min, cfg.weight_max + 1, (k, n))
    for j in range(n):
        if rng.random() < 0.4:
            w[:, j] = np.abs(w[:, j]) * (1 if rng.random() < 0.5 else -1)
    return np.clip(w, cfg.weight_min, cfg.weight_max)
