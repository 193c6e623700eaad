"""Driver and checker for one ``ProcessingElement`` toplevel.

The PE has no streams: every cycle it takes the operands of a beat (act, wgt) and the
markers (valid, first, last) of the beat before, whose product it registered, with that
beat's initial partial sum and flag (init_acc, init_ovf: a ``first`` beat starts from
them, so that a dot product can continue an earlier call's; other beats' are ignored);
one cycle later it shows the forwarded operands, and the accumulator, the sticky flag and
``done`` of the marked beat. The agent drives a list of beats, one per cycle, and checks
every output of every cycle. Every input is driven in every cycle: in a cycle without a
marked beat, init_acc and init_ovf carry random garbage (an undriven port would be X on
Icarus).
The expected accumulator and flag after each beat come from :func:`reference_states`, the
contract in plain integers, one term at a time from the initial values. Dot products that
start from 0 and a clear flag are also checked against the golden model
(:func:`prefix_states` runs ``golden.gemm`` on every prefix of one at once), so the two
references cannot drift apart.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from oasa.hw.layouts import acc_shape, act_shape, weight_shape
from oasa.sim import golden

from .packing import codec
from .scoreboard import Scoreboard

__all__ = ["Beat", "Dot", "PEAgent", "expected_states", "prefix_states", "reference_states"]

_PREFIX_ROWS = 512  # prefixes evaluated per golden.gemm call


class Beat(tuple):
    """(act, wgt, valid, first, last, init_acc, init_ovf); the initial partial sum and flag
    count on a valid ``first`` beat only."""

    __slots__ = ()

    def __new__(cls, act, wgt, valid=1, first=0, last=0, init_acc=0, init_ovf=0):
        fields = (act, wgt, valid, first, last, init_acc, init_ovf)
        return super().__new__(cls, tuple(int(v) for v in fields))


class Dot(NamedTuple):
    """A finished dot product as the PE must show it: its terms, the P-bit result, whether
    the flag is set (some partial sum left the range, or the initial flag), whether the
    exact final sum (initial partial sum included) is out of range, and the initial
    partial sum and flag it started from."""

    x: list
    w: list
    acc: int
    ovf: bool
    fin: bool
    init_acc: int = 0
    init_ovf: bool = False


def prefix_states(xs, ws, cfg):
    """Accumulator and sticky flag after each term of one dot product (golden model).

    Row i of the operand matrix is the dot product cut after term i (later terms zeroed:
    a zero term changes neither the sum nor a clamped state), so one ``gemm`` call gives
    every prefix.
    """
    x = np.asarray(xs, dtype=np.int64)
    w = np.asarray(ws, dtype=np.int64)[:, None]
    n = x.size
    acc = np.empty(n, dtype=np.int64)
    ovf = np.empty(n, dtype=bool)
    fin = np.empty(n, dtype=bool)
    cols = np.arange(n)
    for p0 in range(0, n, _PREFIX_ROWS):
        ends = np.arange(p0, min(n, p0 + _PREFIX_ROWS))
        xm = np.where(cols[None, :] <= ends[:, None], x[None, :], 0)
        r = golden.gemm(xm, w, cfg=cfg)
        acc[ends] = r.out[:, 0]
        ovf[ends] = r.overflow[:, 0]
        fin[ends] = r.final_overflow[:, 0]
    return acc, ovf, fin


def reference_states(beats, cfg):
    """The contract in plain integers, written from its text: per beat (acc, ovf, exact)
    after it, where a valid beat adds its product to the partial sum (the initial one,
    ``init_acc``, on a ``first`` beat) and wraps or clamps the sum at P bits, the flag
    restarts from ``init_ovf`` on a ``first`` beat and is set whenever a partial sum
    leaves the P-bit range, and ``exact`` is the unbounded sum; invalid beats change
    nothing (state from reset: 0 and clear)."""
    lo, hi = cfg.acc_min, cfg.acc_max
    acc, ovf, exact = 0, False, 0
    out = []
    for a, w, valid, first, _last, init_acc, init_ovf in beats:
        if valid:
            if first:
                if not lo <= init_acc <= hi:
                    raise ValueError(f"init_acc {init_acc} outside the P-bit range")
                acc, ovf, exact = init_acc, bool(init_ovf), init_acc
            t = acc + a * w
            exact += a * w
            ovf = ovf or not lo <= t <= hi
            acc = (t - lo) % 2**cfg.acc_bits + lo if cfg.overflow == "wrap" else min(max(t, lo), hi)
        out.append((acc, ovf, exact))
    return out


def expected_states(beats, cfg):
    """What the PE must show one cycle after each beat: (acc, ovf, done) per beat, and the
    finished dot products (:class:`Dot`)."""
    beats = [Beat(*b) for b in beats]
    ref = reference_states(beats, cfg)
    lo, hi = cfg.acc_min, cfg.acc_max
    states = []
    dots = []
    # Group the valid beats into dot products (a valid ``first`` starts one; valid beats
    # before any ``first`` continue the state from reset: 0 and clear).
    segments = []
    cur = None
    for i, (a, w, valid, first, _last, init_acc, init_ovf) in enumerate(beats):
        if valid:
            if first or cur is None:
                start = (init_acc, bool(init_ovf)) if first else (0, False)
                cur = {"idx": [], "x": [], "w": [], "start": start}
                segments.append(cur)
            cur["idx"].append(i)
            cur["x"].append(a)
            cur["w"].append(w)
    # The golden model agrees with the reference on the dot products it can state.
    for seg in segments:
        if seg["start"] != (0, False):
            continue
        a_s, o_s, _ = prefix_states(seg["x"], seg["w"], cfg)
        want = [(int(a), bool(o)) for a, o in zip(a_s, o_s, strict=True)]
        got = [ref[i][:2] for i in seg["idx"]]
        assert got == want, "the bench's reference and the golden model disagree"
    seg_of = {i: (seg, j) for seg in segments for j, i in enumerate(seg["idx"])}
    for i, (_, _, valid, _, last, _, _) in enumerate(beats):
        acc, ovf, exact = ref[i]
        if valid and last:
            seg, j = seg_of[i]
            x, w = seg["x"][: j + 1], seg["w"][: j + 1]
            dots.append(Dot(x, w, acc, ovf, not lo <= exact <= hi, *seg["start"]))
        states.append((acc, int(ovf), int(bool(valid and last))))
    return states, dots


class PEAgent:
    """Drives beats into the PE, one per cycle, and checks the outputs of every cycle."""

    def __init__(self, tb):
        self.tb = tb
        self.cfg = cfg = tb.cfg
        d = tb.dut
        self.h_in = [d.act, d.wgt, d.valid, d.first, d.last, d.init_acc, d.init_ovf]
        # The PE forwards its operands only; the array delivers the markers itself.
        self.h_fwd = [d.act_out, d.wgt_out]
        self.h_acc, self.h_ovf, self.h_done = d.acc, d.ovf, d.done
        self.c_act = codec(act_shape(cfg))
        self.c_wgt = codec(weight_shape(cfg))
        self.c_acc = codec(acc_shape(cfg))
        self.garbage = tb.sub_rng("pe init garbage")  # init values of unmarked cycles
        self.sb = Scoreboard("pe", tb.log)
        self.beats: list = []
        self.expected: list = []
        self.pos = 0  # next beat to drive
        self.checked = 0
        self.prev_ovf = 0
        self.flag_sets = 0
        self.flag_clears = 0
        self._last_driven = None
        self._ops = None  # the beat whose operands are driven in this cycle
        self._marks = None  # the beat whose markers are driven in this cycle
        self._check_fwd = None  # the beat whose operands show at act_out/wgt_out now
        self._check_state = None  # the beat whose acc/ovf/done show now

    def load(self, beats) -> list:
        """Queue beats; returns the finished dot products they contain (:class:`Dot`)."""
        beats = [Beat(*b) for b in beats]
        states, dots = expected_states(beats, self.cfg)
        # The state carries over from earlier beats only through a dot product still
        # open; the benches always start a new load with a ``first`` beat.
        self.beats.extend(beats)
        self.expected.extend(states)
        return dots

    @property
    def done_all(self) -> bool:
        return self.checked >= len(self.beats)

    def idle(self, tb) -> None:
        for h in self.h_in[2:]:
            h.value = 0
        self._last_driven = None
        self._ops = self._marks = None
        self._check_fwd = self._check_state = None

    def drive(self, tb) -> None:
        # Operands driven in the previous cycle show at act_out/wgt_out in this one, and
        # that beat's markers go in now (with its product); the markers driven in the
        # previous cycle show as acc/ovf/done in this one.
        self._check_fwd, self._check_state = self._ops, self._marks
        self._marks = self._ops
        if self.pos < len(self.beats):
            self._ops = self.pos
            self.pos += 1
        else:
            self._ops = None
        a, w = (0, 0) if self._ops is None else self.beats[self._ops][:2]
        if self._marks is None:  # no beat: valid low, anything on the initial values
            g = self.garbage
            junk = int(g.integers(self.cfg.acc_min, self.cfg.acc_max + 1))
            marks = (0, 0, 0, junk, int(g.integers(2)))
        else:
            marks = self.beats[self._marks][2:]
        valid, first, last, init_acc, init_ovf = marks
        raw = (
            self.c_act.encode(a),
            self.c_wgt.encode(w),
            valid,
            first,
            last,
            self.c_acc.encode(init_acc),
            init_ovf,
        )
        old = self._last_driven or (None,) * len(raw)
        for h, v, o in zip(self.h_in, raw, old, strict=True):
            if v != o:
                h.value = v
        self._last_driven = raw

    def sample(self, tb) -> None:
        got, want, what = {}, {}, []
        i = self._check_fwd
        if i is not None:
            a, w, *_ = self.beats[i]
            got["fwd"] = [int(h.value) for h in self.h_fwd]
            want["fwd"] = [self.c_act.encode(a), self.c_wgt.encode(w)]
            what.append(f"operands of beat {i}")
        i = self._check_state
        if i is not None:
            acc, ovf, done = self.expected[i]
            got.update(
                acc=self.c_acc.decode(int(self.h_acc.value)),
                ovf=int(self.h_ovf.value),
                done=int(self.h_done.value),
            )
            want.update(acc=acc, ovf=ovf, done=done)
            what.append(
                f"beat {i} (act, wgt, valid, first, last, init_acc, init_ovf)={self.beats[i]}"
            )
        if not what:
            return
        self.sb.check(got, want, "; ".join(what))
        if i is None:
            return
        if ovf and not self.prev_ovf:
            self.flag_sets += 1
        if self.prev_ovf and not ovf:
            self.flag_clears += 1
        self.prev_ovf = ovf
        self.checked += 1
