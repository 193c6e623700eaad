"""Driver and checker for an ``OutputStage`` toplevel.

A beat is one drained row (C accumulators, C flags, the row index) together with the
stage inputs sampled with it (per-lane bias, multiplier, shift; ``relu``; ``requant``).
On idle cycles the agent drives random garbage on every input but ``valid``, so a stage
that looked at its inputs after a row entered would be caught. Expected rows come from
``golden.output_stage``.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from oasa.hw.layouts import params_layout, result_layout, stage_out_layout
from oasa.sim import golden

from .packing import codec
from .scoreboard import Scoreboard
from .streams import StreamSink, pattern

__all__ = ["StageBeat", "StageDriver", "stage_events"]


class StageBeat(dict):
    """acc, ovf, row, bias, mult, shift (lists of C), relu, requant (bools)."""


def stage_events(cfg, beat) -> dict:
    """Which corner cases a beat exercises, per lane (for the coverage counters)."""
    ev = dict.fromkeys(("ties", "shift0", "shift_max", "clamp_high", "clamp_low", "relu_zeroed"), 0)
    if not beat["requant"]:
        return ev
    for a, b, m, s in zip(beat["acc"], beat["bias"], beat["mult"], beat["shift"], strict=True):
        z = (a + b) * m
        ev["shift0"] += s == 0
        ev["shift_max"] += s == cfg.shift_max
        if s > 0 and z % (1 << s) == 1 << (s - 1):
            ev["ties"] += 1
        r = (z + ((1 << (s - 1)) if s else 0)) >> s
        if beat["relu"] and r < 0:
            ev["relu_zeroed"] += 1
            r = 0
        ev["clamp_high"] += r > cfg.act_max
        ev["clamp_low"] += r < cfg.act_min
    return ev


class StageDriver:
    """Drives beats into ``i_res`` and the stage inputs; checks ``o_res`` in order."""

    def __init__(self, tb, *, pause: str = "none"):
        self.tb = tb
        cfg = self.cfg = tb.cfg
        d = tb.dut
        self.c_res = codec(result_layout(cfg))
        self.c_par = codec(params_layout(cfg))
        self.h_payload, self.h_valid = d.i_res__payload, d.i_res__valid
        self.h_params, self.h_relu, self.h_requant = d.params, d.relu, d.requant
        self.queue: deque = deque()
        self.pause_name = pause
        self._pause = pattern(pause, tb.sub_rng("stage-pause"))
        self._garbage = tb.sub_rng("stage-garbage")
        self.paused_cycles = 0
        self.name = "i_res"
        self.sb = Scoreboard("o_res", tb.log)
        self.sink = tb.add(StreamSink(d, "o_res", stage_out_layout(cfg), on_receive=self._on_row))
        tb.add(self)
        self.events = dict.fromkeys(
            (
                "rows",
                "raw",
                "ties",
                "shift0",
                "shift_max",
                "clamp_high",
                "clamp_low",
                "relu_zeroed",
            ),
            0,
        )

    def send(self, beat: StageBeat) -> None:
        cfg = self.cfg
        raw = self.c_res.encode({"acc": beat["acc"], "ovf": beat["ovf"], "row": beat["row"]})
        par = self.c_par.encode(
            {"bias": beat["bias"], "mult": beat["mult"], "shift": beat["shift"]}
        )
        if beat["requant"]:
            value = golden.output_stage(
                np.asarray([beat["acc"]], dtype=np.int64),
                cfg=cfg,
                bias=np.asarray(beat["bias"]),
                mult=np.asarray(beat["mult"]),
                shift=np.asarray(beat["shift"]),
                relu=beat["relu"],
            )[0].tolist()
        else:
            value = list(beat["acc"])
            self.events["raw"] += 1
        for k, v in stage_events(cfg, beat).items():
            self.events[k] += v
        self.events["rows"] += 1
        self.sb.expect(
            {"value": value, "ovf": list(beat["ovf"]), "row": beat["row"]},
            f"beat {self.events['rows'] - 1}",
        )
        self.queue.append((raw, par, int(beat["relu"]), int(beat["requant"])))

    @property
    def idle_now(self) -> bool:
        return not self.queue

    def idle(self, tb) -> None:
        self.h_valid.value = 0

    def drive(self, tb) -> None:
        if self.queue and not next(self._pause):
            raw, par, relu, requant = self.queue.popleft()
            self.h_valid.value = 1
        else:
            if self.queue:
                self.paused_cycles += 1
            g = self._garbage
            raw = int(g.integers(0, 1 << 62)) & self.c_res.mask
            par = int.from_bytes(g.bytes((self.c_par.width + 7) // 8), "little") & self.c_par.mask
            relu, requant = int(g.integers(2)), int(g.integers(2))
            self.h_valid.value = 0
        self.h_payload.value = raw
        self.h_params.value = par
        self.h_relu.value = relu
        self.h_requant.value = requant

    def sample(self, tb) -> None:
        pass

    def _on_row(self, cycle, value) -> None:
        self.sb.observe(value, cycle)

    async def drain(self) -> None:
        await self.tb.run_until(
            lambda: self.idle_now and self.sb.pending == 0,
            20 * (len(self.queue) + self.sb.pending) + 50,
            f"{self.sb.pending} stage row(s)",
        )
        await self.tb.step(8)  # nothing more may come out
