"""The suite can fail: deliberately broken variants of the RTL must be caught.

Each variant comes from :mod:`oasa.hw.broken`, the library the formal proofs use too, is
built like a production DUT and is run through the benches that should see the fault;
every listed cocotb test must fail (the same tests pass on the production builds, in
test_cocotb_pe.py / test_cocotb_array.py / test_cocotb_overflow.py).
"""

from pathlib import Path

import pytest
from oasa_tb.build import run_bench
from oasa_tb.configs import ARRAY_CONFIGS, PE_CONFIGS
from oasa_tb.duts import build_core, build_pe

from oasa.hw import broken

pytestmark = pytest.mark.cocotb
BENCHES = Path(__file__).parent.parent

# Narrow (P = product width) and wrap: every one of these faults shows in a short run.
CORE_CFG = ARRAY_CONFIGS[0]
PE_CFG = PE_CONFIGS[0]
assert CORE_CFG.overflow == "wrap" and CORE_CFG.acc_bits == CORE_CFG.product_bits

# (id, DUT kind, variant factory, {bench folder: cocotb tests that must fail})
VARIANTS = [
    (
        "flag-tied-0-core",
        "core",
        broken.core_flag_stuck_low,
        {
            "array": ["test_random_tiles", "test_back_to_back_tiles"],
            "overflow": ["test_random_weights", "test_edge_weights"],
        },
    ),
    (
        "flag-tied-0-pe",
        "pe",
        broken.PEFlagStuckLow,
        {"pe": ["test_random_stream", "test_transient_overflow", "test_saturation_both_ends"]},
    ),
    (
        "saturate-in-wrap-core",
        "core",
        broken.core_saturates_in_wrap,
        {"array": ["test_random_tiles", "test_back_to_back_tiles"]},
    ),
    (
        "saturate-in-wrap-pe",
        "pe",
        broken.pe_saturates_in_wrap,
        {"pe": ["test_random_stream", "test_transient_overflow"]},
    ),
    (
        "one-pe-product-off-by-one",
        "core",
        broken.core_one_pe_off_by_one,
        {"array": ["test_random_tiles", "test_partial_tiles"]},
    ),
    (
        "dropped-weight-handshake",
        "core",
        broken.CoreDropsWeightHandshake,
        {
            "array": [
                "test_stalls/act_pause=none/wgt_pause=random",
                "test_stalls/act_pause=bursty/wgt_pause=alternate",
            ]
        },
    ),
]


@pytest.mark.parametrize(
    "variant, kind, factory, must_fail", VARIANTS, ids=[v[0] for v in VARIANTS]
)
def test_broken_variant_is_caught(variant, kind, factory, must_fail, sim, request):
    cfg = CORE_CFG if kind == "core" else PE_CFG
    build = build_core(cfg, sim, factory) if kind == "core" else build_pe(cfg, sim, factory)
    for bench, tests in must_fail.items():
        outcome = run_bench(
            build,
            bench_dir=BENCHES / bench,
            cfg=cfg,
            run_name=f"{request.node.name}-{bench}",
            testcase=tests,
            check=False,
        )
        assert outcome.results, f"{variant}: {bench} bench produced no results ({outcome.log})"
        missed = [t for t in tests if outcome.results.get(t) != "failed"]
        assert not missed, (
            f"{variant} was not caught by {bench}: {missed} "
            f"(results {outcome.results}; log {outcome.log})"
        )
