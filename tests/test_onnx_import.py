"""The ONNX importer (oasa.quant.onnx_import): every imported graph computes what
onnxruntime computes on the same file, and what it cannot represent is refused in one line
naming the node and the operator.

The residual fixtures are written by ``python bench/residual_model.py``; the small models are
built here with ``onnx.helper`` (no torch needed).
"""

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX importer needs the onnx package")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from oasa.errors import InputError  # noqa: E402
from oasa.quant.data import digits_split  # noqa: E402
from oasa.quant.graph import GraphError  # noqa: E402
from oasa.quant.onnx_import import load_onnx  # noqa: E402

DATA = Path(__file__).parent / "data"
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime", reason="comparing with ONNX needs onnxruntime")


def run_ort(ort, path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(y - ref).max() / np.abs(ref).max())


# -- the residual fixtures --------------------------------------------------------------


@pytest.mark.parametrize("name", ["residual_digits.onnx", "residual_digits_bn.onnx"])
def test_residual_fixture_matches_onnxruntime_on_every_test_image(ort, name):
    x = np.array(digits_split().x_test)
    graph = load_onnx(DATA / name)
    ops = [n.op for n in graph.nodes]
    assert ops.count("conv2d") == 6 and ops.count("add") == 2, ops
    assert any(n.groups == 32 for n in graph.nodes)  # the depthwise convolution
    ref = run_ort(ort, DATA / name, x)
    y = graph.forward(x)
    assert y.shape == (540, 10)
    assert (y.argmax(1) == ref.argmax(1)).all()
    assert rel_err(y, ref) < 1e-4


def test_batchnorm_fixture_folds_to_the_same_graph_as_the_exporter():
    """Folding BN in the importer gives the weights the exporter's folding gave."""
    a = load_onnx(DATA / "residual_digits.onnx")
    b = load_onnx(DATA / "residual_digits_bn.onnx")
    assert [n.op for n in a.nodes] == [n.op for n in b.nodes]
    for na, nb in zip(a.weighted, b.weighted, strict=True):
        np.testing.assert_allclose(na.weight, nb.weight, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(na.bias, nb.bias, rtol=1e-5, atol=1e-6)


# -- small models built with onnx.helper ------------------------------------------------


def const(name: str, a) -> TensorProto:
    return numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)


def model(nodes, in_shape, out_shape, inits=(), opset=17, domains=()):
    """A one-input, one-output model ``x`` -> ``y`` with a dynamic batch axis."""
    g = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *out_shape])],
        list(inits),
    )
    opsets = [helper.make_opsetid("", opset), *domains]
    m = helper.make_model(g, opset_imports=opsets, ir_version=8)
    if not domains:
        onnx.checker.check_model(m, full_check=True)
    return m


def check(ort, m, tmp_path: Path, in_shape, *, scale: float = 1.0, **save):
    """Import ``m`` and compare it with onnxruntime on random inputs of both signs."""
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path), **save)
    graph = load_onnx(path)
    x = (RNG.standard_normal((5, *in_shape)) * scale).astype(np.float32)
    ref = run_ort(ort, path, x)
    y = graph.forward(x)
    assert y.shape == ref.shape
    assert rel_err(y, ref) < 1e-5
    return graph


def test_gemm_with_transb_0_alpha_and_beta(ort, tmp_path):
    m = model(
        [helper.make_node("Gemm", ["x", "B", "C"], ["y"], alpha=0.5, beta=-2.0, transB=0)],
        [12],
        [5],
        [const("B", RNG.standard_normal((12, 5))), const("C", RNG.standard_normal((1, 5)))],
    )
    g = check(ort, m, tmp_path, [12])
    assert [n.op for n in g.nodes] == ["dense"] and g.nodes[0].weight.shape == (5, 12)


def test_matmul_plus_add_is_one_dense_layer(ort, tmp_path):
    m = model(
        [
            helper.make_node("Flatten", ["x"], ["f"]),
            helper.make_node("MatMul", ["f", "W"], ["m"]),
            helper.make_node("Add", ["b", "m"], ["a"]),  # the constant first: either order
            helper.make_node("Relu", ["a"], ["y"]),
        ],
        [3, 2, 2],
        [5],
        [const("W", RNG.standard_normal((12, 5))), const("b", RNG.standard_normal(5))],
    )
    g = check(ort, m, tmp_path, [3, 2, 2])
    assert [(n.op, n.relu) for n in g.nodes] == [("flatten", False), ("dense", True)]
    assert g.nodes[1].bias is not None and g.output == "y"


@pytest.mark.parametrize("form", ["initializers", "constant nodes", "attributes (opset 10)"])
def test_relu6_as_clip(ort, tmp_path, form):
    conv = helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1])
    inits = [const("W", RNG.standard_normal((4, 2, 3, 3)) * 3)]
    if form == "attributes (opset 10)":
        nodes, opset = [conv, helper.make_node("Clip", ["c"], ["y"], min=0.0, max=6.0)], 10
    else:
        nodes, opset = [conv, helper.make_node("Clip", ["c", "lo", "hi"], ["y"])], 17
        if form == "initializers":
            inits += [const("lo", 0.0), const("hi", 6.0)]
        else:
            nodes[:0] = [
                helper.make_node("Constant", [], ["lo"], value=const("v", 0.0)),
                helper.make_node("Constant", [], ["hi"], value_float=6.0),
            ]
    g = check(ort, model(nodes, [2, 5, 5], [4, 5, 5], inits, opset=opset), tmp_path, [2, 5, 5])
    node = g.nodes[0]
    assert (node.op, node.relu, node.clip) == ("conv2d", True, 6.0)
    y = g.forward(RNG.standard_normal((5, 2, 5, 5)) * 3)
    assert y.max() == 6.0 and y.min() == 0.0  # the bound is reached: the test exercises it


def test_maxpool_with_pads_and_strides(ort, tmp_path):
    """Negative inputs: the padding must never win a maximum."""
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 2, 1]
    )
    g = check(ort, model([node], [2, 7, 6], [2, 4, 6]), tmp_path, [2, 7, 6])
    assert g.nodes[0].padding == (1, 0, 2, 1)


def test_relu_after_a_max_pool_moves_into_the_conv_before_it(ort, tmp_path):
    """Conv -> MaxPool -> Relu (a common torch order): ReLU commutes with the maximum, so
    the conv's output stage applies it and the integer pool needs none."""
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Relu", ["p"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "B"], ["y"], transB=1),
    ]
    inits = [
        const("W", RNG.standard_normal((3, 1, 3, 3))),
        const("B", RNG.standard_normal((4, 12))),
    ]
    g = check(ort, model(nodes, [1, 4, 4], [4], inits), tmp_path, [1, 4, 4])
    assert [(n.op, n.relu) for n in g.nodes] == [
        ("conv2d", True),
        ("maxpool", False),
        ("flatten", False),
        ("dense", False),
    ]


def test_averagepool_counting_the_padding(ort, tmp_path):
    node = helper.make_node(
        "AveragePool",
        ["x"],
        ["y"],
        kernel_shape=[2, 3],
        strides=[2, 1],
        pads=[1, 1, 0, 1],
        count_include_pad=1,
    )
    check(ort, model([node], [3, 5, 4], [3, 3, 4]), tmp_path, [3, 5, 4])


def test_averagepool_without_pads_takes_the_onnx_default(ort, tmp_path):
    """count_include_pad defaults to 0 in ONNX; with no padding the divisor is the same."""
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    g = check(ort, model([node], [3, 6, 6], [3, 3, 3]), tmp_path, [3, 6, 6])
    assert g.nodes[0].count_include_pad


def test_reshape_to_batch_by_features(ort, tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "s1"], ["f"]),  # [0, -1]: what x.view(B, -1) gives
        helper.make_node("Gemm", ["f", "G", "C"], ["d"], transB=1),
        helper.make_node("Reshape", ["d", "s2"], ["y"]),  # [-1, 18] of an (N, 18) tensor
    ]
    inits = [
        const("W", RNG.standard_normal((6, 3, 3, 3))),
        const("B", RNG.standard_normal(6)),
        const("G", RNG.standard_normal((18, 6 * 3 * 3))),
        const("C", RNG.standard_normal(18)),
        numpy_helper.from_array(np.array([0, -1], np.int64), "s1"),
        numpy_helper.from_array(np.array([-1, 18], np.int64), "s2"),
    ]
    g = check(ort, model(nodes, [3, 7, 7], [18], inits), tmp_path, [3, 7, 7])
    assert [n.op for n in g.nodes] == ["conv2d", "flatten", "dense", "flatten"]


def test_reshape_that_changes_the_batch_is_refused(tmp_path):
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")]
    inits = [numpy_helper.from_array(np.array([-1, 3], np.int64), "s")]
    msg = refused(tmp_path, model(nodes, [2, 3], [3], inits))
    assert msg.startswith("node 'rs' (Reshape): shape [-1, 3]")


def test_global_average_pool_and_flatten(ort, tmp_path):
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"], axis=1),
    ]
    g = check(ort, model(nodes, [4, 3, 5], [4]), tmp_path, [4, 3, 5])
    assert [n.op for n in g.nodes] == ["avgpool", "flatten"] and g.nodes[0].kernel == (3, 5)


def test_dropout_and_identity_vanish(ort, tmp_path):
    nodes = [
        helper.make_node("Identity", ["x"], ["i0"]),  # on the graph input: an alias
        helper.make_node("Conv", ["i0", "W"], ["c"]),
        helper.make_node("Dropout", ["c"], ["d"], name="drop"),
        helper.make_node("Relu", ["d"], ["r"]),  # folds through the Dropout into the Conv
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Identity", ["f"], ["y"]),
    ]
    m = model(nodes, [2, 4, 4], [18], [const("W", RNG.standard_normal((2, 2, 2, 2)))])
    g = check(ort, m, tmp_path, [2, 4, 4])
    assert [(n.op, n.relu) for n in g.nodes] == [("conv2d", True), ("flatten", False)]
    assert (g.input, g.output) == ("x", "y")


def test_grouped_conv_with_asymmetric_pads(ort, tmp_path):
    node = helper.make_node(
        "Conv", ["x", "W", "B"], ["y"], group=2, pads=[0, 1, 2, 1], strides=[1, 2]
    )
    inits = [const("W", RNG.standard_normal((6, 2, 3, 2))), const("B", RNG.standard_normal(6))]
    g = check(ort, model([node], [4, 6, 5], [6, 6, 3], inits), tmp_path, [4, 6, 5])
    assert (g.nodes[0].groups, g.nodes[0].padding, g.nodes[0].stride) == (2, (0, 1, 2, 1), (1, 2))


def test_weights_in_an_external_data_file(ort, tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "mu", "var"], ["n"], epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    inits = [
        const("W", RNG.standard_normal((8, 3, 3, 3))),
        const("B", RNG.standard_normal(8)),
        const("g", RNG.uniform(0.5, 2, 8)),
        const("b", RNG.standard_normal(8)),
        const("mu", RNG.standard_normal(8)),
        const("var", RNG.uniform(0.1, 3, 8)),
    ]
    m = model(nodes, [3, 6, 6], [8, 6, 6], inits)
    check(
        ort,
        m,
        tmp_path,
        [3, 6, 6],
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="x.data",
        size_threshold=0,
    )
    assert (tmp_path / "x.data").stat().st_size >= 8 * 3 * 3 * 3 * 4
    assert (
        not onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
        .graph.initializer[0]
        .raw_data
    )


# -- refusals -------------------------------------------------------------------------


def refused(tmp_path: Path, m, error=GraphError) -> str:
    path = tmp_path / "bad.onnx"
    onnx.save(m, str(path))
    with pytest.raises(error) as e:
        load_onnx(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_unsupported_operator_names_node_operator_and_the_supported_list(tmp_path):
    m = model([helper.make_node("Softmax", ["x"], ["y"], name="Conv_3")], [10], [10])
    msg = refused(tmp_path, m)
    assert msg.startswith("node 'Conv_3' (Softmax): unsupported operator; oasa imports Conv, Gemm")


def test_dilated_conv_is_refused(tmp_path):
    node = helper.make_node("Conv", ["x", "W"], ["y"], dilations=[2, 2], name="dil")
    m = model([node], [1, 6, 6], [2, 2, 2], [const("W", np.ones((2, 1, 3, 3)))])
    msg = refused(tmp_path, m)
    assert "'dil' (Conv)" in msg and "dilations [2, 2]" in msg


def test_averagepool_leaving_the_padding_out_is_refused(tmp_path):
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    msg = refused(tmp_path, model([node], [2, 4, 4], [2, 4, 4]))
    assert "'AveragePool_0' (AveragePool)" in msg and "count_include_pad" in msg


def test_relu_on_a_tensor_with_other_readers_is_refused(tmp_path):
    """Folding it into the Conv would change what the Add reads."""
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="act"),
        helper.make_node("Add", ["r", "c"], ["y"]),
    ]
    m = model(nodes, [2, 4, 4], [2, 4, 4], [const("W", np.ones((2, 2, 3, 3)))])
    msg = refused(tmp_path, m)
    assert msg.startswith("node 'act' (Relu):") and "2 readers" in msg


def test_qonnx_model_is_sent_to_oasa_import(tmp_path):
    quant = helper.make_node(
        "Quant",
        ["x", "s", "z", "bits"],
        ["y"],
        domain="qonnx.custom_op.general",
        name="q0",
        signed=1,
        narrow=0,
        rounding_mode="ROUND",
    )
    inits = [const("s", 0.1), const("z", 0.0), const("bits", 4.0)]
    m = model([quant], [4], [4], inits, domains=[helper.make_opsetid("qonnx.custom_op.general", 1)])
    msg = refused(tmp_path, m)
    assert "'q0' (Quant)" in msg and "QONNX" in msg and "oasa import" in msg


def test_missing_file_and_text_file_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such ONNX file") as e:
        load_onnx(tmp_path / "absent.onnx")
    assert not isinstance(e.value, GraphError)
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\njust text\n")
    with pytest.raises(InputError, match=r"not a(n| readable) ONNX model") as e:
        load_onnx(text)
    assert "\n" not in str(e.value)
