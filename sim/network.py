"""Integer-only inference of an exported network (:mod:`oasa.sim.netfile`).

The nodes run in file order, each reading named integer tensors. Every convolution is
lowered with :func:`oasa.sim.ops.im2col` to one GEMM per group (K ordered (c, ky, kx),
matching ``weight.reshape(O, -1)``), and every GEMM goes through one function with the
signature of :func:`oasa.sim.golden.gemm` (``gemm(x, w, cfg=cfg)`` returning a
:class:`~oasa.sim.golden.GemmResult`), so an RTL backend can replace the golden model by
passing ``gemm=``. Requantization uses :func:`oasa.sim.golden.output_stage`; pooling and
residual adds are the integer host operators of :mod:`oasa.sim.hostops`; the raw output
layer's P-bit accumulators become logits on the host: (acc + bias) * mult / 2**shift,
exact in float64, and the prediction is their argmax. No float touches an activation
between the input quantization and the logits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oasa.config import ArrayConfig
from oasa.errors import InputError
from oasa.sim import golden, hostops, ops
from oasa.sim.netfile import Layer, Network, gemm_weight

__all__ = [
    "GemmFn",
    "LayerRun",
    "NetworkResult",
    "gemm_operand",
    "layer_configs",
    "layer_forward",
    "network_result",
    "quantize_input",
    "run_network",
]

GemmFn = Callable[..., golden.GemmResult]


@dataclass
class LayerRun:
    """What one layer produced for a batch.

    ``out`` is the layer's integer output (activations (B, C, H, W) or (B, O); for the
    raw last layer the P-bit accumulators (B, O)). ``overflow`` / ``final_overflow`` are
    the GEMM flags per dot product (None for maxpool), shaped like ``out``.
    """

    index: int
    layer: Layer
    out: NDArray[np.int64]
    overflow: NDArray[np.bool_] | None = None
    final_overflow: NDArray[np.bool_] | None = None

    @property
    def dot_products(self) -> int:
        return 0 if self.overflow is None else int(self.overflow.size)


@dataclass
class NetworkResult:
    """Per-layer outputs and flags, integer logits and predictions of a batch."""

    layers: list[LayerRun]
    # (acc + bias) * mult / 2**shift, exact; the real logits are these times the network's
    # logit_scale (one positive factor: the prediction does not depend on it)
    logits: NDArray[np.float64]
    predictions: NDArray[np.int64]

    def overflow_counts(self) -> dict[str, int]:
        """Dot products in all weighted layers: total, flagged (some partial sum left the
        range), transient only (flagged, exact final sum in range), final (exact sum out of
        range)."""
        total = flagged = final = 0
        for r in self.layers:
            if r.overflow is None:
                continue
            total += r.overflow.size
            flagged += int(r.overflow.sum())
            final += int(r.final_overflow.sum())
        return {"total": total, "flagged": flagged, "transient": flagged - final, "final": final}

    def accuracy(self, labels: ArrayLike) -> float:
        return 100.0 * float(np.mean(self.predictions == np.asarray(labels)))


def quantize_input(net: Network, images: ArrayLike) -> NDArray[np.int64]:
    """Float images ``(B, *input_shape)`` to the input tensor's integers:
    clamp(floor(v / input_scale + 1/2))."""
    x = np.asarray(images, dtype=np.float64)
    if x.shape[1:] != tuple(net.input_shape):
        raise InputError(f"images have shape {x.shape[1:]}, the network takes {net.input_shape}")
    fmt = net.input_format
    q = np.floor(x / net.input_scale + 0.5)
    return np.clip(q, fmt.lo, fmt.hi).astype(np.int64)


def gemm_operand(layer: Layer, x: NDArray[np.int64]) -> NDArray[np.int64]:
    """The GEMM input of a weighted layer, one per group: (groups, M, K)."""
    if layer.kind == "conv2d":
        return ops.im2col(x, layer.kernel, layer.stride, layer.padding, layer.groups)
    return x.reshape(1, x.shape[0], -1)


def to_nchw(a: NDArray, layer: Layer, batch: int) -> NDArray:
    """A conv layer's (B * Ho * Wo, O) GEMM-shaped result as (B, O, Ho, Wo); dense as is."""
    if layer.kind != "conv2d":
        return a
    _, ho, wo = layer.out_shape
    return a.reshape(batch, ho, wo, -1).transpose(0, 3, 1, 2)


def layer_forward(
    layer: Layer,
    *xs: NDArray[np.int64],
    cfg: ArrayConfig | None = None,
    gemm: GemmFn = golden.gemm,
    out_range: tuple[int, int] | None = None,
) -> tuple[NDArray[np.int64], golden.GemmResult | None]:
    """One node on integer inputs (B, ...): (output, GEMM result or None for a host op).

    ``out_range`` is the output tensor's integer range (default: the layer's activation
    range, which is what a chain of layers uses); a grouped convolution is one GEMM per
    group, its output channels in group order."""
    x = xs[0]
    b = x.shape[0]
    if layer.kind == "flatten":
        return x.reshape(b, -1), None
    if layer.kind == "maxpool":
        return hostops.maxpool(x, layer.kernel, layer.stride, layer.padding), None
    if layer.kind in ("avgpool", "add"):
        if out_range is None:
            raise InputError(f"layer {layer.label}: {layer.kind} needs its output range")
        if layer.kind == "avgpool":
            out = hostops.avgpool(
                x, layer.kernel, layer.stride, layer.padding, mult=int(layer.mult[0]),
                shift=int(layer.shift[0]), out_range=out_range,
            )  # fmt: skip
        else:
            out = hostops.add(
                x, xs[1], mult=(int(layer.mult[0]), int(layer.mult[1])),
                shift=int(layer.shift[0]), out_range=out_range, relu=layer.relu,
            )  # fmt: skip
        return out, None
    cfg = layer.cfg if cfg is None else cfg
    w = gemm_weight(layer)
    og = w.shape[1] // layer.groups
    parts = [
        gemm(cols, w[:, g * og : (g + 1) * og], cfg=cfg)
        for g, cols in enumerate(gemm_operand(layer, x))
    ]
    r = golden.GemmResult(
        *(np.concatenate([getattr(p, k) for p in parts], axis=1)
          for k in ("out", "overflow", "final_overflow"))
    )  # fmt: skip
    if layer.requant:
        out = golden.output_stage(
            r.out, cfg=cfg, bias=layer.bias, mult=layer.mult, shift=layer.shift,
            relu=layer.relu, out_range=out_range,
        )  # fmt: skip
    else:
        out = r.out
    r = golden.GemmResult(*(to_nchw(a, layer, b) for a in (r.out, r.overflow, r.final_overflow)))
    return to_nchw(out, layer, b), r


def layer_configs(net: Network, overrides: Mapping[str, Any] | None) -> dict[int, ArrayConfig]:
    """Each weighted layer's configuration with ``overrides`` applied."""
    return {i: layer.cfg.replace(**(overrides or {})) for i, layer in net.weighted}


def run_network(
    net: Network,
    x: ArrayLike,
    *,
    gemm: GemmFn | None = None,
    overrides: Mapping[str, Any] | None = None,
    batch: int = 256,
) -> NetworkResult:
    """Run integer input x ``(B, *input_shape)`` through ``net`` on integers only.

    Parameters
    ----------
    x:
        Quantized input (see :func:`quantize_input`).
    gemm:
        The GEMM backend (default :func:`oasa.sim.golden.gemm`).
    overrides:
        :class:`~oasa.config.ArrayConfig` fields replaced in every layer's configuration
        (``cfg.replace(**overrides)``), e.g. ``{"acc_bits": 12}`` to evaluate a network at
        a narrower accumulator than it was certified for.
    batch:
        Images per pass, to bound memory.
    """
    gemm = golden.gemm if gemm is None else gemm
    xa = np.asarray(x)
    cfgs = layer_configs(net, overrides)
    fmt = net.input_format
    golden.check_activations(
        xa.reshape(len(xa), -1),
        ArrayConfig(act_bits=max(fmt.bits, 2), act_signed=fmt.signed),
        name="input",
    )
    parts: list[list[LayerRun]] = []
    for s in range(0, len(xa), batch):
        values = {net.input: xa[s : s + batch].astype(np.int64)}
        runs = []
        for i, layer in enumerate(net.layers):
            ins = [values[t] for t in layer.inputs]
            h, r = layer_forward(
                layer, *ins, cfg=cfgs.get(i), gemm=gemm, out_range=net.out_range(layer)
            )
            values[layer.output] = h
            flags = (None, None) if r is None else (r.overflow, r.final_overflow)
            runs.append(LayerRun(i, layer, h, *flags))
        parts.append(runs)
    return network_result(net, parts)


def network_result(net: Network, parts: list[list[LayerRun]]) -> NetworkResult:
    """Join per-batch layer runs (in image order) and form the logits on the host:
    (acc + bias) * mult / 2**shift of the raw output layer, exact in float64; the
    prediction is their argmax."""
    layers = []
    for i, layer in enumerate(net.layers):
        pieces = [p[i] for p in parts]
        joined = [
            None
            if getattr(pieces[0], name) is None
            else np.concatenate([getattr(q, name) for q in pieces])
            for name in ("out", "overflow", "final_overflow")
        ]
        layers.append(LayerRun(i, layer, *joined))
    index = next(i for i, layer in enumerate(net.layers) if layer.output == net.output)
    last = net.layers[index]
    acc = layers[index].out
    logits = (acc + last.bias).astype(np.float64) * last.mult * np.exp2(-last.shift.astype(float))
    return NetworkResult(layers, logits, logits.argmax(axis=1))
