"""The testbench base: configuration, seed, clock, reset and the per-cycle loop.

Every agent (stream source, stream sink, parameter driver, ...) is a plain object with
two methods that :class:`ClockedTB` calls once per clock cycle:

- ``drive(tb)`` right after the rising edge: set this cycle's inputs;
- ``sample(tb)`` in the read-only phase, when every combinational path has settled:
  read outputs and decide which handshakes complete at the next edge.

One loop for all agents costs two simulator callbacks per cycle whatever the number of
agents, and reading in the read-only phase sees the same values on Verilator (which
evaluates the edge before calling back) and on Icarus (which calls back before the
non-blocking updates) — the reason not to sample right after ``RisingEdge``.
"""

from __future__ import annotations

import json
import os
import zlib

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from oasa.config import ArrayConfig

__all__ = ["ClockedTB", "SimTimeout", "load_cfg"]

CLOCK_NS = 10


class SimTimeout(AssertionError):
    """A wait for the DUT ran out of cycles: something was lost or the DUT hung."""


def load_cfg() -> ArrayConfig:
    """The configuration the pytest side built the DUT for (``OASA_CFG``, JSON)."""
    text = os.environ.get("OASA_CFG")
    if not text:
        raise RuntimeError("OASA_CFG is not set: run the bench through its test_*.py")
    return ArrayConfig.from_json(text)


def bench_options() -> dict:
    """Extra knobs from the pytest side (``OASA_BENCH``, JSON), e.g. ``{"scale": 2}``."""
    return json.loads(os.environ.get("OASA_BENCH", "{}"))


class ClockedTB:
    """Owns the clock, the reset, the random generator and the agents.

    Parameters
    ----------
    dut:
        The cocotb handle of the toplevel (``clk`` and ``rst`` ports, as Amaranth emits).
    name:
        Short name used in log lines and in the coverage record.
    """

    def __init__(self, dut, name: str = "tb"):
        self.dut = dut
        self.name = name
        self.cfg = load_cfg()
        self.options = bench_options()
        #: "verilator" or "icarus" (set by the pytest side); Icarus runs the large arrays
        #: several times slower, so benches may keep their longest cases for Verilator.
        self.sim = os.environ.get("OASA_SIM", "unknown")
        self.log = cocotb.log
        # cocotb.RANDOM_SEED is the run seed combined with the test name, so each test
        # has its own reproducible stream; COCOTB_RANDOM_SEED (or OASA_SEED on the
        # pytest side) replays a run.
        self.seed = int(cocotb.RANDOM_SEED) & 0xFFFFFFFF
        self.rng = np.random.default_rng(self.seed)
        self.log.info("%s: cfg %s, numpy seed %d", name, self.cfg.name, self.seed)
        self.agents: list = []
        self.cycle = 0
        self._clock_started = False

    def sub_rng(self, label: str) -> np.random.Generator:
        """An independent generator for one purpose (e.g. one stream's pauses)."""
        return np.random.default_rng([self.seed, zlib.crc32(label.encode())])

    @property
    def scale(self) -> float:
        """Multiplier of the amount of random stimulus (``OASA_BENCH={"scale": ...}``)."""
        return float(self.options.get("scale", 1.0))

    def add(self, agent):
        self.agents.append(agent)
        return agent

    async def start(self, reset_cycles: int = 2) -> None:
        """Start the clock and hold ``rst`` for ``reset_cycles`` edges."""
        if not self._clock_started:
            Clock(self.dut.clk, CLOCK_NS, unit="ns").start()
            self._clock_started = True
        self.dut.rst.value = 1
        for agent in self.agents:
            agent.idle(self)
        for _ in range(reset_cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.cycle = 0

    async def step(self, cycles: int = 1) -> None:
        """Run ``cycles`` clock cycles: drive, settle, sample, edge."""
        for _ in range(cycles):
            for agent in self.agents:
                agent.drive(self)
            await ReadOnly()
            for agent in self.agents:
                agent.sample(self)
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    async def run_until(self, done, max_cycles: int, what: str = "the DUT") -> int:
        """Step until ``done()`` is true (checked after each cycle); return the cycles.

        Raises :class:`SimTimeout` after ``max_cycles``.
        """
        start = self.cycle
        while not done():
            if self.cycle - start >= max_cycles:
                raise SimTimeout(f"waited {max_cycles} cycles for {what}")
            await self.step()
        return self.cycle - start
