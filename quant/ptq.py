"""Post-training quantization of the digits network, in numpy, for every method.

The pipeline walks the layers in order on calibration images (training data only):

1. the layer's integer input is what the already-quantized layers before it really
   produce on the golden model (so later layers see earlier layers' errors);
2. the weights are quantized per output channel by the chosen method, with the scale of
   each channel chosen from a grid to minimise sum_i h_i (s q_i - w_i)**2, h_i being the
   variance of input i on the calibration data (the mean part of the error is what
   bias correction removes). ``oaq`` instead picks one power-of-two scale per layer, the
   finest at which the calibration data does not overflow the accumulator;
3. bias correction: the bias absorbs the mean output error on the calibration data;
4. the output activation scale is chosen to minimise the quantization MSE of the
   layer's (ReLU'd) output; requantization becomes an integer multiplier and shift per
   channel (``dyadic``), or a shift only with power-of-two scales (``pow2``);
5. the last layer runs raw: its logits are (acc + bias) * mult / 2**shift on the host,
   with mult / 2**shift the channel's scale relative to the largest one.

The result is an :class:`oasa.sim.netfile.Network` with certificates; accuracy is then
measured on integers with :func:`oasa.sim.network.run_network`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from oasa.config import ArrayConfig, ConfigField
from oasa.errors import InputError
from oasa.quant import methods
from oasa.quant.data import digits_split
from oasa.quant.graph import FloatGraph, FloatNode
from oasa.quant.model import Params, digits_graph
from oasa.sim import golden, ops
from oasa.sim.certificates import certificate
from oasa.sim.netfile import Layer, Network, Tensor
from oasa.sim.network import layer_forward

__all__ = [
    "SCALE_STYLES",
    "QuantError",
    "QuantSpec",
    "dyadic",
    "pow2_ratio",
    "quantize",
]

SCALE_STYLES = ("dyadic", "pow2")
# Scale grid for the per-channel search, relative to max|w| / (2**(M-1) - 1).
_GRID = np.geomspace(0.25, 8.0, 28)
# Calibration: the first images of the training split (never the test set).
CALIBRATION_IMAGES = 512


class QuantError(InputError):
    """A quantization request that cannot be honoured (bad method, widths, P)."""


@dataclass(frozen=True)
class QuantSpec:
    """What to quantize to: method, widths, accumulator and scaling style."""

    method: str = "exact"
    cfg: ArrayConfig = field(default_factory=ArrayConfig)  # N, M, P and mode it is made for
    scales: str = "dyadic"
    calibration: int = CALIBRATION_IMAGES
    bias_correction: bool = True
    host_bits: int = 8  # tensors only host operators read (a residual branch before its add)
    input_bits: int | None = None  # the network input's width (default: act_bits)

    def __post_init__(self) -> None:
        if self.method not in methods.METHODS:
            raise QuantError(
                f"unknown method {self.method!r}: choose one of {', '.join(methods.METHODS)}"
            )
        if self.input_bits is not None and not 2 <= self.input_bits <= 8:
            raise QuantError(f"input_bits={self.input_bits} is out of range: allowed 2..8")
        if self.scales not in SCALE_STYLES:
            raise QuantError(
                f"unknown scale style {self.scales!r}: choose one of {', '.join(SCALE_STYLES)}"
            )
        if not isinstance(self.cfg, ArrayConfig):
            raise QuantError(f"cfg must be an ArrayConfig, got {type(self.cfg).__name__}")
        cfg = self.cfg
        if cfg.act_signed:
            raise QuantError(
                "act_signed is decided per tensor (signed where the data or a layer without "
                "ReLU makes it so), not asked for: leave act_signed False"
            )
        if self.method in methods.CERTIFIED_METHODS:
            p_min = methods.smallest_usable_acc_bits(cfg)
            if self.acc_bits < p_min:
                raise QuantError(
                    f"acc_bits={self.acc_bits} is too small for any non-zero weight with "
                    f"{self.act_bits}-bit activations: the smallest usable P is {p_min}"
                )

    @property
    def scale_style(self) -> str:
        """``oaq`` is fixed-point by definition, so it always uses power-of-two scales."""
        return "pow2" if self.method == "oaq" else self.scales

    # The arithmetic, read from ``cfg``.
    act_bits = ConfigField()
    weight_bits = ConfigField()
    acc_bits = ConfigField()
    overflow = ConfigField()


# -- integer scaling ---------------------------------------------------------------------------


def dyadic(ratio: NDArray, cfg: ArrayConfig) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """mult, shift with mult / 2**shift ~ ratio, mult as large as ``mult_bits`` allows.

    >>> m, s = dyadic(np.array([0.1]), ArrayConfig())
    >>> int(m[0]), int(s[0]), abs(int(m[0]) / 2 ** int(s[0]) - 0.1) < 1e-5
    (52429, 19, True)
    """
    mults, shifts = [], []
    for r in np.asarray(ratio, dtype=float):
        if not r > 0:
            raise QuantError(f"requantization ratio {r} is not positive")
        shift = min(cfg.shift_max, math.floor(math.log2(cfg.mult_max / r)))
        while True:
            mult = round(r * 2.0**shift)
            if mult <= cfg.mult_max or shift == 0:
                break
            shift -= 1
        if mult > cfg.mult_max or mult < 1:
            raise QuantError(f"requantization ratio {r} does not fit mult/shift")
        mults.append(mult)
        shifts.append(max(shift, 0))
    return np.array(mults, dtype=np.int64), np.array(shifts, dtype=np.int64)


def pow2_ratio(ratio: NDArray, cfg: ArrayConfig) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """mult, shift for exact powers of two: mult 1 and a right shift, or a power-of-two
    multiplier and no shift."""
    e = np.rint(np.log2(np.asarray(ratio, dtype=float))).astype(np.int64)
    if not np.allclose(np.exp2(e), ratio, rtol=1e-12):
        raise QuantError("pow2 scaling needs power-of-two ratios")
    mult = np.where(e > 0, np.left_shift(1, np.maximum(e, 0)), 1).astype(np.int64)
    shift = np.where(e > 0, 0, -e).astype(np.int64)
    if mult.max() > cfg.mult_max or shift.max() > cfg.shift_max:
        raise QuantError("a power-of-two ratio is out of the output stage's range")
    return mult, shift


def _to_pow2(x: NDArray) -> NDArray:
    return np.exp2(np.round(np.log2(x)))


# -- weights -------------------------------------------------------------------------------------

Projector = Callable[[NDArray, NDArray, ArrayConfig, NDArray], NDArray[np.int64]]

_PROJECTORS: dict[str, Projector] = {
    "rtn": lambda w, s, cfg, h: methods.rtn_project(w, s, cfg),
    "a2q": lambda w, s, cfg, h: methods.a2q_project(w, s, cfg),
    "a2q+": lambda w, s, cfg, h: methods.a2q_plus_project(w, s, cfg),
    "exact": methods.exact_project,
}


def _weighted_error(w, q, s, h):
    """Per channel sum_i h_i (s q_i - w_i)**2; h is (K,) or one row per channel (O, K)."""
    return ((s[:, None] * q - w) ** 2 * (h if h.ndim == 2 else h[None, :])).sum(axis=1)


def search_scales(
    w: NDArray, method: str, cfg: ArrayConfig, h: NDArray, *, pow2: bool
) -> tuple[NDArray[np.int64], NDArray]:
    """Per channel, the grid scale whose projection has the least weighted error."""
    project = _PROJECTORS[method]
    base = np.abs(w).max(axis=1) / cfg.weight_max
    base = np.where(base > 0, base, 1.0)
    if pow2:
        e0 = np.floor(np.log2(base * _GRID[0]))
        e1 = np.ceil(np.log2(base * _GRID[-1]))
        cands = [np.exp2(np.minimum(e0 + k, e1)) for k in range(int((e1 - e0).max()) + 1)]
    else:
        cands = [base * f for f in _GRID]
    best_q = best_s = best_err = None
    for s in cands:
        q = project(w, s, cfg, h)
        err = _weighted_error(w, q, s, h)
        if best_err is None:
            best_q, best_s, best_err = q, s.copy(), err
            continue
        better = err < best_err
        best_q[better], best_s[better], best_err[better] = q[better], s[better], err[better]
    return best_q, best_s


def _calibration_overflows(cols: NDArray[np.int64], q: NDArray[np.int64], cfg: ArrayConfig) -> bool:
    """Whether some dot product of the calibration GEMMs (one per group: cols is
    (groups, M, K)) overflows the accumulator, in the order the array adds."""
    og = q.shape[0] // cols.shape[0]
    for g, cols_int in enumerate(cols):
        qg = q[g * og : (g + 1) * og]
        c = cols_int.astype(np.float64)
        qf = qg.T.astype(np.float64)
        exact = c @ qf  # exact in float64: every sum is far below 2**53
        if ((exact > cfg.acc_max) | (exact < cfg.acc_min)).any():
            return True  # a final sum overflows: certainly flagged
        pos, neg = c @ np.maximum(qf, 0), c @ np.maximum(-qf, 0)
        bounded = (pos <= cfg.acc_max).all() and (-neg >= cfg.acc_min).all()
        if (cfg.act_signed or not bounded) and golden.gemm(cols_int, qg.T, cfg=cfg).overflow.any():
            return True
    return False


def _oaq_weights(w, cfg, h, cols):
    """One power-of-two scale for the layer: the least-error one, coarsened until the
    calibration data does not overflow the accumulator."""
    base = max(float(np.abs(w).max()) / cfg.weight_max, 1e-12)
    exps = np.arange(np.floor(np.log2(base * 0.25)), np.ceil(np.log2(base * 8)) + 1)
    errs = []
    for e in exps:
        s = np.full(w.shape[0], 2.0**e)
        errs.append(_weighted_error(w, methods.rtn_project(w, s, cfg), s, h).sum())
    e = exps[int(np.argmin(errs))]
    for _ in range(24):
        s = np.full(w.shape[0], 2.0**e)
        q = methods.rtn_project(w, s, cfg)
        if not _calibration_overflows(cols, q, cfg):
            return q, s
        e += 1
    raise QuantError("oaq: no power-of-two scale avoids overflow on the calibration data")


# -- the pipeline ---------------------------------------------------------------------------


def _act_scale(z: NDArray, bits: int, signed: bool, pow2: bool) -> float:
    """Scale of an N-bit tensor minimising the quantization MSE of z (z >= 0 when the
    tensor is unsigned; symmetric about 0 when signed)."""
    flat = z.ravel()
    if flat.size > 200_000:
        flat = flat[:: flat.size // 200_000 + 1]
    top = float(np.abs(flat).max()) if flat.size else 0.0
    if top <= 0:
        return 1.0
    lo, levels = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if pow2:
        e0 = math.floor(math.log2(top / levels)) - 3
        cands = [2.0 ** (e0 + k) for k in range(5)]
    else:
        cands = [top * f / levels for f in np.linspace(0.2, 1.0, 41)]
    best, best_err = cands[0], math.inf
    for s in cands:
        err = float(((np.clip(np.floor(flat / s + 0.5), lo, levels) * s - flat) ** 2).mean())
        if err < best_err:
            best, best_err = s, err
    return best


# Host rescales (add, avgpool) keep their multipliers this narrow, so a * m_a + b * m_b
# stays far below 2**24 and exports exactly to float32 tools (QONNX).
HOST_MULT_BITS = 12


def host_dyadic(ratios: list[float], pow2: bool) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Multipliers (below 2**HOST_MULT_BITS) with one shared shift: m_i / 2**s ~ ratio_i.

    >>> m, s = host_dyadic([0.5, 0.25], pow2=False)
    >>> (m / 2.0 ** s[0]).tolist()
    [0.5, 0.25]
    """
    r = np.asarray(ratios, dtype=float)
    if not (r > 0).all():
        raise QuantError(f"host rescale ratios {r.tolist()} must be positive")
    if pow2:
        r = _to_pow2(r)
    top = (1 << HOST_MULT_BITS) - 1
    shift = int(np.clip(math.floor(math.log2(top / r.max())), 0, 48))
    mult = np.rint(r * 2.0**shift).astype(np.int64)
    if mult.max() > top or (mult < 1).any():
        raise QuantError(
            f"host rescale ratios {r.tolist()} do not fit {HOST_MULT_BITS}-bit multipliers"
        )
    return mult, np.array([shift], dtype=np.int64)


def _weighted_consumers(graph: FloatGraph, tensor: str) -> bool:
    """Whether the array reads this tensor (directly, or through pooling or a flatten,
    which keep or rescale it on the host into the same format)."""
    for node in graph.consumers(tensor):
        if node.weighted:
            return True
        if node.op in ("maxpool", "avgpool", "flatten") and _weighted_consumers(graph, node.output):
            return True
    return False


def _tensor_bits(graph: FloatGraph, tensor: str, spec: QuantSpec) -> int:
    """The array's activation width where the array reads a tensor; the host's wider
    ``host_bits`` where only host operators (adds) do."""
    return spec.act_bits if _weighted_consumers(graph, tensor) else spec.host_bits


def _grouped(node: FloatNode, cols: NDArray) -> NDArray:
    """GEMM operand per group, (groups, M, K), of a weighted node's input."""
    if node.op == "conv2d":
        return ops.im2col(cols, node.kernel, node.stride, node.padding, node.groups)
    return cols.reshape(1, cols.shape[0], -1)


def _per_channel_rows(node: FloatNode, per_group: NDArray) -> NDArray:
    """(groups, K) per-group statistics as one row per output channel (O, K)."""
    o = np.shape(node.weight)[0]
    return np.repeat(per_group, o // per_group.shape[0], axis=0)


@dataclass(frozen=True)
class FloatReference:
    """What PTQ needs from the float network on the calibration images, per weighted
    node: the input variances h (the weights of the scale search, one row per output
    channel) and the mean input row (for bias correction). It does not depend on the
    method or P, so a sweep computes it once and passes it to every :func:`quantize`."""

    h: dict[str, NDArray]
    cols_mean: dict[str, NDArray]


def float_reference(graph: FloatGraph | Params, calib: NDArray) -> FloatReference:
    """Run the float graph on ``calib`` and keep :class:`FloatReference`."""
    graph = _as_graph(graph)
    values = graph.forward(calib, keep=True)
    h, cols_mean = {}, {}
    for node in graph.weighted:
        cols = _grouped(node, values[node.inputs[0]])
        var = cols.var(axis=1)  # (groups, K)
        var = var + 1e-3 * np.maximum(var.mean(axis=1, keepdims=True), 1e-12)
        h[node.name] = _per_channel_rows(node, var)
        cols_mean[node.name] = _per_channel_rows(node, cols.mean(axis=1))
    return FloatReference(h, cols_mean)


def _as_graph(graph: FloatGraph | Params) -> FloatGraph:
    return graph if isinstance(graph, FloatGraph) else digits_graph(graph)


def _input_format(calib: NDArray, cfg: ArrayConfig, pow2: bool) -> Tensor:
    """Unsigned input when the calibration data has no negative value, else signed, of
    ``cfg.act_bits`` bits; the scale maps the largest magnitude to the largest level."""
    signed = bool((calib < 0).any())
    levels = (1 << (cfg.act_bits - 1)) - 1 if signed else cfg.act_max
    top = float(np.abs(calib).max()) or 1.0
    scale = 2.0 ** -math.ceil(math.log2(levels / top)) if pow2 else top / levels
    return Tensor(tuple(calib.shape[1:]), cfg.act_bits, signed, scale)


def _row_dot(a: NDArray, b: NDArray) -> NDArray:
    """Per output channel: a (O, K) . b (O, K)."""
    return (a * b).sum(axis=1)


def _quantize_weighted(
    node: FloatNode,
    x_int: NDArray[np.int64],
    x_fmt: Tensor,
    spec: QuantSpec,
    reference: FloatReference,
    weights: dict[str, tuple[NDArray, NDArray]] | None,
) -> tuple[Layer, NDArray, NDArray]:
    """Integer weights and bias of one weighted node: (layer without its output stage,
    per-channel accumulator scale, integer accumulators of the calibration data)."""
    cfg = spec.cfg.arithmetic().replace(act_bits=x_fmt.bits, act_signed=x_fmt.signed)
    pow2 = spec.scale_style == "pow2"
    w = np.asarray(node.weight, dtype=np.float64)
    o = w.shape[0]
    w2 = w.reshape(o, -1)
    b = np.zeros(o) if node.bias is None else np.asarray(node.bias, dtype=np.float64)
    cols = _grouped(node, x_int)  # (groups, M, K)
    h = reference.h[node.name]
    h_search = h[0] if node.groups == 1 else h
    if weights is not None and node.name in weights:
        q, s_w = (np.asarray(a) for a in weights[node.name])
        q = q.reshape(o, -1).astype(np.int64)
        s_w = s_w.astype(np.float64)
    elif spec.method == "oaq":
        q, s_w = _oaq_weights(w2, cfg, h_search, cols)
    else:
        q, s_w = search_scales(w2, spec.method, cfg, h_search, pow2=pow2)
    og = o // node.groups
    acc = np.concatenate(
        [
            cols[g].astype(np.float64) @ q[g * og : (g + 1) * og].T.astype(np.float64)
            for g in range(node.groups)
        ],
        axis=1,
    )  # exact: every sum is far below 2**53
    acc_scale = x_fmt.scale * s_w
    if spec.bias_correction:  # match the float layer's mean output on the calibration data
        mean_ref = _row_dot(reference.cols_mean[node.name], w2) + b
        mean_q = acc_scale * acc.mean(axis=0)
        b_eff = mean_ref - mean_q
    else:
        b_eff = b
    bias = np.clip(np.rint(b_eff / acc_scale), cfg.bias_min, cfg.bias_max).astype(np.int64)
    layer = Layer(
        node.op, (), (), name=node.name, kernel=node.kernel, stride=node.stride,
        padding=node.padding, groups=node.groups, cfg=cfg, relu=node.relu,
        method=spec.method, weight=q.reshape(w.shape).astype(np.int8), bias=bias,
        inputs=node.inputs, output=node.output,
    )  # fmt: skip
    layer.extra = {"weight_scale": s_w.tolist(), "in_scale": x_fmt.scale}
    return layer, acc_scale, acc  # GEMM-shaped: (B * Ho * Wo, O)


def quantize(
    graph: FloatGraph | Params,
    spec: QuantSpec,
    *,
    calib: NDArray | None = None,
    weights: dict[str, tuple[NDArray, NDArray]] | None = None,
    act_scales: dict[str, float] | None = None,
    info: dict | None = None,
    reference: FloatReference | None = None,
) -> Network:
    """Quantize the float network ``graph`` as ``spec`` says.

    Parameters
    ----------
    graph:
        The float network (a :class:`~oasa.quant.graph.FloatGraph`; the digits model's
        parameters are accepted too).
    calib:
        Calibration images ``(B, *input_shape)``; default the first ``spec.calibration``
        digits training images.
    weights:
        Already quantized weights per node name, (q (O, K) int, scale (O,)), e.g. from
        quantization-aware training; the method's projection is then skipped (the
        certificate is still computed from q, and a certified method's q must pass it).
    act_scales:
        Output scale per node name (QAT's learned ones) instead of the calibrated ones.
    reference:
        The float network's statistics on ``calib`` (:func:`float_reference`), when the
        caller already has them.
    """
    graph = _as_graph(graph)
    cfg = spec.cfg
    pow2 = spec.scale_style == "pow2"
    _check_quantizable(graph)
    if calib is None:
        if graph.input_shape != digits_split().x_train.shape[1:]:
            raise QuantError(f"{graph.name or 'the graph'}: give calibration images (calib=)")
        calib = digits_split().x_train[: spec.calibration]
    calib = np.asarray(calib)
    started = time.perf_counter()
    fmt = {
        graph.input: _input_format(
            calib, cfg.replace(act_bits=spec.input_bits or cfg.act_bits), pow2
        )
    }
    # float64, exactly as oasa.sim.network.quantize_input does (pixel 8/16 is a tie at 1/15)
    x0 = np.floor(calib.astype(np.float64) / fmt[graph.input].scale + 0.5)
    values = {graph.input: np.clip(x0, *fmt[graph.input].range).astype(np.int64)}
    if reference is None:
        reference = float_reference(graph, calib)
    layers: list[Layer] = []
    logit_scale = 1.0
    last_read = {t: i for i, n in enumerate(graph.nodes) for t in n.inputs}
    for i, node in enumerate(graph.nodes):
        ins = [fmt[t] for t in node.inputs]
        shape = graph.shapes[node.output]
        if node.op in ("maxpool", "flatten"):
            fmt[node.output] = Tensor(shape, ins[0].bits, ins[0].signed, ins[0].scale)
            layer = Layer(node.op, (), (), name=node.name, kernel=node.kernel,
                          stride=node.stride, padding=node.padding, inputs=node.inputs,
                          output=node.output)  # fmt: skip
        elif node.op in ("add", "avgpool"):
            layer, fmt[node.output] = _quantize_host(graph, node, ins, values, spec, act_scales)
        elif node.output == graph.output:
            layer, acc_scale, _ = _quantize_weighted(
                node, values[node.inputs[0]], ins[0], spec, reference, weights
            )
            if node.op != "dense" or node.relu:
                raise QuantError(
                    f"{node.describe()}: the network must end in a dense layer without activation"
                )
            layer.requant = False
            logit_scale = float(acc_scale.max())
            layer.mult, layer.shift = _ratio(acc_scale / logit_scale, layer.cfg, pow2)
            fmt[node.output] = Tensor(shape, layer.acc_bits, True, None)
        else:
            layer, acc_scale, acc = _quantize_weighted(
                node, values[node.inputs[0]], ins[0], spec, reference, weights
            )
            signed = not node.relu
            bits = _tensor_bits(graph, node.output, spec)
            z = acc_scale * (acc + layer.bias)
            if node.relu:
                z = np.maximum(z, 0)
            if node.clip is not None:
                z = np.minimum(z, node.clip)
            if act_scales is not None and node.name in act_scales:
                s_y = float(act_scales[node.name])
            else:
                s_y = _act_scale(z, bits, signed, pow2)
            layer.mult, layer.shift = _ratio(acc_scale / s_y, layer.cfg, pow2)
            layer.extra["out_scale"] = s_y
            fmt[node.output] = Tensor(shape, bits, signed, s_y)
        layer.in_shape, layer.out_shape = graph.shapes[node.inputs[0]], shape
        if layer.has_weights:
            layer.wc_lo, layer.wc_hi, _ = certificate(layer)
        layers.append(layer)
        if node.output != graph.output:
            values[node.output], _ = layer_forward(
                layer, *(values[t] for t in node.inputs), out_range=fmt[node.output].range
            )
        for t in node.inputs:  # drop what no later node reads
            if last_read[t] == i:
                values.pop(t, None)
    net = Network(
        layers=layers,
        input_shape=graph.input_shape,
        input_scale=fmt[graph.input].scale,
        method=spec.method,
        scales=spec.scale_style,
        logit_scale=logit_scale,
        tensors=fmt,
        input=graph.input,
        output=graph.output,
        info={
            **({"model": graph.name} if graph.name else {}),
            "calibration_images": len(calib),
            "bias_correction": spec.bias_correction,
            "ptq_seconds": round(time.perf_counter() - started, 3),
            **(info or {}),
        },
    )
    net.guarantee = _guarantee(net, spec)
    return net


def _check_quantizable(graph: FloatGraph) -> None:
    """What the integer side cannot express, refused before any work, naming the node."""
    last = graph.producer(graph.output)
    if last is None or last.op != "dense" or last.relu or last.clip is not None:
        raise QuantError(
            f"the graph's output must be a dense layer without activation (its logits); "
            f"{last.describe() if last else 'nothing'} writes {graph.output!r}"
        )
    for node in graph.nodes:
        if node.op in ("maxpool", "avgpool", "flatten") and (node.relu or node.clip is not None):
            raise QuantError(
                f"{node.describe()}: an activation after a {node.op} is not supported; apply "
                "it before (ReLU commutes with max pooling)"
            )


def _ratio(ratio: NDArray, cfg: ArrayConfig, pow2: bool):
    return pow2_ratio(ratio, cfg) if pow2 else dyadic(ratio, cfg)


def _quantize_host(
    graph: FloatGraph,
    node: FloatNode,
    ins: list[Tensor],
    values: dict[str, NDArray],
    spec: QuantSpec,
    act_scales: dict[str, float] | None,
) -> tuple[Layer, Tensor]:
    """An add or average pool: its output format and the one-rounding rescale."""
    pow2 = spec.scale_style == "pow2"
    shape = graph.shapes[node.output]
    layer = Layer(node.op, (), (), name=node.name, kernel=node.kernel, stride=node.stride,
                  padding=node.padding, relu=node.relu, inputs=node.inputs,
                  output=node.output)  # fmt: skip
    if node.op == "avgpool":  # the average of a tensor stays in its range: keep its format
        x = ins[0]
        out = Tensor(shape, x.bits, x.signed, x.scale)
        kk = node.kernel[0] * node.kernel[1]
        if pow2 and kk & (kk - 1):
            raise QuantError(
                f"{node.describe()}: a {node.kernel[0]}x{node.kernel[1]} average needs a "
                "non-power-of-two divisor; use --scales dyadic"
            )
        layer.mult, layer.shift = host_dyadic([1.0 / kk], pow2)
        return layer, out
    a, b = (values[t].astype(np.float64) * f.scale for t, f in zip(node.inputs, ins, strict=True))
    z = a + b
    signed = not node.relu
    if node.relu:
        z = np.maximum(z, 0)
    if node.clip is not None:
        z = np.minimum(z, node.clip)
    bits = _tensor_bits(graph, node.output, spec)
    if act_scales is not None and node.name in act_scales:
        s_y = float(act_scales[node.name])
    else:
        s_y = _act_scale(z, bits, signed, pow2)
    layer.mult, layer.shift = host_dyadic([ins[0].scale / s_y, ins[1].scale / s_y], pow2)
    layer.extra = {"out_scale": s_y}
    return layer, Tensor(shape, bits, signed, s_y)


def _guarantee(net: Network, spec: QuantSpec) -> str:
    safe = all(int(certificate(layer)[2].max()) <= layer.acc_bits for _, layer in net.weighted)
    if spec.method in methods.CERTIFIED_METHODS and not safe:
        raise QuantError(f"internal error: {spec.method} produced weights its certificate rejects")
    if safe:
        return "certified"
    return "data-dependent" if spec.method == "oaq" else "none"
