"""A float network as a graph of named tensors: what every quantizer in oasa walks.

Importers (ONNX, the digits model) produce a :class:`FloatGraph`; the quantizers turn it
into an integer :class:`oasa.sim.netfile.Network` with the same nodes. The operators are
the ones the integer side implements:

- ``conv2d``: weight (O, C / groups, kh, kw), bias (O,), kernel, stride, padding
  (top, left, bottom, right), groups (depthwise: groups = C = O);
- ``dense``: weight (O, K), bias (O,); a (C, H, W) input is flattened in C order;
- ``maxpool`` / ``avgpool``: kernel, stride, padding (an average over the padded window
  counts the zeros of the padding, ``count_include_pad``; a global average pool is an
  ``avgpool`` whose kernel is the whole map);
- ``add``: two inputs of the same shape;
- ``flatten``: (C, H, W) to (C * H * W,).

``relu`` on a node is a ReLU after it; ``clip`` an upper bound after that (ReLU6 and
Clip(0, a) fold to ``relu=True, clip=a``). Batch normalization is folded into the
convolution or dense layer before it by the importer. :meth:`FloatGraph.forward` runs the
graph in float64 numpy, the reference every quantizer calibrates on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from oasa.errors import InputError
from oasa.sim import ops

__all__ = ["OPS", "WEIGHTED", "FloatGraph", "FloatNode", "GraphError", "node_shape"]

OPS = ("conv2d", "dense", "maxpool", "avgpool", "add", "flatten")
WEIGHTED = ("conv2d", "dense")


class GraphError(InputError):
    """A graph that oasa cannot represent or run (names the node and what is wrong)."""


@dataclass(eq=False)  # nodes are compared by identity (they hold arrays)
class FloatNode:
    """One operator of a float graph (see the module docstring for each ``op``)."""

    op: str
    name: str
    inputs: tuple[str, ...]
    output: str
    weight: NDArray[np.floating] | None = None
    bias: NDArray[np.floating] | None = None
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: ops.Pads = (0, 0, 0, 0)
    groups: int = 1
    relu: bool = False
    clip: float | None = None
    count_include_pad: bool = True

    @property
    def weighted(self) -> bool:
        return self.op in WEIGHTED

    def describe(self) -> str:
        return f"{self.op} node {self.name!r}"


@dataclass
class FloatGraph:
    """Nodes in topological order; ``shapes`` holds every tensor's shape without the batch
    axis (filled by :meth:`infer_shapes`)."""

    input: str
    input_shape: tuple[int, ...]
    output: str
    nodes: list[FloatNode]
    name: str = ""
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.infer_shapes()

    @property
    def weighted(self) -> list[FloatNode]:
        return [n for n in self.nodes if n.weighted]

    def consumers(self, tensor: str) -> list[FloatNode]:
        return [n for n in self.nodes if tensor in n.inputs]

    def producer(self, tensor: str) -> FloatNode | None:
        return next((n for n in self.nodes if n.output == tensor), None)

    def infer_shapes(self) -> None:
        """Check every node against its inputs and record each tensor's shape."""
        shapes = {self.input: self.input_shape}
        names = [n.name for n in self.nodes]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise GraphError(f"two nodes are named {dup!r}: node names must be unique")
        for node in self.nodes:
            if node.op not in OPS:
                raise GraphError(f"{node.describe()}: unknown op (supported: {', '.join(OPS)})")
            missing = [t for t in node.inputs if t not in shapes]
            if missing:
                raise GraphError(
                    f"{node.describe()}: input {missing[0]!r} is not computed before it"
                )
            if node.output in shapes:
                raise GraphError(f"{node.describe()}: tensor {node.output!r} is written twice")
            shapes[node.output] = node_shape(node, [shapes[t] for t in node.inputs])
            if (
                node.weighted
                and node.bias is not None
                and np.shape(node.bias) != (shapes[node.output][0],)
            ):
                raise GraphError(
                    f"{node.describe()}: bias of shape {np.shape(node.bias)} for "
                    f"{shapes[node.output][0]} output channels"
                )
        if self.output not in shapes:
            raise GraphError(f"the graph output {self.output!r} is never computed")
        self.shapes = shapes

    def forward(self, x: NDArray, *, keep: bool = False) -> NDArray | dict[str, NDArray]:
        """Run images ``x`` ``(B, *input_shape)`` in float64. Returns the output tensor, or
        with ``keep`` every tensor by name."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1:] != self.input_shape:
            raise InputError(f"input has shape {x.shape[1:]}, the graph takes {self.input_shape}")
        values = {self.input: x}
        last_read = {t: i for i, n in enumerate(self.nodes) for t in n.inputs}
        for i, node in enumerate(self.nodes):
            values[node.output] = run_float_node(node, [values[t] for t in node.inputs])
            if not keep:  # free what no later node reads
                for t in node.inputs:
                    if last_read[t] == i and t != self.output:
                        values.pop(t, None)
        return values if keep else values[self.output]


def node_shape(node: FloatNode, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The output shape of ``node`` on inputs of these shapes (no batch axis), or
    :class:`GraphError` naming the node and what does not fit."""
    if node.op == "avgpool" and not node.count_include_pad and any(node.padding):
        raise GraphError(
            f"{node.describe()}: an average pool that leaves the padding out of its count "
            "has no single divisor; export it with count_include_pad=True or without padding"
        )
    try:
        return ops.node_output_shape(
            node.op, ins, kernel=node.kernel, stride=node.stride, padding=node.padding,
            groups=node.groups,
            weight_shape=None if node.weight is None else tuple(np.shape(node.weight)),
        )  # fmt: skip
    except InputError as e:
        raise GraphError(f"{node.describe()}: {e}") from None


def run_float_node(node: FloatNode, ins: list[NDArray]) -> NDArray:
    """One node in float64 (inputs with the batch axis first)."""
    x = ins[0]
    if node.op == "add":
        y = ins[0] + ins[1]
    elif node.op == "flatten":
        y = x.reshape(len(x), -1)
    elif node.op == "maxpool":
        y = ops.pool_windows(x, node.kernel, node.stride, node.padding, -np.inf).max(axis=-1)
    elif node.op == "avgpool":
        win = ops.pool_windows(x, node.kernel, node.stride, node.padding, 0.0)
        y = win.sum(axis=-1) / (node.kernel[0] * node.kernel[1])
    elif node.op == "dense":
        y = x.reshape(len(x), -1) @ np.asarray(node.weight, np.float64).T
        if node.bias is not None:
            y = y + node.bias
    else:
        w = np.asarray(node.weight, np.float64)
        o, g = w.shape[0], node.groups
        cols = ops.im2col(x, node.kernel, node.stride, node.padding, g)  # g, B*Ho*Wo, K
        wg = w.reshape(g, o // g, -1)
        y = np.einsum("gmk,gok->mgo", cols, wg).reshape(cols.shape[1], o)
        if node.bias is not None:
            y = y + node.bias
        b = len(x)
        y = y.reshape(b, -1, o).transpose(0, 2, 1)
        ho = ops.output_size(
            x.shape[2], node.kernel[0], node.stride[0], node.padding[0], node.padding[2]
        )
        y = y.reshape(b, o, ho, -1)
    if node.relu:
        y = np.maximum(y, 0.0)
    if node.clip is not None:
        y = np.minimum(y, node.clip)
    return y
