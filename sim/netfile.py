"""The interchange format of a quantized network (DESIGN.md section 4): one ``.npz`` file.

quant/ writes it; sim/, fpga/ and the CLI read it. The file holds

- ``meta``: a JSON string (see :data:`FORMAT_VERSION` and :meth:`Network.to_meta`) with
  the format name and version, the input shape and scale, the method and scaling style,
  and one entry per layer (kind ``"conv2d"``, ``"dense"`` or ``"maxpool"``, shapes,
  stride, padding, act_bits, act_signed, weight_bits, acc_bits, overflow, relu, requant,
  method, scales);
- for every layer ``i`` with weights: ``L{i}.weight`` (int8; dense [out, in], conv
  [out, in, kh, kw]), ``L{i}.bias``, ``L{i}.mult``, ``L{i}.shift`` (int64, per output
  channel) and the certificate ``L{i}.wc_lo``, ``L{i}.wc_hi`` (int64 per channel: the
  lowest and highest partial sum any legal input can produce).

Reading validates everything (names, dtypes, shapes, value ranges, the shape chain) and
raises :class:`NetfileError` with one line that says what is wrong; it also recomputes
every certificate from the integer weights (:func:`oasa.sim.certificates.verify_certificates`),
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
from oasa.sim import golden

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "KINDS",
    "Layer",
    "NetfileError",
    "Network",
    "gemm_weight",
    "load",
    "save",
]

FORMAT_NAME = "oasa-net"
FORMAT_VERSION = 1
KINDS = ("conv2d", "dense", "maxpool")
GUARANTEES = ("certified", "data-dependent", "none")
_ARRAYS = ("weight", "bias", "mult", "shift", "wc_lo", "wc_hi")


class NetfileError(InputError):
    """A network file is missing, corrupt, truncated, of another version, or inconsistent."""


@dataclass
class Layer:
    """One layer of a quantized network.

    Weighted layers (``conv2d``, ``dense``) compute acc = GEMM of their integer input with
    ``gemm_weight(layer)`` on a P-bit accumulator. With ``requant`` the output stage turns
    acc into the next activations: y = acc + bias, z = y * mult, r = floor(z / 2**shift +
    1/2), ReLU if ``relu``, clamp to the ``act_bits`` range. Without it (the last layer)
    the raw accumulators leave the array and the host forms logits
    (acc + bias) * mult / 2**shift, times the network's ``logit_scale``.
    ``maxpool`` takes the maximum over ``kernel`` x ``kernel`` windows (stride ``kernel``)
    of integer activations, on the host.
    """

    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    name: str = ""
    kernel: int = 1
    stride: int = 1
    padding: int = 0
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

    @property
    def has_weights(self) -> bool:
        return self.kind != "maxpool"

    @property
    def channels(self) -> int:
        return self.out_shape[0]

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
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
        }
        if self.kind == "maxpool":
            d.update(kernel=self.kernel, stride=self.kernel)
            return d
        d.update(
            weight_shape=list(self.weight.shape),
            kernel=self.kernel,
            stride=self.stride,
            padding=self.padding,
            **self.cfg.to_dict("arithmetic"),
            relu=self.relu,
            requant=self.requant,
            method=self.method,
        )
        d.update(self.extra)
        return d


@dataclass
class Network:
    """A quantized network: input quantization, then the layers in order.

    The input image (float) becomes N-bit integers x = clamp(floor(v / input_scale + 1/2))
    to the first layer's activation range.
    """

    layers: list[Layer]
    input_shape: tuple[int, ...]
    input_scale: float
    method: str = ""
    scales: str = "dyadic"
    guarantee: str = "none"
    logit_scale: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def weighted(self) -> list[tuple[int, Layer]]:
        return [(i, layer) for i, layer in enumerate(self.layers) if layer.has_weights]

    def to_meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "input_shape": list(self.input_shape),
            "input_scale": self.input_scale,
            "method": self.method,
            "scales": self.scales,
            "guarantee": self.guarantee,
            "logit_scale": self.logit_scale,
            "info": self.info,
            "layers": [layer.to_meta() for layer in self.layers],
        }


# -- certificates ----------------------------------------------------------------------------


def gemm_weight(layer: Layer) -> NDArray[np.int64]:
    """The layer's weights as the (K, O) GEMM operand; K is ordered (c, ky, kx) for a
    convolution, matching :func:`oasa.sim.golden.im2col`."""
    w = np.asarray(layer.weight, dtype=np.int64)
    return w.reshape(w.shape[0], -1).T


# -- writing ---------------------------------------------------------------------------------


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
    for i, layer in net.weighted:
        arrays[f"L{i}.weight"] = np.asarray(layer.weight).astype(np.int8)
        for name in _ARRAYS[1:]:
            arrays[f"L{i}.{name}"] = np.asarray(getattr(layer, name)).astype(np.int64)
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


def _finite(meta: dict, key: str) -> float:
    v = _get(meta, key, (int, float), "meta")
    try:
        f = float(v)
    except OverflowError:
        f = float("inf")
    if not np.isfinite(f):
        raise NetfileError(f"meta: '{key}' must be a finite number, got {v!r:.40}")
    return f


def _shape(d: dict, key: str, where: str) -> tuple[int, ...]:
    v = _get(d, key, list, where)
    if not v or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in v):
        raise NetfileError(f"{where}: '{key}' must be a list of positive integers, got {v!r}")
    return tuple(v)


def _layer_from_meta(d: Any, i: int) -> Layer:
    where = f"layer {i}"
    if not isinstance(d, dict):
        raise NetfileError(f"{where}: not a JSON object")
    kind = _get(d, "kind", str, where)
    if kind not in KINDS:
        raise NetfileError(f"{where}: unknown kind {kind!r} (allowed: {', '.join(KINDS)})")
    layer = Layer(
        kind=kind,
        in_shape=_shape(d, "in_shape", where),
        out_shape=_shape(d, "out_shape", where),
        name=str(d.get("name", "")),
    )
    layer.kernel = _get(d, "kernel", int, where)
    if kind == "maxpool":
        return layer
    layer.stride = _get(d, "stride", int, where)
    layer.padding = _get(d, "padding", int, where)
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
        *arithmetic, "relu", "requant", "method",
    }  # fmt: skip
    layer.extra = {k: v for k, v in d.items() if k not in known}
    return layer


def _check_array(a: np.ndarray, name: str, shape: tuple[int, ...], where: str) -> None:
    if a.shape != shape:
        raise NetfileError(f"{where}: {name} has shape {a.shape}, expected {shape}")


def _check_values(a: np.ndarray, name: str, lo: int, hi: int, where: str) -> None:
    if a.size and (int(a.min()) < lo or int(a.max()) > hi):
        bad = int(a.min()) if int(a.min()) < lo else int(a.max())
        raise NetfileError(f"{where}: {name} holds {bad}, outside {lo}..{hi}")


def _validate(net: Network, where_file: str) -> None:
    if not net.layers:
        raise NetfileError(f"{where_file}: the network has no layers")
    if net.guarantee not in GUARANTEES:
        raise NetfileError(
            f"{where_file}: guarantee {net.guarantee!r} is not one of {', '.join(GUARANTEES)}"
        )
    if not (np.isfinite(net.input_scale) and net.input_scale > 0):
        raise NetfileError(f"{where_file}: input_scale must be positive, got {net.input_scale}")
    shape = tuple(net.input_shape)
    for i, layer in enumerate(net.layers):
        where = f"{where_file}: layer {i} ({layer.name or layer.kind})"
        in_shape = tuple(layer.in_shape)
        if layer.kind == "dense" and len(shape) > 1:
            shape = (int(np.prod(shape)),)  # dense layers flatten (C, H, W) in C order
        if in_shape != shape:
            raise NetfileError(f"{where}: input shape {in_shape} does not follow {shape}")
        if layer.kind == "maxpool":
            k = layer.kernel
            if len(in_shape) != 3 or k < 1 or in_shape[1] % k or in_shape[2] % k:
                raise NetfileError(f"{where}: maxpool {k} does not tile input {in_shape}")
            want = (in_shape[0], in_shape[1] // k, in_shape[2] // k)
        else:
            cfg = layer.cfg
            o = layer.out_shape[0]
            if layer.kind == "conv2d":
                if len(in_shape) != 3 or layer.stride < 1 or layer.padding < 0:
                    raise NetfileError(f"{where}: bad conv2d geometry")
                wshape = (o, in_shape[0], layer.kernel, layer.kernel)
                try:
                    ho = golden.conv_output_size(
                        in_shape[1], layer.kernel, layer.stride, layer.padding
                    )
                    wo = golden.conv_output_size(
                        in_shape[2], layer.kernel, layer.stride, layer.padding
                    )
                except golden.OperandError as e:
                    raise NetfileError(f"{where}: {e}") from None
                want = (o, ho, wo)
            else:
                if len(in_shape) != 1 or len(layer.out_shape) != 1:
                    raise NetfileError(f"{where}: a dense layer maps a vector to a vector")
                wshape = (o, in_shape[0])
                want = (o,)
            w = np.asarray(layer.weight)
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
                a = np.asarray(getattr(layer, name))
                _check_array(a, name, (o,), where)
                _check_values(a, name, lo, hi, where)
        if tuple(layer.out_shape) != want:
            raise NetfileError(f"{where}: output shape {tuple(layer.out_shape)}, expected {want}")
        shape = want
    last = net.layers[-1]
    if last.kind != "dense" or last.requant:
        raise NetfileError(f"{where_file}: the last layer must be a dense layer in raw mode")


def load(path: str | os.PathLike, *, verify: bool = True) -> Network:
    """Read and validate a network file; any problem raises :class:`NetfileError`.

    With ``verify`` (the default) every certificate is recomputed from the integer weights
    and a mismatch raises :class:`~oasa.sim.certificates.CertificateError`: the
    file's claim is checked, never trusted. ``verify=False`` is for tools that inspect a
    damaged file.
    """
    try:
        p = check_input_file(path)
    except InputError as e:
        raise NetfileError(str(e)) from None
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
    if "meta" not in arrays:
        raise NetfileError(f"{path}: no 'meta' entry, so not an oasa network file")
    try:
        meta = json.loads(str(arrays["meta"][()]))
    except (ValueError, TypeError, IndexError, RecursionError) as e:
        raise NetfileError(f"{path}: 'meta' is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise NetfileError(f"{path}: 'meta' does not describe an {FORMAT_NAME} file")
    if meta.get("version") != FORMAT_VERSION:
        raise NetfileError(
            f"{path}: format version {meta.get('version')!r}, but this oasa reads version "
            f"{FORMAT_VERSION}"
        )
    try:
        layers_meta = _get(meta, "layers", list, "meta")
        layers = [_layer_from_meta(d, i) for i, d in enumerate(layers_meta)]
        net = Network(
            layers=layers,
            input_shape=_shape(meta, "input_shape", "meta"),
            input_scale=_finite(meta, "input_scale"),
            method=str(meta.get("method", "")),
            scales=str(meta.get("scales", "")),
            guarantee=_get(meta, "guarantee", str, "meta"),
            logit_scale=_finite(meta, "logit_scale"),
            info=_get(meta, "info", dict, "meta") if "info" in meta else {},
        )
    except NetfileError as e:
        raise NetfileError(f"{path}: {e}") from None
    for i, layer in net.weighted:
        for name in _ARRAYS:
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
