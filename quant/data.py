"""The digits benchmark data: scikit-learn's bundled ``load_digits``, no download.

The split is the one the issue fixes: ``train_test_split(test_size=0.3, random_state=0,
stratify=y)``, pixels / 16, images as (B, 1, 8, 8) float32 in [0, 1]. Hyperparameters are
chosen on a validation split carved out of the training part (:func:`digits_split` with
``validation=True``), never on the test set.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from oasa.errors import InputError
from oasa.files import check_input_file

__all__ = ["VALIDATION_FRACTION", "DataError", "Split", "digits_split", "load_data"]

# Share of the training part held out for hyperparameter choices (stratified, seed 0).
VALIDATION_FRACTION = 0.2


class DataError(InputError):
    """A data file that cannot serve as a model's training or test data."""


@dataclass(frozen=True)
class Split:
    """Inputs ``(B, *input_shape)`` float32 and labels (B,) int64; the training part is None
    for a data file that holds only test data."""

    x_train: NDArray[np.float32] | None
    y_train: NDArray[np.int64] | None
    x_test: NDArray[np.float32]
    y_test: NDArray[np.int64]

    @property
    def has_train(self) -> bool:
        return self.x_train is not None

    def check_fits(self, input_shape: tuple[int, ...], classes: int, where: str) -> None:
        """Refuse data whose inputs do not have the model's shape, or whose labels are not
        classes of its output, with one line naming what differs."""
        for part in ("train", "test") if self.has_train else ("test",):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if tuple(x.shape[1:]) != tuple(input_shape):
                raise DataError(
                    f"{where}: x_{part} holds inputs of shape {tuple(x.shape[1:])}, but the "
                    f"model takes {tuple(input_shape)} (N x {' x '.join(map(str, input_shape))})"
                )
            if y.size and (int(y.min()) < 0 or int(y.max()) >= classes):
                bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
                raise DataError(
                    f"{where}: y_{part} holds label {bad}, but the model has {classes} "
                    f"outputs (labels 0..{classes - 1})"
                )


def load_data(path: str, *, need_train: bool) -> Split:
    """A user's data file (.npz, read without pickle): ``x_train``, ``y_train``, ``x_test``,
    ``y_test``; x float (N x C x H x W, or N x F for a dense-only model), preprocessed as
    the model expects; y 1-D integer labels. The training part is needed for calibration
    and QAT (``need_train``). Any problem is one line (:class:`DataError`)."""
    p = check_input_file(path, "--data")
    if not zipfile.is_zipfile(p):
        raise DataError(f"{path}: not an .npz file (write one with numpy.savez)")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        msg = " ".join(str(e).split())
        raise DataError(f"{path}: not a readable .npz of arrays ({msg})") from None
    parts = ("train", "test") if need_train or "x_train" in arrays else ("test",)
    keys = [f"{v}_{part}" for part in parts for v in ("x", "y")]
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: no {', '.join(missing)} (a data file holds x_train, y_train, x_test, "
            f"y_test{'' if need_train else '; the train part is optional here'})"
        )
    out: dict[str, np.ndarray | None] = {"x_train": None, "y_train": None}
    for part in parts:
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.dtype.kind not in "fiu" or x.ndim < 2:
            raise DataError(
                f"{path}: x_{part} must be a numeric N x ... array, got {x.dtype} {x.shape}"
            )
        if not np.isfinite(x).all():
            raise DataError(f"{path}: x_{part} holds NaN or infinite values")
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise DataError(f"{path}: y_{part} must be 1-D integer labels, got {y.dtype} {y.shape}")
        if len(y) != len(x) or not len(x):
            raise DataError(f"{path}: x_{part} has {len(x)} rows but y_{part} has {len(y)}")
        out[f"x_{part}"] = x.astype(np.float32)
        out[f"y_{part}"] = y.astype(np.int64)
    return Split(**out)  # type: ignore[arg-type]


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
