"""The suite can fail: deliberately broken variants of the RTL must be caught.

Each variant comes from :mod:`oasa.hw.broken`, the library the formal proofs use too, is
built like a production DUT and is run through the benches that should see the fault;
every listed cocotb test must fail (the same tests pass on the production builds, in
test_cocotb_pe.py / test_cocotb_array.py / test_cocotb_overflow.py /
test_cocotb_accelerator.py). Like the benches, the first variant runs on every selected
simulator and the others on one each, alternating (:func:`oasa_tb.matrix.sim_params`).
"""

from pathlib import Path

import pytest
from oasa_tb.build import run_bench
from oasa_tb.configs import ACCEL_CONFIGS, ARRAY_CONFIGS, PE_CONFIGS
from oasa_tb.duts import build_accelerator, build_core, build_pe
from oasa_tb.matrix import sim_params

from oasa.hw import broken

pytestmark = pytest.mark.cocotb
BENCHES = Path(__file__).parent.parent

# Narrow (P = product width) and wrap: every one of these faults shows in a short run.
CORE_CFG = ARRAY_CONFIGS[0]
PE_CFG = PE_CONFIGS[0]
assert CORE_CFG.overflow == "wrap" and CORE_CFG.acc_bits == CORE_CFG.product_bits
# The smallest weight-stationary accelerator (R = 2: many K tiles), narrow P = 10.
WS_ACCEL_CFG = next(c for c in ACCEL_CONFIGS if c.dataflow == "ws" and c.rows == 2)
OS_ACCEL_CFG = next(c for c in ACCEL_CONFIGS if c.dataflow == "os" and c.rows == 2)
CFG = {"core": CORE_CFG, "pe": PE_CFG, "accel": WS_ACCEL_CFG, "os_accel": OS_ACCEL_CFG}
BUILD = {
    "core": build_core,
    "pe": build_pe,
    "accel": build_accelerator,
    "os_accel": build_accelerator,
}

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
    (
        "flag-tied-0-ws-accel",
        "accel",
        broken.ws_accel_flag_stuck_low,
        {"accelerator": ["test_overflowing_layer", "test_worst_case_edge_weights"]},
    ),
    (
        "partial-sums-forgotten-ws-accel",
        "accel",
        broken.ws_accel_forgets_partial_sums,
        {
            "accelerator": [
                "test_overflowing_layer",
                "test_next_layer_programmed_while_running",
                "test_worst_case_edge_weights",
                "test_k_cut_into_calls",
            ]
        },
    ),
    (
        "initial-partial-sums-ignored-os-accel",
        "os_accel",
        broken.os_accel_ignores_init,
        {"accelerator": ["test_k_cut_into_calls"]},
    ),
]


@pytest.mark.parametrize("case, sim", sim_params(VARIANTS, ids=lambda v: v[0]))
def test_broken_variant_is_caught(case, sim, request):
    variant, kind, factory, must_fail = case
    cfg = CFG[kind]
    build = BUILD[kind](cfg, sim, factory)
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
