"""A network file run layer by layer on the accelerator backends, checked against the
golden model's integer inference."""

import numpy as np
import pytest
from test_netfile import small_network

from oasa.config import ArrayConfig
from oasa.sim import network
from oasa.sim.accel_image import BufferFitError
from oasa.sim.netfile import Layer, Network
from oasa.sim.netrun import LayerMismatch, plan_calls, run_network_rtl

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


def test_plan_calls_fit_the_buffers():
    cfg = ArrayConfig(**ARRAY)
    calls = plan_calls(cfg, 100, 20, 10)
    covered = np.zeros((100, 10), dtype=int)
    for rows, chans in calls:
        covered[rows, chans] += 1
        m, n = rows.stop - rows.start, chans.stop - chans.start
        assert -(-m // 2) * 20 <= cfg.act_depth and -(-n // 3) * 20 <= cfg.wgt_depth
        assert -(-n // 3) * m <= cfg.res_depth
    assert (covered == 1).all()
    with pytest.raises(BufferFitError, match="K=65 does not fit"):
        plan_calls(cfg, 4, 65, 4)


def test_ws_plan_calls_fit_the_buffers():
    """Weight-stationary: ceil(K/R) activation words per row, any number of rows a call."""
    cfg = ArrayConfig(**{**ARRAY, "dataflow": "ws"})
    calls = plan_calls(cfg, 100, 20, 10)
    covered = np.zeros((100, 10), dtype=int)
    for rows, chans in calls:
        covered[rows, chans] += 1
        m, n = rows.stop - rows.start, chans.stop - chans.start
        assert 10 * m <= cfg.act_depth and -(-n // 3) * 20 <= cfg.wgt_depth
        assert -(-n // 3) * m <= cfg.res_depth
    assert (covered == 1).all()
    assert {r.stop - r.start for r, _ in calls} == {6, 4}  # 64 // 10 rows, not whole tiles
    plan_calls(cfg, 4, 64, 4)  # 32 activation words a row: fits where the OS layout does not
    with pytest.raises(BufferFitError, match="K=65 does not fit"):
        plan_calls(cfg, 4, 65, 4)


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
