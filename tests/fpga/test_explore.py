"""``oasa explore``: GEMM shapes of every kind of network input, cycles as the runner
counts them, cached synthesis, and the command's outputs and refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from test_netfile import small_network

from oasa.cli import main
from oasa.config import ArrayConfig
from oasa.fpga import explore
from oasa.sim import netfile
from oasa.sim.netrun import run_network_rtl

ROOT = Path(__file__).parents[2]
RESNET = ROOT / "bench" / "topologies" / "Resnet50.csv"


def test_shapes_of_each_kind_of_input(tmp_path):
    kind, shapes = explore.layer_shapes(RESNET)
    assert kind == "SCALE-Sim topology" and len(shapes) == 54
    assert (shapes[0].m, shapes[0].k, shapes[0].n) == (110 * 110, 147, 64)
    kind, shapes = explore.layer_shapes(ROOT / "tests" / "data" / "residual_digits.onnx")
    dw = next(s for s in shapes if s.groups > 1)
    assert kind == "ONNX model" and (dw.k, dw.n, dw.groups) == (9, 1, 32)
    netfile.save(small_network(), tmp_path / "n.npz")
    kind, shapes = explore.layer_shapes(tmp_path / "n.npz")
    assert [(s.m, s.k, s.n) for s in shapes] == [(16, 9, 3), (1, 12, 5), (1, 5, 3)]


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_layer_cycles_are_what_the_runner_counts(tmp_path, dataflow):
    """Per image, explore's cycles equal the model backend's run of the same network, whose
    per-call cycles tests/test_netrun.py checks against the Verilator RTL."""
    net = small_network()
    array = {"rows": 2, "cols": 3, "act_depth": 64, "wgt_depth": 64, "res_depth": 64,
             "param_depth": 8, "dataflow": dataflow}  # fmt: skip
    run = run_network_rtl(net, np.zeros((1, 1, 4, 4), np.int64), backend="model",
                          overrides=array, batch=1)  # fmt: skip
    netfile.save(net, tmp_path / "n.npz")
    _, shapes = explore.layer_shapes(tmp_path / "n.npz")
    cfg = net.layers[0].cfg.replace(**array)
    got = [explore.layer_cycles(cfg, s) for s in shapes]
    want = [(s.calls, s.cycles) for s in run.stats if s.kind in ("conv2d", "dense")]
    assert got == want


def test_synthesis_is_cached(tmp_path, monkeypatch):
    cfg = ArrayConfig(rows=2, cols=2, acc_bits=12)
    first = explore.cached_cost(cfg, "ecp5", tmp_path)
    assert first[0] > 0 and first[1] > 0

    def no_synthesis(*a, **k):
        raise AssertionError("synthesized again")

    monkeypatch.setattr("oasa.fpga.cost.synth_cost", no_synthesis)
    assert explore.cached_cost(cfg, "ecp5", tmp_path) == first


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_array_modules_cover_what_the_array_synthesis_runs(dataflow):
    """The synthesis cache keys on :data:`explore.ARRAY_MODULES`: every oasa module whose
    code runs while the bare array is built and converted for Yosys must be in it, or a
    figure of edited source would come from the cache."""
    import sys

    from amaranth.back import rtlil

    from oasa.fpga.multipliers import array_factory
    from oasa.hw.verilog import component_ports

    ran = set()

    def tracer(frame, event, arg):
        name = frame.f_globals.get("__name__") or ""
        if name.startswith("oasa."):
            ran.add(name)

    cfg = ArrayConfig(rows=2, cols=2, acc_bits=12, dataflow=dataflow)
    sys.settrace(tracer)
    try:
        block = array_factory("lut", dataflow)(cfg)
        rtlil.convert(block, name="top", ports=component_ports(block))
    finally:
        sys.settrace(None)
    assert {"oasa.hw.pe", "oasa.fpga.multipliers"} <= ran
    assert ran <= set(explore.ARRAY_MODULES)


def test_explore_command(tmp_path, capsys):
    out = tmp_path / "ex"
    argv = ["explore", str(RESNET), "--arrays", "8x8,16x16", "--acc-bits", "12",
            "--no-cost", "-o", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["layers"] == 54 and len(r["totals"]) == 4  # 2 arrays x os, ws
    by = {(t["rows"], t["dataflow"]): t for t in r["totals"]}
    for flow in ("os", "ws"):
        small, big = by[8, flow], by[16, flow]
        assert big["cycles"] < small["cycles"] and 0 < big["utilization"] <= 1
        assert small["macs"] == sum(s.macs for s in explore.layer_shapes(RESNET)[1])
    for name in ("layers.csv", "totals.csv", "explore.json", "cycles.png"):
        assert (out / name).stat().st_size > 0
    assert len((out / "layers.csv").read_text().splitlines()) == 1 + 4 * 54


def test_cost_front_keeps_the_candidates_none_beats(tmp_path):
    """Fewer cycles or fewer LUTs, not both worse; a tie in both stays; the plot draws it."""

    def cand(name, cycles, luts):
        r, df, p = name.split()
        return {"rows": int(r), "cols": int(r), "dataflow": df, "acc_bits": int(p),
                "cycles": cycles, "luts": luts}  # fmt: skip

    tot = [
        cand("8 os 12", 100, 10),
        cand("8 os 16", 100, 12),  # same cycles, more LUTs than P = 12: beaten
        cand("8 ws 12", 90, 9),  # beats both 8 os
        cand("16 os 12", 30, 40),
        cand("16 ws 12", 35, 30),
        cand("32 os 12", 10, 100),
        cand("32 ws 12", 12, 120),  # beaten by 32 os
        cand("16 ws 16", 35, 30),  # a tie in both: neither beats the other
    ]
    front = explore.cost_front(tot)
    assert [(t["rows"], t["dataflow"], t["acc_bits"]) for t in front] == [
        (8, "ws", 12), (16, "ws", 12), (16, "ws", 16), (16, "os", 12), (32, "os", 12),
    ]  # fmt: skip
    traffic = dict.fromkeys(("act_reads", "wgt_reads", "psum_reads", "res_writes",
                             "act_words", "wgt_words", "res_words"), 1)  # fmt: skip
    rows = [explore.Row(layer="l", m=1, k=1, n=1, groups=1, rows=t["rows"], cols=t["cols"],
                        dataflow=t["dataflow"], acc_bits=t["acc_bits"], calls=1,
                        cycles=t["cycles"], macs=1, utilization=0.5, luts=t["luts"], ffs=1,
                        **traffic)
            for t in tot]  # fmt: skip
    paths = explore.write_outputs(rows, tmp_path, meta={"network": "/some/where/net.csv"})
    assert (tmp_path / "pareto.png") in paths and (tmp_path / "pareto.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arrays", "8by8"], "is not ROWSxCOLS"),
        (["--dataflows", "is"], "--dataflows: is; choose from os,ws"),
        (["--acc-bits", "40"], "acc_bits=40 is out of range"),
    ],
)
def test_explore_refuses_bad_options(tmp_path, capsys, args, message):
    assert main(["explore", str(RESNET), "--no-cost", "-o", str(tmp_path / "e"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_rtl_check_runs_sampled_layers_on_verilator(tmp_path, capsys, monkeypatch):
    """--rtl-check 1: one sampled layer per candidate on the Verilator RTL, equal to the
    model; a cycle model that counted one cycle more would be caught (exit 1)."""
    netfile.save(small_network(), tmp_path / "n.npz")
    argv = ["explore", str(tmp_path / "n.npz"), "--arrays", "2x3", "--dataflows", "ws",
            "--no-cost", "--rtl-check", "1", "-o", str(tmp_path / "e"), "--json"]  # fmt: skip
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["rtl_checked"]) == 1 and r["rtl_checked"][0]["cycles"] > 0
    layers = list(csv.DictReader((tmp_path / "e" / "layers.csv").open()))
    assert {"act_reads", "wgt_reads", "psum_reads", "res_writes", "act_words"} <= set(layers[0])
    real = explore.layer_cycles
    monkeypatch.setattr(
        explore, "layer_cycles", lambda c, s, *a: (real(c, s, *a)[0], real(c, s, *a)[1] + 1)
    )
    assert main(argv) == 1
    assert "the RTL took" in capsys.readouterr().err


def test_rtl_check_runs_a_grouped_layer_as_its_packs():
    """A depthwise layer of 5 groups: each pack size it is planned in runs on Verilator
    (block-diagonal weights) and the packs' cycles add up to explore's."""
    shapes = [explore.LayerShape("dw", 10, 9, 1, groups=5)]
    cand = explore.Candidate(2, 3, "ws", 16)  # the Verilator build of the test above
    packs = explore.layer_plan(cand.cfg, shapes[0])
    assert packs[0].count > 1
    rows = explore.explore(shapes, [cand], family=None)
    done = explore.rtl_check(shapes, [cand], rows, 1)
    assert done[0]["cycles"] == rows[0].cycles and done[0]["calls"] == rows[0].calls
    unpacked = explore.layer_cycles(cand.cfg, explore.LayerShape("one", 10, 9, 1))[1] * 5
    assert rows[0].cycles < unpacked
