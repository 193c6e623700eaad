"""The broken variants of oasa.hw.broken do exactly what their docstrings say.

Each runs on Amaranth's simulator against a model of its bug: the contract of DESIGN.md
section 2 with that one thing changed. A variant that the proofs and the benches must
catch is then caught for the bug it names, not for another it picked up by accident
(such as a product taken a cycle too early).
"""

from fractions import Fraction
from functools import partial

import numpy as np
import pytest
import reference
from amaranth.hdl import Fragment
from test_output_stage import rtl_stage
from test_pe import full, random_beats, rtl_pe, with_init

from oasa.config import ArrayConfig
from oasa.hw import broken
from oasa.hw.array import SystolicArray
from oasa.hw.core import ArrayCore
from oasa.hw.pe import ProcessingElement
from oasa.sim import golden
from oasa.sim.backends import amaranth_core

# -- processing element ------------------------------------------------------------------


def pe_model(
    cfg,
    beats,
    *,
    mode=None,
    extra=0,
    flag_below=True,
    flag_stuck_low=False,
    clamp_top=None,
    ignore_init=False,
):
    """(acc, ovf, done) after each beat: the contract, with the overflow mode ``mode``,
    ``extra`` added to every product, the flag blind below the range (``flag_below``) or
    tied to 0, saturation that clamps only above ``clamp_top`` (the range's top by
    default) and wraps a partial sum between the two, and a ``first`` beat that starts
    from 0 and a clear flag whatever its initial partial sum and flag (``ignore_init``)."""
    lo, hi = cfg.acc_min, cfg.acc_max
    mode = mode or cfg.overflow
    clamp_top = hi if clamp_top is None else clamp_top
    acc, ovf, out = 0, False, []
    for act, wgt, valid, first, last, init_acc, init_ovf in map(full, beats):
        if ignore_init:
            init_acc, init_ovf = 0, 0
        if valid:
            t = (init_acc if first else acc) + act * wgt + extra
            ovf = (bool(init_ovf) if first else ovf) or t > hi or (flag_below and t < lo)
            in_range = mode == "wrap" or lo <= t <= clamp_top  # stored wrapped
            acc = (t - lo) % 2**cfg.acc_bits + lo if in_range else min(max(t, lo), hi)
        out.append((acc, ovf and not flag_stuck_low, bool(valid and last)))
    return out


def rtl_states(cfg, beats, pe=ProcessingElement):
    return [(a, bool(o), bool(d)) for a, o, d, *_ in rtl_pe(cfg, beats, pe)]


def clamp_edge_beats(cfg):
    """One dot product whose second partial sum is exactly 2**(P-1) (a4w4, P = 8: 98 + 30),
    then one at the range's top, for the clamp's off-by-one."""
    assert (cfg.act_bits, cfg.weight_bits, cfg.acc_bits) == (4, 4, 8)
    return [
        (14, 7, 1, 1, 0),
        (15, 2, 1, 0, 1),
        (14, 7, 1, 1, 0),
        (15, 2, 1, 0, 0),
        (1, -1, 1, 0, 1),
    ]


PE_CONFIGS = [
    ArrayConfig(acc_bits=8),
    ArrayConfig(acc_bits=8, overflow="saturate"),
    ArrayConfig(act_signed=True, acc_bits=9, overflow="saturate"),
]

#: (variant, what its docstring says, as a change to the model)
PE_VARIANTS = [
    pytest.param(variant, change, id=variant.__name__)
    for variant, change in (
        (broken.PEFlagStuckLow, {"flag_stuck_low": True}),
        (broken.PEFlagPositiveOnly, {"flag_below": False}),
        (broken.PEProductOffByOne, {"extra": 1}),
        (broken.pe_saturates_in_wrap, {"mode": "saturate"}),
        (broken.PEIgnoresInit, {"ignore_init": True}),
    )
]


def _beats(cfg):
    """Random dot products, each continued from a random initial partial sum and flag
    (garbage on the other beats), after the directed clamp-edge beats where they apply
    (those start from 0)."""
    rng = np.random.default_rng(sum(map(ord, cfg.name)))
    beats = with_init(rng, cfg, random_beats(rng, cfg, 1200))
    if cfg.act_bits == 4 and cfg.acc_bits == 8:
        return [full(b) for b in clamp_edge_beats(cfg)] + beats
    return beats


@pytest.mark.parametrize("cfg", PE_CONFIGS, ids=lambda c: c.name)
def test_the_model_without_changes_is_the_contract(cfg):
    beats = _beats(cfg)
    assert pe_model(cfg, beats) == rtl_states(cfg, beats)


@pytest.mark.parametrize("variant, change", PE_VARIANTS)
@pytest.mark.parametrize("cfg", PE_CONFIGS, ids=lambda c: c.name)
def test_pe_variant_does_what_it_says(cfg, variant, change):
    beats = _beats(cfg)
    got = rtl_states(cfg, beats, variant)
    assert got == pe_model(cfg, beats, **change)
    if change.get("mode") != cfg.overflow:  # saturate-in-wrap is correct in saturate mode
        assert got != pe_model(cfg, beats), "the variant must differ from the contract"


def test_product_off_by_one_cannot_wrap_the_product_register():
    """x * w + 1 fits the PE's product register for every operand width."""
    for a in range(2, 9):
        for w in range(2, 9):
            for signed in (False, True):
                c = ArrayConfig(act_bits=a, weight_bits=w, act_signed=signed, acc_bits=32)
                assert c.product_max + 1 < 2 ** (c.product_bits - 1)


@pytest.mark.parametrize("cfg", PE_CONFIGS[1:], ids=lambda c: c.name)
def test_clamp_off_by_one_wraps_only_the_one_value(cfg):
    beats = _beats(cfg)
    got = rtl_states(cfg, beats, broken.PEClampOffByOne)
    assert got == pe_model(cfg, beats, clamp_top=cfg.acc_max + 1)
    if cfg.acc_bits == 8:  # the directed beats reach 2**(P-1): stored as -2**(P-1)
        assert got[1] == (cfg.acc_min, True, True)
        assert got[3][:2] == (cfg.acc_min, True) and got != pe_model(cfg, beats)


# -- array and core ----------------------------------------------------------------------


def _core_run(monkeypatch, core, cfg, m, k, n):
    monkeypatch.setattr(amaranth_core, "ArrayCore", core)
    rng = np.random.default_rng(7)
    x, w = reference.random_operands(rng, cfg, m, k, n)
    return x, w, amaranth_core.run_core_gemm(x, w, cfg=cfg)


CORE_CFG = ArrayConfig(rows=2, cols=3, acc_bits=8)


def test_core_flag_stuck_low(monkeypatch):
    x, w, r = _core_run(monkeypatch, broken.core_flag_stuck_low, CORE_CFG, 4, 30, 6)
    g = golden.gemm(x, w, cfg=CORE_CFG)
    np.testing.assert_array_equal(r.out, g.out)
    assert g.overflow.any() and not r.overflow.any()


def test_core_saturates_in_wrap(monkeypatch):
    x, w, r = _core_run(monkeypatch, broken.core_saturates_in_wrap, CORE_CFG, 4, 30, 6)
    g = golden.gemm(x, w, cfg=CORE_CFG.replace(overflow="saturate"))
    np.testing.assert_array_equal(r.out, g.out)
    np.testing.assert_array_equal(r.overflow, g.overflow)
    assert (g.out != golden.gemm(x, w, cfg=CORE_CFG).out).any()


def test_core_one_pe_off_by_one(monkeypatch):
    """Only outputs computed by PE (R-1, C-1) are K too large (wrapped to P bits)."""
    cfg, m, k, n = CORE_CFG.replace(acc_bits=16), 5, 9, 7
    x, w, r = _core_run(monkeypatch, broken.core_one_pe_off_by_one, cfg, m, k, n)
    want = golden.gemm(x, w, cfg=cfg).out.copy()
    rows, cols = np.arange(m) % cfg.rows == cfg.rows - 1, np.arange(n) % cfg.cols == cfg.cols - 1
    want[np.ix_(rows, cols)] += k
    np.testing.assert_array_equal(r.out, want)


def test_core_variants_are_built_from_parts():
    """The compositions are the production core with broken PEs, nothing else."""
    core = broken.core_one_pe_off_by_one(CORE_CFG)
    kinds = [[type(pe).__name__ for pe in row] for row in core.array.pes]
    assert kinds == [["ProcessingElement"] * 3, ["ProcessingElement"] * 2 + ["PEProductOffByOne"]]
    assert type(core) is ArrayCore and type(core.array) is SystolicArray
    sat = broken.core_saturates_in_wrap(CORE_CFG)
    assert {pe.cfg.overflow for row in sat.array.pes for pe in row} == {"saturate"}
    assert sat.cfg.overflow == "wrap"
    low = ArrayCore(CORE_CFG, array=partial(SystolicArray, pe=broken.PEFlagStuckLow))
    assert all(isinstance(pe, broken.PEFlagStuckLow) for row in low.array.pes for pe in row)
    for top in (core, sat, low):
        Fragment.get(top, None)  # they elaborate (and are not left unused)


# -- output stage ----------------------------------------------------------------------------


def requantize_half_down(acc, bias, mult, shift, relu, lo, hi):
    """:func:`reference.requantize` rounding half down: ceil(z / 2**s - 1/2)."""
    r = -((-Fraction((acc + bias) * mult, 2**shift) + Fraction(1, 2)) // 1)
    if relu:
        r = max(r, 0)
    return min(max(r, lo), hi)


def test_stage_rounds_half_down():
    cfg = ArrayConfig(rows=2, cols=4, act_signed=True, acc_bits=16, bias_bits=16)
    rng = np.random.default_rng(11)
    rows = [
        ([1, -1, 3, -3], [0] * 4, [1] * 4, [1] * 4, False, True),  # exactly .5
        ([2, -2, 6, -6], [0] * 4, [1] * 4, [2] * 4, False, True),
        ([5, -5, 7, -8], [0] * 4, [1] * 4, [0] * 4, False, True),  # no shift
        ([1000, -1000, 7, -8], [0] * 4, [1] * 4, [0] * 4, True, True),
        ([cfg.acc_max, cfg.acc_min, -1, 0], [99] * 4, [3] * 4, [5] * 4, True, False),  # raw
    ]
    for _ in range(60):
        rows.append(
            (
                rng.integers(-200, 200, 4),
                rng.integers(-50, 50, 4),
                rng.integers(0, 40, 4),
                rng.integers(0, 8, 4),
                bool(rng.integers(2)),
                bool(rng.random() < 0.85),
            )
        )
    out = rtl_stage(cfg, rows, broken.StageRoundsHalfDown)
    half_up_differs = False
    for (acc, bias, mult, shift, relu, requant), (value, _, _) in zip(rows, out, strict=True):
        if not requant:
            assert value == [int(a) for a in acc]
            continue
        lanes = list(zip(acc, bias, mult, shift, strict=True))
        args = (relu, cfg.act_min, cfg.act_max)
        want = [requantize_half_down(*map(int, lane), *args) for lane in lanes]
        assert value == want
        half_up = [reference.requantize(*map(int, lane), *args) for lane in lanes]
        half_up_differs |= value != half_up
    assert half_up_differs


# -- weight-stationary accelerator ---------------------------------------------------------

WS_CFG = ArrayConfig(rows=2, cols=3, acc_bits=8, dataflow="ws", act_depth=256, wgt_depth=256,
                     res_depth=256, param_depth=8)  # fmt: skip


def _ws_accel_run(monkeypatch, variant, m, k, n, seed=2):
    from oasa.sim.accel_image import build_image
    from oasa.sim.backends import amaranth_accel

    monkeypatch.setattr(amaranth_accel, "Accelerator", variant)
    rng = np.random.default_rng(seed)
    x, w = reference.random_operands(rng, WS_CFG, m, k, n)
    x[:, : WS_CFG.rows] = WS_CFG.act_max  # the first K tile leaves the range in some columns
    (run,) = amaranth_accel.run_accel_images([build_image(x, w, cfg=WS_CFG)])
    return x, w, run


def test_ws_accel_flag_stuck_low(monkeypatch):
    x, w, r = _ws_accel_run(monkeypatch, broken.ws_accel_flag_stuck_low, 4, 30, 6)
    g = golden.gemm(x, w, cfg=WS_CFG)
    np.testing.assert_array_equal(r.out, g.out)
    assert g.overflow.any() and not r.overflow.any() and r.flagged == 0


def test_ws_accel_forgets_partial_sums(monkeypatch):
    """Results and flags are those of the last K tile's terms alone."""
    k = 7  # K tiles of 2, 2, 2, 1 terms
    x, w, r = _ws_accel_run(monkeypatch, broken.ws_accel_forgets_partial_sums, 4, k, 6)
    last = slice(WS_CFG.rows * ((k - 1) // WS_CFG.rows), k)
    g = golden.gemm(x[:, last], w[last], cfg=WS_CFG)
    np.testing.assert_array_equal(r.out, g.out)
    np.testing.assert_array_equal(r.overflow, g.overflow)
    assert (g.out != golden.gemm(x, w, cfg=WS_CFG).out).any()
