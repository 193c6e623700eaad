"""The golden model as a backend: the same calls, answered by :mod:`oasa.sim.golden`,
with the cycle model's exact prediction as the cycle count."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

from oasa.sim import golden
from oasa.sim.accel_image import AccelRun
from oasa.sim.backends import GemmCall
from oasa.sim.cycles import accelerator_cycles

__all__ = ["ModelBackend"]


class _ModelSession:
    def run(self, calls: Sequence[GemmCall]) -> list[AccelRun]:
        runs = []
        for call in calls:
            img = call.image
            g = golden.gemm(call.x, call.w, cfg=img.cfg)
            out = golden.output_stage(g.out, cfg=img.cfg, **call.stage) if img.requant else g.out
            cycles = accelerator_cycles(img.cfg, img.m, img.k, img.n, cont=img.cont)
            runs.append(AccelRun(out, g.overflow, cycles, int(g.overflow.sum()), cycles))
        return runs


class ModelBackend:
    """Needs nothing but numpy; bit-exact with the RTL, cycles predicted exactly."""

    name = "model"
    needs_port = False
    waveform = False

    def prepare(self, configs: Sequence, *, trace: bool = False) -> None:
        return None

    def open(self, stack: ExitStack, *, vcd=None, port=None, baud: int = 115200) -> _ModelSession:
        return _ModelSession()
