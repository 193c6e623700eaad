"""Bench 3 (output stage), per configuration; which simulator runs which configuration is
:func:`oasa_tb.matrix.sim_params`."""

from pathlib import Path

import pytest
from oasa_tb.build import run_bench
from oasa_tb.configs import STAGE_CONFIGS
from oasa_tb.duts import build_stage
from oasa_tb.matrix import sim_params

pytestmark = pytest.mark.cocotb
HERE = Path(__file__).parent


@pytest.mark.parametrize("cfg, sim", sim_params(STAGE_CONFIGS))
def test_output_stage(cfg, sim, request):
    __tracebackhide__ = True
    run_bench(build_stage(cfg, sim), bench_dir=HERE, cfg=cfg, run_name=request.node.name)
