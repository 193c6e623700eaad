"""Read a float ONNX model (as ``torch.onnx.export`` writes it) into a :class:`FloatGraph`.

The importer keeps only what the integer side can run: every ONNX node either becomes one
:class:`FloatNode` or folds into the node that produces its input, so the imported graph has
exactly the operators of :mod:`oasa.quant.graph`:

- ``Conv`` becomes ``conv2d``; ``Gemm``, and ``MatMul`` (plus an ``Add`` of a constant, its
  bias), become ``dense``;
- ``BatchNormalization`` folds into the convolution or dense layer before it
  (:func:`oasa.quant.fold.fold_batchnorm`), since the integer layer has one weight and one
  bias;
- ``Relu`` and ``Clip(0, a)`` fold into the node producing their input (``relu`` and
  ``clip`` fields); this is only sound when that node's output is read by nothing else, so a
  ReLU on a tensor with other readers is refused rather than silently applied to all of
  them;
- pools, ``Add`` of two tensors, ``Flatten`` and a batch-keeping ``Reshape`` map one to one;
  ``Identity`` and ``Dropout`` (inference) vanish.

Anything else is refused with a :class:`GraphError` naming the node and the operator, so a
model that imports is one whose float semantics :meth:`FloatGraph.forward` reproduces.
Tensor names are the ONNX ones: a node that absorbs a Relu (or BatchNormalization, ...)
takes the name of the absorbed node's output, so every tensor of the imported graph holds
the same values as the ONNX tensor of that name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oasa.errors import InputError
from oasa.quant.fold import fold_batchnorm
from oasa.quant.graph import FloatGraph, FloatNode, GraphError, node_shape
from oasa.quant.onnx_common import (
    Refused,
    attrs,
    constant_value,
    ints,
    node_name,
    pads,
    read_model,
    window,
)

__all__ = ["SUPPORTED", "load_onnx"]

# Operators of QONNX (quantized) models: those go through `oasa import`, not this importer.
QONNX_OPS = ("Quant", "BipolarQuant", "Trunc")
QONNX_DOMAINS = ("qonnx.", "finn.")


def load_onnx(path: str | Path) -> FloatGraph:
    """The float network of the ONNX model at ``path`` (weights may be in an external-data
    file next to it). Raises :class:`InputError` for a file that is missing or not ONNX, and
    :class:`GraphError` (one line, naming the node) for anything oasa cannot represent."""
    model = read_model(Path(path), "ONNX")
    graph = model.graph
    for i, node in enumerate(graph.node):
        if node.op_type in QONNX_OPS or node.domain.startswith(QONNX_DOMAINS):
            raise GraphError(
                f"{path}: node {node_name(node, i)!r} ({node.op_type}) makes this a quantized "
                "QONNX model; this importer reads float models, use `oasa import` instead"
            )
    imp = _Importer(graph)
    for i, node in enumerate(graph.node):
        name = imp.unique_name(node_name(node, i))
        handler = HANDLERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        try:
            if handler is None:
                raise Refused(f"unsupported operator; oasa imports {', '.join(SUPPORTED)}")
            handler(imp, node, name)
        except Refused as e:
            raise GraphError(f"node {name!r} ({node.op_type}): {e}") from None
    return imp.finish(model.graph.name or Path(path).stem)


class _Importer:
    """The graph under construction: constants, the FloatNodes so far, and which FloatGraph
    tensor each ONNX tensor name stands for.

    ``uses`` counts the readers of every tensor (ONNX nodes, and the graph output): a Relu,
    Clip, BatchNormalization or bias Add folds into its producer only when it is that
    tensor's sole reader, because folding changes the tensor for every reader.
    """

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.consts: dict[str, NDArray] = {
            t.name: numpy_helper.to_array(t) for t in graph.initializer
        }
        self.uses = Counter(t for n in graph.node for t in n.input if t)
        self.uses.update(o.name for o in graph.output)
        self.alias: dict[str, str] = {}  # ONNX name of an Identity output -> FloatGraph name
        self.nodes: list[FloatNode] = []
        self.producer: dict[str, FloatNode] = {}
        self.names: set[str] = set()
        self.graph = graph
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise GraphError(
                f"the model has {len(inputs)} input(s) and {len(graph.output)} output(s); "
                "oasa imports a network with one input (batch axis first) and one output"
            )
        self.input = inputs[0].name
        self.input_shape = self._input_shape(inputs[0])
        self.shapes: dict[str, tuple[int, ...]] = {self.input: self.input_shape}

    @staticmethod
    def _input_shape(value_info: Any) -> tuple[int, ...]:
        dims = value_info.type.tensor_type.shape.dim
        fixed = [d.dim_value if d.HasField("dim_value") else 0 for d in dims[1:]]
        if not fixed or min(fixed) < 1:
            shown = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in dims]
            raise GraphError(
                f"graph input {value_info.name!r} has shape {shown}; oasa needs the batch axis "
                "first and every other axis fixed"
            )
        return tuple(fixed)

    def unique_name(self, name: str) -> str:
        base, k = name, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    # -- inputs -------------------------------------------------------------------------

    def data(self, name: str) -> str:
        """The FloatGraph tensor an ONNX data input stands for."""
        name = self.alias.get(name, name)
        if name in self.shapes:
            return name
        if name in self.consts:
            raise Refused(
                f"input {name!r} is a constant; oasa needs a tensor computed from the graph input"
            )
        raise Refused(f"input {name!r} is not computed before this node")

    def const(self, node: Any, index: int, what: str, *, required: bool = True) -> NDArray | None:
        """Input ``index`` of ``node`` as a float64 array (an initializer or Constant)."""
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            if required:
                raise Refused(f"has no {what} input")
            return None
        if name not in self.consts:
            raise Refused(
                f"the {what} ({name!r}) must be a constant (initializer or Constant node)"
            )
        return np.asarray(self.consts[name], dtype=np.float64)

    def sole_producer(self, name: str, what: str) -> FloatNode:
        """The FloatNode writing ONNX tensor ``name`` when the caller is its only reader:
        the condition for folding the caller's operation into that node."""
        tensor = self.data(name)
        node = self.producer.get(tensor)
        if node is None:
            raise Refused(
                f"its input {tensor!r} is the graph input; there is no node to fold the {what} into"
            )
        if self.uses[tensor] != 1:
            raise Refused(
                f"its input {tensor!r} has {self.uses[tensor]} readers; the {what} can only fold "
                f"into {node.describe()} when it is the sole reader of its output"
            )
        return node

    # -- outputs ------------------------------------------------------------------------

    def add(self, node: FloatNode) -> None:
        try:
            shape = node_shape(node, [self.shapes[t] for t in node.inputs])
        except InputError as e:  # GraphError too: drop its "op node 'name': " prefix
            raise Refused(str(e).removeprefix(f"{node.describe()}: ")) from None
        self.nodes.append(node)
        self.producer[node.output] = node
        self.shapes[node.output] = shape

    def absorb(self, node: FloatNode, output: str) -> None:
        """``node`` now also computes the folded operation: it writes ``output``."""
        old = node.output
        del self.producer[old]
        self.producer[output] = node
        self.shapes[output] = self.shapes.pop(old)
        node.output = output

    def identity(self, src: str, out: str) -> None:
        """ONNX tensor ``out`` equals ``src``: rename the producer's output when it can, so
        the name is the ONNX one, else note the alias (the graph input, several readers)."""
        src = self.data(src)
        node = self.producer.get(src)
        if node is not None and self.uses[src] == 1:
            self.absorb(node, out)
        else:
            self.alias[out] = src
            self.uses[src] += self.uses[out] - 1

    def finish(self, name: str) -> FloatGraph:
        out = self.graph.output[0].name
        out = self.alias.get(out, out)
        if out not in self.producer:
            raise GraphError(f"the graph output {out!r} is not computed by any supported node")
        return FloatGraph(self.input, self.input_shape, out, self.nodes, name=name)


# -- handlers: one per ONNX operator -----------------------------------------------------


def _conv(imp: _Importer, node: Any, name: str) -> None:
    a = attrs(node)
    x = imp.data(node.input[0])
    w = imp.const(node, 1, "weight")
    if w.ndim != 4:
        raise Refused(f"weight {w.shape}: oasa runs 2-D convolutions only")
    kernel, stride = window(a, ints(a.get("kernel_shape", w.shape[2:])))
    if kernel != w.shape[2:]:
        raise Refused(f"kernel_shape {list(kernel)} differs from the weight {w.shape}")
    imp.add(
        FloatNode(
            "conv2d",
            name,
            (x,),
            node.output[0],
            weight=w,
            bias=imp.const(node, 2, "bias", required=False),
            kernel=kernel,
            stride=stride,
            padding=pads(a),
            groups=int(a.get("group", 1)),
        )
    )


def _dense_input(imp: _Importer, name: str) -> str:
    """A dense layer reads a (batch, features) tensor: ONNX Gemm and MatMul on more axes
    mean something else than oasa's flatten-then-multiply."""
    x = imp.data(name)
    if len(imp.shapes[x]) != 1:
        raise Refused(
            f"input {x!r} has shape {imp.shapes[x]} per image; a dense layer needs a (batch, "
            "features) tensor (Flatten first)"
        )
    return x


def _per_channel(c: NDArray, o: int, rank: int) -> NDArray | None:
    """``c`` as an (o,) vector if adding it to a (batch, o, ...) tensor of ``rank`` axes
    adds one value per channel (axis 1), else None."""
    target = (1, o) + (1,) * (rank - 2)
    try:
        return np.broadcast_to(c, target).reshape(o).copy() if c.ndim <= rank else None
    except ValueError:
        return None


def _gemm(imp: _Importer, node: Any, name: str) -> None:
    a = attrs(node)
    if a.get("transA", 0):
        raise Refused("transA=1 is not supported (the data input must be (batch, features))")
    x = _dense_input(imp, node.input[0])
    b = imp.const(node, 1, "weight (B)")
    if b.ndim != 2:
        raise Refused(f"weight (B) has shape {b.shape}, needs 2 axes")
    w = float(a.get("alpha", 1.0)) * (b if a.get("transB", 0) else b.T)  # (O, K)
    c = imp.const(node, 2, "bias (C)", required=False)
    bias = None
    if c is not None:
        bias = _per_channel(c, w.shape[0], 2)
        if bias is None:
            raise Refused(f"bias (C) of shape {c.shape} does not broadcast to ({w.shape[0]},)")
        bias = float(a.get("beta", 1.0)) * bias
    imp.add(FloatNode("dense", name, (x,), node.output[0], weight=w, bias=bias))


def _matmul(imp: _Importer, node: Any, name: str) -> None:
    x = _dense_input(imp, node.input[0])
    b = imp.const(node, 1, "weight")
    if b.ndim != 2:
        raise Refused(f"weight has shape {b.shape}, needs 2 axes (K, N)")
    imp.add(FloatNode("dense", name, (x,), node.output[0], weight=b.T.copy()))


def _add(imp: _Importer, node: Any, name: str) -> None:
    """Two tensors: a residual add. A tensor and a constant: the bias of the MatMul (or
    Conv) before it, as exporters split a dense layer into MatMul + Add."""
    ins = list(node.input)
    const = [t for t in ins if t in imp.consts]
    if not const:
        imp.add(FloatNode("add", name, (imp.data(ins[0]), imp.data(ins[1])), node.output[0]))
        return
    if len(const) == 2:
        raise Refused("both inputs are constants")
    src = next(t for t in ins if t not in imp.consts)
    prev = imp.sole_producer(src, "bias Add")
    if not prev.weighted or prev.relu or prev.clip is not None:
        raise Refused(
            f"an Add of a constant folds only into the bias of a Conv, Gemm or MatMul right "
            f"before it, not into {prev.describe()}"
        )
    c = np.asarray(imp.consts[const[0]], dtype=np.float64)
    o = prev.weight.shape[0]
    bias = _per_channel(c, o, 1 + len(imp.shapes[prev.output]))
    if bias is None:
        raise Refused(f"constant of shape {c.shape} is not one value per output channel ({o})")
    prev.bias = bias if prev.bias is None else prev.bias + bias
    imp.absorb(prev, node.output[0])


def _batchnorm(imp: _Importer, node: Any, name: str) -> None:
    a = attrs(node)
    if a.get("training_mode", 0) or len([o for o in node.output if o]) > 1:
        raise Refused("training mode is not supported (export the model in eval mode)")
    prev = imp.sole_producer(node.input[0], "BatchNormalization")
    if not prev.weighted or prev.relu or prev.clip is not None:
        raise Refused(
            f"folds only into a Conv or dense layer right before it, not into {prev.describe()}"
            + (" with an activation" if prev.weighted else "")
        )
    gamma, beta, mean, var = (
        imp.const(node, i, w) for i, w in enumerate(("scale", "bias", "mean", "var"), 1)
    )
    prev.weight, prev.bias = fold_batchnorm(
        prev.weight, prev.bias, gamma, beta, mean, var, float(a.get("epsilon", 1e-5))
    )
    imp.absorb(prev, node.output[0])


def _relu(imp: _Importer, node: Any, name: str) -> None:
    prev = imp.sole_producer(node.input[0], "Relu")
    inner = imp.producer.get(prev.inputs[0]) if prev.op in ("maxpool", "flatten") else None
    if inner is not None and imp.uses[prev.inputs[0]] == 1 and inner.clip is None:
        # ReLU commutes with a maximum and a reshape: fold it into the layer before the
        # pool, whose output stage can apply it (integer pools take no activation).
        inner.relu = True
    else:
        prev.relu = True
    imp.absorb(prev, node.output[0])


def _clip(imp: _Importer, node: Any, name: str) -> None:
    """Clip(0, a) is ReLU then min(., a) (ReLU6 for a = 6); min and max are inputs from
    opset 11 on, attributes before."""
    if len(node.input) > 1:
        lo, hi = (imp.const(node, i, w, required=False) for i, w in ((1, "min"), (2, "max")))
        lo = -np.inf if lo is None else float(lo.reshape(-1)[0])
        hi = np.inf if hi is None else float(hi.reshape(-1)[0])
    else:
        a = attrs(node)
        lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
    if lo != 0.0:
        raise Refused(f"min {lo} is not supported (only Clip(0, max), a bounded ReLU)")
    prev = imp.sole_producer(node.input[0], "Clip")
    prev.relu = True
    if np.isfinite(hi):
        prev.clip = hi if prev.clip is None else min(prev.clip, hi)
    imp.absorb(prev, node.output[0])


def _pool(imp: _Importer, node: Any, name: str, op: str) -> FloatNode:
    a = attrs(node)
    if a.get("ceil_mode", 0):
        raise Refused("ceil_mode=1 is not supported (floor mode only)")
    if len([o for o in node.output if o]) > 1:
        raise Refused("the Indices output is not supported")
    kernel, stride = window(a, ints(a["kernel_shape"]))
    return FloatNode(
        op,
        name,
        (imp.data(node.input[0]),),
        node.output[0],
        kernel=kernel,
        stride=stride,
        padding=pads(a),
    )


def _maxpool(imp: _Importer, node: Any, name: str) -> None:
    imp.add(_pool(imp, node, name, "maxpool"))


def _avgpool(imp: _Importer, node: Any, name: str) -> None:
    """ONNX defaults count_include_pad to 0 (PyTorch to True); without padding both are the
    same, with padding only count_include_pad=1 has the fixed divisor oasa uses."""
    fn = _pool(imp, node, name, "avgpool")
    if any(fn.padding) and not attrs(node).get("count_include_pad", 0):
        raise Refused(
            f"pads {list(fn.padding)} with count_include_pad=0 (the ONNX default) divide border "
            "windows by fewer terms; oasa needs count_include_pad=1 or no padding"
        )
    imp.add(fn)


def _global_avgpool(imp: _Importer, node: Any, name: str) -> None:
    x = imp.data(node.input[0])
    shape = imp.shapes[x]
    if len(shape) != 3:
        raise Refused(f"input {x!r} has shape {shape}, needs (C, H, W)")
    kernel = (shape[1], shape[2])
    imp.add(FloatNode("avgpool", name, (x,), node.output[0], kernel=kernel, stride=kernel))


def _flatten(imp: _Importer, node: Any, name: str) -> None:
    x = imp.data(node.input[0])
    axis = int(attrs(node).get("axis", 1))
    if axis < 0:
        axis += 1 + len(imp.shapes[x])
    if axis != 1:
        raise Refused(f"axis {axis} is not supported (only 1: keep the batch, flatten the rest)")
    imp.add(FloatNode("flatten", name, (x,), node.output[0]))


def _reshape(imp: _Importer, node: Any, name: str) -> None:
    """Only the reshape a flatten is exported as: (batch, -1), (0, -1) or (-1 or 0, K)."""
    x = imp.data(node.input[0])
    target = imp.const(node, 1, "shape").astype(np.int64).reshape(-1).tolist()
    k = int(np.prod(imp.shapes[x]))
    allowzero = int(attrs(node).get("allowzero", 0))
    ok = (
        len(target) == 2
        and (target[0] == -1 or (target[0] == 0 and not allowzero))
        and (target[1] == k or (target[1] == -1 and target[0] == 0))
    )
    if not ok:
        raise Refused(
            f"shape {target} of a {imp.shapes[x]} input: oasa imports only a reshape to "
            f"(batch, {k}) (shape [0, -1], [0, {k}] or [-1, {k}])"
        )
    imp.add(FloatNode("flatten", name, (x,), node.output[0]))


def _identity(imp: _Importer, node: Any, name: str) -> None:
    """Identity, and Dropout at inference; a Dropout mask that is read is refused."""
    if any(imp.uses[o] for o in node.output[1:] if o):
        raise Refused("its mask output is used; oasa imports inference graphs only")
    imp.identity(node.input[0], node.output[0])


def _constant(imp: _Importer, node: Any, name: str) -> None:
    imp.consts[node.output[0]] = constant_value(node)


#: ONNX operator -> handler(importer, node, FloatGraph node name).
HANDLERS: dict[str, Callable[[_Importer, Any, str], None]] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _add,
    "BatchNormalization": _batchnorm,
    "Relu": _relu,
    "Clip": _clip,
    "MaxPool": _maxpool,
    "AveragePool": _avgpool,
    "GlobalAveragePool": _global_avgpool,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Identity": _identity,
    "Dropout": _identity,
    "Constant": _constant,
}
SUPPORTED = tuple(HANDLERS)
