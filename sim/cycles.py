"""Exact cycle counts of the RTL, derived from how the hardware schedules work.

The pipeline latencies belong to the hardware blocks that have the pipelines
(:class:`~oasa.hw.array.SystolicArray`, :class:`~oasa.hw.output_stage.OutputStage`); the
model reads them from there, so the two cannot disagree.
"""

from __future__ import annotations

from oasa.config import ArrayConfig
from oasa.hw.array import SystolicArray
from oasa.hw.output_stage import OutputStage
from oasa.hw.ws_array import WSArray, ws_pass_interval
from oasa.hw.ws_sequencer import FEEDBACK_LATENCY
from oasa.sim.tiling import tile_grid

__all__ = [
    "ARRAY_LATENCY_EXTRA",
    "OUTPUT_STAGE_LATENCY",
    "SEQUENCER_FINISH_LATENCY",
    "SEQUENCER_ISSUE_LATENCY",
    "accelerator_cycles",
    "array_latency",
    "core_cycles",
    "cycle_budget",
    "tile_period",
    "ws_accelerator_cycles",
]

#: Registers between a tile's last beat and its first result, beyond R + C: the input
#: register and the PE's product and accumulator registers (SystolicArray.EXTRA_LATENCY).
ARRAY_LATENCY_EXTRA = SystolicArray.EXTRA_LATENCY
#: Pipeline depth of the output stage (OutputStage.LATENCY).
OUTPUT_STAGE_LATENCY = OutputStage.LATENCY
#: Cycles from the CTRL.start write to the first beat at the array: the start is
#: registered (1), the command is latched (1), stage A addresses the buffers (1), stage B
#: reads them (1), and stage C presents the registered beat.
SEQUENCER_ISSUE_LATENCY = 4
#: Cycles from the last result row's write to the last busy cycle: the row's flags are
#: counted (1) and added to FLAGGED (1), so done rises with the final count.
SEQUENCER_FINISH_LATENCY = 1


def array_latency(cfg: ArrayConfig) -> int:
    """Cycles from a tile's accepted last beat to its first result row (row R-1): the
    array's own :meth:`~oasa.hw.array.SystolicArray.latency_of`."""
    return SystolicArray.latency_of(cfg)


def tile_period(cfg: ArrayConfig, k: int, *, cont: bool = False) -> int:
    """Cycles between the last beats of back-to-back tiles: K, but at least R, since a
    tile's drain (R rows) must end before the next tile's results are captured; and at
    least 2R - 1 when tiles continue partial sums, whose R initial rows enter the array
    on every other cycle (:class:`~oasa.hw.array.SystolicArray`)."""
    return max(k, 2 * cfg.rows - 1 if cont else cfg.rows)


def core_cycles(cfg: ArrayConfig, m: int, k: int, n: int) -> int:
    """Cycles for ``ArrayCore`` fed one beat per cycle with every tile of an M x K x N GEMM.

    Counted from the cycle the first beat is presented to the cycle the last result row
    leaves the output stage, inclusive: the first tile's K beats, then one tile period per
    further tile, then the pipeline latency and the R - 1 remaining rows of the last tile.
    """
    mts, nts = tile_grid(cfg, m, n)
    n_tiles = mts * nts
    last_beat = (k - 1) + (n_tiles - 1) * tile_period(cfg, k)
    return last_beat + array_latency(cfg) + OUTPUT_STAGE_LATENCY + (cfg.rows - 1) + 1


def accelerator_cycles(cfg: ArrayConfig, m: int, k: int, n: int, *, cont: bool = False) -> int:
    """The accelerator's CYCLES register for an M x K x N layer: cycles busy, start to done.

    Derived from the sequencer: the start write is cycle 0 and busy rises in cycle 1 (the
    start is registered, then the command latched); the first beat reaches the array in
    cycle 4 and beats follow one per cycle, tile after
    tile, except that a tile's last beat waits until one tile period after the previous
    tile's (only when K < R). The last tile's row R-1 leaves the array ``array_latency``
    cycles after its last beat, row 0 R - 1 cycles later, and the output stage adds its
    pipeline; the result writer sees that row one cycle before the last busy cycle (in
    which FLAGGED takes its flags).

    A layer that continues partial sums (``cont``, MODE bit 2) reads each tile's initial
    rows ahead of it: the first beat waits :meth:`SystolicArray.init_lead_of
    <oasa.hw.array.SystolicArray.init_lead_of>` cycles longer, and tiles begin
    max(K, 2R - 1) cycles apart (:func:`tile_period`).

    >>> accelerator_cycles(ArrayConfig(), 64, 288, 64)
    18467
    >>> accelerator_cycles(ArrayConfig(), 64, 288, 64, cont=True)
    18473

    A weight-stationary configuration is counted by :func:`ws_accelerator_cycles` (which
    reads partial sums in every pass, so ``cont`` costs nothing there).
    """
    if min(m, k, n) < 1:
        return 0
    if cfg.dataflow == "ws":
        return ws_accelerator_cycles(cfg, m, k, n)
    mts, nts = tile_grid(cfg, m, n)
    lead = SystolicArray.init_lead_of(cfg) if cont else 0
    last_beat = (
        SEQUENCER_ISSUE_LATENCY + lead + (k - 1) + (mts * nts - 1) * tile_period(cfg, k, cont=cont)
    )
    return (
        last_beat
        + array_latency(cfg)
        + (cfg.rows - 1)
        + OUTPUT_STAGE_LATENCY
        + SEQUENCER_FINISH_LATENCY
    )


def ws_accelerator_cycles(cfg: ArrayConfig, m: int, k: int, n: int) -> int:
    """The CYCLES register of the weight-stationary accelerator for an M x K x N layer.

    Derived from :class:`~oasa.hw.ws_sequencer.WSSequencer`: the first weight beat reaches
    the array in cycle 4, as on the output-stationary accelerator; a pass (N tile, K tile)
    loads R weight words and then streams its M rows, and the next pass's weights load
    while it streams (:func:`~oasa.hw.ws_array.ws_pass_interval`). The rows of a pass
    that continues a K tile wait, in addition, until the previous pass's partial sums are
    back in the result buffer (the sequencer's feedback), and the first K tile of the next
    N tile until the last one's requantized rows have left the output stage. The last row
    leaves the array ``latency`` cycles after it entered, then takes the output stage and
    the result write, as on the output-stationary accelerator.

    >>> ws_accelerator_cycles(ArrayConfig(dataflow="ws"), 64, 288, 64)
    18502
    """
    if min(m, k, n) < 1:
        return 0
    k_tiles = -(-k // cfg.rows)
    _, n_tiles = tile_grid(cfg, m, n)
    dependent = ws_pass_interval(cfg, m, dependent=True, feedback=FEEDBACK_LATENCY)
    # The next N tile: its first K tile's partial sums wait until the last K tile's
    # requantized rows (an output stage behind) are written; without K tiles, none follow.
    next_n = ws_pass_interval(cfg, m, dependent=False)
    if k_tiles > 1:
        next_n = max(next_n, m - 1 + OUTPUT_STAGE_LATENCY)
    last_first_row = (
        SEQUENCER_ISSUE_LATENCY
        + cfg.rows
        + n_tiles * (k_tiles - 1) * dependent
        + (n_tiles - 1) * next_n
    )
    return (
        last_first_row
        + (m - 1)
        + WSArray.latency_of(cfg)
        + OUTPUT_STAGE_LATENCY
        + SEQUENCER_FINISH_LATENCY
    )


def cycle_budget(predicted: int) -> int:
    """Cycles a simulation waits for the hardware before it calls the design broken: four
    times the cycle model's prediction, plus a margin for the shortest layers. A design
    that drops a marker otherwise waits for ``done`` forever."""
    return 4 * predicted + 1000
