"""SystolicArray + OutputStage (ArrayCore) on Amaranth's simulator, whole GEMMs against
the golden model and the reference loop; cycle counts against the cycle model."""

import numpy as np
import pytest
import reference

from oasa.config import ArrayConfig
from oasa.sim import golden
from oasa.sim.backends.amaranth_core import run_core_gemm
from oasa.sim.cycles import core_cycles

# (config, M, K, N): non-square arrays, P from the product width to 32, both modes, K = 1,
# sizes that are not multiples of R or C, K < R (tiles that wait for the drain).
CASES = [
    (ArrayConfig(rows=2, cols=3, acc_bits=8), 5, 17, 7),
    (ArrayConfig(rows=2, cols=3, acc_bits=8, overflow="saturate"), 3, 40, 4),
    (ArrayConfig(rows=3, cols=2, acc_bits=12), 7, 1, 5),
    (ArrayConfig(rows=4, cols=4, acc_bits=12, overflow="saturate"), 9, 30, 6),
    (ArrayConfig(rows=4, cols=4, acc_bits=16), 4, 2, 4),
    (ArrayConfig(rows=4, cols=4, acc_bits=32, overflow="saturate"), 5, 9, 3),
    (ArrayConfig(rows=2, cols=3, act_signed=True, acc_bits=9, overflow="saturate"), 4, 25, 5),
    (ArrayConfig(rows=3, cols=3, act_bits=8, weight_bits=8, acc_bits=16), 4, 20, 4),
    (
        ArrayConfig(
            rows=2,
            cols=2,
            act_bits=8,
            act_signed=True,
            weight_bits=8,
            acc_bits=20,
            overflow="saturate",
        ),
        3,
        60,
        3,
    ),
    (ArrayConfig(), 9, 12, 10),
    (ArrayConfig(acc_bits=10, overflow="saturate"), 8, 3, 8),
]


@pytest.mark.parametrize(
    "cfg, m, k, n", CASES, ids=lambda v: v.name if isinstance(v, ArrayConfig) else str(v)
)
def test_gemm_matches_golden_and_reference(cfg, m, k, n):
    rng = np.random.default_rng(sum(map(ord, cfg.name)) + m * k * n)
    x, w = reference.random_operands(rng, cfg, m, k, n)
    r = run_core_gemm(x, w, cfg=cfg)
    g = golden.gemm(x, w, cfg=cfg)
    acc, ovf, _ = reference.gemm(x.tolist(), w.tolist(), cfg.acc_bits, cfg.overflow)
    np.testing.assert_array_equal(r.values, g.acc)
    np.testing.assert_array_equal(r.overflow, g.overflow)
    np.testing.assert_array_equal(r.values, acc)
    np.testing.assert_array_equal(r.overflow, ovf)
    assert r.cycles == core_cycles(cfg, m, k, n)


def test_narrow_accumulator_flags_every_kind_of_overflow():
    cfg = ArrayConfig(rows=2, cols=3, acc_bits=8)
    rng = np.random.default_rng(1)
    x, w = reference.random_operands(rng, cfg, 6, 12, 6)
    r = run_core_gemm(x, w, cfg=cfg)
    g = golden.gemm(x, w, cfg=cfg)
    assert (g.overflow & ~g.final_overflow).any() and g.final_overflow.any() and (~g.overflow).any()
    np.testing.assert_array_equal(r.overflow, g.overflow)
    np.testing.assert_array_equal(r.values, g.acc)


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_edge_values(mode):
    """Largest activation against the most negative weight everywhere."""
    cfg = ArrayConfig(rows=2, cols=2, acc_bits=8, overflow=mode)
    x = np.full((3, 5), cfg.act_max)
    w = np.full((5, 3), cfg.weight_min)
    w[:, 1] = cfg.weight_max
    r = run_core_gemm(x, w, cfg=cfg)
    g = golden.gemm(x, w, cfg=cfg)
    np.testing.assert_array_equal(r.values, g.acc)
    assert r.overflow.all()


def test_random_input_stalls_change_nothing():
    cfg = ArrayConfig(rows=3, cols=2, acc_bits=9, overflow="saturate")
    rng = np.random.default_rng(7)
    x, w = reference.random_operands(rng, cfg, 7, 11, 5)
    r = run_core_gemm(x, w, cfg=cfg, stall_rng=rng, stall_prob=0.4)
    g = golden.gemm(x, w, cfg=cfg)
    np.testing.assert_array_equal(r.values, g.acc)
    np.testing.assert_array_equal(r.overflow, g.overflow)
    assert r.cycles > core_cycles(cfg, 7, 11, 5)


def test_requantized_output_with_per_channel_params_across_tiles():
    cfg = ArrayConfig(rows=2, cols=3, act_signed=True, acc_bits=14)
    rng = np.random.default_rng(3)
    x, w = reference.random_operands(rng, cfg, 5, 8, 8)
    bias = rng.integers(-500, 500, 8)
    mult = rng.integers(1, 3000, 8)
    shift = rng.integers(5, 16, 8)
    r = run_core_gemm(x, w, cfg=cfg, bias=bias, mult=mult, shift=shift, relu=False, requant=True)
    g = golden.gemm(x, w, cfg=cfg)
    want = golden.output_stage(g.acc, cfg=cfg, bias=bias, mult=mult, shift=shift, relu=False)
    np.testing.assert_array_equal(r.values, want)
    np.testing.assert_array_equal(r.overflow, g.overflow)
    assert len(set(want.ravel().tolist())) > 3, "params should spread the outputs"


def test_back_to_back_tiles_with_k_equal_r_never_wait():
    cfg = ArrayConfig(rows=4, cols=2)
    rng = np.random.default_rng(9)
    x, w = reference.random_operands(rng, cfg, 8, 4, 6)  # 2 x 3 tiles of exactly R beats
    r = run_core_gemm(x, w, cfg=cfg)
    np.testing.assert_array_equal(r.values, golden.gemm(x, w, cfg=cfg).acc)
    # 6 tiles x 4 beats back to back, then the array (R + C and its input, product and
    # accumulator registers), the output stage and the 3 remaining rows.
    assert r.cycles == 6 * 4 + (4 + 2 + 2) + 4 + 3
