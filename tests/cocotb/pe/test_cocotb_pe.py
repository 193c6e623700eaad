"""Bench 1 (ProcessingElement) on Verilator and Icarus, one test per configuration."""

from pathlib import Path

import pytest
from oasa_tb.build import build_component, run_bench
from oasa_tb.configs import PE_CONFIGS

from oasa.hw.pe import ProcessingElement

pytestmark = pytest.mark.cocotb
HERE = Path(__file__).parent


def pe_id(cfg):
    return cfg.name.split("_", 1)[1]  # the array size plays no part in a PE


def run_pe(cfg, sim, run_name, pe_class=ProcessingElement, **kw):
    __tracebackhide__ = True
    build = build_component(
        pe_class(cfg), top="pe", tag=f"pe_{pe_id(cfg)}_{pe_class.__name__}", sim=sim
    )
    return run_bench(build, bench_dir=HERE, cfg=cfg, run_name=run_name, **kw)


@pytest.mark.parametrize("cfg", PE_CONFIGS, ids=pe_id)
def test_pe(cfg, sim, request):
    __tracebackhide__ = True
    run_pe(cfg, sim, request.node.name)
