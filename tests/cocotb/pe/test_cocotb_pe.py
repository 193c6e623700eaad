"""Bench 1 (ProcessingElement), one test per configuration; which simulator runs which
configuration is :func:`oasa_tb.matrix.sim_params`."""

from pathlib import Path

import pytest
from oasa_tb.build import run_bench
from oasa_tb.configs import PE_CONFIGS
from oasa_tb.duts import build_pe, pe_id
from oasa_tb.matrix import sim_params

from oasa.hw import broken

pytestmark = pytest.mark.cocotb
HERE = Path(__file__).parent


@pytest.mark.parametrize("cfg, sim", sim_params(PE_CONFIGS, ids=pe_id))
def test_pe(cfg, sim, request):
    __tracebackhide__ = True
    run_bench(build_pe(cfg, sim), bench_dir=HERE, cfg=cfg, run_name=request.node.name)


#: The bench's tests that continue dot products from initial values; the others start
#: every dot product from 0 and a clear flag.
CONTINUING = ["test_random_stream", "test_continued_partial_sums"]


@pytest.mark.parametrize("cfg, sim", sim_params(PE_CONFIGS[:1], ids=pe_id))
def test_pe_ignoring_init_is_caught(cfg, sim, request):
    """A PE that ignores ``init_acc``/``init_ovf`` (:class:`oasa.hw.broken.PEIgnoresInit`)
    fails exactly the tests that continue dot products from initial values, and passes
    the others: the bench drives the new ports and checks what they do."""
    outcome = run_bench(
        build_pe(cfg, sim, broken.PEIgnoresInit),
        bench_dir=HERE,
        cfg=cfg,
        run_name=request.node.name,
        check=False,
    )
    assert outcome.results, f"the bench produced no results ({outcome.log})"
    assert sorted(outcome.failed) == sorted(CONTINUING), (
        f"expected exactly {CONTINUING} to fail, got {outcome.results} (log {outcome.log})"
    )
