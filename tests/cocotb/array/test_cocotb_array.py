"""Bench 2 (systolic array in ``ArrayCore``), per configuration; which simulator runs which
configuration is :func:`oasa_tb.matrix.sim_params`."""

from pathlib import Path

import pytest
from oasa_tb.build import run_bench
from oasa_tb.configs import ARRAY_CONFIGS
from oasa_tb.duts import build_core
from oasa_tb.matrix import sim_params

pytestmark = pytest.mark.cocotb
HERE = Path(__file__).parent


@pytest.mark.parametrize("cfg, sim", sim_params(ARRAY_CONFIGS))
def test_array(cfg, sim, request):
    __tracebackhide__ = True
    run_bench(build_core(cfg, sim), bench_dir=HERE, cfg=cfg, run_name=request.node.name)
