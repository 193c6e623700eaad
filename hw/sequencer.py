"""The sequencer: runs a whole tiled GEMM from the buffers through the array."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from oasa.config import BUFFERS, ArrayConfig
from oasa.hw.array import SystolicArray
from oasa.hw.delays import delayed
from oasa.hw.layouts import (
    act_beat_layout,
    params_layout,
    result_word_layout,
    stage_out_layout,
    weight_beat_layout,
)
from oasa.hw.registers import DIM_BITS

__all__ = ["Sequencer", "command_layout", "count_flags", "layer_control", "sequencer_members"]


def command_layout(cfg: ArrayConfig) -> data.StructLayout:
    """What the host programs for one layer (the command registers)."""
    return data.StructLayout(
        {
            "m": unsigned(DIM_BITS),
            "k": unsigned(DIM_BITS),
            "n": unsigned(DIM_BITS),
            "act_base": unsigned(cfg.address_bits("act")),
            "wgt_base": unsigned(cfg.address_bits("wgt")),
            "param_base": unsigned(cfg.address_bits("param")),
            "res_base": unsigned(cfg.address_bits("res")),
            "relu": 1,
            "requant": 1,
            "cont": 1,  # start from the result buffer's partial sums and flags
        }
    )


def sequencer_members(cfg: ArrayConfig, command: data.StructLayout) -> dict[str, wiring.Member]:
    """The members every dataflow's sequencer has: the command and status, a port on each
    buffer (the result buffer's read port, for partial sums, and its write port), and the output stage's controls and rows."""
    aw = {n: cfg.address_bits(n) for n in BUFFERS}

    def read_port(name: str, shape) -> wiring.Member:
        return In(memory.ReadPort.Signature(addr_width=aw[name], shape=shape))

    return {
        "cmd": In(command),
        "start": In(1),
        "busy": Out(1),
        "done": Out(1),
        "flagged": Out(32),
        "cycles": Out(32),
        "act_rd": read_port("act", act_beat_layout(cfg).members["data"]),
        "wgt_rd": read_port("wgt", weight_beat_layout(cfg)),
        "param_rd": read_port("param", params_layout(cfg)),
        "res_rd": read_port("res", result_word_layout(cfg)),
        "res_wr": In(
            memory.WritePort.Signature(addr_width=aw["res"], shape=result_word_layout(cfg))
        ),
        "params": Out(params_layout(cfg)),
        "relu": Out(1),
        "requant": Out(1),
        "i_res": In(stream.Signature(stage_out_layout(cfg), always_ready=True)),
    }


def layer_control(m: Module, seq: wiring.Component) -> tuple[Value, Value, Value, Signal]:
    """The part of a sequencer every dataflow shares: start, busy, done and CYCLES.

    Returns ``(launch, cmd, zero_dim, finish)``: ``launch`` is high in the cycle the layer
    begins (the counters load then), ``cmd`` the command copied at launch, ``zero_dim``
    whether the programmed command is empty (valid at launch), and ``finish`` a register the
    caller sets (``m.d.sync += finish.eq(1)``) in the cycle after the layer's last result
    row is written; the layer ends then.

    ``start`` is registered: the launch resets every counter of both sides, and with the
    register bus's address decode in front of that fan-out it was the longest path of a
    16 x 16 array on the ECP5. The layer begins one cycle later; ``busy`` already shows the
    pending start (and ``done`` hides the last layer's), so the host sees no difference but
    one more busy cycle. The command is copied at launch, so the host may program the next
    layer (e.g. in other buffer regions) while this one runs. The bus writes one register
    per cycle and the start write is one of them, so the copy, one cycle later, holds
    exactly what was written before the start.
    """
    pending = Signal()
    running = Signal()
    finished = Signal()
    finish = Signal()
    cmd = Signal(seq.command)
    zero_dim = (seq.cmd.m == 0) | (seq.cmd.k == 0) | (seq.cmd.n == 0)
    m.d.sync += pending.eq(seq.start & ~seq.busy)
    m.d.comb += [seq.busy.eq(running | pending), seq.done.eq(finished & ~pending)]
    launch = pending
    with m.If(launch):
        m.d.sync += [cmd.eq(seq.cmd), seq.flagged.eq(0)]
        m.d.sync += [running.eq(~zero_dim), finished.eq(zero_dim)]
        # The pending cycle was busy, and counts; an empty layer counts none.
        m.d.sync += seq.cycles.eq(~zero_dim)
    with m.Elif(running):
        m.d.sync += seq.cycles.eq(seq.cycles + 1)
    m.d.sync += finish.eq(0)
    with m.If(finish):
        m.d.sync += [running.eq(0), finished.eq(1)]
    return launch, cmd, zero_dim, finish


def count_flags(m: Module, seq: wiring.Component, keep: Value, ovf: Value, launch: Value) -> None:
    """Add the set bits of ``ovf`` to FLAGGED for each row with ``keep`` high. A row's flags
    are counted in one cycle and added in the next (a 16-input count and a 32-bit add in
    one cycle set Fmax on the ECP5), so a layer finishes one cycle after its last write,
    with the final count. Launch clears FLAGGED; no row is counted then."""
    cols = len(ovf)
    row_flags = Signal(range(cols + 1))
    m.d.sync += row_flags.eq(Mux(keep, sum(ovf[j] for j in range(cols)), 0))
    with m.If(~launch):
        m.d.sync += seq.flagged.eq(seq.flagged + row_flags)


class Sequencer(wiring.Component):
    """Walks the tiles of X (M x K) times W (K x N) and writes every result row.

    Buffer layout (R = rows, C = cols, tiles mt = 0..ceil(M/R)-1, nt = 0..ceil(N/C)-1):

    - activations: word ``act_base + mt*K + k`` holds x[mt*R + i, k] in lane i;
    - weights: word ``wgt_base + nt*K + k`` holds w[k, nt*C + j] in lane j;
    - parameters: word ``param_base + nt`` holds bias/mult/shift of channels nt*C + j;
    - results: word ``res_base + nt*M + m`` holds result row m of column tile nt.

    Lanes past M or N hold zeros (the host pads them), so padding never changes a result
    or a flag; result rows m >= M are not written.

    Issue side: a three-stage pipeline (address, buffer read, registered buffer data)
    streams one beat per cycle into the array, tile after tile, row tiles outer and column
    tiles inner. It never stalls: a tile's last beat leaves stage A only R or more cycles
    after the previous tile's (only a tile of fewer than R beats waits), which is when the
    array accepts it, so the array's ``ready`` is never low for a beat it is offered.
    Drain side: the parameter buffer is read ahead so each tile's rows meet their own
    parameters at the output stage, and each requantized row is written with its flags,
    whose set bits are counted. ``done`` rises two cycles after the last row is written,
    when FLAGGED holds its flags.

    Members
    -------
    cmd : In(command_layout(cfg))      the layer, sampled the cycle after ``start``
    start : In(1)                      begin a layer (ignored while busy), one cycle later
    busy, done : Out(1)                running; finished (until the next start)
    flagged, cycles : Out(32)          flagged outputs and busy cycles of the last layer
    act_rd, wgt_rd, param_rd : In(memory.ReadPort.Signature(...))   buffer read ports
    res_wr : In(memory.WritePort.Signature(...))                     result write port
    o_act, o_wgt : Out(stream.Signature(...))                        beats to the array
    res_rd : In(memory.ReadPort.Signature(...))   partial sums to continue (MODE bit 2)
    o_init : Out(result_word_layout(cfg))         their rows, to the array's ``i_init``
    row0_next : In(1)                  a tile's row 0 enters the output stage next cycle
    params : Out(params_layout(cfg)), relu, requant : Out(1)   to the output stage
    i_res : In(stream.Signature(stage_out_layout(cfg), always_ready=True))
    """

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        self.command = command_layout(cfg)
        super().__init__(
            {
                **sequencer_members(cfg, self.command),
                "o_act": Out(stream.Signature(act_beat_layout(cfg))),
                "o_wgt": Out(stream.Signature(weight_beat_layout(cfg))),
                "o_init": Out(result_word_layout(cfg)),
                "row0_next": In(1),
            }
        )

    @property
    def last_beat_gap(self) -> int:
        """Fewest cycles between two tiles' last beats: the array's drain of a tile, R
        (:attr:`SystolicArray.min_tile_beats`)."""
        return self.cfg.rows

    @property
    def init_lead(self) -> int:
        """Cycles from the reader's start of a continuing tile to its first beat in stage
        A: the array's :meth:`SystolicArray.init_lead_of` (the read and the beat take as
        long to reach the array)."""
        return SystolicArray.init_lead_of(self.cfg)

    @property
    def init_gap(self) -> int:
        """Fewest cycles between continuing tiles' first beats: a tile's R initial rows
        enter the array's chain on every other cycle, 2R - 1 cycles in all."""
        return 2 * self.cfg.rows - 1

    def _init_reader(self, m: Module, cmd: Value, launch: Value, zero_dim: Value) -> Value:
        """The reader of a continuing layer's initial partial sums (``cfg.preload``); drives
        ``res_rd`` and ``o_init``, and returns ``first_go``: a continuing tile's first
        beat may go."""
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        # -- continuing (MODE bit 2): initial partial sums from the result buffer ----------
        # A reader walks the tiles in issue order and reads row i of a tile's partial sums
        # and flags 2i cycles after the tile begins; the array wants row 0 ``lead`` cycles
        # before the tile's first beat is accepted (SystolicArray.init_lead_of), and a read
        # takes as long as a beat's (address, read, register), so stage A sends the first
        # beat ``lead`` cycles after the reader began the tile. Tiles begin max(K, 2R - 1)
        # cycles apart, so that two tiles' rows never meet on the array's chain.
        lead, init_gap = self.init_lead, self.init_gap
        rd_active = Signal()  # tiles remain to be read
        rd_t = Signal(DIM_BITS)  # cycles since the reader began this tile
        rd_period = Signal(DIM_BITS)  # cycles between tile starts, less one
        rd_addr = Signal.like(self.res_rd.addr)  # the next row's address
        rd_tile = Signal.like(self.res_rd.addr)  # res_base + nt*M + m0
        rd_row_tile = Signal.like(self.res_rd.addr)  # res_base + m0
        rd_n0 = Signal(DIM_BITS + 1)
        rd_m0 = Signal(DIM_BITS + 1)
        rd_n_last = Signal()
        rd_m_last = Signal()
        rd_read = Signal()
        rd_start = Signal()
        m.d.comb += [
            rd_read.eq(rd_active & ~rd_t[0] & (rd_t < 2 * rows - 1)),  # row rd_t / 2
            rd_start.eq(rd_active & (rd_t == 0)),
            self.res_rd.addr.eq(rd_addr),
            self.res_rd.en.eq(rd_read),
        ]
        with m.If(launch):
            m.d.sync += [
                rd_active.eq(self.cmd.cont & ~zero_dim),
                rd_t.eq(0),
                rd_period.eq(Mux(self.cmd.k > init_gap, self.cmd.k - 1, init_gap - 1)),
                rd_addr.eq(self.cmd.res_base),
                rd_tile.eq(self.cmd.res_base),
                rd_row_tile.eq(self.cmd.res_base),
                rd_n0.eq(0),
                rd_m0.eq(0),
                rd_n_last.eq(cols >= self.cmd.n),
                rd_m_last.eq(rows >= self.cmd.m),
            ]
        with m.Elif(rd_active):
            m.d.sync += rd_t.eq(rd_t + 1)
            with m.If(rd_read):
                m.d.sync += rd_addr.eq(rd_addr + 1)
            with m.If(rd_t == rd_period):  # the next tile begins next cycle
                m.d.sync += rd_t.eq(0)
                with m.If(rd_n_last):
                    row_tile = rd_row_tile + rows
                    m.d.sync += [
                        rd_active.eq(~rd_m_last),
                        rd_n0.eq(0),
                        rd_n_last.eq(cols >= cmd.n),
                        rd_m0.eq(rd_m0 + rows),
                        rd_m_last.eq(rd_m0 + 2 * rows >= cmd.m),
                        rd_row_tile.eq(row_tile),
                        rd_tile.eq(row_tile),
                        rd_addr.eq(row_tile),
                    ]
                with m.Else():
                    m.d.sync += [
                        rd_n0.eq(rd_n0 + cols),
                        rd_n_last.eq(rd_n0 + 2 * cols >= cmd.n),
                        rd_tile.eq(rd_tile + cmd.m),
                        rd_addr.eq(rd_tile + cmd.m),
                    ]
        # The read answers a cycle later and is registered, as a beat's operands are.
        b_init = Signal()
        c_init = Signal()
        c_init_row = Signal.like(self.res_rd.data)
        m.d.sync += [b_init.eq(rd_read), c_init.eq(b_init), c_init_row.eq(self.res_rd.data)]
        m.d.comb += self.o_init.eq(Mux(c_init, c_init_row.as_value(), 0))

        return delayed(m, rd_start, lead, "first_go")

    def elaborate(self, platform):
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        m = Module()

        # Start, busy, done and CYCLES (shared with the weight-stationary sequencer).
        launch, cmd, zero_dim, finish = layer_control(m, self)
        m.d.comb += [self.relu.eq(cmd.relu), self.requant.eq(cmd.requant)]

        # -- issue side: stage A holds addresses and counters, stage B the beat --------------
        issuing = Signal()
        k = Signal(DIM_BITS)
        m0 = Signal(DIM_BITS + 1)  # first row of the current row tile
        n0 = Signal(DIM_BITS + 1)  # first column of the current column tile
        act_addr = Signal.like(self.act_rd.addr)
        act_tile = Signal.like(self.act_rd.addr)  # act_base + mt*K
        wgt_addr = Signal.like(self.wgt_rd.addr)
        # Where stage A stands, kept in flip-flops and updated with the counters (the
        # compares run in the cycle the counters move, not in front of the stage's
        # enables, which fan out to every address and the buffers' read ports).
        a_first = Signal()  # k == 0
        a_last = Signal()  # k == K - 1
        k_one = Signal()  # K == 1: every beat is a first and a last one
        n_last = Signal()  # n0 + C >= N: the last column tile of this row tile
        n_single = Signal()  # C >= N: only one column tile
        m_last = Signal()  # m0 + R >= M: the last row tile

        # The issue side never stalls. The array refuses only a tile's last beat that comes
        # less than R cycles after the previous one (its drain is busy); stage A applies
        # that rule itself (``last_free``, the twin of the array's ``drain_free``), and
        # the beat reaches the array a fixed number of cycles later, so the array takes
        # every beat and its ``ready`` is not needed. (Stalling on ``ready`` put the array
        # input's logic in front of every counter and read enable, which set Fmax on the
        # ECP5.) Tested: the array never sees a beat it refuses.
        gap = self.last_beat_gap
        last_free = Signal(init=1)  # a last beat may go: ``gap`` cycles since the last one
        since_last = Signal(range(gap + 1))
        # A continuing tile's first beat also waits for its initial values (below).
        first_go = Signal()
        go = issuing & (~a_last | last_free) & (~a_first | ~cmd.cont | first_go)
        with m.If(launch):
            m.d.sync += last_free.eq(1)
        with m.Elif(go & a_last):
            m.d.sync += [since_last.eq(1), last_free.eq(gap == 1)]
        with m.Elif(~last_free):
            m.d.sync += [since_last.eq(since_last + 1), last_free.eq(since_last + 1 == gap)]

        if cfg.preload:
            m.d.comb += first_go.eq(self._init_reader(m, cmd, launch, zero_dim))
        else:  # nothing to wait for; MODE bit 2 is ignored and the array has no chain
            m.d.comb += [first_go.eq(1), self.o_init.eq(0)]

        # Stage B: the buffers read the beat; stage C registers their outputs (block RAM
        # clock-to-output is most of a 10 ns cycle on the ECP5, so nothing follows it but a
        # route to a flip-flop) and presents the beat.
        b_valid, b_first, b_last = Signal(), Signal(), Signal()
        c_valid, c_first, c_last = Signal(), Signal(), Signal()
        c_act = Signal.like(self.act_rd.data)
        c_wgt = Signal.like(self.wgt_rd.data)
        m.d.sync += [
            b_valid.eq(go),
            b_first.eq(a_first),
            b_last.eq(a_last),
            c_valid.eq(b_valid),
            c_first.eq(b_first),
            c_last.eq(b_last),
            c_act.eq(self.act_rd.data),
            c_wgt.eq(self.wgt_rd.data),
        ]
        m.d.comb += [
            self.act_rd.addr.eq(act_addr),
            self.wgt_rd.addr.eq(wgt_addr),
            self.act_rd.en.eq(1),
            self.wgt_rd.en.eq(1),
            self.o_act.valid.eq(c_valid),
            self.o_wgt.valid.eq(c_valid),
            self.o_act.payload.data.eq(c_act),
            self.o_act.payload.first.eq(c_first),
            self.o_act.payload.last.eq(c_last),
            self.o_wgt.payload.eq(c_wgt),
        ]

        with m.If(launch):  # an empty layer loads the counters too, but never issues
            single = cols >= self.cmd.n
            m.d.sync += [
                issuing.eq(~zero_dim),
                k.eq(0),
                m0.eq(0),
                n0.eq(0),
                act_addr.eq(self.cmd.act_base),
                act_tile.eq(self.cmd.act_base),
                wgt_addr.eq(self.cmd.wgt_base),
                a_first.eq(1),
                a_last.eq(self.cmd.k == 1),
                k_one.eq(self.cmd.k == 1),
                n_last.eq(single),
                n_single.eq(single),
                m_last.eq(rows >= self.cmd.m),
            ]
        with m.Elif(go):
            with m.If(~a_last):
                m.d.sync += [
                    k.eq(k + 1),
                    act_addr.eq(act_addr + 1),
                    wgt_addr.eq(wgt_addr + 1),
                    a_first.eq(0),
                    a_last.eq(k + 2 == cmd.k),
                ]
            with m.Else():
                m.d.sync += [k.eq(0), a_first.eq(1), a_last.eq(k_one)]
                with m.If(n_last):
                    m.d.sync += [n0.eq(0), n_last.eq(n_single), wgt_addr.eq(cmd.wgt_base)]
                    with m.If(m_last):
                        m.d.sync += issuing.eq(0)
                    with m.Else():
                        # The next row tile's K words follow this one's directly.
                        m.d.sync += [
                            m0.eq(m0 + rows),
                            m_last.eq(m0 + 2 * rows >= cmd.m),
                            act_addr.eq(act_addr + 1),
                            act_tile.eq(act_addr + 1),
                        ]
                with m.Else():
                    # Same row tile again against the next column tile's weights.
                    m.d.sync += [
                        n0.eq(n0 + cols),
                        n_last.eq(n0 + 2 * cols >= cmd.n),
                        act_addr.eq(act_tile),
                        wgt_addr.eq(wgt_addr + 1),
                    ]

        # -- drain side: parameters read one tile ahead -----------------------------------
        # A tile's rows enter the output stage on consecutive cycles, rows R-1 .. 0, and the
        # next tile may follow at once. The read port answers one cycle after its address,
        # so the address moves to the next tile in the very cycle row 0 goes in. The
        # address is a register (it fans out to every lane's parameter memory, which is
        # spread over the chip): set one cycle ahead, from the array's look-ahead
        # ``row0_next``, and so are the next tile's address and column offset it is taken
        # from (the compare and the increment run in the cycles between tiles).
        param_addr = Signal.like(self.param_rd.addr)  # this tile's, one cycle ahead
        next_addr = Signal.like(self.param_rd.addr)  # the next tile's, one cycle ahead
        n_next = Signal(DIM_BITS + 1)  # first column of the next tile, one cycle ahead
        read_addr = Signal.like(self.param_rd.addr)
        row0_next = self.row0_next
        m.d.comb += [
            self.param_rd.addr.eq(read_addr),
            self.param_rd.en.eq(1),
            self.params.eq(self.param_rd.data),
        ]
        with m.If(launch):
            single = cols >= self.cmd.n  # one column tile: every tile uses the base
            m.d.sync += [
                read_addr.eq(self.cmd.param_base),
                param_addr.eq(self.cmd.param_base),
                next_addr.eq(Mux(single, self.cmd.param_base, self.cmd.param_base + 1)),
                n_next.eq(Mux(single, 0, cols)),
            ]
        with m.Else():
            m.d.sync += read_addr.eq(Mux(row0_next, next_addr, param_addr))
            with m.If(row0_next):
                wrap = n_next + cols >= cmd.n
                m.d.sync += [
                    param_addr.eq(next_addr),
                    next_addr.eq(Mux(wrap, cmd.param_base, next_addr + 1)),
                    n_next.eq(Mux(wrap, 0, n_next + cols)),
                ]

        # -- drain side: write result rows, count flags -----------------------------------
        m0_w = Signal(DIM_BITS + 1)
        n0_w = Signal(DIM_BITS + 1)
        col_base = Signal.like(self.res_wr.addr)  # res_base + nt*M
        row = self.i_res.payload.row
        m_out = m0_w + row
        keep = self.i_res.valid & (m_out < cmd.m)
        m.d.comb += [
            self.res_wr.addr.eq(col_base + m_out),
            self.res_wr.data.value.eq(self.i_res.payload.value),
            self.res_wr.data.ovf.eq(self.i_res.payload.ovf),
            self.res_wr.en.eq(keep),
        ]
        count_flags(m, self, keep, self.i_res.payload.ovf, launch)
        last_col_tile = n0_w + cols >= cmd.n
        with m.If(launch):
            m.d.sync += [m0_w.eq(0), n0_w.eq(0), col_base.eq(self.cmd.res_base)]
        with m.Elif(self.i_res.valid & (row == 0)):
            with m.If(last_col_tile):
                m.d.sync += [n0_w.eq(0), col_base.eq(cmd.res_base), m0_w.eq(m0_w + rows)]
                with m.If(m0_w + rows >= cmd.m):
                    m.d.sync += finish.eq(1)
            with m.Else():
                m.d.sync += [n0_w.eq(n0_w + cols), col_base.eq(col_base + cmd.m)]
        return m
