"""Read a quantized QONNX model (as Brevitas' ``export_qonnx`` writes it) into an integer
:class:`oasa.sim.netfile.Network`, and say what its integer weights guarantee.

A QONNX model is a float ONNX graph with ``Quant`` nodes (domain ``qonnx.custom_op.general``)
that round tensors to integers times a scale: y = (clamp(round(x / s + z)) - z) * s. The
importer reads them as formats, never as float arithmetic:

- a ``Quant`` of a constant (a weight, or a bias) gives integers q = Quant(W) / s, computed
  exactly as qonnx computes them (its rounding mode, ``narrow``, ``signed``; the zero point
  must be 0) with a per-tensor or per-output-channel scale s_w;
- the ``Quant`` on the graph input defines the input tensor's format and ``input_scale``;
- every other ``Quant`` defines the format (bits, signed, scale) of the tensor it writes. A
  Conv, Gemm or MatMul whose output reaches such a Quant (through an optional Relu, and an
  Add of a constant bias) becomes a layer whose output stage requantizes: bias in
  accumulator units round(b / (s_in * s_w)), mult / 2**shift = dyadic(s_in * s_w / s_out),
  the ReLU folded in. Where rounding the bias to a whole accumulator unit moves a rounding
  step of the output, a nearby (bias, mult, shift) that puts the steps back where QONNX
  rounds is chosen (:func:`oasa.quant.requant_match.match_thresholds`);
- an Add of two quantized tensors followed by a Quant becomes an ``add`` node with
  m_a / 2**s ~ s_a / s_out and m_b / 2**s ~ s_b / s_out (one shared shift, multipliers below
  2**12); AveragePool / GlobalAveragePool (or a ReduceMean over H and W) followed by a Quant
  an ``avgpool`` with m / 2**s ~ s_in / (s_out * kh * kw); MaxPool, Flatten and a flattening
  Reshape keep their input's format; a Quant of an already quantized tensor with another
  format a 1 x 1 ``avgpool`` (a pure rescale);
- the last Gemm / MatMul, whose output is not quantized, becomes the raw output layer:
  logits = (acc + bias) * mult / 2**shift * ``logit_scale`` are the model's logits in real
  units.

Refused, with one line naming the node: ``BatchNormalization`` (a QONNX export has it folded),
``Trunc`` and ``BipolarQuant`` (no integer counterpart in oasa), a nonzero zero point, a
per-channel activation scale, narrow-range or truncating activation quantizers, float
weights, and every operator oasa has no node for. A model without any Quant node is a float
model, for ``oasa quantize --model``.

The accumulator width P is the smallest at which every layer is certified overflow-free
(:func:`oasa.sim.certificates.certify`, from the integers alone), or the one asked for; the
network is labelled ``certified`` only when the certification says so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oasa.config import LIMITS, ArrayConfig, ConfigError
from oasa.errors import InputError
from oasa.quant.graph import GraphError
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
from oasa.quant.ptq import QuantError, dyadic
from oasa.quant.requant_match import match_thresholds
from oasa.sim import netfile, ops
from oasa.sim.certificates import (
    Certification,
    certificate,
    certify,
)
from oasa.sim.netfile import (
    HOST_SHIFT_MAX,
    MAX_TENSOR_BITS,
    Layer,
    Network,
    Tensor,
)

__all__ = ["ADD_MULT_BITS", "SUPPORTED", "QonnxImport", "import_qonnx", "qonnx_reference"]

QUANT_OPS = ("Quant", "IntQuant")
#: Multipliers of a residual add stay below 2**ADD_MULT_BITS, so a * m_a + b * m_b is small.
ADD_MULT_BITS = 12
#: Multiplier width of an average pool's (or a rescale's) host multiplier.
POOL_MULT_BITS = 16
# Rounding modes of an activation Quant that oasa's round-half-up output stage reproduces
# (up to exact ties, where half-to-even and half-up differ).
_NEAREST = ("ROUND", "HALF_EVEN", "HALF_UP")
_REFUSED = {
    "BatchNormalization": (
        "BatchNormalization does not belong in a QONNX export (its integer layers have one "
        "weight and one bias): merge it into the convolution before quantizing and exporting"
    ),
    "Trunc": (
        "Trunc (a truncating requantization, e.g. Brevitas' TruncAvgPool2d) has no "
        "counterpart: oasa rescales with a dyadic multiplier and rounds to nearest; export "
        "a plain average pool followed by a Quant"
    ),
    "BipolarQuant": (
        "BipolarQuant (1-bit +-1 values) has no counterpart: oasa's weights and activations "
        "are 2..8-bit integers"
    ),
    "FloatQuant": "FloatQuant (a minifloat format) has no counterpart: oasa runs integers",
    "MultiThreshold": "MultiThreshold (a FINN streamlined graph) is not supported: import the "
    "QONNX model before streamlining",
}


# -- the result ---------------------------------------------------------------------------------


@dataclass
class QonnxImport:
    """An imported QONNX model: the integer network and what can be said about it.

    ``certification`` is :func:`oasa.sim.certificates.certify` of ``net`` at ``acc_bits``;
    ``max_requant_error`` the largest relative error ``|m / 2**s - r| / r`` of the dyadic
    multipliers over every channel of every rescale (layers, adds, pools, the logits);
    ``dyadic_error`` the same for plain ``dyadic(r)``, before the multipliers were moved to
    keep QONNX's rounding steps in place (see :func:`oasa.quant.requant_match.match_thresholds`);
    ``min_safe_acc_bits`` per weighted layer the smallest P no input can overflow.
    """

    net: Network
    acc_bits: int
    certification: Certification
    max_requant_error: float
    notes: list[str] = field(default_factory=list)
    dyadic_error: float = 0.0
    min_safe_acc_bits: dict[str, int] = field(default_factory=dict)
    source: str = ""

    @property
    def certified(self) -> bool:
        return self.certification.certified

    def summary(self) -> str:
        """A few lines: what was imported, the certification, the requantization error,
        then the notes."""
        net = self.net
        kinds = Counter(layer.kind for layer in net.layers)
        x = net.input_format
        need = max(self.min_safe_acc_bits.values(), default=0)
        lines = [
            f"{self.source}: {len(net.layers)} nodes ("
            + ", ".join(f"{n} {k}" for k, n in kinds.items())
            + f"), input {x.describe()} (scale {net.input_scale:.6g}), built at P = "
            f"{self.acc_bits} ({net.weighted[0][1].overflow})",
            self.certification.summary(),
            f"smallest safe P: {need} ("
            + ", ".join(f"{k} {v}" for k, v in self.min_safe_acc_bits.items())
            + ")",
            f"largest relative error of the requantization multipliers: "
            f"{self.max_requant_error:.3g} (of plain dyadic(r): {self.dyadic_error:.3g})",
        ]
        return "\n".join(lines + [f"  {n}" for n in self.notes])


# -- reading ------------------------------------------------------------------------------------


def _rounding(mode: str) -> Callable[[NDArray], NDArray]:
    """qonnx's rounding functions (``resolve_rounding_mode``), restated."""
    m = mode.upper()
    table: dict[str, Callable[[NDArray], NDArray]] = {
        "ROUND": np.round,
        "HALF_EVEN": np.round,
        "CEIL": np.ceil,
        "FLOOR": np.floor,
        "UP": lambda x: np.sign(x) * np.ceil(np.abs(x)),
        "DOWN": np.fix,
        "HALF_UP": lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5),
        "HALF_DOWN": lambda x: np.sign(x) * np.ceil(np.abs(x) - 0.5),
    }
    if m not in table:
        raise Refused(f"unknown rounding_mode {mode!r}")
    return table[m]


def _int_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - int(narrow)


@dataclass
class _QuantParams:
    """A Quant node's format: scale (as stored), bit width, sign, range, rounding."""

    scale: NDArray
    zeropt: NDArray
    bits: int
    signed: bool
    narrow: bool
    rounding: str

    @property
    def range(self) -> tuple[int, int]:
        return _int_range(self.bits, self.signed, self.narrow)

    def integers(self, x: NDArray) -> NDArray[np.int64]:
        """Quant(x) / scale, as qonnx's ``int_quant`` computes it (in the arrays' own
        dtypes: divide, add the zero point, clamp, round)."""
        y = x / self.scale
        y = y + self.zeropt
        lo, hi = self.range
        y = np.where(y > hi, np.asarray(hi, dtype=y.dtype), y)
        y = np.where(y < lo, np.asarray(lo, dtype=y.dtype), y)
        return np.asarray(_rounding(self.rounding)(y)).astype(np.int64)

    def scalar_scale(self, what: str) -> float:
        s = np.asarray(self.scale, dtype=np.float64)
        if s.size != 1 and not np.all(s == s.reshape(-1)[0]):
            raise Refused(
                f"the {what} has a per-channel scale {s.shape}; oasa's tensors have one scale"
            )
        return float(s.reshape(-1)[0])


@dataclass
class _QConst:
    """A constant through a Quant node: integers q and the scale, broadcastable to q."""

    q: NDArray[np.int64]
    scale: NDArray[np.float64]
    params: _QuantParams

    @property
    def value(self) -> NDArray[np.float64]:
        return self.q * self.scale


@dataclass
class _Pending:
    """A float tensor the graph has computed but not yet quantized: the accumulators of a
    conv / dense layer (plus bias and ReLU), a sum of two quantized tensors, an average."""

    kind: str
    name: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    weight: NDArray[np.int64] | None = None
    weight_bits: int = 0
    s_w: NDArray[np.float64] | None = None  # per output channel
    bias: NDArray[np.float64] | None = None  # real units
    relu: bool = False
    geometry: dict[str, Any] = field(default_factory=dict)
    squeeze: bool = False  # a global average whose (C, 1, 1) result is read as (C,)


class _Importer:
    """The network under construction. Every ONNX tensor is one of: a constant, a
    quantized constant (weights), an oasa tensor (``alias`` maps the ONNX name to it), or
    a pending float result waiting for its Quant."""

    def __init__(self, graph: Any, path: Path, overflow: str) -> None:
        from onnx import numpy_helper

        self.path = path
        self.overflow = overflow
        self.consts: dict[str, NDArray] = {
            t.name: numpy_helper.to_array(t) for t in graph.initializer
        }
        self.qconsts: dict[str, _QConst] = {}
        self.alias: dict[str, str] = {}  # ONNX tensor -> oasa tensor
        self.pending: dict[str, _Pending] = {}
        self.tensors: dict[str, Tensor] = {}
        self.layers: list[Layer] = []
        self.names: set[str] = set()
        self.errors: list[float] = []  # of the multipliers in the network
        self.dyadic_errors: list[float] = []  # of plain dyadic(ratio), before step matching
        self.notes: list[str] = []
        self.rounding_modes: set[str] = set()
        # requantized channels whose every rounding step matches QONNX's, steps that do not,
        # steps in all, channels in all
        self.matched = [0, 0, 0, 0]
        self.uses = Counter(t for n in graph.node for t in n.input if t)
        self.uses.update(o.name for o in graph.output)
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise GraphError(
                f"{path}: the model has {len(inputs)} input(s) and {len(graph.output)} "
                "output(s); oasa imports a network with one input (batch axis first) and one output"
            )
        self.graph_input = inputs[0].name
        dims = inputs[0].type.tensor_type.shape.dim
        fixed = [d.dim_value if d.HasField("dim_value") else 0 for d in dims[1:]]
        if not fixed or min(fixed) < 1:
            raise GraphError(
                f"{path}: graph input {self.graph_input!r} needs the batch axis first and every "
                "other axis fixed"
            )
        self.input_shape = tuple(fixed)
        self.batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else 0
        self.input: str | None = None
        self.input_scale = 0.0
        self.graph_output = graph.output[0].name

    # -- helpers --------------------------------------------------------------------------

    def unique(self, name: str) -> str:
        base, k = name, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def const(self, node: Any, index: int, what: str) -> NDArray:
        name = node.input[index] if index < len(node.input) else ""
        if name not in self.consts:
            raise Refused(f"the {what} ({name!r}) must be a constant (an initializer)")
        return np.asarray(self.consts[name])

    def tensor(self, name: str, what: str = "input") -> str:
        """The oasa tensor that ONNX tensor ``name`` stands for: it must be quantized."""
        if name in self.alias:
            return self.alias[name]
        if name in self.pending:
            raise Refused(
                f"its {what} {name!r} is a float result that no Quant node quantizes; oasa "
                "needs a Quant (e.g. a QuantReLU or QuantIdentity) between them"
            )
        if name == self.graph_input:
            raise Refused(f"it reads the float graph input {name!r}; put a Quant on the input")
        if name in self.consts or name in self.qconsts:
            raise Refused(f"its {what} {name!r} is a constant, not a tensor of the graph")
        raise Refused(f"its {what} {name!r} is not computed before this node")

    def sole_pending(self, name: str, what: str) -> _Pending:
        p = self.pending[name]
        if self.uses[name] != 1:
            raise Refused(
                f"its input {name!r} has {self.uses[name]} readers; the {what} can only fold "
                f"into {p.name} when it is the sole reader"
            )
        return p

    def add_tensor(self, name: str, t: Tensor) -> None:
        if t.bits > MAX_TENSOR_BITS:
            raise Refused(f"a {t.bits}-bit tensor (oasa's tensors have at most {MAX_TENSOR_BITS})")
        self.tensors[name] = t
        self.alias[name] = name

    def quant_params(self, node: Any) -> _QuantParams:
        a = attrs(node)
        if len(node.input) < 4:
            raise Refused("a Quant node needs 4 inputs (x, scale, zero point, bit width)")
        scale = self.const(node, 1, "scale")
        zeropt = self.const(node, 2, "zero point")
        bw = self.const(node, 3, "bit width").astype(np.float64)
        if np.any(zeropt != 0):
            raise Refused(
                "its zero point is not 0 (an asymmetric quantizer); oasa's integers are "
                "symmetric: quantize with a zero point of 0"
            )
        if bw.size != 1 or bw.reshape(-1)[0] != round(float(bw.reshape(-1)[0])):
            raise Refused(f"bit width {bw.reshape(-1).tolist()} is not one integer")
        bits = round(float(bw.reshape(-1)[0]))
        if not 1 <= bits <= MAX_TENSOR_BITS:
            raise Refused(f"bit width {bits} is outside 1..{MAX_TENSOR_BITS}")
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise Refused("its scale must be positive and finite")
        return _QuantParams(
            scale=scale,
            zeropt=zeropt,
            bits=bits,
            signed=bool(a.get("signed", 1)),
            narrow=bool(a.get("narrow", 0)),
            rounding=str(a.get("rounding_mode", "ROUND")),
        )

    def activation_format(self, p: _QuantParams, shape: tuple[int, ...]) -> Tensor:
        if p.narrow:
            raise Refused(
                "narrow-range activation quantization (the most negative or the top code "
                "left out) has no counterpart: oasa clamps activations to the full range"
            )
        if p.rounding.upper() not in _NEAREST:
            raise Refused(
                f"rounding_mode {p.rounding} on an activation: oasa's output stage rounds to "
                "nearest (half up), so only ROUND / HALF_EVEN / HALF_UP can be reproduced"
            )
        self.rounding_modes.add(p.rounding.upper())
        return Tensor(shape, p.bits, p.signed, p.scalar_scale("activation Quant"))

    # -- weights ----------------------------------------------------------------------------

    def weight(
        self, node: Any, index: int, out_axis: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], int]:
        """(integers, per-output-channel scale, weight bits) of a quantized weight input.
        ``out_axis`` is the output-channel axis of the weight as stored."""
        name = node.input[index]
        if name not in self.qconsts:
            if name in self.consts:
                raise Refused(
                    f"its weight {name!r} is a float constant; oasa needs integer weights "
                    "(a Quant node on the weight)"
                )
            raise Refused(f"its weight {name!r} must be a constant through a Quant node")
        qc = self.qconsts[name]
        q = qc.q
        s = np.broadcast_to(np.asarray(qc.scale, dtype=np.float64), q.shape)
        moved = np.moveaxis(s, out_axis, 0).reshape(q.shape[out_axis], -1)
        if not np.all(moved == moved[:, :1]):
            raise Refused(
                f"the weight scale {np.shape(qc.scale)} varies along an input axis; oasa "
                "folds only per-tensor or per-output-channel weight scales"
            )
        p = qc.params
        bits = p.bits if p.signed else p.bits + 1  # unsigned b-bit integers are signed b+1
        if not LIMITS["weight_bits"][0] <= bits <= LIMITS["weight_bits"][1]:
            raise Refused(f"{p.bits}-bit weights: oasa runs 2..8-bit signed weights")
        return q, moved[:, 0].copy(), bits

    def bias(self, node: Any, index: int, o: int) -> NDArray[np.float64] | None:
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            return None
        if name in self.qconsts:
            b = self.qconsts[name].value
        elif name in self.consts:
            b = np.asarray(self.consts[name], dtype=np.float64)
        else:
            raise Refused(f"its bias {name!r} must be a constant (or a Quant of one)")
        return _per_channel(b, o, "bias")

    # -- layers -----------------------------------------------------------------------------

    def finish_pending(self, p: _Pending, fmt: Tensor, out: str) -> None:
        """Turn a pending float result into the node that writes oasa tensor ``out``."""
        if p.kind in ("conv2d", "dense"):
            x = self.tensors[p.inputs[0]]
            cfg = self.cfg(p, x)
            acc_scale = x.scale * p.s_w
            ratio = acc_scale / fmt.scale
            mult, shift = self.dyadic(ratio, cfg)
            layer = Layer(
                p.kind, x.shape, fmt.shape, name=p.name, cfg=cfg, relu=p.relu,
                requant=True, method="qonnx", weight=p.weight.astype(np.int8),
                bias=self.bias_int(p, acc_scale, cfg), mult=mult, shift=shift,
                inputs=p.inputs, output=out, **p.geometry,
                extra={"in_scale": x.scale, "weight_scale": p.s_w.tolist(), "out_scale": fmt.scale},
            )  # fmt: skip
            self.dyadic_errors.append(_rel_error(mult, shift, ratio))
            beta = np.zeros(len(ratio)) if p.bias is None else p.bias / acc_scale
            lo, hi = fmt.range
            found = match_thresholds(layer, ratio, beta, (max(lo, 0) if p.relu else lo, hi))
            if found is not None:
                done = (*found, len(ratio))
                self.matched = [a + b for a, b in zip(self.matched, done, strict=True)]
            self.errors.append(_rel_error(layer.mult, layer.shift, ratio))
        elif p.kind == "add":
            if p.relu and fmt.signed:
                raise Refused(
                    "a ReLU after an Add into a signed Quant: oasa's add clamps to its output "
                    "format (quantize the sum unsigned)"
                )
            sa, sb = (self.tensors[t].scale for t in p.inputs)
            mult, shift = self.shared_dyadic(
                np.array([sa / fmt.scale, sb / fmt.scale]), ADD_MULT_BITS
            )
            layer = Layer(
                "add", (), (), name=p.name, inputs=p.inputs, output=out, relu=p.relu,
                mult=mult, shift=np.array([shift]),
            )  # fmt: skip
        else:  # avgpool, or a 1 x 1 rescale
            if p.relu and fmt.signed:
                raise Refused("a ReLU after an average pool into a signed Quant")
            kh, kw = p.geometry["kernel"]
            s_in = self.tensors[p.inputs[0]].scale
            mult, shift = self.shared_dyadic(
                np.array([s_in / (fmt.scale * kh * kw)]), POOL_MULT_BITS
            )
            pooled = out
            if p.squeeze:  # the pool writes (C, 1, 1), a flatten makes it (C,)
                pooled = f"{out}_pool"
                while pooled in self.tensors or pooled in self.uses:
                    pooled += "_"
                self.add_tensor(pooled, replace(fmt, shape=(fmt.shape[0], 1, 1)))
            layer = Layer(
                "avgpool", (), (), name=p.name, inputs=p.inputs, output=pooled, mult=mult,
                shift=np.array([shift]), **p.geometry,
            )  # fmt: skip
            if p.squeeze:
                self.layers.append(layer)
                layer = Layer(
                    "flatten", (), (), name=self.unique(f"{p.name}_flatten"), inputs=(pooled,),
                    output=out,
                )  # fmt: skip
        self.add_tensor(out, fmt)
        self.layers.append(layer)

    def cfg(self, p: _Pending, x: Tensor) -> ArrayConfig:
        if not LIMITS["act_bits"][0] <= x.bits <= LIMITS["act_bits"][1]:
            raise Refused(
                f"its input is a {x.describe()} tensor; the array takes 2..8-bit activations"
            )
        try:  # P is set once every layer is known; 32 holds any product meanwhile
            return ArrayConfig(
                act_bits=x.bits, act_signed=x.signed, weight_bits=p.weight_bits,
                acc_bits=LIMITS["acc_bits"][1], overflow=self.overflow,
            )  # fmt: skip
        except ConfigError as e:
            raise Refused(str(e)) from None

    def bias_int(self, p: _Pending, acc_scale: NDArray, cfg: ArrayConfig) -> NDArray[np.int64]:
        if p.bias is None:
            return np.zeros(len(acc_scale), dtype=np.int64)
        b = np.round(p.bias / acc_scale)
        if b.min() < cfg.bias_min or b.max() > cfg.bias_max:
            raise Refused(f"its bias in accumulator units does not fit {cfg.bias_bits} bits")
        return b.astype(np.int64)

    def dyadic(self, ratio: NDArray, cfg: ArrayConfig) -> tuple[NDArray, NDArray]:
        try:
            return dyadic(ratio, cfg)
        except QuantError as e:
            raise Refused(str(e)) from None

    def shared_dyadic(self, ratio: NDArray, mult_bits: int) -> tuple[NDArray[np.int64], int]:
        """Multipliers below 2**mult_bits and one shift, as large as both allow."""
        top = float(ratio.max())
        shift = min(HOST_SHIFT_MAX, math.floor(math.log2(((1 << mult_bits) - 1) / top)))
        while shift >= 0 and round(top * 2.0**shift) >= (1 << mult_bits):
            shift -= 1
        if shift < 0:
            raise Refused(f"rescale ratio {top:.6g} does not fit a {mult_bits}-bit multiplier")
        mult = np.array([round(r * 2.0**shift) for r in ratio], dtype=np.int64)
        if mult.min() < 1:
            raise Refused(
                f"rescale ratios {ratio.tolist()} are too far apart for one shift and "
                f"{mult_bits}-bit multipliers"
            )
        self.errors.append(_rel_error(mult, np.full(len(mult), shift), ratio))
        self.dyadic_errors.append(self.errors[-1])
        return mult, shift

    def finish(self, acc_bits: int | None) -> tuple[Network, dict[str, int], int]:
        out = self.graph_output
        if out in self.alias:
            raise GraphError(
                f"{self.path}: the graph output {out!r} is quantized (a Quant on the logits); "
                "oasa's output is the raw accumulators of the last dense layer: export the "
                "last layer without an output quantizer"
            )
        if out not in self.pending or self.pending[out].kind != "dense":
            raise GraphError(
                f"{self.path}: the graph output {out!r} must be the unquantized output of a "
                "Gemm or MatMul (the logits)"
            )
        p = self.pending.pop(out)
        if p.relu:
            raise GraphError(
                f"{self.path}: node {p.name!r}: a ReLU on the logits has no counterpart (the "
                "raw output layer forms logits on the host)"
            )
        left = [k for k in self.pending if self.uses[k]]
        if left:
            raise GraphError(f"{self.path}: tensor {left[0]!r} is read but never quantized")
        x = self.tensors[p.inputs[0]]
        try:
            cfg = self.cfg(p, x)
            acc_scale = x.scale * p.s_w
            logit_scale = float(acc_scale.max())
            mult, shift = self.dyadic(acc_scale / logit_scale, cfg)
            self.errors.append(_rel_error(mult, shift, acc_scale / logit_scale))
            self.dyadic_errors.append(self.errors[-1])
            bias = self.bias_int(p, acc_scale, cfg)
        except Refused as e:
            raise GraphError(f"node {p.name!r} (output layer): {e}") from None
        self.layers.append(
            Layer(
                "dense",
                x.shape,
                p.shape,
                name=p.name,
                cfg=cfg,
                requant=False,
                method="qonnx",
                weight=p.weight.astype(np.int8),
                bias=bias,
                mult=mult,
                shift=shift,
                inputs=p.inputs,
                output=out,
                extra={"in_scale": x.scale, "weight_scale": p.s_w.tolist()},
            )
        )
        need = {
            layer.name: int(certificate(layer)[2].max())
            for layer in self.layers
            if layer.has_weights
        }
        p_need = max(need.values())
        if acc_bits is None:
            if p_need > LIMITS["acc_bits"][1]:
                raise InputError(
                    f"{self.path}: no accumulator of at most {LIMITS['acc_bits'][1]} bits is "
                    f"overflow-safe for these weights (they need P = {p_need}); give acc_bits to "
                    "build it at a narrower, uncertified width"
                )
            acc_bits = p_need
        for layer in self.layers:
            if layer.has_weights:
                try:
                    layer.cfg = layer.cfg.replace(acc_bits=acc_bits)
                except ConfigError as e:
                    raise InputError(f"layer {layer.name}: {e}") from None
        self.tensors[out] = Tensor(p.shape, acc_bits, True, None)
        net = Network(
            layers=self.layers,
            input_shape=self.input_shape,
            input_scale=self.input_scale,
            method="qonnx",
            scales="dyadic",
            guarantee="none",
            logit_scale=logit_scale,
            info={"source": self.path.name, "importer": "qonnx"},
            tensors=self.tensors,
            input=self.input,
            output=out,
        )
        return net, need, acc_bits


def _rel_error(mult: NDArray, shift: NDArray, ratio: NDArray) -> float:
    approx = np.asarray(mult, dtype=np.float64) * np.exp2(-np.asarray(shift, dtype=np.float64))
    r = np.asarray(ratio, dtype=np.float64)
    return float(np.max(np.abs(approx - r) / r))


def _per_channel(c: NDArray, o: int, what: str) -> NDArray[np.float64]:
    c = np.asarray(c, dtype=np.float64)
    if c.size == 1:
        return np.full(o, float(c.reshape(-1)[0]))
    if c.size != o:
        raise Refused(f"{what} of shape {c.shape} is not one value per output channel ({o})")
    return c.reshape(o).copy()


# -- handlers: one per ONNX operator -----------------------------------------------------------


def _quant(imp: _Importer, node: Any, name: str) -> None:
    p = imp.quant_params(node)
    src, out = node.input[0], node.output[0]
    if src in imp.consts:  # a weight or a bias
        x = np.asarray(imp.consts[src])
        q = p.integers(x)
        imp.qconsts[out] = _QConst(q, np.asarray(p.scale, dtype=np.float64), p)
        return
    if src in imp.qconsts:  # a Quant of a quantized constant: quantize its value again
        x = imp.qconsts[src].value.astype(np.asarray(p.scale).dtype)
        imp.qconsts[out] = _QConst(p.integers(x), np.asarray(p.scale, dtype=np.float64), p)
        return
    if src == imp.graph_input:
        if imp.input is not None:
            raise Refused("the graph input has more than one Quant")
        if imp.uses[src] != 1:
            raise Refused(
                f"the graph input {src!r} has {imp.uses[src]} readers; oasa quantizes the input "
                "once, so the Quant must be its only reader"
            )
        fmt = imp.activation_format(p, imp.input_shape)
        if fmt.bits > 8:
            raise Refused(f"a {fmt.bits}-bit input: oasa's input tensor has at most 8 bits")
        imp.add_tensor(out, fmt)
        imp.input, imp.input_scale = out, fmt.scale
        return
    if src in imp.pending:
        pend = imp.sole_pending(src, "Quant")
        del imp.pending[src]
        imp.finish_pending(pend, imp.activation_format(p, pend.shape), out)
        return
    t = imp.tensor(src)
    x = imp.tensors[t]
    fmt = imp.activation_format(p, x.shape)
    if (fmt.bits, fmt.signed) == (x.bits, x.signed) and math.isclose(
        fmt.scale, x.scale, rel_tol=1e-9
    ):
        imp.alias[out] = t  # the same format: Quant changes nothing
        return
    if len(x.shape) != 3:
        raise Refused(
            f"a Quant that changes the format of {t!r} ({x.describe()}, scale {x.scale:.6g}) "
            "needs a (C, H, W) tensor (oasa rescales with a 1 x 1 average pool)"
        )
    rescale = _Pending(
        "avgpool", name, (t,), x.shape,
        geometry={"kernel": (1, 1), "stride": (1, 1), "padding": (0, 0, 0, 0)},
    )  # fmt: skip
    imp.finish_pending(rescale, fmt, out)


def _geometry_shape(imp: _Importer, kind: str, inputs: tuple[str, ...], **kw: Any) -> tuple:
    try:
        return ops.node_output_shape(kind, [imp.tensors[t].shape for t in inputs], **kw)
    except InputError as e:
        raise Refused(str(e)) from None


def _conv(imp: _Importer, node: Any, name: str) -> None:
    a = attrs(node)
    x = imp.tensor(node.input[0])
    q, s_w, bits = imp.weight(node, 1, 0)
    if q.ndim != 4:
        raise Refused(f"weight {q.shape}: oasa runs 2-D convolutions only")
    kernel, stride = window(a, ints(a.get("kernel_shape", q.shape[2:])))
    if kernel != q.shape[2:]:
        raise Refused(f"kernel_shape {list(kernel)} differs from the weight {q.shape}")
    geometry = {
        "kernel": kernel,
        "stride": stride,
        "padding": pads(a),
        "groups": int(a.get("group", 1)),
    }
    shape = _geometry_shape(imp, "conv2d", (x,), weight_shape=q.shape, **geometry)
    imp.pending[node.output[0]] = _Pending(
        "conv2d", name, (x,), shape, weight=q, weight_bits=bits, s_w=s_w,
        bias=imp.bias(node, 2, q.shape[0]), geometry=geometry,
    )  # fmt: skip


def _dense_input(imp: _Importer, name: str) -> str:
    x = imp.tensor(name)
    if len(imp.tensors[x].shape) != 1:
        raise Refused(
            f"input {x!r} has shape {imp.tensors[x].shape} per image; a dense layer needs a "
            "(batch, features) tensor (Flatten first)"
        )
    return x


def _gemm(imp: _Importer, node: Any, name: str) -> None:
    a = attrs(node)
    if a.get("transA", 0):
        raise Refused("transA=1 is not supported (the data input must be (batch, features))")
    x = _dense_input(imp, node.input[0])
    trans = bool(a.get("transB", 0))
    q, s_w, bits = imp.weight(node, 1, 0 if trans else 1)
    if q.ndim != 2:
        raise Refused(f"weight (B) has shape {q.shape}, needs 2 axes")
    w = q if trans else q.T
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if alpha <= 0:
        raise Refused(f"alpha {alpha} must be positive (it scales the weight scale)")
    shape = _geometry_shape(imp, "dense", (x,), weight_shape=w.shape)
    bias = imp.bias(node, 2, w.shape[0])
    imp.pending[node.output[0]] = _Pending(
        "dense", name, (x,), shape, weight=np.ascontiguousarray(w), weight_bits=bits,
        s_w=alpha * s_w, bias=None if bias is None else beta * bias,
    )  # fmt: skip


def _matmul(imp: _Importer, node: Any, name: str) -> None:
    x = _dense_input(imp, node.input[0])
    q, s_w, bits = imp.weight(node, 1, 1)
    if q.ndim != 2:
        raise Refused(f"weight has shape {q.shape}, needs 2 axes (K, N)")
    w = np.ascontiguousarray(q.T)
    shape = _geometry_shape(imp, "dense", (x,), weight_shape=w.shape)
    imp.pending[node.output[0]] = _Pending(
        "dense", name, (x,), shape, weight=w, weight_bits=bits, s_w=s_w
    )


def _add(imp: _Importer, node: Any, name: str) -> None:
    """Two quantized tensors: a residual add (a Quant must follow). A layer's output and a
    constant: that layer's bias."""
    ins = list(node.input)
    consts = [t for t in ins if t in imp.consts or t in imp.qconsts]
    out = node.output[0]
    if not consts:
        if any(t in imp.pending for t in ins):
            raise Refused(
                "an Add of an unquantized float result: oasa adds two quantized tensors (put a "
                "Quant on each input)"
            )
        a, b = imp.tensor(ins[0]), imp.tensor(ins[1])
        shape = _geometry_shape(imp, "add", (a, b))
        imp.pending[out] = _Pending("add", name, (a, b), shape)
        return
    if len(consts) == 2:
        raise Refused("both inputs are constants")
    src = next(t for t in ins if t not in consts)
    if src not in imp.pending or imp.pending[src].kind not in ("conv2d", "dense"):
        raise Refused(
            "an Add of a constant folds only into the bias of a Conv, Gemm or MatMul right "
            "before it"
        )
    p = imp.sole_pending(src, "bias Add")
    if p.relu:
        raise Refused(f"an Add of a constant after the ReLU of {p.name} is not a bias")
    c = consts[0]
    value = imp.qconsts[c].value if c in imp.qconsts else np.asarray(imp.consts[c], np.float64)
    bias = _per_channel(value, p.shape[0], "bias")
    p.bias = bias if p.bias is None else p.bias + bias
    imp.pending[out] = imp.pending.pop(src)


def _relu(imp: _Importer, node: Any, name: str) -> None:
    src, out = node.input[0], node.output[0]
    if src in imp.pending:
        p = imp.sole_pending(src, "Relu")
        p.relu = True
        imp.pending[out] = imp.pending.pop(src)
        return
    t = imp.tensor(src)
    if imp.tensors[t].signed:
        raise Refused(
            f"a ReLU on the quantized signed tensor {t!r}: oasa folds a ReLU into the layer, "
            "add or pool before a Quant"
        )
    imp.alias[out] = t  # a ReLU of unsigned integers changes nothing


def _maxpool(imp: _Importer, node: Any, name: str) -> None:
    a = attrs(node)
    if a.get("ceil_mode", 0):
        raise Refused("ceil_mode=1 is not supported (floor mode only)")
    if len([o for o in node.output if o]) > 1:
        raise Refused("the Indices output is not supported")
    x = imp.tensor(node.input[0])
    kernel, stride = window(a, ints(a["kernel_shape"]))
    geometry = {"kernel": kernel, "stride": stride, "padding": pads(a)}
    shape = _geometry_shape(imp, "maxpool", (x,), **geometry)
    out = node.output[0]
    imp.add_tensor(out, replace(imp.tensors[x], shape=shape))
    imp.layers.append(Layer("maxpool", (), (), name=name, inputs=(x,), output=out, **geometry))


def _avgpool(imp: _Importer, node: Any, name: str) -> None:
    a = attrs(node)
    if a.get("ceil_mode", 0):
        raise Refused("ceil_mode=1 is not supported (floor mode only)")
    x = imp.tensor(node.input[0])
    kernel, stride = window(a, ints(a["kernel_shape"]))
    padding = pads(a)
    if any(padding) and not a.get("count_include_pad", 0):
        raise Refused(
            f"pads {list(padding)} with count_include_pad=0 (the ONNX default) divide border "
            "windows by fewer terms; oasa needs count_include_pad=1 or no padding"
        )
    geometry = {"kernel": kernel, "stride": stride, "padding": padding}
    shape = _geometry_shape(imp, "avgpool", (x,), **geometry)
    imp.pending[node.output[0]] = _Pending("avgpool", name, (x,), shape, geometry=geometry)


def _global_avgpool(imp: _Importer, node: Any, name: str) -> None:
    x = imp.tensor(node.input[0])
    shape = imp.tensors[x].shape
    if len(shape) != 3:
        raise Refused(f"input {x!r} has shape {shape}, needs (C, H, W)")
    kernel = (shape[1], shape[2])
    geometry = {"kernel": kernel, "stride": kernel, "padding": (0, 0, 0, 0)}
    imp.pending[node.output[0]] = _Pending(
        "avgpool", name, (x,), (shape[0], 1, 1), geometry=geometry
    )


def _reduce_mean(imp: _Importer, node: Any, name: str) -> None:
    """The mean over H and W (how a global or adaptive-to-1 average pool is exported)."""
    a = attrs(node)
    x = imp.tensor(node.input[0])
    shape = imp.tensors[x].shape
    if len(node.input) > 1 and node.input[1]:
        axes = imp.const(node, 1, "axes").astype(np.int64).reshape(-1).tolist()
    else:
        axes = a.get("axes")
    rank = 1 + len(shape)
    axes = sorted(int(v) % rank for v in axes) if axes is not None else None
    if len(shape) != 3 or axes != [2, 3]:
        raise Refused(
            f"axes {axes} of a {shape} input: oasa imports only the mean over H and W (a "
            "global average pool)"
        )
    keep = bool(a.get("keepdims", 1))
    kernel = (shape[1], shape[2])
    geometry = {"kernel": kernel, "stride": kernel, "padding": (0, 0, 0, 0)}
    imp.pending[node.output[0]] = _Pending(
        "avgpool", name, (x,), (shape[0], 1, 1) if keep else (shape[0],), geometry=geometry,
        squeeze=not keep,
    )  # fmt: skip


def _flatten_node(imp: _Importer, x: str, name: str, out: str) -> None:
    t = imp.tensors[x]
    if len(t.shape) == 1:
        imp.alias[out] = x
        return
    imp.add_tensor(out, replace(t, shape=(int(np.prod(t.shape)),)))
    imp.layers.append(Layer("flatten", (), (), name=name, inputs=(x,), output=out))


def _flatten(imp: _Importer, node: Any, name: str) -> None:
    x = imp.tensor(node.input[0])
    axis = int(attrs(node).get("axis", 1))
    if axis < 0:
        axis += 1 + len(imp.tensors[x].shape)
    if axis != 1:
        raise Refused(f"axis {axis} is not supported (only 1: keep the batch, flatten the rest)")
    _flatten_node(imp, x, name, node.output[0])


def _reshape(imp: _Importer, node: Any, name: str) -> None:
    """Only the reshape a flatten is exported as: (batch, -1), (0, -1) or (-1 or 0, K); a
    model exported with a fixed batch may also name that batch size."""
    x = imp.tensor(node.input[0])
    target = imp.const(node, 1, "shape").astype(np.int64).reshape(-1).tolist()
    k = int(np.prod(imp.tensors[x].shape))
    allowzero = int(attrs(node).get("allowzero", 0))
    first = target[0] if target else None
    batch_ok = first == -1 or (first == 0 and not allowzero) or (imp.batch and first == imp.batch)
    ok = len(target) == 2 and batch_ok and (target[1] == k or (target[1] == -1 and first != -1))
    if not ok:
        raise Refused(
            f"shape {target} of a {imp.tensors[x].shape} input: oasa imports only a reshape to "
            f"(batch, {k}) (shape [0, -1], [0, {k}] or [-1, {k}])"
        )
    _flatten_node(imp, x, name, node.output[0])


def _identity(imp: _Importer, node: Any, name: str) -> None:
    if any(imp.uses[o] for o in node.output[1:] if o):
        raise Refused("its mask output is used; oasa imports inference graphs only")
    src, out = node.input[0], node.output[0]
    if src in imp.pending:
        imp.sole_pending(src, "Identity")
        imp.pending[out] = imp.pending.pop(src)
    elif src in imp.consts:
        imp.consts[out] = imp.consts[src]
    elif src in imp.qconsts:
        imp.qconsts[out] = imp.qconsts[src]
    else:
        imp.alias[out] = imp.tensor(src)


def _constant(imp: _Importer, node: Any, name: str) -> None:
    imp.consts[node.output[0]] = constant_value(node)


HANDLERS: dict[str, Callable[[_Importer, Any, str], None]] = {
    "Quant": _quant,
    "IntQuant": _quant,
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _add,
    "Relu": _relu,
    "MaxPool": _maxpool,
    "AveragePool": _avgpool,
    "GlobalAveragePool": _global_avgpool,
    "ReduceMean": _reduce_mean,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Identity": _identity,
    "Dropout": _identity,
    "Constant": _constant,
}
SUPPORTED = tuple(HANDLERS)


# -- the entry points ---------------------------------------------------------------------------


def import_qonnx(
    path: str | Path, *, acc_bits: int | None = None, overflow: str = "wrap"
) -> QonnxImport:
    """The integer network of the QONNX model at ``path`` (weights may sit in an
    external-data file ``NAME.onnx.data`` next to it).

    Without ``acc_bits`` every layer gets the smallest accumulator width P at which all
    of them are certified overflow-free; with it, the network is built at that P and
    labelled ``certified`` only if :func:`~oasa.sim.certificates.certify` says so.
    Raises :class:`InputError` for a file that is missing or not ONNX, and
    :class:`~oasa.quant.graph.GraphError` (one line, naming the node) for a float model or
    anything oasa cannot represent.
    """
    path = Path(path)
    if overflow not in ("wrap", "saturate"):
        raise InputError(f"overflow={overflow!r} is not a mode: allowed wrap, saturate")
    model = read_model(path, "QONNX")
    graph = model.graph
    quantizers = (*QUANT_OPS, "BipolarQuant", "Trunc", "FloatQuant", "MultiThreshold")
    if not any(n.op_type in quantizers for n in graph.node):
        raise GraphError(
            f"{path} has no Quant nodes: it is a float model; quantize it with "
            f"`oasa quantize --model {path}`"
        )
    imp = _Importer(graph, path, overflow)
    for i, node in enumerate(graph.node):
        name = imp.unique(node_name(node, i))
        try:
            if node.op_type in _REFUSED:
                raise Refused(_REFUSED[node.op_type])
            known = node.domain in ("", "ai.onnx") or node.op_type in QUANT_OPS
            handler = HANDLERS.get(node.op_type) if known else None
            if handler is None:
                raise Refused(f"unsupported operator; oasa imports {', '.join(SUPPORTED)}")
            handler(imp, node, name)
        except Refused as e:
            raise GraphError(f"{path}: node {name!r} ({node.op_type}): {e}") from None
    if imp.input is None:
        raise GraphError(
            f"{path}: the graph input {imp.graph_input!r} has no Quant node; oasa needs the "
            "input quantized (e.g. a QuantIdentity first)"
        )
    net, need, p = imp.finish(acc_bits)
    for _, layer in net.weighted:
        layer.wc_lo, layer.wc_hi, _ = certificate(layer)
    validate = getattr(netfile, "validate", None)  # graph, formats, shapes, value ranges
    if validate is not None:
        validate(net, str(path))
    cert = certify(net)
    net.guarantee = "certified" if cert.certified else "none"
    cert = certify(net)
    max_err = max(imp.errors, default=0.0)
    net.info.update(
        acc_bits=p,
        min_safe_acc_bits=max(need.values()),
        max_requant_error=max_err,
    )
    notes = [
        f"input: {net.input_format.describe()}, scale {net.input_scale:.6g}",
    ]
    for _, layer in net.weighted:
        w = np.abs(np.asarray(layer.weight, dtype=np.int64).reshape(layer.channels, -1))
        l1 = w.sum(axis=1)
        notes.append(
            f"{layer.name}: {layer.kind} {tuple(layer.weight.shape)}, {layer.weight_bits}-bit "
            f"weights in {int(layer.weight.min())}..{int(layer.weight.max())} on "
            f"{layer.act_bits}-bit {'signed' if layer.act_signed else 'unsigned'} inputs, L1 "
            f"norm max {int(l1.max())} per channel (total {int(l1.sum())}), smallest safe P "
            f"{need[layer.name]}"
        )
    exact, missed, steps, channels = imp.matched
    if channels:
        where = "for every accumulator value their weights can produce"
        notes.append(
            f"requantization: all {channels} channels round exactly where the QONNX graph "
            f"rounds, {where}"
            if exact == channels
            else f"requantization: {exact} of {channels} channels round exactly where the "
            f"QONNX graph rounds, {where}; in the others {missed} of {steps} steps sit one "
            "accumulator value off (the integer bias cannot hold the float bias's fraction)"
        )
    if imp.rounding_modes - {"HALF_UP"}:
        notes.append(
            "the activation Quants round half to even, oasa rounds half up: the two can "
            "differ on exact ties"
        )
    return QonnxImport(
        net=net,
        acc_bits=p,
        certification=cert,
        max_requant_error=max_err,
        notes=notes,
        dyadic_error=max(imp.dyadic_errors, default=0.0),
        min_safe_acc_bits=need,
        source=str(path),
    )


def qonnx_reference(path: str | Path, images: ArrayLike, *, batch: int = 32) -> NDArray:
    """The model's outputs (logits) on float ``images`` (B, ...), executed by qonnx
    (``ModelWrapper``, ``InferShapes``, ``execute_onnx``) node by node in batches of
    ``batch`` (the exported batch size if the model fixes one): the reference an import is
    checked against."""
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.infer_shapes import InferShapes
    except ImportError:
        raise InputError("executing a QONNX model needs qonnx: pip install qonnx") from None
    model = ModelWrapper(str(_checked(Path(path))))
    consts = {t.name for t in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in consts)
    out = model.graph.output[0].name
    dims = inp.type.tensor_type.shape.dim
    fixed = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 0
    step = fixed or batch
    if not fixed:  # qonnx executes fixed shapes only: fix the batch axis, pad the last batch
        model.set_tensor_shape(inp.name, [step, *(d.dim_value for d in dims[1:])])
    model = model.transform(InferShapes())
    x = np.asarray(images, dtype=np.float32)
    parts = []
    for s in range(0, len(x), step):
        chunk = x[s : s + step]
        n = len(chunk)
        if n < step:
            chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), chunk.dtype)])
        parts.append(np.asarray(execute_onnx(model, {inp.name: chunk})[out])[:n])
    return np.concatenate(parts).astype(np.float64)


def _checked(path: Path) -> Path:
    read_model(path, "QONNX")  # the same one-line errors as the importer
    return path
