"""The output-stationary systolic array, with skew and drain inside."""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from oasa.config import ArrayConfig
from oasa.hw.delays import delay_line, delayed
from oasa.hw.layouts import (
    act_beat_layout,
    result_layout,
    result_word_layout,
    weight_beat_layout,
)
from oasa.hw.pe import ProcessingElement
from oasa.hw.replicas import replica

__all__ = ["SystolicArray"]

_MARKERS = ("valid", "first", "last")


class SystolicArray(wiring.Component):
    """R x C output-stationary systolic array of :class:`ProcessingElement`.

    The caller presents plain, unskewed beats: beat k of a tile carries x[m0 + i, k] for
    every row i (``i_act``) and w[k, n0 + j] for every column j (``i_wgt``); the first beat
    of a tile has ``first`` set and its last beat ``last`` (a one-beat tile has both).
    Inside, row i is delayed by i cycles and column j by j cycles, so PE (i, j) sees both
    operands of beat k in the same cycle, k + i + j cycles after the beat (and its
    markers one cycle later, when the product is ready).

    Draining never stops the array. When a PE finishes a dot product its result and flag
    move into a shadow register; the shadows of a column form a shift chain towards the
    bottom edge that runs in the same skewed time frame as the wavefront (two registers
    per row: the shadow and a pipeline register that absorbs the one-cycle skew between
    rows). A de-skew line per column then aligns the columns, so a tile leaves as R beats
    on ``o_res``, rows R-1 down to 0, one per cycle, while the next tile computes.

    A dot product may start from an initial partial sum and flag (continuing one an
    earlier call left in the result buffer): row i of a tile's initial values is presented
    on ``i_init`` :meth:`init_lead_of` - 2i cycles before the tile's first beat is
    accepted, i.e. rows 0, 1, ..., R-1 on every other cycle. Per column a chain of one
    register per row carries them up from the bottom edge, one row per cycle (column j
    j cycles behind, like its weights), so each row's values meet that row's PEs exactly
    when the first beat's markers do; the PEs start from 0 when ``i_init`` is 0. The
    rows of consecutive tiles must not meet on the chain: first beats 2R - 1 or more
    cycles apart when every tile has initial values. A build without ``cfg.preload`` has
    no chain and ignores ``i_init``.

    Latency: the row R-1 beat of a tile appears ``latency`` = R + C + 2 cycles after the
    tile's ``last`` beat was accepted (:meth:`latency_of`), row 0 R - 1 cycles later.
    Throughput: one input beat per cycle, as long as a tile has at least R beats; a
    ``last`` beat is accepted only R or more cycles after the previous one (so a short
    tile waits, rather than overwrite a drain in progress).

    Parameters
    ----------
    cfg : ArrayConfig
    pe : callable, keyword-only
        Builds each cell: ``pe(cfg)`` returns a :class:`ProcessingElement` (or a component
        with its members). Called R x C times in ``__init__``, row by row; the cells are
        in :attr:`pes`. FPGA builds pass a PE that builds its product in LUTs
        (:mod:`oasa.fpga.multipliers`), tests deliberately broken PEs
        (:mod:`oasa.hw.broken`).

    Members
    -------
    i_act : In(stream.Signature(act_beat_layout(cfg)))
        A column of activations, one per row, with ``first``/``last`` markers.
    i_wgt : In(stream.Signature(weight_beat_layout(cfg)))
        A row of weights, one per column. Transfers together with ``i_act``.
    o_res : Out(stream.Signature(result_layout(cfg), always_ready=True))
        One finished row of a tile per beat: C results, C flags, the row index. Cannot be
        back-pressured: the consumer takes every beat.
    i_init : In(result_word_layout(cfg))
        A row of initial partial sums and flags, one per column (see above); 0 when no
        tile continues.
    row0_next : Out(1)
        A tile's row 0 leaves on ``o_res`` in the next cycle: a look-ahead for consumers
        that must act as a tile ends (the sequencer's parameter reads) from a register.
    """

    #: Registers on a tile's way beyond its R + C skew and drain hops: the input register
    #: and the PE's product and accumulator registers. The cycle model reads it from here.
    EXTRA_LATENCY = 2

    def __init__(
        self,
        cfg: ArrayConfig,
        *,
        pe: Callable[[ArrayConfig], ProcessingElement] = ProcessingElement,
    ):
        self.cfg = cfg
        #: The cells, ``pes[i][j]`` at row i, column j.
        self.pes = [[pe(cfg) for _ in range(cfg.cols)] for _ in range(cfg.rows)]
        super().__init__(
            {
                "i_act": In(stream.Signature(act_beat_layout(cfg))),
                "i_wgt": In(stream.Signature(weight_beat_layout(cfg))),
                "o_res": Out(stream.Signature(result_layout(cfg), always_ready=True)),
                "i_init": In(result_word_layout(cfg)),
                "row0_next": Out(1),
            }
        )

    @staticmethod
    def init_lead_of(cfg: ArrayConfig) -> int:
        """Cycles from row 0 of a tile's initial values on ``i_init`` to the tile's first
        beat: the first beat's markers reach PE (i, j) i + j + 2 cycles after it is
        accepted, and row i's values take j skew registers and R - i chain registers to
        get there, so row i goes in R - 2 - 2i cycles before the beat. A 1-row array adds
        a register in front of the chain, so that no row follows its first beat."""
        return max(cfg.rows - 2, 0)

    @property
    def init_lead(self) -> int:
        """This array's :meth:`init_lead_of`."""
        return self.init_lead_of(self.cfg)

    @staticmethod
    def latency_of(cfg: ArrayConfig) -> int:
        """Cycles from accepting a tile's last beat to its first result beat, for ``cfg``:
        the input register, i + j skew hops, the PE's two registers, the shadow, and the
        pipe/de-skew registers, R + C + 2 for row R-1. The cycle model (``array_latency``
        in sim/cycles.py) reads it from here."""
        return cfg.rows + cfg.cols + SystolicArray.EXTRA_LATENCY

    @property
    def latency(self) -> int:
        """This array's :meth:`latency_of`."""
        return self.latency_of(self.cfg)

    @property
    def min_tile_beats(self) -> int:
        """Shortest tile that never waits: the drain of one tile takes R cycles."""
        return self.cfg.rows

    def elaborate(self, platform):
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        m = Module()

        # -- input: join the two streams; hold a last beat while the drain is busy -----
        since_last = Signal(range(rows + 1), init=rows)
        # since_last == rows, kept in a register: it gates ``ready``, and through it the
        # sequencer's whole issue stage, so it comes straight from a flip-flop.
        drain_free = Signal(init=1)
        last_ok = ~self.i_act.payload.last | drain_free
        accept = Signal()
        m.d.comb += [
            self.i_act.ready.eq(self.i_wgt.valid & last_ok),
            self.i_wgt.ready.eq(self.i_act.valid & last_ok),
            accept.eq(self.i_act.valid & self.i_wgt.valid & last_ok),
        ]
        with m.If(accept & self.i_act.payload.last):
            m.d.sync += [since_last.eq(1), drain_free.eq(rows == 1)]
        with m.Elif(~drain_free):
            m.d.sync += [since_last.eq(since_last + 1), drain_free.eq(since_last + 1 == rows)]

        # -- input registers and skew ----------------------------------------------------
        in_valid = Signal()
        in_first = Signal()
        in_last = Signal()
        in_act = Signal.like(self.i_act.payload.data)
        in_wgt = Signal.like(self.i_wgt.payload)
        m.d.sync += [
            in_valid.eq(accept),
            in_first.eq(self.i_act.payload.first),
            in_last.eq(self.i_act.payload.last),
            in_act.eq(self.i_act.payload.data),
            in_wgt.eq(self.i_wgt.payload),
        ]

        pes = self.pes
        for i in range(rows):
            for j in range(cols):
                m.submodules[f"pe_{i}_{j}"] = pes[i][j]

        # The operands of beat k reach PE (i, j) k + i + j cycles after the beat, and its
        # markers one cycle later, with the product. The markers run down the left edge
        # (one chain register per row) and then along each row through the PEs, so each
        # marker register drives one PE and the next register: no net spans the array.
        edge = [(in_valid, in_first, in_last)]
        for i in range(rows):
            regs = tuple(
                replica(s, f"edge_{n}_{i}") for n, s in zip(_MARKERS, edge[-1], strict=True)
            )
            m.d.sync += [reg.eq(s) for reg, s in zip(regs, edge[-1], strict=True)]
            edge.append(regs)
        for i in range(rows):
            for j in range(cols):
                pe = pes[i][j]
                if j == 0:
                    valid, first, last = edge[i + 1]
                else:
                    left = pes[i][j - 1]
                    valid, first, last = left.valid_out, left.first_out, left.last_out
                m.d.comb += [pe.valid.eq(valid), pe.first.eq(first), pe.last.eq(last)]
                m.d.comb += pe.act.eq(
                    delayed(m, in_act[i], i, f"skew_act_{i}") if j == 0 else pes[i][j - 1].act_out
                )
                m.d.comb += pe.wgt.eq(
                    delayed(m, in_wgt[j], j, f"skew_wgt_{j}") if i == 0 else pes[i - 1][j].wgt_out
                )

        # -- initial values: per column, a chain up from the bottom edge ------------------
        # Row i enters at cycle a - lead + 2i (a: the first beat accepted); after
        # ``front`` + j registers it is at the chain's bottom, and R - 1 - i cycles later
        # at row i, at cycle a + 2 + i + j, with the first beat's markers.
        # Without ``cfg.preload`` there is no chain and every dot product starts from 0.
        front = self.init_lead - (rows - 2)  # 1 on a 1-row array, else 0
        for j in range(cols if cfg.preload else 0):
            below = tuple(
                delayed(m, s, front + j, f"init_skew_{n}_{j}")
                for n, s in (("acc", self.i_init.value[j]), ("ovf", self.i_init.ovf[j]))
            )
            for i in reversed(range(rows)):
                reg_acc = Signal.like(pes[i][j].init_acc, name=f"init_acc_{i}_{j}")
                reg_ovf = Signal(name=f"init_ovf_{i}_{j}")
                m.d.sync += [reg_acc.eq(below[0]), reg_ovf.eq(below[1])]
                m.d.comb += [pes[i][j].init_acc.eq(reg_acc), pes[i][j].init_ovf.eq(reg_ovf)]
                below = (reg_acc, reg_ovf)

        # -- drain: per column, a shift chain in the skewed time frame --------------------
        bottom = []
        for j in range(cols):
            above = None  # (valid, acc, ovf) of the shadow one row up
            for i in range(rows):
                pe = pes[i][j]
                sh_valid = Signal(name=f"shadow_valid_{i}_{j}")
                sh_acc = Signal.like(pe.acc, name=f"shadow_acc_{i}_{j}")
                sh_ovf = Signal(name=f"shadow_ovf_{i}_{j}")
                if above is None:
                    incoming = (Const(0, 1), Const(0, pe.acc.shape()), Const(0, 1))
                else:
                    incoming = tuple(
                        delayed(m, s, 1, f"pipe_{n}_{i}_{j}")
                        for n, s in zip(("valid", "acc", "ovf"), above, strict=True)
                    )
                sh_valid_next = Mux(pe.done, 1, incoming[0])
                m.d.sync += sh_valid.eq(sh_valid_next)
                with m.If(pe.done):
                    m.d.sync += [sh_acc.eq(pe.acc), sh_ovf.eq(pe.ovf)]
                with m.Else():
                    m.d.sync += [sh_acc.eq(incoming[1]), sh_ovf.eq(incoming[2])]
                above = (sh_valid, sh_acc, sh_ovf)
            # De-skew: column j runs j cycles behind column 0; delay it to match column C-1.
            lines = [
                delay_line(m, s, cols - 1 - j, f"deskew_{n}_{j}")
                for n, s in zip(("valid", "acc", "ovf"), above, strict=True)
            ]
            bottom.append(tuple(line[-1] for line in lines))
            if j == 0:  # column 0's output valid of the next cycle: its last register's input
                valid_next = lines[0][-2] if cols > 1 else sh_valid_next

        out = self.o_res
        row = Signal(range(rows), init=rows - 1)
        m.d.comb += [out.valid.eq(bottom[0][0]), out.payload.row.eq(row)]
        for j in range(cols):
            m.d.comb += [out.payload.acc[j].eq(bottom[j][1]), out.payload.ovf[j].eq(bottom[j][2])]
        row_next = Signal.like(row)
        with m.If(out.valid):
            m.d.comb += row_next.eq(Mux(row == 0, rows - 1, row - 1))
        with m.Else():
            m.d.comb += row_next.eq(row)
        m.d.sync += row.eq(row_next)
        m.d.comb += self.row0_next.eq(valid_next & (row_next == 0))
        return m
