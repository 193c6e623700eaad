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
from oasa.quant.model import ARCH, INPUT_SHAPE, Params, conv_cols, maxpool
from oasa.sim import golden
from oasa.sim.certificates import certificate
from oasa.sim.netfile import Layer, Network
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

    def __post_init__(self) -> None:
        if self.method not in methods.METHODS:
            raise QuantError(
                f"unknown method {self.method!r}: choose one of {', '.join(methods.METHODS)}"
            )
        if self.scales not in SCALE_STYLES:
            raise QuantError(
                f"unknown scale style {self.scales!r}: choose one of {', '.join(SCALE_STYLES)}"
            )
        if not isinstance(self.cfg, ArrayConfig):
            raise QuantError(f"cfg must be an ArrayConfig, got {type(self.cfg).__name__}")
        cfg = self.cfg
        if cfg.act_signed:
            raise QuantError(
                "the quantizer makes unsigned activations (the digits network's ReLU outputs): "
                "act_signed must be False"
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
    return ((s[:, None] * q - w) ** 2 * h[None, :]).sum(axis=1)


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


def _oaq_weights(w, cfg, h, cols_int):
    """One power-of-two scale for the layer: the least-error one, coarsened until the
    calibration data does not overflow the accumulator."""
    base = max(float(np.abs(w).max()) / cfg.weight_max, 1e-12)
    exps = np.arange(np.floor(np.log2(base * 0.25)), np.ceil(np.log2(base * 8)) + 1)
    errs = []
    for e in exps:
        s = np.full(w.shape[0], 2.0**e)
        errs.append(_weighted_error(w, methods.rtn_project(w, s, cfg), s, h).sum())
    e = exps[int(np.argmin(errs))]
    cols = cols_int.astype(np.float64)
    for _ in range(24):
        s = np.full(w.shape[0], 2.0**e)
        q = methods.rtn_project(w, s, cfg)
        qf = q.T.astype(np.float64)
        exact = cols @ qf  # exact in float64: every sum is far below 2**53
        if ((exact > cfg.acc_max) | (exact < cfg.acc_min)).any():
            e += 1  # a final sum overflows: certainly flagged
            continue
        pos, neg = cols @ np.maximum(qf, 0), cols @ np.maximum(-qf, 0)
        if (pos <= cfg.acc_max).all() and (-neg >= cfg.acc_min).all():
            return q, s  # no prefix can leave the range, in any order
        if not golden.gemm(cols_int, q.T, cfg=cfg).overflow.any():
            return q, s
        e += 1
    raise QuantError("oaq: no power-of-two scale avoids overflow on the calibration data")


# -- the pipeline ---------------------------------------------------------------------------


def _act_scale(z: NDArray, cfg: ArrayConfig, pow2: bool) -> float:
    """Scale of unsigned N-bit activations minimising the quantization MSE of z >= 0."""
    flat = z.ravel()
    if flat.size > 200_000:
        flat = flat[:: flat.size // 200_000 + 1]
    top = float(flat.max())
    if top <= 0:
        return 1.0
    levels = cfg.act_max
    if pow2:
        e0 = math.floor(math.log2(top / levels)) - 3
        cands = [2.0 ** (e0 + k) for k in range(5)]
    else:
        cands = [top * f / levels for f in np.linspace(0.2, 1.0, 41)]
    best, best_err = cands[0], math.inf
    for s in cands:
        err = float(((np.clip(np.floor(flat / s + 0.5), 0, levels) * s - flat) ** 2).mean())
        if err < best_err:
            best, best_err = s, err
    return best


def _float_layer(spec: dict, params: Params, x: NDArray) -> tuple[NDArray, NDArray]:
    """(GEMM input rows, float output after ReLU) of one float layer."""
    w, b = params[f"{spec['name']}.weight"], params[f"{spec['name']}.bias"]
    if spec["kind"] == "conv2d":
        cols = conv_cols(x, spec["kernel"], spec["pad"]).astype(np.float64)
        y = cols @ w.reshape(w.shape[0], -1).T.astype(np.float64) + b
        out = y.reshape(x.shape[0], x.shape[2], x.shape[3], -1).transpose(0, 3, 1, 2)
    else:
        cols = x.reshape(x.shape[0], -1).astype(np.float64)
        out = cols @ w.T.astype(np.float64) + b
    return cols, (np.maximum(out, 0) if spec["relu"] else out)


@dataclass(frozen=True)
class FloatReference:
    """What PTQ needs from the float network on the calibration images, per weighted
    layer: the input variances h (the weights of the scale search) and the mean input row
    (for bias correction). It does not depend on the method or P, so a sweep computes it
    once and passes it to every :func:`quantize`."""

    h: dict[str, NDArray]
    cols_mean: dict[str, NDArray]


def float_reference(
    params: Params, calib: NDArray, float_weights: dict[str, NDArray] | None = None
) -> FloatReference:
    """Run the float network on ``calib`` and keep :class:`FloatReference`."""
    x_ref = calib.astype(np.float64)
    h, cols_mean = {}, {}
    for spec_l in ARCH:
        if spec_l["kind"] == "maxpool":
            x_ref = maxpool(x_ref, spec_l["kernel"])
            continue
        name = spec_l["name"]
        w = np.asarray((float_weights or {}).get(name, params[f"{name}.weight"]), dtype=np.float64)
        cols_ref, x_ref = _float_layer(spec_l, {**params, f"{name}.weight": w}, x_ref)
        var = cols_ref.var(axis=0)
        h[name] = var + 1e-3 * max(float(var.mean()), 1e-12)
        cols_mean[name] = cols_ref.mean(axis=0)
    return FloatReference(h, cols_mean)


def quantize(
    params: Params,
    spec: QuantSpec,
    *,
    calib: NDArray | None = None,
    weights: dict[str, tuple[NDArray, NDArray]] | None = None,
    float_weights: dict[str, NDArray] | None = None,
    act_scales: dict[str, float] | None = None,
    info: dict | None = None,
    reference: FloatReference | None = None,
) -> Network:
    """Quantize the float network ``params`` as ``spec`` says.

    Parameters
    ----------
    calib:
        Calibration images (B, 1, 8, 8); default the first ``spec.calibration`` training
        images.
    weights:
        Already quantized weights per layer name, (q (O, K) int, scale (O,)), e.g. from
        quantization-aware training; the method's projection is then skipped (the
        certificate is still computed from q, and a certified method's q must pass it).
    float_weights:
        Float weights per layer name used as the bias-correction reference instead of
        ``params`` (QAT passes its fine-tuned weights).
    act_scales:
        Output activation scale per layer name (QAT's learned ones) instead of the
        calibrated ones.
    reference:
        The float network's statistics on ``calib`` (:func:`float_reference`), when the
        caller already has them.
    """
    cfg = spec.cfg
    pow2 = spec.scale_style == "pow2"
    if calib is None:
        calib = digits_split().x_train[: spec.calibration]
    started = time.perf_counter()
    input_scale = 2.0 ** -math.ceil(math.log2(cfg.act_max)) if pow2 else 1.0 / cfg.act_max
    # float64, exactly as oasa.sim.network.quantize_input does (pixel 8/16 is a tie at 1/15)
    x_int = np.clip(np.floor(calib.astype(np.float64) / input_scale + 0.5), 0, cfg.act_max)
    x_int = x_int.astype(np.int64)
    if reference is None:
        reference = float_reference(params, calib, float_weights)
    s_x = input_scale
    shape = INPUT_SHAPE
    layers: list[Layer] = []
    weighted = [s for s in ARCH if s["kind"] != "maxpool"]
    for spec_l in ARCH:
        if spec_l["kind"] == "maxpool":
            k = spec_l["kernel"]
            out_shape = (shape[0], shape[1] // k, shape[2] // k)
            layer = Layer("maxpool", shape, out_shape, name="pool", kernel=k)
            layers.append(layer)
            x_int, _ = layer_forward(layer, x_int, cfg=cfg)
            shape = out_shape
            continue
        name = spec_l["name"]
        last = spec_l is weighted[-1]
        w = np.asarray((float_weights or {}).get(name, params[f"{name}.weight"]), dtype=np.float64)
        b = np.asarray(params[f"{name}.bias"], dtype=np.float64)
        o = w.shape[0]
        w2 = w.reshape(o, -1)
        if spec_l["kind"] == "conv2d":
            k = spec_l["kernel"]
            cols_int = golden.im2col(x_int, (k, k), stride=1, padding=spec_l["pad"])
            out_shape = (o, shape[1], shape[2])
        else:
            cols_int = x_int.reshape(len(x_int), -1)
            out_shape = (o,)
            shape = (cols_int.shape[1],)  # dense layers flatten (C, H, W) in C order
        h = reference.h[name]
        if weights is not None and name in weights:
            q, s_w = (np.asarray(a) for a in weights[name])
            q = q.reshape(o, -1).astype(np.int64)
            s_w = s_w.astype(np.float64)
        elif spec.method == "oaq":
            q, s_w = _oaq_weights(w2, cfg, h, cols_int)
        else:
            q, s_w = search_scales(w2, spec.method, cfg, h, pow2=pow2)
        # Bias correction: match the float layer's mean output on the calibration data.
        acc_scale = s_x * s_w
        if spec.bias_correction:
            mean_ref = reference.cols_mean[name] @ w2.T + b
            mean_q = acc_scale * (cols_int.mean(axis=0) @ q.T)
            b_eff = mean_ref - mean_q
        else:
            b_eff = b
        bias = np.clip(np.rint(b_eff / acc_scale), cfg.bias_min, cfg.bias_max).astype(np.int64)
        layer = Layer(
            spec_l["kind"],
            shape,
            out_shape,
            name=name,
            kernel=spec_l.get("kernel", 1),
            stride=1,
            padding=spec_l.get("pad", 0),
            cfg=cfg.arithmetic(),
            relu=spec_l["relu"],
            requant=not last,
            method=spec.method,
            weight=q.reshape(w.shape).astype(np.int8),
            bias=bias,
        )
        if last:
            logit_scale = float(acc_scale.max())
            ratio = acc_scale / logit_scale
            layer.extra = {"weight_scale": s_w.tolist(), "in_scale": s_x}
        else:
            acc = cols_int.astype(np.float64) @ q.T.astype(np.float64)
            z = acc_scale * (acc + bias)
            if act_scales is not None and name in act_scales:
                s_y = float(act_scales[name])
            else:
                s_y = _act_scale(np.maximum(z, 0), cfg, pow2)
            ratio = acc_scale / s_y
            layer.extra = {"weight_scale": s_w.tolist(), "in_scale": s_x, "out_scale": s_y}
        layer.mult, layer.shift = pow2_ratio(ratio, cfg) if pow2 else dyadic(ratio, cfg)
        layer.wc_lo, layer.wc_hi, _ = certificate(layer)
        layers.append(layer)
        if not last:
            x_int, _ = layer_forward(layer, x_int, cfg=cfg)
            s_x = s_y
        shape = out_shape
    net = Network(
        layers=layers,
        input_shape=INPUT_SHAPE,
        input_scale=input_scale,
        method=spec.method,
        scales=spec.scale_style,
        logit_scale=logit_scale,
        info={
            "calibration_images": len(calib),
            "bias_correction": spec.bias_correction,
            "ptq_seconds": round(time.perf_counter() - started, 3),
            **(info or {}),
        },
    )
    net.guarantee = _guarantee(net, spec)
    return net


def _guarantee(net: Network, spec: QuantSpec) -> str:
    safe = all(int(certificate(layer)[2].max()) <= layer.acc_bits for _, layer in net.weighted)
    if spec.method in methods.CERTIFIED_METHODS and not safe:
        raise QuantError(f"internal error: {spec.method} produced weights its certificate rejects")
    if safe:
        return "certified"
    return "data-dependent" if spec.method == "oaq" else "none"
