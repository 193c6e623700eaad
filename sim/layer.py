"""One layer API for every backend: moving from the model to the RTL is one argument.

``run_gemm`` / ``run_conv2d`` run a layer on the golden model (``"model"``), on the RTL
accelerator in Amaranth's simulator (``"amaranth"``) or in Verilator (``"verilator"``),
or on a board over its UART (``"board"``, given a ``port``), and return the same
:class:`LayerResult`: outputs, both flag arrays, cycles and utilization. The model's
cycles are the accelerator's, predicted exactly.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oasa.config import ArrayConfig
from oasa.errors import VerificationError
from oasa.files import require_memory
from oasa.sim import golden
from oasa.sim.backends import open_session, usable_backend
from oasa.sim.calls import run_calls

__all__ = [
    "BACKENDS",
    "LayerResult",
    "MismatchError",
    "compare",
    "run_conv2d",
    "run_gemm",
]

#: The simulation backends: they need nothing but this machine.
BACKENDS = ("model", "amaranth", "verilator")


class MismatchError(VerificationError):
    """An RTL backend disagreed with the golden model."""


@dataclass(frozen=True)
class LayerResult:
    """Outputs of one layer on one backend.

    Attributes
    ----------
    out:
        int64 outputs: raw P-bit results, or requantized activations when requested.
        (M, N) for a GEMM, (B, O, Ho, Wo) for a convolution.
    overflow:
        bool, same shape: the hardware's sticky flag (from the RTL on an RTL backend).
    final_overflow:
        bool, same shape: the exact sum is out of range. The hardware has no such flag,
        so this always comes from the golden model.
    cycles:
        Accelerator cycles from start to done (measured on RTL, predicted by the model).
    macs:
        Useful multiply-accumulates.
    flagged:
        Outputs with the flag set, as the accelerator's FLAGGED register counts them.
    calls:
        Accelerator calls the layer took (:func:`oasa.sim.calls.plan_calls`: the buffers
        hold a part of the GEMM at a time).
    """

    backend: str
    cfg: ArrayConfig
    out: NDArray[np.int64]
    overflow: NDArray[np.bool_]
    final_overflow: NDArray[np.bool_]
    cycles: int
    macs: int
    flagged: int
    calls: int = 1

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
    port: object = None,
    baud: int = 115200,
) -> LayerResult:
    """X (M x K) times W (K x N) on ``backend``, optionally requantized.

    The GEMM runs as the accelerator calls :func:`oasa.sim.calls.plan_calls` cuts it into
    (on every backend: the model's cycles are those of the same calls). RTL results are
    not checked here (see :func:`compare`), so a caller can report a mismatch rather than
    have it raised. Raises ``BufferFitError`` when no plan fits the buffers. ``port`` and
    ``baud`` are the board backend's serial port (a path, or an open serial-like object such
    as ``oasa.fpga.simserial.SimulatedSerial``).
    """
    usable_backend(backend, port)  # an unknown backend or a missing port fails before any work
    x = golden.check_activations(x, cfg)
    w = golden.check_weights(w, cfg)
    (m, k), n = x.shape, w.shape[1]
    require_memory(golden.gemm_memory_bytes(m, k, n), f"a {m} x {k} x {n} GEMM")
    g = golden.gemm(x, w, cfg=cfg)
    stage = {"bias": bias, "mult": mult, "shift": shift, "relu": relu}
    if requant:  # bad output-stage parameters fail here, before any simulation
        golden.output_stage(g.out[:1], cfg=cfg, **stage)
    with ExitStack() as stack:
        session = open_session(backend, stack, vcd=vcd, port=port, baud=baud)
        r = run_calls(session, x, w, cfg=cfg, stage=stage, requant=requant)
    return LayerResult(
        backend, cfg, r.out, r.overflow, g.final_overflow, r.cycles, m * k * n, r.flagged, r.calls
    )


def run_conv2d(
    x: ArrayLike,
    w: ArrayLike,
    *,
    cfg: ArrayConfig,
    stride: int = 1,
    padding: int = 0,
    **kwargs,
) -> LayerResult:
    """A convolution (NCHW input, OIHW kernel) as its GEMM on any backend.

    Outputs and flags come back as (B, O, Ho, Wo); keyword arguments are those of
    :func:`run_gemm`.
    """
    xa = golden.check_activations(x, cfg, ndim=4)
    wa = golden.check_weights(w, cfg, ndim=4)
    if xa.shape[1] != wa.shape[1]:
        raise golden.OperandError(
            f"x has {xa.shape[1]} input channels but w expects {wa.shape[1]} (w is O x C x kh x kw)"
        )
    b, _, h, wd = xa.shape
    o, _, kh, kw = wa.shape
    ho = golden.conv_output_size(h, kh, stride, padding)
    wo = golden.conv_output_size(wd, kw, stride, padding)
    cols = golden.im2col(xa, (kh, kw), stride=stride, padding=padding)
    r = run_gemm(cols, wa.reshape(o, -1).T, cfg=cfg, **kwargs)

    def to_nchw(a: NDArray) -> NDArray:
        return a.reshape(b, ho, wo, o).transpose(0, 3, 1, 2)

    return LayerResult(
        r.backend,
        cfg,
        to_nchw(r.out),
        to_nchw(r.overflow),
        to_nchw(r.final_overflow),
        r.cycles,
        r.macs,
        r.flagged,
        r.calls,
    )


def compare(result: LayerResult, reference: LayerResult) -> None:
    """Raise :class:`MismatchError` naming the first differing output, if any."""
    for what in ("out", "overflow"):
        a, b = getattr(result, what), getattr(reference, what)
        diff = np.argwhere(a != b)
        if diff.size:
            at = tuple(int(i) for i in diff[0])
            raise MismatchError(
                f"{result.backend} differs from the golden model in {what} at {list(at)}: "
                f"{a[at]} != {b[at]} ({len(diff)} outputs differ)"
            )
    if result.cycles != reference.cycles:
        raise MismatchError(
            f"{result.backend} took {result.cycles} cycles, "
            f"the cycle model predicts {reference.cycles}"
        )
    if result.flagged != reference.flagged:
        raise MismatchError(
            f"{result.backend} counted {result.flagged} flagged outputs, the model {reference.flagged}"
        )
