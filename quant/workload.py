"""What a quantizer works on: a float network and its data, with hashes that name them.

Without a model file this is the digits benchmark (the cached float CNN and scikit-learn's
digits split); with one, an ONNX model (:func:`oasa.quant.onnx_import.load_onnx`) and the
user's ``--data`` file (:func:`oasa.quant.data.load_data`). The hashes go into the sweep's
cache keys, so a sweep of another model or other data never reuses a point.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oasa.errors import InputError
from oasa.quant.data import Split, digits_split, load_data
from oasa.quant.graph import FloatGraph

__all__ = ["Workload", "digits_workload", "file_hash", "load_workload"]


@dataclass(frozen=True)
class Workload:
    """A float graph, its data, and what identifies them."""

    graph: FloatGraph
    split: Split
    model: str  # "digits" or the model file's path
    model_hash: str
    data_hash: str
    params: dict | None = None  # the digits model's parameters (what its QAT starts from)

    @property
    def classes(self) -> int:
        return self.graph.shapes[self.graph.output][0]

    def float_accuracy(self) -> float:
        """Top-1 accuracy of the float graph on the test part, in percent."""
        hits = 0
        x, y = self.split.x_test, self.split.y_test
        for i in range(0, len(x), 512):
            hits += int((self.graph.forward(x[i : i + 512]).argmax(axis=1) == y[i : i + 512]).sum())
        return 100.0 * hits / len(x)

    def calibration(self, images: int) -> np.ndarray:
        if self.split.x_train is None:
            raise InputError("quantizing needs the data file's training part (x_train, y_train)")
        return self.split.x_train[:images]


def file_hash(*paths: str | Path) -> str:
    """First 16 hex digits of the SHA-256 of the files' bytes (and an ONNX model's
    external-data file next to it, when there is one)."""
    h = hashlib.sha256()
    for path in paths:
        p = Path(path)
        h.update(p.read_bytes())
        data = p.with_name(p.name + ".data")
        if data.is_file():
            h.update(data.read_bytes())
    return h.hexdigest()[:16]


def digits_workload(seed: int = 0, *, log=None) -> Workload:
    """The digits benchmark: the cached float CNN (trained on first use) and its split."""
    from oasa.quant import model

    recipe = model.Recipe(seed=seed)
    params, _, _ = model.load_or_train(recipe, log=log)
    return Workload(
        graph=model.digits_graph(params),
        split=digits_split(),
        model="digits",
        model_hash=f"digits-{recipe.key()}",
        data_hash="digits",
        params=params,
    )


def load_workload(
    model_path: str | None, data_path: str | None, *, need_train: bool, seed: int = 0, log=None
) -> Workload:
    """The digits benchmark, or an ONNX model with the user's data; ``--model`` needs
    ``--data`` (the digits data would not fit another model)."""
    if model_path is None:
        if data_path is not None:
            split = load_data(data_path, need_train=need_train)
            w = digits_workload(seed, log=log)
            split.check_fits(w.graph.input_shape, w.classes, str(data_path))
            return Workload(w.graph, split, w.model, w.model_hash, file_hash(data_path), w.params)
        return digits_workload(seed, log=log)
    if data_path is None:
        raise InputError(
            f"--model {model_path}: give its data with --data DATA.npz (x_train, y_train, "
            "x_test, y_test; the digits data does not fit another model)"
        )
    from oasa.quant.onnx_import import load_onnx

    graph = load_onnx(model_path)
    split = load_data(data_path, need_train=need_train)
    classes = graph.shapes[graph.output][0]
    split.check_fits(graph.input_shape, classes, str(data_path))
    return Workload(graph, split, str(model_path), file_hash(model_path), file_hash(data_path))
