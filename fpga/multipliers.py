"""How the PEs' small products are built on an FPGA: in LUTs or in DSP blocks.

Yosys maps every ``*`` it can to a DSP block. On the ECP5 that puts each 4 x 4 product of
the array into its own 18 x 18 multiplier, and a 16 x 16 array needs 256 of the 156 the
LFE5U-85F has. Written as shifted partial products instead, the product stays in LUTs
(about 20 per product), and the DSP blocks are left to the output stage's wide multiplies.

The choice reaches the design as constructor arguments: :func:`accelerator_factory` gives
an ``Accelerator`` factory whose array (:func:`array_factory`, either dataflow) is built
with ``pe=`` :func:`pe_factory` and whose output stage is :func:`stage_factory`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from amaranth.hdl import Module, Mux, Signal, Value

from oasa.config import ArrayConfig
from oasa.fpga.ecp5_dsp import ECP5DSPStage
from oasa.hw.accelerator import Accelerator
from oasa.hw.array import SystolicArray
from oasa.hw.output_stage import OutputStage
from oasa.hw.pe import ProcessingElement
from oasa.hw.ws_array import WSPE, WSArray

__all__ = [
    "MULTIPLIERS",
    "STAGE_MULTIPLIERS",
    "ShiftAddPE",
    "ShiftAddStage",
    "ShiftAddWSPE",
    "accelerator_factory",
    "array_factory",
    "balanced_sum",
    "pe_factory",
    "shift_add_product",
    "stage_factory",
]

#: "lut": shift-and-add products in LUTs; "dsp": ``*``, for Yosys to map to DSP blocks.
MULTIPLIERS = ("lut", "dsp")
#: For the output stage, also "dsp-regs": an ECP5 DSP block with its own registers
#: (:mod:`oasa.fpga.ecp5_dsp`).
STAGE_MULTIPLIERS = (*MULTIPLIERS, "dsp-regs")


def balanced_sum(terms: list[Value]) -> Value:
    """The sum of ``terms`` as a balanced tree of adders (ceil(log2 n) levels)."""
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]


def shift_add_product(act: Value, wgt: Value) -> Value:
    """act * wgt for a two's-complement ``wgt``, as a sum of shifted copies of ``act``:
    wgt = -w[M-1] * 2**(M-1) + sum(w[i] * 2**i), so the top partial product is subtracted.
    The partial products are added as a balanced tree (two adder levels for M = 4), which
    keeps the PE's multiply-accumulate path short."""
    m = len(wgt)
    terms = [Mux(wgt[i], act << i, 0) for i in range(m - 1)]
    terms.append(Mux(wgt[m - 1], -(act << (m - 1)), 0))
    return balanced_sum(terms)


class ShiftAddStage(OutputStage):
    """An output stage whose requantization multiply is built in LUTs, over its two
    pipeline stages: groups of four shifted copies of y are summed into registers in the
    first, the groups in the second (two adder levels each). On the ECP5 the multiply in a
    DSP block, at a fixed site far from the lane's logic, set Fmax at 16 x 16; in LUTs it
    is placed with the lane. The multiplier is unsigned: y * mult = sum(mult[i] * y * 2**i).
    """

    group = 4

    def multiply(self, m: Module, y: Value, mult: Value, enables: tuple, lane: int) -> Value:
        shape = (y * mult).shape()
        terms = [Mux(mult[i], y << i, 0) for i in range(len(mult))]
        partial = []
        for g in range(0, len(terms), self.group):
            s = Signal(shape, name=f"pp{g // self.group}_{lane}")
            with m.If(enables[0]):
                m.d.sync += s.eq(balanced_sum(terms[g : g + self.group]))
            partial.append(s)
        z = Signal(shape, name=f"z_{lane}")
        with m.If(enables[1]):
            m.d.sync += z.eq(balanced_sum(partial))
        return z


class ShiftAddPE(ProcessingElement):
    """A PE whose product is built in LUTs (see the module docstring)."""

    def multiply(self, act: Value, wgt: Value) -> Value:
        return shift_add_product(act, wgt)


class ShiftAddWSPE(WSPE):
    """A weight-stationary PE whose product is built in LUTs."""

    def multiply(self, act: Value, wgt: Value) -> Value:
        return shift_add_product(act, wgt)


def pe_factory(
    multiplier: str, dataflow: str = "os"
) -> Callable[[ArrayConfig], ProcessingElement | WSPE]:
    """The PE of ``dataflow`` whose product is built as ``multiplier`` says: "lut"
    :class:`ShiftAddPE` (:class:`ShiftAddWSPE`), "dsp" the plain
    :class:`~oasa.hw.pe.ProcessingElement` (:class:`~oasa.hw.ws_array.WSPE`)."""
    if multiplier not in MULTIPLIERS:
        raise ValueError(
            f"unknown multiplier {multiplier!r}: choose one of {', '.join(MULTIPLIERS)}"
        )
    if dataflow == "ws":
        return ShiftAddWSPE if multiplier == "lut" else WSPE
    return ShiftAddPE if multiplier == "lut" else ProcessingElement


def array_factory(
    multiplier: str, dataflow: str = "os"
) -> Callable[[ArrayConfig], SystolicArray | WSArray]:
    """``cfg -> array`` of ``dataflow`` with the PEs of :func:`pe_factory`."""
    array = WSArray if dataflow == "ws" else SystolicArray
    return partial(array, pe=pe_factory(multiplier, dataflow))


def stage_factory(stage_multiplier: str) -> Callable[[ArrayConfig], OutputStage]:
    """The output stage whose requantization product is built as ``stage_multiplier``
    says: "lut" :class:`ShiftAddStage`, "dsp" the plain
    :class:`~oasa.hw.output_stage.OutputStage`, "dsp-regs"
    :class:`~oasa.fpga.ecp5_dsp.ECP5DSPStage`."""
    if stage_multiplier not in STAGE_MULTIPLIERS:
        raise ValueError(
            f"unknown stage multiplier {stage_multiplier!r}: choose one of "
            f"{', '.join(STAGE_MULTIPLIERS)}"
        )
    return {"lut": ShiftAddStage, "dsp": OutputStage, "dsp-regs": ECP5DSPStage}[stage_multiplier]


def accelerator_factory(
    multiplier: str, stage_multiplier: str = "dsp"
) -> Callable[[ArrayConfig], Accelerator]:
    """``cfg -> Accelerator`` whose PEs build their products as ``multiplier`` says (in the
    configuration's dataflow) and whose output stage builds its requantization product as
    ``stage_multiplier`` says."""
    pe_factory(multiplier)  # refuse an unknown multiplier now, not at the first build
    stage = stage_factory(stage_multiplier)

    def build(cfg: ArrayConfig) -> Accelerator:
        return Accelerator(cfg, array=array_factory(multiplier, cfg.dataflow), stage=stage)

    return build
