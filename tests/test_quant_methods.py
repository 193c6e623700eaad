"""The weight quantizers on synthetic weights: budgets, guarantees, optimality."""

import itertools

import numpy as np
import pytest

from oasa.config import ArrayConfig
from oasa.quant import methods
from oasa.quant.ptq import QuantError, QuantSpec, dyadic, pow2_ratio, search_scales
from oasa.sim import certificates, golden

CERTIFIED = {
    "a2q": lambda w, s, cfg: methods.a2q_project(w, s, cfg),
    "a2q+": lambda w, s, cfg: methods.a2q_plus_project(w, s, cfg),
    "exact": lambda w, s, cfg: methods.exact_project(w, s, cfg),
}


def _weights(rng, o, k):
    w = rng.standard_normal((o, k)) * rng.uniform(0.2, 2.0, (o, 1))
    w[:, : k // 5] += 0.7  # some channels skewed positive, so the two budgets differ
    return w


def _worst_inputs(q, cfg):
    """Per channel: the largest activation where w > 0 (zero elsewhere), and the converse."""
    hi = np.where(q > 0, cfg.act_max, 0)
    lo = np.where(q < 0, cfg.act_max, 0)
    return hi, lo


@pytest.mark.parametrize("method", sorted(CERTIFIED))
@pytest.mark.parametrize("p", [9, 10, 12, 16])
@pytest.mark.parametrize("k", [9, 288, 1024])
def test_certified_weights_never_overflow_on_worst_case_inputs(method, p, k):
    cfg = ArrayConfig(acc_bits=p)
    rng = np.random.default_rng(p * 1000 + k)
    w = _weights(rng, 12, k)
    for f in (0.05, 0.3, 1.0):  # from fine scales (tight budget) to coarse ones
        s = np.abs(w).max(axis=1) / cfg.weight_max * f
        q = CERTIFIED[method](w, s, cfg)
        assert q.min() >= cfg.weight_min and q.max() <= cfg.weight_max
        assert int(certificates.min_safe_acc_bits(q.T, cfg=cfg).max()) <= p
        for x in _worst_inputs(q, cfg):
            # Row c of x is channel c's worst input; every prefix of it is checked too.
            r = golden.gemm(x, q.T, cfg=cfg)
            assert not r.overflow[np.arange(len(q)), np.arange(len(q))].any()
        # The same inputs do overflow one bit narrower whenever the certificate is tight.
        tight = certificates.min_safe_acc_bits(q.T, cfg=cfg) == p
        if tight.any() and p - 1 >= cfg.product_bits:
            narrow = cfg.replace(acc_bits=p - 1)
            flags = [
                golden.gemm(x, q.T, cfg=narrow).overflow[np.arange(len(q)), np.arange(len(q))]
                for x in _worst_inputs(q, cfg)
            ]
            assert (flags[0] | flags[1])[tight].all()


@pytest.mark.parametrize("p", [10, 12, 14, 16])
def test_a2q_and_a2q_plus_solutions_satisfy_the_exact_budgets(p):
    cfg = ArrayConfig(acc_bits=p)
    bp, bn = methods.exact_budgets(cfg)
    rng = np.random.default_rng(p)
    w = _weights(rng, 32, 300)
    for f in (0.05, 0.2, 1.0, 3.0):
        s = np.abs(w).max(axis=1) / cfg.weight_max * f
        for project in (methods.a2q_project, methods.a2q_plus_project):
            q = project(w, s, cfg)
            assert (np.maximum(q, 0).sum(axis=1) <= bp).all()
            assert (np.maximum(-q, 0).sum(axis=1) <= bn).all()
        q = methods.a2q_project(w, s, cfg)
        assert (np.abs(q).sum(axis=1) <= methods.a2q_bound(cfg)).all()


@pytest.mark.parametrize("p", [10, 12, 16])
def test_exact_has_no_larger_error_than_a2q_family_at_the_same_scale(p):
    cfg = ArrayConfig(acc_bits=p)
    rng = np.random.default_rng(7 + p)
    w = _weights(rng, 24, 288)
    h = rng.uniform(0.1, 2.0, 288)
    for f in (0.1, 0.5, 1.0, 2.0):
        s = np.abs(w).max(axis=1) / cfg.weight_max * f
        q_exact = methods.exact_project(w, s, cfg, h)
        e_exact = ((s[:, None] * q_exact - w) ** 2 * h).sum(axis=1)
        for project in (methods.a2q_project, methods.a2q_plus_project):
            q = project(w, s, cfg)
            e = ((s[:, None] * q - w) ** 2 * h).sum(axis=1)
            assert (e_exact <= e + 1e-9).all()


def test_exact_projection_is_optimal_by_enumeration():
    cfg = ArrayConfig(act_bits=2, weight_bits=3, acc_bits=5)  # A = 3, budgets 5 and 5
    bp, bn = methods.exact_budgets(cfg)
    assert (bp, bn) == (5, 5)
    rng = np.random.default_rng(3)
    levels = range(cfg.weight_min, cfg.weight_max + 1)
    for _ in range(40):
        w = rng.uniform(-4.5, 4.5, (1, 4))
        h = rng.uniform(0.1, 3.0, 4)
        q = methods.exact_project(w, np.ones(1), cfg, h)[0]
        best = min(
            (
                float((h * (np.array(c) - w[0]) ** 2).sum())
                for c in itertools.product(levels, repeat=4)
                if sum(v for v in c if v > 0) <= bp and -sum(v for v in c if v < 0) <= bn
            ),
        )
        assert float((h * (q - w[0]) ** 2).sum()) == pytest.approx(best, abs=1e-12)


def test_l1_projection_is_the_closest_point_of_the_ball():
    rng = np.random.default_rng(0)
    u = rng.standard_normal((5, 30)) * 3
    r = 10.0
    p = methods.l1_ball_projection(u, r)
    assert np.allclose(np.abs(p).sum(axis=1), r)
    # Any other point of the ball (the plain rescaling, random points) is farther away.
    scaled = u * (r / np.abs(u).sum(axis=1, keepdims=True))
    assert (((p - u) ** 2).sum(axis=1) <= ((scaled - u) ** 2).sum(axis=1) + 1e-9).all()
    inside = u / 100
    assert np.array_equal(methods.l1_ball_projection(inside, r), inside)


def test_rtn_overflows_where_the_certified_methods_cannot():
    cfg = ArrayConfig(acc_bits=10)
    rng = np.random.default_rng(1)
    w = _weights(rng, 8, 288)
    s = np.abs(w).max(axis=1) / cfg.weight_max
    q = methods.rtn_project(w, s, cfg)
    assert certificates.min_safe_acc_bits(q.T, cfg=cfg).max() > 10
    x, _ = _worst_inputs(q, cfg)
    assert golden.gemm(x, q.T, cfg=cfg).overflow.diagonal().any()


@pytest.mark.parametrize("method", ["rtn", "a2q", "a2q+", "exact"])
def test_scale_search_beats_the_max_scale(method):
    cfg = ArrayConfig(acc_bits=12)
    rng = np.random.default_rng(5)
    w = _weights(rng, 16, 288)
    h = np.ones(288)
    q, s = search_scales(w, method, cfg, h, pow2=False)
    e = ((s[:, None] * q - w) ** 2).sum(axis=1)
    s0 = np.abs(w).max(axis=1) / cfg.weight_max
    q0 = {
        "rtn": methods.rtn_project,
        "a2q": methods.a2q_project,
        "a2q+": methods.a2q_plus_project,
        "exact": methods.exact_project,
    }[method](w, s0, cfg)
    e0 = ((s0[:, None] * q0 - w) ** 2).sum(axis=1)
    assert (e <= e0 + 1e-9).all()
    _, s2 = search_scales(w, method, cfg, h, pow2=True)
    assert np.allclose(np.exp2(np.round(np.log2(s2))), s2)


def test_requantization_constants():
    cfg = ArrayConfig()
    r = np.array([0.3, 1e-4, 2.5, 1.0])
    m, s = dyadic(r, cfg)
    assert (m <= cfg.mult_max).all() and (s <= cfg.shift_max).all()
    assert np.allclose(m / np.exp2(s), r, rtol=2e-5)
    m, s = pow2_ratio(np.array([0.25, 1.0, 8.0]), cfg)
    assert m.tolist() == [1, 1, 8] and s.tolist() == [2, 0, 0]
    with pytest.raises(QuantError):
        pow2_ratio(np.array([0.3]), cfg)


def test_spec_rejects_bad_requests():
    with pytest.raises(QuantError, match="unknown method"):
        QuantSpec(method="nope")
    with pytest.raises(QuantError, match="act_signed is decided per tensor"):
        QuantSpec(cfg=ArrayConfig(act_signed=True))
    with pytest.raises(QuantError, match="must be an ArrayConfig"):
        QuantSpec(cfg={"acc_bits": 12})
    with pytest.raises(QuantError, match="scale style"):
        QuantSpec(scales="log")
    assert methods.smallest_usable_acc_bits(ArrayConfig()) == 8


def test_batchnorm_folding_matches_conv_then_bn():
    from oasa.quant.fold import fold_batchnorm
    from oasa.quant.model import conv_cols

    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 6, 6))
    w, b = rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    mean, var = rng.standard_normal(5), rng.uniform(0.1, 2, 5)
    cols = conv_cols(x, 3, 1)
    y = cols @ w.reshape(5, -1).T + b
    bn = gamma * (y - mean) / np.sqrt(var + 1e-5) + beta
    wf, bf = fold_batchnorm(w, b, gamma, beta, mean, var)
    np.testing.assert_allclose(cols @ wf.reshape(5, -1).T + bf, bn, rtol=1e-10, atol=1e-10)


def test_min_safe_acc_bits_of_a_layer():
    from oasa.sim.certificates import certificate
    from oasa.sim.netfile import Layer

    w = np.array([[7, 7, -8], [1, 0, 0]], dtype=np.int8)  # channel 0: 14 * 15 = 210 -> P 9
    layer = Layer("dense", (3,), (2,), weight=w)
    assert certificate(layer)[2].tolist() == [9, 8]  # channel 1 reaches 15: the 8-bit floor
