"""The QONNX importer (oasa.quant.qonnx_import) on Brevitas' own exports, checked against
what Brevitas measured and what qonnx executes.

The fixtures come from ``python bench/brevitas_model.py`` (needs Brevitas; these tests do
not): a digits A2Q+ network whose weights Brevitas bounds for a 12-bit accumulator, exported
by ``export_qonnx`` as it writes it (``brevitas_a2qplus_p12.onnx``: each A2Q+ weight as
Quant(raw parameter), not Brevitas' integers) and faithfully (``..._int.onnx``: Quant of
Brevitas' own q * s), with Brevitas' numbers in ``brevitas_a2qplus_p12.json``. Small graphs
for the other operators and the refusals are built here with ``onnx.helper``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the QONNX importer needs the onnx package")
pytest.importorskip("qonnx", reason="the reference execution needs qonnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from oasa.quant.data import digits_split  # noqa: E402
from oasa.quant.graph import GraphError  # noqa: E402
from oasa.quant.qonnx_import import import_qonnx, qonnx_reference  # noqa: E402
from oasa.sim import netfile, network  # noqa: E402
from oasa.sim.netrun import run_network_rtl  # noqa: E402

DATA = Path(__file__).parent / "data"
FAITHFUL = DATA / "brevitas_a2qplus_p12_int.onnx"
AS_WRITTEN = DATA / "brevitas_a2qplus_p12.onnx"
QONNX_IMAGES = 128  # qonnx executes node by node
QDOMAIN = "qonnx.custom_op.general"


@pytest.fixture(scope="module")
def brevitas() -> dict:
    return json.loads((DATA / "brevitas_a2qplus_p12.json").read_text())


@pytest.fixture(scope="module")
def faithful():
    return import_qonnx(FAITHFUL)


@pytest.fixture(scope="module")
def digits():
    return digits_split()


@pytest.fixture(scope="module")
def faithful_run(faithful, digits):
    x = network.quantize_input(faithful.net, digits.x_test)
    return x, network.run_network(faithful.net, x)


def l1_norms(net) -> list[tuple[int, int]]:
    """(largest per output channel, total) L1 norm of each weighted layer's integers."""
    out = []
    for _, layer in net.weighted:
        a = np.abs(np.asarray(layer.weight, dtype=np.int64).reshape(layer.channels, -1))
        out.append((int(a.sum(axis=1).max()), int(a.sum())))
    return out


# -- the faithful export ---------------------------------------------------------------------


def test_faithful_file_is_certified_at_the_p_brevitas_targets(faithful, brevitas):
    p = brevitas["target_acc_bits"]
    assert faithful.acc_bits <= p  # the smallest safe width, found from the integers
    assert faithful.certification.certified and faithful.net.guarantee == "certified"
    assert max(faithful.min_safe_acc_bits.values()) <= p
    at_p = import_qonnx(FAITHFUL, acc_bits=p)
    assert at_p.certification.certified and at_p.net.guarantee == "certified"
    assert all(layer.acc_bits == p for _, layer in at_p.net.weighted)
    assert f"certified overflow-free at P = {at_p.acc_bits}" in at_p.summary()


def test_faithful_file_has_brevitas_integer_weights(faithful, brevitas):
    """The importer's integers are Brevitas' own: the same L1 norms, layer by layer, and
    within the A2Q+ bound Brevitas enforces."""
    layers = list(brevitas["layers"].values())
    assert l1_norms(faithful.net) == [
        (d["l1_norm_max_channel"], d["l1_norm_total"]) for d in layers
    ]
    for (_, layer), d in zip(faithful.net.weighted, layers, strict=True):
        assert (layer.act_bits, layer.weight_bits) == (d["input_bits"], d["weight_bits"])
        assert int(layer.weight.min()) == d["weight_min"]
        assert int(layer.weight.max()) == d["weight_max"]
        assert d["l1_norm_max_channel"] <= d["l1_bound"]


def test_faithful_accuracy_equals_brevitas(faithful_run, digits, brevitas):
    _, r = faithful_run
    acc = r.accuracy(digits.y_test)
    assert len(digits.y_test) == brevitas["test_images"] == 540
    assert abs(acc - brevitas["quantized_test_accuracy"]) <= 0.5, acc
    assert r.overflow_counts()["flagged"] == 0  # certified: nothing can overflow


def test_faithful_predictions_agree_with_qonnx(faithful, faithful_run, digits):
    _, r = faithful_run
    ref = qonnx_reference(FAITHFUL, digits.x_test[:QONNX_IMAGES])
    agree = float(np.mean(ref.argmax(axis=1) == r.predictions[:QONNX_IMAGES]))
    assert agree >= 0.995, agree
    # the logits are real logits (logit_scale), close to the float ones qonnx computes
    logits = r.logits[:QONNX_IMAGES] * faithful.net.logit_scale
    assert np.abs(logits - ref).max() < 0.05 * np.abs(ref).max()


def test_requantization_report(faithful):
    assert 0 <= faithful.dyadic_error < 1e-4  # 16-bit multipliers
    assert faithful.dyadic_error <= faithful.max_requant_error < 0.01
    assert any("round exactly where the QONNX graph rounds" in n for n in faithful.notes)
    assert "largest relative error" in faithful.summary()


def test_external_data_file_imports_the_same(tmp_path, faithful):
    m = onnx.load(str(FAITHFUL))
    path = tmp_path / "ext.onnx"
    onnx.save(
        m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
        location="ext.onnx.data", size_threshold=0,
    )  # fmt: skip
    assert (tmp_path / "ext.onnx.data").exists()
    back = import_qonnx(path)
    for (_, a), (_, b) in zip(back.net.weighted, faithful.net.weighted, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.mult, b.mult)


def test_imported_network_saves_and_loads_back_identically(tmp_path, faithful, faithful_run):
    x, r = faithful_run
    path = tmp_path / "brevitas.npz"
    netfile.save(faithful.net, path)
    back = netfile.load(path)
    net = faithful.net
    assert back.tensors == net.tensors
    assert (back.input, back.output, back.input_shape) == (net.input, net.output, net.input_shape)
    assert (back.input_scale, back.logit_scale) == (net.input_scale, net.logit_scale)
    assert back.guarantee == net.guarantee == "certified"
    assert len(back.layers) == len(net.layers)
    for a, b in zip(back.layers, net.layers, strict=True):
        assert (a.kind, a.name, a.inputs, a.output) == (b.kind, b.name, b.inputs, b.output)
        assert (a.kernel, a.stride, a.padding, a.groups) == (
            b.kernel,
            b.stride,
            b.padding,
            b.groups,
        )
        if b.has_weights:
            assert a.cfg == b.cfg and (a.relu, a.requant) == (b.relu, b.requant)
            for name in ("weight", "bias", "mult", "shift", "wc_lo", "wc_hi"):
                assert np.array_equal(getattr(a, name), getattr(b, name)), name
    again = network.run_network(back, x[:64])
    assert np.array_equal(again.logits, r.logits[:64])


def test_imported_network_on_the_rtl_model_equals_golden(faithful, faithful_run):
    x, r = faithful_run
    run = run_network_rtl(faithful.net, x[:4], backend="model", overrides={"rows": 4, "cols": 4})
    assert np.array_equal(run.result.logits, r.logits[:4])
    assert np.array_equal(run.result.predictions, r.predictions[:4])


# -- the file as export_qonnx writes it ---------------------------------------------------------


def test_export_as_written_is_not_certified_at_12(brevitas):
    p = brevitas["target_acc_bits"]
    smallest = import_qonnx(AS_WRITTEN)
    need = smallest.min_safe_acc_bits
    assert max(need.values()) > p, need  # Quant(raw parameter) breaks Brevitas' bound
    assert smallest.acc_bits == max(need.values())
    assert smallest.certification.certified  # certified, but only at its own, wider P
    assert l1_norms(smallest.net) != [
        (d["l1_norm_max_channel"], d["l1_norm_total"]) for d in brevitas["layers"].values()
    ]
    at_p = import_qonnx(AS_WRITTEN, acc_bits=p)
    assert not at_p.certification.certified
    assert at_p.net.guarantee != "certified" and at_p.net.guarantee == "none"
    assert "NOT certified at P = 12" in at_p.summary()
    unsafe = [s for s in at_p.certification.layers if not s.safe]
    assert unsafe and all(s.min_safe_acc_bits > p for s in unsafe)


# -- refusals ----------------------------------------------------------------------------------


def test_float_model_is_refused_with_the_pointer_to_quantize():
    with pytest.raises(GraphError, match=r"has no Quant nodes: it is a float model; quantize "
                       r"it with `oasa quantize --model"):  # fmt: skip
        import_qonnx(DATA / "residual_digits.onnx")


def test_accumulator_narrower_than_a_product_is_refused():
    from oasa.errors import InputError

    # the first layer multiplies 8-bit inputs by 4-bit weights: 12-bit products
    with pytest.raises(InputError, match="acc_bits=11 is out of range"):
        import_qonnx(FAITHFUL, acc_bits=11)


def test_missing_file_is_an_input_error(tmp_path):
    from oasa.errors import InputError

    with pytest.raises(InputError, match="no such QONNX file"):
        import_qonnx(tmp_path / "nope.onnx")


# -- small graphs built here ---------------------------------------------------------------------

RNG = np.random.default_rng(0)


def quant(x, out, scale, bits, *, signed, narrow=False, zeropt=0.0, op="Quant", rounding="ROUND"):
    """A Quant node and its three constant inputs (scale, zero point, bit width)."""
    inits = [
        numpy_helper.from_array(np.asarray(scale, np.float32), f"{out}.scale"),
        numpy_helper.from_array(np.asarray(zeropt, np.float32), f"{out}.zeropt"),
        numpy_helper.from_array(np.asarray(float(bits), np.float32), f"{out}.bits"),
    ]
    node = helper.make_node(
        op, [x, f"{out}.scale", f"{out}.zeropt", f"{out}.bits"], [out], name=out, domain=QDOMAIN,
        signed=int(signed), narrow=int(narrow), rounding_mode=rounding,
    )  # fmt: skip
    return [node], inits


def weight(name, shape, bits=4, out_axis=0):
    """A float weight initializer through a per-output-channel Quant (narrow signed);
    ``out_axis`` is the output-channel axis (1 for a MatMul's (K, N) weight)."""
    w = RNG.normal(0, 0.5, shape).astype(np.float32)
    axes = tuple(a for a in range(len(shape)) if a != out_axis)
    s = (np.abs(w).max(axis=axes, keepdims=True) / (2 ** (bits - 1) - 1)).astype(np.float32)
    nodes, inits = quant(name, f"{name}_q", s, bits, signed=True, narrow=True)
    return nodes, [numpy_helper.from_array(w, name), *inits]


def residual_model(path: Path, **edits) -> Path:
    """x (1x6x6) -> Quant u8 -> conv 3x3 1->4 pad 1 + ReLU -> Quant u4 = a; conv 3x3 4->4
    (bias through an Add) -> Quant s6 = b; Add(a, b) + ReLU -> Quant u4 = c; AveragePool 2
    -> Quant u4 = d; MaxPool 3 stride 1 pad 1 = e; Flatten; MatMul 36->5 + bias -> logits."""
    nodes, inits = [], []

    def add(pair):
        nodes.extend(pair[0])
        inits.extend(pair[1])

    add(quant("x", "xq", 1 / 255, 8, signed=False))
    add(weight("w1", (4, 1, 3, 3)))
    inits.append(numpy_helper.from_array(RNG.normal(0, 0.1, 4).astype(np.float32), "b1"))
    nodes.append(helper.make_node("Conv", ["xq", "w1_q", "b1"], ["c1"], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"]))
    add(quant("r1", "a", 0.11, 4, signed=False))
    add(weight("w2", (4, 4, 3, 3)))
    nodes.append(helper.make_node("Conv", ["a", "w2_q"], ["c2"], pads=[1, 1, 1, 1]))
    bias2 = RNG.normal(0, 0.2, (1, 4, 1, 1)).astype(np.float32)
    inits.append(numpy_helper.from_array(bias2, "b2"))
    nodes.append(helper.make_node("Add", ["c2", "b2"], ["c2b"]))
    add(quant("c2b", "b", 0.07, 6, signed=True))
    nodes.append(helper.make_node("Add", ["a", "b"], ["s"]))
    nodes.append(helper.make_node("Relu", ["s"], ["sr"]))
    add(quant("sr", "c", 0.13, 4, signed=False))
    nodes.append(helper.make_node("AveragePool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]))
    add(quant("p", "d", 0.09, 4, signed=False))
    nodes.append(helper.make_node("MaxPool", ["d"], ["e"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Flatten", ["e"], ["f"]))
    add(weight("w3", (36, 5), out_axis=1))
    nodes.append(helper.make_node("MatMul", ["f", "w3_q"], ["mm"]))
    inits.append(numpy_helper.from_array(RNG.normal(0, 0.1, 5).astype(np.float32), "b3"))
    nodes.append(helper.make_node("Add", ["mm", "b3"], ["logits"]))
    for fn in edits.values():
        fn(nodes, inits)
    graph = helper.make_graph(
        nodes, "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])],
        inits,
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QDOMAIN, 1)]
    )
    onnx.save(model, str(path))
    return path


def test_residual_graph_with_add_and_pools_agrees_with_qonnx(tmp_path):
    path = residual_model(tmp_path / "res.onnx")
    imp = import_qonnx(path)
    net = imp.net
    assert [layer.kind for layer in net.layers] == [
        "conv2d", "conv2d", "add", "avgpool", "maxpool", "flatten", "dense",
    ]  # fmt: skip
    add = net.layers[2]
    assert add.mult.max() < 2**12 and net.tensors["b"].signed
    assert not net.on_chip_requant(net.layers[1])  # the signed 6-bit tensor: host requant
    x = np.random.default_rng(1).random((64, 1, 6, 6)).astype(np.float32)
    r = network.run_network(net, network.quantize_input(net, x))
    ref = qonnx_reference(path, x)
    logits = r.logits * net.logit_scale
    assert np.mean(ref.argmax(axis=1) == r.predictions) >= 0.9
    assert np.abs(logits - ref).max() < 0.1 * np.abs(ref).max()
    netfile.save(net, tmp_path / "res.npz")
    back = netfile.load(tmp_path / "res.npz")
    assert np.array_equal(
        network.run_network(back, network.quantize_input(net, x)).logits, r.logits
    )


def bias_quant_model(path: Path) -> Path:
    """Biases through their own 32-bit Quant (scale s_in * s_w, as Brevitas' Int32Bias
    exports them), a mean over H and W (ReduceMean, keepdims=0) and a Gemm with transB."""
    nodes, inits = [], []

    def add(pair):
        nodes.extend(pair[0])
        inits.extend(pair[1])

    s_in, s_a, s_m = 1 / 255, 0.05, 0.02
    add(quant("x", "xq", s_in, 8, signed=False))
    add(weight("w1", (6, 1, 3, 3)))
    s_w1 = numpy_helper.to_array(next(t for t in inits if t.name == "w1_q.scale")).reshape(-1)
    b1 = RNG.normal(0, 0.1, 6).astype(np.float32)
    inits.append(numpy_helper.from_array(b1, "b1"))
    add(quant("b1", "b1_q", (s_in * s_w1).astype(np.float32), 32, signed=True))
    nodes.append(helper.make_node("Conv", ["xq", "w1_q", "b1_q"], ["c1"], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"]))
    add(quant("r1", "a", s_a, 4, signed=False))
    nodes.append(helper.make_node("ReduceMean", ["a"], ["m"], axes=[2, 3], keepdims=0))
    add(quant("m", "mq", s_m, 6, signed=False))
    add(weight("w2", (3, 6)))  # Gemm transB=1: (O, K), one scale per row
    s_w2 = numpy_helper.to_array(next(t for t in inits if t.name == "w2_q.scale")).reshape(-1)
    inits.append(numpy_helper.from_array(RNG.normal(0, 0.1, 3).astype(np.float32), "b2"))
    add(quant("b2", "b2_q", (s_m * s_w2).astype(np.float32), 32, signed=True))
    nodes.append(helper.make_node("Gemm", ["mq", "w2_q", "b2_q"], ["logits"], transB=1))
    graph = helper.make_graph(
        nodes, "biasq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QDOMAIN, 1)]
    )
    onnx.save(model, str(path))
    return path


def test_quantized_biases_and_reduce_mean_import_exactly(tmp_path):
    """A bias already in accumulator units is taken as it is, and every rounding step
    of the requantization sits where QONNX's does."""
    path = bias_quant_model(tmp_path / "bq.onnx")
    imp = import_qonnx(path)
    net = imp.net
    assert [layer.kind for layer in net.layers] == ["conv2d", "avgpool", "flatten", "dense"]
    assert "all 6 channels round exactly" in " ".join(imp.notes)
    x = np.random.default_rng(2).random((64, 1, 6, 6)).astype(np.float32)
    r = network.run_network(net, network.quantize_input(net, x))
    ref = qonnx_reference(path, x)
    assert np.array_equal(ref.argmax(axis=1), r.predictions)
    assert np.abs(r.logits * net.logit_scale - ref).max() < 1e-3 * np.abs(ref).max()


def test_requantizing_a_quantized_tensor_is_a_1x1_rescale(tmp_path):
    """A Quant on an already quantized tensor with another format (here after the max pool)
    becomes a 1 x 1 average pool that only rescales; one with the same format vanishes."""

    def edit(nodes, inits):
        flat = next(n for n in nodes if n.op_type == "Flatten")
        flat.input[0] = "e3"
        for src, out, scale in (("e", "e2", 0.09), ("e2", "e3", 0.2)):  # same, then coarser
            more, more_inits = quant(src, out, scale, 4, signed=False)
            nodes.extend(more)
            inits.extend(more_inits)
        nodes.append(nodes.pop(nodes.index(flat)))
        for n in [
            n for n in nodes if n.op_type in ("MatMul", "Add") and "mm" in (*n.input, *n.output)
        ]:
            nodes.append(nodes.pop(nodes.index(n)))

    path = residual_model(tmp_path / "rq.onnx", edit=edit)
    net = import_qonnx(path).net
    kinds = [layer.kind for layer in net.layers]
    assert kinds == ["conv2d", "conv2d", "add", "avgpool", "maxpool", "avgpool", "flatten", "dense"]
    rescale = net.layers[5]
    assert rescale.kernel == (1, 1) and net.tensors[rescale.output].scale == pytest.approx(0.2)
    x = np.random.default_rng(3).random((32, 1, 6, 6)).astype(np.float32)
    r = network.run_network(net, network.quantize_input(net, x))
    ref = qonnx_reference(path, x)
    assert np.abs(r.logits * net.logit_scale - ref).max() < 0.1 * np.abs(ref).max()


def _replace(name, new_nodes):
    def edit(nodes, inits):
        i = next(k for k, n in enumerate(nodes) if n.output[0] == name)
        nodes[i : i + 1] = new_nodes

    return edit


def _set_init(name, value):
    def edit(nodes, inits):
        i = next(k for k, t in enumerate(inits) if t.name == name)
        inits[i] = numpy_helper.from_array(np.asarray(value, np.float32), name)

    return edit


def _set_attr(out, **attrs):
    def edit(nodes, inits):
        n = next(n for n in nodes if n.output[0] == out)
        for k, v in attrs.items():
            for a in n.attribute:
                if a.name == k:
                    n.attribute.remove(a)
                    break
            n.attribute.append(helper.make_attribute(k, v))

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _replace("p", [helper.make_node("Trunc", ["c", "c.scale", "c.zeropt", "c.bits", "c.bits"], ["p"], domain=QDOMAIN)]),
            r"\(Trunc\): Trunc .* no counterpart",
        ),
        (
            _replace("xq", [helper.make_node("BipolarQuant", ["x", "xq.scale"], ["xq"], domain=QDOMAIN)]),
            r"\(BipolarQuant\): BipolarQuant .* no counterpart",
        ),
        (
            _replace("p", [helper.make_node("BatchNormalization", ["c", "c.scale", "c.scale", "c.scale", "c.scale"], ["p"])]),
            r"BatchNormalization does not belong in a QONNX export",
        ),
        (_set_init("a.zeropt", 1.0), r"node 'a'.*zero point is not 0"),
        (_set_attr("a", narrow=1), r"narrow-range activation"),
        (_set_attr("a", rounding_mode="FLOOR"), r"rounding_mode FLOOR on an activation"),
        (_set_init("a.scale", [0.1, 0.2, 0.3, 0.4]), r"per-channel scale"),
        (_set_init("a.bits", 4.5), r"bit width \[4.5\] is not one integer"),
        (
            _replace("w1_q", [helper.make_node("Identity", ["w1"], ["w1_q"])]),
            r"weight 'w1_q' is a float constant; oasa needs integer weights",
        ),
        (
            _replace("a", [helper.make_node("Identity", ["r1"], ["a"])]),
            r"float result that no Quant node quantizes",
        ),
    ],
)  # fmt: skip
def test_unsupported_qonnx_is_refused_naming_the_node(tmp_path, edit, message):
    path = residual_model(tmp_path / "bad.onnx", edit=edit)
    with pytest.raises(GraphError, match=message):
        import_qonnx(path)


def test_quantized_logits_are_refused(tmp_path):
    def edit(nodes, inits):
        nodes[-1].output[0] = "pre"
        more, more_inits = quant("pre", "logits", 0.1, 8, signed=True)
        nodes.extend(more)
        inits.extend(more_inits)

    with pytest.raises(GraphError, match="the graph output 'logits' is quantized"):
        import_qonnx(residual_model(tmp_path / "q.onnx", edit=edit))
