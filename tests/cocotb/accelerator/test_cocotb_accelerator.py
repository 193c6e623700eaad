"""Bench 4 (the whole Accelerator through its command interface) on Verilator and Icarus."""

from pathlib import Path

import pytest
from oasa_tb.build import run_bench
from oasa_tb.configs import ACCEL_CONFIGS
from oasa_tb.duts import build_accelerator

pytestmark = pytest.mark.cocotb
HERE = Path(__file__).parent


@pytest.mark.parametrize("cfg", ACCEL_CONFIGS, ids=lambda c: c.name)
def test_accelerator(cfg, sim, request):
    __tracebackhide__ = True
    run_bench(build_accelerator(cfg, sim), bench_dir=HERE, cfg=cfg, run_name=request.node.name)
