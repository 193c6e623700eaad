"""The weight-stationary sequencer: runs a whole GEMM through :class:`~oasa.hw.ws_array.WSArray`,
K tiles innermost, partial sums parked in the result buffer between K tiles."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from oasa.config import ArrayConfig
from oasa.hw.layouts import (
    result_layout,
    result_word_layout,
    weight_beat_layout,
)
from oasa.hw.output_stage import OutputStage
from oasa.hw.registers import DIM_BITS
from oasa.hw.sequencer import command_layout, count_flags, layer_control, sequencer_members
from oasa.hw.ws_array import WSArray, ws_act_layout, ws_result_layout

__all__ = ["FEEDBACK_LATENCY", "WSSequencer"]

#: Cycles from a row leaving the array to the earliest cycle the same row of the next K
#: tile may enter it, beyond :meth:`WSArray.latency_of`'s: the partial sums' register (1),
#: the result write (1), and the buffer read and its register at the issue side (2). The
#: cycle model (``sim/cycles.py``) reads it from here.
FEEDBACK_LATENCY = 4


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
      output-stationary layout); a load reads its K tile's words last first, k0 + R - 1
      down to k0, as the array takes them, and sends zeros for k >= K;
    - parameters: word ``param_base + nt``;
    - results: word ``res_base + nt*M + m`` holds result row m of column tile nt (and,
      while the layer runs, its partial sums).

    Lanes past K or N hold zeros (the host pads them).

    Issue side: the three-stage pipeline of :class:`~oasa.hw.sequencer.Sequencer` (address,
    buffer read, registered data), which never stalls: stage A itself waits until the array
    takes the beat. Weights and rows have an issuer each, so the next pass's weights load
    while a pass streams (the array double-buffers them): a load begins once the previous
    load has been taken by its pass's first row, a cycle after it (the array's
    :meth:`~oasa.hw.ws_array.WSArray.drain_of`); the
    first row of a pass that continues a K tile waits :attr:`feedback_wait` cycles after
    the previous pass's first row, so that its partial sums are in the result buffer when
    it reads them; and partial sums that follow a last K tile wait until its requantized
    rows, an output stage behind, have been written (:attr:`write_gap`).
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
        super().__init__(
            {
                **sequencer_members(cfg, self.command),
                "o_wgt": Out(stream.Signature(weight_beat_layout(cfg))),
                "o_act": Out(stream.Signature(ws_act_layout(cfg))),
                "o_psum": Out(stream.Signature(result_word_layout(cfg))),
                "i_array": In(stream.Signature(ws_result_layout(cfg), always_ready=True)),
                "o_stage": Out(stream.Signature(result_layout(cfg), always_ready=True)),
            }
        )

    @property
    def write_gap(self) -> int:
        """Cycles from a last K tile's last row to the first row of partial sums that may
        follow it: the output stage's latency, so that the two never write at once."""
        return OutputStage.LATENCY

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

        # -- issue side, stage A: two issuers side by side, one for weights and one for
        # rows, each with its own buffer port. A load may begin when no complete load waits
        # (the array's load registers follow the previous first row); a pass's rows begin once its load is complete, and (continuing a K tile)
        # once their partial sums are back, and (after a last K tile, when partial sums
        # follow) once the requantized rows are past the write port.
        feedback, stage_gap = self.feedback_wait, self.write_gap
        load_ready = Signal()  # a complete load waits for its pass's first row
        since_first = Signal(range(feedback + 1))  # since the last first row
        since_last = Signal(range(stage_gap + 1))  # since the last pass's last row
        top = feedback
        m.d.sync += [
            since_first.eq(Mux(since_first == top, top, since_first + 1)),
            since_last.eq(Mux(since_last == stage_gap, stage_gap, since_last + 1)),
        ]

        # Weights: R words per pass, N tiles outer and K tiles inner; a load's rows last
        # first (the array shifts them down from its top row).
        w_active = Signal()  # loads remain
        w_i = Signal(range(rows))  # beat of the load in progress
        kk = Signal(DIM_BITS + 1)  # k of the weight beat: k0 + R - 1 - i
        w_n_last = Signal()  # loading the last N tile
        w_n0 = Signal(DIM_BITS + 1)
        wgt_addr = Signal.like(self.wgt_rd.addr)
        wgt_tile = Signal.like(self.wgt_rd.addr)  # wgt_base + nt*K
        go_w = w_active & ((w_i != 0) | ~load_ready)

        # Rows: M per pass, with the partial sums they continue from.
        a_active = Signal()  # passes remain
        streaming = Signal()  # a pass's rows are going out
        idx = Signal(DIM_BITS)  # row m of the pass
        a_last = Signal()  # idx is the pass's last row
        first_k = Signal()  # the pass is the N tile's first K tile
        final = Signal()  # the pass is the N tile's last K tile
        prev_final = Signal()  # the previous pass was
        k0 = Signal(DIM_BITS + 1)
        a_n_last = Signal()
        a_n0 = Signal(DIM_BITS + 1)
        act_addr = Signal.like(self.act_rd.addr)
        res_addr = Signal.like(self.res_rd.addr)
        res_tile = Signal.like(self.res_rd.addr)  # res_base + nt*M
        sums_back = first_k | (since_first >= feedback)
        writes_apart = ~prev_final | final | (since_last >= stage_gap)
        go_a = a_active & (streaming | (load_ready & sums_back & writes_apart))

        b_wgt, b_act, b_last, b_zero, b_first_k = (Signal(name=f"b_{n}") for n in
                                                   ("wgt", "act", "last", "zero", "first_k"))  # fmt: skip
        c_wgt_valid, c_act_valid, c_last = Signal(), Signal(), Signal()
        c_wgt = Signal.like(self.wgt_rd.data)
        c_act = Signal.like(self.act_rd.data)
        c_psum = Signal.like(self.res_rd.data)
        m.d.sync += [
            b_wgt.eq(go_w),
            b_act.eq(go_a),
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
                load_ready.eq(0),
                since_first.eq(top),
                since_last.eq(stage_gap),
                w_active.eq(~zero_dim),
                w_i.eq(0),
                kk.eq(rows - 1),
                w_n0.eq(0),
                w_n_last.eq(cols >= self.cmd.n),
                wgt_addr.eq(self.cmd.wgt_base + rows - 1),
                wgt_tile.eq(self.cmd.wgt_base),
                a_active.eq(~zero_dim),
                streaming.eq(0),
                idx.eq(0),
                a_last.eq(self.cmd.m == 1),
                first_k.eq(1),
                final.eq(rows >= self.cmd.k),
                prev_final.eq(0),
                k0.eq(0),
                a_n0.eq(0),
                a_n_last.eq(cols >= self.cmd.n),
                act_addr.eq(self.cmd.act_base),
                res_addr.eq(self.cmd.res_base),
                res_tile.eq(self.cmd.res_base),
            ]
        with m.Else():
            with m.If(go_w):
                m.d.sync += [kk.eq(kk - 1), wgt_addr.eq(wgt_addr - 1)]
                with m.If(w_i != rows - 1):
                    m.d.sync += w_i.eq(w_i + 1)
                with m.Else():  # the load is complete (kk = k0): the next K tile's last row
                    m.d.sync += [
                        w_i.eq(0),
                        load_ready.eq(1),
                        kk.eq(kk + 2 * rows - 1),
                        wgt_addr.eq(wgt_addr + 2 * rows - 1),
                    ]
                    with m.If(kk + rows >= cmd.k):  # the N tile's last K tile: the next N tile
                        m.d.sync += [
                            kk.eq(rows - 1),
                            wgt_addr.eq(wgt_tile + cmd.k + rows - 1),
                            wgt_tile.eq(wgt_tile + cmd.k),
                            w_n0.eq(w_n0 + cols),
                            w_n_last.eq(w_n0 + 2 * cols >= cmd.n),
                        ]
                        with m.If(w_n_last):
                            m.d.sync += w_active.eq(0)
            with m.If(go_a):
                m.d.sync += [act_addr.eq(act_addr + 1), res_addr.eq(res_addr + 1)]
                with m.If(~streaming):  # the pass's first row takes the load
                    m.d.sync += [load_ready.eq(0), since_first.eq(1)]
                with m.If(~a_last):
                    m.d.sync += [streaming.eq(1), idx.eq(idx + 1), a_last.eq(idx + 2 == cmd.m)]
                with m.Else():  # the pass's last row
                    m.d.sync += [
                        streaming.eq(0),
                        idx.eq(0),
                        a_last.eq(cmd.m == 1),
                        since_last.eq(1),
                        prev_final.eq(final),
                        first_k.eq(0),
                        k0.eq(k0 + rows),
                        final.eq(k0 + 2 * rows >= cmd.k),
                        res_addr.eq(res_tile),
                    ]
                    with m.If(final):  # the next N tile
                        m.d.sync += [
                            first_k.eq(1),
                            k0.eq(0),
                            final.eq(rows >= cmd.k),
                            act_addr.eq(cmd.act_base),
                            res_addr.eq(res_tile + cmd.m),
                            res_tile.eq(res_tile + cmd.m),
                            a_n0.eq(a_n0 + cols),
                            a_n_last.eq(a_n0 + 2 * cols >= cmd.n),
                        ]
                        with m.If(a_n_last):
                            m.d.sync += a_active.eq(0)

        # -- array side: the last K tile's rows go to the output stage, the others back
        # to the result buffer, through one register. Counted where rows leave the array.
        m_in = Signal(DIM_BITS)
        k0_in = Signal(DIM_BITS + 1)
        final_in = Signal()  # rows leaving the array are of the N tile's last K tile
        col_in = Signal.like(self.res_wr.addr)  # res_base + nt*M
        param_addr = Signal.like(self.param_rd.addr)  # this N tile's parameters
        param_next = Signal.like(self.param_rd.addr)  # the next N tile's
        arr = self.i_array
        # The next pass's first row may leave the array the cycle after a last K tile's
        # last row, and the read port answers a cycle after its address: the address moves
        # to the next N tile's word in the cycle that last row leaves.
        tile_done = arr.valid & arr.payload.last & final_in
        m.d.comb += [
            self.o_stage.valid.eq(arr.valid & final_in),
            self.o_stage.payload.acc.eq(arr.payload.value),
            self.o_stage.payload.ovf.eq(arr.payload.ovf),
            self.o_stage.payload.row.eq(0),
            self.param_rd.addr.eq(Mux(tile_done, param_next, param_addr)),
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
                param_next.eq(self.cmd.param_base + 1),
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
                    param_addr.eq(param_next),
                    param_next.eq(param_next + 1),
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
