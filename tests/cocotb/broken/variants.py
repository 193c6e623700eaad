"""Deliberately broken variants of the RTL, to show that the benches can fail.

Each is a subclass of a production block that calls ``super().elaborate()`` and then
appends statements (in an Amaranth domain the last assignment wins) or swaps a sub-block
class; production RTL is never edited.
"""

from __future__ import annotations

from amaranth.hdl import Mux

from oasa.hw.array import SystolicArray
from oasa.hw.core import ArrayCore
from oasa.hw.pe import ProcessingElement

__all__ = [
    "CoreDropsWeightHandshake",
    "CoreFlagStuckLow",
    "CoreOnePEOffByOne",
    "CoreSaturatesInWrap",
    "PEFlagStuckLow",
    "PESaturatesInWrap",
]


class PEFlagStuckLow(ProcessingElement):
    """The overflow flag tied to 0."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.sync += self.ovf.eq(0)
        return m


class PESaturatesInWrap(ProcessingElement):
    """Clamps at the range ends although the configuration asks for wrap."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        cfg = self.cfg
        total = Mux(self.first, 0, self.acc) + self.act * self.wgt
        with m.If(self.valid):
            with m.If(total > cfg.acc_max):
                m.d.sync += self.acc.eq(cfg.acc_max)
            with m.Elif(total < cfg.acc_min):
                m.d.sync += self.acc.eq(cfg.acc_min)
        return m


class PEProductOffByOne(ProcessingElement):
    """Adds x * w + 1 instead of x * w (wrap arithmetic)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        total = Mux(self.first, 0, self.acc) + self.act * self.wgt + 1
        with m.If(self.valid):
            m.d.sync += self.acc.eq(total)
        return m


class _ArrayFlagStuckLow(SystolicArray):
    pe_class = PEFlagStuckLow


class _ArraySaturatesInWrap(SystolicArray):
    pe_class = PESaturatesInWrap


class _ArrayOnePEOffByOne(SystolicArray):
    """Only the last PE (row R-1, column C-1) has the off-by-one product."""

    def elaborate(self, platform):
        made = []
        last = self.cfg.rows * self.cfg.cols - 1

        def make(cfg):
            made.append(None)
            return (PEProductOffByOne if len(made) - 1 == last else ProcessingElement)(cfg)

        self.pe_class = make  # PEs are made row by row inside super().elaborate()
        return super().elaborate(platform)


class CoreFlagStuckLow(ArrayCore):
    """Every PE's overflow flag tied to 0."""

    array_class = _ArrayFlagStuckLow


class CoreSaturatesInWrap(ArrayCore):
    """Every PE saturates where wrap is asked."""

    array_class = _ArraySaturatesInWrap


class CoreOnePEOffByOne(ArrayCore):
    """One PE's product is off by one."""

    array_class = _ArrayOnePEOffByOne


class CoreDropsWeightHandshake(ArrayCore):
    """The array no longer waits for ``i_wgt.valid``: a beat is taken as soon as the
    activations are valid, with whatever weights are on the bus (a dropped handshake)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.array.i_wgt.valid.eq(1)
        return m
