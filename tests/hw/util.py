"""Helpers for unit benches on Amaranth's simulator (async testbenches only)."""

from __future__ import annotations

import contextlib
import os

from amaranth.sim import Simulator


def run_bench(dut, *benches, name: str = "bench") -> None:
    """Simulate ``dut`` with the given async testbenches; a VCD when OASA_VCD=1."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    vcd = os.environ.get("OASA_VCD") == "1"
    with sim.write_vcd(f"{name}.vcd") if vcd else contextlib.nullcontext():
        sim.run()
