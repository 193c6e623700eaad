"""The Accelerator (buffers, sequencer, registers) on Amaranth's simulator: whole layers
against the golden model, cycle counts against the cycle model, in both dataflows."""

from functools import partial

import numpy as np
import pytest
import reference
from amaranth.hdl import Assert

from oasa.config import ArrayConfig
from oasa.hw.accelerator import Accelerator
from oasa.hw.registers import REG, config_word
from oasa.hw.sequencer import Sequencer
from oasa.hw.ws_sequencer import WSSequencer
from oasa.sim import golden
from oasa.sim.accel_image import BufferFitError, build_image
from oasa.sim.backends import amaranth_accel
from oasa.sim.backends.amaranth_accel import run_accel_images
from oasa.sim.cycles import accelerator_cycles

SMALL = {"act_depth": 256, "wgt_depth": 256, "res_depth": 256, "param_depth": 16}


def layer(rng, cfg, m, k, n, *, mode, **bases):
    """A random layer image and what the golden model says it must produce."""
    x, w = reference.random_operands(rng, cfg, m, k, n)
    bias = rng.integers(-300, 300, n)
    mult = rng.integers(0, 3000, n)
    shift = rng.integers(0, 14, n)
    relu = mode == "relu"
    requant = mode != "raw"
    img = build_image(
        x, w, cfg=cfg, bias=bias, mult=mult, shift=shift, relu=relu, requant=requant, **bases
    )
    g = golden.gemm(x, w, cfg=cfg)
    out = (
        golden.output_stage(g.out, cfg=cfg, bias=bias, mult=mult, shift=shift, relu=relu)
        if requant
        else g.out
    )
    return img, out, g.overflow


def check(runs, expected):
    for run, (img, out, ovf) in zip(runs, expected, strict=True):
        np.testing.assert_array_equal(run.out, out)
        np.testing.assert_array_equal(run.overflow, ovf)
        assert run.flagged == int(ovf.sum())
        assert run.cycles == accelerator_cycles(img.cfg, img.m, img.k, img.n, cont=img.cont)
        assert run.wall_cycles == run.cycles  # the CYCLES register counts start to done


CONFIGS = [
    ArrayConfig(rows=2, cols=3, acc_bits=9, **SMALL),
    ArrayConfig(rows=3, cols=2, acc_bits=12, overflow="saturate", act_signed=True, **SMALL),
    ArrayConfig(
        rows=4, cols=4, act_bits=8, weight_bits=8, acc_bits=18, overflow="saturate", **SMALL
    ),
    ArrayConfig(rows=1, cols=1, acc_bits=8, **SMALL),
]
CONFIGS += [cfg.replace(dataflow="ws") for cfg in CONFIGS]
DATAFLOWS = pytest.mark.parametrize("dataflow", ["os", "ws"])


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_layers_back_to_back_every_mode(cfg):
    """Several layers on one instance without reset, in every output mode, with shapes
    that leave partial tiles, K = 1, K < R, and non-zero buffer bases."""
    rng = np.random.default_rng(sum(map(ord, cfg.name)))
    shapes = [(5, 7, 4), (3, 1, 5), (9, 2, 7), (6, 20, 8), (1, 1, 1), (7, 13, 3)]
    modes = ["raw", "requant", "relu", "raw", "relu", "requant"]
    expected = []
    for i, ((m, k, n), mode) in enumerate(zip(shapes, modes, strict=True)):
        bases = {"act_base": 3 * i, "wgt_base": 5 * i, "param_base": i % 3, "res_base": 7 * i}
        expected.append(layer(rng, cfg, m, k, n, mode=mode, **bases))
    check(run_accel_images([e[0] for e in expected]), expected)


@DATAFLOWS
def test_overflow_flags_and_count_in_both_modes(dataflow):
    """Flags raised in early K tiles too (K = 15 on 2 rows: eight K tiles on the
    weight-stationary array, whose flags travel through the result buffer)."""
    for mode in ("wrap", "saturate"):
        cfg = ArrayConfig(rows=2, cols=3, acc_bits=8, overflow=mode, dataflow=dataflow, **SMALL)
        rng = np.random.default_rng(4)
        expected = [layer(rng, cfg, 6, 15, 5, mode="raw")]
        assert expected[0][2].any() and not expected[0][2].all()
        check(run_accel_images([e[0] for e in expected]), expected)


@DATAFLOWS
def test_front_door_ports_load_and_read(dataflow):
    """The host write/read ports, word by word (as a real host uses them; the
    weight-stationary sequencer shares the result read port while busy)."""
    cfg = ArrayConfig(rows=2, cols=2, acc_bits=10, dataflow=dataflow, **SMALL)
    rng = np.random.default_rng(6)
    expected = [layer(rng, cfg, 3, 5, 3, mode="relu", act_base=2, res_base=9)]
    check(run_accel_images([expected[0][0]], front_door=True), expected)


@DATAFLOWS
def test_registers_read_back_and_config_word(dataflow):
    from amaranth.sim import Simulator

    from oasa.hw.accelerator import Accelerator

    cfg = ArrayConfig(
        rows=2,
        cols=3,
        acc_bits=12,
        overflow="saturate",
        act_signed=True,
        dataflow=dataflow,
        **SMALL,
    )
    dut = Accelerator(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    seen = {}

    async def bench(ctx):
        for name, value in (("M", 513), ("K", 77), ("N", 9), ("ACT_BASE", 200), ("MODE", 3)):
            ctx.set(dut.reg.addr, REG[name])
            ctx.set(dut.reg.w_data, value)
            ctx.set(dut.reg.w_en, 1)
            await ctx.tick()
        ctx.set(dut.reg.w_en, 0)
        for name in ("M", "K", "N", "ACT_BASE", "MODE", "STATUS", "CONFIG"):
            ctx.set(dut.reg.addr, REG[name])
            seen[name] = ctx.get(dut.reg.r_data)

    sim.add_testbench(bench)
    sim.run()
    assert seen == {
        "M": 513,
        "K": 77,
        "N": 9,
        "ACT_BASE": 200,
        "MODE": 3,
        "STATUS": 0,
        "CONFIG": config_word(cfg),
    }
    word = config_word(cfg)  # rows [6:0], cols [13:7], acc_bits [19:14], signed [28], sat [29]
    fields = (word & 0x7F, word >> 7 & 0x7F, word >> 14 & 0x3F, word >> 28 & 1, word >> 29 & 1)
    assert fields == (2, 3, 12, 1, 1)
    assert word >> 30 & 1 == {"os": 0, "ws": 1}[dataflow]  # dataflow [30]
    assert word >> 31 == 1  # preload [31]


@pytest.mark.parametrize(
    "shape, words",
    [
        (
            (40, 10, 3),
            "the activation buffer needs 100 words but holds 16 (act_depth=16); the largest M that fits with K=10 is 4",
        ),
        ((2, 10, 40), "the weight buffer needs 100 words but holds 16 (wgt_depth=16)"),
        ((2, 1, 40), "the parameter buffer needs 10 words but holds 4 (param_depth=4)"),
        (
            (9, 1, 12),
            "the result buffer needs 27 words but holds 16 (res_depth=16); the largest M that fits with N=12 is 5",
        ),
    ],
)
def test_layer_that_does_not_fit_names_the_buffer(shape, words):
    """(Output-stationary layout; the weight-stationary activation layout below.)"""
    cfg = ArrayConfig(rows=4, cols=4, act_depth=16, wgt_depth=16, res_depth=16, param_depth=4)
    m, k, n = shape
    with pytest.raises(BufferFitError, match=words.replace("(", r"\(").replace(")", r"\)")):
        build_image(np.zeros((m, k), dtype=int), np.zeros((k, n), dtype=int), cfg=cfg)


@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 3), (4, 4), (8, 8), (3, 5)])
def test_cycle_model_formula_cases(rows, cols):
    """The formula's structure on hand-derived cases: one tile, K >= R tiles back to back,
    and K < R tiles that wait for the drain."""
    cfg = ArrayConfig(rows=rows, cols=cols)
    fixed = 4 + (rows + cols + 2) + (rows - 1) + 6 + 1 - 1  # issue, array, drain, stage, finish
    assert accelerator_cycles(cfg, rows, 10 * rows, cols) == 10 * rows + fixed
    assert accelerator_cycles(cfg, 2 * rows, rows, 3 * cols) == 6 * rows + fixed
    assert accelerator_cycles(cfg, rows, 1, 2 * cols) == 1 + max(1, rows) + fixed


@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 3), (4, 4), (8, 8), (3, 5)])
def test_continuing_cycle_model_formula_cases(rows, cols):
    """Continuing partial sums: the first beat waits for its tile's initial rows (R - 2
    cycles, none on fewer than 3 rows), and tiles begin max(K, 2R - 1) cycles apart."""
    cfg = ArrayConfig(rows=rows, cols=cols)
    lead = max(rows - 2, 0)

    def cont(m, k, n):
        return accelerator_cycles(cfg, m, k, n, cont=True) - accelerator_cycles(cfg, m, k, n)

    assert cont(rows, 10 * rows, cols) == lead  # one tile
    assert cont(2 * rows, 10 * rows, 3 * cols) == lead  # long tiles keep their pace
    tiles = 6  # short tiles (K = R) begin 2R - 1 cycles apart instead of R
    assert cont(2 * rows, rows, 3 * cols) == lead + (tiles - 1) * (rows - 1)


def test_ws_activation_layout_that_does_not_fit_names_the_buffer():
    """Weight-stationary: ceil(K/R) words per row of X."""
    cfg = ArrayConfig(rows=4, cols=4, act_depth=16, dataflow="ws")
    x, w = np.zeros((6, 10), dtype=int), np.zeros((10, 3), dtype=int)
    with pytest.raises(BufferFitError, match=r"activation buffer needs 18 words but holds 16 "
                       r"\(act_depth=16\); the largest M that fits with K=10 is 5"):  # fmt: skip
        build_image(x, w, cfg=cfg)
    build_image(x[:5], w, cfg=cfg)


@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 3), (4, 4), (8, 8), (3, 5)])
def test_ws_cycle_model_formula_cases(rows, cols):
    """Hand-derived: one pass; K tiles of long rows (passes back to back, the next weights
    loading while a pass streams); K tiles of one row (the partial sums' round trip paces
    them); N tiles of one row (the weight loads pace them); N tiles after K tiles (the
    requantized rows pass the write port before partial sums follow)."""
    cfg = ArrayConfig(rows=rows, cols=cols, dataflow="ws")
    latency = rows + cols + 1
    tail = latency + 6 + 1 - 1  # array, stage, finish; the last row is counted once
    load = rows + 1  # a load begins the cycle after the swap (its registers follow it)
    assert accelerator_cycles(cfg, 5, rows, cols) == 4 + rows + 5 + tail
    m = 4 * (rows + cols) + 12  # long enough that loads and round trips hide behind rows
    assert accelerator_cycles(cfg, m, 3 * rows, cols) == 4 + rows + 2 * m + m + tail
    trip = max(load, latency + 4)  # the partial sums: register, write, read, register
    assert accelerator_cycles(cfg, 1, 3 * rows, cols) == 4 + rows + 2 * trip + 1 + tail
    assert accelerator_cycles(cfg, 1, rows, 3 * cols) == 4 + rows + 2 * load + 1 + tail
    two_by_two = 4 + rows + (m + (m - 1 + 6) + m) + m + tail  # K tile, N tile, K tile
    assert accelerator_cycles(cfg, m, 2 * rows, 2 * cols) == two_by_two


class _NeverRefusedSequencer(Sequencer):
    """The sequencer, asserting in simulation that the array takes every beat it offers
    (it ignores the array's ready, so the schedule alone must keep it high)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        refused = self.o_act.valid & ~self.o_act.ready
        m.d.sync += Assert(~refused, "the array refused a beat the sequencer offered")
        return m


def test_array_never_refuses_a_beat(monkeypatch):
    """Tiles shorter than R (K = 1, K < R), K = R and K > R, back to back: the sequencer's
    own last-beat rule matches the array's drain rule cycle for cycle."""
    monkeypatch.setattr(
        amaranth_accel, "Accelerator", partial(Accelerator, sequencer=_NeverRefusedSequencer)
    )
    cfg = ArrayConfig(rows=4, cols=2, acc_bits=12, **SMALL)
    rng = np.random.default_rng(3)
    shapes = [(9, 1, 5), (8, 2, 4), (12, 3, 2), (8, 4, 6), (5, 7, 3), (1, 1, 1)]
    expected = [layer(rng, cfg, m, k, n, mode="raw") for m, k, n in shapes]
    check(run_accel_images([e[0] for e in expected]), expected)


def test_refusal_check_can_fail(monkeypatch):
    """The check above fires when the sequencer's rule is wrong (R - 1 cycles)."""

    class Early(_NeverRefusedSequencer):
        @property
        def last_beat_gap(self) -> int:
            return self.cfg.rows - 1

    monkeypatch.setattr(amaranth_accel, "Accelerator", partial(Accelerator, sequencer=Early))
    cfg = ArrayConfig(rows=4, cols=2, acc_bits=12, **SMALL)
    expected = [layer(np.random.default_rng(3), cfg, 8, 1, 2, mode="raw")]
    with pytest.raises(AssertionError, match="refused a beat"):
        run_accel_images([e[0] for e in expected])


class _NeverRefusedWSSequencer(WSSequencer):
    """The weight-stationary sequencer, asserting that the array takes every weight, row
    and partial-sum beat it offers."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        for port in (self.o_wgt, self.o_act, self.o_psum):
            refused = port.valid & ~port.ready
            m.d.sync += Assert(~refused, "the array refused a beat the sequencer offered")
        return m


WS = ArrayConfig(rows=3, cols=2, acc_bits=12, dataflow="ws", **SMALL)
WS_SHAPES = [(9, 1, 5), (1, 7, 3), (2, 8, 4), (12, 3, 2), (5, 7, 3), (1, 1, 1), (4, 10, 5)]


def test_ws_array_never_refuses_a_beat(monkeypatch):
    """One row and many rows per pass, K below, at and above R, several K and N tiles,
    back to back: the sequencer's drain rule matches the array's cycle for cycle."""
    monkeypatch.setattr(
        amaranth_accel, "Accelerator", partial(Accelerator, sequencer=_NeverRefusedWSSequencer)
    )
    rng = np.random.default_rng(8)
    expected = [layer(rng, WS, m, k, n, mode="raw") for m, k, n in WS_SHAPES]
    check(run_accel_images([e[0] for e in expected]), expected)


def test_ws_schedule_checks_can_fail(monkeypatch):
    """One cycle less of partial-sum round trip makes a K tile continue from a stale
    partial sum; too short a gap after a last K tile makes two rows meet at the result
    buffer's write port. (A weight load has no wait of its own to get wrong: it begins
    once the previous load is taken, and test_ws_array shows that the array's column
    skew is what makes that safe.)"""

    class EarlyRows(WSSequencer):
        @property
        def feedback_wait(self) -> int:
            return super().feedback_wait - 1

    class EarlyAfterFinal(WSSequencer):
        @property
        def write_gap(self) -> int:
            return super().write_gap - 1

    cfg = WS.replace(rows=4, cols=3)
    rng = np.random.default_rng(9)
    monkeypatch.setattr(amaranth_accel, "Accelerator", partial(Accelerator, sequencer=EarlyRows))
    img, out, _ = layer(rng, cfg, 1, 9, 3, mode="raw")
    (run,) = run_accel_images([img])
    assert (run.out != out).any()
    # On one PE a pass's first partial sums would leave the array while the previous
    # pass's requantized rows are still in the output stage: both would write at once.
    monkeypatch.setattr(
        amaranth_accel, "Accelerator", partial(Accelerator, sequencer=EarlyAfterFinal)
    )
    # Not every draw of operands shows the lost write (one drawn after the case above did
    # not); this one does.
    img, out, _ = layer(np.random.default_rng(10), WS.replace(rows=1, cols=1), 3, 4, 3,
                        mode="raw")  # fmt: skip
    (run,) = run_accel_images([img])
    assert (run.out != out).any()


OS_CONT = ArrayConfig(rows=4, cols=3, acc_bits=9, overflow="saturate", act_depth=16,
                      wgt_depth=8, res_depth=64, param_depth=4)  # fmt: skip


def _k_cut_layer(rng, cfg, m, k, n):
    """Operands whose early partial sums leave the range (P = 9), and the golden pass."""
    x = rng.integers(0, 16, (m, k))
    w = rng.integers(-8, 8, (k, n))
    x[:2], w[:5, :2] = 15, 7
    return x, w, golden.gemm(x, w, cfg=cfg)


@pytest.mark.parametrize("m, k, n", [(9, 21, 7), (4, 40, 3), (1, 9, 8)])
def test_os_continues_partial_sums_across_calls(m, k, n):
    """Output-stationary, K cut into calls of at most 8 terms: each call after the first
    starts every dot product from the partial sum and flag the one before left in the
    result buffer (MODE bit 2), so the results and flags are the golden model's single pass
    over K, clamps and all; the calls run back to back on one instance."""
    from oasa.sim.calls import plan_calls, plan_cycles
    from oasa.sim.layer import run_gemm

    rng = np.random.default_rng(m * k * n)
    x, w, g = _k_cut_layer(rng, OS_CONT, m, k, n)
    plan = plan_calls(OS_CONT, m, k, n)
    assert any(c.ks.start > 0 for c in plan)
    r = run_gemm(x, w, cfg=OS_CONT, backend="amaranth")
    np.testing.assert_array_equal(r.out, g.out)
    np.testing.assert_array_equal(r.overflow, g.overflow)
    assert r.flagged == int(g.overflow.sum()) and r.cycles == plan_cycles(OS_CONT, plan)


def test_os_continuing_schedule_checks_can_fail(monkeypatch):
    """The initial rows meet their PEs in one cycle only: a first beat one cycle early or
    late, or continuing tiles R cycles apart (their rows meet on the chain), and the
    results differ from the golden model's."""
    from oasa.sim.layer import run_gemm

    class Early(Sequencer):
        @property
        def init_lead(self) -> int:
            return super().init_lead - 1

    class Late(Sequencer):
        @property
        def init_lead(self) -> int:
            return super().init_lead + 1

    class Crowded(Sequencer):
        @property
        def init_gap(self) -> int:
            return self.cfg.rows

    rng = np.random.default_rng(4)
    x, w, g = _k_cut_layer(rng, OS_CONT, 8, 20, 6)  # K chunks of 8 and 4: tiles of K = R
    for variant in (Early, Late, Crowded):
        monkeypatch.setattr(amaranth_accel, "Accelerator", partial(Accelerator, sequencer=variant))
        r = run_gemm(x, w, cfg=OS_CONT, backend="amaranth")
        assert (r.out != g.out).any(), variant.__name__


@DATAFLOWS
def test_without_preload_k_must_fit_and_mode_bit_2_is_ignored(dataflow):
    """A build without preload (no chain, no reader) runs layers whose K fits bit for bit;
    it ignores MODE bit 2 (a second call asked to continue the first's partial sums starts
    from 0, and takes the cycles of a call that does not continue); and the host side
    refuses to plan or lay out a continuing call for it, naming the option."""
    import dataclasses

    from oasa.sim.calls import plan_calls

    cfg = OS_CONT.replace(preload=False, dataflow=dataflow, wgt_depth=64)
    rng = np.random.default_rng(12)
    expected = [layer(rng, cfg, 5, 8, 4, mode="raw"), layer(rng, cfg, 3, 7, 5, mode="relu")]
    check(run_accel_images([e[0] for e in expected]), expected)

    first, again = layer(rng, cfg, 4, 6, 3, mode="raw"), layer(rng, cfg, 4, 6, 3, mode="raw")
    img = again[0]
    asked = dataclasses.replace(img, registers={**img.registers, "MODE": 4})
    runs = run_accel_images([first[0], asked])
    np.testing.assert_array_equal(runs[1].out, again[1])
    np.testing.assert_array_equal(runs[1].overflow, again[2])
    assert runs[1].cycles == accelerator_cycles(cfg, 4, 6, 3)

    with pytest.raises(BufferFitError, match=r"no preload .* build it with --preload"):
        plan_calls(cfg.replace(wgt_depth=8), 4, 20, 3)
    with pytest.raises(BufferFitError, match="without preload"):
        build_image(np.zeros((4, 6), dtype=int), np.zeros((6, 3), dtype=int), cfg=cfg, cont=True)
    assert len(plan_calls(cfg.replace(preload=True, wgt_depth=8), 4, 20, 3)) > 1


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_buffer_traffic_is_what_the_sequencer_moves(dataflow):
    """``call_traffic`` against the RTL: beats the array takes (activation, weight and
    partial-sum words) and result words written, counted cycle by cycle."""
    from amaranth.sim import Simulator

    from oasa.sim.calls import call_traffic

    cfg = ArrayConfig(rows=2, cols=3, acc_bits=12, dataflow=dataflow, **SMALL)
    rng = np.random.default_rng(21)
    for m, k, n, cont in ((5, 7, 4, False), (3, 1, 8, False), (4, 5, 3, True), (3, 2, 4, True)):
        x, w = reference.random_operands(rng, cfg, m, k, n)
        img = build_image(x, w, cfg=cfg, cont=cont)
        dut = Accelerator(cfg)
        sim = Simulator(dut)
        sim.add_clock(1e-8)
        seen = {"act": 0, "wgt": 0, "psum": 0, "res": 0}

        async def bench(ctx, img=img, dut=dut, seen=seen):
            for i, word in enumerate(img.act_words.tolist()):
                ctx.set(dut.buffers["act"][i], word)
            for i, word in enumerate(img.wgt_words.tolist()):
                ctx.set(dut.buffers["wgt"][i], word)
            for name, value in [*img.registers.items(), ("CTRL", 1)]:
                ctx.set(dut.reg.addr, REG[name])
                ctx.set(dut.reg.w_data, value)
                ctx.set(dut.reg.w_en, 1)
                await ctx.tick()
            ctx.set(dut.reg.w_en, 0)
            ports = {"act": dut.array.i_act, "wgt": dut.array.i_wgt}
            if dataflow == "ws":
                ports["psum"] = dut.array.i_psum
            while not ctx.get(dut.done):
                for name, port in ports.items():
                    seen[name] += ctx.get(port.valid) & ctx.get(port.ready)
                seen["res"] += ctx.get(dut.sequencer.res_wr.en)
                if dataflow == "os":
                    seen["psum"] += ctx.get(dut.sequencer.res_rd.en)
                await ctx.tick()

        sim.add_testbench(bench)
        sim.run()
        t = call_traffic(cfg, m, k, n, cont=cont)
        # Every row carries partial sums; those of an N tile's first K tile are zeros, not
        # read from the buffer, unless the call continues.
        nts = -(-n // cfg.cols)
        psum = t.psum_reads + (0 if cont else nts * m) if dataflow == "ws" else t.psum_reads
        assert seen == {"act": t.act_reads, "wgt": t.wgt_reads, "psum": psum, "res": t.res_writes}
        assert (t.act_words, t.wgt_words, t.res_words) == (
            img.act_words.shape[0],
            img.wgt_words.shape[0],
            img.res_words,
        )
