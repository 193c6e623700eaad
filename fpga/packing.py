"""Two 4-bit products in one multiplier block, for the packing measurement.

With a shared activation a and two weights w1, w2, one wide multiply gives both:
a * (w1 + w2 * 2**S) = a*w1 + a*w2 * 2**S. With S = the product width, the low S bits
hold a*w1 (read as signed), and the high part is a*w2 minus the borrow that a negative
low product took from it, so a*w2 = (full >> S) + sign(low). Three products would need
3 * S + 4 bits of output; an 18 x 18 block (36 bits) holds two 8-bit products with room.

This is the building block that a DSP-packed array would use for two PEs that see the
same activation in the same cycle; :mod:`bench.fpga_packing` measures what it costs
against two LUT multipliers and two separate DSP blocks.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from oasa.config import ArrayConfig
from oasa.fpga.multipliers import shift_add_product
from oasa.hw.layouts import act_shape, weight_shape

__all__ = ["PACKINGS", "ProductPair"]

#: "lut": two LUT multipliers; "dsp": two inferred multipliers; "packed": one for both.
PACKINGS = ("lut", "dsp", "packed")


class ProductPair(wiring.Component):
    """Registered a*w1 and a*w2, built as ``packing`` says.

    Members
    -------
    act : In(act_shape(cfg));  w1, w2 : In(signed(M))
    p1, p2 : Out(signed(product_bits))   the products, one cycle later
    """

    def __init__(self, cfg: ArrayConfig, packing: str):
        if packing not in PACKINGS:
            raise ValueError(f"unknown packing {packing!r}: choose one of {', '.join(PACKINGS)}")
        self.cfg, self.packing = cfg, packing
        p = signed(cfg.product_bits)
        super().__init__(
            {
                "act": In(act_shape(cfg)),
                "w1": In(weight_shape(cfg)),
                "w2": In(weight_shape(cfg)),
                "p1": Out(p),
                "p2": Out(p),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        a, w1, w2 = self.act, self.w1, self.w2
        if self.packing == "lut":
            m.d.sync += [self.p1.eq(shift_add_product(a, w1)), self.p2.eq(shift_add_product(a, w2))]
        elif self.packing == "dsp":
            m.d.sync += [self.p1.eq(a * w1), self.p2.eq(a * w2)]
        else:
            s = self.cfg.product_bits
            packed = Signal(signed(s + len(w2) + 1))
            full = Signal(signed(len(packed) + len(a) + 1))
            m.d.comb += [packed.eq((w2 << s) + w1), full.eq(a * packed)]
            low = full[:s].as_signed()
            m.d.sync += [self.p1.eq(low), self.p2.eq((full >> s) + low[-1])]
        return m
