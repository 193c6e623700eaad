"""Graph networks (format v2): strided, padded and grouped convolutions, a signed residual
tensor requantized on the host, residual adds, max and average pooling with padding,
flatten. The golden model is checked against a plain-Python statement of each operator,
written from the contract (loops over windows, ``reference.dot`` per output, exact
rational rounding), and the RTL backends against the golden model, bit for bit."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import reference

from oasa.config import ArrayConfig
from oasa.sim import netfile, network
from oasa.sim.calls import packs_cycles, plan_groups
from oasa.sim.netfile import Layer, Network, Tensor
from oasa.sim.netrun import run_network_rtl

# The array of tests/test_netrun.py (small buffers: calls are cut in M and N), so the
# Verilator model built there serves here too.
ARRAY = {"rows": 2, "cols": 3, "act_depth": 64, "wgt_depth": 64, "res_depth": 64, "param_depth": 8}


def residual_network(seed: int = 0, acc_bits: int = 12, overflow: str = "wrap") -> Network:
    """input 1x6x6 u4 -> conv 3x3 s1 p1 (1->4, ReLU) a: u4 -> conv 3x3 s2 pads (1,1,0,0)
    ... built so every new operator appears once:

    a = relu(conv(x))                     u4 (4, 6, 6)
    b = conv(a)  (no ReLU)                s8 (4, 6, 6), host requant (signed, wider)
    c = add(a, b) with ReLU               u4 (4, 6, 6)
    d = depthwise conv 3x3 s2 pad (1,1,0,0), ReLU   u4 (4, 3, 3)  (groups 4)
    e = maxpool 2 s1 pad 1                u4 (4, 4, 4)
    f = avgpool 4 (global)                u4 (4, 1, 1)
    g = flatten                           u4 (4,)
    logits = dense 4 -> 3 raw
    """
    rng = np.random.default_rng(seed)
    cfg = ArrayConfig(acc_bits=acc_bits, overflow=overflow)

    def ints(lo, hi, shape):
        return rng.integers(lo, hi + 1, shape)

    def weighted(kind, name, inputs, output, wshape, **kw):
        o = wshape[0]
        return Layer(
            kind, (), (), name=name, inputs=inputs, output=output, cfg=cfg, method="test",
            weight=ints(-8, 7, wshape).astype(np.int8), bias=ints(-60, 60, o),
            mult=ints(1, 400, o), shift=np.full(o, 9), **kw,
        )  # fmt: skip

    layers = [
        weighted("conv2d", "conv_a", ("x",), "a", (4, 1, 3, 3), kernel=3, padding=1, relu=True),
        weighted("conv2d", "conv_b", ("a",), "b", (4, 4, 3, 3), kernel=3, padding=1),
        Layer(
            "add",
            (),
            (),
            name="add",
            inputs=("a", "b"),
            output="c",
            relu=True,
            mult=np.array([3, 5]),
            shift=np.array([3]),
        ),
        weighted(
            "conv2d",
            "dw",
            ("c",),
            "d",
            (4, 1, 3, 3),
            kernel=3,
            stride=2,
            padding=(1, 1, 0, 0),
            groups=4,
            relu=True,
        ),
        Layer(
            "maxpool", (), (), name="mp", inputs=("d",), output="e", kernel=2, stride=1, padding=1
        ),
        Layer(
            "avgpool",
            (),
            (),
            name="gap",
            inputs=("e",),
            output="f",
            kernel=4,
            mult=np.array([5]),
            shift=np.array([6]),
        ),
        Layer("flatten", (), (), name="flat", inputs=("f",), output="g"),
        weighted("dense", "head", ("g",), "logits", (3, 4), requant=False),
    ]
    u4 = {"bits": 4, "signed": False}
    tensors = {
        "x": Tensor((1, 6, 6), **u4, scale=1 / 15),
        "a": Tensor((4, 6, 6), **u4, scale=0.1),
        "b": Tensor((4, 6, 6), 8, True, 0.05),
        "c": Tensor((4, 6, 6), **u4, scale=0.1),
        "d": Tensor((4, 3, 3), **u4, scale=0.1),
        "e": Tensor((4, 4, 4), **u4, scale=0.1),
        "f": Tensor((4, 1, 1), **u4, scale=0.1),
        "g": Tensor((4,), **u4, scale=0.1),
        "logits": Tensor((3,), acc_bits, True, None),
    }
    return Network(
        layers=layers, input_shape=(1, 6, 6), input_scale=1 / 15, method="test",
        tensors=tensors, input="x", output="logits",
    )  # fmt: skip


# -- an independent statement of each operator -------------------------------------------------


def _rescale(z: int, mult: int, shift: int) -> int:
    return math.floor(Fraction(z * mult, 2**shift) + Fraction(1, 2))


def _conv(x, layer, acc_bits, mode, lo, hi):
    """x: [C][H][W] lists. One reference.dot per output, inputs read through the padding."""
    w = np.asarray(layer.weight, dtype=np.int64)
    o, cg = w.shape[:2]
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = layer.kernel, layer.stride, layer.padding
    h, wd = len(x[0]), len(x[0][0])
    ho, wo = (h + pt + pb - kh) // sh + 1, (wd + pl + pr - kw) // sw + 1
    per_group = o // layer.groups

    def px(c, y, xx):
        return x[c][y][xx] if 0 <= y < h and 0 <= xx < wd else 0

    out, flags = [], []
    for oc in range(o):
        g = oc // per_group
        rows, frow = [], []
        for oy in range(ho):
            row, fr = [], []
            for ox in range(wo):
                terms = [
                    px(g * cg + c, oy * sh + ky - pt, ox * sw + kx - pl)
                    for c in range(cg)
                    for ky in range(kh)
                    for kx in range(kw)
                ]
                acc, flag, _ = reference.dot(terms, w[oc].ravel().tolist(), acc_bits, mode)
                v = reference.requantize(
                    acc, int(layer.bias[oc]), int(layer.mult[oc]), int(layer.shift[oc]),
                    layer.relu, lo, hi,
                )  # fmt: skip
                row.append(v)
                fr.append(flag)
            rows.append(row)
            frow.append(fr)
        out.append(rows)
        flags.append(frow)
    return out, flags


def _pool(x, layer, kind, lo, hi):
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = layer.kernel, layer.stride, layer.padding
    h, wd = len(x[0]), len(x[0][0])
    ho, wo = (h + pt + pb - kh) // sh + 1, (wd + pl + pr - kw) // sw + 1
    out = []
    for ch in x:
        rows = []
        for oy in range(ho):
            row = []
            for ox in range(wo):
                cells = [
                    (oy * sh + ky - pt, ox * sw + kx - pl) for ky in range(kh) for kx in range(kw)
                ]
                inside = [ch[y][xx] for y, xx in cells if 0 <= y < h and 0 <= xx < wd]
                if kind == "max":
                    row.append(max(inside))
                else:  # the padding counts as zeros: the sum is over the inside cells
                    v = _rescale(sum(inside), int(layer.mult[0]), int(layer.shift[0]))
                    row.append(min(max(v, lo), hi))
            rows.append(row)
        out.append(rows)
    return out


def reference_run(net: Network, image, acc_bits: int, mode: str):
    """Logits (exact fractions as floats) and each weighted layer's flags, for one image."""
    values = {net.input: image.tolist()}
    flags = {}
    for layer in net.layers:
        lo, hi = net.tensors[layer.output].range
        x = values[layer.inputs[0]]
        if layer.kind == "conv2d":
            values[layer.output], flags[layer.name] = _conv(x, layer, acc_bits, mode, lo, hi)
        elif layer.kind == "maxpool":
            values[layer.output] = _pool(x, layer, "max", lo, hi)
        elif layer.kind == "avgpool":
            values[layer.output] = _pool(x, layer, "avg", lo, hi)
        elif layer.kind == "flatten":
            values[layer.output] = np.asarray(x).ravel().tolist()
        elif layer.kind == "add":
            b = np.asarray(values[layer.inputs[1]]).ravel()
            z = [
                _rescale(int(a) * int(layer.mult[0]) + int(bb) * int(layer.mult[1]), 1,
                         int(layer.shift[0]))
                for a, bb in zip(np.asarray(x).ravel(), b, strict=True)
            ]  # fmt: skip
            z = [min(max(max(v, 0) if layer.relu else v, lo), hi) for v in z]
            values[layer.output] = np.asarray(z).reshape(np.shape(x)).tolist()
        else:  # dense, raw: the logits
            w = np.asarray(layer.weight, dtype=np.int64)
            res = [reference.dot(x, w[o].tolist(), acc_bits, mode) for o in range(len(w))]
            flags[layer.name] = [r[1] for r in res]
            values[layer.output] = [
                float(Fraction((acc + int(layer.bias[o])) * int(layer.mult[o]),
                               2 ** int(layer.shift[o])))
                for o, (acc, _, _) in enumerate(res)
            ]  # fmt: skip
    return values[net.output], flags


@pytest.mark.parametrize(("acc_bits", "mode"), [(16, "wrap"), (9, "wrap"), (9, "saturate")])
def test_graph_golden_model_equals_plain_python(acc_bits, mode):
    net = residual_network(seed=1, acc_bits=acc_bits, overflow=mode)
    x = np.random.default_rng(2).integers(0, 16, (4, 1, 6, 6))
    x[0] = 15  # all-max input: the largest sums
    r = network.run_network(net, x)
    flagged = 0
    for b in range(len(x)):
        logits, flags = reference_run(net, x[b], acc_bits, mode)
        assert np.array_equal(r.logits[b], np.asarray(logits)), f"image {b}"
        for run in r.layers:
            if run.overflow is not None:
                assert np.array_equal(run.overflow[b], np.asarray(flags[run.layer.name]))
                flagged += int(run.overflow[b].sum())
    if acc_bits == 9:
        assert flagged > 0  # the narrow accumulator really overflows somewhere
    assert net.tensors["b"].signed and not net.on_chip_requant(net.layers[1])


def test_graph_file_round_trip(tmp_path):
    net = residual_network()
    netfile.save(net, tmp_path / "g.npz")
    back = netfile.load(tmp_path / "g.npz")
    assert back.tensors == net.tensors
    assert [layer.kind for layer in back.layers] == [layer.kind for layer in net.layers]
    assert [layer.relu for layer in back.layers] == [layer.relu for layer in net.layers]
    x = np.random.default_rng(0).integers(0, 16, (3, 1, 6, 6))
    assert np.array_equal(network.run_network(back, x).logits, network.run_network(net, x).logits)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda n: n.tensors.update(c=Tensor((4, 6, 6), 4, True, 0.1)), "reads a 4-bit signed"),
        (lambda n: setattr(n.layers[2], "mult", np.array([3])), "mult has shape"),
        (lambda n: setattr(n.layers[2], "shift", np.array([49])), "outside 0..48"),
        (lambda n: setattr(n.layers[3], "groups", 3), "group"),
        (lambda n: setattr(n.layers[1], "inputs", ("c",)), "before any layer writes"),
        (lambda n: setattr(n.layers[4], "padding", (2, 2, 2, 2)), "smaller than the kernel"),
    ],
)
def test_bad_graphs_are_refused_naming_the_layer(edit, message):
    net = residual_network()
    edit(net)
    with pytest.raises(netfile.NetfileError, match=message):
        netfile.save(net, "/nonexistent/never-written.npz")


def assert_planned_as_packs(net: Network, stats, array: dict, images: int) -> int:
    """The layer of ``stats`` ran in the calls and cycles of its planned packs of groups;
    returns the groups per pack."""
    layer = net.layers[stats.index]
    _, ho, wo = layer.out_shape
    cfg = layer.cfg.replace(**array)
    packs = plan_groups(cfg, layer.groups, images * ho * wo, layer.weight[0].size,
                        layer.out_shape[0] // layer.groups)  # fmt: skip
    assert (stats.calls, stats.cycles) == (
        sum(len(p.plan) for p in packs),
        packs_cycles(cfg, packs),
    )
    return packs[0].count


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_a_depthwise_layer_runs_packed_on_the_rtl(dataflow):
    """With room for two groups' activations per call, the depthwise layer's 4 groups run
    as 2 packs of 2 (block-diagonal weights), bit for bit the golden model's groups, in
    saturate with overflows, in the cycles planned."""
    net = residual_network(seed=3, acc_bits=9, overflow="saturate")
    x = np.random.default_rng(4).integers(0, 16, (3, 1, 6, 6))
    array = {**ARRAY, "act_depth": 256, "dataflow": dataflow}
    run = run_network_rtl(net, x, backend="amaranth", overrides=array, batch=3)
    assert np.array_equal(run.result.logits, network.run_network(net, x).logits)
    dw = next(s for s in run.stats if s.name == "dw")
    assert dw.flagged > 0
    assert assert_planned_as_packs(net, dw, array, len(x)) > 1


@pytest.mark.parametrize("backend", ["model", "verilator"])
def test_graph_network_on_the_accelerator_equals_golden(backend):
    net = residual_network(seed=3, acc_bits=9, overflow="saturate")
    x = np.random.default_rng(4).integers(0, 16, (3, 1, 6, 6))
    run = run_network_rtl(net, x, backend=backend, overrides=ARRAY, batch=3)
    want = network.run_network(net, x)
    assert np.array_equal(run.result.logits, want.logits)
    assert sum(s.flagged for s in run.stats) > 0  # saturating overflows, flagged alike
    dw = next(s for s in run.stats if s.name == "dw")
    # its 4 groups run as the planner packs them (here one per pack: the small buffers
    # give a pack of two more calls than it saves), in the calls and cycles planned
    assert_planned_as_packs(net, dw, ARRAY, len(x))
    assert all(s.calls == 0 for s in run.stats if s.kind in ("add", "maxpool", "avgpool"))
