"""OutputStage on Amaranth's simulator against golden.output_stage and reference."""

import numpy as np
import pytest
import reference
from util import run_bench

from oasa.config import ArrayConfig
from oasa.fpga.ecp5_dsp import ECP5DSPStage
from oasa.fpga.multipliers import ShiftAddStage
from oasa.hw.output_stage import OutputStage
from oasa.sim import golden

#: The production stage, and those FPGA builds use: the product in LUTs, or in an ECP5
#: DSP block with its own registers (simulated by the block's model when y, mult fit it).
STAGES = [OutputStage, ShiftAddStage, ECP5DSPStage]


def rtl_stage(cfg, rows, stage=OutputStage):
    """rows: list of (acc[C], bias[C], mult[C], shift[C], relu, requant) per beat."""
    dut = stage(cfg)
    out = []

    async def bench(ctx):
        for i, (acc, bias, mult, shift, relu, requant) in enumerate(rows):
            ctx.set(dut.i_res.valid, 1)
            ctx.set(dut.i_res.payload.acc, [int(v) for v in acc])
            ctx.set(dut.i_res.payload.ovf, [(i + j) % 2 for j in range(cfg.cols)])
            ctx.set(dut.i_res.payload.row, i % cfg.rows)
            ctx.set(dut.params.bias, [int(v) for v in bias])
            ctx.set(dut.params.mult, [int(v) for v in mult])
            ctx.set(dut.params.shift, [int(v) for v in shift])
            ctx.set(dut.relu, relu)
            ctx.set(dut.requant, requant)
            await ctx.tick()
        ctx.set(dut.i_res.valid, 0)
        for _ in range(dut.latency + 2):
            await ctx.tick()

    async def monitor(ctx):
        for _ in range(len(rows) + dut.latency + 2):
            _, _, valid, payload = await ctx.tick().sample(dut.o_res.valid, dut.o_res.payload)
            if valid:
                out.append(
                    (
                        [int(v) for v in payload.value],
                        [int(f) for f in payload.ovf],
                        int(payload.row),
                    )
                )

    run_bench(dut, bench, monitor, name=f"stage_{cfg.name}")
    return out


def check(cfg, rows, stage=OutputStage):
    out = rtl_stage(cfg, rows, stage)
    assert len(out) == len(rows)
    for i, ((acc, bias, mult, shift, relu, requant), (value, ovf, row)) in enumerate(
        zip(rows, out, strict=True)
    ):
        acc = np.asarray(acc)
        if requant:
            want = golden.output_stage(
                acc[None, :], cfg=cfg, bias=bias, mult=mult, shift=shift, relu=relu
            )[0]
            ref = [
                reference.requantize(int(a), int(b), int(m), int(s), relu, cfg.act_min, cfg.act_max)
                for a, b, m, s in zip(acc, bias, mult, shift, strict=True)
            ]
            assert want.tolist() == ref
        else:
            want = acc
        assert value == want.tolist(), f"beat {i}"
        assert ovf == [(i + j) % 2 for j in range(cfg.cols)] and row == i % cfg.rows


CONFIGS = [
    ArrayConfig(rows=2, cols=3),
    ArrayConfig(rows=2, cols=3, bias_bits=16),  # y, mult fit one ECP5 DSP block
    ArrayConfig(rows=4, cols=4, act_signed=True, acc_bits=12),
    ArrayConfig(rows=4, cols=4, act_signed=True, acc_bits=12, bias_bits=12),
    ArrayConfig(rows=2, cols=2, act_bits=8, weight_bits=8, acc_bits=32, act_signed=True),
]


@pytest.mark.parametrize("stage", STAGES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_random(cfg, stage):
    rng = np.random.default_rng(sum(map(ord, cfg.name)))
    c = cfg.cols
    rows = []
    for _ in range(120):
        rows.append(
            (
                rng.integers(cfg.acc_min, cfg.acc_max + 1, c),
                rng.integers(cfg.bias_min, cfg.bias_max + 1, c) >> rng.integers(0, 32),
                rng.integers(0, cfg.mult_max + 1, c) >> rng.integers(0, 16),
                rng.integers(0, cfg.shift_max + 1, c),
                bool(rng.integers(2)),
                bool(rng.random() < 0.85),
            )
        )
    check(cfg, rows, stage)


@pytest.mark.parametrize("bias_bits", [16, 32])
@pytest.mark.parametrize("stage", STAGES, ids=lambda c: c.__name__)
def test_corners(stage, bias_bits):
    cfg = ArrayConfig(rows=2, cols=4, act_signed=True, acc_bits=16, bias_bits=bias_bits)
    z = [0] * 4
    rows = [
        # exactly .5 rounds up, for positive and negative values
        ([1, -1, 3, -3], z, [1] * 4, [1] * 4, False, True),
        ([2, -2, 6, -6], z, [1] * 4, [2] * 4, False, True),
        # shift 0 and the largest shift
        ([5, -5, 7, -8], z, [1] * 4, [0] * 4, False, True),
        (
            [cfg.acc_max, cfg.acc_min, 1, -1],
            [cfg.bias_max, cfg.bias_min, 0, 0],
            [cfg.mult_max] * 4,
            [cfg.shift_max] * 4,
            False,
            True,
        ),
        # clamp at both ends, ReLU off and on
        ([1000, -1000, 7, -8], z, [1] * 4, [0] * 4, False, True),
        ([1000, -1000, 7, -8], z, [1] * 4, [0] * 4, True, True),
        # raw mode ignores every parameter
        ([cfg.acc_max, cfg.acc_min, -1, 0], [99] * 4, [3] * 4, [5] * 4, True, False),
    ]
    check(cfg, rows, stage)
    cfg_u = ArrayConfig(rows=2, cols=2)
    check(
        cfg_u,
        [
            ([100, -100], [0, 0], [1, 1], [0, 0], False, True),
            ([-3, 31], [0, 0], [1, 1], [1, 1], False, True),
        ],
        stage,
    )
