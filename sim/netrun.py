"""Run an exported network layer by layer on the accelerator, cycle-accurately.

Each weighted layer becomes accelerator calls: a convolution is lowered to its GEMM
(im2col on the host), the GEMM is cut into calls that fit the buffers (rows of the GEMM,
and columns when the weights do not fit), and the output stage on chip produces the
next layer's N-bit activations (the last layer runs raw). Max-pooling runs on the host,
on integers. Every layer's output and flags are checked against the golden model on the
same input, bit for bit; the first difference stops the run and is named.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oasa.config import ArrayConfig
from oasa.errors import VerificationError
from oasa.sim import golden
from oasa.sim.backends import Session, open_session
from oasa.sim.calls import run_grouped
from oasa.sim.netfile import Layer, Network, gemm_weight
from oasa.sim.network import (
    LayerRun,
    NetworkResult,
    gemm_operand,
    layer_configs,
    layer_forward,
    network_result,
    to_nchw,
)

__all__ = [
    "LayerMismatch",
    "LayerStats",
    "NetRun",
    "Throughput",
    "run_network_rtl",
]


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
    groups_per_pack: int = 1  # a grouped layer's groups run as one GEMM (largest pack)
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

    @property
    def utilization(self) -> float:
        """Useful MACs / (R * C * cycles) over the whole run."""
        cfg = next((s.cfg for s in self.stats if s.cfg is not None), None)
        if cfg is None or not self.cycles:
            return 0.0
        return self.macs / (cfg.rows * cfg.cols * self.cycles)

    def throughput(self, clock_hz: float, batch: int) -> Throughput:
        """What the measured cycles mean at ``clock_hz``, for passes of ``batch`` images."""
        per_image = self.cycles / self.images
        per_pass = min(batch, self.images)
        return Throughput(
            clock_hz=clock_hz,
            cycles_per_image=per_image,
            images_per_second=clock_hz / per_image,
            batch=per_pass,
            latency_s=per_image * per_pass / clock_hz,
        )


@dataclass(frozen=True)
class Throughput:
    """Images per second and the latency of one pass, at a clock."""

    clock_hz: float
    cycles_per_image: float
    images_per_second: float
    batch: int  # images per pass
    latency_s: float  # of one pass


def _first_difference(a: NDArray, b: NDArray) -> str:
    at = tuple(int(i) for i in np.argwhere(a != b)[0])
    return (
        f"at {list(at)}: accelerator {a[at]} != golden model {b[at]} ({int((a != b).sum())} differ)"
    )


def _rtl_layer(
    net: Network,
    layer: Layer,
    x: NDArray[np.int64],
    cfg: ArrayConfig,
    session: Session,
    stats: LayerStats,
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """One weighted layer on the accelerator: (output, flags), in the layer's own shape.

    A grouped convolution runs as packs of groups (:func:`oasa.sim.calls.run_grouped`).
    When the output tensor's format is not the layer's activation format the array runs
    raw and the host applies the output stage (:meth:`Network.on_chip_requant`)."""
    on_chip = net.on_chip_requant(layer)
    w = gemm_weight(layer)
    cols = gemm_operand(layer, x)
    stage = {"bias": layer.bias, "mult": layer.mult, "shift": layer.shift, "relu": layer.relu}
    label = f"layer {stats.index} ({layer.kind} {stats.name!r})"
    r = run_grouped(session, cols, w, cfg=cfg, stage=stage, requant=on_chip, label=label)
    groups, m, k = cols.shape
    stats.calls += r.calls
    stats.cycles += r.cycles
    stats.flagged += r.flagged
    stats.groups_per_pack = max(stats.groups_per_pack, r.groups_per_pack)
    stats.macs += groups * m * k * (w.shape[1] // groups)
    stats.dot_products += m * w.shape[1]
    out, ovf = r.out, r.overflow
    if layer.requant and not on_chip:
        out = golden.output_stage(
            out, cfg=cfg, bias=layer.bias, mult=layer.mult, shift=layer.shift,
            relu=layer.relu, out_range=net.out_range(layer),
        )  # fmt: skip
    return to_nchw(out, layer, len(x)), to_nchw(ovf, layer, len(x))


def _batches(n: int, batch: int) -> Iterator[slice]:
    for s in range(0, n, batch):
        yield slice(s, min(n, s + batch))


def run_network_rtl(
    net: Network,
    x: NDArray[np.int64],
    *,
    backend: str = "verilator",
    overrides: Mapping[str, Any] | None = None,
    batch: int = 8,
    vcd: str | None = None,
    progress: Callable[[int], None] | None = None,
    port: object = None,
    baud: int = 115200,
) -> NetRun:
    """Run quantized input x ``(B, *input_shape)`` through ``net`` on ``backend`` ("model",
    "amaranth", "verilator" or "board"), ``batch`` images per pass, checking every layer
    against the golden model (raises :class:`LayerMismatch` naming the layer and element).

    The board backend talks to ``port`` (a serial device path, or an open serial-like
    object such as ``oasa.fpga.simserial.SimulatedSerial``) at ``baud``; the board must
    run a build of every weighted layer's configuration.

    ``overrides`` are :class:`~oasa.config.ArrayConfig` fields replaced in every layer's
    configuration (``cfg.replace(**overrides)``): the array shape and buffers (rows, cols,
    act_depth, ...), which the file does not fix, and if wanted its arithmetic (P, mode).
    ``progress`` is called with the number of images finished after every batch.
    """
    xa = np.asarray(x, dtype=np.int64)
    cfgs = layer_configs(net, overrides)
    stats = [
        LayerStats(i, layer.name or layer.kind, layer.kind, cfg=cfgs.get(i))
        for i, layer in enumerate(net.layers)
    ]
    parts: list[list[LayerRun]] = []
    with ExitStack() as stack:
        session = open_session(backend, stack, vcd=vcd, port=port, baud=baud)
        done = 0
        for sl in _batches(len(xa), batch):
            values = {net.input: xa[sl]}
            runs = []
            for i, layer in enumerate(net.layers):
                ins = [values[t] for t in layer.inputs]
                want, ref = layer_forward(
                    layer, *ins, cfg=cfgs.get(i), out_range=net.out_range(layer)
                )
                if not layer.has_weights:
                    runs.append(LayerRun(i, layer, want))
                    values[layer.output] = want
                    continue
                out, ovf = _rtl_layer(net, layer, ins[0], cfgs[i], session, stats[i])
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
                values[layer.output] = out
            parts.append(runs)
            done = sl.stop
            if progress:
                progress(done)
    return NetRun(backend, network_result(net, parts), stats, len(xa))
