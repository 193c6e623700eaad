"""Bench 3 (output stage) on Verilator and Icarus, per configuration."""

from pathlib import Path

import pytest
from oasa_tb.build import run_bench
from oasa_tb.configs import STAGE_CONFIGS
from oasa_tb.duts import build_stage

pytestmark = pytest.mark.cocotb
HERE = Path(__file__).parent


@pytest.mark.parametrize("cfg", STAGE_CONFIGS, ids=lambda c: c.name)
def test_output_stage(cfg, sim, request):
    __tracebackhide__ = True
    run_bench(build_stage(cfg, sim), bench_dir=HERE, cfg=cfg, run_name=request.node.name)
