"""Bench 5 (adversarial overflow); shares bench 2's builds (and its simulator choice,
:func:`oasa_tb.matrix.sim_params`, so the same configuration builds once)."""

from pathlib import Path

import pytest
from oasa_tb.build import run_bench
from oasa_tb.configs import ARRAY_CONFIGS
from oasa_tb.duts import build_core
from oasa_tb.matrix import sim_params

pytestmark = pytest.mark.cocotb
HERE = Path(__file__).parent


@pytest.mark.parametrize("cfg, sim", sim_params(ARRAY_CONFIGS))
def test_overflow(cfg, sim, request):
    __tracebackhide__ = True
    run_bench(build_core(cfg, sim), bench_dir=HERE, cfg=cfg, run_name=request.node.name)
