"""Quantization-aware training with PyTorch (the optional extra ``train``).

Fine-tunes any float network (:class:`~oasa.quant.graph.FloatGraph`; the digits model is
one of them) with fake quantization, starting from its PTQ network (the per-channel
weight scales, tensor formats and activation scales are the initial values), then
exports through the same integer pipeline as PTQ (:func:`oasa.quant.ptq.quantize` with
the trained integer weights and scales), so the reported accuracy is again measured on
integers with the golden model.

- Straight-through estimator for every rounding; weight scales (per channel) and the
  scales of the requantized tensors (outputs of weighted nodes and of adds) are learned,
  in the log domain (LSQ-style gradients).
- The fake-quantized forward pass mirrors the integer network node by node: the input is
  quantized with the PTQ network's input format; every requantized tensor is rounded
  half up and clamped to its own format (unsigned after a ReLU, signed otherwise; the
  array's N bits, or the host's wider bits for a tensor only adds read); a bias is
  rounded to the accumulator's units and clamped to its range; an average pool keeps its
  input's format; max pooling, flatten, grouped and strided convolutions and asymmetric
  padding run as the integer side runs them.
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

Each layer's bounds come from its own configuration in the PTQ network (its input's
width and signedness), so every step's integer weights satisfy the method's bound and
the exported network is certified whatever the training did.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from oasa.config import ArrayConfig
from oasa.quant import methods, ptq
from oasa.quant.data import Split, digits_split
from oasa.quant.graph import FloatGraph, FloatNode
from oasa.quant.model import Params, digits_graph
from oasa.sim.netfile import Network, Tensor

__all__ = ["ActQuant", "QATRecipe", "QLayer", "QuantNet", "export", "train_and_export", "train_qat"]

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
    """Round half up, as the output stage and the host operators do (floor(x + 1/2))."""
    return x + (torch.floor(x + 0.5) - x).detach()


def _trunc_ste(x):
    return x + (torch.trunc(x) - x).detach()


def _l1(v):
    return v.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)


def _torch_pads(padding) -> tuple[int, int, int, int]:
    """oasa's (top, left, bottom, right) as F.pad's (left, right, top, bottom)."""
    top, left, bottom, right = (int(p) for p in padding)
    return (left, right, top, bottom)


def _as_graph(graph: FloatGraph | Params) -> FloatGraph:
    """A float graph, or the digits network of the digits parameters."""
    if isinstance(graph, FloatGraph):
        return graph
    if not isinstance(graph, dict):
        raise ptq.QuantError(
            f"QAT trains a FloatGraph (or the digits parameters), not {type(graph).__name__}"
        )
    return digits_graph(graph)


def ptq_safety() -> float:
    """Keep the float bound a hair inside the integer one, as the PTQ projections do."""
    return 1.0 - 1e-6


class QLayer(nn.Module):
    """One weighted node (conv2d or dense) with fake-quantized weights.

    ``s_w`` is the initial per-channel weight scale (O,); ``cfg`` the layer's arithmetic
    (its ``act_bits`` / ``act_signed`` are its input's format), which sets the method's
    bounds."""

    def __init__(self, node: FloatNode, s_w, method: str, cfg: ArrayConfig):
        super().__init__()
        if not node.weighted:
            raise ValueError(f"{node.describe()}: QLayer takes a conv2d or dense node")
        self.node, self.method, self.cfg = node, method, cfg
        w = np.asarray(node.weight, dtype=np.float64)
        self.shape = tuple(w.shape)
        b = np.zeros(w.shape[0]) if node.bias is None else np.asarray(node.bias, np.float64)
        w2 = w.reshape(w.shape[0], -1)
        s_w = np.asarray(s_w, dtype=np.float64)
        t = torch.float32
        self.log_s = nn.Parameter(torch.tensor(np.log(s_w)[:, None], dtype=t))
        self.bias = nn.Parameter(torch.tensor(b, dtype=t))
        if method == "rtn":
            v = w2
        elif method == "a2q":
            v = w2
            g = np.minimum(np.abs(w2).sum(axis=1), methods.a2q_bound(cfg) * s_w)
            g = np.maximum(g, 1e-12)
            self.log_g = nn.Parameter(torch.tensor(np.log(g)[:, None], dtype=t))
        elif method == "a2q+":
            radius = methods.a2q_plus_bound(cfg) * s_w
            v = methods.l1_ball_projection(w2 - w2.mean(axis=1, keepdims=True), radius)
            vc = v - v.mean(axis=1, keepdims=True)
            g = np.maximum(np.abs(vc).sum(axis=1), 1e-12)
            self.log_g = nn.Parameter(torch.tensor(np.log(g)[:, None], dtype=t))
        elif method == "exact":
            bp, bn = methods.exact_budgets(cfg)
            vp = methods.l1_ball_projection(np.maximum(w2, 0), bp * s_w)
            vn = methods.l1_ball_projection(np.maximum(-w2, 0), bn * s_w)
            v = vp - vn
            gp = np.maximum(vp.sum(axis=1), 1e-12)
            gn = np.maximum(vn.sum(axis=1), 1e-12)
            self.log_gp = nn.Parameter(torch.tensor(np.log(gp)[:, None], dtype=t))
            self.log_gn = nn.Parameter(torch.tensor(np.log(gn)[:, None], dtype=t))
        else:
            raise ptq.QuantError(f"QAT supports {', '.join(QAT_METHODS)}, not {method}")
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
        """(effective float weight s * q (O, K) with STE gradients, integer q as numpy)."""
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

    def unit64(self, s_x64) -> torch.Tensor:
        """The accumulator's unit per channel, s_x * s, in float64 as the export has it."""
        return s_x64 * self.log_s.detach().exp().double()[:, 0]

    def forward(self, x, s_x, s_x64=None):
        """x is fake-quantized with scale s_x (``s_x64``: the same in float64, default
        s_x); the bias is rounded to the integer units of the accumulator (s_x * s per
        channel) and clamped to the bias range, exactly as the export stores it."""
        w, _ = self.quantized()
        w = w.view(self.shape)
        unit = s_x * self.log_s.exp()[:, 0]
        u = self.bias / unit
        s_x64 = s_x.detach().double() if s_x64 is None else s_x64
        b_int = torch.round(self.bias.detach().double() / self.unit64(s_x64))
        u = u + (b_int.to(u.dtype) - u).detach()
        bias = torch.clamp(u, self.cfg.bias_min, self.cfg.bias_max) * unit
        node = self.node
        if node.op == "dense":
            return F.linear(x.flatten(1), w, bias)
        top, left, bottom, right = node.padding
        if top == bottom and left == right:
            pad = (int(top), int(left))
        else:
            x, pad = F.pad(x, _torch_pads(node.padding)), 0
        return F.conv2d(x, w, bias, stride=tuple(node.stride), padding=pad, groups=node.groups)


class ActQuant(nn.Module):
    """Fake quantization of one tensor to the integers [lo, hi] (round half up, clamp)
    with a learned scale, at most ``max_scale`` when given."""

    def __init__(self, scale: float, lo: int, hi: int, max_scale: float | None = None):
        super().__init__()
        self.log_s = nn.Parameter(torch.tensor(math.log(scale), dtype=torch.float32))
        self.lo, self.hi = int(lo), int(hi)
        self.max_scale = max_scale

    @classmethod
    def of(cls, fmt: Tensor, clip: float | None = None) -> ActQuant:
        """The quantizer of a PTQ tensor format, initialised from its scale. The integer
        side clips only through the format's range, so a node's ``clip`` (ReLU6) caps
        the scale at clip / hi, as PTQ's choice of scale does."""
        cap = None if clip is None else float(clip) / fmt.hi
        return cls(float(fmt.scale), fmt.lo, fmt.hi, cap)

    def scale(self) -> torch.Tensor:
        s = self.log_s.exp()
        return s if self.max_scale is None else s.clamp(max=self.max_scale)

    def forward(self, x, q=None):
        """x quantized: clamp(floor(x / s + 1/2)) * s, or with ``q`` (the integers the
        integer network computes for x, before the clamp) that value with the gradient of
        the rounding of x / s."""
        s = self.scale()
        u = x / s
        if q is None:
            return torch.clamp(_half_up_ste(u), self.lo, self.hi) * s
        return torch.clamp(u + (q.to(u.dtype) - u).detach(), self.lo, self.hi) * s


def _round_half_up(z):
    return torch.floor(z + 0.5)


def _requant_ints(layer: QLayer, y, s_x64, s_y64, relu: bool):
    """What the output stage computes from a weighted node's output y = unit (acc +
    bias): floor((acc + bias) * mult / 2**shift + 1/2) with the dyadic mult, shift of
    the current scales (float64 ``s_x64``, ``s_y64``), ReLU'd, in float64 (exact); None
    if the ratio does not fit."""
    with torch.no_grad():
        unit = layer.unit64(s_x64)
        try:
            mult, shift = ptq.dyadic((unit / s_y64).numpy(), layer.cfg)
        except ptq.QuantError:
            return None
        view = (1, -1) + (1,) * (y.dim() - 2)
        acc = torch.round(y.detach().double() / unit.view(view))
        m = torch.tensor(mult, dtype=torch.float64).view(view)
        e = torch.tensor(np.exp2(-shift.astype(np.float64))).view(view)
        q = _round_half_up(acc * m * e)
        return F.relu(q) if relu else q


def _add_ints(a, b, s_a, s_b, s_y, relu: bool):
    """What the host's add computes: floor((a m_a + b m_b) / 2**shift + 1/2) on the
    integers of a and b, with the host rescale of the current scales (float64 ``s_a``,
    ``s_b``, ``s_y``; exact)."""
    with torch.no_grad():
        try:
            mult, shift = ptq.host_dyadic([float(s_a / s_y), float(s_b / s_y)], pow2=False)
        except ptq.QuantError:
            return None
        ia = torch.round(a.detach().double() / float(s_a))
        ib = torch.round(b.detach().double() / float(s_b))
        q = _round_half_up((ia * int(mult[0]) + ib * int(mult[1])) / 2.0 ** int(shift[0]))
        return F.relu(q) if relu else q


def _module_keys(names: list[str]) -> dict[str, str]:
    """Node names as unique torch module names (which cannot hold dots)."""
    keys: dict[str, str] = {}
    used: set[str] = set()
    for i, name in enumerate(names):
        base = re.sub(r"[^0-9A-Za-z_]", "_", name) or "node"
        key, n = base, i
        while key in used:
            key, n = f"{base}_{n}", n + 1
        used.add(key)
        keys[name] = key
    return keys


class QuantNet(nn.Module):
    """A float graph with fake quantization, initialised from its PTQ network ``init``
    (:func:`oasa.quant.ptq.quantize` of the same graph): one :class:`QLayer` per weighted
    node and one :class:`ActQuant` per requantized tensor (the output of a weighted node
    that is not the graph's output, and of every add)."""

    def __init__(self, graph: FloatGraph | Params, spec: ptq.QuantSpec, init: Network):
        super().__init__()
        graph = _as_graph(graph)
        self.graph, self.spec = graph, spec
        self.calib: NDArray | None = None  # the calibration images init was made from
        self.input_format = init.tensors[graph.input]
        self.input_scale = float(self.input_format.scale)
        layers = {layer.name: layer for layer in init.layers}
        self.keys = _module_keys([n.name for n in graph.nodes])
        self.q = nn.ModuleDict()
        self.act = nn.ModuleDict()
        for node in graph.nodes:
            key = self.keys[node.name]
            if node.weighted:
                layer = layers[node.name]
                x_fmt = init.tensors[node.inputs[0]]
                cfg = layer.cfg
                if (cfg.act_bits, cfg.act_signed) != (x_fmt.bits, x_fmt.signed):
                    raise ptq.QuantError(
                        f"{node.describe()}: its layer is made for {cfg.act_bits}-bit "
                        f"{'signed' if cfg.act_signed else 'unsigned'} inputs, its input "
                        f"tensor is {x_fmt.describe()}"
                    )
                self.q[key] = QLayer(node, layer.extra["weight_scale"], spec.method, cfg)
            if (node.weighted and node.output != graph.output) or node.op == "add":
                self.act[key] = ActQuant.of(init.tensors[node.output], node.clip)
        # avgpool requantizes to its input's format with a fixed host rescale
        self.formats = {t: (f.lo, f.hi) for t, f in init.tensors.items()}
        self.pool_rescale = {
            layer.name: (int(layer.mult[0]), int(layer.shift[0]))
            for layer in init.layers
            if layer.kind == "avgpool"
        }

    def layer(self, name: str) -> QLayer:
        """The :class:`QLayer` of a weighted node."""
        return self.q[self.keys[name]]

    def quantize_input(self, images) -> torch.Tensor:
        """Float images to the integer input, with the exported network's own rule (in
        float64, so ties such as pixel 8/16 round the same way)."""
        x = np.asarray(images, dtype=np.float64)
        f = self.input_format
        q = np.clip(np.floor(x / self.input_scale + 0.5), f.lo, f.hi)
        return torch.tensor(q, dtype=torch.float32)

    def forward(self, x_int, *, keep: bool = False):
        """Logits of integer input images (see :meth:`quantize_input`); with ``keep``,
        every tensor by name (its real value: integer times its scale)."""
        g = self.graph
        s_in = torch.tensor(self.input_scale, dtype=torch.float32)
        values = {g.input: x_int * s_in}
        # every tensor's scale: float32 with gradients, and float64 as the export has it
        scales = {g.input: (s_in, torch.tensor(self.input_scale, dtype=torch.float64))}
        last_read = {t: i for i, n in enumerate(g.nodes) for t in n.inputs}
        for i, node in enumerate(g.nodes):
            key = self.keys[node.name]
            x = values[node.inputs[0]]
            s_x, s_x64 = scales[node.inputs[0]]
            if node.op == "flatten":
                y = x.flatten(1)
            elif node.op == "maxpool":
                xp = F.pad(x, _torch_pads(node.padding), value=-math.inf)
                y = F.max_pool2d(xp, tuple(node.kernel), tuple(node.stride))
            elif node.op == "avgpool":
                y = self._avgpool(node, x, s_x)
            elif node.op == "add":
                act = self.act[key]
                b, (_, s_b64) = values[node.inputs[1]], scales[node.inputs[1]]
                s_y = act.scale()
                q = _add_ints(x, b, s_x64, s_b64, s_y.detach().double(), node.relu)
                y = act(F.relu(x + b) if node.relu else x + b, q)
                s_x, s_x64 = s_y, s_y.detach().double()
            else:
                layer = self.q[key]
                y = layer(x, s_x, s_x64)
                if node.output != g.output:
                    act = self.act[key]
                    s_y = act.scale()
                    q = _requant_ints(layer, y, s_x64, s_y.detach().double(), node.relu)
                    y = act(F.relu(y) if node.relu else y, q)
                    s_x, s_x64 = s_y, s_y.detach().double()
            values[node.output], scales[node.output] = y, (s_x, s_x64)
            if not keep:  # free what no later node reads
                for t in node.inputs:
                    if last_read[t] == i and t != g.output:
                        values.pop(t, None)
        return values if keep else values[g.output]

    def _avgpool(self, node: FloatNode, x, s_x):
        """The window average (the padding counting as zeros) in its input's format. The
        value is the integer network's: floor(window sum * m / 2**shift + 1/2) with the
        host rescale of the PTQ network (exact in float64, so ties round alike); the
        gradient is the float average's."""
        xp = F.pad(x, _torch_pads(node.padding))
        u = F.avg_pool2d(xp, tuple(node.kernel), tuple(node.stride)) / s_x
        mult, shift = self.pool_rescale[node.name]
        kk = node.kernel[0] * node.kernel[1]
        total = torch.round(u.detach().double() * kk)  # the integer window sums
        q = torch.floor(total * mult / 2.0**shift + 0.5).to(u.dtype)
        lo, hi = self.formats[node.output]
        return torch.clamp(u + (q - u).detach(), lo, hi) * s_x

    def trained_graph(self) -> FloatGraph:
        """The float graph with the trained biases (what the export quantizes)."""
        g = self.graph
        nodes = [
            dataclasses.replace(n, bias=self.layer(n.name).bias.detach().double().numpy().copy())
            if n.weighted
            else n
            for n in g.nodes
        ]
        return FloatGraph(g.input, g.input_shape, g.output, nodes, name=g.name)

    def trained_weights(self) -> tuple[dict[str, tuple[NDArray, NDArray]], dict[str, float]]:
        """(integer weights and per-channel scales per weighted node, learned output scale
        per requantized node): the ``weights`` and ``act_scales`` of the export."""
        weights, act_scales = {}, {}
        with torch.no_grad():
            for node in self.graph.nodes:
                key = self.keys[node.name]
                if key in self.q:
                    layer = self.q[key]
                    _, q = layer.quantized()
                    weights[node.name] = (q, layer.log_s.exp().double().numpy()[:, 0])
                if key in self.act:
                    act_scales[node.name] = float(self.act[key].scale())
        return weights, act_scales


def _training_split(split: Split | None, validation: bool) -> Split:
    if split is None:
        return digits_split(validation=validation)
    if validation:
        raise ptq.QuantError(
            "validation=True carves the validation part out of the digits split; "
            "with your own split, pass its training part and hold out what you validate on"
        )
    if not split.has_train:
        raise ptq.QuantError("QAT needs the data's training part (x_train, y_train)")
    return split


def train_qat(
    graph: FloatGraph | Params,
    spec: ptq.QuantSpec,
    recipe: QATRecipe,
    *,
    split: Split | None = None,
    calib: NDArray | None = None,
    validation: bool = False,
    log=None,
) -> tuple[QuantNet, Network]:
    """Fine-tune from PTQ; returns the trained module and the PTQ network it started from.

    ``graph`` is any float graph (or the digits parameters); it trains on
    ``split.x_train`` / ``split.y_train`` (default the digits split; with ``validation``
    the digits training part without its validation split, for choosing
    hyperparameters). ``calib`` (default the first ``spec.calibration`` training images)
    calibrates the PTQ start; the module keeps it for :func:`export`."""
    if spec.method not in QAT_METHODS:
        raise ptq.QuantError(
            f"QAT supports {', '.join(QAT_METHODS)}, not {spec.method} (use PTQ for it)"
        )
    if spec.scale_style != "dyadic":
        raise ptq.QuantError("QAT learns free scales: use --scales dyadic")
    graph = _as_graph(graph)
    split = _training_split(split, validation)
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    calib = split.x_train[: spec.calibration] if calib is None else np.asarray(calib)
    init = ptq.quantize(graph, spec, calib=calib)
    net = QuantNet(graph, spec, init)
    net.calib = calib
    scale_params = [p for n, p in net.named_parameters() if "log_" in n]
    other = [p for n, p in net.named_parameters() if "log_" not in n]
    opt = torch.optim.Adam(
        [{"params": other, "lr": recipe.lr}, {"params": scale_params, "lr": recipe.scale_lr}]
    )
    x = net.quantize_input(split.x_train)
    y = torch.tensor(np.asarray(split.y_train), dtype=torch.int64)
    steps = max(1, recipe.epochs * math.ceil(len(x) / recipe.batch))
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


def export(
    net: QuantNet,
    graph: FloatGraph | Params | None,
    spec: ptq.QuantSpec,
    info: dict,
    *,
    calib: NDArray | None = None,
) -> Network:
    """The integer network of a trained :class:`QuantNet`, through the PTQ pipeline:
    :func:`oasa.quant.ptq.quantize` of the graph with the trained float biases, the
    trained integer weights and scales and the learned activation scales, without bias
    correction. ``graph`` is the one the module was built from (None: that one);
    ``calib`` defaults to the images the module's PTQ start was calibrated on (they set
    the input format)."""
    if graph is not None and _as_graph(graph).shapes != net.graph.shapes:
        raise ptq.QuantError("export: the graph is not the one the QAT module was built from")
    weights, act_scales = net.trained_weights()
    if calib is None:
        calib = net.calib
    return ptq.quantize(
        net.trained_graph(),
        dataclasses.replace(spec, bias_correction=False),
        calib=calib,
        weights=weights,
        act_scales=act_scales,
        info=info,
    )


def train_and_export(
    graph_or_params: FloatGraph | Params,
    spec: ptq.QuantSpec,
    *,
    epochs: int,
    seed: int = 0,
    recipe: QATRecipe | None = None,
    split: Split | None = None,
    log=None,
) -> Network:
    """QAT for ``epochs`` epochs from a float graph (or the digits parameters) on
    ``split`` (default the digits split), exported as a network."""
    recipe = dataclasses.replace(recipe or QATRecipe(), epochs=epochs, seed=seed)
    started = time.perf_counter()
    net, _ = train_qat(graph_or_params, spec, recipe, split=split, log=log)
    info = {
        "qat": {
            "epochs": recipe.epochs,
            "lr": recipe.lr,
            "scale_lr": recipe.scale_lr,
            "seed": recipe.seed,
            "seconds": round(time.perf_counter() - started, 2),
        }
    }
    return export(net, None, spec, info)
