"""ProcessingElement on Amaranth's simulator, beat by beat against reference.dot."""

import numpy as np
import pytest
import reference
from util import run_bench

from oasa.config import ArrayConfig
from oasa.hw.pe import ProcessingElement

CONFIGS = [
    ArrayConfig(acc_bits=8),
    ArrayConfig(acc_bits=8, overflow="saturate"),
    ArrayConfig(acc_bits=12),
    ArrayConfig(acc_bits=16, overflow="saturate"),
    ArrayConfig(acc_bits=32),
    ArrayConfig(act_signed=True, acc_bits=9, overflow="saturate"),
    ArrayConfig(act_bits=8, weight_bits=8, acc_bits=16),
    ArrayConfig(act_bits=8, act_signed=True, weight_bits=8, acc_bits=17, overflow="saturate"),
]


def rtl_pe(cfg, beats, pe=ProcessingElement):
    """Drive (act, wgt, valid, first, last) beats, one per cycle: the operands of a beat
    with the markers of the one before (the PE registers the product in between). Return,
    per beat, (acc, ovf, done) after its markers went in and (act_out, wgt_out) after its
    operands did. ``pe`` builds the PE (``pe(cfg)``)."""
    dut = pe(cfg)
    state, forwarded = [], []

    async def bench(ctx):
        for t in range(len(beats) + 1):
            act, wgt = beats[t][:2] if t < len(beats) else (0, 0)
            marks = beats[t - 1][2:] if t else (0, 0, 0)
            ctx.set(dut.act, act)
            ctx.set(dut.wgt, wgt)
            for port, value in zip((dut.valid, dut.first, dut.last), marks, strict=True):
                ctx.set(port, value)
            await ctx.tick()
            if t < len(beats):
                forwarded.append((ctx.get(dut.act_out), ctx.get(dut.wgt_out)))
            if t:
                state.append((ctx.get(dut.acc), ctx.get(dut.ovf), ctx.get(dut.done)))

    run_bench(dut, bench, name=f"pe_{cfg.name}")
    return [s + f for s, f in zip(state, forwarded, strict=True)]


def expected(cfg, beats):
    """What the PE must show after each beat, from the reference contract."""
    out, xs, ws = [], [], []
    acc, flag = 0, False
    for act, wgt, valid, first, last in beats:
        if valid:
            if first:
                xs, ws = [], []
            xs.append(act)
            ws.append(wgt)
            acc, flag, _ = reference.dot(xs, ws, cfg.acc_bits, cfg.overflow)
        out.append((acc, flag, bool(valid and last), act, wgt))
    return out


def random_beats(rng, cfg, n):
    """Dot products of assorted lengths (1 to 300 beats), each leaning positive or
    negative so that narrow accumulators overflow, with idle beats mixed in."""
    beats = []
    # Two extreme dot products first: the largest products of each sign, 300 times.
    for wgt in (cfg.weight_min, cfg.weight_max):
        beats += [(cfg.act_max, wgt, 1, int(i == 0), int(i == 299)) for i in range(300)]
    while len(beats) < n:
        length = int(rng.choice([1, 2, 5, 40, 300]))
        lean = rng.choice([cfg.weight_min, cfg.weight_max])
        for i in range(length):
            act = int(
                rng.choice([cfg.act_min, cfg.act_max, rng.integers(cfg.act_min, cfg.act_max + 1)])
            )
            wgt = int(
                lean if rng.random() < 0.6 else rng.integers(cfg.weight_min, cfg.weight_max + 1)
            )
            if i and rng.random() < 0.15:
                beats.append((act, wgt, 0, int(rng.integers(2)), int(rng.integers(2))))  # idle
            beats.append((act, wgt, 1, int(i == 0), int(i == length - 1)))
    return beats


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_random_stream(cfg):
    rng = np.random.default_rng(sum(map(ord, cfg.name)))
    beats = random_beats(rng, cfg, 1600)
    got = [(a, bool(o), bool(d), x, w) for a, o, d, x, w in rtl_pe(cfg, beats)]
    want = expected(cfg, beats)
    assert got == want
    reachable = 300 * max(abs(cfg.product_min), cfg.product_max) > cfg.acc_max
    assert any(f for _, f, *_ in want) == reachable, "overflow must occur where it can"


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_transient_overflow_keeps_flag(mode):
    """210 leaves an 8-bit range, -120 brings the exact sum back to 90: wrap returns 90
    with the flag set, saturate returns 127 - 120 = 7."""
    cfg = ArrayConfig(acc_bits=8, overflow=mode)
    beats = [(15, 7, 1, 1, 0), (15, 7, 1, 0, 0), (15, -8, 1, 0, 1)]
    acc, ovf, done, *_ = rtl_pe(cfg, beats)[-1]
    assert (acc, ovf, done) == ((90 if mode == "wrap" else 7), 1, 1)


@pytest.mark.parametrize("weight, end", [(7, 127), (-8, -128)])
def test_saturation_at_both_ends(weight, end):
    cfg = ArrayConfig(acc_bits=8, overflow="saturate")
    beats = [(15, weight, 1, i == 0, 0) for i in range(6)]
    assert [a for a, *_ in rtl_pe(cfg, beats)][-1] == end


def test_first_clears_and_restarts():
    cfg = ArrayConfig(acc_bits=8)
    beats = [(15, 7, 1, 1, 0), (15, 7, 1, 0, 1), (2, 3, 1, 1, 0), (0, 0, 0, 0, 0), (1, -1, 1, 0, 1)]
    seen = rtl_pe(cfg, beats)
    assert seen[1][:3] == ((210 + 128) % 256 - 128, 1, 1)
    assert seen[2][:3] == (6, 0, 0)  # flag cleared by the new dot product
    assert seen[3][:3] == (6, 0, 0)  # an invalid beat changes nothing
    assert seen[4][:3] == (5, 0, 1)
