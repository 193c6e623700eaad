"""Window geometry shared by the integer golden model and the float graph: im2col and
pooling windows for any dtype, with per-axis kernels, strides and asymmetric padding.

One implementation serves both sides, so the float reference a quantizer calibrates on and
the integer network it exports cut their windows the same way. Padding is given as ONNX
does, (top, left, bottom, right).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from oasa.errors import InputError

__all__ = [
    "Pads",
    "as_pads",
    "as_pair",
    "im2col",
    "output_size",
    "pool_windows",
]

Pads = tuple[int, int, int, int]  # top, left, bottom, right


def as_pair(v: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    """``3`` -> (3, 3); ``(3, 1)`` stays."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(a) for a in v)
    if len(t) != 2:
        raise InputError(f"expected one value or two (height, width), got {list(v)}")
    return t  # type: ignore[return-value]


def as_pads(v: int | tuple[int, ...] | list[int]) -> Pads:
    """``1`` -> (1, 1, 1, 1); ``(ph, pw)`` -> (ph, pw, ph, pw); four values stay."""
    if isinstance(v, (int, np.integer)):
        return (int(v),) * 4  # type: ignore[return-value]
    t = tuple(int(a) for a in v)
    if len(t) == 2:
        return (t[0], t[1], t[0], t[1])
    if len(t) != 4:
        raise InputError(
            f"padding takes 1, 2 or 4 values (top, left, bottom, right), got {list(v)}"
        )
    return t  # type: ignore[return-value]


def output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    """Output length along one axis (floor mode, as ONNX and PyTorch by default)."""
    if kernel < 1 or stride < 1 or pad_before < 0 or pad_after < 0:
        raise InputError(
            f"kernel {kernel} and stride {stride} must be >= 1 and padding >= 0 "
            f"(got {pad_before}, {pad_after})"
        )
    out = (size + pad_before + pad_after - kernel) // stride + 1
    if out < 1:
        raise InputError(
            f"kernel {kernel} with stride {stride} and padding ({pad_before}, {pad_after}) "
            f"does not fit input size {size}"
        )
    return out


def _windows(
    x: NDArray, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads, value
) -> NDArray:
    """(B, C, Ho, Wo, kh, kw) view of the padded input's windows."""
    kh, kw = kernel
    sh, sw = stride
    t, lft, b, r = pads
    ho = output_size(x.shape[2], kh, sh, t, b)
    wo = output_size(x.shape[3], kw, sw, lft, r)
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (lft, r)), constant_values=value)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    return win[:, :, : sh * ho : sh, : sw * wo : sw]


def im2col(
    x: NDArray,
    kernel: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    pads: Pads = (0, 0, 0, 0),
    groups: int = 1,
) -> NDArray:
    """An NCHW tensor as the GEMM operand of a convolution, in its own dtype.

    Returns (groups, B * Ho * Wo, C / groups * kh * kw). Rows are ordered (b, oy, ox);
    columns, which are the accumulation order k, are ordered (c, ky, kx) within the group,
    matching ``weight.reshape(O, -1)`` of an (O, C / groups, kh, kw) kernel. Padding
    inserts zeros.
    """
    b, c = x.shape[:2]
    if c % groups:
        raise InputError(f"{c} input channels do not split into {groups} groups")
    win = _windows(x, kernel, stride, pads, 0)
    ho, wo = win.shape[2], win.shape[3]
    cg = c // groups
    win = win.reshape(b, groups, cg, ho, wo, *kernel)
    cols = win.transpose(1, 0, 3, 4, 2, 5, 6)  # g, b, oy, ox, c, ky, kx
    return cols.reshape(groups, b * ho * wo, cg * kernel[0] * kernel[1])


def pool_windows(
    x: NDArray, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads, value
) -> NDArray:
    """(B, C, Ho, Wo, kh * kw) windows for pooling; the padding holds ``value`` (0 for a
    sum, the dtype's lowest value for a maximum)."""
    win = _windows(x, kernel, stride, pads, value)
    return win.reshape(*win.shape[:4], -1)


def node_output_shape(
    op: str,
    ins: list[tuple[int, ...]],
    *,
    kernel: tuple[int, int] = (1, 1),
    stride: tuple[int, int] = (1, 1),
    padding: Pads = (0, 0, 0, 0),
    groups: int = 1,
    weight_shape: tuple[int, ...] | None = None,
) -> tuple[int, ...]:
    """The output shape (without the batch axis) of one graph operator, or
    :class:`InputError` saying why its inputs or attributes do not fit. Float graphs and
    integer networks both check their nodes with it."""
    want = 2 if op == "add" else 1
    if len(ins) != want:
        raise InputError(f"takes {want} input(s), got {len(ins)}")
    x = tuple(ins[0])
    if op == "add":
        if tuple(ins[1]) != x:
            raise InputError(f"input shapes {x} and {tuple(ins[1])} differ")
        return x
    if op == "flatten":
        return (int(np.prod(x)),)
    if op == "dense":
        k = int(np.prod(x))
        if weight_shape is None or len(weight_shape) != 2 or weight_shape[1] != k:
            raise InputError(f"weight {weight_shape} does not take {k} inputs")
        return (int(weight_shape[0]),)
    if len(x) != 3:
        raise InputError(f"needs a (C, H, W) input, got {x}")
    kh, kw = kernel
    t, lft, b, r = padding
    ho = output_size(x[1], kh, stride[0], t, b)
    wo = output_size(x[2], kw, stride[1], lft, r)
    if op != "conv2d":
        if any(p >= k for p, k in zip(padding, (kh, kw, kh, kw), strict=True)):
            raise InputError(f"padding {padding} must be smaller than the kernel {kernel}")
        return (x[0], ho, wo)
    ws = tuple(weight_shape or ())
    if len(ws) != 4 or groups < 1 or x[0] % groups or ws[0] % groups or ws[1] * groups != x[0]:
        raise InputError(f"weight {ws} with {groups} group(s) does not take {x[0]} input channels")
    if ws[2:] != (kh, kw):
        raise InputError(f"weight {ws} but kernel {kernel}")
    return (ws[0], ho, wo)
