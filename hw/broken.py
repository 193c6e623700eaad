"""Deliberately broken variants of the RTL, to show that the proofs and the benches can fail.

One library for every check that must be seen to fail: the formal proofs
(``run_property(..., block=...)``, tests/formal), the cocotb benches (tests/cocotb/broken)
and the hardware-timeout tests (tests/hw). tests/hw/test_broken.py checks that each
variant does exactly what its docstring says, against a model of that bug, so a variant
cannot drift into being caught for another reason.

A bug inside a block is a subclass of the production block that calls
``super().elaborate()`` and then appends statements (in an Amaranth domain the last
assignment wins) or overrides a hook (:meth:`ProcessingElement.multiply`). A bug in how
blocks are put together is the production block built from broken parts through its
constructor arguments (``SystolicArray(cfg, pe=...)``, ``ArrayCore(cfg, array=...)``).
Every variant is a class or a named function taking the configuration, as the blocks'
constructor arguments expect. Production RTL is never edited.
"""

from __future__ import annotations

from functools import partial
from itertools import count

from amaranth.hdl import Const, Module, Mux, Signal, Value, unsigned

from oasa.config import ArrayConfig
from oasa.hw.accelerator import Accelerator
from oasa.hw.array import SystolicArray
from oasa.hw.core import ArrayCore
from oasa.hw.output_stage import OutputStage
from oasa.hw.pe import ProcessingElement
from oasa.hw.sequencer import Sequencer
from oasa.hw.ws_array import WSPE, WSArray
from oasa.hw.ws_sequencer import WSSequencer

__all__ = [
    "CoreDropsLast",
    "CoreDropsWeightHandshake",
    "PEClampOffByOne",
    "PEFlagPositiveOnly",
    "PEFlagStuckLow",
    "PEIgnoresInit",
    "PEProductOffByOne",
    "SequencerDropsLast",
    "StageRoundsHalfDown",
    "WSArrayLoadsAllColumnsAtOnce",
    "WSPEFlagPositiveOnly",
    "WSPEFlagStuckLow",
    "WSSequencerForgetsPartialSums",
    "core_flag_stuck_low",
    "core_one_pe_off_by_one",
    "core_saturates_in_wrap",
    "os_accel_ignores_init",
    "pe_saturates_in_wrap",
    "ws_accel_flag_stuck_low",
    "ws_accel_forgets_partial_sums",
]


# -- processing element ------------------------------------------------------------------


def _total(m: Module, pe: ProcessingElement) -> Value:
    """The PE's exact t = (first ? init_acc : acc) + product, rebuilt beside it from its ports:
    the product register loads the product of every cycle's operands, as the PE's own
    does, so t belongs to the beat whose markers are at the PE."""
    exact = pe.multiply(pe.act, pe.wgt)
    product = Signal.like(exact, name="bad_product")
    m.d.sync += product.eq(exact)
    return Mux(pe.first, pe.init_acc, pe.acc) + product


class PEFlagStuckLow(ProcessingElement):
    """Bug: the overflow flag is tied to 0. The accumulator is right."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.sync += self.ovf.eq(0)
        return m


class PEFlagPositiveOnly(ProcessingElement):
    """Bug: the overflow flag is raised only when a partial sum goes above the range,
    never below it (a classic one-sided overflow detector). The accumulator is right."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.valid):
            start = Mux(self.first, self.init_ovf, self.ovf)
            m.d.sync += self.ovf.eq(start | (_total(m, self) > self.cfg.acc_max))
        return m


class PEClampOffByOne(ProcessingElement):
    """Bug (saturate mode): the upper clamp compares against 2**(P-1) instead of
    2**(P-1) - 1, so a partial sum of exactly 2**(P-1) is stored unclamped and wraps to
    -2**(P-1). Only that one value is wrong; the flag stays right."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        total = _total(m, self)
        with m.If(self.valid & (total == self.cfg.acc_max + 1)):
            m.d.sync += self.acc.eq(total)
        return m


class PEProductOffByOne(ProcessingElement):
    """Bug: the product of every beat is x * w + 1 instead of x * w, so a dot product of
    K beats comes out K too large (before wrap or clamp, which follow the configuration);
    the flag follows the wrong sums."""

    def multiply(self, act: Value, wgt: Value) -> Value:
        return super().multiply(act, wgt) + 1


class WSPEFlagPositiveOnly(WSPE):
    """Bug (weight-stationary PE): the flag is raised only when the sum goes above the
    range, never below it. The partial sum is right."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        product = Signal.like(self.multiply(self.act, self.wgt), name="bad_product")
        m.d.sync += product.eq(self.multiply(self.act, self.weight()))
        m.d.sync += self.flag_out.eq(self.flag | (self.psum + product > self.cfg.acc_max))
        return m


def pe_saturates_in_wrap(cfg: ArrayConfig) -> ProcessingElement:
    """Bug: the PE clamps at the range ends although ``cfg`` asks for wrap (it is built
    for saturate). The flag is right, since it does not depend on the mode."""
    return ProcessingElement(cfg.replace(overflow="saturate"))


class PEIgnoresInit(ProcessingElement):
    """Bug: a ``first`` beat starts from 0 and a clear flag, ignoring ``init_acc`` and
    ``init_ovf`` (the PE before dot products could continue an earlier call's partial
    sum). Right whenever both are 0; otherwise a continued dot product loses its earlier
    part and its earlier flag."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        cfg = self.cfg
        exact = self.multiply(self.act, self.wgt)
        product = Signal.like(exact, name="bad_product")
        m.d.sync += product.eq(exact)
        total = Signal.like(self.acc + product, name="bad_total")  # P + 1 bits: exact
        m.d.comb += total.eq(Mux(self.first, 0, self.acc) + product)
        above, below = total > cfg.acc_max, total < cfg.acc_min
        if cfg.overflow == "wrap":
            value = total  # truncated to P bits by the assignment
        else:
            value = Mux(above, cfg.acc_max, Mux(below, cfg.acc_min, total))
        with m.If(self.valid):
            m.d.sync += self.acc.eq(value)
            m.d.sync += self.ovf.eq((self.ovf & ~self.first) | above | below)
        return m


# -- array and core ----------------------------------------------------------------------


def core_flag_stuck_low(cfg: ArrayConfig) -> ArrayCore:
    """Bug: every PE's overflow flag is tied to 0 (:class:`PEFlagStuckLow`)."""
    return ArrayCore(cfg, array=partial(SystolicArray, pe=PEFlagStuckLow))


def core_saturates_in_wrap(cfg: ArrayConfig) -> ArrayCore:
    """Bug: every PE clamps where ``cfg`` asks for wrap (:func:`pe_saturates_in_wrap`)."""
    return ArrayCore(cfg, array=partial(SystolicArray, pe=pe_saturates_in_wrap))


def core_one_pe_off_by_one(cfg: ArrayConfig) -> ArrayCore:
    """Bug: only the last PE, row R-1 and column C-1, has the off-by-one product
    (:class:`PEProductOffByOne`): one output of every full tile is K too large."""
    made = count()
    last = cfg.rows * cfg.cols - 1

    def pe(cfg: ArrayConfig) -> ProcessingElement:
        # The array makes its PEs row by row, so the last one made is PE (R-1, C-1).
        return (PEProductOffByOne if next(made) == last else ProcessingElement)(cfg)

    return ArrayCore(cfg, array=partial(SystolicArray, pe=pe))


class CoreDropsWeightHandshake(ArrayCore):
    """Bug: the array no longer waits for ``i_wgt.valid``: a beat is taken as soon as the
    activations are valid, with whatever weights are on the bus (a dropped handshake)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.array.i_wgt.valid.eq(1)
        return m


class CoreDropsLast(ArrayCore):
    """Bug: the beats reach the array without their ``last`` marker, so no tile is ever
    closed and no result row ever comes out."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.array.i_act.payload.last.eq(0)
        return m


# -- sequencer -----------------------------------------------------------------------------


class SequencerDropsLast(Sequencer):
    """Bug: every beat is issued, but a tile's last one is never marked, so the array never
    closes a tile and ``done`` never rises."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.o_act.payload.last.eq(0)
        return m


# -- output stage ----------------------------------------------------------------------------


class StageRoundsHalfDown(OutputStage):
    """Bug: requantization rounds half down, r = ceil(z / 2**s - 1/2), instead of half up.

    The lanes' intermediate signals are local to the production ``elaborate``, so this
    variant rebuilds the value path beside it with the same pipeline timing and drives
    the output values from that copy; valid, flags and row still come from the production
    pipeline. Values are only right in cycles with ``o_res.valid`` set (the stream
    contract): the copy's registers load in every cycle.
    """

    def elaborate(self, platform):
        m = super().elaborate(platform)
        cfg = self.cfg
        relu3, req3 = self.relu, self.requant
        for _ in range(self.latency - 1):  # mode bits reach the last stage through these
            relu_d, requant_d = Signal(), Signal()
            m.d.sync += [relu_d.eq(relu3), requant_d.eq(req3)]
            relu3, req3 = relu_d, requant_d
        for lane in range(cfg.cols):
            acc = self.i_res.payload.acc[lane]
            bias, mult = self.params.bias[lane], self.params.mult[lane]
            shift = self.params.shift[lane]
            y = Signal.like(acc + bias, name=f"bad_y_{lane}")
            mult1 = Signal.like(mult, name=f"bad_mult1_{lane}")
            shift1 = Signal.like(shift, name=f"bad_shift1_{lane}")
            m.d.sync += [
                y.eq(Mux(self.requant, acc + bias, acc)),
                mult1.eq(Mux(self.requant, mult, 1)),
                shift1.eq(Mux(self.requant, shift, 0)),
            ]
            z = Signal.like(y * mult1, name=f"bad_z_{lane}")
            shift2 = Signal.like(shift1, name=f"bad_shift2_{lane}")
            m.d.sync += [z.eq(y * mult1), shift2.eq(shift1)]
            for n in range(self.latency - 4):  # the production pipeline's extra registers
                z_d = Signal.like(z, name=f"bad_z{n}_{lane}")
                shift_d = Signal.like(shift2, name=f"bad_shift2{n}_{lane}")
                m.d.sync += [z_d.eq(z), shift_d.eq(shift2)]
                z, shift2 = z_d, shift_d
            # Half down: add 2**(s-1) - 1 instead of 2**(s-1) before the floor shift.
            half_down = ((Const(1, unsigned(cfg.shift_max + 1)) << shift2) >> 1) - 1
            r = Signal.like(z, name=f"bad_r_{lane}")
            m.d.sync += r.eq(Mux(shift2 == 0, z, (z + half_down) >> shift2))
            value = Signal.like(self.o_res.payload.value[lane], name=f"bad_value_{lane}")
            with m.If(~req3):
                m.d.sync += value.eq(r)
            with m.Elif((r < 0) & relu3):
                m.d.sync += value.eq(0)
            with m.Elif(r < cfg.act_min):
                m.d.sync += value.eq(cfg.act_min)
            with m.Elif(r > cfg.act_max):
                m.d.sync += value.eq(cfg.act_max)
            with m.Else():
                m.d.sync += value.eq(r)
            m.d.comb += self.o_res.payload.value[lane].eq(value)
        return m


def os_accel_ignores_init(cfg: ArrayConfig) -> Accelerator:
    """Bug: an output-stationary accelerator whose PEs ignore the initial partial sums
    (:class:`PEIgnoresInit`): layers in one call are right; a K cut into calls keeps only
    its last call's terms and flags."""
    if cfg.dataflow != "os":
        raise ValueError(f"os_accel_ignores_init is output-stationary, got {cfg.dataflow!r}")
    return Accelerator(cfg, array=partial(SystolicArray, pe=PEIgnoresInit))


# -- weight-stationary accelerator -------------------------------------------------------------


def _require_ws(cfg: ArrayConfig, what: str) -> None:
    if cfg.dataflow != "ws":
        raise ValueError(f"{what} is a weight-stationary variant, got dataflow={cfg.dataflow!r}")


class WSPEFlagStuckLow(WSPE):
    """Bug (weight-stationary PE): the flag passed down is tied to 0, so no flag ever
    leaves the array. The partial sum is right."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.sync += self.flag_out.eq(0)
        return m


class WSArrayLoadsAllColumnsAtOnce(WSArray):
    """Bug (weight-stationary array): the column skew of the weight loads is left out, so
    a load writes every column in the same cycle while the pace stays the skewed one (the
    next load the cycle after a pass's first row). Column c's next weight then lands
    before that first row reaches it, for c > 1: a pass followed within about C cycles by
    the next load multiplies some rows by the next pass's weights."""

    skew_loads = False


def ws_accel_flag_stuck_low(cfg: ArrayConfig) -> Accelerator:
    """Bug: a weight-stationary accelerator whose PEs' flags are all tied to 0
    (:class:`WSPEFlagStuckLow`): results are right, flags and FLAGGED are 0."""
    _require_ws(cfg, "ws_accel_flag_stuck_low")
    return Accelerator(cfg, array=partial(WSArray, pe=WSPEFlagStuckLow))


class WSSequencerForgetsPartialSums(WSSequencer):
    """Bug: every pass starts from zero partial sums and clear flags, as if it were the
    first K tile, so a dot product longer than R keeps only its last K tile's terms
    (results and flags). Layers with K <= R are right."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.o_psum.payload.eq(0)
        return m


def ws_accel_forgets_partial_sums(cfg: ArrayConfig) -> Accelerator:
    """Bug: the weight-stationary accelerator with :class:`WSSequencerForgetsPartialSums`."""
    _require_ws(cfg, "ws_accel_forgets_partial_sums")
    return Accelerator(cfg, sequencer=WSSequencerForgetsPartialSums)
