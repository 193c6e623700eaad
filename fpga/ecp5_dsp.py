"""The output stage's requantization multiply in an ECP5 DSP block, with its registers.

Yosys maps ``y * mult`` to a MULT18X18D without registers, and the stage's product
registers then live in the fabric: on the 16 x 16 build the path ran from the lane's
``y`` register, 34 rows across the die to the DSP block's fixed site, through the
multiplier (3.9 ns) and back to the product register: 12.8 ns, 78 MHz. A MULT18X18D has
its own input and output registers; with them on, the multiplier's delay is inside the
block, and each route to or from it is a path of its own. Same two pipeline stages, same
clock enables, so the stage stays bit exact and its latency does not change.

The block is a primitive, so simulation uses :class:`RegisteredMultiplier`'s model of it
(the registers and the product, as the Lattice sysDSP guide describes them); only an
ECP5 build instantiates the block.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from oasa.hw.output_stage import OutputStage

__all__ = ["DSP_WIDTH", "ECP5DSPStage", "RegisteredMultiplier"]

#: Operand width of one MULT18X18D (both operands, sign included).
DSP_WIDTH = 18


def fits_one_block(a: Shape, b: Shape) -> bool:
    """Whether ``a * b`` fits one MULT18X18D (each operand at most 18 bits, sign included)."""
    return a.width <= DSP_WIDTH and b.width <= DSP_WIDTH


def _check_platform(platform) -> None:
    if platform is not None and getattr(platform, "family", None) != "ecp5":
        raise TypeError(
            f"an ECP5 MULT18X18D was asked for, but {type(platform).__name__} is not an ECP5 "
            "platform (use the generic OutputStage there)"
        )


class RegisteredMultiplier(wiring.Component):
    """p = a * b through the input registers (loaded with ``ce_in``) and the output
    register (loaded with ``ce_out``) of one ECP5 MULT18X18D: p shows the product of the
    operands loaded by the last ``ce_in`` once ``ce_out`` has loaded it.

    Elaborated without a platform (simulation) it builds the same two registers in logic.
    """

    def __init__(self, a_shape: Shape, b_shape: Shape):
        a_shape, b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        if not fits_one_block(a_shape, b_shape):
            self._MustUse__silence = True  # never built: no "unused elaboratable" warning
            raise ValueError(
                f"a {a_shape.width} x {b_shape.width}-bit multiply needs more than one "
                f"MULT18X18D (operands of at most {DSP_WIDTH} bits)"
            )
        product = (Signal(a_shape) * Signal(b_shape)).shape()
        super().__init__(
            {
                "a": In(a_shape),
                "b": In(b_shape),
                "ce_in": In(1),
                "ce_out": In(1),
                "p": Out(product),
            }
        )

    def elaborate(self, platform):
        _check_platform(platform)
        m = Module()
        if platform is None:
            a, b = Signal.like(self.a), Signal.like(self.b)
            with m.If(self.ce_in):
                m.d.sync += [a.eq(self.a), b.eq(self.b)]
            with m.If(self.ce_out):
                m.d.sync += self.p.eq(a * b)
            return m
        # Operands widened to the block's 18 bits as their shapes say (sign or zero
        # extension); SIGNEDA/B tell the block how to read bit 17.
        a18 = Signal(Shape(DSP_WIDTH, self.a.shape().signed))
        b18 = Signal(Shape(DSP_WIDTH, self.b.shape().signed))
        p36 = Signal(2 * DSP_WIDTH)
        m.d.comb += [a18.eq(self.a), b18.eq(self.b), self.p.eq(p36)]
        ports = {}
        for n in range(DSP_WIDTH):
            ports[f"i_A{n}"], ports[f"i_B{n}"], ports[f"i_C{n}"] = a18[n], b18[n], 0
        for n in range(2 * DSP_WIDTH):
            ports[f"o_P{n}"] = p36[n]
        for n in (1, 2, 3):
            ports[f"i_CLK{n}"] = 0
        for n in (2, 3):
            ports[f"i_CE{n}"] = 0
        registers = {}
        for reg, ce in (("INPUTA", "CE0"), ("INPUTB", "CE0"), ("OUTPUT", "CE1")):
            registers[f"p_REG_{reg}_CLK"] = "CLK0"
            registers[f"p_REG_{reg}_CE"] = ce
            registers[f"p_REG_{reg}_RST"] = "RST0"
        m.submodules.block = Instance(
            "MULT18X18D",
            **registers,
            p_REG_INPUTC_CLK="NONE",
            p_REG_PIPELINE_CLK="NONE",
            i_SIGNEDA=int(self.a.shape().signed),
            i_SIGNEDB=int(self.b.shape().signed),
            i_SOURCEA=0,
            i_SOURCEB=0,
            i_CLK0=ClockSignal(),
            i_CE0=self.ce_in,
            i_CE1=self.ce_out,
            **{f"i_RST{n}": 0 for n in range(4)},
            **ports,
        )
        return m


class ECP5DSPStage(OutputStage):
    """An output stage whose requantization multiply is a :class:`RegisteredMultiplier`
    (when y and mult fit one block; otherwise the generic multiply, for Yosys to map)."""

    def elaborate(self, platform):
        _check_platform(platform)  # before any block is made
        return super().elaborate(platform)

    def multiply(self, m: Module, y: Value, mult: Value, enables: tuple, lane: int) -> Value:
        if not fits_one_block(y.shape(), mult.shape()):
            return super().multiply(m, y, mult, enables, lane)
        block = RegisteredMultiplier(y.shape(), mult.shape())
        m.submodules[f"dsp_{lane}"] = block
        m.d.comb += [
            block.a.eq(y),
            block.b.eq(mult),
            block.ce_in.eq(enables[0]),
            block.ce_out.eq(enables[1]),
        ]
        return block.p
