"""The toplevels the benches build, one function each (pytest side).

A bench that shares a DUT shares its build: benches 2 and 5 both call :func:`build_core`
with the same configuration and get the same cached binary. Broken variants pass their
subclass; its name is part of the build tag.
"""

from __future__ import annotations

from oasa.hw.accelerator import Accelerator
from oasa.hw.core import ArrayCore
from oasa.hw.output_stage import OutputStage
from oasa.hw.pe import ProcessingElement

from .build import Build, build_component

__all__ = ["build_accelerator", "build_core", "build_pe", "build_stage", "pe_id"]


def pe_id(cfg) -> str:
    """A PE's id: the configuration name without the array size, which plays no part."""
    return cfg.name.split("_", 1)[1]


def build_pe(cfg, sim: str, pe_class=ProcessingElement) -> Build:
    """``ProcessingElement`` as module ``pe``."""
    return build_component(
        pe_class(cfg), top="pe", tag=f"pe_{pe_id(cfg)}_{pe_class.__name__}", sim=sim
    )


def build_core(cfg, sim: str, core_class=ArrayCore) -> Build:
    """``ArrayCore`` (array + output stage) as module ``core``."""
    return build_component(
        core_class(cfg), top="core", tag=f"core_{cfg.name}_{core_class.__name__}", sim=sim
    )


def build_stage(cfg, sim: str, stage_class=OutputStage) -> Build:
    """``OutputStage`` as module ``stage``."""
    return build_component(
        stage_class(cfg), top="stage", tag=f"stage_{cfg.name}_{stage_class.__name__}", sim=sim
    )


def build_accelerator(cfg, sim: str, accel_class=Accelerator) -> Build:
    """The whole ``Accelerator`` (buffers, sequencer, registers) as module ``accel``."""
    return build_component(
        accel_class(cfg), top="accel", tag=f"accel_{cfg.name}_{accel_class.__name__}", sim=sim
    )
