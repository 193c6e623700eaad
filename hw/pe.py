"""The processing element: one multiplier, one narrow accumulator, one sticky flag."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from oasa.config import ArrayConfig
from oasa.hw.layouts import acc_shape, act_shape, weight_shape
from oasa.hw.replicas import replica

__all__ = ["ProcessingElement", "p_bit_add"]


def p_bit_add(m: Module, cfg: ArrayConfig, base: Value, product: Value) -> tuple[Value, Value]:
    """(the next P-bit partial sum, its overflow) of base + product, as every PE adds.

    Every product fits product_bits <= P, so t = base + product is exact in P + 1 bits, and
    t is outside the P-bit range exactly when its top two bits differ: one XOR instead of
    two comparators; the top bit tells which end a saturating accumulator clamps to. In
    wrap mode the value is t itself: assigning it to a P-bit register truncates, which is
    the two's-complement wrap.
    """
    total = Signal(signed(cfg.acc_bits + 1))
    m.d.comb += total.eq(base + product)
    negative = total[cfg.acc_bits]
    out_of_range = negative ^ total[cfg.acc_bits - 1]
    if cfg.overflow == "wrap":
        return total, out_of_range
    return Mux(out_of_range, Mux(negative, cfg.acc_min, cfg.acc_max), total), out_of_range


class ProcessingElement(wiring.Component):
    """Output-stationary multiply-accumulate cell with overflow detection.

    Two pipeline stages. The operands of a beat (``act``, ``wgt``) are multiplied and the
    product registered; one cycle later the beat's markers (``valid``, ``first``,
    ``last``) arrive with that product, and the accumulate stage computes
    t = base + product, where base is the initial partial sum ``init_acc`` on a ``first``
    beat (0 unless a dot product continues an earlier call's) and the accumulator
    otherwise, then stores wrap_P(t) or clamp_P(t) (``cfg.overflow``). The flag is set when
    t leaves the P-bit range and stays set until the next ``first``, which restarts it from
    ``init_ovf``. Beats with ``valid`` low leave everything unchanged. The product register splits multiply and accumulate, each a
    short carry chain, which is what sets Fmax on an FPGA.

    Latency: the accumulator and flag show a beat one cycle after its markers (two after
    its operands); ``done`` is high in that cycle when the beat was ``last``. Throughput:
    one beat per cycle. The operands and the markers are forwarded through registers (one
    cycle) to the neighbouring PEs of a systolic array, so every net of the array stays
    between neighbours. The marker and ``done`` registers are replicas (see
    :mod:`oasa.hw.replicas`): identical in every PE of an anti-diagonal, and kept apart by
    FPGA builds so that none drives a whole diagonal.

    Parameters
    ----------
    cfg : ArrayConfig
        Supplies N (``act_bits``, ``act_signed``), M, P and the overflow mode.

    Members
    -------
    act : In(act_shape(cfg))        activation of a beat
    wgt : In(signed(M))             weight of a beat
    valid, first, last : In(1)      the previous cycle's beat present / starts / ends a
                                    dot product
    init_acc : In(signed(P))        partial sum a ``first`` beat starts from
    init_ovf : In(1)                flag a ``first`` beat starts from
    act_out, wgt_out : Out           the operands, delayed one cycle
    valid_out, first_out, last_out : Out(1)   the markers, delayed one cycle
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
                "init_acc": In(acc_shape(cfg)),
                "init_ovf": In(1),
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

    def multiply(self, act: Value, wgt: Value) -> Value:
        """The product act * wgt. A hook: FPGA builds override it to choose how the
        product is built (LUTs or DSP blocks, see ``oasa.fpga.multipliers``)."""
        return act * wgt

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()

        m.d.sync += [self.act_out.eq(self.act), self.wgt_out.eq(self.wgt)]
        # Ports cannot carry attributes: the replicated registers drive them.
        for port, value in (
            (self.valid_out, self.valid),
            (self.first_out, self.first),
            (self.last_out, self.last),
            (self.done, self.valid & self.last),
        ):
            reg = replica(port, f"{port.name}_reg")
            m.d.sync += reg.eq(value)
            m.d.comb += port.eq(reg)

        product = Signal(signed(cfg.product_bits))  # of the beat whose markers are here
        m.d.sync += product.eq(self.multiply(self.act, self.wgt))
        base = Mux(self.first, self.init_acc, self.acc)
        value, out_of_range = p_bit_add(m, cfg, base, product)
        with m.If(self.valid):
            m.d.sync += self.acc.eq(value)
            m.d.sync += self.ovf.eq(Mux(self.first, self.init_ovf, self.ovf) | out_of_range)
        return m
