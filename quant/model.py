"""The digits benchmark network in float, trained with plain numpy (no torch needed).

conv3x3 pad 1 (1 -> 32), ReLU, conv3x3 pad 1 (32 -> 64), ReLU, maxpool 2, flatten (1024,
in C, H, W order), dense 1024 -> 64, ReLU, dense 64 -> 10; all with biases.

Training is deterministic (fixed seed, fixed minibatch order, float32 numpy) and takes a
few seconds on one core, so the demo needs neither torch nor a download. The trained
parameters are cached in ``$XDG_CACHE_HOME/oasa`` (default ``~/.cache/oasa``), keyed by a
hash of the training recipe, so a second run loads them at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from oasa.errors import InputError
from oasa.files import atomic_write, cache_dir, check_input_file
from oasa.quant.data import digits_split
from oasa.quant.graph import FloatGraph, FloatNode

__all__ = [
    "ARCH",
    "Recipe",
    "accuracy",
    "conv_cols",
    "digits_graph",
    "forward",
    "init_params",
    "load_or_train",
    "load_params",
    "save_params",
    "train",
]

# The layer list every part of quant/ walks: weighted layers are named, maxpool is not.
ARCH: tuple[dict, ...] = (
    {"kind": "conv2d", "name": "conv1", "in": 1, "out": 32, "kernel": 3, "pad": 1, "relu": True},
    {"kind": "conv2d", "name": "conv2", "in": 32, "out": 64, "kernel": 3, "pad": 1, "relu": True},
    {"kind": "maxpool", "kernel": 2},
    {"kind": "dense", "name": "dense1", "in": 1024, "out": 64, "relu": True},
    {"kind": "dense", "name": "dense2", "in": 64, "out": 10, "relu": False},
)
INPUT_SHAPE = (1, 8, 8)


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the trained float parameters."""

    seed: int = 0
    epochs: int = 20
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    validation: bool = False  # train on the training part minus the validation split

    def key(self) -> str:
        text = json.dumps({"v": 1, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


Params = dict[str, NDArray[np.float32]]


def digits_graph(params: Params) -> FloatGraph:
    """The digits network as a :class:`~oasa.quant.graph.FloatGraph` (what the quantizers
    walk), node names as in :data:`ARCH`."""
    nodes, x = [], "image"
    for spec in ARCH:
        name = spec.get("name", "pool")
        if spec["kind"] == "maxpool":
            k = spec["kernel"]
            nodes.append(FloatNode("maxpool", name, (x,), name, kernel=(k, k), stride=(k, k)))
        else:
            k = spec.get("kernel", 1)
            nodes.append(
                FloatNode(
                    spec["kind"],
                    name,
                    (x,),
                    name,
                    weight=np.asarray(params[f"{name}.weight"], np.float64),
                    bias=np.asarray(params[f"{name}.bias"], np.float64),
                    kernel=(k, k),
                    padding=(spec.get("pad", 0),) * 4,
                    relu=spec["relu"],
                )
            )
        x = name
    return FloatGraph("image", INPUT_SHAPE, x, nodes, name="digits")


def init_params(rng: np.random.Generator) -> Params:
    """He-normal weights, zero biases."""
    p: Params = {}
    for spec in ARCH:
        if spec["kind"] == "maxpool":
            continue
        name = spec["name"]
        if spec["kind"] == "conv2d":
            shape = (spec["out"], spec["in"], spec["kernel"], spec["kernel"])
        else:
            shape = (spec["out"], spec["in"])
        fan_in = int(np.prod(shape[1:]))
        p[f"{name}.weight"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(
            np.float32
        )
        p[f"{name}.bias"] = np.zeros(spec["out"], dtype=np.float32)
    return p


def conv_cols(x: NDArray, kernel: int, pad: int) -> NDArray:
    """im2col for float NCHW input, stride 1: (B * H * W, C * k * k), columns ordered
    (c, ky, kx) like :func:`oasa.sim.golden.im2col`."""
    b, c = x.shape[:2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (kernel, kernel), axis=(2, 3))  # B, C, Ho, Wo, k, k
    ho, wo = win.shape[2], win.shape[3]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, c * kernel * kernel)


def _col2im(dcols: NDArray, shape: tuple[int, ...], kernel: int, pad: int) -> NDArray:
    b, c, h, w = shape
    d = dcols.reshape(b, h, w, c, kernel, kernel)
    dxp = np.zeros((b, c, h + 2 * pad, w + 2 * pad), dtype=dcols.dtype)
    for ky in range(kernel):
        for kx in range(kernel):
            dxp[:, :, ky : ky + h, kx : kx + w] += d[:, :, :, :, ky, kx].transpose(0, 3, 1, 2)
    return dxp[:, :, pad : pad + h, pad : pad + w]


def maxpool(x: NDArray, k: int) -> NDArray:
    """k x k max-pooling, stride k, of an NCHW array (any dtype, integers included)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // k, k, w // k, k).max(axis=(3, 5))


def forward(params: Params, x: NDArray, *, cache: list | None = None) -> NDArray[np.float32]:
    """Logits (B, 10) of images (B, 1, 8, 8). With ``cache`` (a list), keep what
    :func:`_backward` needs."""
    h = x.astype(np.float32)
    for spec in ARCH:
        kind = spec["kind"]
        if kind == "maxpool":
            out = maxpool(h, spec["kernel"])
            if cache is not None:
                cache.append(("maxpool", h, out))
            h = out
            continue
        wt, bias = params[f"{spec['name']}.weight"], params[f"{spec['name']}.bias"]
        if kind == "conv2d":
            b, _, hh, ww = h.shape
            cols = conv_cols(h, spec["kernel"], spec["pad"])
            z = cols @ wt.reshape(wt.shape[0], -1).T + bias
            out = z.reshape(b, hh, ww, -1).transpose(0, 3, 1, 2)
            if cache is not None:
                cache.append(("conv2d", spec, h.shape, cols))
        else:
            inp = h.reshape(h.shape[0], -1)
            out = inp @ wt.T + bias
            if cache is not None:
                cache.append(("dense", spec, h.shape, inp))
        if spec["relu"]:
            out = np.maximum(out, 0)
            if cache is not None:
                cache.append(("relu", out > 0))
        h = out
    return h


def _backward(params: Params, cache: list, dlogits: NDArray) -> Params:
    grads: Params = {}
    d = dlogits
    for item in reversed(cache):
        kind = item[0]
        if kind == "relu":
            d = d * item[1]
        elif kind == "maxpool":
            _, inp, out = item
            k = inp.shape[2] // out.shape[2]
            up = np.repeat(np.repeat(out, k, axis=2), k, axis=3)
            mask = inp == up
            # Route each gradient to one maximum (the first), as a real max would.
            first = mask.copy()
            b, c, h, w = inp.shape
            m6 = first.reshape(b, c, h // k, k, w // k, k).transpose(0, 1, 2, 4, 3, 5)
            m6 = m6.reshape(b, c, h // k, w // k, k * k)
            once = np.zeros_like(m6)
            np.put_along_axis(once, m6.argmax(axis=-1)[..., None], True, axis=-1)
            once = once.reshape(b, c, h // k, w // k, k, k).transpose(0, 1, 2, 4, 3, 5)
            once = once.reshape(b, c, h, w)
            d = np.repeat(np.repeat(d, k, axis=2), k, axis=3) * once
        elif kind == "dense":
            _, spec, shape, inp = item
            name = spec["name"]
            grads[f"{name}.weight"] = d.T @ inp
            grads[f"{name}.bias"] = d.sum(axis=0)
            d = (d @ params[f"{name}.weight"]).reshape(shape)
        else:  # conv2d
            _, spec, shape, cols = item
            name = spec["name"]
            wt = params[f"{name}.weight"]
            dz = d.transpose(0, 2, 3, 1).reshape(-1, wt.shape[0])
            grads[f"{name}.weight"] = (dz.T @ cols).reshape(wt.shape)
            grads[f"{name}.bias"] = dz.sum(axis=0)
            if spec["in"] > 1:  # the input image needs no gradient
                d = _col2im(dz @ wt.reshape(wt.shape[0], -1), shape, spec["kernel"], spec["pad"])
    return grads


def accuracy(params: Params, x: NDArray, y: NDArray, batch: int = 512) -> float:
    """Top-1 accuracy in percent."""
    hits = 0
    for i in range(0, len(x), batch):
        hits += int((forward(params, x[i : i + batch]).argmax(axis=1) == y[i : i + batch]).sum())
    return 100.0 * hits / len(x)


def train(recipe: Recipe = Recipe(), *, log=None) -> Params:
    """Adam on softmax cross-entropy, cosine learning-rate decay, fixed minibatch order."""
    split = digits_split(validation=recipe.validation)
    x, y = split.x_train, split.y_train
    rng = np.random.default_rng(recipe.seed)
    params = init_params(rng)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    b1, b2, eps = 0.9, 0.999, 1e-8
    steps_per_epoch = -(-len(x) // recipe.batch)
    total = recipe.epochs * steps_per_epoch
    t = 0
    for epoch in range(recipe.epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(x), recipe.batch):
            idx = order[i : i + recipe.batch]
            cache: list = []
            logits = forward(params, x[idx], cache=cache)
            z = logits - logits.max(axis=1, keepdims=True)
            prob = np.exp(z)
            prob /= prob.sum(axis=1, keepdims=True)
            prob[np.arange(len(idx)), y[idx]] -= 1
            grads = _backward(params, cache, (prob / len(idx)).astype(np.float32))
            t += 1
            lr = recipe.lr * 0.5 * (1 + np.cos(np.pi * (t - 1) / total))
            for k in params:
                g = grads[k]
                if k.endswith(".weight"):
                    g = g + recipe.weight_decay * params[k]
                m[k] = b1 * m[k] + (1 - b1) * g
                v[k] = b2 * v[k] + (1 - b2) * g * g
                mh = m[k] / (1 - b1**t)
                vh = v[k] / (1 - b2**t)
                params[k] = (params[k] - lr * mh / (np.sqrt(vh) + eps)).astype(np.float32)
        if log is not None:
            log(f"epoch {epoch + 1}/{recipe.epochs}: train {accuracy(params, x, y):.2f} %")
    return params


def save_params(params: Params, path: str | os.PathLike, recipe: Recipe | None = None) -> None:
    """Write atomically (a temporary file renamed), so parallel runs never see half a file."""
    meta = json.dumps({"recipe": asdict(recipe) if recipe else None})
    with atomic_write(path) as f:
        np.savez(f, __meta__=np.array(meta), **params)


def load_params(path: str | os.PathLike) -> Params:
    """Float parameters saved by :func:`save_params`; raises :class:`InputError` naming
    what is wrong (missing, a folder, not an .npz, truncated, another model's)."""
    p = check_input_file(path)
    if not zipfile.is_zipfile(p):
        raise InputError(f"{path}: not a float checkpoint (not an .npz archive)")
    try:
        with np.load(p, allow_pickle=False) as f:
            if "meta" in f.files:
                raise InputError(
                    f"{path}: is an oasa network file, not a float checkpoint "
                    "(write one with `oasa train -o FILE`)"
                )
            arrays = {k: f[k] for k in f.files if k != "__meta__"}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        if isinstance(e, InputError):
            raise

        raise InputError(
            f"{path}: not a readable float checkpoint (corrupt or truncated: {e})"
        ) from None
    want = init_params(np.random.default_rng(0))
    params = {
        k: a.astype(np.float32)
        for k, a in arrays.items()
        if np.issubdtype(a.dtype, np.number) and not np.issubdtype(a.dtype, np.complexfloating)
    }
    for k, v in want.items():
        if k not in params or params[k].shape != v.shape:
            raise InputError(
                f"{path}: not a checkpoint of the digits model ({k} missing or mis-shaped); "
                "write one with `oasa train -o FILE`"
            )
    if not all(np.isfinite(v).all() for v in params.values()):
        raise InputError(f"{path}: the checkpoint holds NaN or infinite weights")
    return params


def load_or_train(
    recipe: Recipe = Recipe(), *, retrain: bool = False, log=None
) -> tuple[Params, Path, bool]:
    """The cached float parameters for ``recipe``, training them first if needed.

    Returns (params, checkpoint path, whether it was trained now).
    """
    path = cache_dir() / f"digits_float_{recipe.key()}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    # One trainer at a time (parallel test workers): the others wait, then load.
    with open(path.with_suffix(".lock"), "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        if path.is_file() and not retrain:
            try:
                return load_params(path), path, False
            except InputError:
                pass  # a damaged cache entry is simply rebuilt
        params = train(recipe, log=log)
        save_params(params, path, recipe)
    return params, path, True
