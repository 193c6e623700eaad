"""The toplevels the benches build, one function each (pytest side).

A bench that shares a DUT shares its build: benches 2 and 5 both call :func:`build_core`
with the same configuration and get the same cached binary. Each function takes the block
to build as a factory, ``cfg -> block`` (the production class by default); broken
variants (:mod:`oasa.hw.broken`) pass theirs, and its name is part of the build tag.
"""

from __future__ import annotations

from collections.abc import Callable

from oasa.hw.accelerator import Accelerator
from oasa.hw.core import ArrayCore
from oasa.hw.output_stage import OutputStage
from oasa.hw.pe import ProcessingElement

from .build import Build, build_component

__all__ = ["build_accelerator", "build_core", "build_pe", "build_stage", "pe_id"]


def pe_id(cfg) -> str:
    """A PE's id: the configuration name without the array size, which plays no part."""
    return cfg.name.split("_", 1)[1]


def build_pe(cfg, sim: str, pe: Callable = ProcessingElement) -> Build:
    """``ProcessingElement`` as module ``pe``."""
    return build_component(pe(cfg), top="pe", tag=f"pe_{pe_id(cfg)}_{pe.__name__}", sim=sim)


def build_core(cfg, sim: str, core: Callable = ArrayCore) -> Build:
    """``ArrayCore`` (array + output stage) as module ``core``."""
    return build_component(core(cfg), top="core", tag=f"core_{cfg.name}_{core.__name__}", sim=sim)


def build_stage(cfg, sim: str, stage: Callable = OutputStage) -> Build:
    """``OutputStage`` as module ``stage``."""
    return build_component(
        stage(cfg), top="stage", tag=f"stage_{cfg.name}_{stage.__name__}", sim=sim
    )


def build_accelerator(cfg, sim: str, accelerator: Callable = Accelerator) -> Build:
    """The whole ``Accelerator`` (buffers, sequencer, registers) as module ``accel``."""
    return build_component(
        accelerator(cfg), top="accel", tag=f"accel_{cfg.name}_{accelerator.__name__}", sim=sim
    )
