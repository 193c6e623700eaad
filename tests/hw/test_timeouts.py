"""Every wait on the hardware has a limit: a design that never finishes fails with a
message naming the layer and the predicted and elapsed cycles, instead of hanging.

The broken variants (:mod:`oasa.hw.broken`) drop the tile's ``last`` marker, the bug that
once made a test hang: without it the array never closes a tile, so no result row and no
``done`` ever come.
"""

import time
from functools import partial

import numpy as np
import pytest

from oasa.config import ArrayConfig
from oasa.errors import HardwareTimeout
from oasa.hw.accelerator import Accelerator
from oasa.hw.broken import CoreDropsLast, SequencerDropsLast
from oasa.sim import golden
from oasa.sim.accel_image import build_image
from oasa.sim.backends import amaranth_accel, amaranth_core
from oasa.sim.backends.amaranth_accel import run_accel_images
from oasa.sim.cycles import accelerator_cycles, core_cycles, cycle_budget

SMALL = {"act_depth": 64, "wgt_depth": 64, "res_depth": 64, "param_depth": 8}
CFG = ArrayConfig(rows=2, cols=2, acc_bits=10, **SMALL)


def _operands(m, k, n):
    rng = np.random.default_rng(5)
    return rng.integers(0, 16, (m, k)), rng.integers(-8, 8, (k, n))


def test_accelerator_that_never_finishes_fails_within_the_budget(monkeypatch):
    monkeypatch.setattr(
        amaranth_accel, "Accelerator", partial(Accelerator, sequencer=SequencerDropsLast)
    )
    x, w = _operands(3, 4, 3)
    img = build_image(x, w, cfg=CFG, label="layer 7 (dense 'fc')")
    predicted = accelerator_cycles(CFG, 3, 4, 3)
    started = time.perf_counter()
    with pytest.raises(HardwareTimeout) as e:
        run_accel_images([img])
    message = str(e.value)
    assert message.startswith("layer 7 (dense 'fc'): the accelerator did not finish")
    assert f"{cycle_budget(predicted) + 1} cycles elapsed" in message
    assert f"the cycle model predicts {predicted}" in message
    assert time.perf_counter() - started < 60


def test_the_same_layer_finishes_on_the_working_design():
    """The control for the test above: same layer, same budget, intact sequencer."""
    x, w = _operands(3, 4, 3)
    (run,) = run_accel_images([build_image(x, w, cfg=CFG)])
    np.testing.assert_array_equal(run.out, golden.gemm(x, w, cfg=CFG).out)
    assert run.cycles == accelerator_cycles(CFG, 3, 4, 3)


def test_core_that_never_delivers_rows_fails_within_the_budget(monkeypatch):
    monkeypatch.setattr(amaranth_core, "ArrayCore", CoreDropsLast)
    x, w = _operands(3, 5, 2)
    with pytest.raises(HardwareTimeout, match=r"3 x 5 x 2 GEMM: the array core did not") as e:
        amaranth_core.run_core_gemm(x, w, cfg=CFG)
    assert f"the cycle model predicts {core_cycles(CFG, 3, 5, 2)}" in str(e.value)


def test_hardware_timeout_is_a_verification_failure():
    """The CLI maps it to exit 1: the design, not the input, is wrong."""
    from oasa.errors import EXIT_VERIFICATION, exit_code

    assert exit_code(HardwareTimeout("x")) == EXIT_VERIFICATION
