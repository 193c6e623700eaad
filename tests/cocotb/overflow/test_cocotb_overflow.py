"""Bench 5 (adversarial overflow) on Verilator and Icarus; shares bench 2's builds."""

from pathlib import Path

import pytest
from oasa_tb.build import run_bench
from oasa_tb.configs import ARRAY_CONFIGS
from oasa_tb.duts import build_core

pytestmark = pytest.mark.cocotb
HERE = Path(__file__).parent


@pytest.mark.parametrize("cfg", ARRAY_CONFIGS, ids=lambda c: c.name)
def test_overflow(cfg, sim, request):
    __tracebackhide__ = True
    run_bench(build_core(cfg, sim), bench_dir=HERE, cfg=cfg, run_name=request.node.name)
