"""The formal output-stage spec is the golden model: the shadow formula of the proofs
(harness.golden_lane), simulated on random and corner values, equals
oasa.sim.golden.output_stage bit for bit. No formal tools needed."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from oasa.config import ArrayConfig
from oasa.hw.formal.harness import golden_lane
from oasa.sim import golden

CONFIGS = [
    ArrayConfig(rows=1, cols=1),
    ArrayConfig(rows=1, cols=1, act_bits=8, act_signed=True, weight_bits=8, acc_bits=32),
    ArrayConfig(rows=1, cols=1, act_signed=True, acc_bits=8, bias_bits=8, mult_bits=4),
]


def _cases(cfg, rng, n):
    acc = rng.integers(cfg.acc_min, cfg.acc_max + 1, n)
    bias = rng.integers(cfg.bias_min, cfg.bias_max + 1, n)
    mult = rng.integers(0, cfg.mult_max + 1, n)
    shift = rng.integers(0, cfg.shift_max + 1, n)
    # Corners: extreme values, small shifts, exact halves.
    acc[:8] = [cfg.acc_min, cfg.acc_max, 0, -1, 1, 3, -3, 5]
    bias[:8] = [cfg.bias_min, cfg.bias_max, 0, 0, 0, 0, 0, 0]
    mult[:8] = [cfg.mult_max, cfg.mult_max, 1, 1, 1, 1, 1, 1]
    shift[:8] = [cfg.shift_max, 0, 0, 1, 1, 1, 1, 2]
    return acc, bias, mult, shift


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("relu", [False, True])
def test_shadow_formula_is_the_golden_model(cfg, relu):
    m = Module()
    acc = Signal(signed(cfg.acc_bits))
    bias = Signal(signed(cfg.bias_bits))
    mult = Signal(unsigned(cfg.mult_bits))
    shift = Signal(unsigned(cfg.shift_bits))
    out = Signal(signed(cfg.acc_bits))
    m.d.comb += out.eq(golden_lane(m, cfg, 0, acc, bias, mult, shift, int(relu), 1))
    rng = np.random.default_rng(9)
    cases = _cases(cfg, rng, 300)
    seen = []

    async def bench(ctx):
        for a, b, k, s in zip(*cases, strict=True):
            ctx.set(acc, int(a))
            ctx.set(bias, int(b))
            ctx.set(mult, int(k))
            ctx.set(shift, int(s))
            seen.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    a, b, k, s = cases
    want = [
        int(
            golden.output_stage(
                np.array([a[i]]), cfg=cfg, bias=b[i], mult=k[i], shift=s[i], relu=relu
            )[0]
        )
        for i in range(len(a))
    ]
    assert seen == want
