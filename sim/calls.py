"""A GEMM as the accelerator calls that run it: planned to fit the buffers, run on any
backend, and put back together.

One planner serves ``oasa sim``, the network runner and ``oasa explore``, so the cycles
the model backend predicts are those of the calls the RTL runs. Rows and columns of the
GEMM are cut into independent calls; a K too long for the buffers is cut into calls that
continue one another through the result buffer (MODE bit 2), in
increasing k, so every dot product still adds its terms in order k = 0..K-1 with the same
wrap or clamp and flag at every step (DESIGN.md section 2). Only the last K call of an
output block requantizes and counts its flags.

A grouped convolution (G GEMMs of M x K x N, one per group) runs as packs of groups: a
pack of p groups is one M x pK x pN GEMM whose activations are the p groups' columns side
by side and whose weights are block-diagonal. A group's dot product then starts with the
zero terms of the groups before it and ends with those of the groups after it; adding
x * 0 leaves the partial sum unchanged, in range and unflagged, in wrap and saturate
alike, so every output is bit for bit its own group's (the golden model runs the groups
apart). Packing spares a call's fixed cost per group and, on the output-stationary array,
the R - K idle cycles of every tile whose K is shorter than R (a depthwise 3 x 3 has K =
9); the planner picks the pack size with the fewest cycles, 1 included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oasa.config import ArrayConfig
from oasa.sim.accel_image import BufferFitError, build_image
from oasa.sim.backends import GemmCall, Session
from oasa.sim.cycles import accelerator_cycles
from oasa.sim.tiling import tile_grid

__all__ = [
    "Call",
    "CallsResult",
    "Pack",
    "Traffic",
    "call_traffic",
    "pack_operands",
    "packs_cycles",
    "packs_traffic",
    "plan_calls",
    "plan_cycles",
    "plan_groups",
    "plan_traffic",
    "run_calls",
    "run_grouped",
]


@dataclass(frozen=True)
class Call:
    """One accelerator call: rows of X, columns of W (output channels), and the K range."""

    rows: slice
    chans: slice
    ks: slice

    @property
    def first_k(self) -> bool:
        return self.ks.start == 0


def _k_chunks(cfg: ArrayConfig, k: int) -> list[int]:
    """K chunks a plan may use: all of K if its weights (K words per column tile) and
    activations (K words per row tile; on the weight-stationary array ceil(K/R) words per
    row) fit, and chunks halving from the longest that fits: whole numbers of K tiles
    (multiples of R) on the weight-stationary array. A shorter chunk lets more rows share a
    call's activation buffer, and a call's fixed cost (pipeline fill and drain, a pass's
    weight load) is spread over its rows. Without ``cfg.preload`` a call cannot continue
    another, so K is never cut."""
    ws = cfg.dataflow == "ws"
    unit = cfg.rows if ws else 1
    fit = min(cfg.wgt_depth, cfg.act_depth * (cfg.rows if ws else 1))
    chunks = [k] if k <= fit else []
    if not cfg.preload:  # calls cannot continue one another: all of K in every call
        if not chunks:
            raise BufferFitError(
                f"K={k} does not fit the buffers (at most {fit} terms: act_depth="
                f"{cfg.act_depth}, wgt_depth={cfg.wgt_depth}) and this array has no preload "
                "to continue partial sums across calls: raise --act-depth/--wgt-depth, or "
                "build it with --preload"
            )
        return chunks
    units = min(fit, k) // unit
    while units >= 1:
        chunks.append(units * unit)
        units //= 2
    return list(dict.fromkeys(chunks)) or [fit]


def _plan(cfg: ArrayConfig, m: int, k: int, n: int, kc: int) -> list[Call]:
    """The calls of an M x K x N GEMM with K chunks of ``kc`` (see :func:`plan_calls`)."""
    ws = cfg.dataflow == "ws"
    act_words = -(-kc // cfg.rows) if ws else kc  # per row (ws) or per row tile (os)
    if act_words > cfg.act_depth or kc > cfg.wgt_depth:
        raise BufferFitError(
            f"a K chunk of {kc} does not fit: it needs {kc} words in the weight buffer and "
            f"{act_words} in the activation buffer (wgt_depth={cfg.wgt_depth}, "
            f"act_depth={cfg.act_depth}); raise --act-depth/--wgt-depth"
        )
    n_tiles = max(1, min(cfg.wgt_depth // kc, cfg.param_depth))
    n_chunk = min(n, n_tiles * cfg.cols)
    nts = tile_grid(cfg, 1, n_chunk)[1]
    row_unit = 1 if ws else cfg.rows
    m_units = min(cfg.act_depth // act_words, cfg.res_depth // (nts * row_unit))
    if m_units < 1:
        raise BufferFitError(
            f"the result buffer holds {cfg.res_depth} words, less than "
            f"{'one row' if ws else 'one row tile'} of {nts * row_unit}; raise --res-depth"
        )
    m_chunk = min(m, m_units * row_unit)
    return [
        Call(
            slice(m0, min(m, m0 + m_chunk)),
            slice(n0, min(n, n0 + n_chunk)),
            slice(k0, min(k, k0 + kc)),
        )
        for n0 in range(0, n, n_chunk)
        for m0 in range(0, m, m_chunk)
        for k0 in range(0, k, kc)
    ]


def plan_cycles(cfg: ArrayConfig, plan: list[Call]) -> int:
    """Cycles of a plan: each call's by the exact cycle model."""
    return sum(
        accelerator_cycles(cfg, c.rows.stop - c.rows.start, c.ks.stop - c.ks.start,
                           c.chans.stop - c.chans.start, cont=not c.first_k)
        for c in plan
    )  # fmt: skip


def plan_calls(cfg: ArrayConfig, m: int, k: int, n: int) -> list[Call]:
    """Cut an M x K x N GEMM into calls that fit the buffers: column chunks (multiples of
    C) whose weights fit, then row chunks whose activations and results fit: multiples of
    R on the output-stationary array, whose activation words hold R rows; any number on
    the weight-stationary one, whose words hold R terms of one row. A K too long for the
    buffers is cut too (the K chunks of one output block are consecutive calls, in
    increasing k, each after the first continuing the partial sums of the one before),
    and on the weight-stationary array, where a shorter chunk can pay, the plan with the
    fewest cycles among :func:`_k_chunks` is chosen."""
    chunks = _k_chunks(cfg, k)
    if cfg.dataflow != "ws":
        return _plan(cfg, m, k, n, chunks[0])
    plans = [_plan(cfg, m, k, n, kc) for kc in chunks]
    return min(plans, key=lambda plan: plan_cycles(cfg, plan))


@dataclass(frozen=True)
class Pack:
    """Groups ``first`` .. ``first + count - 1`` of a grouped layer run as one GEMM of M x
    (count K) x (count N) (:func:`pack_operands`), cut into ``plan``'s calls."""

    first: int
    count: int
    plan: list[Call]


@cache
def _cached_plan(cfg: ArrayConfig, m: int, k: int, n: int) -> list[Call] | None:
    try:
        return plan_calls(cfg, m, k, n)
    except BufferFitError:
        return None


def _pack_sizes(groups: int) -> list[int]:
    """Pack sizes worth scoring: powers of two up to G, and G."""
    sizes, p = [], 1
    while p < groups:
        sizes.append(p)
        p *= 2
    return [*sizes, groups]


def plan_groups(cfg: ArrayConfig, groups: int, m: int, k: int, n: int) -> list[Pack]:
    """Cut ``groups`` GEMMs of M x K x N (a grouped convolution) into packs of groups, each
    planned by :func:`plan_calls`; the pack size is the one with the fewest cycles by the
    cycle model (fewer zero terms on a tie). One group per pack always fits if any plan
    does; a larger pack that does not fit the buffers is not considered."""
    best: tuple[int, int, list[Pack]] | None = None
    for size in _pack_sizes(groups):
        full, rest = divmod(groups, size)
        plans = [(size, _cached_plan(cfg, m, size * k, size * n))] * full
        if rest:
            plans.append((rest, _cached_plan(cfg, m, rest * k, rest * n)))
        if any(plan is None for _, plan in plans):
            if size == 1:  # no plan at all: the planner's own message says why
                plan_calls(cfg, m, k, n)
            continue
        packs, first = [], 0
        for count, plan in plans:
            packs.append(Pack(first, count, plan))
            first += count
        cycles = packs_cycles(cfg, packs)
        if best is None or cycles < best[0]:
            best = (cycles, size, packs)
    assert best is not None
    return best[2]


def _over_packs(packs: list[Pack], measure: Callable[[list[Call]], Any], zero: Any) -> Any:
    """The sum of ``measure(plan)`` over a layer's packs, each distinct plan measured once
    (the full packs of a layer share one plan)."""
    seen: dict[int, Any] = {}
    total = zero
    for p in packs:
        if id(p.plan) not in seen:
            seen[id(p.plan)] = measure(p.plan)
        total = total + seen[id(p.plan)]
    return total


def packs_cycles(cfg: ArrayConfig, packs: list[Pack]) -> int:
    """Cycles of a grouped layer's packs (one after another)."""
    return _over_packs(packs, lambda plan: plan_cycles(cfg, plan), 0)


def pack_operands(
    cols: NDArray[np.int64], w: NDArray[np.int64], pack: Pack
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The GEMM operands of ``pack``: ``cols`` is the layer's (G, M, K) im2col and ``w``
    its (K, G N) weights, output channels in group order. Returns X (M x pK), the groups'
    columns side by side, and W (pK x pN), block-diagonal."""
    _, m, k = cols.shape
    n = w.shape[1] // cols.shape[0]
    if pack.count == 1:  # one group: its own operands, no zeros to add
        return cols[pack.first], w[:, pack.first * n : (pack.first + 1) * n]
    at = slice(pack.first, pack.first + pack.count)
    x = cols[at].transpose(1, 0, 2).reshape(m, pack.count * k)
    wp = np.zeros((pack.count * k, pack.count * n), dtype=np.int64)
    for j in range(pack.count):
        g = pack.first + j
        wp[j * k : (j + 1) * k, j * n : (j + 1) * n] = w[:, g * n : (g + 1) * n]
    return x, wp


@dataclass(frozen=True)
class Traffic:
    """Buffer words a layer moves and holds: what the sequencer reads and writes (each a
    word of R activations, C weights or C results and flags), and the most words of each
    buffer one call occupies."""

    act_reads: int = 0
    wgt_reads: int = 0
    psum_reads: int = 0  # result words read back as partial sums (weight-stationary)
    res_writes: int = 0
    act_words: int = 0
    wgt_words: int = 0
    res_words: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        """Reads and writes add up; occupancy is the larger (calls run one at a time)."""
        return Traffic(
            self.act_reads + other.act_reads,
            self.wgt_reads + other.wgt_reads,
            self.psum_reads + other.psum_reads,
            self.res_writes + other.res_writes,
            max(self.act_words, other.act_words),
            max(self.wgt_words, other.wgt_words),
            max(self.res_words, other.res_words),
        )


def call_traffic(cfg: ArrayConfig, m: int, k: int, n: int, *, cont: bool = False) -> Traffic:
    """The buffer traffic of one M x K x N call, as the sequencer of ``cfg.dataflow`` runs
    it: output-stationary, every (row tile, column tile) reads K activation and K weight
    words (continuing, also its R rows of partial sums) and writes its rows;
    weight-stationary, every (column tile, K tile) pass reads R
    weight words and M activation words, writes M rows, and (after the first K tile, or
    continuing) reads M rows of partial sums."""
    mts, nts = tile_grid(cfg, m, n)
    if cfg.dataflow == "ws":
        kts = -(-k // cfg.rows)
        return Traffic(
            act_reads=nts * kts * m,
            wgt_reads=nts * kts * cfg.rows,
            psum_reads=nts * (kts - 1 + int(cont)) * m,
            res_writes=nts * kts * m,
            act_words=kts * m,
            wgt_words=nts * k,
            res_words=nts * m,
        )
    return Traffic(
        act_reads=mts * nts * k,
        wgt_reads=mts * nts * k,
        psum_reads=mts * nts * cfg.rows * int(cont),
        res_writes=nts * m,
        act_words=mts * k,
        wgt_words=nts * k,
        res_words=nts * m,
    )


def plan_traffic(cfg: ArrayConfig, plan: list[Call]) -> Traffic:
    """The buffer traffic of a plan's calls."""
    total = Traffic()
    for c in plan:
        total += call_traffic(
            cfg, c.rows.stop - c.rows.start, c.ks.stop - c.ks.start,
            c.chans.stop - c.chans.start, cont=not c.first_k,
        )  # fmt: skip
    return total


def packs_traffic(cfg: ArrayConfig, packs: list[Pack]) -> Traffic:
    """The buffer traffic of a grouped layer's packs (zero weights are moved like any)."""
    return _over_packs(packs, lambda plan: plan_traffic(cfg, plan), Traffic())


@dataclass(frozen=True)
class CallsResult:
    """A GEMM run as calls: outputs and flags (M, N), and what the accelerator counted."""

    out: NDArray[np.int64]
    overflow: NDArray[np.bool_]
    calls: int
    cycles: int
    flagged: int
    groups_per_pack: int = 1  # of a grouped layer (run_grouped): its largest pack


def run_calls(
    session: Session,
    x: NDArray[np.int64],
    w: NDArray[np.int64],
    *,
    cfg: ArrayConfig,
    stage: Mapping[str, Any],
    requant: bool,
    label: str = "the layer",
    plan: list[Call] | None = None,
) -> CallsResult:
    """Run X (M x K) times W (K x N) on ``session`` as :func:`plan_calls` cuts it (or as
    ``plan``, if already made).

    ``stage`` holds the output stage's per-channel ``bias``, ``mult``, ``shift`` (arrays of
    N, or scalars) and ``relu``. Each call's :class:`GemmCall` carries the operands up to
    the end of its K range, which is what the result buffer holds after it (the model
    backend computes exactly that)."""
    m, k = x.shape
    n = w.shape[1]
    out = np.zeros((m, n), dtype=np.int64)
    ovf = np.zeros((m, n), dtype=bool)

    def per_channel(name: str, chans: slice) -> Any:
        value = np.asarray(stage[name])
        return value[chans] if value.ndim else value

    plan = plan_calls(cfg, m, k, n) if plan is None else plan
    gemm_calls = []
    for i, call in enumerate(plan):
        last_k = call.ks.stop == k
        kw = {name: per_channel(name, call.chans) for name in ("bias", "mult", "shift")}
        kw["relu"] = bool(stage.get("relu", False))
        img = build_image(
            x[call.rows, call.ks], w[call.ks, call.chans], cfg=cfg,
            requant=requant and last_k, cont=not call.first_k,
            label=f"{label} call {i}", **kw,
        )  # fmt: skip
        prefix = slice(0, call.ks.stop)
        gemm_calls.append(GemmCall(img, x[call.rows, prefix], w[prefix, call.chans], kw))
    cycles = flagged = 0
    for call, run in zip(plan, session.run(gemm_calls), strict=True):
        cycles += run.cycles
        if call.ks.stop == k:  # earlier K calls leave partial sums in the result buffer
            out[call.rows, call.chans] = run.out
            ovf[call.rows, call.chans] = run.overflow
            flagged += run.flagged
    return CallsResult(out, ovf, len(plan), cycles, flagged)


def run_grouped(
    session: Session,
    cols: NDArray[np.int64],
    w: NDArray[np.int64],
    *,
    cfg: ArrayConfig,
    stage: Mapping[str, Any],
    requant: bool,
    label: str = "the layer",
) -> CallsResult:
    """Run a grouped layer: ``cols`` (G, M, K) against ``w`` (K, G N), as the packs of
    :func:`plan_groups`, each a GEMM run by :func:`run_calls`. Returns the (M, G N) outputs
    and flags, output channels in group order."""
    groups, m, k = cols.shape
    n = w.shape[1] // groups
    outs, flags = [], []
    calls = cycles = flagged = 0
    packs = plan_groups(cfg, groups, m, k, n)
    for pack in packs:
        x, wp = pack_operands(cols, w, pack)
        chans = slice(pack.first * n, (pack.first + pack.count) * n)
        part = {name: np.asarray(v)[chans] if np.ndim(v) else v for name, v in stage.items()}
        what = (
            label if groups == 1 else f"{label} groups {pack.first}..{pack.first + pack.count - 1}"
        )
        r = run_calls(session, x, wp, cfg=cfg, stage=part, requant=requant, label=what,
                      plan=pack.plan)  # fmt: skip
        outs.append(r.out)
        flags.append(r.overflow)
        calls += r.calls
        cycles += r.cycles
        flagged += r.flagged
    return CallsResult(np.concatenate(outs, axis=1), np.concatenate(flags, axis=1), calls,
                       cycles, flagged, max(p.count for p in packs))  # fmt: skip
