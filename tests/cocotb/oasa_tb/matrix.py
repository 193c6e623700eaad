"""Which simulator runs which configuration (pytest side): the cocotb time budget.

Every bench x configuration on both simulators costs twice the simulator time and a second
build per configuration, while a configuration finds little on the second simulator that
the first missed; what the second simulator checks is the generated Verilog's semantics,
which every bench's first configuration covers. So :func:`sim_params` runs

- a bench's first item on every selected simulator (each bench meets both), and
- every other item on one simulator, alternating in :data:`~.build.SIMULATORS` order
  (Verilator first), so every item still runs;

``OASA_SIMS`` selects the simulators (comma-separated; default: all). With one selected,
or only one installed, everything runs on it; a selected simulator that is not installed
gets a skipped case with the reason, so the run says what it did not do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import pytest

from .build import SIMULATORS, sim_unavailable

__all__ = ["selected_sims", "sim_params"]


def selected_sims() -> list[str]:
    """Simulators to run on: ``OASA_SIMS`` (comma-separated) or all, in
    :data:`~.build.SIMULATORS` order whatever order ``OASA_SIMS`` names them in."""
    text = os.environ.get("OASA_SIMS", "")
    names = {s.strip() for s in text.split(",") if s.strip()} or set(SIMULATORS)
    unknown = names - set(SIMULATORS)
    if unknown:
        raise pytest.UsageError(
            f"OASA_SIMS names unknown simulator(s): {', '.join(sorted(unknown))}"
        )
    return [s for s in SIMULATORS if s in names]


def sim_params(items: Iterable, *, ids: Callable = lambda c: c.name) -> list:
    """``pytest.param(item, sim)`` for ``@pytest.mark.parametrize("cfg, sim", ...)``: the
    first item on every selected simulator, each later one on one simulator, taking the
    installed ones in turn. Ids read ``<sim>-<item id>``."""
    sims = selected_sims()
    missing = {s: sim_unavailable(s) for s in sims}
    usable = [s for s in sims if not missing[s]]
    params = []
    for i, item in enumerate(items):
        if i == 0:
            chosen = sims
        elif usable:
            chosen = [usable[(i - 1) % len(usable)]]
        else:
            chosen = sims[:1]
        for sim in chosen:
            marks = [pytest.mark.skip(reason=f"{sim}: {missing[sim]}")] if missing[sim] else []
            params.append(pytest.param(item, sim, id=f"{sim}-{ids(item)}", marks=marks))
    return params
