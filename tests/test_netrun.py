"""A network file run layer by layer on the accelerator backends, checked against the
golden model's integer inference."""

import itertools

import numpy as np
import pytest
from test_netfile import small_network

from oasa.config import ArrayConfig
from oasa.sim import calls as calls_module
from oasa.sim import golden, network
from oasa.sim.accel_image import build_image
from oasa.sim.calls import plan_calls, plan_cycles
from oasa.sim.layer import run_gemm
from oasa.sim.netfile import Layer, Network
from oasa.sim.netrun import LayerMismatch, run_network_rtl

ARRAY = {"rows": 2, "cols": 3, "act_depth": 64, "wgt_depth": 64, "res_depth": 64, "param_depth": 8}


def images(net, n, seed=0):
    rng = np.random.default_rng(seed)
    return network.quantize_input(net, rng.random((n, *net.input_shape)))


@pytest.mark.parametrize("dataflow", ["os", "ws"])
@pytest.mark.parametrize("backend", ["model", "amaranth", "verilator"])
def test_network_on_every_backend_equals_golden_inference(backend, dataflow):
    net = small_network(acc_bits=9, overflow="saturate")  # narrow: some dot products overflow
    x = images(net, 5)
    run = run_network_rtl(net, x, backend=backend, overrides={**ARRAY, "dataflow": dataflow},
                          batch=3)  # fmt: skip
    ref = network.run_network(net, x)
    np.testing.assert_array_equal(run.result.predictions, ref.predictions)
    np.testing.assert_array_equal(run.result.logits, ref.logits)
    for got, want in zip(run.result.layers, ref.layers, strict=True):
        np.testing.assert_array_equal(got.out, want.out)
        if want.overflow is not None:
            np.testing.assert_array_equal(got.overflow, want.overflow)
    assert ref.overflow_counts()["flagged"] > 0
    weighted = [s for s in run.stats if s.kind != "maxpool"]
    assert sum(s.flagged for s in weighted) == ref.overflow_counts()["flagged"]
    assert all(s.calls >= 1 and s.cycles > 0 for s in weighted)


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_cycles_are_the_sum_of_predicted_calls(dataflow):
    net = small_network(acc_bits=9, overflow="saturate")
    x = images(net, 4)
    array = {**ARRAY, "dataflow": dataflow}
    model = run_network_rtl(net, x, backend="model", overrides=array, batch=4)
    rtl = run_network_rtl(net, x, backend="verilator", overrides=array, batch=4)
    assert [s.cycles for s in model.stats] == [s.cycles for s in rtl.stats]
    assert [s.calls for s in model.stats] == [s.calls for s in rtl.stats]


def test_a_wrong_layer_is_named(monkeypatch):
    net = small_network()
    x = images(net, 2)
    from dataclasses import replace

    from oasa.sim.backends import model

    real = model._ModelSession.run

    def broken(self, calls):
        out = real(self, calls)
        o = out[0].out.copy()
        o.flat[0] += 1
        return [replace(out[0], out=o), *out[1:]]

    monkeypatch.setattr(model._ModelSession, "run", broken)
    with pytest.raises(
        LayerMismatch,
        match=r"layer 0 \(conv2d 'conv'\), images 0\.\.1: output differ at \[0, 0, 0, 0\]",
    ):
        run_network_rtl(net, x, backend="model", overrides=ARRAY)


def _check_plan(cfg, m, k, n):
    """Every output and term exactly once; each call fits the buffers (as build_image
    counts words); an output block's K calls are consecutive and in increasing k."""
    calls = plan_calls(cfg, m, k, n)
    covered = np.zeros((m, k, n), dtype=int)
    for c in calls:
        covered[c.rows, c.ks, c.chans] += 1
        rows, kc, chans = (s.stop - s.start for s in (c.rows, c.ks, c.chans))
        img = build_image(np.zeros((rows, kc), np.int64), np.zeros((kc, chans), np.int64),
                          cfg=cfg, cont=not c.first_k)  # fmt: skip
        assert img.act_words.shape[0] <= cfg.act_depth and img.res_words <= cfg.res_depth
    assert (covered == 1).all()
    for a, b in itertools.pairwise(calls):
        if (a.rows, a.chans) == (b.rows, b.chans):
            assert b.ks.start == a.ks.stop  # the next K chunk of the same outputs
        else:
            assert a.ks.stop == k and b.ks.start == 0  # a block ends with its last K chunk
    return calls


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_plan_calls_cut_k_and_rows_to_fit(dataflow):
    """Rows and columns cut to fit (whole row tiles on the output-stationary array, whose
    activation words hold R rows; any number of rows on the weight-stationary one), and a
    K longer than the buffers cut into continuing calls (whole K tiles on ws)."""
    cfg = ArrayConfig(**{**ARRAY, "dataflow": dataflow})
    calls = _check_plan(cfg, 100, 20, 10)
    if dataflow == "os":
        assert all((c.rows.stop - c.rows.start) % 2 == 0 for c in calls)
    calls = _check_plan(cfg, 7, 150, 8)  # K = 150 > wgt_depth = 64
    assert any(c.ks.start > 0 for c in calls)
    if dataflow == "ws":
        assert all((c.ks.stop - c.ks.start) % 2 == 0 or c.ks.stop == 150 for c in calls)
        cycles = plan_cycles(cfg, calls)
        for kc in (64, 32, 16, 2):  # the planner's choice is the fastest of its cuts
            assert cycles <= plan_cycles(cfg, calls_module._plan(cfg, 7, 150, 8, kc))


@pytest.mark.parametrize(
    ("backend", "overflow", "dataflow"),
    [
        ("amaranth", "wrap", "os"),
        ("amaranth", "saturate", "os"),
        ("verilator", "wrap", "os"),
        ("amaranth", "wrap", "ws"),
        ("amaranth", "saturate", "ws"),
        ("verilator", "saturate", "ws"),
    ],  # one Verilator build per dataflow
)
def test_k_cut_into_calls_on_the_rtl(backend, overflow, dataflow):
    """K = 40 on buffers of 12 weight words: the dot products continue through the result
    buffer across calls, with the flags of early chunks (P = 9 overflows), bit for bit the
    golden model's single pass over K; cycles as the planner predicts."""
    cfg = ArrayConfig(rows=2, cols=3, acc_bits=9, overflow=overflow, dataflow=dataflow,
                      act_depth=16, wgt_depth=12, res_depth=64, param_depth=4)  # fmt: skip
    rng = np.random.default_rng(5)
    x = rng.integers(0, 16, (7, 40))
    w = rng.integers(-8, 8, (40, 8))
    x[:3], w[:12, :4] = 15, 7  # early partial sums far out of range in some outputs
    stage = {"bias": rng.integers(-20, 20, 8), "mult": rng.integers(1, 200, 8),
             "shift": rng.integers(0, 8, 8), "relu": True}  # fmt: skip
    g = golden.gemm(x, w, cfg=cfg)
    assert g.overflow.any() and not g.overflow.all()
    plan = plan_calls(cfg, 7, 40, 8)
    assert sum(c.ks.start > 0 for c in plan) > 2
    for requant in (False, True):
        r = run_gemm(x, w, cfg=cfg, backend=backend, requant=requant, **stage)
        want = golden.output_stage(g.out, cfg=cfg, **stage) if requant else g.out
        np.testing.assert_array_equal(r.out, want)
        np.testing.assert_array_equal(r.overflow, g.overflow)
        assert r.flagged == int(g.overflow.sum()) and r.calls == len(plan) > 4
        assert r.cycles == plan_cycles(cfg, plan)


def digits_shaped_network(acc_bits=9, overflow="saturate"):
    """conv 1->2 (3x3 pad 1) on the digits' 8 x 8, maxpool 2, dense 32->4, dense 4->10."""
    rng = np.random.default_rng(1)
    common = dict(cfg=ArrayConfig(acc_bits=acc_bits, overflow=overflow), method="test")

    def params(o):
        return rng.integers(-50, 50, o), rng.integers(1, 400, o), np.full(o, 9)

    b0, m0, s0 = params(2)
    b1, m1, s1 = params(4)
    b2, m2, s2 = params(10)
    layers = [
        Layer(
            "conv2d",
            (1, 8, 8),
            (2, 8, 8),
            name="conv",
            kernel=3,
            padding=1,
            relu=True,
            weight=rng.integers(-8, 8, (2, 1, 3, 3)).astype(np.int8),
            bias=b0,
            mult=m0,
            shift=s0,
            **common,
        ),
        Layer("maxpool", (2, 8, 8), (2, 4, 4), name="pool", kernel=2),
        Layer(
            "dense",
            (32,),
            (4,),
            name="fc1",
            relu=True,
            weight=rng.integers(-8, 8, (4, 32)).astype(np.int8),
            bias=b1,
            mult=m1,
            shift=s1,
            **common,
        ),
        Layer(
            "dense",
            (4,),
            (10,),
            name="fc2",
            requant=False,
            weight=rng.integers(-8, 8, (10, 4)).astype(np.int8),
            bias=b2,
            mult=m2,
            shift=s2,
            **common,
        ),
    ]
    return Network(layers, input_shape=(1, 8, 8), input_scale=1 / 15, method="test")


def test_oasa_run_command(tmp_path, capsys):
    from oasa.cli import main
    from oasa.sim import netfile

    path = tmp_path / "net.npz"
    netfile.save(digits_shaped_network(), path)
    small = [
        "--rows",
        "2",
        "--cols",
        "3",
        "--act-depth",
        "64",
        "--wgt-depth",
        "64",
        "--res-depth",
        "64",
        "--param-depth",
        "8",
    ]
    assert main(["run", str(path), "--images", "5", "--batch", "2", "--quiet", *small]) == 0
    out = capsys.readouterr().out
    assert "predictions, logits and flags equal the golden model's" in out
    assert "images/s" in out and "0:conv" in out and "(host maxpool)" in out

    small_net = tmp_path / "small.npz"
    netfile.save(small_network(), small_net)
    assert main(["run", str(small_net), "--images", "3", *small]) == 2
    assert "takes inputs of shape (1, 4, 4), not the digits images" in capsys.readouterr().err
    assert main(["run", str(path), "--images", "0"]) == 2
    assert "argument --images: 0 is out of range" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.npz")]) == 2
    assert main(["run", str(path), "--rows", "0"]) == 2
