"""Bench 1 (ProcessingElement) on Verilator and Icarus, one test per configuration."""

from pathlib import Path

import pytest
from oasa_tb.build import run_bench
from oasa_tb.configs import PE_CONFIGS
from oasa_tb.duts import build_pe, pe_id

pytestmark = pytest.mark.cocotb
HERE = Path(__file__).parent


@pytest.mark.parametrize("cfg", PE_CONFIGS, ids=pe_id)
def test_pe(cfg, sim, request):
    __tracebackhide__ = True
    run_bench(build_pe(cfg, sim), bench_dir=HERE, cfg=cfg, run_name=request.node.name)
