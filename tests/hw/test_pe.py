"""ProcessingElement on Amaranth's simulator, beat by beat against reference.dot.

A beat is (act, wgt, valid, first, last) or (act, wgt, valid, first, last, init_acc,
init_ovf): a dot product starts on its ``first`` beat from the initial partial sum and
flag (0 and clear when not given), so that it can continue an earlier call's.
"""

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


def full(beat) -> tuple:
    """``beat`` as (act, wgt, valid, first, last, init_acc, init_ovf): 0 and clear when the
    initial partial sum and flag are not given."""
    return (*beat, 0, 0) if len(beat) == 5 else tuple(beat)


def rtl_pe(cfg, beats, pe=ProcessingElement):
    """Drive beats (see the module docstring), one per cycle: the operands of a beat with
    the markers and initial partial sum and flag of the one before (the PE registers the
    product in between, and reads ``init_acc``/``init_ovf`` with ``first``). Return, per
    beat, (acc, ovf, done) after its markers went in and (act_out, wgt_out) after its
    operands did. ``pe`` builds the PE (``pe(cfg)``)."""
    dut = pe(cfg)
    state, forwarded = [], []
    marked = (dut.valid, dut.first, dut.last, dut.init_acc, dut.init_ovf)

    async def bench(ctx):
        for t in range(len(beats) + 1):
            act, wgt = beats[t][:2] if t < len(beats) else (0, 0)
            marks = full(beats[t - 1])[2:] if t else (0,) * len(marked)
            ctx.set(dut.act, act)
            ctx.set(dut.wgt, wgt)
            for port, value in zip(marked, marks, strict=True):
                ctx.set(port, value)
            await ctx.tick()
            if t < len(beats):
                forwarded.append((ctx.get(dut.act_out), ctx.get(dut.wgt_out)))
            if t:
                state.append((ctx.get(dut.acc), ctx.get(dut.ovf), ctx.get(dut.done)))

    run_bench(dut, bench, name=f"pe_{cfg.name}")
    return [s + f for s, f in zip(state, forwarded, strict=True)]


def expected(cfg, beats):
    """What the PE must show after each beat, from the reference contract (plain integers,
    wrapped or clamped at P bits after every term, the flag sticky).

    A dot product continued from an initial partial sum s (in the P-bit range) is the
    reference's dot product with s * 1 as its first term: that term sets the sum to s
    without wrapping, clamping or flagging. Its flag is the initial flag or the
    reference's."""
    out, xs, ws = [], [], []
    acc, flag, start_flag = 0, False, False
    assert all(cfg.acc_min <= full(b)[5] <= cfg.acc_max for b in beats), "init_acc out of range"
    for act, wgt, valid, first, last, init_acc, init_ovf in map(full, beats):
        if valid:
            if first:
                xs, ws, start_flag = [init_acc], [1], bool(init_ovf)
            xs.append(act)
            ws.append(wgt)
            acc, flag, _ = reference.dot(xs, ws, cfg.acc_bits, cfg.overflow)
            flag = flag or start_flag
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


def random_init(rng, cfg) -> int:
    """An initial partial sum over the P-bit range, its ends and their neighbours common."""
    lo, hi = cfg.acc_min, cfg.acc_max
    near = int(rng.integers(0, cfg.product_max + 1))  # a product or two from an end
    pick = [lo, hi, lo + near, hi - near, 0, int(rng.integers(lo, hi + 1))]
    return pick[int(rng.integers(len(pick)))]


def with_init(rng, cfg, beats):
    """``beats`` with an initial partial sum and flag each: on ``first`` beats random (the
    first two valid ones at the range's bottom and top, where :func:`random_beats` starts
    with the most negative and the largest products, then :func:`random_init`; the flag
    set one time in four), on every other beat random garbage, which the PE must ignore."""
    ends = [cfg.acc_min, cfg.acc_max]
    out = []
    for beat in beats:
        act, wgt, valid, first, last = beat[:5]
        if first:
            init_acc = ends.pop(0) if valid and ends else random_init(rng, cfg)
            init_ovf = int(rng.random() < 0.25)
        else:
            init_acc = int(rng.integers(cfg.acc_min, cfg.acc_max + 1))
            init_ovf = int(rng.integers(2))
        out.append((act, wgt, valid, first, last, init_acc, init_ovf))
    return out


def _zeroed(beats, field: int):
    """``beats`` with ``init_acc`` (field 5) or ``init_ovf`` (6) set to 0 in every beat."""
    return [(*b[:field], 0, *b[field + 1 :]) for b in beats]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_random_stream(cfg):
    rng = np.random.default_rng(sum(map(ord, cfg.name)))
    beats = random_beats(rng, cfg, 1600)
    got = [(a, bool(o), bool(d), x, w) for a, o, d, x, w in rtl_pe(cfg, beats)]
    want = expected(cfg, beats)
    assert got == want
    reachable = 300 * max(abs(cfg.product_min), cfg.product_max) > cfg.acc_max
    assert any(f for _, f, *_ in want) == reachable, "overflow must occur where it can"


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_random_continued_stream(cfg):
    """The random stream again, every dot product continued from a random initial partial
    sum and flag, and garbage on ``init_acc``/``init_ovf`` in every other beat."""
    rng = np.random.default_rng(sum(map(ord, "init" + cfg.name)))
    beats = with_init(rng, cfg, random_beats(rng, cfg, 1600))
    got = [(a, bool(o), bool(d), x, w) for a, o, d, x, w in rtl_pe(cfg, beats)]
    assert got == expected(cfg, beats)
    # The stimulus reaches what it is for: both initial values change the results (a PE
    # that ignored either would fail above), and garbage that would change them if it
    # were read is there on other beats.
    want_acc = [w[0] for w in expected(cfg, beats)]
    want_ovf = [w[1] for w in expected(cfg, beats)]
    assert want_acc != [w[0] for w in expected(cfg, _zeroed(beats, 5))], "init_acc unused"
    assert want_ovf != [w[1] for w in expected(cfg, _zeroed(beats, 6))], "init_ovf unused"
    assert any(b[5] for b in beats if b[2] and not b[3]), "no init_acc garbage"
    assert any(b[6] for b in beats if b[2] and not b[3]), "no init_ovf garbage"


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_continued_from_the_range_ends(mode):
    """P = 8: starting at 127 or -128, one product pushes the sum out (wrap: it comes
    around, saturate: it stays at the end; the flag is set either way); a zero product
    keeps the end without a flag; a start in range behaves like an earlier partial sum."""
    cfg = ArrayConfig(acc_bits=8, overflow=mode)
    beats = [
        (15, 7, 1, 1, 1, 127, 0),  # 127 + 105 = 232
        (15, -8, 1, 1, 1, -128, 0),  # -128 - 120 = -248
        (0, 7, 1, 1, 0, 127, 0),  # 127 + 0: at the end, in range
        (1, 1, 1, 0, 1, -5, 1),  # 128: out; init on a non-first beat is ignored
        (3, -2, 1, 1, 0, 100, 0),  # 94
        (2, 7, 1, 0, 1, 0, 0),  # 108
    ]
    seen = [s[:2] for s in rtl_pe(cfg, beats)]
    assert seen == [s[:2] for s in expected(cfg, beats)]
    ends = {"wrap": [(-24, 1), (8, 1)], "saturate": [(127, 1), (-128, 1)]}[mode]
    assert seen[:2] == ends
    assert seen[2] == (127, 0)
    assert seen[3] == ((-128, 1) if mode == "wrap" else (127, 1))
    assert seen[4:] == [(94, 0), (108, 0)]


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_initial_flag_stays_set(mode):
    """A dot product started with ``init_ovf`` keeps its flag through in-range sums and idle
    beats; the next ``first`` restarts it from its own ``init_ovf`` (0: clear), and an
    ``init_ovf`` on any other beat, valid or idle, is ignored."""
    cfg = ArrayConfig(acc_bits=8, overflow=mode)
    beats = [
        (1, 1, 1, 1, 0, 10, 1),  # 11, flag from init_ovf
        (2, 3, 1, 0, 0, 0, 0),  # 17
        (5, 5, 0, 1, 0, 50, 0),  # idle, even with first and init: ignored
        (1, -1, 1, 0, 1, 0, 0),  # 16, still flagged
        (1, 2, 1, 1, 0, -20, 0),  # -18: a new dot product, flag clear
        (1, 1, 1, 0, 0, 0, 1),  # -17: init_ovf on a non-first beat: ignored
        (0, 0, 0, 0, 1, 0, 1),  # idle with init_ovf: ignored
        (1, 1, 1, 0, 1, 0, 0),  # -16
    ]
    seen = [s[:3] for s in rtl_pe(cfg, beats)]
    assert seen == [s[:3] for s in expected(cfg, beats)]
    assert seen == [
        (11, 1, 0),
        (17, 1, 0),
        (17, 1, 0),
        (16, 1, 1),
        (-18, 0, 0),
        (-17, 0, 0),
        (-17, 0, 0),
        (-16, 0, 1),
    ]


def test_wrap_continued_transient_overflow():
    """Wrap mode: a continued dot product that leaves the range and comes back ends at the
    exact sum, init_acc included, with the flag set."""
    cfg = ArrayConfig(acc_bits=8)
    beats = [(15, 7, 1, 1, 0, 100, 0), (15, -8, 1, 0, 1, 0, 0)]  # 205 (out), 85
    assert [s[:3] for s in rtl_pe(cfg, beats)] == [(205 - 256, 1, 0), (85, 1, 1)]


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
