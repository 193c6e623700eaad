"""Formal proofs of the PE, output stage and array, one test per configuration and property
(marker ``formal``).

Each test writes a harness from :mod:`oasa.hw.formal.harness` as RTLIL, proves it with
yowasp-sby (k-induction, z3) and requires PASS; the broken variants of
:mod:`oasa.hw.broken` must FAIL with a counterexample trace from reset.
The heavy output-stage proofs come first, so that pytest-xdist starts them early.
"""

import pytest

from oasa.config import ArrayConfig
from oasa.hw import broken as bad
from oasa.hw.formal import FormalToolError, run_property
from oasa.hw.formal.run import tool_env
from oasa.hw.output_stage import OutputStage

try:
    tool_env()
except FormalToolError as e:  # pragma: no cover - make test installs the formal extra
    pytest.skip(f"formal tools missing: {e}", allow_module_level=True)

pytestmark = pytest.mark.formal

# The output stage at the default output-stage widths (32-bit bias, 16-bit multiplier,
# shifts 0..63): the shipped configuration (4-bit unsigned activations, P = 16) and the
# widest (8-bit signed activations, P = 32). One lane: every lane is the same circuit.
STAGE_CONFIGS = [
    ArrayConfig(rows=1, cols=1),
    ArrayConfig(rows=1, cols=1, act_bits=8, act_signed=True, weight_bits=8, acc_bits=32),
]

# The PE: N, M in {4, 8}, signed and unsigned activations, P from the product width
# (cfg.product_bits) to 32; each in both overflow modes.
_PE_BASE = [
    ArrayConfig(act_bits=4, weight_bits=4, acc_bits=8),
    ArrayConfig(act_bits=4, weight_bits=4, acc_bits=32),
    ArrayConfig(act_bits=4, act_signed=True, weight_bits=4, acc_bits=8),
    ArrayConfig(act_bits=8, weight_bits=8, acc_bits=16),
    ArrayConfig(act_bits=8, act_signed=True, weight_bits=8, acc_bits=32),
    ArrayConfig(act_bits=4, act_signed=True, weight_bits=8, acc_bits=20),
]
PE_CONFIGS = [c.replace(overflow=mode) for c in _PE_BASE for mode in ("wrap", "saturate")]

SKEW_CONFIGS = [ArrayConfig(rows=2, cols=2), ArrayConfig(rows=2, cols=3)]

# The weight-stationary PE (its add is the output-stationary PE's, hw.pe.p_bit_add): P at
# the product width and at 32, signed and unsigned activations, both modes.
WS_PE_CONFIGS = [
    c.replace(dataflow="ws", overflow=mode)
    for c in (_PE_BASE[0], _PE_BASE[2], _PE_BASE[4])
    for mode in ("wrap", "saturate")
]


def _ids(cfg):
    return cfg.name


def _explain(r):
    return f"{r.name} on {r.config}: {r.status} ({r.failed}, log in {r.work_dir})"


def test_configs_cover_the_range():
    """The PE set reaches both ends of P for 4- and 8-bit operands, signed and not."""
    for bits in (4, 8):
        ps = {c.acc_bits - c.product_bits for c in PE_CONFIGS if c.act_bits == bits}
        assert 0 in ps, f"{bits}-bit operands: P = product width is not covered"
        assert any(c.acc_bits == 32 for c in PE_CONFIGS if c.act_bits == bits)
    assert {c.act_signed for c in PE_CONFIGS} == {False, True}
    assert {c.overflow for c in PE_CONFIGS} == {"wrap", "saturate"}
    assert {c.act_signed for c in STAGE_CONFIGS} == {False, True}


@pytest.mark.parametrize("cfg", STAGE_CONFIGS, ids=_ids)
def test_output_stage(cfg, tmp_path):
    r = run_property(cfg, "output_stage", work_dir=tmp_path)
    assert r.passed, _explain(r)


@pytest.mark.parametrize("cfg", PE_CONFIGS, ids=_ids)
def test_pe_accumulator(cfg, tmp_path):
    """Property 1 (wrap) or 2 (saturate), by the config's overflow mode."""
    r = run_property(cfg, cfg.overflow, work_dir=tmp_path)
    assert r.passed, _explain(r)


@pytest.mark.parametrize("cfg", PE_CONFIGS, ids=_ids)
def test_pe_flag(cfg, tmp_path):
    r = run_property(cfg, "flag", work_dir=tmp_path)
    assert r.passed, _explain(r)


@pytest.mark.parametrize("cfg", WS_PE_CONFIGS, ids=_ids)
def test_ws_pe_partial_sum(cfg, tmp_path):
    """Property 6 (wrap) or 7 (saturate), by the config's overflow mode."""
    r = run_property(cfg, f"ws_{cfg.overflow}", work_dir=tmp_path)
    assert r.passed, _explain(r)


@pytest.mark.parametrize("cfg", WS_PE_CONFIGS, ids=_ids)
def test_ws_pe_flag(cfg, tmp_path):
    r = run_property(cfg, "ws_flag", work_dir=tmp_path)
    assert r.passed, _explain(r)


def test_properties_follow_the_dataflow():
    from oasa.hw.formal import applicable

    names = {
        flow: {p.name for p in applicable(ArrayConfig(dataflow=flow))} for flow in ("os", "ws")
    }
    assert names == {"os": {"wrap", "flag", "output_stage", "skew"},
                     "ws": {"ws_wrap", "ws_flag", "output_stage", "ws_weights"}}  # fmt: skip


# The shift-and-add PE of the FPGA builds (its product is built in LUTs): the same
# properties, at P = product width (a4w4, both signs) and wide (P = 32), on the 4-bit
# operands the FPGA builds use (an 8 x 8-bit shift-and-add product takes the solver
# 100 s here; the plain PE's proofs cover 8-bit operands).
SHIFT_ADD_CONFIGS = [PE_CONFIGS[i] for i in (0, 5, 3)]


@pytest.mark.parametrize("cfg", SHIFT_ADD_CONFIGS, ids=_ids)
def test_shift_add_pe(cfg, tmp_path):
    """Properties 1 or 2, and 3, for ``oasa.fpga.multipliers.ShiftAddPE``."""
    from oasa.fpga.multipliers import ShiftAddPE

    for prop in (cfg.overflow, "flag"):
        r = run_property(cfg, prop, work_dir=tmp_path / prop, block=ShiftAddPE)
        assert r.passed, _explain(r)


@pytest.mark.parametrize("cfg", SKEW_CONFIGS, ids=_ids)
def test_array_skew(cfg, tmp_path):
    r = run_property(cfg, "skew", work_dir=tmp_path)
    assert r.passed, _explain(r)


# -- the same harnesses must catch real bugs ------------------------------------------------
# A counterexample from reset must fit in the base case, so these use a depth that reaches
# an overflow of the narrowest accumulator (two beats) or a full trip through the stage.


def _must_fail(r, what):
    assert r.status == "FAIL", _explain(r)
    assert r.trace is not None and r.trace.is_file(), "no counterexample trace"
    assert r.trace.read_text().startswith("$"), "the trace is not a VCD"
    assert what in r.failed, f"expected {what!r} to fail, got {r.failed}"
    assert r.step is not None


@pytest.mark.parametrize("cfg", [c.replace(dataflow="ws") for c in SKEW_CONFIGS], ids=_ids)
def test_ws_array_weights(cfg, tmp_path):
    """Bounded: three back-to-back one-row passes from reset, every beat when the array
    takes it or any later, reach the last PE with their own weights."""
    r = run_property(cfg, "ws_weights", work_dir=tmp_path)
    assert r.mode == "bmc" and r.depth == 2 * (cfg.rows + cfg.cols) + 4
    assert r.passed, _explain(r)


def test_ws_loads_without_the_column_skew_fail(tmp_path):
    """Loading every column at once overwrites column 2's weight before the first row has
    reached it: a counterexample within a few cycles of reset."""
    cfg = SKEW_CONFIGS[1].replace(dataflow="ws")
    r = run_property(cfg, "ws_weights", work_dir=tmp_path, block=bad.WSArrayLoadsAllColumnsAtOnce)
    assert r.status == "FAIL" and r.trace is not None
    assert any("PE (1,2)" in f or "PE (0,2)" in f for f in r.failed), r.failed


def test_flag_only_on_positive_overflow_fails(tmp_path):
    cfg = ArrayConfig(act_bits=4, weight_bits=4, acc_bits=8)
    r = run_property(cfg, "flag", work_dir=tmp_path, block=bad.PEFlagPositiveOnly, depth=6)
    _must_fail(r, "ovf == init_ovf or some partial sum since the last first left the range")


def test_ws_flag_only_on_positive_overflow_fails(tmp_path):
    """The weight loads, then the activation, then the product: a counterexample from reset
    takes five steps."""
    cfg = ArrayConfig(act_bits=4, weight_bits=4, acc_bits=8, dataflow="ws")
    r = run_property(cfg, "ws_flag", work_dir=tmp_path, block=bad.WSPEFlagPositiveOnly, depth=6)
    _must_fail(r, "flag_out == flag | (psum + x*w) left the range")
    r = run_property(cfg, "ws_wrap", work_dir=tmp_path / "wrap", block=bad.WSPEFlagPositiveOnly)
    assert r.passed, _explain(r)  # the partial sum is right: each harness names its property


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_ignoring_the_initial_partial_sum_fails(mode, tmp_path):
    """A PE that starts every dot product from 0 (as before partial sums could continue)
    breaks the accumulator property of either mode: one beat with init_acc != 0 shows it."""
    cfg = ArrayConfig(act_bits=4, weight_bits=4, acc_bits=8, overflow=mode)
    r = run_property(cfg, mode, work_dir=tmp_path, block=bad.PEIgnoresInit, depth=4)
    what = {
        "wrap": "acc == init_acc + exact running sum mod 2**P",
        "saturate": "acc == clamp_P(acc + x*w) step by step from init_acc",
    }[mode]
    _must_fail(r, what)
    trace = r.counterexample()
    assert any(trace["dut.init_acc"]), "the counterexample needs a nonzero init_acc"


def test_ignoring_the_initial_flag_fails(tmp_path):
    """The same PE also drops ``init_ovf``: the flag property fails on it."""
    cfg = ArrayConfig(act_bits=4, weight_bits=4, acc_bits=8)
    r = run_property(cfg, "flag", work_dir=tmp_path, block=bad.PEIgnoresInit, depth=4)
    _must_fail(r, "ovf == init_ovf or some partial sum since the last first left the range")
    trace = r.counterexample()
    marks = zip(trace["dut.valid"], trace["dut.first"], trace["dut.init_ovf"], strict=True)
    assert any(all(m) for m in marks), "the counterexample needs a first beat with init_ovf"


def test_clamp_off_by_one_fails(tmp_path):
    cfg = ArrayConfig(act_bits=4, weight_bits=4, acc_bits=8, overflow="saturate")
    r = run_property(cfg, "saturate", work_dir=tmp_path, block=bad.PEClampOffByOne, depth=6)
    _must_fail(r, "acc == clamp_P(acc + x*w) step by step from init_acc")


def test_clamp_off_by_one_keeps_the_flag_right(tmp_path):
    """The broken clamp only corrupts the value: the flag proof still passes, so each
    harness fails for the property it states, not by accident."""
    cfg = ArrayConfig(act_bits=4, weight_bits=4, acc_bits=8, overflow="saturate")
    r = run_property(cfg, "flag", work_dir=tmp_path, block=bad.PEClampOffByOne)
    assert r.passed, _explain(r)


def test_round_half_down_fails(tmp_path):
    """Bounded search only (latency + 1 steps from reset): a counterexample is all that is
    needed, and it skips the induction step that a failing design cannot pass anyway. A
    narrow stage (8-bit bias, 4-bit multiplier) keeps the search short; the harness is the
    same."""
    cfg = ArrayConfig(rows=1, cols=1, acc_bits=8, bias_bits=8, mult_bits=4)
    r = run_property(
        cfg,
        "output_stage",
        work_dir=tmp_path,
        block=bad.StageRoundsHalfDown,
        depth=OutputStage.LATENCY + 1,
        mode="bmc",
    )
    _must_fail(r, "lane 0: value == golden formula")
