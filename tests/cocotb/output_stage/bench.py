"""cocotb bench 3: the output stage against ``golden.output_stage``.

Directed corners — rounding at exactly .5 (positive and negative), shift 0 and the
largest shift, negative sums, clamping at both ends, ReLU on and off, raw mode — and
random rows with random parameters and gaps, with garbage on every input while ``valid``
is low. Flags and row indices must pass through unchanged, in order.
"""

from __future__ import annotations

import cocotb
import numpy as np
from oasa_tb.coverage import Coverage
from oasa_tb.stage import StageBeat, StageDriver
from oasa_tb.tb import ClockedTB


async def setup(dut, test, pause="none"):
    tb = ClockedTB(dut, "output_stage")
    drv = StageDriver(tb, pause=pause)
    await tb.start()
    return tb, drv, Coverage("output_stage", test, tb.cfg)


def beat(tb, acc, *, bias=0, mult=1, shift=0, relu=False, requant=True):
    cfg, rng = tb.cfg, tb.rng
    c = cfg.cols

    def lanes(v):
        return [int(e) for e in np.broadcast_to(np.asarray(v, dtype=object), (c,))]

    return StageBeat(
        acc=lanes(acc),
        ovf=[int(b) for b in rng.integers(0, 2, c)],
        row=int(rng.integers(0, cfg.rows)),
        bias=lanes(bias),
        mult=lanes(mult),
        shift=lanes(shift),
        relu=bool(relu),
        requant=bool(requant),
    )


async def finish(drv, cov):
    await drv.drain()
    drv.sb.finish()
    for k, v in drv.events.items():
        cov.add(f"stage_{k}", v)
    cov.stream(drv)
    cov.write()


def clip_acc(cfg, v):
    return int(min(max(int(v), cfg.acc_min), cfg.acc_max))


@cocotb.test()
async def test_rounding_ties(dut):
    """z / 2**s exactly halfway between two integers rounds up (towards +inf), for
    positive and negative z, small and large s (ties built as odd * 2**(s-1))."""
    tb, drv, cov = await setup(dut, "rounding_ties")
    cfg, rng = tb.cfg, tb.rng
    for s in range(1, cfg.shift_max + 1):
        # z = y * mult with y odd * 2**f, mult odd * 2**e, e + f = s - 1.
        e_max = min(cfg.mult_bits - 1, s - 1)
        f = s - 1 - int(rng.integers(0, e_max + 1))
        e = s - 1 - f
        if f > cfg.bias_bits - 3 or (1 << e) > cfg.mult_max:
            continue  # y = acc + bias cannot reach 2**f
        lanes = []
        for _ in range(cfg.cols):
            y = (2 * int(rng.integers(0, 4)) + 1) << f
            y = -y if rng.random() < 0.5 else y
            mult = (2 * int(rng.integers(0, max(1, (cfg.mult_max >> e) // 2))) + 1) << e
            mult = min(mult, cfg.mult_max)
            if mult % (1 << e) or (mult >> e) % 2 == 0:
                mult = 1 << e
            acc = clip_acc(cfg, int(rng.integers(cfg.acc_min, cfg.acc_max + 1)) if f > 8 else 0)
            bias = y - acc
            if not cfg.bias_min <= bias <= cfg.bias_max:
                acc, bias = clip_acc(cfg, y), y - clip_acc(cfg, y)
            lanes.append((acc, bias, mult))
        acc, bias, mult = zip(*lanes, strict=True)
        for relu in (False, True):
            drv.send(beat(tb, list(acc), bias=list(bias), mult=list(mult), shift=s, relu=relu))
    # Small exact ones, in every lane: +-1/2, +-3/2, +-5/4 ...
    for acc in ([1, -1, 3, -3], [5, -5, 7, -7]):
        drv.send(beat(tb, (acc * cfg.cols)[: cfg.cols], shift=1))
        drv.send(beat(tb, (acc * cfg.cols)[: cfg.cols], shift=2))
    await finish(drv, cov)
    assert drv.events["ties"] > 0


@cocotb.test()
async def test_shift_extremes(dut):
    """Shift 0 (no rounding) and the largest shift, with the largest magnitudes."""
    tb, drv, cov = await setup(dut, "shift_extremes")
    cfg = tb.cfg
    big = [
        (cfg.acc_max, cfg.bias_max, cfg.mult_max),
        (cfg.acc_min, cfg.bias_min, cfg.mult_max),
        (cfg.acc_max, 0, 1),
        (cfg.acc_min, 0, 1),
        (0, 0, 0),
        (-1, 0, cfg.mult_max),
        (1, 0, cfg.mult_max),
    ]
    for s in (0, cfg.shift_max, cfg.shift_max - 1, 1):
        for relu in (False, True):
            for acc, bias, mult in big:
                drv.send(beat(tb, acc, bias=bias, mult=mult, shift=s, relu=relu))
    # Per-lane mixed shifts: 0 next to the largest.
    mixed = [0 if j % 2 else cfg.shift_max for j in range(cfg.cols)]
    drv.send(beat(tb, cfg.acc_max, bias=cfg.bias_max, mult=cfg.mult_max, shift=mixed))
    await finish(drv, cov)


@cocotb.test()
async def test_clamp_and_relu(dut):
    """Negative and positive sums around both ends of the activation range, ReLU off and
    on; raw mode (requant low) passes the accumulator through whatever the parameters."""
    tb, drv, cov = await setup(dut, "clamp_and_relu")
    cfg = tb.cfg
    points = sorted(
        {
            cfg.act_min - 1,
            cfg.act_min,
            cfg.act_min + 1,
            -1,
            0,
            1,
            cfg.act_max - 1,
            cfg.act_max,
            cfg.act_max + 1,
            cfg.acc_max,
            cfg.acc_min,
        }
    )
    points = [clip_acc(cfg, p) for p in points]
    for relu in (False, True):
        for i in range(0, len(points), cfg.cols):
            chunk = (points[i : i + cfg.cols] * cfg.cols)[: cfg.cols]
            drv.send(beat(tb, chunk, relu=relu))
            drv.send(beat(tb, chunk, bias=-3, mult=2, shift=1, relu=relu))
    for acc in (cfg.acc_max, cfg.acc_min, -1, 0):
        drv.send(beat(tb, acc, bias=12345, mult=3, shift=5, relu=True, requant=False))
    await finish(drv, cov)
    ev = drv.events
    assert ev["clamp_high"] and ev["relu_zeroed"] and ev["raw"]
    if cfg.act_signed:
        assert ev["clamp_low"]


@cocotb.test()
@cocotb.parametrize(pause=["none", "random", "bursty"])
async def test_random(dut, pause):
    """Random rows and parameters (scaled so outputs spread over the range), with gaps."""
    tb, drv, cov = await setup(dut, f"random_{pause}", pause=pause)
    cfg, rng = tb.cfg, tb.rng
    c = cfg.cols
    for _ in range(int(300 * tb.scale)):
        acc = rng.integers(cfg.acc_min, cfg.acc_max + 1, c) >> rng.integers(0, cfg.acc_bits, c)
        mult = rng.integers(0, cfg.mult_max + 1, c) >> rng.integers(0, cfg.mult_bits, c)
        mag = [max(1, abs(int(a)) * max(1, int(m))) for a, m in zip(acc, mult, strict=True)]
        shift = [
            int(np.clip(v.bit_length() - cfg.act_bits + rng.integers(-3, 4), 0, cfg.shift_max))
            for v in mag
        ]
        bias = rng.integers(-(1 << 12), 1 << 12, c)
        if rng.random() < 0.1:
            bias = rng.integers(cfg.bias_min, cfg.bias_max + 1, c, dtype=np.int64)
        drv.send(
            beat(
                tb,
                acc.tolist(),
                bias=bias.tolist(),
                mult=mult.tolist(),
                shift=shift,
                relu=bool(rng.integers(2)),
                requant=bool(rng.random() < 0.9),
            )
        )
    await finish(drv, cov)
