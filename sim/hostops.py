"""The integer operators that run on the host between accelerator calls: max and average
pooling and the residual add. They complete the arithmetic contract of the golden model
(:mod:`oasa.sim.golden` holds the GEMM and the output stage) for graph networks.

- maxpool: the maximum over each window; padding never wins (ONNX pads with -inf).
- avgpool: the exact integer sum over each kh x kw window, the padding counting as zeros,
  then one dyadic rescale y = clamp(floor(sum * m / 2**s + 1/2)), m / 2**s approximating
  s_in / (s_out * kh * kw). An average that leaves the padding out of its count has no
  single divisor and is refused where networks are built.
- add: y = clamp(floor((a * m_a + b * m_b) / 2**s + 1/2)), one multiplier per input and a
  shared shift, so the sum is rounded once.

The clamp is to the output tensor's integer format; ``relu`` clamps at 0 first.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from oasa.sim import ops
from oasa.sim.golden import round_shift

__all__ = ["add", "avgpool", "maxpool"]


def maxpool(
    x: NDArray[np.int64], kernel: tuple[int, int], stride: tuple[int, int], padding: ops.Pads
) -> NDArray[np.int64]:
    """Window maxima of an integer NCHW tensor."""
    low = np.iinfo(np.int64).min
    return ops.pool_windows(np.asarray(x, np.int64), kernel, stride, padding, low).max(axis=-1)


def avgpool(
    x: NDArray[np.int64],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: ops.Pads,
    *,
    mult: int,
    shift: int,
    out_range: tuple[int, int],
) -> NDArray[np.int64]:
    """clamp(floor(window sum * mult / 2**shift + 1/2)) of an integer NCHW tensor."""
    total = ops.pool_windows(np.asarray(x, np.int64), kernel, stride, padding, 0).sum(axis=-1)
    return np.clip(round_shift(total * int(mult), int(shift)), *out_range)


def add(
    a: NDArray[np.int64],
    b: NDArray[np.int64],
    *,
    mult: tuple[int, int],
    shift: int,
    out_range: tuple[int, int],
    relu: bool = False,
) -> NDArray[np.int64]:
    """clamp(floor((a * m_a + b * m_b) / 2**shift + 1/2)): a residual add rounded once.

    >>> add(np.array([3, -3]), np.array([1, 1]), mult=(2, 1), shift=1, out_range=(-8, 7)).tolist()
    [4, -2]
    """
    z = np.asarray(a, np.int64) * int(mult[0]) + np.asarray(b, np.int64) * int(mult[1])
    r = round_shift(z, int(shift))
    if relu:
        r = np.maximum(r, 0)
    return np.clip(r, *out_range)
