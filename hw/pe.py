"""The processing element: one multiplier, one narrow accumulator, one sticky flag."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from oasa.config import ArrayConfig
from oasa.hw.layouts import acc_shape, act_shape, weight_shape

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """Output-stationary multiply-accumulate cell with overflow detection.

    Each valid beat computes t = base + act * wgt, where base is 0 on a ``first`` beat and
    the accumulator otherwise, then stores wrap_P(t) or clamp_P(t) (``cfg.overflow``).
    The flag is set when t leaves the P-bit range and stays set until the next ``first``.
    Beats with ``valid`` low leave everything unchanged.

    Latency: the accumulator and flag show a beat one cycle after it is presented;
    ``done`` is high in that cycle when the beat was ``last``. Throughput: one beat per
    cycle. Operands and markers are forwarded through registers (one cycle) for the
    neighbouring PEs of a systolic array.

    Parameters
    ----------
    cfg : ArrayConfig
        Supplies N (``act_bits``, ``act_signed``), M, P and the overflow mode.

    Members
    -------
    act : In(act_shape(cfg))        activation of this beat
    wgt : In(signed(M))             weight of this beat
    valid, first, last : In(1)      beat present / starts / ends a dot product
    act_out, wgt_out, valid_out, first_out, last_out : Out
                                    the inputs, delayed one cycle
    acc : Out(signed(P))            accumulator
    ovf : Out(1)                    sticky overflow flag
    done : Out(1)                   ``acc``/``ovf`` hold a finished dot product
    """

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        super().__init__(
            {
                "act": In(act_shape(cfg)),
                "wgt": In(weight_shape(cfg)),
                "valid": In(1),
                "first": In(1),
                "last": In(1),
                "act_out": Out(act_shape(cfg)),
                "wgt_out": Out(weight_shape(cfg)),
                "valid_out": Out(1),
                "first_out": Out(1),
                "last_out": Out(1),
                "acc": Out(acc_shape(cfg)),
                "ovf": Out(1),
                "done": Out(1),
            }
        )

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()

        m.d.sync += [
            self.act_out.eq(self.act),
            self.wgt_out.eq(self.wgt),
            self.valid_out.eq(self.valid),
            self.first_out.eq(self.first),
            self.last_out.eq(self.last),
            self.done.eq(self.valid & self.last),
        ]

        # The sum is formed one bit wider than either operand, so it is exact and the
        # range test below sees the true t_k before it is wrapped or clamped.
        product = Signal.like(self.act * self.wgt)
        total = Signal.like(self.acc + product)
        base = Mux(self.first, 0, self.acc)
        m.d.comb += [
            product.eq(self.act * self.wgt),
            total.eq(base + product),
        ]
        too_high = total > cfg.acc_max
        too_low = total < cfg.acc_min

        with m.If(self.valid):
            if cfg.overflow == "wrap":
                m.d.sync += self.acc.eq(total)  # .eq truncates: two's-complement wrap
            else:
                with m.If(too_high):
                    m.d.sync += self.acc.eq(cfg.acc_max)
                with m.Elif(too_low):
                    m.d.sync += self.acc.eq(cfg.acc_min)
                with m.Else():
                    m.d.sync += self.acc.eq(total)
            m.d.sync += self.ovf.eq((self.ovf & ~self.first) | too_high | too_low)
        return m
