"""What a host puts into the accelerator's buffers and registers for one GEMM layer, and
how it reads the results back. Shared by every accelerator backend and host driver.

Buffer layout (see ``oasa.hw.sequencer.Sequencer``), with T_m = ceil(M/R), T_n = ceil(N/C),
T_k = ceil(K/R): activation word ``act_base + mt*K + k`` = x[mt*R + i, k] over lanes i on
the output-stationary array, ``act_base + kt*M + m`` = x[m, kt*R + r] over lanes r on the
weight-stationary one (``oasa.hw.ws_sequencer.WSSequencer``); weight word
``wgt_base + nt*K + k`` = w[k, nt*C + j] over lanes j; parameter word ``param_base + nt``;
result word ``res_base + nt*M + m``. Lanes past M, K or N are zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oasa.config import ArrayConfig
from oasa.errors import InputError
from oasa.sim import golden
from oasa.sim.tiling import pad_operands, tile_grid

__all__ = ["AccelRun", "BufferFitError", "LayerImage", "build_image"]

#: The M, K, N registers are 16 bits wide.
MAX_DIM = (1 << 16) - 1


class BufferFitError(InputError):
    """A layer does not fit the accelerator's buffers."""


@dataclass(frozen=True)
class AccelRun:
    """One layer as a backend ran it: what the accelerator's registers and result buffer
    hold afterwards."""

    out: NDArray[np.int64]
    overflow: NDArray[np.bool_]
    cycles: int  # the CYCLES register (the cycle model's figure on the model backend)
    flagged: int  # the FLAGGED register
    wall_cycles: int  # cycles counted from the start write to done


@dataclass(frozen=True)
class LayerImage:
    """Buffer contents and register values for one layer.

    Attributes
    ----------
    act_words, wgt_words:
        (T_m*K, R) (weight-stationary: (T_k*M, R)) and (T_n*K, C) int64 lane values,
        written from ``act_base`` and ``wgt_base``.
    bias, mult, shift:
        (T_n, C) int64 output-stage parameters, written from ``param_base``.
    registers:
        Register name to value: M, K, N, ACT_BASE, WGT_BASE, PARAM_BASE, RES_BASE, MODE.
    label:
        What the layer is called in an error message.
    """

    cfg: ArrayConfig
    m: int
    k: int
    n: int
    act_words: NDArray[np.int64]
    wgt_words: NDArray[np.int64]
    bias: NDArray[np.int64]
    mult: NDArray[np.int64]
    shift: NDArray[np.int64]
    registers: dict[str, int] = field(default_factory=dict)
    label: str = "the layer"  # names the layer in messages, e.g. "layer 2 (fc1) call 1"

    @property
    def requant(self) -> bool:
        """The output stage requantizes (MODE bit 1); otherwise results are raw P-bit sums."""
        return bool(self.registers.get("MODE", 0) & 2)

    @property
    def cont(self) -> bool:
        """The dot products continue from the result buffer (MODE bit 2)."""
        return bool(self.registers.get("MODE", 0) & 4)

    @property
    def res_words(self) -> int:
        """Result words the layer writes: T_n * M."""
        return tile_grid(self.cfg, self.m, self.n)[1] * self.m

    def decode(
        self, values: NDArray[np.int64], flags: NDArray[np.bool_]
    ) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """(M, N) outputs and flags from the (T_n*M, C) result words read back."""
        _, nts = tile_grid(self.cfg, self.m, self.n)
        c = self.cfg.cols

        def unpack(words):
            return (
                np.asarray(words)
                .reshape(nts, self.m, c)
                .transpose(1, 0, 2)
                .reshape(self.m, nts * c)[:, : self.n]
            )

        return unpack(values).astype(np.int64), unpack(flags).astype(bool)


def _channels(value: ArrayLike, n: int, n_pad: int, fill: int) -> NDArray[np.int64]:
    out = np.full(n_pad, fill, dtype=np.int64)
    out[:n] = np.broadcast_to(np.asarray(value, dtype=np.int64), (n,))
    return out


def _fit(what: str, option: str, need: int, depth: int, advice: str) -> None:
    if need > depth:
        raise BufferFitError(
            f"the {what} buffer needs {need} words but holds {depth} ({option}={depth}); {advice}"
        )


def build_image(
    x: ArrayLike,
    w: ArrayLike,
    *,
    cfg: ArrayConfig,
    bias: ArrayLike = 0,
    mult: ArrayLike = 1,
    shift: ArrayLike = 0,
    relu: bool = False,
    requant: bool = False,
    cont: bool = False,
    act_base: int = 0,
    wgt_base: int = 0,
    param_base: int = 0,
    res_base: int = 0,
    label: str = "the layer",
) -> LayerImage:
    """Check operands and buffer space, and lay the layer out for the accelerator.

    ``cont``: the dot products continue from the partial sums and flags the previous call
    left in the result buffer at ``res_base`` (a layer's K cut into calls, see
    :func:`oasa.sim.calls.plan_calls`)."""
    if cont and not cfg.preload:
        raise BufferFitError(
            f"{label} continues partial sums (MODE bit 2), which an array built without "
            "preload cannot do; build it with --preload"
        )
    xa = golden.check_activations(x, cfg)
    wa = golden.check_weights(w, cfg)
    golden._check_gemm_shapes(xa, wa)
    m, k = xa.shape
    n = wa.shape[1]
    if m == 0 or n == 0:
        raise BufferFitError(f"{label} is empty (M = {m}, N = {n}): nothing to run")
    for name, v in (("M", m), ("K", k), ("N", n)):
        if v > MAX_DIM:
            raise BufferFitError(
                f"{name}={v} exceeds the accelerator's 16-bit size registers (max {MAX_DIM})"
            )
    mts, nts = tile_grid(cfg, m, n)
    kts = -(-k // cfg.rows)
    ws = cfg.dataflow == "ws"
    if ws:
        _fit(
            "activation",
            "act_depth",
            act_base + kts * m,
            cfg.act_depth,
            f"the largest M that fits with K={k} is {(cfg.act_depth - act_base) // kts}; raise --act-depth",
        )
    else:
        _fit(
            "activation",
            "act_depth",
            act_base + mts * k,
            cfg.act_depth,
            f"the largest M that fits with K={k} is {cfg.rows * ((cfg.act_depth - act_base) // k)}; raise --act-depth",
        )
    _fit(
        "weight",
        "wgt_depth",
        wgt_base + nts * k,
        cfg.wgt_depth,
        f"the largest N that fits with K={k} is {cfg.cols * ((cfg.wgt_depth - wgt_base) // k)}; raise --wgt-depth",
    )
    _fit(
        "parameter",
        "param_depth",
        param_base + nts,
        cfg.param_depth,
        f"the largest N that fits is {cfg.cols * (cfg.param_depth - param_base)}; raise --param-depth",
    )
    _fit(
        "result",
        "res_depth",
        res_base + nts * m,
        cfg.res_depth,
        f"the largest M that fits with N={n} is {(cfg.res_depth - res_base) // nts}; raise --res-depth",
    )
    if requant:
        golden.output_stage(
            np.zeros((1, n), dtype=np.int64), cfg=cfg, bias=bias, mult=mult, shift=shift
        )

    xp, wp = pad_operands(xa, wa, cfg)
    if ws:
        # act word kt*M + m, lane r = x[m, kt*R + r]
        xk = np.zeros((m, kts * cfg.rows), dtype=np.int64)
        xk[:, :k] = xa
        act_words = xk.reshape(m, kts, cfg.rows).transpose(1, 0, 2).reshape(kts * m, cfg.rows)
    else:
        # act word mt*K + k, lane i = x[mt*R + i, k]
        act_words = xp.reshape(mts, cfg.rows, k).transpose(0, 2, 1).reshape(mts * k, cfg.rows)
    # wgt word nt*K + k, lane j = w[k, nt*C + j]
    wgt_words = wp.reshape(k, nts, cfg.cols).transpose(1, 0, 2).reshape(nts * k, cfg.cols)
    n_pad = nts * cfg.cols
    registers = {
        "M": m,
        "K": k,
        "N": n,
        "ACT_BASE": act_base,
        "WGT_BASE": wgt_base,
        "PARAM_BASE": param_base,
        "RES_BASE": res_base,
        "MODE": int(relu) | int(requant) << 1 | int(cont) << 2,
    }
    return LayerImage(
        cfg=cfg,
        m=m,
        k=k,
        n=n,
        act_words=np.ascontiguousarray(act_words),
        wgt_words=np.ascontiguousarray(wgt_words),
        bias=_channels(bias, n, n_pad, 0).reshape(nts, cfg.cols),
        mult=_channels(mult, n, n_pad, 1).reshape(nts, cfg.cols),
        shift=_channels(shift, n, n_pad, 0).reshape(nts, cfg.cols),
        registers=registers,
        label=label,
    )
