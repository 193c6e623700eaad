"""The array with its output stage: the unit ``oasa verilog`` emits."""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from oasa.config import ArrayConfig
from oasa.hw.array import SystolicArray
from oasa.hw.layouts import act_beat_layout, params_layout, stage_out_layout, weight_beat_layout
from oasa.hw.output_stage import OutputStage

__all__ = ["ArrayCore"]


class ArrayCore(wiring.Component):
    """:class:`SystolicArray` followed by :class:`OutputStage`.

    Latency: a tile's row R-1 leaves ``latency`` = (R + C + 2) + 6 cycles after its last
    beat was accepted; rows R-2 .. 0 follow on consecutive cycles. ``params``, ``relu``
    and ``requant`` are sampled as each row enters the output stage, so hold them steady
    while a tile drains.

    Parameters
    ----------
    cfg : ArrayConfig
    array, stage : callable, keyword-only
        Build the two blocks: ``array(cfg)`` a :class:`SystolicArray`, ``stage(cfg)`` an
        :class:`OutputStage` (by default those classes; e.g.
        ``functools.partial(SystolicArray, pe=...)`` for other PEs). The blocks are
        :attr:`array` and :attr:`stage`.

    Members
    -------
    i_act : In(stream.Signature(act_beat_layout(cfg)))
    i_wgt : In(stream.Signature(weight_beat_layout(cfg)))
    params : In(params_layout(cfg))
    relu, requant : In(1)
    o_res : Out(stream.Signature(stage_out_layout(cfg), always_ready=True))
    """

    def __init__(
        self,
        cfg: ArrayConfig,
        *,
        array: Callable[[ArrayConfig], SystolicArray] = SystolicArray,
        stage: Callable[[ArrayConfig], OutputStage] = OutputStage,
    ):
        self.cfg = cfg
        self.array = array(cfg)
        self.stage = stage(cfg)
        super().__init__(
            {
                "i_act": In(stream.Signature(act_beat_layout(cfg))),
                "i_wgt": In(stream.Signature(weight_beat_layout(cfg))),
                "params": In(params_layout(cfg)),
                "relu": In(1),
                "requant": In(1),
                "o_res": Out(stream.Signature(stage_out_layout(cfg), always_ready=True)),
            }
        )

    @property
    def latency(self) -> int:
        return self.array.latency + self.stage.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = self.array
        m.submodules.stage = self.stage
        wiring.connect(m, wiring.flipped(self.i_act), self.array.i_act)
        wiring.connect(m, wiring.flipped(self.i_wgt), self.array.i_wgt)
        wiring.connect(m, self.array.o_res, self.stage.i_res)
        wiring.connect(m, self.stage.o_res, wiring.flipped(self.o_res))
        m.d.comb += [
            self.stage.params.eq(self.params),
            self.stage.relu.eq(self.relu),
            self.stage.requant.eq(self.requant),
        ]
        return m
