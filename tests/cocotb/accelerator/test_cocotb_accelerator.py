"""Bench 4 (the whole Accelerator through its command interface), both dataflows; which
simulator runs which configuration is :func:`oasa_tb.matrix.sim_params`."""

from pathlib import Path

import pytest
from oasa_tb.build import run_bench
from oasa_tb.configs import ACCEL_CONFIGS
from oasa_tb.duts import build_accelerator
from oasa_tb.matrix import sim_params

pytestmark = pytest.mark.cocotb
HERE = Path(__file__).parent


@pytest.mark.parametrize("cfg, sim", sim_params(ACCEL_CONFIGS))
def test_accelerator(cfg, sim, request):
    __tracebackhide__ = True
    run_bench(build_accelerator(cfg, sim), bench_dir=HERE, cfg=cfg, run_name=request.node.name)
