"""Property harnesses: the real RTL blocks, free inputs, a shadow model, assertions.

Every harness is generated from an :class:`~oasa.config.ArrayConfig` and instantiates the
production block (or what another block factory, ``cfg -> block``, passed in builds, e.g.
a deliberately broken variant from :mod:`oasa.hw.broken`). All inputs are ``AnySeq`` (a
fresh arbitrary value every cycle) and so is the reset: the proofs hold for any input
sequence, with resets at any time. The shadow models are written from DESIGN.md section 2,
not from the RTL, and live in the same clock domain, so a reset clears them together with
the block.

Why each property is inductive (so that k-induction, not only bounded model checking,
proves it for all time):

- ``wrap``: the shadow keeps the exact running sum modulo 2**(P + 8), started on every
  ``first`` from the initial partial sum ``init_acc`` (free, like every input); any
  modulus that is a multiple of 2**P gives the same residue, so "acc == shadow mod 2**P"
  is exactly "acc is the exact running sum wrapped to P bits", and it is preserved by
  every step. The shadow
  takes the product of the previous cycle's operands, as the PE's product register does;
  both are the same function of one input, so any trace of two steps agrees on them
  (run with depth 2, as are the other PE properties).
- ``saturate``: the shadow is the step-by-step clamped sum, started on every ``first``
  from ``init_acc``, computed in a width that holds every t_k exactly, so "acc == shadow"
  is preserved by every step (k = 1).
- ``flag``: the shadow keeps the exact prefix sum, started on every ``first`` from
  ``init_acc``, and a bit H "the last ``first`` came with ``init_ovf`` set, or some exact
  prefix since then left the P-bit range". Until the first overflow the partial sums t_k
  of DESIGN.md equal the exact prefixes (the accumulator has never been wrapped or
  clamped, and ``init_acc`` is in range), and after it the flag is sticky, so "flag == H"
  is the contract. It is made inductive by the companion invariant "H or acc == exact
  prefix": while nothing has overflowed, the accumulator holds the exact sum, in both
  modes. The exact prefix only matters while H is clear, so P + 2 bits hold it exactly.
- ``output_stage``: the shadow delays every input port by the stage latency and applies the
  golden formula to the delayed values; the stage is a pipeline without feedback, so
  k-induction with k = latency closes the proof (its state is a function of the last
  ``latency`` inputs).
- ``ws_wrap``, ``ws_saturate``, ``ws_flag``: the weight-stationary PE is one step of a
  column's chain: ``psum_out`` is wrap_P or clamp_P of ``psum`` plus the product of the
  previous cycle's activation and held weight, and ``flag_out`` is ``flag`` or that sum
  leaving the P-bit range, with the weight a swap selects (the loaded one on a pass's first
  row, which becomes the one in use). The shadow computes the same step from the same
  ports (the product one cycle late, as the PE's register holds it), so k = 2 closes it. A column is
  these steps chained by wires (partial sum and flag from above), and the chain's entry is
  the previous K tile's result (hw/ws_array.py), so the steps compose into DESIGN.md's
  t_k = op(t_{k-1} + x_k w_k) over k = 0..K-1 with the sticky flag.
- ``skew``: the shadow delays every accepted beat; PE (i, j) must see activation row i and
  weight column j of the beat accepted i + j + 1 cycles earlier (the input register plus
  i + j skew hops), and that beat's valid, first and last markers one cycle later (when
  its product is ready). Pure delay lines again, so k = R + C + 2 closes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Const, Module, Mux, Signal, Value, signed, unsigned

from oasa.config import ArrayConfig
from oasa.hw.array import SystolicArray
from oasa.hw.delays import delay_line
from oasa.hw.output_stage import OutputStage
from oasa.hw.pe import ProcessingElement
from oasa.hw.ws_array import WSPE, WSArray

__all__ = [
    "EUF_SOLVER",
    "WRAP_MARGIN",
    "Harness",
    "pe_flag_harness",
    "pe_saturate_harness",
    "pe_wrap_harness",
    "skew_harness",
    "stage_harness",
    "ws_pe_flag_harness",
    "ws_pe_harness",
    "ws_pe_saturate_harness",
    "ws_pe_wrap_harness",
    "ws_weights_harness",
]

#: Extra bits of the wrap-mode shadow sum beyond P (any value >= 0 proves the same thing).
WRAP_MARGIN = 8
#: z3 for the output stage: its SAT-based EUF core with delayed bit-blasting (see run.py).
EUF_SOLVER = "z3 sat.euf=true smt.bv.delay=true"

#: What the PE harnesses take to build the block under test.
PEFactory = Callable[[ArrayConfig], ProcessingElement]


@dataclass
class Harness:
    """A top-level module to prove, and how deep k-induction must look.

    ``checks`` maps the source line of every assertion (``"file.py:123"``) to what it
    states, so a failure reported by the solver can be named. ``split`` asks the runner to
    run the base case and only the k = ``depth`` induction step as two tasks, and
    ``solver`` names z3 with its options (see :mod:`oasa.hw.formal.run`).
    """

    module: Module
    depth: int
    checks: dict[str, str] = field(default_factory=dict)
    split: bool = False
    solver: str = "z3"  # the smtbmc solver and its options

    def check(self, m: Module, test, what: str) -> None:
        """Add ``Assert(test)`` to ``m`` and remember what it states."""
        stmt = Assert(test, src_loc_at=1)  # the source line is the caller's
        file, line = stmt.src_loc
        self.checks[f"{file}:{line}"] = what
        m.d.comb += stmt


def _free(m: Module, *ports) -> None:
    """Drive each input port with a fresh arbitrary value every cycle."""
    for port in ports:
        value = Value.cast(port)
        m.d.comb += value.eq(AnySeq(len(value)))


# -- processing element ------------------------------------------------------------------


def _pe(cfg: ArrayConfig, pe: PEFactory) -> tuple[Module, ProcessingElement, Signal]:
    """Top module with the PE under free inputs, and the exact product of the beat whose
    markers are at the PE: the operands of the previous cycle (the PE's pipeline). The
    initial partial sum and flag are free in every cycle too; the PE must read them in the
    cycle of a ``first`` marker (the accumulate stage), and ignore them otherwise."""
    m = Module()
    m.submodules.dut = dut = pe(cfg)
    _free(m, dut.act, dut.wgt, dut.valid, dut.first, dut.last, dut.init_acc, dut.init_ovf)
    # N + M + 1 bits hold every product of an N-bit and an M-bit integer, signed or not.
    prod = Signal(signed(cfg.act_bits + cfg.weight_bits + 1), name="spec_prod")
    m.d.sync += prod.eq(dut.act * dut.wgt)
    return m, dut, prod


def pe_wrap_harness(cfg: ArrayConfig, pe: PEFactory = ProcessingElement) -> Harness:
    """Property 1: in wrap mode the accumulator is the exact running sum, from the initial
    partial sum of the last ``first``, modulo 2**P."""
    m, dut, prod = _pe(cfg, pe)
    h = Harness(m, depth=2)
    p = cfg.acc_bits
    total = Signal(signed(p + WRAP_MARGIN), name="spec_sum_mod")
    with m.If(dut.valid):
        m.d.sync += total.eq(Mux(dut.first, dut.init_acc, total) + prod)
    h.check(m, dut.acc == total[:p].as_signed(), "acc == init_acc + exact running sum mod 2**P")
    return h


def pe_saturate_harness(cfg: ArrayConfig, pe: PEFactory = ProcessingElement) -> Harness:
    """Property 2: in saturate mode the accumulator is the step-by-step clamped sum, from
    the initial partial sum of the last ``first``."""
    m, dut, prod = _pe(cfg, pe)
    h = Harness(m, depth=2)
    lo, hi = cfg.acc_min, cfg.acc_max
    clamped = Signal(signed(cfg.acc_bits), name="spec_clamped")
    t = Signal(signed(cfg.acc_bits + cfg.act_bits + cfg.weight_bits + 2), name="spec_t")
    m.d.comb += t.eq(Mux(dut.first, dut.init_acc, clamped) + prod)
    with m.If(dut.valid):
        with m.If(t > hi):
            m.d.sync += clamped.eq(hi)
        with m.Elif(t < lo):
            m.d.sync += clamped.eq(lo)
        with m.Else():
            m.d.sync += clamped.eq(t)
    h.check(m, dut.acc == clamped, "acc == clamp_P(acc + x*w) step by step from init_acc")
    return h


def pe_flag_harness(cfg: ArrayConfig, pe: PEFactory = ProcessingElement) -> Harness:
    """Property 3: the sticky flag is set exactly when the last ``first`` came with
    ``init_ovf`` set or some partial sum since then, from ``init_acc``, left the P-bit
    range (either mode)."""
    m, dut, prod = _pe(cfg, pe)
    h = Harness(m, depth=2)
    exact = Signal(signed(cfg.acc_bits + 2), name="spec_exact")
    left = Signal(name="spec_left_range")
    t = Signal(signed(cfg.acc_bits + 2), name="spec_t")
    m.d.comb += t.eq(Mux(dut.first, dut.init_acc, exact) + prod)
    out_of_range = (t < cfg.acc_min) | (t > cfg.acc_max)
    with m.If(dut.valid):
        m.d.sync += [exact.eq(t), left.eq(Mux(dut.first, dut.init_ovf, left) | out_of_range)]
    h.check(
        m,
        dut.ovf == left,
        "ovf == init_ovf or some partial sum since the last first left the range",
    )
    h.check(m, left | (dut.acc == exact), "no overflow yet implies acc == exact prefix sum")
    return h


def ws_pe_harness(cfg: ArrayConfig, prop: str, pe: Callable[[ArrayConfig], WSPE] = WSPE) -> Harness:
    """Properties 6-8 (``prop`` "wrap", "saturate" or "flag"): one step of the
    weight-stationary PE, psum_out = op_P(psum + x*w) and flag_out = flag | (psum + x*w
    outside the P-bit range), x*w the product of the previous cycle's activation and its
    weight: the loaded weight if the activation came with ``swap``, else the one in use."""
    m = Module()
    m.submodules.dut = dut = pe(cfg)
    _free(m, dut.act, dut.swap, dut.wgt_in, dut.load, dut.psum, dut.flag)
    h = Harness(m, depth=2)
    # The weight the activation multiplies: the loaded one with ``swap``, else the one in
    # use; that ``wgt_active`` takes the loaded weight on a swap is checked too.
    weight = Mux(dut.swap, dut.wgt, dut.wgt_active)
    prod = Signal(signed(cfg.act_bits + cfg.weight_bits + 1), name="spec_prod")
    m.d.sync += prod.eq(dut.act * weight)
    held = Signal.like(dut.wgt_active, name="spec_held")
    m.d.sync += held.eq(weight)
    h.check(m, dut.wgt_active == held, "wgt_active == the weight the last activation used")
    t = Signal(signed(cfg.acc_bits + cfg.act_bits + cfg.weight_bits + 2), name="spec_t")
    m.d.comb += t.eq(dut.psum + prod)
    out_of_range = (t < cfg.acc_min) | (t > cfg.acc_max)
    spec = Signal(signed(cfg.acc_bits), name="spec_psum")
    flag = Signal(name="spec_flag")
    if prop == "wrap":
        m.d.sync += spec.eq(t[: cfg.acc_bits].as_signed())
        h.check(m, dut.psum_out == spec, "psum_out == (psum + x*w) mod 2**P")
    elif prop == "saturate":
        m.d.sync += spec.eq(Mux(t > cfg.acc_max, cfg.acc_max, Mux(t < cfg.acc_min, cfg.acc_min, t)))
        h.check(m, dut.psum_out == spec, "psum_out == clamp_P(psum + x*w)")
    elif prop == "flag":
        m.d.sync += flag.eq(dut.flag | out_of_range)
        h.check(m, dut.flag_out == flag, "flag_out == flag | (psum + x*w) left the range")
    else:
        raise ValueError(f"unknown weight-stationary PE property {prop!r}")
    return h


def ws_pe_wrap_harness(cfg: ArrayConfig, pe: Callable[[ArrayConfig], WSPE] = WSPE) -> Harness:
    """Property 6: the weight-stationary PE's step in wrap mode."""
    return ws_pe_harness(cfg, "wrap", pe)


def ws_pe_saturate_harness(cfg: ArrayConfig, pe: Callable[[ArrayConfig], WSPE] = WSPE) -> Harness:
    """Property 7: the weight-stationary PE's step in saturate mode."""
    return ws_pe_harness(cfg, "saturate", pe)


def ws_pe_flag_harness(cfg: ArrayConfig, pe: Callable[[ArrayConfig], WSPE] = WSPE) -> Harness:
    """Property 8: the weight-stationary PE's flag step (either mode)."""
    return ws_pe_harness(cfg, "flag", pe)


# -- output stage ------------------------------------------------------------------------


def golden_lane(m: Module, cfg: ArrayConfig, lane: int, acc, bias, mult, shift, relu, requant):
    """DESIGN.md section 2 for one lane, as Amaranth expressions (cf. golden.output_stage).

    requant: y = acc + bias; z = y * mult; r = floor((z + 2**(s-1)) / 2**s) (round half
    up; no rounding term for s = 0); r = max(r, 0) if relu; clamp to the activation range.
    Raw mode: the accumulator itself.
    """
    # Amaranth arithmetic widens, so y and z are exact in the widths Signal.like picks.
    y = Signal.like(acc + bias, name=f"spec_y_{lane}")
    z = Signal.like(y * mult, name=f"spec_z_{lane}")
    m.d.comb += [y.eq(acc + bias), z.eq(y * mult)]
    half = (Const(1, unsigned(cfg.shift_max + 1)) << shift) >> 1  # 2**(s-1), or 0 for s = 0
    r = (z + half) >> shift  # arithmetic shift: floor division by 2**s
    r = Mux(relu & (r < 0), 0, r)
    q = Mux(r < cfg.act_min, cfg.act_min, Mux(r > cfg.act_max, cfg.act_max, r))
    return Mux(requant, q, acc)


def stage_harness(
    cfg: ArrayConfig,
    lanes: list[int] | None = None,
    stage: Callable[[ArrayConfig], OutputStage] = OutputStage,
) -> Harness:
    """Property 4: the output stage shows, ``latency`` cycles after its inputs, the golden
    formula of those inputs (every accumulator, bias, mult, shift, relu, requant), and the
    valid bit, flags and row index of the same beat (payloads: in every valid cycle). ``lanes`` limits the value checks to
    some lanes (each lane is the same circuit; proving them one at a time is faster)."""
    m = Module()
    m.submodules.dut = dut = stage(cfg)
    ports = (dut.i_res.valid, dut.i_res.payload, dut.params, dut.relu, dut.requant)
    _free(m, *ports)
    lat = dut.latency
    # A pipeline without feedback: its state is a function of the last `lat` inputs, so
    # k-induction closes at k = lat; shorter tries cannot, so only k = lat is run.
    h = Harness(m, depth=lat, split=True, solver=EUF_SOLVER)
    # Each port is delayed as one signal, so the shadow and the block read the same values.
    delayed = [
        delay_line(m, Value.cast(p), lat, f"spec_{n}")[-1]
        for p, n in zip(ports, ("valid", "payload", "params", "relu", "requant"), strict=True)
    ]
    valid, payload, params, relu, requant = delayed
    payload = dut.i_res.payload.shape()(payload)
    params = dut.params.shape()(params)
    out = dut.o_res
    # The stream contract: a payload means something only in a cycle with valid set (the
    # stage's registers load only with a valid row, so in between they hold).
    h.check(m, out.valid == valid, "o_res.valid == i_res.valid, latency cycles earlier")
    h.check(
        m, ~valid | (out.payload.ovf.as_value() == payload.ovf.as_value()), "flags pass through"
    )
    h.check(m, ~valid | (out.payload.row == payload.row), "row index passes through")
    for lane in range(cfg.cols) if lanes is None else lanes:
        gold = golden_lane(
            m,
            cfg,
            lane,
            payload.acc[lane],
            params.bias[lane],
            params.mult[lane],
            params.shift[lane],
            relu,
            requant,
        )
        h.check(
            m, ~valid | (out.payload.value[lane] == gold), f"lane {lane}: value == golden formula"
        )
    return h


# -- systolic array ------------------------------------------------------------------------


def skew_harness(
    cfg: ArrayConfig, array: Callable[[ArrayConfig], SystolicArray] = SystolicArray
) -> Harness:
    """Property 5: PE (i, j) sees activation row i and weight column j of the same beat k
    in the same cycle, i + j + 1 cycles after the array accepted it, and that beat's
    markers one cycle later (with the product)."""
    h = Harness(Module(), depth=cfg.rows + cfg.cols + 2)
    m = h.module
    m.submodules.dut = dut = array(cfg)
    _free(m, dut.i_act.valid, dut.i_act.payload, dut.i_wgt.valid, dut.i_wgt.payload)
    _skew_checks(h, m, dut)
    return h


def _skew_checks(h: Harness, m: Module, array: SystolicArray) -> None:
    """The checks of :func:`skew_harness`, in ``m``, on the ports of ``array`` and of its
    PEs (``array.pes``)."""
    cfg = array.cfg
    i_act, i_wgt = array.i_act, array.i_wgt
    accepted = Signal(name="spec_accepted")
    m.d.comb += accepted.eq(i_act.valid & i_act.ready & i_wgt.valid & i_wgt.ready)
    depth = cfg.rows + cfg.cols
    valid_d = delay_line(m, accepted, depth, "spec_valid")
    act_d = delay_line(m, i_act.payload.as_value(), depth, "spec_act")
    wgt_d = delay_line(m, i_wgt.payload.as_value(), depth, "spec_wgt")
    for i in range(cfg.rows):
        for j in range(cfg.cols):
            pe = array.pes[i][j]
            n = i + j + 1  # operands of the beat accepted n cycles ago, its markers at n + 1
            beat_act = i_act.payload.shape()(act_d[n])
            beat_wgt = i_wgt.payload.shape()(wgt_d[n])
            marked = i_act.payload.shape()(act_d[n + 1])
            h.check(m, pe.valid == valid_d[n + 1], f"PE ({i},{j}): valid of beat k, one later")
            operands = (pe.act == beat_act.data[i]) & (pe.wgt == beat_wgt[j])
            h.check(m, ~valid_d[n] | operands, f"PE ({i},{j}): act row {i}, wgt col {j} of beat k")
            markers = (pe.first == marked.first) & (pe.last == marked.last)
            h.check(m, ~pe.valid | markers, f"PE ({i},{j}): first/last of beat k, one later")


def ws_weights_harness(
    cfg: ArrayConfig, array: Callable[[ArrayConfig], WSArray] = WSArray
) -> Harness:
    """The weight-stationary array's load protocol, a bounded check (``mode bmc``; the
    shadow's weights and the PEs' load registers are not related by an invariant simple
    enough for k-induction): PE (r, c) multiplies every row of a pass by the weight its
    load gave it (beat R - 1 - r, lane c: the K tile's rows last first) and by activation r
    of that row, r + c + 1 cycles after the row was accepted; no weight beat is accepted
    while a complete load waits, and no pass begins before its load is complete. The
    shadow is the protocol of :class:`~oasa.hw.ws_array.WSArray`'s class text, written
    from the ports: loads complete in order, and a pass's first row takes the waiting one.
    """
    rows, cols = cfg.rows, cfg.cols
    h = Harness(Module(), depth=2 * (rows + cols) + 4)
    m = h.module
    m.submodules.dut = dut = array(cfg)
    _free(m, dut.i_wgt.valid, dut.i_wgt.payload, dut.i_act.valid, dut.i_act.payload,
          dut.i_psum.valid, dut.i_psum.payload)  # fmt: skip
    take_w = Signal(name="spec_take_w")
    take_a = Signal(name="spec_take_a")
    m.d.comb += [
        take_w.eq(dut.i_wgt.valid & dut.i_wgt.ready),
        take_a.eq(dut.i_act.valid & dut.i_act.ready),
    ]

    def grid(what: str) -> list[list[Signal]]:
        return [[Signal(signed(cfg.weight_bits), name=f"spec_{what}_{r}_{c}")
                 for c in range(cols)] for r in range(rows)]  # fmt: skip

    filling, waiting, active = grid("filling"), grid("waiting"), grid("active")
    beat = Signal(range(rows), name="spec_beat")  # beats of the load in progress
    has_wait = Signal(name="spec_has_wait")  # a complete load waits for its pass
    in_pass = Signal(name="spec_in_pass")
    first = Signal(name="spec_first")  # the row taken now begins a pass
    m.d.comb += first.eq(take_a & ~in_pass)
    with m.If(take_a):
        m.d.sync += in_pass.eq(~dut.i_act.payload.last)
    with m.If(first):
        m.d.sync += has_wait.eq(0)
        m.d.sync += [active[r][c].eq(waiting[r][c]) for r in range(rows) for c in range(cols)]
    with m.If(take_w):
        lane = dut.i_wgt.payload
        m.d.sync += beat.eq(Mux(beat == rows - 1, 0, beat + 1))
        for r in range(rows):
            with m.If(beat == rows - 1 - r):
                m.d.sync += [filling[r][c].eq(lane[c]) for c in range(cols)]
        with m.If(beat == rows - 1):  # complete: row 0 takes this last beat
            m.d.sync += has_wait.eq(1)
            m.d.sync += [waiting[r][c].eq(lane[c] if r == 0 else filling[r][c])
                         for r in range(rows) for c in range(cols)]  # fmt: skip
    h.check(m, ~(take_w & has_wait), "no weight beat while a complete load waits")
    h.check(m, ~first | has_wait, "a pass begins only once its load is complete")

    depth = rows + cols
    taken = delay_line(m, take_a, depth, "spec_taken")
    acts = delay_line(m, dut.i_act.payload.data.as_value(), depth, "spec_acts")
    for r in range(rows):
        for c in range(cols):
            pe = dut.pes[r][c]
            own = Signal(signed(cfg.weight_bits), name=f"spec_own_{r}_{c}")  # this row's
            m.d.comb += own.eq(Mux(first, waiting[r][c], active[r][c]))
            n = r + c + 1
            weight = delay_line(m, own, n, f"spec_own_{r}_{c}")[n]
            act = dut.i_act.payload.data.shape()(acts[n])[r]
            h.check(m, ~taken[n] | ((pe.weight() == weight) & (pe.act == act)),
                    f"PE ({r},{c}): its pass's weight and the row's activation {r}")  # fmt: skip
    return h
