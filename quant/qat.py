"""Quantization-aware training with PyTorch (the optional extra ``train``).

Fine-tunes the float digits network with fake quantization, starting from PTQ (its
per-channel weight scales and activation scales are the initial values), then exports
through the same integer pipeline as PTQ, so the reported accuracy is again measured on
integers with the golden model.

- Straight-through estimator for every rounding; weight scales (per channel) and
  activation scales (per layer) are learned, in the log domain (LSQ-style gradients).
- ``rtn``: free weights, q = clamp(round(w / s)).
- ``a2q``: A2Q's weight normalisation w = g v / ||v||_1 with g clamped to T s, rounded
  toward zero, so ||q||_1 <= T at every step.
- ``a2q+``: A2Q+'s zero-centred normalisation w = g (v - mean v) / ||v - mean v||_1, g
  clamped to T+ s, initialised by Euclidean projection onto the L1 ball, rounded toward
  zero.
- ``exact``: the positive and negative parts normalised separately, w = g+ relu(v) /
  ||relu(v)||_1 - g- relu(-v) / ||relu(-v)||_1 with g+ <= B+ s and g- <= B- s (the two
  budgets of DESIGN.md section 3), initialised by projecting each part onto its budget;
  q is the budget-respecting nearest rounding of :func:`oasa.quant.methods.exact_project`
  (the float weights already fit the budgets, so this is close to plain rounding).

Every step's integer weights satisfy the method's bound, so the exported network is
certified whatever the training did.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oasa.quant import methods, ptq
from oasa.quant.data import digits_split
from oasa.quant.model import ARCH, Params
from oasa.sim.netfile import Network

__all__ = ["QATRecipe", "QuantNet", "train_and_export", "train_qat"]

QAT_METHODS = ("rtn", "a2q", "a2q+", "exact")


@dataclasses.dataclass(frozen=True)
class QATRecipe:
    """QAT hyperparameters. The learning rate was chosen on the validation split (float
    model and QAT trained without it) from 3e-4, 1e-3, 3e-3 by mean validation accuracy of
    a2q+ and exact at P = 10 and 12 (``python bench/quant_figures.py --tune``)."""

    epochs: int = 10
    lr: float = 3e-3
    scale_lr: float = 3e-3
    batch: int = 64
    seed: int = 0
    threads: int = 1


def _round_ste(x):
    return x + (torch.round(x) - x).detach()


def _half_up_ste(x):
    """Round half up, as the output stage does (floor(x + 1/2))."""
    return x + (torch.floor(x + 0.5) - x).detach()


def _trunc_ste(x):
    return x + (torch.trunc(x) - x).detach()


def _l1(v):
    return v.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)


class QLayer(nn.Module):
    """One weighted layer with fake-quantized weights."""

    def __init__(self, spec_l, w, b, s_w, method, cfg):
        super().__init__()
        self.spec_l, self.method, self.cfg = spec_l, method, cfg
        self.shape = tuple(w.shape)
        w2 = np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1)
        s_w = np.asarray(s_w, dtype=np.float64)
        self.log_s = nn.Parameter(torch.tensor(np.log(s_w)[:, None], dtype=torch.float32))
        self.bias = nn.Parameter(torch.tensor(b, dtype=torch.float32))
        t = torch.float32
        if method == "rtn":
            v = w2
        elif method == "a2q":
            v = w2
            g = np.minimum(np.abs(w2).sum(axis=1), methods.a2q_bound(cfg) * s_w)
            self.log_g = nn.Parameter(torch.tensor(np.log(g)[:, None], dtype=t))
        elif method == "a2q+":
            radius = methods.a2q_plus_bound(cfg) * s_w
            v = methods.l1_ball_projection(w2 - w2.mean(axis=1, keepdims=True), radius)
            vc = v - v.mean(axis=1, keepdims=True)
            g = np.maximum(np.abs(vc).sum(axis=1), 1e-12)
            self.log_g = nn.Parameter(torch.tensor(np.log(g)[:, None], dtype=t))
        else:  # exact
            bp, bn = methods.exact_budgets(cfg)
            vp = methods.l1_ball_projection(np.maximum(w2, 0), bp * s_w)
            vn = methods.l1_ball_projection(np.maximum(-w2, 0), bn * s_w)
            v = vp - vn
            gp = np.maximum(vp.sum(axis=1), 1e-12)
            gn = np.maximum(vn.sum(axis=1), 1e-12)
            self.log_gp = nn.Parameter(torch.tensor(np.log(gp)[:, None], dtype=t))
            self.log_gn = nn.Parameter(torch.tensor(np.log(gn)[:, None], dtype=t))
        self.v = nn.Parameter(torch.tensor(v, dtype=t))

    def scaled(self):
        """(s (O, 1), u = w / s (O, K)) before rounding."""
        s = self.log_s.exp()
        v, cfg = self.v, self.cfg
        if self.method == "rtn":
            return s, v / s
        if self.method == "a2q":
            g = torch.minimum(self.log_g.exp(), methods.a2q_bound(cfg) * s * ptq_safety())
            return s, g * v / _l1(v) / s
        if self.method == "a2q+":
            vc = v - v.mean(dim=1, keepdim=True)
            g = torch.minimum(self.log_g.exp(), methods.a2q_plus_bound(cfg) * s * ptq_safety())
            return s, g * vc / _l1(vc) / s
        bp, bn = methods.exact_budgets(cfg)
        vp, vn = F.relu(v), F.relu(-v)
        gp = torch.minimum(self.log_gp.exp(), bp * s * ptq_safety())
        gn = torch.minimum(self.log_gn.exp(), bn * s * ptq_safety())
        return s, (gp * vp / _l1(vp) - gn * vn / _l1(vn)) / s

    def quantized(self):
        """(effective float weight s * q with STE gradients, integer q as numpy)."""
        s, u = self.scaled()
        lo, hi = self.cfg.weight_min, self.cfg.weight_max
        if self.method == "rtn":
            q = torch.clamp(_round_ste(u), lo, hi)
        elif self.method in ("a2q", "a2q+"):
            q = torch.clamp(_trunc_ste(u), lo, hi)
        else:
            ud = u.detach().double().numpy()
            qi = methods.exact_project(ud, np.ones(len(ud)), self.cfg)
            q = u + (torch.tensor(qi, dtype=u.dtype) - u).detach()
        return s * q, np.rint(q.detach().numpy()).astype(np.int64)

    def forward(self, x, s_x):
        """x is fake-quantized with scale s_x; the bias is rounded to the integer units
        of the accumulator (s_x * s per channel), as the exported network stores it."""
        w, _ = self.quantized()
        w = w.view(self.shape)
        unit = s_x * self.log_s.exp()[:, 0]
        bias = _round_ste(self.bias / unit) * unit
        if self.spec_l["kind"] == "conv2d":
            return F.conv2d(x, w, bias, padding=self.spec_l["pad"])
        return F.linear(x.flatten(1), w, bias)


def ptq_safety() -> float:
    """Keep the float bound a hair inside the integer one, as the PTQ projections do."""
    return 1.0 - 1e-6


class ActQuant(nn.Module):
    """Unsigned N-bit fake quantization with a learned scale."""

    def __init__(self, scale: float, levels: int):
        super().__init__()
        self.log_s = nn.Parameter(torch.tensor(math.log(scale), dtype=torch.float32))
        self.levels = levels

    def forward(self, x):
        s = self.log_s.exp()
        return torch.clamp(_half_up_ste(x / s), 0, self.levels) * s


class QuantNet(nn.Module):
    """The digits network with fake quantization, initialised from a PTQ network."""

    def __init__(self, params: Params, spec: ptq.QuantSpec, init: Network):
        super().__init__()
        cfg = spec.cfg
        self.input_scale = init.input_scale
        self.levels = cfg.act_max
        layers = {layer.name: layer for _, layer in init.weighted}
        self.q = nn.ModuleDict()
        self.act = nn.ModuleDict()
        for spec_l in ARCH:
            if spec_l["kind"] == "maxpool":
                continue
            name = spec_l["name"]
            extra = layers[name].extra
            self.q[name] = QLayer(
                spec_l,
                params[f"{name}.weight"],
                params[f"{name}.bias"],
                extra["weight_scale"],
                spec.method,
                cfg,
            )
            if "out_scale" in extra:
                self.act[name] = ActQuant(extra["out_scale"], cfg.act_max)

    def quantize_input(self, images) -> torch.Tensor:
        """Float images to the integer input, with the exported network's own rule (in
        float64, so ties such as pixel 8/16 round the same way)."""
        x = np.asarray(images, dtype=np.float64)
        q = np.clip(np.floor(x / self.input_scale + 0.5), 0, self.levels)
        return torch.tensor(q, dtype=torch.float32)

    def forward(self, x_int):
        """Logits of integer input images (see :meth:`quantize_input`)."""
        s_x = torch.tensor(self.input_scale, dtype=torch.float32)
        h = x_int * s_x
        for spec_l in ARCH:
            if spec_l["kind"] == "maxpool":
                h = F.max_pool2d(h, spec_l["kernel"])
                continue
            name = spec_l["name"]
            h = self.q[name](h, s_x)
            if spec_l["relu"]:
                h = self.act[name](F.relu(h))
                s_x = self.act[name].log_s.exp()
        return h


def train_qat(
    params: Params,
    spec: ptq.QuantSpec,
    recipe: QATRecipe,
    *,
    validation: bool = False,
    log=None,
) -> tuple[QuantNet, Network]:
    """Fine-tune from PTQ; returns the trained module and the PTQ network it started from.

    With ``validation`` the training data excludes the validation split (for choosing
    hyperparameters)."""
    if spec.method not in QAT_METHODS:
        raise ptq.QuantError(
            f"QAT supports {', '.join(QAT_METHODS)}, not {spec.method} (use PTQ for it)"
        )
    if spec.scale_style != "dyadic":
        raise ptq.QuantError("QAT learns free scales: use --scales dyadic")
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    split = digits_split(validation=validation)
    init = ptq.quantize(params, spec, calib=split.x_train[: spec.calibration])
    net = QuantNet(params, spec, init)
    scale_params = [p for n, p in net.named_parameters() if "log_" in n]
    other = [p for n, p in net.named_parameters() if "log_" not in n]
    opt = torch.optim.Adam(
        [{"params": other, "lr": recipe.lr}, {"params": scale_params, "lr": recipe.scale_lr}]
    )
    x = net.quantize_input(split.x_train)
    y = torch.tensor(split.y_train)
    steps = recipe.epochs * math.ceil(len(x) / recipe.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))
    )
    gen = torch.Generator().manual_seed(recipe.seed)
    for epoch in range(recipe.epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), recipe.batch):
            idx = order[i : i + recipe.batch]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if log is not None:
            log(f"QAT epoch {epoch + 1}/{recipe.epochs}: loss {total / len(x):.4f}")
    return net, init


def export(net: QuantNet, params: Params, spec: ptq.QuantSpec, info: dict) -> Network:
    """The integer network of a trained :class:`QuantNet` (same pipeline as PTQ)."""
    weights, act_scales, new = {}, {}, dict(params)
    with torch.no_grad():
        for name, layer in net.q.items():
            _, q = layer.quantized()
            s = layer.log_s.exp().double().numpy()[:, 0]
            weights[name] = (q, s)
            new[f"{name}.bias"] = layer.bias.detach().numpy().astype(np.float32)
        for name, act in net.act.items():
            act_scales[name] = float(act.log_s.exp())
    return ptq.quantize(
        new,
        dataclasses.replace(spec, bias_correction=False),
        weights=weights,
        act_scales=act_scales,
        info=info,
    )


def train_and_export(
    params: Params,
    spec: ptq.QuantSpec,
    *,
    epochs: int,
    seed: int = 0,
    recipe: QATRecipe | None = None,
    log=None,
) -> Network:
    """QAT for ``epochs`` epochs from the float parameters, exported as a network."""
    recipe = dataclasses.replace(recipe or QATRecipe(), epochs=epochs, seed=seed)
    started = time.perf_counter()
    net, _ = train_qat(params, spec, recipe, log=log)
    info = {
        "qat": {
            "epochs": recipe.epochs,
            "lr": recipe.lr,
            "scale_lr": recipe.scale_lr,
            "seed": recipe.seed,
            "seconds": round(time.perf_counter() - started, 2),
        }
    }
    return export(net, params, spec, info)
