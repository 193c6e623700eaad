"""One layer API for every backend: moving from the model to the RTL is one argument."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oasa.config import ArrayConfig
from oasa.sim import golden
from oasa.sim.cycles import core_cycles

__all__ = ["BACKENDS", "LayerResult", "MismatchError", "compare", "run_gemm"]

BACKENDS = ("model", "amaranth")


class MismatchError(AssertionError):
    """An RTL backend disagreed with the golden model."""


@dataclass(frozen=True)
class LayerResult:
    """Outputs of one GEMM layer on one backend.

    Attributes
    ----------
    out:
        (M, N) int64: raw P-bit results, or requantized activations when requested.
    overflow:
        (M, N) bool, the hardware's sticky flag (from the RTL on an RTL backend).
    final_overflow:
        (M, N) bool, the exact sum is out of range. The hardware has no such flag, so
        this always comes from the golden model.
    cycles:
        Cycles from the first beat to the last result (measured on RTL, predicted by the
        model).
    macs:
        Useful multiply-accumulates, M * K * N.
    """

    backend: str
    cfg: ArrayConfig
    out: NDArray[np.int64]
    overflow: NDArray[np.bool_]
    final_overflow: NDArray[np.bool_]
    cycles: int
    macs: int

    @property
    def utilization(self) -> float:
        """Useful MACs / (R * C * cycles)."""
        return self.macs / (self.cfg.rows * self.cfg.cols * self.cycles)


def run_gemm(
    x: ArrayLike,
    w: ArrayLike,
    *,
    cfg: ArrayConfig,
    backend: str = "model",
    bias: ArrayLike = 0,
    mult: ArrayLike = 1,
    shift: ArrayLike = 0,
    relu: bool = False,
    requant: bool = False,
    vcd: str | None = None,
) -> LayerResult:
    """X (M x K) times W (K x N) on ``backend``, optionally requantized.

    RTL backends are not checked here (see :func:`compare`), so a caller can report a
    mismatch rather than have it raised.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    g = golden.gemm(x, w, cfg=cfg)
    m, k = np.shape(x)
    n = np.shape(w)[1]
    if backend == "model":
        out = g.acc
        if requant:
            out = golden.output_stage(g.acc, cfg=cfg, bias=bias, mult=mult, shift=shift, relu=relu)
        return LayerResult(
            backend, cfg, out, g.overflow, g.final_overflow, core_cycles(cfg, m, k, n), m * k * n
        )

    from oasa.sim.backends.amaranth_core import run_core_gemm

    r = run_core_gemm(
        x, w, cfg=cfg, bias=bias, mult=mult, shift=shift, relu=relu, requant=requant, vcd=vcd
    )
    return LayerResult(backend, cfg, r.values, r.overflow, g.final_overflow, r.cycles, m * k * n)


def compare(result: LayerResult, reference: LayerResult) -> None:
    """Raise :class:`MismatchError` naming the first differing output, if any."""
    for what in ("out", "overflow"):
        a, b = getattr(result, what), getattr(reference, what)
        diff = np.argwhere(a != b)
        if diff.size:
            i, j = diff[0]
            raise MismatchError(
                f"{result.backend} differs from the golden model in {what} at [{i}, {j}]: "
                f"{a[i, j]} != {b[i, j]} ({len(diff)} outputs differ)"
            )
    if result.cycles != reference.cycles:
        raise MismatchError(
            f"{result.backend} took {result.cycles} cycles, "
            f"the cycle model predicts {reference.cycles}"
        )
