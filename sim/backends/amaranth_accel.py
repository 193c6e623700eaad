"""Run a GEMM layer on the RTL ``Accelerator`` with Amaranth's own simulator.

The host side loads the buffers directly (rows of the simulated memories) instead of one
word per cycle through the write ports, since the Python simulator runs only hundreds of
cycles per second on an 8 x 8 array; the registers are driven through the register bus
cycle by cycle, and the cycle count is the accelerator's own CYCLES register.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import ExitStack

import numpy as np
from amaranth.sim import Simulator

from oasa.errors import HardwareTimeout
from oasa.hw.accelerator import Accelerator
from oasa.hw.registers import REG
from oasa.sim.accel_image import AccelRun, LayerImage
from oasa.sim.backends import GemmCall
from oasa.sim.cycles import accelerator_cycles, cycle_budget

__all__ = ["AmaranthBackend", "run_accel_images"]


def run_accel_images(
    images: list[LayerImage], *, vcd: str | None = None, front_door: bool = False
) -> list[AccelRun]:
    """Run layers back to back on one accelerator instance (no reset in between).

    ``front_door`` loads the buffers through the host write ports (slow; for tests).
    """
    cfg = images[0].cfg
    dut = Accelerator(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    runs: list[AccelRun] = []
    bufs = dut.buffers

    async def write_reg(ctx, name: str, value: int) -> None:
        ctx.set(dut.reg.addr, REG[name])
        ctx.set(dut.reg.w_data, value)
        ctx.set(dut.reg.w_en, 1)
        await ctx.tick()
        ctx.set(dut.reg.w_en, 0)

    async def read_reg(ctx, name: str) -> int:
        ctx.set(dut.reg.addr, REG[name])
        return ctx.get(dut.reg.r_data)

    async def load(ctx, img: LayerImage) -> None:
        r = img.registers
        rows = {
            "act": (r["ACT_BASE"], [w.tolist() for w in img.act_words]),
            "wgt": (r["WGT_BASE"], [w.tolist() for w in img.wgt_words]),
            "param": (
                r["PARAM_BASE"],
                [
                    {"bias": b.tolist(), "mult": m.tolist(), "shift": s.tolist()}
                    for b, m, s in zip(img.bias, img.mult, img.shift, strict=True)
                ],
            ),
        }
        for name, (base, words) in rows.items():
            if front_door:
                port = getattr(dut, f"host_{name}")
                ctx.set(port.en, 1)
                for i, word in enumerate(words):
                    ctx.set(port.addr, base + i)
                    ctx.set(port.data, word)
                    await ctx.tick()
                ctx.set(port.en, 0)
            else:
                for i, word in enumerate(words):
                    ctx.set(bufs[name][base + i], word)

    async def read_results(ctx, img: LayerImage):
        base = img.registers["RES_BASE"]
        values = np.zeros((img.res_words, cfg.cols), dtype=np.int64)
        flags = np.zeros((img.res_words, cfg.cols), dtype=bool)
        for i in range(img.res_words):
            if front_door:
                ctx.set(dut.host_res.addr, base + i)
                await ctx.tick()
                word = ctx.get(dut.host_res.data)
            else:
                word = ctx.get(bufs["res"][base + i])
            values[i] = [int(v) for v in word.value]
            flags[i] = [bool(f) for f in word.ovf]
        return img.decode(values, flags)

    async def host(ctx):
        for img in images:
            await load(ctx, img)
            for name, value in img.registers.items():
                await write_reg(ctx, name, value)
            await write_reg(ctx, "CTRL", 1)
            predicted = accelerator_cycles(cfg, img.m, img.k, img.n, cont=img.cont)
            budget = cycle_budget(predicted)
            counted = 1
            while not ctx.get(dut.done):
                if counted > budget:
                    raise HardwareTimeout(
                        f"{img.label}: the accelerator did not finish: {counted} cycles "
                        f"elapsed, the cycle model predicts {predicted} (Amaranth simulator)"
                    )
                await ctx.tick()
                counted += 1
            out, ovf = await read_results(ctx, img)
            cycles = await read_reg(ctx, "CYCLES")
            flagged = await read_reg(ctx, "FLAGGED")
            runs.append(AccelRun(out, ovf, cycles, flagged, counted - 1))

    sim.add_testbench(host)
    with sim.write_vcd(vcd) if vcd else contextlib.nullcontext():
        sim.run()
    return runs


class _AmaranthSession:
    def __init__(self, vcd: str | None) -> None:
        self.vcd = vcd

    def run(self, calls: Sequence[GemmCall]) -> list[AccelRun]:
        vcd, self.vcd = self.vcd, None  # one waveform: the first calls'
        return run_accel_images([c.image for c in calls], vcd=vcd)


class AmaranthBackend:
    """The RTL in Amaranth's Python simulator: slow (hundreds of cycles a second), needs
    nothing to be built."""

    name = "amaranth"
    needs_port = False
    waveform = True

    def prepare(self, configs: Sequence, *, trace: bool = False) -> None:
        return None

    def open(
        self, stack: ExitStack, *, vcd: str | None = None, port=None, baud: int = 115200
    ) -> _AmaranthSession:
        return _AmaranthSession(vcd)
