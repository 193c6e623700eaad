"""The interchange format of a quantized network (DESIGN.md section 4): one ``.npz`` file.

quant/ writes it; sim/, fpga/ and the CLI read it. A network is a graph of named integer
tensors: every tensor has a shape and an integer format (bits, signed, and the scale that
maps it to real values), and every node (``layers``, in an order where each input is
computed before it is read) reads tensors and writes one. The file holds

- ``meta``: a JSON string (see :data:`FORMAT_VERSION` and :meth:`Network.to_meta`) with
  the format name and version, the input and output tensor names, the input shape and
  scale, the method and scaling style, the tensors with their formats, and one entry per
  node (kind, name, inputs, output, geometry, and for weighted nodes act_bits,
  act_signed, weight_bits, acc_bits, overflow, relu, requant, method, scales);
- for every weighted node ``i`` (``conv2d``, ``dense``): ``L{i}.weight`` (int8; dense
  [out, in], conv [out, in / groups, kh, kw]), ``L{i}.bias``, ``L{i}.mult``, ``L{i}.shift``
  (int64, per output channel) and the certificate ``L{i}.wc_lo``, ``L{i}.wc_hi`` (int64
  per channel: the lowest and highest partial sum any legal input can produce);
- for every ``add`` node: ``L{i}.mult`` (two multipliers, one per input) and
  ``L{i}.shift`` (one); for every ``avgpool``: ``L{i}.mult`` and ``L{i}.shift`` (one each).

Version 1 files (a chain of conv2d / dense / maxpool layers, no tensor table) still load:
they become the same graph, each layer reading the one before.

Reading validates everything (names, dtypes, shapes, value ranges, the graph) and raises
:class:`NetfileError` with one line that says what is wrong; it also recomputes every
certificate from the integer weights (:func:`oasa.sim.certificates.verify_certificates`),
so no reader trusts a certificate the weights do not give. What the weights guarantee at
the P a layer runs at is :func:`oasa.sim.certificates.certify`'s to say, never the file's.
"""

from __future__ import annotations

import json
import os
import tokenize
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oasa.config import ArrayConfig, ConfigError, ConfigField
from oasa.errors import InputError
from oasa.files import atomic_write, check_input_file
from oasa.sim import ops

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HOST_MULT_BITS",
    "HOST_SHIFT_MAX",
    "KINDS",
    "Layer",
    "NetfileError",
    "Network",
    "Tensor",
    "gemm_weight",
    "load",
    "save",
    "validate",
]

FORMAT_NAME = "oasa-net"
FORMAT_VERSION = 2
READS_VERSIONS = (1, 2)
KINDS = ("conv2d", "dense", "maxpool", "avgpool", "add", "flatten")
WEIGHTED = ("conv2d", "dense")
GUARANTEES = ("certified", "data-dependent", "none")
_ARRAYS = ("weight", "bias", "mult", "shift", "wc_lo", "wc_hi")
# The host's rescales (add, avgpool): multipliers below 2**24 and shifts up to 48 keep
# a * m_a + b * m_b and window sums times m far inside int64.
HOST_MULT_BITS = 24
HOST_SHIFT_MAX = 48
MAX_TENSOR_BITS = 32  # a requantized tensor; raw accumulators carry their P


class NetfileError(InputError):
    """A network file is missing, corrupt, truncated, of another version, or inconsistent."""


@dataclass(frozen=True)
class Tensor:
    """A tensor of the graph: shape (without the batch axis) and integer format.

    Its real value is ``scale * q`` for integers q in [lo, hi]. ``scale`` is None for the
    raw accumulators a network's output layer leaves (their scale is per channel)."""

    shape: tuple[int, ...]
    bits: int
    signed: bool
    scale: float | None = None

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def range(self) -> tuple[int, int]:
        return self.lo, self.hi

    def describe(self) -> str:
        return f"{self.bits}-bit {'signed' if self.signed else 'unsigned'}"

    def to_meta(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "bits": self.bits, "signed": self.signed,
                "scale": self.scale}  # fmt: skip


@dataclass
class Layer:
    """One node of a quantized network.

    Weighted nodes (``conv2d``, ``dense``) compute acc = GEMM of their integer input with
    ``gemm_weight(layer)`` on a P-bit accumulator (a grouped convolution: one GEMM per
    group). With ``requant`` the output stage turns acc into the output tensor: y = acc +
    bias, z = y * mult, r = floor(z / 2**shift + 1/2), ReLU if ``relu``, clamp to the
    output tensor's format (on the array when that is the layer's activation format, on
    the host otherwise). Without it (the network's output) the raw accumulators leave the
    array and the host forms logits (acc + bias) * mult / 2**shift, times the network's
    ``logit_scale``. ``maxpool``, ``avgpool``, ``add`` and ``flatten`` run on the host
    (:mod:`oasa.sim.hostops`); ``add`` and ``avgpool`` keep their multipliers in ``mult``
    and their shift in ``shift``.

    ``inputs`` / ``output`` name the tensors; a network built from a plain list of layers
    chains them (each reads the one before).
    """

    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    name: str = ""
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] | None = None  # default: 1 for conv2d, the kernel for pools
    padding: ops.Pads = (0, 0, 0, 0)
    groups: int = 1
    cfg: ArrayConfig = field(default_factory=ArrayConfig)  # the arithmetic it is made for
    relu: bool = False
    requant: bool = True
    method: str = ""
    weight: NDArray[np.int8] | None = None
    bias: NDArray[np.int64] | None = None
    mult: NDArray[np.int64] | None = None
    shift: NDArray[np.int64] | None = None
    wc_lo: NDArray[np.int64] | None = None
    wc_hi: NDArray[np.int64] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # informative fields (scales, ...)
    inputs: tuple[str, ...] = ()
    output: str = ""

    def __post_init__(self) -> None:
        self.kernel = ops.as_pair(self.kernel)
        if self.stride is None:
            self.stride = self.kernel if self.kind in ("maxpool", "avgpool") else (1, 1)
        self.stride = ops.as_pair(self.stride)
        self.padding = ops.as_pads(self.padding)
        self.in_shape = tuple(self.in_shape)
        self.out_shape = tuple(self.out_shape)
        self.inputs = tuple(self.inputs)

    @property
    def has_weights(self) -> bool:
        return self.kind in WEIGHTED

    @property
    def channels(self) -> int:
        return self.out_shape[0]

    @property
    def label(self) -> str:
        return self.name or self.kind

    # The arithmetic, read from ``cfg`` (which holds it; change it with ``cfg.replace``).
    act_bits = ConfigField()
    act_signed = ConfigField()
    weight_bits = ConfigField()
    acc_bits = ConfigField()
    overflow = ConfigField()

    def to_meta(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "inputs": list(self.inputs),
            "output": self.output,
        }
        if self.kind in ("maxpool", "avgpool", "conv2d"):
            d.update(kernel=list(self.kernel), stride=list(self.stride),
                     padding=list(self.padding))  # fmt: skip
        if self.kind == "add":
            d["relu"] = self.relu
        if not self.has_weights:
            return d
        d.update(
            weight_shape=list(self.weight.shape),
            groups=self.groups,
            **self.cfg.to_dict("arithmetic"),
            relu=self.relu,
            requant=self.requant,
            method=self.method,
        )
        d.update(self.extra)
        return d


@dataclass
class Network:
    """A quantized network: input quantization, then the nodes in order.

    The input image (float) becomes integers x = clamp(floor(v / input_scale + 1/2)) in
    the input tensor's format. ``tensors`` maps every tensor name to its
    :class:`Tensor`; a network built from a chain of layers without tensor names gets
    them (``input``, ``t1``, ...) and their formats (each layer's activation format,
    raw accumulators for the last).
    """

    layers: list[Layer]
    input_shape: tuple[int, ...]
    input_scale: float
    method: str = ""
    scales: str = "dyadic"
    guarantee: str = "none"
    logit_scale: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    input: str = "input"
    output: str = ""

    def __post_init__(self) -> None:
        self.input_shape = tuple(self.input_shape)
        if self.layers and not self.tensors:
            self._chain()
        for layer in self.layers:  # shapes follow from the tensor table
            if layer.inputs and layer.inputs[0] in self.tensors and not layer.in_shape:
                layer.in_shape = self.tensors[layer.inputs[0]].shape
            if layer.output in self.tensors and not layer.out_shape:
                layer.out_shape = self.tensors[layer.output].shape

    def _chain(self) -> None:
        """Name the tensors of a chain and give them the formats a chain implies."""
        first = next((layer for layer in self.layers if layer.has_weights), None)
        cfg = first.cfg if first is not None else ArrayConfig()
        fmt = Tensor(self.input_shape, cfg.act_bits, cfg.act_signed, self.input_scale)
        self.tensors = {self.input: fmt}
        name = self.input
        for i, layer in enumerate(self.layers):
            if not layer.inputs:
                layer.inputs = (name,)
            if not layer.output:
                layer.output = f"t{i + 1}"
            if layer.has_weights and not layer.requant:
                fmt = Tensor(layer.out_shape, layer.acc_bits, True, None)
            elif layer.has_weights:
                scale = layer.extra.get("out_scale")
                fmt = Tensor(layer.out_shape, layer.act_bits, layer.act_signed, scale)
            else:
                fmt = Tensor(layer.out_shape, fmt.bits, fmt.signed, fmt.scale)
            self.tensors[layer.output] = fmt
            name = layer.output
        if not self.output:
            self.output = name

    @property
    def weighted(self) -> list[tuple[int, Layer]]:
        return [(i, layer) for i, layer in enumerate(self.layers) if layer.has_weights]

    @property
    def input_format(self) -> Tensor:
        return self.tensors[self.input]

    def out_range(self, layer: Layer) -> tuple[int, int]:
        """The integer range of what ``layer`` writes."""
        return self.tensors[layer.output].range

    def on_chip_requant(self, layer: Layer) -> bool:
        """Whether the array's output stage can produce this layer's output: it clamps to
        the layer's own activation format, so a layer writing another format (a signed
        tensor after unsigned inputs, a wider residual tensor) runs raw and is
        requantized on the host by the same rule."""
        t = self.tensors[layer.output]
        return layer.requant and (t.bits, t.signed) == (layer.act_bits, layer.act_signed)

    def to_meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "input": self.input,
            "output": self.output,
            "input_shape": list(self.input_shape),
            "input_scale": self.input_scale,
            "method": self.method,
            "scales": self.scales,
            "guarantee": self.guarantee,
            "logit_scale": self.logit_scale,
            "info": self.info,
            "tensors": {k: t.to_meta() for k, t in self.tensors.items()},
            "layers": [layer.to_meta() for layer in self.layers],
        }


# -- certificates ----------------------------------------------------------------------------


def gemm_weight(layer: Layer) -> NDArray[np.int64]:
    """The layer's weights as the (K, O) GEMM operand; K is ordered (c, ky, kx) for a
    convolution, matching :func:`oasa.sim.golden.im2col`."""
    w = np.asarray(layer.weight, dtype=np.int64)
    return w.reshape(w.shape[0], -1).T


# -- writing ---------------------------------------------------------------------------------


def _array_names(layer: Layer) -> tuple[str, ...]:
    if layer.has_weights:
        return _ARRAYS
    return ("mult", "shift") if layer.kind in ("add", "avgpool") else ()


def save(net: Network, path: str | os.PathLike) -> None:
    """Write ``net`` to ``path`` (atomically: a crash or Ctrl-C leaves no partial file).
    Certificates are computed from the weights where a layer has none, and the whole
    network, certificates included, is validated first."""
    from oasa.sim.certificates import certificate, verify_certificates  # built on this module

    for _, layer in net.weighted:
        if layer.wc_lo is None or layer.wc_hi is None:
            layer.wc_lo, layer.wc_hi, _ = certificate(layer)
    _validate(net, "network")
    verify_certificates(net)
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(net.to_meta(), sort_keys=True))}
    for i, layer in enumerate(net.layers):
        for name in _array_names(layer):
            dtype = np.int8 if name == "weight" else np.int64
            arrays[f"L{i}.{name}"] = np.asarray(getattr(layer, name)).astype(dtype)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


# -- reading ---------------------------------------------------------------------------------


def _get(d: dict, key: str, types: type | tuple[type, ...], where: str):
    if key not in d:
        raise NetfileError(f"{where}: '{key}' is missing")
    v = d[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if (isinstance(v, bool) and bool not in allowed) or not isinstance(v, allowed):
        raise NetfileError(f"{where}: '{key}' has the wrong type ({v!r})")
    return v


def _finite(meta: dict, key: str, where: str = "meta") -> float:
    v = _get(meta, key, (int, float), where)
    try:
        f = float(v)
    except OverflowError:
        f = float("inf")
    if not np.isfinite(f):
        raise NetfileError(f"{where}: '{key}' must be a finite number, got {v!r:.40}")
    return f


def _ints(d: dict, key: str, where: str, n: int, lo: int = 0) -> tuple[int, ...]:
    v = _get(d, key, list, where)
    if len(v) != n or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= lo for s in v
    ):
        raise NetfileError(f"{where}: '{key}' must be {n} integers >= {lo}, got {v!r}")
    return tuple(v)


def _shape(d: dict, key: str, where: str) -> tuple[int, ...]:
    v = _get(d, key, list, where)
    if not v or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in v):
        raise NetfileError(f"{where}: '{key}' must be a list of positive integers, got {v!r}")
    return tuple(v)


def _name(d: dict, key: str, where: str) -> str:
    v = _get(d, key, str, where)
    if not v:
        raise NetfileError(f"{where}: '{key}' must be a non-empty tensor name")
    return v


def _layer_from_meta(d: Any, i: int, version: int) -> Layer:
    where = f"layer {i}"
    if not isinstance(d, dict):
        raise NetfileError(f"{where}: not a JSON object")
    kind = _get(d, "kind", str, where)
    kinds = KINDS if version > 1 else ("conv2d", "dense", "maxpool")
    if kind not in kinds:
        raise NetfileError(f"{where}: unknown kind {kind!r} (allowed: {', '.join(kinds)})")
    if version == 1:
        layer = Layer(kind, _shape(d, "in_shape", where), _shape(d, "out_shape", where))
        k = _get(d, "kernel", int, where)
        if k < 1:
            raise NetfileError(f"{where}: 'kernel' must be >= 1, got {k}")
        layer.kernel = layer.stride = (k, k)
        if kind != "maxpool":
            layer.stride = ops.as_pair(_get(d, "stride", int, where))
            layer.padding = ops.as_pads(_get(d, "padding", int, where))
    else:
        layer = Layer(kind, (), ())
        inputs = _get(d, "inputs", list, where)
        if not all(isinstance(t, str) and t for t in inputs):
            raise NetfileError(f"{where}: 'inputs' must be a list of tensor names")
        layer.inputs = tuple(inputs)
        layer.output = _name(d, "output", where)
        if kind in ("maxpool", "avgpool", "conv2d"):
            layer.kernel = _ints(d, "kernel", where, 2, 1)  # type: ignore[assignment]
            layer.stride = _ints(d, "stride", where, 2, 1)  # type: ignore[assignment]
            layer.padding = _ints(d, "padding", where, 4)  # type: ignore[assignment]
    layer.name = str(d.get("name", ""))
    if kind == "add":
        layer.relu = _get(d, "relu", bool, where)
    if not layer.has_weights:
        return layer
    if version > 1:
        layer.groups = _get(d, "groups", int, where)
    arithmetic = {
        "act_bits": _get(d, "act_bits", int, where),
        "act_signed": _get(d, "act_signed", bool, where),
        "weight_bits": _get(d, "weight_bits", int, where),
        "acc_bits": _get(d, "acc_bits", int, where),
        "overflow": _get(d, "overflow", str, where),
    }
    try:
        layer.cfg = ArrayConfig(**arithmetic)
    except ConfigError as e:
        raise NetfileError(f"{where}: {e}") from None
    layer.relu = _get(d, "relu", bool, where)
    layer.requant = _get(d, "requant", bool, where)
    layer.method = _get(d, "method", str, where)
    _shape(d, "weight_shape", where)
    known = {
        "kind", "name", "in_shape", "out_shape", "weight_shape", "kernel", "stride", "padding",
        "groups", "inputs", "output", *arithmetic, "relu", "requant", "method",
    }  # fmt: skip
    layer.extra = {k: v for k, v in d.items() if k not in known}
    return layer


def _tensor_from_meta(d: Any, name: str) -> Tensor:
    where = f"tensor {name!r}"
    if not isinstance(d, dict):
        raise NetfileError(f"{where}: not a JSON object")
    bits = _get(d, "bits", int, where)
    if not 1 <= bits <= 63:
        raise NetfileError(f"{where}: bits must be 1..63, got {bits}")
    scale = d.get("scale")
    if scale is not None:
        scale = _finite(d, "scale", where)
        if scale <= 0:
            raise NetfileError(f"{where}: scale must be positive, got {scale}")
    return Tensor(_shape(d, "shape", where), bits, _get(d, "signed", bool, where), scale)


def _check_array(a: np.ndarray, name: str, shape: tuple[int, ...], where: str) -> None:
    if a.shape != shape:
        raise NetfileError(f"{where}: {name} has shape {a.shape}, expected {shape}")


def _check_values(a: np.ndarray, name: str, lo: int, hi: int, where: str) -> None:
    if a.size and (int(a.min()) < lo or int(a.max()) > hi):
        bad = int(a.min()) if int(a.min()) < lo else int(a.max())
        raise NetfileError(f"{where}: {name} holds {bad}, outside {lo}..{hi}")


def _check_weighted(net: Network, layer: Layer, ins: list[Tensor], where: str) -> None:
    cfg = layer.cfg
    x = ins[0]
    if (x.bits, x.signed) != (cfg.act_bits, cfg.act_signed):
        raise NetfileError(
            f"{where}: reads a {x.describe()} tensor but is made for {cfg.act_bits}-bit "
            f"{'signed' if cfg.act_signed else 'unsigned'} activations"
        )
    o = layer.out_shape[0]
    w = np.asarray(layer.weight)
    if layer.kind == "conv2d":
        wshape = (o, x.shape[0] // max(layer.groups, 1), *layer.kernel)
    else:
        wshape = (o, int(np.prod(x.shape)))
    _check_array(w, "weight", wshape, where)
    _check_values(w, "weight", cfg.weight_min, cfg.weight_max, where)
    ranges = {
        "bias": (cfg.bias_min, cfg.bias_max),
        "mult": (0, cfg.mult_max),
        "shift": (0, cfg.shift_max),
        "wc_lo": (-(1 << 62), 0),
        "wc_hi": (0, 1 << 62),
    }
    for name, (lo, hi) in ranges.items():
        if getattr(layer, name) is None and name.startswith("wc_"):
            continue  # not computed yet (save() computes certificates before it checks)
        a = np.asarray(getattr(layer, name))
        _check_array(a, name, (o,), where)
        _check_values(a, name, lo, hi, where)
    out = net.tensors[layer.output]
    if not layer.requant:
        if layer.output != net.output or layer.kind != "dense":
            raise NetfileError(
                f"{where}: only the network's output may be raw accumulators (a dense layer)"
            )
        if (out.bits, out.signed) != (cfg.acc_bits, True):
            raise NetfileError(f"{where}: raw output must be a {cfg.acc_bits}-bit signed tensor")
    elif out.bits > MAX_TENSOR_BITS:
        raise NetfileError(f"{where}: output tensor of {out.bits} bits (at most {MAX_TENSOR_BITS})")


def _check_host(layer: Layer, ins: list[Tensor], out: Tensor, where: str) -> None:
    if layer.kind in ("maxpool", "flatten"):
        if (out.bits, out.signed) != (ins[0].bits, ins[0].signed):
            raise NetfileError(f"{where}: {layer.kind} keeps its input's format")
        return
    n = 2 if layer.kind == "add" else 1
    mult, shift = np.asarray(layer.mult), np.asarray(layer.shift)
    _check_array(mult, "mult", (n,), where)
    _check_array(shift, "shift", (1,), where)
    _check_values(mult, "mult", 0, (1 << HOST_MULT_BITS) - 1, where)
    _check_values(shift, "shift", 0, HOST_SHIFT_MAX, where)
    if out.bits > MAX_TENSOR_BITS or any(t.bits > MAX_TENSOR_BITS for t in ins):
        raise NetfileError(f"{where}: tensors of at most {MAX_TENSOR_BITS} bits")


def validate(net: Network, where: str = "network") -> None:
    """Check a network in memory as :func:`load` checks a file (graph, formats, shapes,
    value ranges; not the certificates): :class:`NetfileError` naming what is wrong."""
    _validate(net, where)


def _validate(net: Network, where_file: str) -> None:
    if not net.layers:
        raise NetfileError(f"{where_file}: the network has no layers")
    if net.guarantee not in GUARANTEES:
        raise NetfileError(
            f"{where_file}: guarantee {net.guarantee!r} is not one of {', '.join(GUARANTEES)}"
        )
    if not (np.isfinite(net.input_scale) and net.input_scale > 0):
        raise NetfileError(f"{where_file}: input_scale must be positive, got {net.input_scale}")
    if net.input not in net.tensors:
        raise NetfileError(f"{where_file}: the input tensor {net.input!r} is not in the table")
    x = net.tensors[net.input]
    if x.shape != tuple(net.input_shape) or x.bits > 8:
        raise NetfileError(
            f"{where_file}: the input tensor must have the input shape {net.input_shape} and "
            f"at most 8 bits (has {x.shape}, {x.bits} bits)"
        )
    known = {net.input}
    for i, layer in enumerate(net.layers):
        where = f"{where_file}: layer {i} ({layer.label})"
        missing = [t for t in (*layer.inputs, layer.output) if t not in net.tensors]
        if missing:
            raise NetfileError(f"{where}: tensor {missing[0]!r} is not in the tensor table")
        late = [t for t in layer.inputs if t not in known]
        if late:
            raise NetfileError(f"{where}: reads {late[0]!r} before any layer writes it")
        if layer.output in known:
            raise NetfileError(f"{where}: writes {layer.output!r}, which is already written")
        known.add(layer.output)
        ins = [net.tensors[t] for t in layer.inputs]
        out = net.tensors[layer.output]
        if (
            layer.kind == "avgpool"
            and layer.padding != (0, 0, 0, 0)
            and layer.extra.get("count_include_pad", True) is False
        ):
            raise NetfileError(f"{where}: an average pool must count its padding")
        try:
            want = ops.node_output_shape(
                layer.kind, [t.shape for t in ins], kernel=layer.kernel, stride=layer.stride,
                padding=layer.padding, groups=layer.groups,
                weight_shape=None if layer.weight is None else tuple(np.shape(layer.weight)),
            )  # fmt: skip
        except InputError as e:
            raise NetfileError(f"{where}: {e}") from None
        if out.shape != want:
            raise NetfileError(f"{where}: output shape {out.shape}, expected {want}")
        declared = tuple(layer.in_shape)
        if declared and declared not in (ins[0].shape, (int(np.prod(ins[0].shape)),)):
            raise NetfileError(f"{where}: input shape {declared} does not follow {ins[0].shape}")
        layer.in_shape, layer.out_shape = ins[0].shape, out.shape
        if layer.has_weights:
            _check_weighted(net, layer, ins, where)
        else:
            _check_host(layer, ins, out, where)
    if net.output not in known or net.output == net.input:
        raise NetfileError(f"{where_file}: the output tensor {net.output!r} is never written")
    last = next(layer for layer in net.layers if layer.output == net.output)
    if last.kind != "dense" or last.requant:
        raise NetfileError(f"{where_file}: the output must come from a dense layer in raw mode")


def _read_arrays(path, p) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(p):
        raise NetfileError(f"{path}: not an .npz file (not a zip archive: corrupt or truncated)")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    # zipfile and numpy's header parser fail in many ways on damaged bytes (unsupported
    # compression or encryption flags, a header that does not parse, a declared shape
    # too large to allocate); each means the same to a user: the file is damaged.
    except (
        OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, NotImplementedError,
        RuntimeError, TypeError, IndexError, SyntaxError, tokenize.TokenError, MemoryError,
        OverflowError,
    ) as e:  # fmt: skip
        msg = f"{path}: not a readable .npz file (corrupt or truncated: {e})"
        raise NetfileError(" ".join(msg.split())) from None
    bad = sorted(k for k, a in arrays.items() if not isinstance(a, np.ndarray))
    if bad:
        raise NetfileError(f"{path}: entry {bad[0]!r} is not a .npy array (corrupt)")
    return arrays


def _network_from_meta(meta: dict, version: int) -> Network:
    layers_meta = _get(meta, "layers", list, "meta")
    layers = [_layer_from_meta(d, i, version) for i, d in enumerate(layers_meta)]
    common = {
        "input_shape": _shape(meta, "input_shape", "meta"),
        "input_scale": _finite(meta, "input_scale"),
        "method": str(meta.get("method", "")),
        "scales": str(meta.get("scales", "")),
        "guarantee": _get(meta, "guarantee", str, "meta"),
        "logit_scale": _finite(meta, "logit_scale"),
        "info": _get(meta, "info", dict, "meta") if "info" in meta else {},
    }
    if version == 1:
        return Network(layers=layers, **common)
    tensors_meta = _get(meta, "tensors", dict, "meta")
    tensors = {str(k): _tensor_from_meta(v, str(k)) for k, v in tensors_meta.items()}
    if not layers:
        raise NetfileError("the network has no layers")
    return Network(
        layers=layers,
        tensors=tensors,
        input=_name(meta, "input", "meta"),
        output=_name(meta, "output", "meta"),
        **common,
    )


def load(path: str | os.PathLike, *, verify: bool = True) -> Network:
    """Read and validate a network file (version 1 or 2); any problem raises
    :class:`NetfileError`.

    With ``verify`` (the default) every certificate is recomputed from the integer weights
    and a mismatch raises :class:`~oasa.sim.certificates.CertificateError`: the
    file's claim is checked, never trusted. ``verify=False`` is for tools that inspect a
    damaged file.
    """
    try:
        p = check_input_file(path)
    except InputError as e:
        raise NetfileError(str(e)) from None
    arrays = _read_arrays(path, p)
    if "meta" not in arrays:
        raise NetfileError(f"{path}: no 'meta' entry, so not an oasa network file")
    try:
        meta = json.loads(str(arrays["meta"][()]))
    except (ValueError, TypeError, IndexError, RecursionError) as e:
        raise NetfileError(f"{path}: 'meta' is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise NetfileError(f"{path}: 'meta' does not describe an {FORMAT_NAME} file")
    version = meta.get("version")
    if version not in READS_VERSIONS or isinstance(version, bool):
        raise NetfileError(
            f"{path}: format version {version!r}, but this oasa reads versions "
            f"{', '.join(map(str, READS_VERSIONS))}"
        )
    try:
        net = _network_from_meta(meta, version)
    except NetfileError as e:
        raise NetfileError(f"{path}: {e}") from None
    for i, layer in enumerate(net.layers):
        for name in _array_names(layer):
            key = f"L{i}.{name}"
            if key not in arrays:
                raise NetfileError(f"{path}: array '{key}' is missing")
            a = arrays[key]
            want = np.int8 if name == "weight" else np.int64
            if a.dtype != want:
                raise NetfileError(f"{path}: '{key}' has dtype {a.dtype}, expected {want.__name__}")
            setattr(layer, name, a)
    _validate(net, str(path))
    if verify:
        from oasa.sim.certificates import CertificateError, verify_certificates

        try:
            verify_certificates(net)
        except CertificateError as e:
            raise CertificateError(f"{path}: {e}") from None
    return net
