"""The accelerator top: buffers, register file, sequencer, array and output stage."""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import MemoryData, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out

from oasa.config import BUFFERS, ArrayConfig
from oasa.hw.array import SystolicArray
from oasa.hw.layouts import act_beat_layout, params_layout, result_word_layout, weight_beat_layout
from oasa.hw.output_stage import OutputStage
from oasa.hw.registers import REG, RegisterBus, config_word
from oasa.hw.sequencer import Sequencer
from oasa.hw.ws_array import WSArray
from oasa.hw.ws_sequencer import WSSequencer

__all__ = ["Accelerator", "host_interface"]


def host_interface(cfg: ArrayConfig) -> dict[str, wiring.Member]:
    """The accelerator's host side, seen from the accelerator: the register bus and a port
    on each buffer. A host (the UART bridge) takes the same members flipped."""
    aw = {n: cfg.address_bits(n) for n in BUFFERS}
    act_word = act_beat_layout(cfg).members["data"]
    return {
        "reg": Out(RegisterBus()),
        "host_act": Out(memory.WritePort.Signature(addr_width=aw["act"], shape=act_word)),
        "host_wgt": Out(
            memory.WritePort.Signature(addr_width=aw["wgt"], shape=weight_beat_layout(cfg))
        ),
        "host_param": Out(
            memory.WritePort.Signature(addr_width=aw["param"], shape=params_layout(cfg))
        ),
        "host_res": Out(
            memory.ReadPort.Signature(addr_width=aw["res"], shape=result_word_layout(cfg))
        ),
    }


class Accelerator(wiring.Component):
    """Runs whole GEMM layers on its own, from on-chip buffers, under host command.

    The host writes X, W and the output-stage parameters into the buffers through their
    write ports, programs the command registers (see :mod:`oasa.hw.registers` for the map
    and :class:`~oasa.hw.sequencer.Sequencer` for the buffer layout), writes CTRL.start,
    waits for STATUS.done, and reads the result rows with their overflow flags back
    through the result read port (one cycle of read latency). FLAGGED and CYCLES report
    the flagged outputs and the busy cycles of the layer.

    Parameters
    ----------
    cfg : ArrayConfig
        ``cfg.dataflow`` chooses the array and sequencer: output-stationary
        (:class:`SystolicArray`, :class:`Sequencer`) or weight-stationary
        (:class:`~oasa.hw.ws_array.WSArray`, :class:`~oasa.hw.ws_sequencer.WSSequencer`).
        Either sequencer reads partial sums from the result buffer, through the host's read
        port while busy.
    array, stage, sequencer : callable, keyword-only
        Build the blocks: ``array(cfg)`` the array, ``stage(cfg)`` an
        :class:`OutputStage`, ``sequencer(cfg)`` the sequencer (by default the classes of
        the dataflow). FPGA builds choose how the PEs and the output stage multiply this way
        (:mod:`oasa.fpga.multipliers`); tests pass broken or instrumented variants. The
        blocks are :attr:`array`, :attr:`stage` and :attr:`sequencer`.

    Members
    -------
    reg : Out(RegisterBus())                             command and status registers
    host_act, host_wgt, host_param : Out(memory.WritePort.Signature(...))  buffer writes
    host_res : Out(memory.ReadPort.Signature(...))       result reads
    busy, done : Out(1)                                  the STATUS bits, as wires
    """

    def __init__(
        self,
        cfg: ArrayConfig,
        *,
        array: Callable[[ArrayConfig], SystolicArray | WSArray] | None = None,
        stage: Callable[[ArrayConfig], OutputStage] = OutputStage,
        sequencer: Callable[[ArrayConfig], Sequencer | WSSequencer] | None = None,
    ):
        self.cfg = cfg
        ws = cfg.dataflow == "ws"
        self.array = (array or (WSArray if ws else SystolicArray))(cfg)
        self.stage = stage(cfg)
        self.sequencer = (sequencer or (WSSequencer if ws else Sequencer))(cfg)
        act_word = act_beat_layout(cfg).members["data"]
        #: Buffer contents by name ("act", "wgt", "param", "res"). Simulators may read and
        #: write rows directly (``ctx.set(acc.buffers["act"][i], ...)``) to skip the
        #: port-by-port load; hardware hosts use the ports.
        self.buffers = {
            "act": MemoryData(shape=act_word, depth=cfg.act_depth, init=[]),
            "wgt": MemoryData(shape=weight_beat_layout(cfg), depth=cfg.wgt_depth, init=[]),
            "param": MemoryData(shape=params_layout(cfg), depth=cfg.param_depth, init=[]),
            "res": MemoryData(shape=result_word_layout(cfg), depth=cfg.res_depth, init=[]),
        }
        super().__init__({**host_interface(cfg), "busy": Out(1), "done": Out(1)})

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        m.submodules.array = array = self.array
        m.submodules.stage = stage = self.stage
        m.submodules.sequencer = seq = self.sequencer

        # -- buffers: one host port and one sequencer port each ------------------------------
        mems = {}
        for name, contents in self.buffers.items():
            m.submodules[f"{name}_buf"] = mems[name] = memory.Memory(data=contents)
        for name in ("act", "wgt", "param"):
            wiring.connect(
                m, wiring.flipped(getattr(self, f"host_{name}")), mems[name].write_port()
            )
            wiring.connect(m, getattr(seq, f"{name}_rd"), mems[name].read_port())
        wiring.connect(m, seq.res_wr, mems["res"].write_port())
        res_rd = mems["res"].read_port()
        host_res = self.host_res
        # One read port for both: the sequencer's partial sums while busy, the host's
        # results otherwise (a second port would double the buffer's block RAM).
        m.d.comb += [
            res_rd.addr.eq(Mux(seq.busy, seq.res_rd.addr, host_res.addr)),
            res_rd.en.eq(Mux(seq.busy, seq.res_rd.en, host_res.en)),
            seq.res_rd.data.eq(res_rd.data),
            host_res.data.eq(res_rd.data),
        ]

        # -- datapath ----------------------------------------------------------------------
        wiring.connect(m, seq.o_act, array.i_act)
        wiring.connect(m, seq.o_wgt, array.i_wgt)
        if self.cfg.dataflow == "ws":
            wiring.connect(m, seq.o_psum, array.i_psum)
            wiring.connect(m, array.o_res, seq.i_array)
            wiring.connect(m, seq.o_stage, stage.i_res)
        else:
            wiring.connect(m, array.o_res, stage.i_res)
            m.d.comb += [seq.row0_next.eq(array.row0_next), array.i_init.eq(seq.o_init)]
        wiring.connect(m, stage.o_res, seq.i_res)
        m.d.comb += [
            stage.params.eq(seq.params),
            stage.relu.eq(seq.relu),
            stage.requant.eq(seq.requant),
        ]

        # -- registers ---------------------------------------------------------------------
        cmd = Signal(seq.command)
        mode = Signal(3)
        writable = {
            REG["M"]: cmd.m,
            REG["K"]: cmd.k,
            REG["N"]: cmd.n,
            REG["ACT_BASE"]: cmd.act_base,
            REG["WGT_BASE"]: cmd.wgt_base,
            REG["PARAM_BASE"]: cmd.param_base,
            REG["RES_BASE"]: cmd.res_base,
            REG["MODE"]: mode,
        }
        bus = self.reg
        # One decode per register (rather than a case statement, which Yosys splits per
        # field into cases without a default, and Verilator's lint rejects).
        for addr, field in writable.items():
            with m.If(bus.w_en & (bus.addr == addr)):
                m.d.sync += field.eq(bus.w_data)
        m.d.comb += [
            cmd.relu.eq(mode[0]),
            cmd.requant.eq(mode[1]),
            cmd.cont.eq(mode[2] if cfg.preload else 0),  # no preload: bit 2 is ignored
            seq.cmd.eq(cmd),
            seq.start.eq(bus.w_en & (bus.addr == REG["CTRL"]) & bus.w_data[0]),
            self.busy.eq(seq.busy),
            self.done.eq(seq.done),
        ]
        readable = {
            **writable,
            REG["STATUS"]: seq.busy | (seq.done << 1),
            REG["FLAGGED"]: seq.flagged,
            REG["CYCLES"]: seq.cycles,
            REG["CONFIG"]: config_word(cfg),
        }
        with m.Switch(bus.addr):
            for addr, value in readable.items():
                with m.Case(addr):
                    m.d.comb += bus.r_data.eq(value)
            with m.Default():
                m.d.comb += bus.r_data.eq(0)
        return m
