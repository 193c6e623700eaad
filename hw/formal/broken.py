"""Deliberately broken variants of the RTL blocks, to show that the proofs can fail.

Each is a subclass that elaborates the production block and then appends statements that
override part of its behaviour (the last assignment to a signal in a domain wins). The
production RTL is not touched. The formal tests run the same harnesses on these and
require a FAIL with a counterexample trace.
"""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Signal, unsigned

from oasa.hw.output_stage import OutputStage
from oasa.hw.pe import ProcessingElement

__all__ = ["ClampOffByOnePE", "FlagPositiveOnlyPE", "RoundHalfDownStage"]


def _total(m, pe: ProcessingElement):
    """The PE's exact t = (first ? 0 : acc) + product, rebuilt from its ports: the product
    of the previous cycle's operands, like the PE's product register."""
    product = Signal.like(pe.act * pe.wgt, name="bad_product")
    m.d.sync += product.eq(pe.act * pe.wgt)
    return Mux(pe.first, 0, pe.acc) + product


class FlagPositiveOnlyPE(ProcessingElement):
    """Bug: the overflow flag is raised only when a partial sum goes above the range,
    never below it (a classic one-sided overflow detector)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.valid):
            m.d.sync += self.ovf.eq((self.ovf & ~self.first) | (_total(m, self) > self.cfg.acc_max))
        return m


class ClampOffByOnePE(ProcessingElement):
    """Bug: the upper clamp compares against 2**(P-1) instead of 2**(P-1) - 1, so a partial
    sum of exactly 2**(P-1) is stored unclamped and wraps to -2**(P-1). Only that one value
    is wrong; the flag stays right."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        total = _total(m, self)
        with m.If(self.valid & (total == self.cfg.acc_max + 1)):
            m.d.sync += self.acc.eq(total)
        return m


class RoundHalfDownStage(OutputStage):
    """Bug: requantization rounds half down, r = ceil(z / 2**s - 1/2), instead of half up.

    The lanes' intermediate signals are local to the production ``elaborate``, so this
    variant rebuilds the value path beside it with the same pipeline timing and drives
    the output values from that copy; valid, flags and row still come from the production
    pipeline.
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
