"""Run a GEMM through the RTL ``ArrayCore`` on Amaranth's own simulator.

No external tools: the design is simulated in Python. Slow (thousands of cycles per
second for 8 x 8), so it suits small layers and unit tests; Verilator is the fast path.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator
from numpy.typing import NDArray

from oasa.config import ArrayConfig
from oasa.errors import HardwareTimeout
from oasa.hw.core import ArrayCore
from oasa.sim import golden
from oasa.sim.cycles import core_cycles, cycle_budget
from oasa.sim.tiling import pad_operands, tile_grid, tiles

__all__ = ["CoreRun", "run_core_gemm"]


@dataclass(frozen=True)
class CoreRun:
    """What the RTL produced: the outputs, the hardware flag, and the cycles taken."""

    out: NDArray[np.int64]
    overflow: NDArray[np.bool_]
    cycles: int


def _channel_params(value, n_pad: int, n: int, fill: int) -> NDArray[np.int64]:
    arr = np.broadcast_to(np.asarray(value, dtype=np.int64), (n,))
    out = np.full(n_pad, fill, dtype=np.int64)
    out[:n] = arr
    return out


def run_core_gemm(
    x,
    w,
    *,
    cfg: ArrayConfig,
    bias=0,
    mult=1,
    shift=0,
    relu: bool = False,
    requant: bool = False,
    stall_rng: np.random.Generator | None = None,
    stall_prob: float = 0.0,
    vcd: str | None = None,
) -> CoreRun:
    """Feed every tile of X (M x K) times W (K x N) through ``ArrayCore``, one beat per
    cycle (or with random idle cycles when ``stall_rng`` is given), and collect the rows.

    ``cycles`` counts from the cycle the first beat is presented to the cycle the last
    result row leaves, inclusive (with no stalls: :func:`oasa.sim.cycles.core_cycles`).
    """
    xa = golden.check_activations(x, cfg)
    wa = golden.check_weights(w, cfg)
    golden._check_gemm_shapes(xa, wa)
    m, k = xa.shape
    n = wa.shape[1]
    xp, wp = pad_operands(xa, wa, cfg)
    mts, nts = tile_grid(cfg, m, n)
    n_pad = nts * cfg.cols
    if requant:
        golden.output_stage(
            np.zeros((1, n), dtype=np.int64), cfg=cfg, bias=bias, mult=mult, shift=shift
        )
    b_all = _channel_params(bias, n_pad, n, 0)
    m_all = _channel_params(mult, n_pad, n, 1)
    s_all = _channel_params(shift, n_pad, n, 0)
    order = list(tiles(cfg, m, n))

    dut = ArrayCore(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    values = np.zeros((mts * cfg.rows, n_pad), dtype=np.int64)
    flags = np.zeros((mts * cfg.rows, n_pad), dtype=bool)
    state = {"cycles": 0}

    def set_params(ctx, tile_index: int) -> None:
        n0 = order[min(tile_index, len(order) - 1)].n0
        sl = slice(n0, n0 + cfg.cols)
        ctx.set(dut.params.bias, b_all[sl].tolist())
        ctx.set(dut.params.mult, m_all[sl].tolist())
        ctx.set(dut.params.shift, s_all[sl].tolist())

    async def producer(ctx):
        ctx.set(dut.relu, relu)
        ctx.set(dut.requant, requant)
        for t in order:
            for kk in range(k):
                if stall_rng is not None:
                    while stall_rng.random() < stall_prob:
                        ctx.set(dut.i_act.valid, 0)
                        ctx.set(dut.i_wgt.valid, 0)
                        await ctx.tick()
                ctx.set(dut.i_act.payload.data, xp[t.m0 : t.m0 + cfg.rows, kk].tolist())
                ctx.set(dut.i_act.payload.first, kk == 0)
                ctx.set(dut.i_act.payload.last, kk == k - 1)
                ctx.set(dut.i_wgt.payload, wp[kk, t.n0 : t.n0 + cfg.cols].tolist())
                ctx.set(dut.i_act.valid, 1)
                ctx.set(dut.i_wgt.valid, 1)
                await ctx.tick().until(dut.i_act.ready)
        ctx.set(dut.i_act.valid, 0)
        ctx.set(dut.i_wgt.valid, 0)

    async def param_driver(ctx):
        # Params are sampled as each row enters the output stage; switch to the next
        # tile's params right after the tile's last row (row 0) went in.
        tile_index = 0
        set_params(ctx, 0)
        stage_in = dut.stage.i_res
        while tile_index < len(order):
            _, _, valid, row = await ctx.tick().sample(stage_in.valid, stage_in.payload.row)
            if valid and row == 0:
                tile_index += 1
                set_params(ctx, tile_index)

    # Random stalls stretch the run by 1 / (1 - stall_prob) on average.
    predicted = core_cycles(cfg, m, k, n)
    budget = cycle_budget(round(predicted / (1.0 - min(stall_prob, 0.99))))

    async def consumer(ctx):
        cycle = 0
        for t in order:
            for _ in range(cfg.rows):
                while True:
                    _, _, valid, payload = await ctx.tick().sample(
                        dut.o_res.valid, dut.o_res.payload
                    )
                    cycle += 1
                    if valid:
                        break
                    if cycle > budget:
                        raise HardwareTimeout(
                            f"{m} x {k} x {n} GEMM: the array core did not deliver every "
                            f"result row: {cycle} cycles elapsed, the cycle model predicts "
                            f"{predicted} (Amaranth simulator)"
                        )
                r = t.m0 + int(payload.row)
                values[r, t.n0 : t.n0 + cfg.cols] = [int(v) for v in payload.value]
                flags[r, t.n0 : t.n0 + cfg.cols] = [bool(f) for f in payload.ovf]
        state["cycles"] = cycle

    sim.add_testbench(producer)
    sim.add_testbench(param_driver, background=True)
    sim.add_testbench(consumer)
    with sim.write_vcd(vcd) if vcd else contextlib.nullcontext():
        sim.run()
    return CoreRun(out=values[:m, :n], overflow=flags[:m, :n], cycles=state["cycles"])
