"""The golden model against the independent plain-Python contract in reference.py."""

import zlib

import numpy as np
import pytest
import reference

from oasa.config import ArrayConfig
from oasa.sim import certificates, golden

CONFIGS = [
    ArrayConfig(acc_bits=8),
    ArrayConfig(acc_bits=10, overflow="saturate"),
    ArrayConfig(acc_bits=12),
    ArrayConfig(acc_bits=12, overflow="saturate"),
    ArrayConfig(acc_bits=16),
    ArrayConfig(act_signed=True, acc_bits=9, overflow="saturate"),
    ArrayConfig(act_signed=True, acc_bits=9),
    ArrayConfig(act_bits=8, weight_bits=8, acc_bits=16, overflow="saturate"),
    ArrayConfig(act_bits=8, act_signed=True, weight_bits=8, acc_bits=18),
    ArrayConfig(act_bits=2, weight_bits=3, acc_bits=5, overflow="saturate"),
    ArrayConfig(acc_bits=32),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("shape", [(7, 1, 5), (9, 23, 6), (4, 70, 3)], ids=str)
def test_gemm_matches_reference(cfg, shape):
    # A seed that is the same in every process (str hashes are salted per process).
    rng = np.random.default_rng(zlib.crc32(f"{cfg.name} {shape}".encode()))
    x, w = reference.random_operands(rng, cfg, *shape)
    r = golden.gemm(x, w, cfg=cfg)
    acc, ovf, fin = reference.gemm(x.tolist(), w.tolist(), cfg.acc_bits, cfg.overflow)
    np.testing.assert_array_equal(r.out, acc)
    np.testing.assert_array_equal(r.overflow, ovf)
    np.testing.assert_array_equal(r.final_overflow, fin)


def test_flag_cases_all_occur_and_match():
    """Random data at a narrow P: none, transient-only and final overflows all appear."""
    cfg = ArrayConfig(acc_bits=9)
    rng = np.random.default_rng(5)
    x, w = reference.random_operands(rng, cfg, 40, 30, 40)
    r = golden.gemm(x, w, cfg=cfg)
    transient_only = r.overflow & ~r.final_overflow
    assert (~r.overflow).any() and transient_only.any() and r.final_overflow.any()
    _, ovf, fin = reference.gemm(x.tolist(), w.tolist(), 9, "wrap")
    np.testing.assert_array_equal(r.overflow, ovf)
    np.testing.assert_array_equal(r.final_overflow, fin)


def test_transient_overflow_wrap_recovers_saturate_does_not():
    # 15*7 + 15*7 = 210 > 127 (8-bit), then -120 brings the exact sum back to 90.
    x = [[15, 15, 15]]
    w = [[7], [7], [-8]]
    wrap = golden.gemm(x, w, cfg=ArrayConfig(acc_bits=8))
    sat = golden.gemm(x, w, cfg=ArrayConfig(acc_bits=8, overflow="saturate"))
    assert wrap.out[0, 0] == 90 and wrap.overflow[0, 0] and not wrap.final_overflow[0, 0]
    assert sat.out[0, 0] == 127 - 120 and sat.overflow[0, 0]


def test_saturates_at_both_ends():
    cfg = ArrayConfig(acc_bits=8, overflow="saturate")
    r = golden.gemm([[15] * 4], [[7, -8]] * 4, cfg=cfg)
    assert r.out.tolist() == [[127, -128]]
    assert r.overflow.all() and r.final_overflow.all()


def test_wrap_is_exact_sum_wrapped():
    cfg = ArrayConfig(acc_bits=8)
    r = golden.gemm([[15] * 4], [[7, -8]] * 4, cfg=cfg)
    assert r.out.tolist() == [[(420 + 128) % 256 - 128, (-480 + 128) % 256 - 128]]


def test_large_gemm_scan_path_matches_reference_on_sample():
    """Enough candidates to go through several scan chunks; spot-check against reference."""
    cfg = ArrayConfig(acc_bits=12, overflow="saturate")
    rng = np.random.default_rng(11)
    x, w = reference.random_operands(rng, cfg, 64, 600, 48)
    r = golden.gemm(x, w, cfg=cfg)
    for i, j in rng.integers(0, [64, 48], (40, 2)):
        s, f, fin = reference.dot(x[i], w[:, j], 12, "saturate")
        assert (r.out[i, j], r.overflow[i, j], r.final_overflow[i, j]) == (s, f, fin)


def test_bounds_contain_every_prefix():
    cfg = ArrayConfig(act_signed=True)
    rng = np.random.default_rng(3)
    x, w = reference.random_operands(rng, cfg, 6, 30, 5)
    lo, hi = golden.partial_sum_bounds(x, w, cfg=cfg)
    prefixes = np.cumsum(x[:, :, None] * w[None, :, :], axis=1)
    assert (prefixes.min(axis=1) >= lo).all() and (prefixes.max(axis=1) <= hi).all()


@pytest.mark.parametrize(
    "cfg",
    [
        ArrayConfig(),
        ArrayConfig(act_signed=True),
        ArrayConfig(act_bits=8, weight_bits=2, acc_bits=32),
    ],
    ids=lambda c: c.name,
)
def test_worst_case_bounds_are_tight_and_reached(cfg):
    rng = np.random.default_rng(4)
    w = rng.integers(cfg.weight_min, cfg.weight_max + 1, (25, 6))
    lo, hi = certificates.worst_case_partial_sums(w, cfg=cfg)
    # The input that reaches hi: per term the activation giving the largest product.
    for j in range(w.shape[1]):
        best_hi = [max((a * wk, a) for a in (cfg.act_min, 0, cfg.act_max))[1] for wk in w[:, j]]
        best_lo = [min((a * wk, a) for a in (cfg.act_min, 0, cfg.act_max))[1] for wk in w[:, j]]
        assert int(np.dot(best_hi, w[:, j])) == hi[j]
        assert int(np.dot(best_lo, w[:, j])) == lo[j]
        # and no random input gets beyond
        xs = rng.integers(cfg.act_min, cfg.act_max + 1, (200, w.shape[0]))
        pre = np.cumsum(xs * w[:, j], axis=1)
        assert pre.max() <= hi[j] and pre.min() >= lo[j]


def test_min_safe_acc_bits_is_the_boundary():
    cfg = ArrayConfig(acc_bits=32)
    rng = np.random.default_rng(8)
    w = rng.integers(-8, 8, (40, 10))
    need = certificates.min_safe_acc_bits(w, cfg=cfg)
    lo, hi = certificates.worst_case_partial_sums(w, cfg=cfg)
    for j, p in enumerate(need):
        assert -(2 ** (p - 1)) <= lo[j] and hi[j] <= 2 ** (p - 1) - 1
        if p > cfg.product_bits:
            assert lo[j] < -(2 ** (p - 2)) or hi[j] > 2 ** (p - 2) - 1
    # DESIGN.md section 3 as written, for unsigned inputs:
    for j, p in enumerate(need):
        pos = w[:, j][w[:, j] > 0].sum()
        neg = -w[:, j][w[:, j] < 0].sum()
        assert 15 * pos <= 2 ** (p - 1) - 1 and 15 * neg <= 2 ** (p - 1)


def test_safe_weights_never_overflow_worst_case_input():
    """At exactly the minimum safe P the adversarial input reaches the range edge, no
    further; one bit less and it overflows."""
    cfg = ArrayConfig(acc_bits=32)
    w = np.array([[7], [7], [-8], [5], [-8], [7]])
    p = int(certificates.min_safe_acc_bits(w, cfg=cfg)[0])
    x_hi = np.where(w[:, 0] > 0, 15, 0)[None, :]
    x_lo = np.where(w[:, 0] < 0, 15, 0)[None, :]
    for x in (x_hi, x_lo):
        assert not golden.gemm(x, w, cfg=cfg.replace(acc_bits=p)).overflow.any()
    assert any(
        golden.gemm(x, w, cfg=cfg.replace(acc_bits=p - 1)).overflow.any() for x in (x_hi, x_lo)
    )


def test_output_stage_matches_reference():
    rng = np.random.default_rng(9)
    for cfg in (
        ArrayConfig(),
        ArrayConfig(act_signed=True, act_bits=8, weight_bits=8, acc_bits=24),
    ):
        acc = rng.integers(cfg.acc_min, cfg.acc_max + 1, (50, 6))
        bias = rng.integers(-(2**20), 2**20, 6)
        mult = rng.integers(0, cfg.mult_max + 1, 6)
        shift = rng.integers(0, cfg.shift_max + 1, 6)
        for relu in (False, True):
            out = golden.output_stage(acc, cfg=cfg, bias=bias, mult=mult, shift=shift, relu=relu)
            for i in range(acc.shape[0]):
                for j in range(6):
                    want = reference.requantize(
                        int(acc[i, j]),
                        int(bias[j]),
                        int(mult[j]),
                        int(shift[j]),
                        relu,
                        cfg.act_min,
                        cfg.act_max,
                    )
                    assert out[i, j] == want


@pytest.mark.parametrize(
    "acc, shift, want",
    [(3, 1, 2), (-3, 1, -1), (5, 2, 1), (6, 2, 2), (-6, 2, -1), (-2, 2, 0), (7, 0, 7), (-7, 0, -7)],
)
def test_round_half_up(acc, shift, want):
    cfg = ArrayConfig(act_signed=True, act_bits=8, weight_bits=8)
    assert golden.output_stage(np.array([acc]), cfg=cfg, shift=shift)[0] == want


def test_output_stage_clamps_both_ends():
    cfg = ArrayConfig()
    assert golden.output_stage(np.array([-1000, 1000]), cfg=cfg).tolist() == [0, 15]
    cfg_s = ArrayConfig(act_signed=True)
    assert golden.output_stage(np.array([-1000, 1000]), cfg=cfg_s).tolist() == [-8, 7]
    assert golden.output_stage(np.array([-1000, 1000]), cfg=cfg_s, relu=True).tolist() == [0, 7]


def test_largest_shift_and_multiplier_stay_exact():
    cfg = ArrayConfig(acc_bits=32, act_signed=True, act_bits=8, weight_bits=8)
    acc = np.array([cfg.acc_max, cfg.acc_min, 12345])
    out = golden.output_stage(
        acc, cfg=cfg, bias=cfg.bias_max, mult=cfg.mult_max, shift=cfg.shift_max
    )
    for a, o in zip(acc, out, strict=True):
        assert o == reference.requantize(
            int(a), cfg.bias_max, cfg.mult_max, cfg.shift_max, False, -128, 127
        )


def test_conv2d_equals_its_gemm_and_a_direct_loop():
    cfg = ArrayConfig(acc_bits=10)
    rng = np.random.default_rng(12)
    x = rng.integers(0, 16, (2, 3, 6, 5))
    w = rng.integers(-8, 8, (4, 3, 3, 3))
    for stride, padding in [(1, 1), (2, 0), (2, 1)]:
        r = golden.conv2d(x, w, cfg=cfg, stride=stride, padding=padding)
        xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
        _, _, ho, wo = r.out.shape
        for b in range(2):
            for o in range(4):
                for oy in range(ho):
                    for ox in range(wo):
                        patch = xp[
                            b, :, oy * stride : oy * stride + 3, ox * stride : ox * stride + 3
                        ]
                        want = reference.dot(patch.reshape(-1), w[o].reshape(-1), 10, "wrap")
                        got = (
                            r.out[b, o, oy, ox],
                            r.overflow[b, o, oy, ox],
                            r.final_overflow[b, o, oy, ox],
                        )
                        assert got == want


@pytest.mark.parametrize(
    "x, w, words",
    [
        ([[16]], [[1]], "x holds 16, outside the 4-bit unsigned activation range 0..15"),
        ([[-1]], [[1]], "x holds -1"),
        ([[1]], [[8]], "w holds 8, outside the 4-bit signed weight range -8..7"),
        ([[1.0]], [[1]], "x must be an integer array"),
        ([[1, 2]], [[1]], "shapes do not chain"),
        ([1, 2], [[1]], "x must have 2 dimensions"),
    ],
)
def test_bad_operands_are_named(x, w, words):
    with pytest.raises(golden.OperandError, match=words):
        golden.gemm(np.array(x), np.array(w), cfg=ArrayConfig())


def test_inputs_are_not_mutated():
    x = np.array([[15, 15, 15]])
    w = np.array([[7], [7], [-8]])
    x0, w0 = x.copy(), w.copy()
    golden.gemm(x, w, cfg=ArrayConfig(acc_bits=8, overflow="saturate"))
    assert (x == x0).all() and (w == w0).all()


@pytest.mark.parametrize("p", [10, 12, 13])
@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_multi_block_scan_matches_reference(p, mode):
    """K spans several scan blocks; leaning weights make overflows rare but present."""
    cfg = ArrayConfig(acc_bits=p, overflow=mode)
    rng = np.random.default_rng(p)
    x = rng.integers(0, 16, (20, 300))
    w = rng.integers(-8, 8, (300, 20))
    w[:, ::3] = np.abs(w[:, ::3]) // 2  # some columns drift upwards
    r = golden.gemm(x, w, cfg=cfg)
    acc, ovf, fin = reference.gemm(x.tolist(), w.tolist(), p, mode)
    np.testing.assert_array_equal(r.out, acc)
    np.testing.assert_array_equal(r.overflow, ovf)
    np.testing.assert_array_equal(r.final_overflow, fin)
    assert ovf.any()
