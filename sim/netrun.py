"""Run an exported network layer by layer on the accelerator, cycle-accurately.

Each weighted layer becomes accelerator calls: a convolution is lowered to its GEMM
(im2col on the host), the GEMM is cut into calls that fit the buffers (rows of the GEMM,
and columns when the weights do not fit), and the output stage on chip produces the
next layer's N-bit activations (the last layer runs raw). Max-pooling runs on the host,
on integers. Every layer's output and flags are checked against the golden model on the
same input, bit for bit; the first difference stops the run and is named.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from oasa.config import ArrayConfig
from oasa.errors import InputError, VerificationError
from oasa.sim import golden
from oasa.sim.accel_image import BufferFitError, build_image
from oasa.sim.cycles import accelerator_cycles
from oasa.sim.netfile import Layer, Network, gemm_weight
from oasa.sim.network import LayerRun, NetworkResult, layer_forward, network_result
from oasa.sim.tiling import tile_grid

__all__ = ["LayerMismatch", "LayerStats", "NetRun", "plan_calls", "run_network_rtl"]


class LayerMismatch(VerificationError):
    """An RTL layer output differs from the golden model's."""


@dataclass
class LayerStats:
    """Accelerator work of one layer over the whole run."""

    index: int
    name: str
    kind: str
    calls: int = 0
    cycles: int = 0
    macs: int = 0
    flagged: int = 0
    dot_products: int = 0
    cfg: ArrayConfig | None = None

    @property
    def utilization(self) -> float:
        if not self.cycles or self.cfg is None:
            return 0.0
        return self.macs / (self.cfg.rows * self.cfg.cols * self.cycles)


@dataclass
class NetRun:
    """The network as the accelerator ran it."""

    backend: str
    result: NetworkResult
    stats: list[LayerStats] = field(default_factory=list)
    images: int = 0

    @property
    def cycles(self) -> int:
        return sum(s.cycles for s in self.stats)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stats)


def plan_calls(cfg: ArrayConfig, m: int, k: int, n: int) -> list[tuple[slice, slice]]:
    """Cut an M x K x N GEMM into accelerator calls that fit the buffers: column chunks
    (multiples of C) whose weights fit, then row chunks (multiples of R) whose activations
    and results fit."""
    if k > cfg.act_depth or k > cfg.wgt_depth:
        raise BufferFitError(
            f"K={k} does not fit: one tile needs K words in the activation and weight buffers "
            f"(act_depth={cfg.act_depth}, wgt_depth={cfg.wgt_depth}); raise --act-depth/--wgt-depth"
        )
    n_tiles = max(1, min(cfg.wgt_depth // k, cfg.param_depth))
    n_chunk = min(n, n_tiles * cfg.cols)
    nts = tile_grid(cfg, 1, n_chunk)[1]
    m_tiles = min(cfg.act_depth // k, cfg.res_depth // (nts * cfg.rows))
    if m_tiles < 1:
        raise BufferFitError(
            f"the result buffer holds {cfg.res_depth} words, less than one row tile of "
            f"{nts * cfg.rows}; raise --res-depth"
        )
    m_chunk = min(m, m_tiles * cfg.rows)
    return [
        (slice(m0, min(m, m0 + m_chunk)), slice(n0, min(n, n0 + n_chunk)))
        for n0 in range(0, n, n_chunk)
        for m0 in range(0, m, m_chunk)
    ]


class _Backend:
    """Runs GEMM calls on one backend, keeping Verilator models (or the board link) open
    across calls."""

    def __init__(
        self,
        name: str,
        stack: ExitStack,
        vcd: str | None,
        port: object = None,
        baud: int = 115200,
    ):
        if name == "board" and port is None:
            raise InputError("the board backend needs a port (e.g. port='/dev/ttyUSB1')")
        self.name = name
        self.stack = stack
        self.vcd = vcd
        self.port = port
        self.baud = baud
        self.models: dict[ArrayConfig, object] = {}

    def run(self, images: list) -> list[tuple[NDArray, NDArray, int, int]]:
        """(out, overflow, cycles, flagged) per image, in order."""
        if self.name == "model":
            out = []
            for img, (x, w, kw) in images:
                g = golden.gemm(x, w, cfg=img.cfg)
                o = (
                    golden.output_stage(g.acc, cfg=img.cfg, **kw)
                    if img.registers["MODE"] & 2
                    else g.acc
                )
                cyc = accelerator_cycles(img.cfg, img.m, img.k, img.n)
                out.append((o, g.overflow, cyc, int(g.overflow.sum())))
            return out
        if self.name == "amaranth":
            from oasa.sim.backends.amaranth_accel import run_accel_images

            runs = run_accel_images([img for img, _ in images])
            return [(r.out, r.overflow, r.cycles, r.flagged) for r in runs]
        from oasa.sim.backends.verilator_accel import VerilatorAccelerator

        out = []
        for img, _ in images:
            model = self.models.get(img.cfg)
            if model is None and self.name == "board":
                from oasa.fpga.host import BoardAccelerator

                # One board holds one build: a second configuration fails its identity check.
                model = self.stack.enter_context(
                    BoardAccelerator(img.cfg, self.port, baud=self.baud)
                )
                self.models[img.cfg] = model
            elif model is None:
                vcd = self.vcd if not self.models else None  # one waveform: the first model
                model = self.stack.enter_context(VerilatorAccelerator(img.cfg, vcd=vcd))
                self.models[img.cfg] = model
            r = model.run(img)
            out.append((r.out, r.overflow, r.cycles, r.flagged))
        return out


def _first_difference(a: NDArray, b: NDArray) -> str:
    at = tuple(int(i) for i in np.argwhere(a != b)[0])
    return (
        f"at {list(at)}: accelerator {a[at]} != golden model {b[at]} ({int((a != b).sum())} differ)"
    )


def _rtl_layer(
    layer: Layer, x: NDArray[np.int64], cfg: ArrayConfig, backend: _Backend, stats: LayerStats
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """One weighted layer on the accelerator: (GEMM-shaped output, flags)."""
    if layer.kind == "conv2d":
        cols = golden.im2col(
            x, (layer.kernel, layer.kernel), stride=layer.stride, padding=layer.padding
        )
    else:
        cols = x.reshape(x.shape[0], -1)
    w = gemm_weight(layer)
    m, k = cols.shape
    n = w.shape[1]
    out = np.zeros((m, n), dtype=np.int64)
    ovf = np.zeros((m, n), dtype=bool)
    calls = []
    for call, (rows, chans) in enumerate(plan_calls(cfg, m, k, n)):
        label = f"layer {stats.index} ({layer.kind} {stats.name!r}) call {call}"
        kw = {
            "bias": layer.bias[chans],
            "mult": layer.mult[chans],
            "shift": layer.shift[chans],
            "relu": layer.relu,
        }
        img = build_image(
            cols[rows], w[:, chans], cfg=cfg, requant=layer.requant, label=label, **kw
        )
        calls.append(((rows, chans), (img, (cols[rows], w[:, chans], kw))))
    for ((rows, chans), _), (o, f, cyc, flagged) in zip(
        calls, backend.run([c[1] for c in calls]), strict=True
    ):
        out[rows, chans] = o
        ovf[rows, chans] = f
        stats.calls += 1
        stats.cycles += cyc
        stats.flagged += flagged
    stats.macs += m * k * n
    stats.dot_products += m * n
    return out, ovf


def _batches(n: int, batch: int) -> Iterator[slice]:
    for s in range(0, n, batch):
        yield slice(s, min(n, s + batch))


def run_network_rtl(
    net: Network,
    x: NDArray[np.int64],
    *,
    backend: str = "verilator",
    array: dict | None = None,
    batch: int = 8,
    vcd: str | None = None,
    progress: Callable[[int], None] | None = None,
    port: object = None,
    baud: int = 115200,
) -> NetRun:
    """Run quantized input x (B, *input_shape) through ``net`` on ``backend`` ("model",
    "amaranth", "verilator" or "board"), ``batch`` images per pass, checking every layer
    against the golden model (raises :class:`LayerMismatch` naming the layer and element).

    The board backend talks to ``port`` (a serial device path, or an open serial-like
    object such as ``oasa.fpga.simserial.SimulatedSerial``) at ``baud``; the board must
    run a build of every weighted layer's configuration.

    ``array`` overrides the array shape and buffers of every layer's configuration
    (rows, cols, act_depth, ...); the arithmetic (N, M, P, mode) comes from the file.
    ``progress`` is called with the number of images finished after every batch.
    """
    xa = np.asarray(x, dtype=np.int64)
    cfgs = {i: layer.config().replace(**(array or {})) for i, layer in net.weighted}
    stats = [
        LayerStats(i, layer.name or layer.kind, layer.kind, cfg=cfgs.get(i))
        for i, layer in enumerate(net.layers)
    ]
    parts: list[list[LayerRun]] = []
    with ExitStack() as stack:
        be = _Backend(backend, stack, vcd, port, baud)
        done = 0
        for sl in _batches(len(xa), batch):
            h = xa[sl]
            runs = []
            for i, layer in enumerate(net.layers):
                want, ref = layer_forward(layer, h, cfg=cfgs.get(i))
                if layer.kind == "maxpool":
                    runs.append(LayerRun(i, layer, want))
                    h = want
                    continue
                out, ovf = _rtl_layer(layer, h, cfgs[i], be, stats[i])
                if layer.kind == "conv2d":
                    _, ho, wo = layer.out_shape
                    out = out.reshape(len(h), ho, wo, -1).transpose(0, 3, 1, 2)
                    ovf = ovf.reshape(len(h), ho, wo, -1).transpose(0, 3, 1, 2)
                for what, got, exp in (
                    ("output", out, want),
                    ("overflow flags", ovf, ref.overflow),
                ):
                    if not np.array_equal(got, exp):
                        where = _first_difference(got, exp)
                        raise LayerMismatch(
                            f"layer {i} ({layer.kind} {layer.name!r}), images {sl.start}..{sl.stop - 1}: "
                            f"{what} differ {where}"
                        )
                runs.append(LayerRun(i, layer, out, ovf, ref.final_overflow))
                h = out
            parts.append(runs)
            done += len(h)
            if progress:
                progress(done)
    return NetRun(backend, network_result(net, parts), stats, len(xa))
