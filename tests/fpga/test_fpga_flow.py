"""The FPGA flow's pure parts: PLL settings, report parsing, sweep bookkeeping, the
Pareto front, the LUT multiplier, and the CLI's errors. The real builds are in
test_fpga_build.py (marked ``fpga``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from oasa.cli import main
from oasa.config import ArrayConfig
from oasa.fpga.boards import BOARDS, board_config, get_board
from oasa.fpga.clocking import ClockError, ecp5_pll, ice40_pll
from oasa.fpga.multipliers import shift_add_product
from oasa.fpga.pareto import ParetoPoint, pareto_front
from oasa.fpga.report import (
    BuildReport,
    ReportError,
    parse_nextpnr_json,
    parse_nextpnr_log,
    read_report,
)
from oasa.fpga.sweep import (
    DESIGN_MODULES,
    SweepPoint,
    load_results,
    run_sweep,
    summarize,
    table,
)

DATA = Path(__file__).parent / "data"


# -- PLL settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("f_out", [16e6, 24e6, 30e6, 48e6, 100e6])
def test_ice40_pll_within_datasheet_ranges(f_out):
    pll = ice40_pll(12e6, f_out)
    f_pfd = 12e6 / (pll.divr + 1)
    f_vco = f_pfd * (pll.divf + 1)
    assert 10e6 <= f_pfd <= 133e6
    assert 533e6 <= f_vco <= 1066e6
    assert 1 <= pll.divq <= 6
    assert abs(f_vco / 2**pll.divq - f_out) <= 0.01 * f_out


def test_ice40_pll_24mhz_is_exact():
    # 12 MHz * 64 / 32: the iCEBreaker's default clock must not be an approximation.
    assert ice40_pll(12e6, 24e6).f_out == 24e6


@pytest.mark.parametrize("f_out", [25e6, 50e6, 100e6, 125e6, 200e6])
def test_ecp5_pll_within_datasheet_ranges(f_out):
    pll = ecp5_pll(25e6, f_out)
    assert 400e6 <= pll.f_out * pll.clkop_div <= 800e6
    assert 25e6 / pll.clki_div >= 3.125e6
    assert abs(25e6 * pll.clkfb_div / pll.clki_div - f_out) <= 0.01 * f_out


def test_unreachable_clock_is_a_clear_error():
    with pytest.raises(ClockError, match="cannot make 5 MHz"):
        ice40_pll(12e6, 5e6)
    with pytest.raises(ClockError, match="ECP5"):
        ecp5_pll(25e6, 900e6)


# -- report parsing (recorded nextpnr output of an iCEBreaker build) ------------------------


def test_parse_recorded_nextpnr_json_and_log_agree():
    cells_j, fmax_j = parse_nextpnr_json((DATA / "ice40_4x3_p16.report.json").read_text())
    cells_l, fmax_l = parse_nextpnr_log((DATA / "ice40_4x3_p16.tim").read_text())
    assert cells_j["ICESTORM_LC"] == cells_l["ICESTORM_LC"] == (4240, 5280)
    assert cells_j["ICESTORM_RAM"] == (6, 30)
    # The log prints a post-placement estimate first; the routed figure is the last.
    assert fmax_l == {"clk": 27.79}
    assert fmax_j["clk"] == pytest.approx(27.79, abs=0.01)


def test_read_report_prefers_json_and_falls_back_to_log(tmp_path):
    shutil.copy(DATA / "ice40_4x3_p16.tim", tmp_path / "top.tim")
    kw = dict(board="icebreaker", family="ice40", config={"rows": 4, "cols": 3}, target_mhz=24.0)
    from_log = read_report(tmp_path, **kw)
    assert not from_log.routed  # no bitstream, no JSON: not claimed routed
    shutil.copy(DATA / "ice40_4x3_p16.report.json", tmp_path / "top.report.json")
    (tmp_path / "top.bin").write_bytes(b"\0")
    rep = read_report(tmp_path, **kw)
    assert rep.routed and rep.bitstream.endswith("top.bin")
    assert rep.used == {"LUT": 4240, "BRAM": 6, "DSP": 3}
    assert rep.timing_met and rep.fmax_mhz == pytest.approx(27.79, abs=0.01)
    assert "timing met" in rep.table() and "LC " in rep.table()
    again = BuildReport.from_json(json.loads(json.dumps(rep.to_json())))
    assert again == rep


def test_report_errors(tmp_path):
    with pytest.raises(ReportError, match="no nextpnr report"):
        read_report(tmp_path, board="b", family="ice40", config={}, target_mhz=1)
    with pytest.raises(ReportError, match="not a nextpnr report"):
        parse_nextpnr_json('{"x": 1}')
    with pytest.raises(ReportError, match="utilisation"):
        parse_nextpnr_log("Info: nothing here\n")


# -- sweep bookkeeping -------------------------------------------------------------------------


def _fake_report(point: SweepPoint, luts: int, fmax: float) -> dict:
    board = get_board(point.board)
    unit = {"ice40": "LUT", "ecp5": "LUT"}[board.family]
    return BuildReport(
        board=point.board,
        family=board.family,
        config={"rows": point.rows, "cols": point.cols, "acc_bits": point.acc_bits},
        target_mhz=board.f_target / 1e6,
        fmax_mhz=fmax,
        used={unit: luts, "BRAM": 4, "DSP": 2},
        available={unit: 5280, "BRAM": 30, "DSP": 8},
    ).to_json()


def test_sweep_resumes_from_its_cache_and_finds_the_largest_fit(tmp_path, monkeypatch):
    built = []

    def fake_build(point, build_dir, seed):
        built.append(point)
        if point.pes > 12:
            return {"key": point.key, **point.__dict__, "fits": False, "error": "ERROR: 5318 LCs"}
        return {
            "key": point.key,
            **point.__dict__,
            "fits": True,
            "report": _fake_report(point, 300 * point.pes, 40.0 - point.pes),
        }

    monkeypatch.setattr("oasa.fpga.sweep._build_point", fake_build)
    pts = [SweepPoint("icebreaker", r, c, 16) for r, c in ((2, 2), (3, 3), (4, 3), (4, 4))]
    recs = run_sweep(pts[:2], tmp_path)
    assert len(built) == 2 and len(load_results(tmp_path)) == 2
    recs = run_sweep(pts, tmp_path)
    assert [p.key for p in built] == [p.key for p in pts]  # the first two came from the cache
    best = summarize(recs)["icebreaker"]["largest_p16"]
    assert (best["rows"], best["cols"]) == (4, 3)
    assert "does not fit" in table(recs)
    # A torn last line (a killed sweep) is ignored, not fatal.
    with open(tmp_path / "builds.jsonl", "a") as f:
        f.write('{"key": "trunc')
    assert len(load_results(tmp_path)) == 4
    # Another placement seed, or a changed design (its source), is built afresh; going
    # back to the first design finds its builds again.
    built.clear()
    run_sweep(pts[:1], tmp_path, seed=2)
    assert [p.key for p in built] == [pts[0].key]
    monkeypatch.setattr("oasa.fpga.sweep.design_fingerprint", lambda: "edited")
    run_sweep(pts[:2], tmp_path)
    assert [p.key for p in built] == [pts[0].key, pts[0].key, pts[1].key]
    monkeypatch.undo()
    monkeypatch.setattr("oasa.fpga.sweep._build_point", fake_build)
    run_sweep(pts, tmp_path)
    assert len(built) == 3


def test_design_modules_cover_what_the_board_tops_use():
    """Every oasa module imported to elaborate the board tops is fingerprinted, or a build
    of edited source would be taken from the cache. A fresh interpreter, so that what
    other tests imported does not count."""
    script = (
        "import sys\n"
        "from oasa.fpga.boards import BOARDS, BoardTop, board_config\n"
        "import oasa.fpga.build\n"
        "for b in BOARDS.values():\n"
        "    b.platform_class()().prepare(BoardTop(b, board_config(b, rows=2, cols=2)))\n"
        "print(' '.join(m for m in sys.modules if m.startswith('oasa.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    packages = {"oasa.hw", "oasa.fpga", "oasa.sim", "oasa.sim.backends"}  # empty __init__s
    assert "oasa.hw.pe" in out and "oasa.fpga.ecp5_dsp" in out
    assert set(out) - packages <= set(DESIGN_MODULES)


def test_board_defaults_and_overrides():
    ice = get_board("icebreaker")
    cfg = board_config(ice, rows=2, cols=2)
    assert (cfg.act_depth, cfg.mult_bits) == (1024, 8)
    assert board_config(ice, rows=2, cols=2, act_depth=128).act_depth == 128
    assert not cfg.preload and board_config(ice, rows=2, cols=2, preload=True).preload
    assert board_config(get_board("ulx3s-85f"), rows=2, cols=2).preload
    with pytest.raises(ValueError, match="unknown board 'de0'"):
        get_board("de0")
    assert set(BOARDS) == {"icebreaker", "ulx3s-85f"}


def test_the_icebreaker_defaults_hold_every_layer_of_the_digits_cnn():
    """Without preload a layer's K must fit the buffers in one call: the iCEBreaker's
    default build plans every weighted layer of the digits CNN (K up to 1,024)."""
    from oasa.quant.model import ARCH
    from oasa.sim.calls import plan_calls

    ice = get_board("icebreaker")
    cfg = board_config(ice, rows=ice.default_array[0], cols=ice.default_array[1])
    layers = [s for s in ARCH if s["kind"] != "maxpool"]
    ks = [s["in"] * (s["kernel"] ** 2 if s["kind"] == "conv2d" else 1) for s in layers]
    assert not cfg.preload and max(ks) == 1024
    for spec, k in zip(layers, ks, strict=True):
        calls = plan_calls(cfg, 8 * 64, k, spec["out"])  # 8 images of 8 x 8 positions
        assert all(c.ks == slice(0, k) for c in calls)


def test_a_build_without_a_size_takes_the_boards_size_for_its_dataflow(
    tmp_path, monkeypatch, capsys
):
    """The iCEBreaker's default 4 x 3 does not place in the weight-stationary dataflow
    (docs/results.md, FPGA builds): ``--dataflow ws`` alone builds its 3 x 3, and a size
    given is kept."""
    built = []

    def fake_build(board, cfg, out, **_):
        built.append((cfg.dataflow, cfg.rows, cfg.cols))
        point = SweepPoint(board.name, cfg.rows, cfg.cols, cfg.acc_bits)
        return BuildReport.from_json(_fake_report(point, 300 * point.pes, 40.0))

    monkeypatch.setattr("oasa.fpga.build.build_board", fake_build)
    monkeypatch.chdir(tmp_path)
    outputs = []
    for extra in ([], ["--dataflow", "ws"], ["--dataflow", "ws", "--rows", "2"]):
        assert main(["fpga", "build", "--board", "icebreaker", *extra, "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out)["output"])
    assert built == [("os", 4, 3), ("ws", 3, 3), ("ws", 2, 3)]
    # Each in its own default folder: a weight-stationary build never lands on an
    # output-stationary one of the same size.
    assert outputs == ["build/icebreaker_4x3_p16", "build/icebreaker_3x3_p16_ws",
                       "build/icebreaker_2x3_p16_ws"]  # fmt: skip


def test_the_preload_chain_is_what_no_preload_saves():
    """The OS array without preload has no initial-value chain: at least P + 1 flip-flops
    fewer per PE (one chain register each, plus the columns' skew registers), and fewer
    LUTs (each PE's first-beat multiplexer); synthesized for the iCE40."""
    from oasa.fpga.cost import synth_cost

    cfg = ArrayConfig(rows=2, cols=2, acc_bits=16)
    with_chain = synth_cost(cfg, "ice40")
    without = synth_cost(cfg.replace(preload=False), "ice40")
    assert with_chain.ffs - without.ffs >= cfg.rows * cfg.cols * (cfg.acc_bits + 1)
    assert without.luts < with_chain.luts


# -- Pareto front ------------------------------------------------------------------------------


def test_pareto_front_matches_brute_force():
    import random

    rng = random.Random(3)
    pts = [
        ParetoPoint(
            "m", "wrap", p, rng.uniform(0, 100), rng.random() < 0.5, rng.randrange(100, 200)
        )
        for p in range(40)
    ]
    marked = pareto_front(pts)
    for p in marked:
        better_certified = [
            q
            for q in pts
            if q.certified
            and q.luts <= p.luts
            and q.accuracy >= p.accuracy
            and (q.luts, q.accuracy) != (p.luts, p.accuracy)
        ]
        assert p.on_certified_front == (p.certified and not better_certified)
        better = [
            q
            for q in pts
            if q.luts <= p.luts
            and q.accuracy >= p.accuracy
            and (q.luts, q.accuracy) != (p.luts, p.accuracy)
        ]
        assert p.on_front == (not better)
    # The cheapest point and the most accurate point are always on the front.
    assert next(
        p
        for p in marked
        if p.luts == min(q.luts for q in pts)
        and p.accuracy == max(q.accuracy for q in pts if q.luts == p.luts)
    ).on_front
    assert next(p for p in marked if p.accuracy == max(q.accuracy for q in pts)).on_front


# -- the LUT multiplier --------------------------------------------------------------------------


@pytest.mark.parametrize("act_shape", [unsigned(4), signed(4), unsigned(8)])
def test_shift_add_product_is_exact_for_every_operand(act_shape):
    a, w, p = Signal(act_shape), Signal(signed(4)), Signal(signed(16))
    m = Module()
    m.d.comb += p.eq(shift_add_product(a, w))
    sim = Simulator(m)
    lo, hi = (
        (-(1 << (act_shape.width - 1)), 1 << (act_shape.width - 1))
        if act_shape.signed
        else (0, 1 << act_shape.width)
    )
    wrong = []

    async def bench(ctx):
        for av in range(lo, hi):
            for wv in range(-8, 8):
                ctx.set(a, av)
                ctx.set(w, wv)
                if ctx.get(p) != av * wv:
                    wrong.append((av, wv, ctx.get(p)))

    sim.add_testbench(bench)
    sim.run()
    assert wrong == []


# -- CLI errors ----------------------------------------------------------------------------------


def test_cli_unreachable_clock(capsys):
    assert main(["fpga", "build", "--board", "icebreaker", "--clock", "5"]) == 2
    assert "cannot make 5 MHz" in capsys.readouterr().err


def test_cli_bad_sizes_and_missing_accuracy(capsys, tmp_path):
    assert main(["fpga", "sweep", "--sizes", "4by4", "-o", str(tmp_path)]) == 2
    assert "RxC" in capsys.readouterr().err
    assert main(["fpga", "pareto", "--accuracy", str(tmp_path / "none.csv")]) == 2
    assert "run `oasa sweep" in capsys.readouterr().err


def test_cli_bad_array_for_board(capsys):
    assert main(["fpga", "build", "--board", "icebreaker", "--acc-bits", "4"]) == 2
    assert "acc_bits=4 is out of range" in capsys.readouterr().err


# -- two products in one multiplier ------------------------------------------------------------


@pytest.mark.parametrize("packing", ["lut", "dsp", "packed"])
@pytest.mark.parametrize("act_signed", [False, True])
def test_product_pair_is_exact_for_every_operand(packing, act_signed):
    from oasa.config import ArrayConfig
    from oasa.fpga.packing import ProductPair

    cfg = ArrayConfig(act_signed=act_signed)
    dut = ProductPair(cfg, packing)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    acts = range(cfg.act_min, cfg.act_max + 1)
    ws = range(cfg.weight_min, cfg.weight_max + 1)
    wrong = []

    async def bench(ctx):
        for a in acts:
            for w1 in ws:
                for w2 in ws:
                    ctx.set(dut.act, a)
                    ctx.set(dut.w1, w1)
                    ctx.set(dut.w2, w2)
                    await ctx.tick()
                    got = (ctx.get(dut.p1), ctx.get(dut.p2))
                    if got != (a * w1, a * w2):
                        wrong.append((a, w1, w2, got))

    sim.add_testbench(bench)
    sim.run()
    assert wrong == []


@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"rows": 4, "cols": 3, "bias_bits": 16, "mult_bits": 8, "shift_bits": 5, "act_depth": 256},
        {
            "act_bits": 8,
            "act_signed": True,
            "weight_bits": 8,
            "acc_bits": 32,
            "overflow": "saturate",
        },
    ],
)
def test_board_identity_gives_back_the_build_config(cfg):
    from oasa.config import ArrayConfig
    from oasa.fpga.protocol import Identity

    c = ArrayConfig(**cfg)
    assert Identity.from_bytes(Identity.of(c).to_bytes()).to_config() == c


@pytest.mark.parametrize("name", ["icebreaker", "ulx3s-85f"])
@pytest.mark.parametrize("multiplier", ["lut", "dsp"])
def test_board_tops_elaborate_with_their_pins_and_clock(name, multiplier, monkeypatch):
    """Both boards' tops elaborate into a build plan (no toolchain run): pins requested,
    the PLL's output constrained to the target."""
    from oasa.fpga.boards import BoardTop

    monkeypatch.setenv("AMARANTH_USE_YOSYS", "builtin")
    board = get_board(name)
    platform = board.platform_class()()
    top = BoardTop(board, board_config(board, rows=2, cols=2), multiplier=multiplier)
    plan = platform.prepare(top)
    constraints = next(f for f in plan.files if f.endswith((".pcf", ".lpf")))
    text = plan.files[constraints]
    text = text if isinstance(text, str) else text.decode()
    assert f"{board.f_target / 1e6:g}" in text.replace(".0 ", " ")  # the PLL output's clock
    assert top.pll.f_out == board.f_target


def test_sweep_builds_the_dataflow_it_is_asked_for(tmp_path, monkeypatch, capsys):
    """``--dataflow ws`` builds weight-stationary arrays, cached apart from the
    output-stationary builds of the same size, and the table says which is which."""
    built = []

    def fake_board_build(board, cfg, build_dir, seed, multiplier):
        built.append(cfg)
        point = SweepPoint(board.name, cfg.rows, cfg.cols, cfg.acc_bits)
        return BuildReport.from_json(_fake_report(point, 300 * point.pes, 40.0))

    monkeypatch.setattr("oasa.fpga.sweep.build_board", fake_board_build)
    argv = ["fpga", "sweep", "--boards", "icebreaker", "--sizes", "2x2", "--acc-bits", "16",
            "-o", str(tmp_path)]  # fmt: skip
    assert main([*argv, "--dataflow", "ws"]) == 0

    def largest():
        return summarize(list(load_results(tmp_path).values()))["icebreaker"]["largest_p16"]

    assert largest()["dataflow"] == "ws"  # the only dataflow built
    assert main(argv) == 0
    assert [cfg.dataflow for cfg in built] == ["ws", "os"]  # neither came from the other's cache
    assert largest()["dataflow"] == "os"  # sizes compare in one dataflow, os when built
    assert main([*argv, "--dataflow", "ws"]) == 0
    assert len(built) == 2
    lines = table(list(load_results(tmp_path).values())).splitlines()
    assert {line.split()[2] for line in lines[1:]} == {"os", "ws"}
    capsys.readouterr()


def test_sweep_records_a_tool_crash_as_failed_and_builds_it_again(tmp_path, monkeypatch, capsys):
    """A synthesis crash says nothing about fitting: it is recorded as a failed build (not
    as one that does not fit), reported (exit 1), and built again by the next sweep."""
    from oasa.cli import main
    from oasa.fpga.build import BuildError

    def crash(board, cfg, build_dir, seed, multiplier):
        raise BuildError("yosys crashed: wasm trap", placed=False)

    monkeypatch.setattr("oasa.fpga.sweep.build_board", crash)
    (rec,) = run_sweep([SweepPoint("icebreaker", 2, 2, 16)], tmp_path)
    assert rec["status"] == "failed" and "wasm trap" in rec["error"] and not rec["fits"]
    assert load_results(tmp_path) == {}
    argv = ["fpga", "sweep", "--boards", "icebreaker", "--sizes", "2x2", "--acc-bits", "16",
            "-o", str(tmp_path)]  # fmt: skip
    assert main(argv) == 1
    assert "1 builds FAILED" in capsys.readouterr().err
    lines = (tmp_path / "builds.jsonl").read_text().splitlines()
    assert len(lines) == 2  # the re-run tried it again


def test_array_lut_cache_is_keyed_by_the_design(tmp_path, monkeypatch):
    """The Pareto plot's synthesis cache: a second call reuses it, edited source does not."""
    from oasa.fpga import cost, pareto

    calls = []

    def fake_synth(cfg, family, **_):
        calls.append(cfg.acc_bits)
        return cost.SynthCost(family, "array", {"LUT": 100 * cfg.acc_bits})

    monkeypatch.setattr(cost, "synth_cost", fake_synth)
    cache = tmp_path / "array_luts.json"
    args = {"family": "ecp5", "rows": 2, "cols": 2, "cache": cache}
    assert pareto.array_luts([12, 16], **args) == {12: 1200, 16: 1600}
    assert pareto.array_luts([12, 16], **args) == {12: 1200, 16: 1600}
    assert calls == [12, 16]
    monkeypatch.setattr("oasa.fpga.sweep.design_fingerprint", lambda: "edited")
    pareto.array_luts([12], **args)
    assert calls == [12, 16, 12]
