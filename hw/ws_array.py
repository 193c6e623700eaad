"""The weight-stationary systolic array: weights stay in the PEs, partial sums flow down.

Each PE holds one weight of a tile (K tile of R terms by N tile of C outputs) and the next
tile's weight beside it (double buffering: the next weights load while the current pass
streams, and each PE switches to them exactly when the next pass's first row reaches it);
activations move right, partial sums and their sticky overflow flags move down, so column c adds the
terms of one dot product in order k0, k0 + 1, ..., k0 + R - 1 and a longer dot product is
continued by feeding a K tile's results back into the top of the next K tile (K tiles
innermost, in increasing k). That keeps the arithmetic contract (DESIGN.md section 2): the
same order, the same wrap or clamp at every step, the same flags as the output-stationary
array and the golden model. Adding K tiles up at the bottom instead would clamp and flag
different partial sums.

The cycle functions at the end give the exact cycles of a pass and of a whole GEMM driven
as :class:`WSArray` describes; tests/hw/test_ws_array.py checks them against simulation.
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from oasa.config import ArrayConfig
from oasa.hw.delays import delay_line, delayed
from oasa.hw.layouts import (
    acc_shape,
    act_shape,
    result_word_layout,
    weight_beat_layout,
    weight_shape,
)
from oasa.hw.pe import p_bit_add
from oasa.hw.replicas import replica

__all__ = [
    "WSPE",
    "WSArray",
    "ws_act_layout",
    "ws_gemm_cycles",
    "ws_pass_interval",
    "ws_result_layout",
    "ws_tile_cycles",
]


def ws_act_layout(cfg: ArrayConfig) -> data.StructLayout:
    """One activation beat: x[m, k0 .. k0 + R - 1] (row r of the array gets element r),
    and ``last``, set on the last row m of a pass."""
    return data.StructLayout({"data": data.ArrayLayout(act_shape(cfg), cfg.rows), "last": 1})


def ws_result_layout(cfg: ArrayConfig) -> data.StructLayout:
    """One result beat: the C partial sums of a row m and their flags, and ``last`` (the
    pass's last row). ``value``/``ovf`` match :func:`~oasa.hw.layouts.result_word_layout`,
    the layout of the partial sums fed back into the top of the array."""
    return data.StructLayout(
        {
            "value": data.ArrayLayout(acc_shape(cfg), cfg.cols),
            "ovf": data.ArrayLayout(1, cfg.cols),
            "last": 1,
        }
    )


class WSPE(wiring.Component):
    """Weight-stationary multiply-add cell with overflow detection and a second weight.

    Two weight registers: ``wgt``, on the load path, loads ``wgt_in`` in every cycle ``load``
    is high (and passes it on to the next cell of the path); ``wgt_active`` is the weight in
    use, and takes ``wgt`` in a cycle whose activation comes with ``swap`` (the first row of
    a pass), which that activation already multiplies. The activation and ``swap`` are
    forwarded to the right through registers. The product of each cycle's activation and
    weight is registered; one cycle later, the partial sum and flag that belong to that
    activation arrive from above, and the cell registers ``psum_out`` = wrap_P(t) or
    clamp_P(t) (``cfg.overflow``), t = ``psum`` + product, and ``flag_out`` = ``flag`` |
    (t outside the P-bit range). Same product and overflow logic as
    :class:`~oasa.hw.pe.ProcessingElement`: the product register splits multiply and add,
    each a short carry chain.

    Latency: ``act_out``/``swap_out`` show ``act``/``swap`` one cycle later;
    ``psum_out``/``flag_out`` show the sum of ``psum`` and the previous cycle's product one
    cycle later (two after ``act``). Throughput: one term per cycle. No valid bit: the cell
    computes every cycle, and the array knows which cycles carry data.

    Parameters
    ----------
    cfg : ArrayConfig
        Supplies N (``act_bits``, ``act_signed``), M, P and the overflow mode.

    Members
    -------
    act : In(act_shape(cfg))         activation from the left
    swap : In(1)                     ``act`` is a pass's first row: use the loaded weight
    act_out : Out(act_shape(cfg))    ``act`` delayed one cycle, to the right
    swap_out : Out(1)                ``swap`` delayed one cycle, to the right
    wgt_in : In(signed(M))           weight from the neighbour on the load path
    load : In(1)                     load ``wgt_in`` into ``wgt``
    wgt : Out(signed(M))             the loaded (next) weight, to the next cell on the path
    wgt_active : Out(signed(M))      the weight in use
    psum : In(signed(P))             partial sum from above, one cycle after its ``act``
    flag : In(1)                     its sticky overflow flag
    psum_out : Out(signed(P))        psum + act * weight, wrapped or clamped, downwards
    flag_out : Out(1)                ``flag`` or an overflow of this addition, downwards
    """

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        super().__init__(
            {
                "act": In(act_shape(cfg)),
                "swap": In(1),
                "act_out": Out(act_shape(cfg)),
                "swap_out": Out(1),
                "wgt_in": In(weight_shape(cfg)),
                "load": In(1),
                "wgt": Out(weight_shape(cfg)),
                "wgt_active": Out(weight_shape(cfg)),
                "psum": In(acc_shape(cfg)),
                "flag": In(1),
                "psum_out": Out(acc_shape(cfg)),
                "flag_out": Out(1),
            }
        )

    def multiply(self, act: Value, wgt: Value) -> Value:
        """The product act * wgt: a hook for FPGA builds, as
        :meth:`ProcessingElement.multiply <oasa.hw.pe.ProcessingElement.multiply>`."""
        return act * wgt

    def weight(self) -> Value:
        """The weight this cycle's activation multiplies: the loaded one on a ``swap``."""
        return Mux(self.swap, self.wgt, self.wgt_active)

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()

        m.d.sync += [self.act_out.eq(self.act), self.swap_out.eq(self.swap)]
        with m.If(self.load):
            m.d.sync += self.wgt.eq(self.wgt_in)
        with m.If(self.swap):
            m.d.sync += self.wgt_active.eq(self.wgt)

        product = Signal(signed(cfg.product_bits))
        m.d.sync += product.eq(self.multiply(self.act, self.weight()))
        value, out_of_range = p_bit_add(m, cfg, self.psum, product)  # as the OS PE adds
        m.d.sync += self.psum_out.eq(value)
        m.d.sync += self.flag_out.eq(self.flag | out_of_range)
        return m


class WSArray(wiring.Component):
    """R x C weight-stationary systolic array of :class:`WSPE`, skew and de-skew inside.

    A pass computes one (M x R-tile x C-tile) block: C partial dot products of length R
    for each of M rows, continued from the partial sums fed in at the top.

    1. **Weight load**: R beats on ``i_wgt``, the K tile's rows last first: beat i carries
       w[k0 + R - 1 - i, n0 .. n0 + C - 1]. Weights enter the PEs' load registers at the
       top row and shift down one row per beat; row r joins the shift at beat r (the
       beats before would only pass through it), so after R beats row r holds beat
       R - 1 - r, PE (r, c) w[k0 + r, n0 + c]. A K tile shorter than R (rows k0 + r >= K,
       the first beats) must be all zeros: an unused row then adds 0, which never
       overflows. Columns past N may hold anything; their results are ignored.
    2. **Stream**: M beats on ``i_act`` together with ``i_psum`` (the two transfer in the
       same cycle), the last with ``last`` set. Beat m carries x[m, k0 .. k0 + R - 1] and
       the partial sums and flags of row m the dot products continue from: zeros / False
       for the first K tile, the previous K tile's results for the next ones. Both are
       plain, unskewed rows; inside, activation r is delayed by r cycles and the partial
       sum of column c by c + 1, so the partial sum of row m meets x[m, k0 + r] at
       PE (r, c), one cycle after the activation (when its product is ready). The pass's
       first row carries a ``swap`` marker along with it, and each PE switches to its
       loaded weight as that row reaches it.
    3. **Results**: row m leaves on ``o_res`` ``latency`` = R + C + 1 cycles after its
       ``i_act`` beat was accepted, columns de-skewed, in order, with ``last`` on the
       pass's last row. Gaps in the input are gaps in the output.

    Double buffering: the next pass's weights load while a pass streams. The array
    enforces the order: ``i_act``/``i_psum`` are ready while a pass streams (until its
    ``last`` beat) and, for a pass's first row, once its R weight beats are loaded;
    ``i_wgt`` is ready when no complete load waits for its pass, so the next load may
    begin the cycle after a pass's first row (:meth:`drain_of`). Loads follow the swap
    marker's diagonal: column c's load registers shift c cycles after column 0's (the
    load enable passes right one PE per cycle, and weight lane c is delayed c cycles at
    the top), and beat i changes rows 0 .. i only. So row r of column c, which the first
    row reaches r + c cycles after PE (0, 0), is first overwritten (by beat r) at least
    r + c + 1 cycles after it, once it has swapped. So both producers may offer beats at
    any time, and back-to-back passes start max(M, R + 1) cycles apart. The skew costs
    R (C - 1) enable registers and C (C - 1) / 2 weight-lane registers (of the weight width).

    Latency: R + C + 1 cycles from an ``i_act`` beat to its ``o_res`` beat
    (:meth:`latency_of`). Throughput: one row per cycle while streaming; a pass takes
    :func:`ws_tile_cycles` alone, and back-to-back passes start :func:`ws_pass_interval`
    apart.

    Parameters
    ----------
    cfg : ArrayConfig
    pe : callable, keyword-only
        Builds each cell: ``pe(cfg)`` returns a :class:`WSPE` (or a component with its
        members). Called R x C times in ``__init__``, row by row; the cells are in
        :attr:`pes`. Tests pass deliberately broken cells.

    Members
    -------
    i_wgt : In(stream.Signature(weight_beat_layout(cfg)))
        One row of C weights per beat, R beats per load.
    i_act : In(stream.Signature(ws_act_layout(cfg)))
        One row m of R activations per beat, ``last`` on the pass's last row.
    i_psum : In(stream.Signature(result_word_layout(cfg)))
        The C partial sums (``value``) and flags (``ovf``) that row m continues from.
        Transfers together with ``i_act``.
    o_res : Out(stream.Signature(ws_result_layout(cfg), always_ready=True))
        The C partial sums and flags of row m after this K tile, and ``last``. Cannot be
        back-pressured: the consumer takes every beat.
    """

    #: Registers on a row's way beyond its R + C skew and drain hops: the input register
    #: and the PE's product register (the PE's sum register is one of the R hops).
    EXTRA_LATENCY = 1

    #: Column c's load registers shift c cycles after column 0's, behind the swap marker
    #: (see the class text). Tests turn it off to show that a load then overwrites
    #: weights still in use.
    skew_loads: bool = True

    def __init__(
        self,
        cfg: ArrayConfig,
        *,
        pe: Callable[[ArrayConfig], WSPE] = WSPE,
    ):
        self.cfg = cfg
        #: The cells, ``pes[r][c]`` at row r, column c.
        self.pes = [[pe(cfg) for _ in range(cfg.cols)] for _ in range(cfg.rows)]
        super().__init__(
            {
                "i_wgt": In(stream.Signature(weight_beat_layout(cfg))),
                "i_act": In(stream.Signature(ws_act_layout(cfg))),
                "i_psum": In(stream.Signature(result_word_layout(cfg))),
                "o_res": Out(stream.Signature(ws_result_layout(cfg), always_ready=True)),
            }
        )

    @staticmethod
    def latency_of(cfg: ArrayConfig) -> int:
        """Cycles from accepting an ``i_act`` beat to its ``o_res`` beat: the input
        register, r + c skew and activation hops, the product register, R sum registers
        (r above and one of its own at PE (r, c)) and C - 1 - c de-skew registers, R + C + 1
        in all."""
        return cfg.rows + cfg.cols + WSArray.EXTRA_LATENCY

    @staticmethod
    def drain_of(cfg: ArrayConfig) -> int:
        """Cycles from accepting a pass's first row to the earliest cycle the next pass's
        first weight beat is accepted: 1. The first row takes the loaded weight at
        PE (r, c) in cycle r + c + 1 after it was accepted; beat i, accepted i + 1 cycles
        after it at the earliest, first writes row i of column c at the end of cycle
        i + c + 2 (the input register and c skew registers), when PE (i, c) has swapped."""
        return 1

    @property
    def latency(self) -> int:
        """This array's :meth:`latency_of`."""
        return self.latency_of(self.cfg)

    @property
    def load_beats(self) -> int:
        """Weight beats per load: R."""
        return self.cfg.rows

    def elaborate(self, platform):
        cfg = self.cfg
        rows, cols = cfg.rows, cfg.cols
        m = Module()

        # -- control: loads and passes overlap. A load of R beats fills the load registers
        # (``pending`` when complete); a pass's first row takes them (swap) and its rows
        # stream until ``last``; the next load may begin once that first row has reached
        # every PE. Every ready comes from flip-flops and the other stream's valid, as in
        # SystolicArray.
        pending = Signal()  # a complete load waits for its pass's first row
        in_pass = Signal()  # a pass has begun and its last row has not come yet
        loaded = Signal(range(rows))  # weight beats of the load in progress
        accept_wgt = Signal()
        accept_act = Signal()
        first_row = Signal()  # the row offered now would begin a pass
        m.d.comb += [
            first_row.eq(~in_pass),
            self.i_wgt.ready.eq(~pending),
            self.i_act.ready.eq((in_pass | pending) & self.i_psum.valid),
            self.i_psum.ready.eq((in_pass | pending) & self.i_act.valid),
            accept_wgt.eq(self.i_wgt.valid & self.i_wgt.ready),
            accept_act.eq(self.i_act.valid & self.i_act.ready),
        ]
        with m.If(accept_wgt):
            with m.If(loaded == rows - 1):
                m.d.sync += [loaded.eq(0), pending.eq(1)]
            with m.Else():
                m.d.sync += loaded.eq(loaded + 1)
        with m.If(accept_act):
            m.d.sync += in_pass.eq(~self.i_act.payload.last)
            with m.If(first_row):
                m.d.sync += pending.eq(0)

        # -- input registers ----------------------------------------------------------------
        in_wgt = Signal.like(self.i_wgt.payload)
        in_act = Signal.like(self.i_act.payload.data)
        in_psum = Signal.like(self.i_psum.payload)
        in_valid = Signal()
        in_last = Signal()
        in_swap = Signal()
        m.d.sync += [
            in_wgt.eq(self.i_wgt.payload),
            in_act.eq(self.i_act.payload.data),
            in_psum.eq(self.i_psum.payload),
            in_valid.eq(accept_act),
            in_last.eq(self.i_act.payload.last),
            in_swap.eq(accept_act & first_row),
        ]
        # One load-enable register per row (replicas: an FPGA build keeps them apart, see
        # oasa.hw.replicas); row r shifts from beat r on. Column c loads c cycles after
        # column 0, as the swap marker reaches it: the enable passes right one PE per cycle
        # (each register drives one PE) and weight lane c is delayed c cycles at the top.
        load = [replica(accept_wgt, f"load_{r}") for r in range(rows)]
        m.d.sync += [reg.eq(accept_wgt & (loaded >= r) if r else accept_wgt)
                     for r, reg in enumerate(load)]  # fmt: skip
        skews = self.skew_loads
        load_at = [delay_line(m, load[r], cols - 1, f"load_{r}") if skews else [load[r]] * cols
                   for r in range(rows)]  # fmt: skip
        wgt_top = [delayed(m, in_wgt[c], c if skews else 0, f"skew_wgt_{c}") for c in range(cols)]

        pes = self.pes
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # -- the grid: weights shift down from the top edge, activations (and the swap
        # marker) right from the left edge (row r skewed by r), partial sums down from the
        # top edge (column c skewed by c + 1: one more than the activations, for the product
        # register).
        for r in range(rows):
            for c in range(cols):
                pe = pes[r][c]
                m.d.comb += [
                    pe.load.eq(load_at[r][c]),
                    pe.wgt_in.eq(wgt_top[c] if r == 0 else pes[r - 1][c].wgt),
                    pe.act.eq(
                        delayed(m, in_act[r], r, f"skew_act_{r}")
                        if c == 0
                        else pes[r][c - 1].act_out
                    ),
                    pe.swap.eq(
                        delayed(m, in_swap, r, f"skew_swap_{r}")
                        if c == 0
                        else pes[r][c - 1].swap_out
                    ),
                ]
                if r == 0:
                    m.d.comb += [
                        pe.psum.eq(delayed(m, in_psum.value[c], c + 1, f"skew_psum_{c}")),
                        pe.flag.eq(delayed(m, in_psum.ovf[c], c + 1, f"skew_flag_{c}")),
                    ]
                else:
                    above = pes[r - 1][c]
                    m.d.comb += [pe.psum.eq(above.psum_out), pe.flag.eq(above.flag_out)]

        # -- bottom edge: column c runs c cycles behind column 0; delay it to match C - 1.
        # The row markers take the same time on a side line, outside the grid.
        out = self.o_res
        for c in range(cols):
            bottom = pes[rows - 1][c]
            m.d.comb += [
                out.payload.value[c].eq(
                    delayed(m, bottom.psum_out, cols - 1 - c, f"deskew_psum_{c}")
                ),
                out.payload.ovf[c].eq(
                    delayed(m, bottom.flag_out, cols - 1 - c, f"deskew_flag_{c}")
                ),
            ]
        marks = self.latency - 1  # after the input register
        m.d.comb += [
            out.valid.eq(delayed(m, in_valid, marks, "out_valid")),
            out.payload.last.eq(delayed(m, in_last, marks, "out_last")),
        ]
        return m


# -- cycles ---------------------------------------------------------------------------------


def ws_tile_cycles(cfg: ArrayConfig, m: int) -> int:
    """Cycles of one pass (M x R-tile x C-tile) on an idle :class:`WSArray`, from the
    cycle its first weight beat is accepted to the cycle its last result leaves,
    inclusive, when every beat is offered as soon as the array takes it: R load beats,
    M activation beats, then the latency, 2R + C + M + 1.

    >>> ws_tile_cycles(ArrayConfig(rows=4, cols=4), 5)
    18
    """
    if m < 1:
        raise ValueError(f"a pass needs at least one row, got m={m}")
    return cfg.rows + m + WSArray.latency_of(cfg)


def ws_pass_interval(cfg: ArrayConfig, m: int, *, dependent: bool, feedback: int = 1) -> int:
    """Cycles between the first rows of two back-to-back passes of M rows.

    The next pass's weights load while a pass streams: from :meth:`WSArray.drain_of`
    cycles after its first row, R beats, so the next first row follows max(M, R + 1)
    cycles later. A ``dependent`` pass (the next K tile of
    the same outputs) also waits for its partial sums: row m's result leaves the array
    ``latency`` cycles after row m went in, and is accepted as the next pass's ``i_psum``
    ``feedback`` (>= 1) cycles later, so rows start at least R + C + 1 + feedback cycles
    apart.
    """
    if feedback < 1:
        raise ValueError(f"feedback must be at least 1 cycle, got {feedback}")
    issue = max(m, cfg.rows + WSArray.drain_of(cfg))
    return max(issue, WSArray.latency_of(cfg) + feedback) if dependent else issue


def ws_gemm_cycles(cfg: ArrayConfig, m: int, k: int, n: int, *, feedback: int = 1) -> int:
    """Cycles of an M x K x N GEMM on :class:`WSArray`: one pass per (N tile, K tile), K
    tiles innermost in increasing k, each K tile after the first continuing from the
    previous one's results, fed back ``feedback`` cycles after they leave. Counted from the
    first weight beat accepted to the last result, inclusive, with every beat offered as
    soon as the array (or the feedback) allows.

    >>> cfg = ArrayConfig(rows=2, cols=3)
    >>> ws_gemm_cycles(cfg, 1, 2, 3) == ws_tile_cycles(cfg, 1)
    True
    """
    if min(m, k, n) < 1:
        raise ValueError(f"GEMM sizes must be positive, got {m} x {k} x {n}")
    k_tiles = -(-k // cfg.rows)
    n_tiles = -(-n // cfg.cols)
    dependent = ws_pass_interval(cfg, m, dependent=True, feedback=feedback)
    independent = ws_pass_interval(cfg, m, dependent=False)
    return (
        ws_tile_cycles(cfg, m) + n_tiles * (k_tiles - 1) * dependent + (n_tiles - 1) * independent
    )
