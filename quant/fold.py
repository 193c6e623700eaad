"""Batch-norm folding: a convolution or dense layer followed by batch normalisation
becomes one layer with new weights and bias, before quantization.

The digits network has no batch norm; models that do are folded with this first.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["fold_batchnorm"]


def fold_batchnorm(
    weight: ArrayLike,
    bias: ArrayLike | None,
    gamma: ArrayLike,
    beta: ArrayLike,
    mean: ArrayLike,
    var: ArrayLike,
    eps: float = 1e-5,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Fold BN(y) = gamma (y - mean) / sqrt(var + eps) + beta into y = w x + b.

    ``weight`` has the output channel first (conv [O, C, kh, kw] or dense [O, K]).
    Returns (w', b') with w' x + b' == BN(w x + b).

    >>> w, b = fold_batchnorm([[1.0, 2.0]], [0.5], [2.0], [1.0], [0.5], [3.0], eps=1.0)
    >>> w.tolist(), b.tolist()
    ([[1.0, 2.0]], [1.0])
    """
    w = np.asarray(weight, dtype=np.float64)
    o = w.shape[0]
    b = np.zeros(o) if bias is None else np.asarray(bias, dtype=np.float64)
    k = np.asarray(gamma, dtype=np.float64) / np.sqrt(np.asarray(var, dtype=np.float64) + eps)
    w_f = w * k.reshape((o,) + (1,) * (w.ndim - 1))
    b_f = (b - np.asarray(mean, dtype=np.float64)) * k + np.asarray(beta, dtype=np.float64)
    return w_f, b_f
