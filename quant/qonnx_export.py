"""Write an oasa network (:mod:`oasa.sim.netfile`) as a QONNX model, for FINN, hls4ml or
anyone with onnx and qonnx, such that executing it with qonnx reproduces the golden model
(:func:`oasa.sim.network.run_network`) exactly on every input on which no dot product is
flagged.

The model is an integer network carried in float32 tensors, as QONNX / FINN models are
after streamlining. Every tensor keeps its oasa name, and every integer tensor carries a
``finn_datatype`` annotation (``UINT4``, ``INT8``; an accumulator ``INT{n}`` with n the
certificate's safe width, which may be above the layer's P), so FINN sees the bit widths.
The nodes:

- **input**: the *quantized integer image* (float32 holding integers in the input
  tensor's format), not the float image. The caller quantizes with
  :func:`oasa.sim.network.quantize_input` (clamp(floor(v / input_scale + 1/2)), computed in
  float64). A float input followed by a quantizer cannot be exact: QONNX's ``Quant`` rounds
  half to even (ROUND) or half away from zero (HALF_UP), not oasa's floor(x + 1/2), and any
  quantizer inside the model sees the image already rounded to float32 and divides in
  float32, so an image value near a rounding boundary (v / input_scale = n + 1/2 up to one
  float32 ulp) can land on the other integer. The input scale is in the model's metadata
  (``oasa.input_scale``) and doc string. Integers outside the input format are the
  caller's error, as for the golden model (which refuses them); nothing checks them here.
- **conv2d / dense**: ``Conv`` (pads (top, left, bottom, right), strides, ``group`` for a
  grouped or depthwise convolution) or ``MatMul`` (after a ``Flatten`` when the input is
  not flat) on float32 weights holding the integers, behind a ``Quant`` node with scale 1
  (``weight_quant``) so FINN sees their bit width. Float32 holds every integer of
  magnitude up to 2**24, so the product is exact when every partial sum is: the
  certificate (:func:`oasa.sim.certificates.certificate`, recomputed from the weights)
  bounds every partial sum, in any order and any grouping (each term lies between its own
  worst cases, and each bound is the sum of one side's worst cases), and a layer whose
  bound reaches 2**24 is refused. The P-bit accumulator's saturation or wrap has no QONNX
  form: the model computes the exact sums, which is what the array computes on any input
  whose dot products are not flagged (certified networks: every input).
- **requantization** (bias, mult, shift, round half up, ReLU, clamp to the output
  tensor's format): one ``MultiThreshold`` (domain ``qonnx.custom_op.general``) per layer,
  ``out_bias`` = the output tensor's lowest value, with 2**bits - 1 thresholds per output
  channel: T_j = the smallest integer accumulator whose requantized value is at least
  lo + j, found by a binary search over the certificate's accumulator range with the
  golden model's own integer arithmetic (:func:`oasa.sim.golden.round_shift`; the output
  stage is monotone in the accumulator since mult >= 0). A threshold never reached is
  wc_hi + 1, one always passed is wc_lo; all are integers below 2**24, exact in float32.
  Output tensors are limited to :data:`MAX_THRESHOLD_BITS` bits (the thresholds per
  channel grow as 2**bits).
- **add**: z = a * m_a + b * m_b as ``Mul``, ``Mul``, ``Add`` (exact while
  max|a| m_a + max|b| m_b < 2**24 over the input formats, else refused), then a
  ``MultiThreshold`` with one set of thresholds for clamp(ReLU(floor(z / 2**s + 1/2))).
- **avgpool**: the exact window sum as a depthwise ``Conv`` with all-ones weights and the
  node's padding (the padding counts as zeros, as in oasa; an ``AveragePool`` would divide
  in float), then a ``MultiThreshold`` for clamp(floor(sum * m / 2**s + 1/2)); the window
  sum must stay below 2**24.
- **maxpool**: ``MaxPool`` with pads (ONNX pads with -inf, oasa's padding never wins
  either); **flatten**: ``Flatten`` (axis 1, the same C-order).
- **the raw output layer**: ``MatMul``, then ``Add`` of the bias (acc + bias, exact when it
  stays below 2**24 in magnitude, which :attr:`ExportReport.exact_logit_sum` says),
  ``Mul`` by the per-channel mult / 2**shift (exact in float32: mult < 2**24) and ``Mul``
  by ``logit_scale``. Each step is one float32 rounding of an exactly representable
  product, so the logits are within a few float32 ulps of the golden model's (times
  ``logit_scale``), and their order is the golden one except where two logits are within
  float32 resolution of each other (a tie that float32 makes). ``raw_output=True`` adds the
  exact integer accumulators as a second output, ``{output}_acc``, from which the golden
  logits follow exactly: (acc + bias) * mult / 2**shift.

The batch size is fixed (``batch``, default 1 as FINN expects) because qonnx's executor
allocates every tensor from its declared shape; ``batch=None`` writes a symbolic batch
axis for runtimes that allow one. Standard nodes use ONNX opset 13, the custom ones domain
``qonnx.custom_op.general`` version 1. qonnx executes the model
(``ModelWrapper(path).transform(InferShapes())`` then
``qonnx.core.onnx_exec.execute_onnx(model, {input_name: x})``); onnxruntime alone cannot,
as it has no ``MultiThreshold`` or ``Quant`` kernel.

Anything that cannot be exported exactly raises :class:`QonnxExportError`, one line
naming the layer.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oasa.errors import InputError
from oasa.files import atomic_path
from oasa.sim import netfile
from oasa.sim.certificates import certificate
from oasa.sim.golden import round_shift
from oasa.sim.netfile import Layer, Network, Tensor

__all__ = [
    "EXACT_LIMIT",
    "MAX_THRESHOLD_BITS",
    "ONNX_OPSET",
    "QONNX_DOMAIN",
    "ExportReport",
    "LayerExport",
    "QonnxExportError",
    "export_qonnx",
    "thresholds",
]

#: Float32 holds every integer of magnitude up to 2**24; every integer the model computes
#: (partial sums, weighted sums, window sums, thresholds) must stay below it.
EXACT_LIMIT = 1 << 24
#: The widest tensor a MultiThreshold writes (2**bits - 1 thresholds per channel).
MAX_THRESHOLD_BITS = 16
QONNX_DOMAIN = "qonnx.custom_op.general"
ONNX_OPSET = 13
IR_VERSION = 8  # opset 13 needs IR 7+; 8 keeps older onnxruntime and FINN releases reading it


class QonnxExportError(InputError):
    """A network that has no exact QONNX form (one line naming the layer)."""


@dataclass(frozen=True)
class LayerExport:
    """What one oasa node became: its ONNX operators and, where it computes integers
    wider than its inputs, the largest magnitude any of them can reach (checked < 2**24)."""

    index: int
    name: str
    kind: str
    ops: tuple[str, ...]
    bound: int | None = None  # partial sums, a * m_a + b * m_b, or window sums
    thresholds: int = 0  # per channel, of its MultiThreshold

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "kind": self.kind,
                "ops": list(self.ops), "bound": self.bound,
                "thresholds": self.thresholds}  # fmt: skip


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_qonnx` wrote."""

    path: str
    input: str
    outputs: tuple[str, ...]
    batch: int | None
    nodes: int
    op_counts: dict[str, int]
    layers: tuple[LayerExport, ...]
    exact_logit_sum: bool  # acc + bias of the output layer is exact in float32
    size_bytes: int

    @property
    def checked(self) -> tuple[str, ...]:
        """The layers whose integer intermediates were checked to stay below 2**24."""
        return tuple(e.name for e in self.layers if e.bound is not None)

    def summary(self) -> str:
        ops = ", ".join(f"{n} {op}" for op, n in sorted(self.op_counts.items()))
        worst = max((e.bound for e in self.layers if e.bound is not None), default=0)
        return (
            f"wrote {self.path} ({self.size_bytes} bytes): {self.nodes} nodes ({ops}); "
            f"{len(self.checked)} layers checked exact in float32 (largest integer "
            f"{worst} < 2**24); input {self.input!r} (quantized integers), "
            f"output{'s' if len(self.outputs) > 1 else ''} {', '.join(map(repr, self.outputs))}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "input": self.input,
            "outputs": list(self.outputs),
            "batch": self.batch,
            "nodes": self.nodes,
            "op_counts": dict(self.op_counts),
            "layers": [e.to_dict() for e in self.layers],
            "checked": list(self.checked),
            "exact_logit_sum": self.exact_logit_sum,
            "size_bytes": self.size_bytes,
        }


def finn_datatype(bits: int, signed: bool) -> str:
    """The QONNX / FINN datatype name of an integer format (``UINT4``, ``INT8``, ...).

    >>> finn_datatype(4, False), finn_datatype(8, True), finn_datatype(1, False)
    ('UINT4', 'INT8', 'BINARY')
    """
    if bits == 1 and not signed:
        return "BINARY"
    return f"{'INT' if signed else 'UINT'}{bits}"


def _signed_bits(lo: int, hi: int) -> int:
    """The fewest bits of a signed format holding [lo, hi]."""
    return max(int(hi).bit_length(), int(-lo - 1).bit_length() if lo < 0 else 0) + 1


def thresholds(
    f: Callable[[NDArray[np.int64]], NDArray[np.int64]],
    zlo: NDArray[np.int64],
    zhi: NDArray[np.int64],
    out_lo: int,
    out_hi: int,
) -> NDArray[np.int64]:
    """MultiThreshold thresholds of a nondecreasing integer function, per channel.

    ``f`` maps a (C, S) array of integers z to values in [out_lo, out_hi] (channel c's
    parameters on row c); z ranges over [zlo[c], zhi[c]]. Returns (C, S), S = out_hi -
    out_lo: T[c, j] = the smallest z in the range with f(z) >= out_lo + j + 1, or
    zhi[c] + 1 if there is none, so out_lo + #{j : z >= T[c, j]} = f(z) on the range.

    >>> t = thresholds(lambda z: np.clip(z // 2, 0, 3), np.array([-5]), np.array([9]), 0, 3)
    >>> t.tolist()
    [[2, 4, 6]]
    """
    zlo = np.asarray(zlo, dtype=np.int64).reshape(-1, 1)
    zhi = np.asarray(zhi, dtype=np.int64).reshape(-1, 1)
    levels = np.arange(out_lo + 1, out_hi + 1, dtype=np.int64)[None, :]
    shape = (zlo.shape[0], levels.shape[1])
    lo = np.broadcast_to(zlo, shape).copy()  # f(z) < level for every z < lo
    hi = np.broadcast_to(zhi + 1, shape).copy()  # f(z) >= level for every z >= hi (<= zhi)
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        ok = f(mid) >= levels
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid + 1, lo)


class _Graph:
    """The ONNX graph under construction: nodes, float32 initializers, the shapes and
    datatypes of the tensors, and names kept unique (oasa's tensor names come first)."""

    def __init__(self, onnx: Any, net: Network, batch: int | None) -> None:
        self.onnx = onnx
        self.net = net
        self.batch = batch
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        self.used = set(net.tensors)
        self.node_names: set[str] = set()

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def const(self, base: str, value: Any, datatype: str | None = None) -> str:
        name = self.fresh(base)
        arr = np.asarray(value, dtype=np.float32)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        if datatype:
            self.dtypes[name] = datatype
        return name

    def tensor(self, name: str, shape: tuple[int, ...], datatype: str | None) -> str:
        """Declare an activation tensor (without the batch axis)."""
        self.shapes[name] = tuple(shape)
        if datatype:
            self.dtypes[name] = datatype
        return name

    def node(self, op: str, ins: list[str], out: str, label: str, **attrs: Any) -> None:
        name, k = label, 1
        while name in self.node_names:
            name, k = f"{label}_{k}", k + 1
        self.node_names.add(name)
        domain = attrs.pop("domain", "")
        self.nodes.append(
            self.onnx.helper.make_node(op, ins, [out], name=name, domain=domain, **attrs)
        )

    def value_info(self, name: str) -> Any:
        dims: list[int | str] = [self.batch if self.batch is not None else "batch"]
        return self.onnx.helper.make_tensor_value_info(
            name, self.onnx.TensorProto.FLOAT, [*dims, *self.shapes[name]]
        )


class _Exporter:
    def __init__(self, onnx: Any, net: Network, batch: int | None, weight_quant: bool) -> None:
        self.net = net
        self.g = _Graph(onnx, net, batch)
        self.weight_quant = weight_quant
        self.exact_logit_sum = True
        self.acc_name = ""  # the raw output layer's accumulators
        fmt = net.input_format
        self.g.tensor(net.input, fmt.shape, finn_datatype(fmt.bits, fmt.signed))

    # -- helpers --------------------------------------------------------------------------

    def refuse(self, i: int, layer: Layer, why: str) -> QonnxExportError:
        return QonnxExportError(
            f"layer {i} ({layer.label}): cannot be exported exactly to QONNX: {why}"
        )

    def fmt(self, name: str) -> Tensor:
        return self.net.tensors[name]

    def threshold(self, i: int, layer: Layer, z: str, f, zlo, zhi, label: str) -> int:
        """MultiThreshold from z to the layer's output tensor; returns thresholds/channel."""
        out = self.fmt(layer.output)
        if out.bits > MAX_THRESHOLD_BITS:
            raise self.refuse(
                i, layer, f"its output tensor has {out.bits} bits; a MultiThreshold needs "
                f"2**bits - 1 thresholds per channel (at most {MAX_THRESHOLD_BITS} bits here)",
            )  # fmt: skip
        t = thresholds(f, zlo, zhi, out.lo, out.hi)
        assert np.abs(t).max(initial=0) <= EXACT_LIMIT  # zlo, zhi below 2**24 in magnitude
        # One row per channel even where all channels share them (add, avgpool): FINN's
        # thresholding layers take a row per channel.
        t = np.broadcast_to(t, (out.shape[0], t.shape[1]))
        name = self.g.const(f"{label}.thresholds", t)
        self.g.tensor(layer.output, out.shape, finn_datatype(out.bits, out.signed))
        self.g.node(
            "MultiThreshold", [z, name], layer.output, f"{label}/threshold",
            domain=QONNX_DOMAIN, out_dtype=finn_datatype(out.bits, out.signed),
            out_bias=float(out.lo),
        )  # fmt: skip
        return t.shape[1]

    def weights(self, label: str, w: NDArray[np.int64], bits: int) -> str:
        dtype = finn_datatype(bits, True)
        raw = self.g.const(f"{label}.weight", w, dtype)
        if not self.weight_quant:
            return raw
        scale = self.g.const(f"{label}.weight_scale", 1.0)
        zero = self.g.const(f"{label}.weight_zeropt", 0.0)
        width = self.g.const(f"{label}.weight_bitwidth", float(bits))
        q = self.g.fresh(f"{label}.weight_q")
        self.g.dtypes[q] = dtype
        self.g.node(
            "Quant", [raw, scale, zero, width], q, f"{label}/weight_quant",
            domain=QONNX_DOMAIN, signed=1, narrow=0, rounding_mode="ROUND",
        )  # fmt: skip
        return q

    # -- nodes ----------------------------------------------------------------------------

    def export(self) -> list[LayerExport]:
        done = []
        for i, layer in enumerate(self.net.layers):
            kind = layer.kind
            n0 = len(self.g.nodes)
            label = layer.name or f"L{i}"
            if layer.has_weights:
                bound, nthr = self.weighted(i, layer, label)
            elif kind == "add":
                bound, nthr = self.add(i, layer, label)
            elif kind == "avgpool":
                bound, nthr = self.avgpool(i, layer, label)
            else:
                bound, nthr = None, 0
                x, out = layer.inputs[0], layer.output
                t = self.fmt(out)
                self.g.tensor(out, t.shape, finn_datatype(t.bits, t.signed))
                if kind == "maxpool":
                    self.g.node(
                        "MaxPool", [x], out, label, kernel_shape=list(layer.kernel),
                        strides=list(layer.stride), pads=list(layer.padding),
                    )  # fmt: skip
                elif kind == "flatten":
                    self.g.node("Flatten", [x], out, label, axis=1)
                else:  # pragma: no cover - netfile validates the kinds
                    raise self.refuse(i, layer, f"unknown kind {kind!r}")
            ops = tuple(n.op_type for n in self.g.nodes[n0:])
            done.append(LayerExport(i, layer.label, kind, ops, bound, nthr))
        return done

    def weighted(self, i: int, layer: Layer, label: str) -> tuple[int, int]:
        wc_lo, wc_hi, need = certificate(layer)
        bound = int(max(-int(wc_lo.min()), int(wc_hi.max())))
        if bound >= EXACT_LIMIT:
            c = int(np.argmax(np.maximum(-wc_lo, wc_hi)))
            raise self.refuse(
                i, layer, f"channel {c}'s partial sums can reach {bound} in magnitude, and "
                "float32 (which qonnx computes in) holds integers exactly only below 2**24",
            )  # fmt: skip
        x = layer.inputs[0]
        xt = self.fmt(x)
        w = np.asarray(layer.weight, dtype=np.int64)
        acc = self.g.fresh(f"{layer.output}_acc")
        self.g.tensor(acc, layer.out_shape, finn_datatype(int(need.max()), True))
        if layer.kind == "conv2d":
            wname = self.weights(label, w, layer.weight_bits)
            self.g.node(
                "Conv", [x, wname], acc, label, kernel_shape=list(layer.kernel),
                strides=list(layer.stride), pads=list(layer.padding), group=layer.groups,
                dilations=[1, 1],
            )  # fmt: skip
        else:
            if len(xt.shape) > 1:
                flat = self.g.fresh(f"{x}_flat")
                self.g.tensor(flat, (int(np.prod(xt.shape)),), finn_datatype(xt.bits, xt.signed))
                self.g.node("Flatten", [x], flat, f"{label}/flatten", axis=1)
                x = flat
            wname = self.weights(label, w.T, layer.weight_bits)
            self.g.node("MatMul", [x, wname], acc, label)
        bias = np.asarray(layer.bias, dtype=np.int64)
        mult = np.asarray(layer.mult, dtype=np.int64)
        shift = np.asarray(layer.shift, dtype=np.int64)
        if not layer.requant:
            self.raw_output(layer, label, acc, bias, mult, shift, wc_lo, wc_hi)
            return bound, 0
        out = self.fmt(layer.output)
        b, m, s = (a.reshape(-1, 1) for a in (bias, mult, shift))

        def stage(z: NDArray[np.int64]) -> NDArray[np.int64]:
            r = round_shift((z + b) * m, s)  # the golden output stage, on exact sums
            if layer.relu:
                r = np.maximum(r, 0)
            return np.clip(r, out.lo, out.hi)

        return bound, self.threshold(i, layer, acc, stage, wc_lo, wc_hi, label)

    def raw_output(self, layer, label, acc, bias, mult, shift, wc_lo, wc_hi) -> None:
        g = self.g
        self.acc_name = acc
        y_lo, y_hi = wc_lo + bias, wc_hi + bias
        self.exact_logit_sum = bool(max(-int(y_lo.min()), int(y_hi.max())) < EXACT_LIMIT)
        y = g.tensor(g.fresh(f"{layer.output}_biased"), layer.out_shape, None)
        g.node("Add", [acc, g.const(f"{label}.bias", bias)], y, f"{label}/bias")
        dyadic = mult.astype(np.float64) * np.exp2(-shift.astype(np.float64))
        assert np.array_equal(dyadic.astype(np.float32), dyadic)  # mult < 2**24: exact
        scale = float(self.net.logit_scale)
        last = layer.output if scale == 1.0 else g.fresh(f"{layer.output}_unscaled")
        g.tensor(last, layer.out_shape, None)
        g.node("Mul", [y, g.const(f"{label}.rescale", dyadic)], last, f"{label}/rescale")
        if scale != 1.0:
            g.tensor(layer.output, layer.out_shape, None)
            sname = g.const(f"{label}.logit_scale", scale)
            g.node("Mul", [last, sname], layer.output, f"{label}/logit_scale")

    def add(self, i: int, layer: Layer, label: str) -> tuple[int, int]:
        a, b = (self.fmt(t) for t in layer.inputs)
        ma, mb = (int(v) for v in layer.mult)
        s = int(layer.shift[0])

        def mag(t: Tensor) -> int:
            return max(-t.lo, t.hi)

        bound = mag(a) * ma + mag(b) * mb
        if bound >= EXACT_LIMIT:
            raise self.refuse(
                i, layer, f"a * {ma} + b * {mb} can reach {bound} in magnitude, beyond "
                "float32's exact integers (2**24)",
            )  # fmt: skip
        g = self.g
        shape = self.fmt(layer.output).shape
        dt = finn_datatype(_signed_bits(-bound, bound), True)
        za = g.tensor(g.fresh(f"{layer.output}_za"), shape, dt)
        zb = g.tensor(g.fresh(f"{layer.output}_zb"), shape, dt)
        z = g.tensor(g.fresh(f"{layer.output}_sum"), shape, dt)
        g.node("Mul", [layer.inputs[0], g.const(f"{label}.mult_a", ma)], za, f"{label}/mult_a")
        g.node("Mul", [layer.inputs[1], g.const(f"{label}.mult_b", mb)], zb, f"{label}/mult_b")
        g.node("Add", [za, zb], z, label)
        out = self.fmt(layer.output)

        def rescale(v: NDArray[np.int64]) -> NDArray[np.int64]:
            r = round_shift(v, s)
            if layer.relu:
                r = np.maximum(r, 0)
            return np.clip(r, out.lo, out.hi)

        zlo = np.array([a.lo * ma + b.lo * mb])
        zhi = np.array([a.hi * ma + b.hi * mb])
        return bound, self.threshold(i, layer, z, rescale, zlo, zhi, label)

    def avgpool(self, i: int, layer: Layer, label: str) -> tuple[int, int]:
        x = self.fmt(layer.inputs[0])
        kh, kw = layer.kernel
        m, s = int(layer.mult[0]), int(layer.shift[0])
        zlo, zhi = kh * kw * min(x.lo, 0), kh * kw * max(x.hi, 0)  # the padding adds zeros
        bound = max(-zlo, zhi)
        if bound >= EXACT_LIMIT:
            raise self.refuse(
                i, layer, f"window sums can reach {bound} in magnitude, beyond float32's "
                "exact integers (2**24)",
            )  # fmt: skip
        g = self.g
        c = x.shape[0]
        total = g.fresh(f"{layer.output}_sum")
        g.tensor(total, self.fmt(layer.output).shape, finn_datatype(_signed_bits(zlo, zhi), True))
        ones = g.const(f"{label}.window", np.ones((c, 1, kh, kw)), "UINT1")
        g.node(
            "Conv", [layer.inputs[0], ones], total, label, kernel_shape=[kh, kw],
            strides=list(layer.stride), pads=list(layer.padding), group=c, dilations=[1, 1],
        )  # fmt: skip
        out = self.fmt(layer.output)

        def rescale(v: NDArray[np.int64]) -> NDArray[np.int64]:
            return np.clip(round_shift(v * m, s), out.lo, out.hi)

        return bound, self.threshold(
            i, layer, total, rescale, np.array([zlo]), np.array([zhi]), label
        )

    # -- the model ------------------------------------------------------------------------

    def model(self, raw_output: bool) -> tuple[Any, tuple[str, ...]]:
        onnx, g, net = self.g.onnx, self.g, self.net
        outputs = (net.output, self.acc_name) if raw_output else (net.output,)
        graph = onnx.helper.make_graph(
            g.nodes,
            f"oasa_{net.method or 'network'}",
            inputs=[g.value_info(net.input)],
            outputs=[g.value_info(t) for t in outputs],
            initializer=g.inits,
            value_info=[g.value_info(t) for t in g.shapes if t not in (net.input, *outputs)],
            doc_string=_doc(net),
        )
        for name, dt in g.dtypes.items():
            graph.quantization_annotation.append(
                onnx.TensorAnnotation(
                    tensor_name=name,
                    quant_parameter_tensor_names=[
                        onnx.StringStringEntryProto(key="finn_datatype", value=dt)
                    ],
                )
            )
        model = onnx.helper.make_model(
            graph,
            producer_name="oasa",
            opset_imports=[
                onnx.helper.make_opsetid("", ONNX_OPSET),
                onnx.helper.make_opsetid(QONNX_DOMAIN, 1),
            ],
            ir_version=IR_VERSION,
        )
        fmt = net.input_format
        onnx.helper.set_model_props(
            model,
            {
                "oasa.input_scale": repr(float(net.input_scale)),
                "oasa.input_format": finn_datatype(fmt.bits, fmt.signed),
                "oasa.logit_scale": repr(float(net.logit_scale)),
                "oasa.method": net.method,
                "oasa.guarantee": net.guarantee,
            },
        )
        return model, outputs


def _doc(net: Network) -> str:
    fmt = net.input_format
    return (
        f"oasa integer network. Input {net.input!r}: integers q = clamp(floor(v / "
        f"{float(net.input_scale)!r} + 1/2)) in {fmt.lo}..{fmt.hi} "
        "(oasa.sim.network.quantize_input), as float32. Output "
        f"{net.output!r}: logits (acc + bias) * mult / 2**shift * {float(net.logit_scale)!r}. "
        "Exact (equal to oasa's golden model) on every input on which no dot product "
        "overflows its accumulator."
    )


def export_qonnx(
    net: Network,
    path: str | os.PathLike,
    *,
    batch: int | None = 1,
    weight_quant: bool = True,
    raw_output: bool = False,
) -> ExportReport:
    """Write ``net`` as a QONNX model to ``path`` (atomically) and return what was written.

    Parameters
    ----------
    net:
        The integer network; it is validated first, and its certificates are recomputed
        from the weights.
    batch:
        The batch axis of every tensor (qonnx's executor needs a fixed one; FINN takes 1);
        ``None`` writes a symbolic axis.
    weight_quant:
        Put each weight tensor behind a ``Quant`` node with scale 1 (FINN reads the bit
        width from it); otherwise the integer initializers feed the layers directly (their
        datatype annotations still give the width).
    raw_output:
        Also output the last layer's exact integer accumulators as ``{output}_acc``.

    Raises
    ------
    QonnxExportError
        A layer that float32 cannot compute exactly, or a tensor too wide for a
        MultiThreshold; one line naming the layer.
    InputError
        An invalid network (:class:`~oasa.sim.netfile.NetfileError`), or onnx missing.
    """
    try:
        import onnx
    except ImportError:
        raise InputError("exporting QONNX needs the onnx package: pip install onnx") from None
    if batch is not None and (isinstance(batch, bool) or int(batch) != batch or batch < 1):
        raise InputError(f"batch must be a positive integer or None, got {batch!r}")
    # The certificates are recomputed from the weights below; a hand-made network may
    # have none, which the validator (the one save() and load() run; netfile has no public
    # one) requires, so a copy gets them, as save() would.
    net = replace(
        net,
        layers=[
            replace(layer, wc_lo=certificate(layer)[0], wc_hi=certificate(layer)[1])
            if layer.has_weights and (layer.wc_lo is None or layer.wc_hi is None)
            else layer
            for layer in net.layers
        ],
    )
    netfile.validate(net, "network")
    ex = _Exporter(onnx, net, None if batch is None else int(batch), weight_quant)
    layers = ex.export()
    model, outputs = ex.model(raw_output)
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    with atomic_path(path) as tmp:
        onnx.save_model(model, tmp, save_as_external_data=False)
    return ExportReport(
        path=str(path),
        input=net.input,
        outputs=outputs,
        batch=ex.g.batch,
        nodes=len(model.graph.node),
        op_counts=dict(Counter(n.op_type for n in model.graph.node)),
        layers=tuple(layers),
        exact_logit_sum=ex.exact_logit_sum,
        size_bytes=len(data),
    )
