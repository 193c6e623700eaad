"""The weight-stationary sequencer: runs a whole GEMM through :class:`~oasa.hw.ws_array.WSArray`,
K tiles innermost, partial sums parked in the result buffer between K tiles."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from oasa.config import BUFFERS, ArrayConfig
from oasa.hw.layouts import (
    act_beat_layout,
    params_layout,
    result_layout,
    result_word_layout,
    stage_out_layout,
    weight_beat_layout,
)
from oasa.hw.output_stage import OutputStage
from oasa.hw.registers import DIM_BITS
from oasa.hw.sequencer import command_layout, count_flags, layer_control
from oasa.hw.ws_array import WSArray, ws_act_layout, ws_result_layout

__all__ = ["FEEDBACK_LATENCY", "WSSequencer", "pass_gap"]

#: Cycles from a row leaving the array to the earliest cycle the same row of the next K
#: tile may enter it, beyond :meth:`WSArray.latency_of`'s: the partial sums' register (1),
#: the result write (1), and the buffer read and its register at the issue side (2). The
#: cycle model (``sim/cycles.py``) reads it from here.
FEEDBACK_LATENCY = 4


def pass_gap(cfg: ArrayConfig) -> int:
    """Cycles from a pass's last row to the next pass's first weight beat: the array's
    drain (:meth:`WSArray.drain_of`), and at least enough that a pass's first row leaves
    the array :attr:`OutputStage.LATENCY` cycles after the previous pass's last row (so a
    partial-sum write never meets a requantized row's write; only arrays of a few PEs
    wait longer than the drain)."""
    return max(WSArray.drain_of(cfg), OutputStage.LATENCY - cfg.rows)


class WSSequencer(wiring.Component):
    """Walks the passes of X (M x K) times W (K x N) on the weight-stationary array.

    A pass is one (N tile, K tile): R weight words, then the M rows of X's K tile with the
    partial sums they continue from. N tiles are outer and K tiles inner, in increasing k,
    so every dot product adds its terms in order k = 0..K-1 (the arithmetic contract,
    DESIGN.md section 2). A K tile's results are written to the result buffer and read back
    as the next K tile's partial sums; only the last K tile's rows are requantized and
    counted in FLAGGED. With ``cmd.cont`` (MODE bit 2) the first K tile, too, continues
    from the result buffer: the words and flags a previous call left at the same place, so
    a host cuts a K too long for the buffers into calls, in increasing k, and only the last
    requantizes.

    Buffer layout (R = rows, C = cols, K tiles kt = 0..ceil(K/R)-1, N tiles nt):

    - activations: word ``act_base + kt*M + m`` holds x[m, kt*R + r] in lane r;
    - weights: word ``wgt_base + nt*K + k`` holds w[k, nt*C + j] in lane j (as the
      output-stationary layout; the sequencer sends zeros for k >= K);
    - parameters: word ``param_base + nt``;
    - results: word ``res_base + nt*M + m`` holds result row m of column tile nt (and,
      while the layer runs, its partial sums).

    Lanes past K or N hold zeros (the host pads them).

    Issue side: the three-stage pipeline of :class:`~oasa.hw.sequencer.Sequencer` (address,
    buffer read, registered data), which never stalls: stage A itself waits until the array
    takes the beat. A pass's first weight beat waits :func:`pass_gap` cycles after the
    previous pass's last row (the array's drain), and the first row of a pass that
    continues a K tile waits :attr:`feedback_wait` cycles after the previous pass's first
    row, so that its partial sums are in the result buffer when it reads them.
    Drain side: rows leave the array in order; the last K tile's rows go through the output
    stage, the others are written back at once; the two never meet at the write port.

    Members
    -------
    cmd, start, busy, done, flagged, cycles : as :class:`~oasa.hw.sequencer.Sequencer`
    act_rd, wgt_rd, param_rd, res_rd : In(memory.ReadPort.Signature(...))  buffer reads
    res_wr : In(memory.WritePort.Signature(...))                            result writes
    o_wgt, o_act, o_psum : Out(stream.Signature(...))      weight, row and partial-sum beats
    i_array : In(stream.Signature(ws_result_layout(cfg), always_ready=True))  array rows
    o_stage : Out(stream.Signature(result_layout(cfg), always_ready=True))    final rows
    params : Out(params_layout(cfg)), relu, requant : Out(1)     to the output stage
    i_res : In(stream.Signature(stage_out_layout(cfg), always_ready=True))  from the stage
    """

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        self.command = command_layout(cfg)
        aw = {n: cfg.address_bits(n) for n in BUFFERS}

        def rd(name, shape):
            return In(memory.ReadPort.Signature(addr_width=aw[name], shape=shape))

        super().__init__(
            {
                "cmd": In(self.command),
                "start": In(1),
                "busy": Out(1),
                "done": Out(1),
                "flagged": Out(32),
                "cycles": Out(32),
                "act_rd": rd("act", act_beat_layout(cfg).members["data"]),
                "wgt_rd": rd("wgt", weight_beat_layout(cfg)),
                "param_rd": rd("param", params_layout(cfg)),
                "res_rd": rd("res", result_word_layout(cfg)),
                "res_wr": In(
                    memory.WritePort.Signature(addr_width=aw["res"], shape=result_word_layout(cfg))
                ),
                "o_wgt": Out(stream.Signature(weight_beat_layout(cfg))),
                "o_act": Out(stream.Signature(ws_act_layout(cfg))),
                "o_psum": Out(stream.Signature(result_word_layout(cfg))),
                "i_array": In(stream.Signature(ws_result_layout(cfg), always_ready=True)),
                "o_stage": Out(stream.Signature(result_layout(cfg), always_ready=True)),
                "params": Out(params_layout(cfg)),
                "relu": Out(1),
                "requant": Out(1),
                "i_res": In(stream.Signature(stage_out_layout(cfg), always_ready=True)),
            }
        )

    @property
    def drain_wait(self) -> int:
        """Cycles from a pass's last row to the next pass's first weight beat
        (:func:`pass_gap`)."""
        return pass_gap(self.cfg)

    @property
    def feedback_wait(self) -> int:
        """Cycles from a pass's first row to the first row of the pass continuing it:
        the array's latency and :data:`FEEDBACK_LATENCY`."""
        return WSArray.latency_of(self.cfg) + FEEDBACK_LATENCY

    def elaborate(self, platform):
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        m = Module()

        launch, cmd, zero_dim, finish = layer_control(m, self)

        # -- issue side, stage A: counters and addresses -----------------------------------
        issuing = Signal()
        loading = Signal()  # sending the pass's R weight words (else its M rows)
        idx = Signal(DIM_BITS)  # weight beat i of the load, or row m of the pass
        a_last = Signal()  # idx is the load's or the pass's last beat
        kk = Signal(DIM_BITS + 1)  # k of the weight beat: k0 + i
        first_k = Signal()  # the pass is the N tile's first K tile (partial sums zero)
        n_last = Signal()  # the last N tile
        n0 = Signal(DIM_BITS + 1)
        act_addr = Signal.like(self.act_rd.addr)
        wgt_addr = Signal.like(self.wgt_rd.addr)
        wgt_tile = Signal.like(self.wgt_rd.addr)  # wgt_base + nt*K
        res_addr = Signal.like(self.res_rd.addr)
        res_tile = Signal.like(self.res_rd.addr)  # res_base + nt*M
        drain, feedback = self.drain_wait, self.feedback_wait
        since_last = Signal(range(drain + 1))  # cycles since the last row, saturating
        since_first = Signal(range(feedback + 1))  # cycles since the pass's first row
        m.d.sync += [
            since_last.eq(Mux(since_last == drain, drain, since_last + 1)),
            since_first.eq(Mux(since_first == feedback, feedback, since_first + 1)),
        ]
        go_wgt = issuing & loading & (since_last == drain)
        row_free = first_k | (idx != 0) | (since_first == feedback)
        go_act = issuing & ~loading & row_free

        b_wgt, b_act, b_last, b_zero, b_first_k = (Signal(name=f"b_{n}") for n in
                                                   ("wgt", "act", "last", "zero", "first_k"))  # fmt: skip
        c_wgt_valid, c_act_valid, c_last = Signal(), Signal(), Signal()
        c_wgt = Signal.like(self.wgt_rd.data)
        c_act = Signal.like(self.act_rd.data)
        c_psum = Signal.like(self.res_rd.data)
        m.d.sync += [
            b_wgt.eq(go_wgt),
            b_act.eq(go_act),
            b_last.eq(a_last),
            b_zero.eq(kk >= cmd.k),
            b_first_k.eq(first_k),
            c_wgt_valid.eq(b_wgt),
            c_act_valid.eq(b_act),
            c_last.eq(b_last),
            c_wgt.eq(Mux(b_zero, 0, self.wgt_rd.data)),
            c_act.eq(self.act_rd.data),
            c_psum.eq(Mux(b_first_k & ~cmd.cont, 0, self.res_rd.data)),
        ]
        m.d.comb += [
            self.act_rd.addr.eq(act_addr),
            self.wgt_rd.addr.eq(wgt_addr),
            self.res_rd.addr.eq(res_addr),
            self.act_rd.en.eq(1),
            self.wgt_rd.en.eq(1),
            self.res_rd.en.eq(1),
            self.o_wgt.valid.eq(c_wgt_valid),
            self.o_wgt.payload.eq(c_wgt),
            self.o_act.valid.eq(c_act_valid),
            self.o_act.payload.data.eq(c_act),
            self.o_act.payload.last.eq(c_last),
            self.o_psum.valid.eq(c_act_valid),
            self.o_psum.payload.eq(c_psum),
        ]

        with m.If(launch):
            m.d.sync += [
                issuing.eq(~zero_dim),
                loading.eq(1),
                idx.eq(0),
                a_last.eq(rows == 1),
                kk.eq(0),
                first_k.eq(1),
                n0.eq(0),
                n_last.eq(cols >= self.cmd.n),
                act_addr.eq(self.cmd.act_base),
                wgt_addr.eq(self.cmd.wgt_base),
                wgt_tile.eq(self.cmd.wgt_base),
                res_addr.eq(self.cmd.res_base),
                res_tile.eq(self.cmd.res_base),
                since_last.eq(drain),
            ]
        with m.Elif(go_wgt):
            m.d.sync += [kk.eq(kk + 1), wgt_addr.eq(wgt_addr + 1)]
            with m.If(a_last):  # the load is complete: the rows follow
                m.d.sync += [loading.eq(0), idx.eq(0), a_last.eq(cmd.m == 1)]
            with m.Else():
                m.d.sync += [idx.eq(idx + 1), a_last.eq(idx + 2 == rows)]
        with m.Elif(go_act):
            m.d.sync += [act_addr.eq(act_addr + 1), res_addr.eq(res_addr + 1)]
            with m.If(idx == 0):
                m.d.sync += since_first.eq(1)
            with m.If(~a_last):
                m.d.sync += [idx.eq(idx + 1), a_last.eq(idx + 2 == cmd.m)]
            with m.Else():  # the pass's last row: the next pass loads its weights
                m.d.sync += [
                    since_last.eq(1),
                    loading.eq(1),
                    idx.eq(0),
                    a_last.eq(rows == 1),
                    first_k.eq(0),
                    res_addr.eq(res_tile),
                ]
                with m.If(kk >= cmd.k):  # the N tile's last K tile
                    m.d.sync += [
                        kk.eq(0),
                        first_k.eq(1),
                        act_addr.eq(cmd.act_base),
                        wgt_addr.eq(wgt_tile + cmd.k),
                        wgt_tile.eq(wgt_tile + cmd.k),
                        res_addr.eq(res_tile + cmd.m),
                        res_tile.eq(res_tile + cmd.m),
                        n0.eq(n0 + cols),
                        n_last.eq(n0 + 2 * cols >= cmd.n),
                    ]
                    with m.If(n_last):
                        m.d.sync += issuing.eq(0)

        # -- array side: the last K tile's rows go to the output stage, the others back
        # to the result buffer, through one register. Counted where rows leave the array;
        # the parameter word is read while the pass before drains.
        m_in = Signal(DIM_BITS)
        k0_in = Signal(DIM_BITS + 1)
        final_in = Signal()  # rows leaving the array are of the N tile's last K tile
        col_in = Signal.like(self.res_wr.addr)  # res_base + nt*M
        param_addr = Signal.like(self.param_rd.addr)
        arr = self.i_array
        m.d.comb += [
            self.o_stage.valid.eq(arr.valid & final_in),
            self.o_stage.payload.acc.eq(arr.payload.value),
            self.o_stage.payload.ovf.eq(arr.payload.ovf),
            self.o_stage.payload.row.eq(0),
            self.param_rd.addr.eq(param_addr),
            self.param_rd.en.eq(1),
            self.params.eq(self.param_rd.data),
            self.relu.eq(cmd.relu),
            self.requant.eq(cmd.requant),
        ]
        byp_valid = Signal()
        byp_addr = Signal.like(self.res_wr.addr)
        byp_data = Signal.like(self.res_wr.data)
        m.d.sync += [
            byp_valid.eq(arr.valid & ~final_in),
            byp_addr.eq(col_in + m_in),
            byp_data.value.eq(arr.payload.value),
            byp_data.ovf.eq(arr.payload.ovf),
        ]
        with m.If(launch):
            m.d.sync += [
                m_in.eq(0),
                k0_in.eq(0),
                final_in.eq(rows >= self.cmd.k),
                col_in.eq(self.cmd.res_base),
                param_addr.eq(self.cmd.param_base),
            ]
        with m.Elif(arr.valid):
            with m.If(~arr.payload.last):
                m.d.sync += m_in.eq(m_in + 1)
            with m.Elif(final_in):
                m.d.sync += [
                    m_in.eq(0),
                    k0_in.eq(0),
                    final_in.eq(rows >= cmd.k),
                    col_in.eq(col_in + cmd.m),
                    param_addr.eq(param_addr + 1),
                ]
            with m.Else():
                m.d.sync += [
                    m_in.eq(0),
                    k0_in.eq(k0_in + rows),
                    final_in.eq(k0_in + 2 * rows >= cmd.k),
                ]

        # -- write side: requantized rows from the stage, or partial sums; count flags ------
        m_w = Signal(DIM_BITS)
        n0_w = Signal(DIM_BITS + 1)
        col_w = Signal.like(self.res_wr.addr)  # res_base + nt*M
        res = self.i_res
        with m.If(res.valid):
            m.d.comb += [
                self.res_wr.addr.eq(col_w + m_w),
                self.res_wr.data.value.eq(res.payload.value),
                self.res_wr.data.ovf.eq(res.payload.ovf),
            ]
        with m.Else():
            m.d.comb += [self.res_wr.addr.eq(byp_addr), self.res_wr.data.eq(byp_data)]
        m.d.comb += self.res_wr.en.eq(res.valid | byp_valid)
        count_flags(m, self, res.valid, res.payload.ovf, launch)
        with m.If(launch):
            m.d.sync += [m_w.eq(0), n0_w.eq(0), col_w.eq(self.cmd.res_base)]
        with m.Elif(res.valid):
            with m.If(m_w + 1 != cmd.m):
                m.d.sync += m_w.eq(m_w + 1)
            with m.Else():  # the N tile's last row
                m.d.sync += [m_w.eq(0), n0_w.eq(n0_w + cols), col_w.eq(col_w + cmd.m)]
                with m.If(n0_w + cols >= cmd.n):
                    m.d.sync += finish.eq(1)
        return m
