"""Integer-only inference of an exported network (:mod:`oasa.sim.netfile`).

Every convolution is lowered with :func:`oasa.sim.golden.im2col` to a GEMM (K ordered
(c, ky, kx), matching ``weight.reshape(O, -1)``), and every GEMM goes through one function
with the signature of :func:`oasa.sim.golden.gemm` (``gemm(x, w, cfg=cfg)`` returning a
:class:`~oasa.sim.golden.GemmResult`), so an RTL backend can replace the golden model by
passing ``gemm=``. Requantization uses :func:`oasa.sim.golden.output_stage`; max-pooling
works on integer activations on the host; the last (raw-mode) layer's P-bit accumulators
become logits on the host: (acc + bias) * mult / 2**shift, exact in float64, and the
prediction is their argmax. No float touches an activation between the input
quantization and the logits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oasa.config import ArrayConfig
from oasa.errors import InputError
from oasa.sim import golden
from oasa.sim.netfile import Layer, Network, gemm_weight

__all__ = [
    "GemmFn",
    "LayerRun",
    "NetworkResult",
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
    logits: NDArray[np.float64]  # (acc + bias) * mult / 2**shift, exact; times logit_scale
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
    """Float images ``(B, *input_shape)`` to the first layer's N-bit integers:
    clamp(floor(v / input_scale + 1/2))."""
    x = np.asarray(images, dtype=np.float64)
    if x.shape[1:] != tuple(net.input_shape):
        raise InputError(f"images have shape {x.shape[1:]}, the network takes {net.input_shape}")
    cfg = net.weighted[0][1].cfg
    q = np.floor(x / net.input_scale + 0.5)
    return np.clip(q, cfg.act_min, cfg.act_max).astype(np.int64)


def layer_forward(
    layer: Layer,
    x: NDArray[np.int64],
    *,
    cfg: ArrayConfig,
    gemm: GemmFn = golden.gemm,
) -> tuple[NDArray[np.int64], golden.GemmResult | None]:
    """One layer on integer input x (B, ...): (output, GEMM result or None for maxpool)."""
    b = x.shape[0]
    if layer.kind == "maxpool":
        k = layer.kernel
        _, c, h, w = x.shape
        return x.reshape(b, c, h // k, k, w // k, k).max(axis=(3, 5)), None
    if layer.kind == "conv2d":
        k = layer.kernel
        cols = golden.im2col(x, (k, k), stride=layer.stride, padding=layer.padding)
    else:
        cols = x.reshape(b, -1)
    r = gemm(cols, gemm_weight(layer), cfg=cfg)
    if layer.requant:
        out = golden.output_stage(
            r.out, cfg=cfg, bias=layer.bias, mult=layer.mult, shift=layer.shift, relu=layer.relu
        )
    else:
        out = r.out
    if layer.kind == "conv2d":
        _, ho, wo = layer.out_shape

        def nchw(a):
            return a.reshape(b, ho, wo, -1).transpose(0, 3, 1, 2)

        out = nchw(out)
        r = golden.GemmResult(nchw(r.out), nchw(r.overflow), nchw(r.final_overflow))
    return out, r


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
    cfgs = {i: layer.cfg.replace(**(overrides or {})) for i, layer in net.weighted}
    golden.check_activations(xa.reshape(len(xa), -1), cfgs[net.weighted[0][0]], name="input")
    parts: list[list[LayerRun]] = []
    for s in range(0, len(xa), batch):
        h = xa[s : s + batch].astype(np.int64)
        runs = []
        for i, layer in enumerate(net.layers):
            h, r = layer_forward(layer, h, cfg=cfgs.get(i), gemm=gemm)
            flags = (None, None) if r is None else (r.overflow, r.final_overflow)
            runs.append(LayerRun(i, layer, h, *flags))
        parts.append(runs)
    return network_result(net, parts)


def network_result(net: Network, parts: list[list[LayerRun]]) -> NetworkResult:
    """Join per-batch layer runs (in image order) and form the logits on the host:
    (acc + bias) * mult / 2**shift of the raw last layer, exact in float64; the
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
    last = net.layers[-1]
    acc = layers[-1].out
    logits = (acc + last.bias).astype(np.float64) * last.mult * np.exp2(-last.shift.astype(float))
    return NetworkResult(layers, logits, logits.argmax(axis=1))
