"""QONNX export (:mod:`oasa.quant.qonnx_export`): the exported model, executed by qonnx,
reproduces the golden model on every input on which no dot product is flagged: the
hand-made graphs with every operator (wrap and saturate, certified and not), and a real
quantized digits network on the whole test split. Refusals name the layer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_graph_network import residual_network
from test_netfile import small_network

from oasa.config import ArrayConfig
from oasa.quant.qonnx_export import (
    EXACT_LIMIT,
    QONNX_DOMAIN,
    QonnxExportError,
    export_qonnx,
    thresholds,
)
from oasa.sim import golden
from oasa.sim.netfile import Layer, Network, Tensor
from oasa.sim.network import quantize_input, run_network

onnx = pytest.importorskip("onnx")
pytest.importorskip("qonnx")


def execute(path, net: Network, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run the exported model with qonnx (node by node, float32); qonnx must never have
    to round a tensor to its integer annotation."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    model = ModelWrapper(str(path)).transform(InferShapes())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*can't be represented.*")
        return execute_onnx(model, {net.input: np.asarray(x, dtype=np.float32)})


def images(net: Network, n: int, seed: int) -> np.ndarray:
    """Random integer images of varied intensity (each capped at its own level, so weak
    images rarely overflow and strong ones often do); the last one is all-max."""
    rng = np.random.default_rng(seed)
    fmt = net.input_format
    cap = rng.integers(fmt.lo, fmt.hi + 1, (n,) + (1,) * len(net.input_shape))
    x = np.minimum(rng.integers(fmt.lo, fmt.hi + 1, (n, *net.input_shape)), cap)
    x[-1] = fmt.hi
    return x


def flagged(result, n: int) -> np.ndarray:
    """Per image: some dot product of some layer was flagged."""
    out = np.zeros(n, dtype=bool)
    for r in result.layers:
        if r.overflow is not None:
            out |= r.overflow.reshape(n, -1).any(axis=1)
    return out


@pytest.mark.parametrize(
    ("make", "acc_bits", "mode", "mixed"),
    [
        (small_network, 12, "wrap", False),  # certified: no input can overflow
        (small_network, 10, "wrap", True),
        (small_network, 10, "saturate", True),
        (residual_network, 12, "wrap", False),
        (residual_network, 10, "wrap", True),
        (residual_network, 10, "saturate", True),
    ],
)
def test_export_reproduces_the_golden_model(tmp_path, make, acc_bits, mode, mixed):
    net = make(acc_bits=acc_bits, overflow=mode)
    n = 48
    x = images(net, n, seed=acc_bits)
    path = tmp_path / "net.onnx"
    report = export_qonnx(net, path, batch=n, raw_output=True)
    assert report.outputs == (net.output, f"{net.output}_acc")
    assert set(report.checked) == {layer.label for _, layer in net.weighted} | {
        layer.label for layer in net.layers if layer.kind in ("add", "avgpool")
    }
    out = execute(path, net, x)
    ref = run_network(net, x)
    bad = flagged(ref, n)
    ok = ~bad
    assert ok.sum() >= n // 2 + 1, "most images must be unflagged, or the test says little"
    assert bad.any() == mixed  # the mixed cases exercise the filter, all-max is flagged
    acc = out[f"{net.output}_acc"]
    np.testing.assert_array_equal(acc[ok], ref.layers[-1].out[ok])
    logits = out[net.output]
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits[ok], ref.logits[ok] * net.logit_scale, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(logits[ok].argmax(axis=1), ref.predictions[ok])
    # On every image, flagged or not, the model computes the exact sums: the golden model
    # on an accumulator too wide to overflow (wrap mode loses them on the flagged ones).
    exact = run_network(net, x, overrides={"acc_bits": 32})
    assert not flagged(exact, n).any()
    np.testing.assert_array_equal(acc, exact.layers[-1].out)
    if mixed and mode == "wrap":
        assert (acc[bad] != ref.layers[-1].out[bad]).any()


def test_every_intermediate_tensor_matches(tmp_path):
    """Not only the logits: every oasa tensor of the graph, by name, on a certified net."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    net = residual_network(acc_bits=16)
    n = 16
    x = images(net, n, seed=3)
    export_qonnx(net, tmp_path / "r.onnx", batch=n)
    model = ModelWrapper(str(tmp_path / "r.onnx")).transform(InferShapes())
    ctx = execute_onnx(model, {net.input: x.astype(np.float32)}, return_full_exec_context=True)
    ref = run_network(net, x)
    assert not flagged(ref, n).any()
    for run in ref.layers[:-1]:  # the last writes the logits
        np.testing.assert_array_equal(ctx[run.layer.output], run.out, err_msg=run.layer.label)


def test_the_digits_network_predicts_identically(tmp_path):
    from oasa.quant import model
    from oasa.quant.data import digits_split
    from oasa.quant.ptq import QuantSpec, quantize

    params = model.load_or_train(model.Recipe())[0]
    net = quantize(params, QuantSpec("exact", ArrayConfig(acc_bits=12)))
    x = quantize_input(net, digits_split().x_test)
    path = tmp_path / "digits.onnx"
    report = export_qonnx(net, path, batch=len(x), raw_output=True)
    assert report.checked == tuple(layer.label for _, layer in net.weighted)
    out = execute(path, net, x)
    ref = run_network(net, x)
    assert not flagged(ref, len(x)).any()  # exact networks are certified
    np.testing.assert_array_equal(out[net.output].argmax(axis=1), ref.predictions)
    np.testing.assert_array_equal(out[f"{net.output}_acc"], ref.layers[-1].out)
    np.testing.assert_allclose(out[net.output], ref.logits * net.logit_scale, rtol=1e-6)


def test_the_written_model(tmp_path):
    """A valid ONNX file, no external data, oasa's tensor names, the QONNX domain for the
    custom nodes, bit widths as annotations, and a symbolic batch when asked."""
    net = residual_network()
    path = tmp_path / "r.onnx"
    report = export_qonnx(net, path, batch=None, weight_quant=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.onnx"]
    assert report.size_bytes == path.stat().st_size
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    g = m.graph
    assert report.nodes == len(g.node)
    assert [i.name for i in g.input] == [net.input]
    assert [o.name for o in g.output] == [net.output]
    assert g.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    names = {v.name for v in (*g.input, *g.output, *g.value_info)}
    assert set(net.tensors) <= names
    custom = {n.op_type for n in g.node if n.domain == QONNX_DOMAIN}
    assert custom == {"MultiThreshold"}  # no Quant nodes without weight_quant
    assert {o.domain: o.version for o in m.opset_import}[""] >= 13
    dtypes = {
        a.tensor_name: a.quant_parameter_tensor_names[0].value for a in g.quantization_annotation
    }
    assert dtypes["x"] == "UINT4" and dtypes["b"] == "INT8" and dtypes["conv_a.weight"] == "INT4"
    mt = [n for n in g.node if n.op_type == "MultiThreshold"]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    for node in mt:  # 2**bits - 1 thresholds per channel, sorted, exact integers
        t = inits[node.input[1]]
        fmt = net.tensors[node.output[0]]
        assert t.shape == (fmt.shape[0], fmt.hi - fmt.lo)
        assert (np.diff(t, axis=1) >= 0).all() and (t == np.round(t)).all()
        assert np.abs(t).max() <= EXACT_LIMIT


def test_default_export_runs_one_image(tmp_path):
    net = small_network()
    x = images(net, 1, seed=5)
    report = export_qonnx(net, tmp_path / "s.onnx")
    assert report.batch == 1 and report.op_counts["Quant"] == 3
    out = execute(tmp_path / "s.onnx", net, x)
    np.testing.assert_allclose(
        out[net.output], run_network(net, x).logits * net.logit_scale, rtol=1e-6
    )


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("signed", [False, True])
def test_thresholds_reproduce_the_output_stage(relu, signed):
    """lo + #{j : acc >= T_j} equals the golden output stage on every accumulator value."""
    rng = np.random.default_rng(7)
    cfg = ArrayConfig(acc_bits=14)
    lo, hi = (-8, 7) if signed else (0, 15)
    c = 6
    bias = rng.integers(-300, 300, c)
    mult = np.concatenate([[0], rng.integers(1, 3000, c - 1)])
    shift = rng.integers(0, 12, c)
    z = np.arange(-3000, 3001)
    ref = golden.output_stage(
        np.repeat(z[:, None], c, axis=1), cfg=cfg, bias=bias, mult=mult, shift=shift,
        relu=relu, out_range=(lo, hi),
    )  # fmt: skip

    def stage(v):
        r = golden.round_shift((v + bias[:, None]) * mult[:, None], shift[:, None])
        return np.clip(np.maximum(r, 0) if relu else r, lo, hi)

    t = thresholds(stage, np.full(c, z[0]), np.full(c, z[-1]), lo, hi)
    got = lo + (z[:, None, None] >= t[None]).sum(axis=2)
    np.testing.assert_array_equal(got, ref)


def _wide_dense() -> Network:
    """8-bit inputs and weights, K = 1024: certified at P = 26, but partial sums reach
    1024 * 127 * 255 > 2**24."""
    cfg = ArrayConfig(act_bits=8, weight_bits=8, acc_bits=26)
    k = 1024
    layer = Layer(
        "dense", (k,), (2,), name="wide", cfg=cfg, requant=False, method="test",
        weight=np.full((2, k), 127, dtype=np.int8), bias=np.zeros(2, np.int64),
        mult=np.ones(2, np.int64), shift=np.zeros(2, np.int64),
    )  # fmt: skip
    return Network([layer], input_shape=(k,), input_scale=1 / 255)


def _big_add() -> Network:
    net = residual_network()
    add = next(layer for layer in net.layers if layer.kind == "add")
    add.mult = np.array([1 << 20, 1 << 20])
    return net


def _wide_tensor() -> Network:
    net = residual_network()
    b = net.tensors["b"]
    net.tensors["b"] = Tensor(b.shape, 20, True, b.scale)
    return net


@pytest.mark.parametrize(
    ("make", "where", "what"),
    [
        (_wide_dense, "layer 0 (wide)", "partial sums can reach 33162240"),
        (_big_add, "layer 2 (add)", "a * 1048576 + b * 1048576"),
        (_wide_tensor, "layer 1 (conv_b)", "20 bits"),
    ],
)
def test_refusals_name_the_layer(tmp_path, make, where, what):
    path = tmp_path / "x.onnx"
    with pytest.raises(QonnxExportError) as e:
        export_qonnx(make(), path)
    msg = str(e.value)
    assert "\n" not in msg and where in msg and what in msg, msg
    assert not path.exists() and not list(tmp_path.iterdir())
