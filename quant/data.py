"""The digits benchmark data: scikit-learn's bundled ``load_digits``, no download.

The split is the one the issue fixes: ``train_test_split(test_size=0.3, random_state=0,
stratify=y)``, pixels / 16, images as (B, 1, 8, 8) float32 in [0, 1]. Hyperparameters are
chosen on a validation split carved out of the training part (:func:`digits_split` with
``validation=True``), never on the test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

__all__ = ["VALIDATION_FRACTION", "Split", "digits_split"]

# Share of the training part held out for hyperparameter choices (stratified, seed 0).
VALIDATION_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    """Images (B, 1, 8, 8) float32 in [0, 1] and labels (B,) int64."""

    x_train: NDArray[np.float32]
    y_train: NDArray[np.int64]
    x_test: NDArray[np.float32]
    y_test: NDArray[np.int64]


@lru_cache(maxsize=2)
def digits_split(validation: bool = False) -> Split:
    """The benchmark split; with ``validation`` the "test" part is the validation split
    carved out of the training data and "train" is the rest of it.

    >>> s = digits_split()
    >>> s.x_train.shape, s.x_test.shape, float(s.x_train.max())
    ((1257, 1, 8, 8), (540, 1, 8, 8), 1.0)
    >>> v = digits_split(validation=True)
    >>> v.x_train.shape[0] + v.x_test.shape[0]
    1257
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    if validation:
        x_tr, x_te, y_tr, y_te = train_test_split(
            x_tr, y_tr, test_size=VALIDATION_FRACTION, random_state=0, stratify=y_tr
        )
    for a in (x_tr, x_te, y_tr, y_te):
        a.setflags(write=False)
    return Split(x_tr, y_tr, x_te, y_te)
