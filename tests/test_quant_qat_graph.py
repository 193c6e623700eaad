"""QAT of any float graph: the residual test model (adds, strided and depthwise convs, a
global average pool) trains and exports a certified network through the PTQ pipeline,
and the fake-quantized module computes what the integer network computes for every
operator (asymmetric padding, padded pooling, signed inputs): the same integers in every
tensor, ties and the dyadic rescales included."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oasa.config import ArrayConfig  # noqa: E402
from oasa.quant import ptq, qat  # noqa: E402
from oasa.quant.data import Split, digits_split  # noqa: E402
from oasa.quant.graph import FloatGraph, FloatNode  # noqa: E402
from oasa.quant.onnx_import import load_onnx  # noqa: E402
from oasa.sim import certificates, network  # noqa: E402

RESIDUAL = Path(__file__).parent / "data" / "residual_digits.onnx"


@pytest.fixture(scope="module")
def residual_qat():
    """One epoch of exact QAT at P = 12 on the residual model (digits data)."""
    torch.set_num_threads(1)
    graph = load_onnx(RESIDUAL)
    split = digits_split()
    spec = ptq.QuantSpec("exact", ArrayConfig(acc_bits=12), calibration=256)
    net_t, init = qat.train_qat(graph, spec, qat.QATRecipe(epochs=1, seed=0), split=split)
    net = qat.export(net_t, None, spec, {"qat": {"epochs": 1}})
    return graph, split, spec, net_t, init, net


def test_residual_qat_exports_a_certified_accurate_network(residual_qat):
    graph, split, _, net_t, _, net = residual_qat
    assert [layer.name for layer in net.layers] == [n.name for n in graph.nodes]
    assert {layer.kind for layer in net.layers} >= {"add", "avgpool", "conv2d", "dense"}
    assert net.guarantee == "certified"
    certificates.check_certificates(net)
    x = network.quantize_input(net, split.x_test)
    assert (net_t.quantize_input(split.x_test).numpy() == x).all()
    r = network.run_network(net, x)
    assert r.overflow_counts()["flagged"] == 0
    assert r.accuracy(split.y_test) >= 95.0
    with torch.no_grad():
        fake = net_t(torch.tensor(x, dtype=torch.float32)).argmax(dim=1).numpy()
    assert np.mean(fake == r.predictions) >= 0.99


def test_residual_export_is_the_ptq_pipeline(residual_qat):
    """The export is bit for bit ptq.quantize of the graph with the trained biases, given
    the module's integer weights, weight scales and learned activation scales."""
    graph, split, spec, net_t, _, net = residual_qat
    weights, act_scales, nodes = {}, {}, []
    with torch.no_grad():
        for node in graph.nodes:
            if node.weighted:
                layer = net_t.layer(node.name)
                _, q = layer.quantized()
                weights[node.name] = (q, layer.log_s.exp().double().numpy()[:, 0])
                node = dataclasses.replace(node, bias=layer.bias.double().numpy())
            key = net_t.keys[node.name]
            if key in net_t.act:
                act_scales[node.name] = float(net_t.act[key].log_s.exp())
            nodes.append(node)
    assert set(act_scales) == {
        n.name for n in graph.nodes if n.op == "add" or (n.weighted and n.output != graph.output)
    }
    trained = FloatGraph(graph.input, graph.input_shape, graph.output, nodes)
    ref = ptq.quantize(
        trained,
        dataclasses.replace(spec, bias_correction=False),
        calib=split.x_train[: spec.calibration],
        weights=weights,
        act_scales=act_scales,
    )
    assert net.tensors == ref.tensors
    for a, b in zip(net.layers, ref.layers, strict=True):
        assert (a.name, a.kind, a.cfg, a.relu, a.requant) == (
            b.name,
            b.kind,
            b.cfg,
            b.relu,
            b.requant,
        )
        for field in ("weight", "bias", "mult", "shift", "wc_lo", "wc_hi"):
            va, vb = getattr(a, field), getattr(b, field)
            assert (va is None) == (vb is None), (a.name, field)
            if va is not None:
                assert np.array_equal(va, vb), (a.name, field)
    for name, (q, _) in weights.items():  # what the module trained with is what runs
        w = next(layer for layer in net.layers if layer.name == name).weight
        assert np.array_equal(w.reshape(len(w), -1), q)
    x = network.quantize_input(net, split.x_test[:64])
    assert np.array_equal(network.run_network(net, x).logits, network.run_network(ref, x).logits)


def _odd_graph(rng) -> FloatGraph:
    """Asymmetric and strided conv with ReLU6-like clip, padded maxpool, depthwise conv,
    an add of a signed and an unsigned branch, a padded average pool, dense on a (C, H, W)
    tensor."""

    def w(*shape):
        return rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))

    nodes = [
        FloatNode("conv2d", "c1", ("x",), "a", weight=w(4, 2, 3, 3), bias=w(4, 1)[:, 0],
                  kernel=(3, 3), stride=(2, 1), padding=(1, 0, 0, 2), relu=True, clip=1.5),
        FloatNode("maxpool", "mp", ("a",), "m", kernel=(2, 2), stride=(1, 2),
                  padding=(1, 1, 0, 0)),
        FloatNode("conv2d", "dw", ("m",), "d", weight=w(4, 1, 3, 3), bias=None,
                  kernel=(3, 3), padding=(1, 1, 1, 1), groups=4),
        FloatNode("conv2d", "pw", ("m",), "p", weight=w(4, 4, 1, 1), bias=w(4, 1)[:, 0],
                  relu=True),
        FloatNode("add", "add", ("d", "p"), "s", relu=True),
        FloatNode("avgpool", "ap", ("s",), "v", kernel=(2, 2), stride=(1, 1),
                  padding=(0, 0, 1, 1)),
        FloatNode("dense", "fc", ("v",), "y", weight=w(5, 36), bias=w(5, 1)[:, 0]),
    ]  # fmt: skip
    return FloatGraph("x", (2, 7, 6), "y", nodes, name="odd")


def test_fake_quantization_matches_the_integer_network_on_every_operator():
    rng = np.random.default_rng(0)
    graph = _odd_graph(rng)
    x = rng.standard_normal((96, 2, 7, 6)).astype(np.float32)
    spec = ptq.QuantSpec("exact", ArrayConfig(acc_bits=14))
    init = ptq.quantize(graph, spec, calib=x[:64])
    assert init.tensors["x"].signed and init.tensors["d"].signed
    assert init.tensors["d"].bits == spec.host_bits  # only the add reads it
    net_t = qat.QuantNet(graph, spec, init)
    net_t.calib = x[:64]
    assert net_t.layer("c1").cfg.act_signed
    net = qat.export(net_t, graph, spec, {})
    assert net.guarantee == "certified"
    xi = network.quantize_input(net, x)
    assert (net_t.quantize_input(x).numpy() == xi).all()
    r = network.run_network(net, xi)
    with torch.no_grad():
        fake = net_t(torch.tensor(xi, dtype=torch.float32), keep=True)
    for run in r.layers[:-1]:  # every tensor before the logits: the same integers
        fmt = net.tensors[run.layer.output]
        q = np.rint(fake[run.layer.output].numpy() / fmt.scale)
        assert np.array_equal(q, run.out), run.layer.name
    logits = fake["y"].numpy()
    assert np.allclose(
        r.logits * net.logit_scale, logits, rtol=1e-3, atol=1e-3 * np.abs(logits).max()
    )

    # A user's split: one epoch trains and exports a certified network of this graph.
    y = rng.integers(0, 5, len(x))
    split = Split(x[:64], y[:64], x[64:], y[64:])
    out = qat.train_and_export(graph, spec, epochs=1, split=split)
    assert out.guarantee == "certified" and out.info["qat"]["epochs"] == 1
    assert out.input_scale == init.input_scale  # calibrated on the split's training part
    a = out.tensors["a"]  # the integer side clips through the range only: s * hi <= clip
    assert a.scale * a.hi <= 1.5 * (1 + 1e-6)
