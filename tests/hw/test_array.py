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
    np.testing.assert_array_equal(r.out, g.out)
    np.testing.assert_array_equal(r.overflow, g.overflow)
    np.testing.assert_array_equal(r.out, acc)
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
    np.testing.assert_array_equal(r.out, g.out)


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_edge_values(mode):
    """Largest activation against the most negative weight everywhere."""
    cfg = ArrayConfig(rows=2, cols=2, acc_bits=8, overflow=mode)
    x = np.full((3, 5), cfg.act_max)
    w = np.full((5, 3), cfg.weight_min)
    w[:, 1] = cfg.weight_max
    r = run_core_gemm(x, w, cfg=cfg)
    g = golden.gemm(x, w, cfg=cfg)
    np.testing.assert_array_equal(r.out, g.out)
    assert r.overflow.all()


def test_random_input_stalls_change_nothing():
    cfg = ArrayConfig(rows=3, cols=2, acc_bits=9, overflow="saturate")
    rng = np.random.default_rng(7)
    x, w = reference.random_operands(rng, cfg, 7, 11, 5)
    r = run_core_gemm(x, w, cfg=cfg, stall_rng=rng, stall_prob=0.4)
    g = golden.gemm(x, w, cfg=cfg)
    np.testing.assert_array_equal(r.out, g.out)
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
    want = golden.output_stage(g.out, cfg=cfg, bias=bias, mult=mult, shift=shift, relu=False)
    np.testing.assert_array_equal(r.out, want)
    np.testing.assert_array_equal(r.overflow, g.overflow)
    assert len(set(want.ravel().tolist())) > 3, "params should spread the outputs"


def test_back_to_back_tiles_with_k_equal_r_never_wait():
    cfg = ArrayConfig(rows=4, cols=2)
    rng = np.random.default_rng(9)
    x, w = reference.random_operands(rng, cfg, 8, 4, 6)  # 2 x 3 tiles of exactly R beats
    r = run_core_gemm(x, w, cfg=cfg)
    np.testing.assert_array_equal(r.out, golden.gemm(x, w, cfg=cfg).out)
    # 6 tiles x 4 beats back to back, then the array (R + C and its input, product and
    # accumulator registers), the output stage (6) and the 3 remaining rows.
    assert r.cycles == 6 * 4 + (4 + 2 + 2) + 6 + 3


@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 3), (3, 1), (2, 3), (4, 4)])
def test_row0_next_looks_one_cycle_ahead(rows, cols):
    """``row0_next`` is high exactly in the cycles before a tile's row 0 leaves, for tiles
    of K < R (which wait), K = 1 and longer, with idle cycles in the input."""
    from amaranth.sim import Simulator

    from oasa.hw.array import SystolicArray

    cfg = ArrayConfig(rows=rows, cols=cols)
    dut = SystolicArray(cfg)
    rng = np.random.default_rng(rows * 10 + cols)
    tiles = [int(k) for k in rng.choice([1, 2, rows, rows + 3], size=12)]
    seen = []

    async def producer(ctx):
        for k in tiles:
            for kk in range(k):
                while rng.random() < 0.2:
                    ctx.set(dut.i_act.valid, 0)
                    ctx.set(dut.i_wgt.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i_act.payload.data, [int(v) for v in rng.integers(0, 16, rows)])
                ctx.set(dut.i_act.payload.first, kk == 0)
                ctx.set(dut.i_act.payload.last, kk == k - 1)
                ctx.set(dut.i_act.valid, 1)
                ctx.set(dut.i_wgt.valid, 1)
                await ctx.tick().until(dut.i_act.ready)
        ctx.set(dut.i_act.valid, 0)
        ctx.set(dut.i_wgt.valid, 0)

    async def monitor(ctx):
        async for _clk, _rst, row0_next, valid, row in ctx.tick().sample(
            dut.row0_next, dut.o_res.valid, dut.o_res.payload.row
        ):
            seen.append((row0_next, valid, row))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_process(monitor)
    sim.run_until(1e-8 * (sum(tiles) * 3 + 40 * (rows + cols)))
    ends = [t for t, (_, v, r) in enumerate(seen) if v and r == 0]
    ahead = [t + 1 for t, (n, _, _) in enumerate(seen) if n]
    assert len(ends) == len(tiles)
    assert ahead == ends
