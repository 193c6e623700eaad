"""Real FPGA builds with the yowasp toolchain (marked ``fpga``; skip with -m 'not fpga').

One small iCEBreaker build through the CLI (the whole flow: Amaranth, yosys, nextpnr,
icepack, the report), and Yosys synthesis of the array for the cost figures.
"""

from __future__ import annotations

import json

import pytest

from oasa.cli import main
from oasa.config import ArrayConfig
from oasa.fpga.cost import synth_cost

pytestmark = pytest.mark.fpga


def test_icebreaker_build_end_to_end(tmp_path, capsys):
    out = tmp_path / "ice"
    rc = main(
        ["fpga", "build", "--board", "icebreaker", "--rows", "2", "--cols", "2", "-o", str(out)]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    rep = json.loads((out / "report.json").read_text())
    assert rep["routed"] and rep["timing_met"]
    assert (out / "top.bin").stat().st_size > 100_000  # an UP5K bitstream is ~104 kB
    assert 0 < rep["used"]["LUT"] <= rep["available"]["LUT"] == 5280
    assert rep["fmax_mhz"] >= rep["target_mhz"] == 24.0
    assert rep["config"]["rows"] == 2 and rep["config"]["mult_bits"] == 8  # the board's defaults
    assert "timing met" in text and "LC " in text


def test_array_cost_grows_with_the_accumulator():
    narrow = synth_cost(ArrayConfig(rows=2, cols=2, acc_bits=12), "ecp5")
    wide = synth_cost(ArrayConfig(rows=2, cols=2, acc_bits=32), "ecp5")
    assert narrow.dsps == wide.dsps == 0  # products in LUTs
    # Each extra accumulator bit costs an adder bit, and an accumulator and a shadow (drain)
    # register bit in every PE: at least 2 x 20 flip-flops per PE from P = 12 to 32.
    assert wide.luts > narrow.luts and wide.ffs - narrow.ffs >= 4 * 20 * 2
