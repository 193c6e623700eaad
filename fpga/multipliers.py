"""How the PEs' small products are built on an FPGA: in LUTs or in DSP blocks.

Yosys maps every ``*`` it can to a DSP block. On the ECP5 that puts each 4 x 4 product of
the array into its own 18 x 18 multiplier, and a 16 x 16 array needs 256 of the 156 the
LFE5U-85F has. Written as shifted partial products instead, the product stays in LUTs
(about 20 per product), and the DSP blocks are left to the output stage's wide multiplies.
"""

from __future__ import annotations

from amaranth.hdl import Mux, Value

from oasa.hw.accelerator import Accelerator
from oasa.hw.array import SystolicArray
from oasa.hw.pe import ProcessingElement

__all__ = ["MULTIPLIERS", "ShiftAddPE", "accelerator_class", "shift_add_product"]

#: "lut": shift-and-add products in LUTs; "dsp": ``*``, for Yosys to map to DSP blocks.
MULTIPLIERS = ("lut", "dsp")


def shift_add_product(act: Value, wgt: Value) -> Value:
    """act * wgt for a two's-complement ``wgt``, as a sum of shifted copies of ``act``:
    wgt = -w[M-1] * 2**(M-1) + sum(w[i] * 2**i), so the top partial product is subtracted.
    The partial products are added as a balanced tree (two adder levels for M = 4), which
    keeps the PE's multiply-accumulate path short."""
    m = len(wgt)
    terms = [Mux(wgt[i], act << i, 0) for i in range(m - 1)]
    terms.append(Mux(wgt[m - 1], -(act << (m - 1)), 0))
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]


class ShiftAddPE(ProcessingElement):
    """A PE whose product is built in LUTs (see the module docstring)."""

    def multiply(self, act: Value, wgt: Value) -> Value:
        return shift_add_product(act, wgt)


class _ShiftAddArray(SystolicArray):
    pe_class = ShiftAddPE


class _ShiftAddAccelerator(Accelerator):
    array_class = _ShiftAddArray


def accelerator_class(multiplier: str) -> type[Accelerator]:
    """The accelerator whose PEs build their products as ``multiplier`` says."""
    if multiplier not in MULTIPLIERS:
        raise ValueError(
            f"unknown multiplier {multiplier!r}: choose one of {', '.join(MULTIPLIERS)}"
        )
    return _ShiftAddAccelerator if multiplier == "lut" else Accelerator


def array_class(multiplier: str) -> type[SystolicArray]:
    return accelerator_class(multiplier).array_class
