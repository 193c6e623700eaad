"""cocotb bench 5: adversarial overflow against the data-free bound (DESIGN.md section 3).

For a weight column w, ``certificates.worst_case_partial_sums`` gives the lowest and highest
value any partial sum can take over every legal input. Two inputs reach them: x_hi makes
every term as large as it can be and never negative (for unsigned activations: the
largest activation where w > 0, zero where w < 0), x_lo the converse. Every prefix sum of
x_hi . w is non-decreasing and ends at the upper bound, so the hardware flag must fire
exactly when that bound exceeds 2**(P-1) - 1 — and likewise for x_lo and -2**(P-1).

Each GEMM puts the two worst-case rows of every column in X (M = 2N), runs it through
``ArrayCore`` and checks (1) every output against the golden model (scoreboard) and
(2) the worst-case outputs' flags straight from the RTL against the bound.
"""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from oasa_tb.core import CoreDriver
from oasa_tb.coverage import Coverage
from oasa_tb.tb import ClockedTB

from oasa.sim.certificates import worst_case_partial_sums

#: Longest dot product simulated. On Verilator every edge of the covering set up to P = 20
#: fits (a4sw4 at P = 20 needs K = 10702); Icarus, at under 2k cycles/s on an 8 x 8 array,
#: stops at 4096 (the long edges would add about a minute to the suite, and Verilator
#: covers them). An edge at P = 32 needs ~10^5 to 10^8 terms, and is skipped on both.
K_LIMIT = {"icarus": 4096, "verilator": 16384}
#: Longest random-weight dot product.
K_RANDOM = 1200


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


def column_with_sum(rng, total, k, wmax, sign):
    """k weights of one sign (values 1..wmax in magnitude, zeros elsewhere) summing to
    ``sign * total``, in random order."""
    col = np.zeros(k, dtype=np.int64)
    full, rest = divmod(int(total), wmax)
    col[:full] = wmax
    if rest:
        col[full] = rest
    rng.shuffle(col)
    return sign * col


def edge_sums(cfg):
    """Sums of positive (negative) weights that put the upper (lower) bound exactly at
    the range's end: S * act_max <= acc_max (S * act_max <= 2**(P-1)), for one-signed
    columns."""
    return cfg.acc_max // cfg.act_max, (-cfg.acc_min) // cfg.act_max


async def check_worst_case(tb, drv, cov, w, *, tag):
    """Run X = worst-case rows of every column of w; compare with the bound."""
    cfg = tb.cfg
    k, n = w.shape
    x_hi, x_lo = worst_inputs(cfg, w)
    x = np.empty((2 * n, k), dtype=np.int64)
    x[0::2], x[1::2] = x_hi, x_lo
    lo, hi = worst_case_partial_sums(w, cfg=cfg)
    if not cfg.act_signed:
        safe_hi, safe_lo = design_condition(cfg, w)
        assert (safe_hi == (hi <= cfg.acc_max)).all() and (safe_lo == (lo >= cfg.acc_min)).all()
    drv.queue_gemm(x, w, tag=tag, cov=cov)
    gid = drv.last_gemm_id
    await drv.drain()
    _, ovf = drv.result(gid)
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
    checked = 2 * n
    fired = int(want_hi.sum() + want_lo.sum())
    cov.add("adv_checked", checked)
    cov.add("adv_fired", fired)
    cov.add("adv_quiet", checked - fired)
    return want_hi, want_lo


async def setup(dut, test):
    tb = ClockedTB(dut, "overflow")
    drv = CoreDriver(tb)
    await tb.start()
    return tb, drv, Coverage("overflow", test, tb.cfg)


def finish(drv, cov):
    drv.sb.finish()
    cov.write()


def term_gain(cfg):
    """Mean contribution of one uniformly random weight to the upper bound."""
    ws = np.arange(cfg.weight_min, cfg.weight_max + 1)
    best = np.maximum(np.maximum(ws * cfg.act_max, ws * cfg.act_min), 0)
    return float(best.mean())


@cocotb.test()
async def test_random_weights(dut):
    """Uniformly random weight columns, K spread around where the bound meets the range
    (capped), so the flag must fire for some worst cases and stay quiet for others."""
    tb, drv, cov = await setup(dut, "random_weights")
    cfg, rng = tb.cfg, tb.rng
    k_mid = cfg.acc_max / term_gain(cfg)
    for rep in range(max(1, int(2 * tb.scale))):
        k = int(np.clip(k_mid * rng.uniform(0.5, 2.0), 1, K_RANDOM))
        n = cfg.cols if rep % 2 == 0 else cfg.cols + 1  # the second spills into a new tile
        w = rng.integers(cfg.weight_min, cfg.weight_max + 1, (k, n))
        # Lean some columns to one sign so that both bounds get near the range.
        for j in range(n):
            if rng.random() < 0.4:
                w[:, j] = np.abs(w[:, j]) * (1 if rng.random() < 0.5 else -1)
        w = np.clip(w, cfg.weight_min, cfg.weight_max)
        await check_worst_case(tb, drv, cov, w, tag=f"random K={k}")
    if k_mid > K_RANDOM:
        cov.note(f"random weights at P={cfg.acc_bits}: K capped at {K_RANDOM}, bound never reached")
    finish(drv, cov)


@cocotb.test()
async def test_edge_weights(dut):
    """Columns whose bound sits exactly at the end of the range (no flag allowed) and one
    unit of weight beyond it (the flag must fire), for both ends, next to random ones."""
    tb, drv, cov = await setup(dut, "edge_weights")
    cfg, rng = tb.cfg, tb.rng
    s_hi, s_lo = edge_sums(cfg)
    k = max(-(-(s_hi + 1) // cfg.weight_max), -(-(s_lo + 1) // -cfg.weight_min)) + 2
    limit = K_LIMIT.get(tb.sim, 16384)
    if k > limit * tb.scale:
        reason = f"edge weights of {cfg.name} need K={k} > {limit} on {tb.sim}: not simulated"
        cov.note(reason)
        cov.write()
        pytest.skip(reason)  # cocotb records the test as skipped, with the reason in its log
    kinds = [
        ("hi at edge", s_hi, 1, cfg.weight_max),
        ("hi over", s_hi + 1, 1, cfg.weight_max),
        ("lo at edge", s_lo, -1, -cfg.weight_min),
        ("lo over", s_lo + 1, -1, -cfg.weight_min),
    ]
    n = max(cfg.cols, len(kinds))
    cols = []
    for j in range(n):
        if j < len(kinds):
            _, total, sign, wmax = kinds[j]
        else:  # near the edge, either side
            sign = int(rng.choice([1, -1]))
            base = s_hi if sign > 0 else s_lo
            total = int(rng.integers(max(0, base - 3), base + 4))
            wmax = cfg.weight_max if sign > 0 else -cfg.weight_min
        col = column_with_sum(rng, total, k, wmax, sign)
        if not cfg.act_signed and j < len(kinds):
            # Weights of the other sign leave this bound alone (unsigned activations).
            other = np.nonzero(col == 0)[0][: k // 4]
            col[other] = -sign * rng.integers(0, 3, other.size)
        cols.append(col)
    w = np.stack(cols, axis=1)
    want_hi, want_lo = await check_worst_case(tb, drv, cov, w, tag=f"edge K={k}")
    # The constructed edges: at the edge quiet, one over fires.
    assert not want_hi[0] and want_hi[1] and not want_lo[2] and want_lo[3]
    cov.add("adv_edge_safe", 2)
    cov.add("adv_edge_over", 2)
    finish(drv, cov)


@cocotb.test()
async def test_safe_weights_random_inputs(dut):
    """Weights that meet the safety condition on both sides: no input may set the flag,
    random inputs included."""
    tb, drv, cov = await setup(dut, "safe_weights_random_inputs")
    cfg, rng = tb.cfg, tb.rng
    s_hi, s_lo = edge_sums(cfg)
    # One column mixes both signs; a mixed column's bounds are its one-signed parts.
    k = int(min(max(-(-s_hi // cfg.weight_max), -(-s_lo // -cfg.weight_min)) * 2 + 2, 600))
    n = cfg.cols
    w = np.zeros((k, n), dtype=np.int64)
    for j in range(n):
        lim_hi = min(s_hi, k * cfg.weight_max // 2)
        lim_lo = min(s_lo, k * -cfg.weight_min // 2)
        if cfg.act_signed:
            # With signed x, negative weights also raise the upper bound (x = act_min).
            g_lo = -cfg.act_min
            lim_hi = min(lim_hi, cfg.acc_max // (cfg.act_max + g_lo))
            lim_lo = lim_hi
        pos = column_with_sum(rng, int(rng.integers(0, lim_hi + 1)), k, cfg.weight_max, 1)
        neg = column_with_sum(rng, int(rng.integers(0, lim_lo + 1)), k, -cfg.weight_min, -1)
        col = pos.copy()
        spare = np.nonzero(col == 0)[0]
        negs = neg[neg != 0]
        col[spare[: negs.size]] = negs[: spare.size]
        w[:, j] = col
    lo, hi = worst_case_partial_sums(w, cfg=cfg)
    assert (hi <= cfg.acc_max).all() and (lo >= cfg.acc_min).all(), "weights must be safe"
    await check_worst_case(tb, drv, cov, w, tag=f"safe K={k}")
    x = rng.integers(cfg.act_min, cfg.act_max + 1, (3 * cfg.rows, k))
    drv.queue_gemm(x, w, tag="safe, random x", cov=cov)
    gid = drv.last_gemm_id
    await drv.drain()
    _, ovf = drv.result(gid)
    assert not ovf.any(), "safe weights: the flag fired for a random input"
    cov.add("adv_safe_random_outputs", ovf.size)
    finish(drv, cov)
