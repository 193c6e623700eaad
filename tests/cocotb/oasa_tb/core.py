"""Driver for ``ArrayCore`` (array + output stage): whole GEMMs in, checked rows out.

The same stimulus the Amaranth backend (:mod:`oasa.sim.backends.amaranth_core`) sends,
but through the generated Verilog: every tile of X (M x K) times W (K x N), zero-padded
to whole R x C tiles, as K beats on ``i_act`` and ``i_wgt`` (two streams that transfer
together, each with its own pause pattern). Every row leaving ``o_res`` is compared in
order with the golden model: values, flags and the row index.
"""

from __future__ import annotations

import numpy as np

from oasa.hw.array import SystolicArray
from oasa.hw.layouts import act_beat_layout, params_layout, stage_out_layout, weight_beat_layout
from oasa.sim import golden
from oasa.sim.cycles import core_cycles
from oasa.sim.tiling import pad_operands, tile_grid, tiles

from .packing import codec
from .scoreboard import Scoreboard
from .streams import StreamSink, StreamSource

__all__ = ["CoreDriver"]


class CoreDriver:
    """GEMM driver and checker for an ``ArrayCore`` toplevel.

    Parameters
    ----------
    tb : ClockedTB
    act_pause, wgt_pause:
        Pause patterns of the two input streams (see :func:`oasa_tb.streams.pattern`).
    """

    def __init__(self, tb, *, act_pause: str = "none", wgt_pause: str = "none"):
        self.tb = tb
        cfg = self.cfg = tb.cfg
        dut = tb.dut
        self.act = tb.add(
            StreamSource(dut, "i_act", act_beat_layout(cfg), pause=act_pause, rng=tb.sub_rng("act"))
        )
        self.wgt = tb.add(
            StreamSource(
                dut, "i_wgt", weight_beat_layout(cfg), pause=wgt_pause, rng=tb.sub_rng("wgt")
            )
        )
        self.res = tb.add(StreamSink(dut, "o_res", stage_out_layout(cfg), on_receive=self._on_row))
        self.sb = Scoreboard("o_res", tb.log)
        self._params = codec(params_layout(cfg))
        self.last_row_cycle: int | None = None
        # Where each expected row lands: (gemm id, output row, first output column).
        self._slots: list = []
        self.results: dict[int, dict] = {}
        self._gemm_id = 0
        self.stage = {"requant": False, "relu": False}
        self.set_output_stage(requant=False)

    # -- output stage --------------------------------------------------------------------

    def set_output_stage(self, *, requant: bool, relu: bool = False, bias=0, mult=1, shift=0):
        """Fix the output-stage inputs for the whole run (per channel of the tile).

        ``ArrayCore`` samples them as each row enters the stage, so a run that changes them
        per tile needs the accelerator's sequencing; here they hold for every tile, which
        is exact when N <= C (one column tile).
        """
        cols = self.cfg.cols
        bias = np.broadcast_to(np.asarray(bias, dtype=np.int64), (cols,))
        mult = np.broadcast_to(np.asarray(mult, dtype=np.int64), (cols,))
        shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), (cols,))
        self.stage = {
            "requant": bool(requant),
            "relu": bool(relu),
            "bias": bias,
            "mult": mult,
            "shift": shift,
        }
        dut = self.tb.dut
        dut.params.value = self._params.encode(
            {"bias": bias.tolist(), "mult": mult.tolist(), "shift": shift.tolist()}
        )
        dut.relu.value = int(relu)
        dut.requant.value = int(requant)

    # -- stimulus ------------------------------------------------------------------------

    def queue_gemm(self, x, w, *, tag: str = "gemm", cov=None) -> golden.GemmResult:
        """Queue every tile of ``x @ w`` and the rows the golden model says must come out.

        Returns the golden result of the unpadded GEMM. ``cov`` (a :class:`Coverage`), if
        given, counts the dot products and flag outcomes that will be compared. What the
        DUT sent back is assembled in ``results[gid]`` (``values``, ``overflow``, padded),
        ``gid`` being ``self.last_gemm_id`` after the call.
        """
        cfg = self.cfg
        x = np.asarray(x, dtype=np.int64)
        w = np.asarray(w, dtype=np.int64)
        m, k = x.shape
        n = w.shape[1]
        g = golden.gemm(x, w, cfg=cfg)
        xp, wp = pad_operands(x, w, cfg)
        gp = golden.gemm(xp, wp, cfg=cfg)
        if self.stage["requant"]:
            if n > cfg.cols:
                raise ValueError("requantized runs need N <= C (one set of stage parameters)")
            values = golden.output_stage(
                gp.out,
                cfg=cfg,
                bias=self.stage["bias"],
                mult=self.stage["mult"],
                shift=self.stage["shift"],
                relu=self.stage["relu"],
            )
        else:
            values = gp.out
        self._gemm_id += 1
        gid = self.last_gemm_id = self._gemm_id
        self.results[gid] = {
            "values": np.zeros_like(values),
            "overflow": np.zeros(values.shape, dtype=bool),
            "rows": 0,
            "shape": (m, n),
        }
        for t in tiles(cfg, m, n):
            rows = slice(t.m0, t.m0 + cfg.rows)
            cols = slice(t.n0, t.n0 + cfg.cols)
            for kk in range(k):
                self.act.send(
                    {"data": xp[rows, kk].tolist(), "first": int(kk == 0), "last": int(kk == k - 1)}
                )
                self.wgt.send(wp[kk, cols].tolist())
            for r in reversed(range(cfg.rows)):
                self._slots.append((gid, t.m0 + r, t.n0))
                self.sb.expect(
                    {
                        "value": values[t.m0 + r, cols].tolist(),
                        "ovf": gp.overflow[t.m0 + r, cols].astype(int).tolist(),
                        "row": r,
                    },
                    f"{tag} tile {t.index} (m0={t.m0}, n0={t.n0}) row {r}",
                )
        if cov is not None:
            cov.add("dot_products", m * n)
            cov.add("tiles", len(list(tiles(cfg, m, n))))
            cov.add("beats", k * len(list(tiles(cfg, m, n))))
            cov.flags(g.overflow, g.final_overflow)
            if self.stage["requant"]:
                cov.add("requantized_outputs", m * n)
        return g

    def _on_row(self, cycle: int, value) -> None:
        self.last_row_cycle = cycle
        self.sb.observe(value, cycle)
        if self._slots:
            gid, r, n0 = self._slots.pop(0)
            res = self.results[gid]
            cols = slice(n0, n0 + self.cfg.cols)
            res["values"][r, cols] = value["value"]
            res["overflow"][r, cols] = [bool(f) for f in value["ovf"]]
            res["rows"] += 1

    def result(self, gid: int) -> tuple[np.ndarray, np.ndarray]:
        """(values, overflow) the DUT returned for GEMM ``gid``, unpadded."""
        res = self.results[gid]
        m, n = res["shape"]
        return res["values"][:m, :n], res["overflow"][:m, :n]

    # -- running -------------------------------------------------------------------------

    def budget(self, extra: int = 0) -> int:
        """Generous cycle limit for everything queued (stalls included)."""
        beats = len(self.act.queue) + len(self.wgt.queue) + 2
        slack = 20 if "heavy" in (self.act.pause_name, self.wgt.pause_name) else 8
        latency = SystolicArray.latency_of(self.cfg)
        return slack * (beats + self.sb.pending * 2 + latency + 8) + extra

    async def drain(self, *, max_cycles: int | None = None) -> int:
        """Run until every queued beat was sent and every expected row arrived, then a
        quiet period in which no further row may appear (a duplicate would)."""
        limit = max_cycles if max_cycles is not None else self.budget()
        cycles = await self.tb.run_until(
            lambda: self.act.idle_now and self.wgt.idle_now and self.sb.pending == 0,
            limit,
            what=f"{self.sb.pending} result row(s)",
        )
        await self.tb.step(SystolicArray.latency_of(self.cfg) + 4 + self.cfg.rows + 2)
        return cycles

    def restart_timing(self) -> None:
        """Forget the first presented beat, so :meth:`measured_cycles` times the next GEMM."""
        self.act.first_valid_cycle = None
        self.last_row_cycle = None

    def measured_cycles(self) -> int:
        """First beat presented to last row out, inclusive (the cycle model's count)."""
        return self.last_row_cycle - self.act.first_valid_cycle + 1

    def expected_cycles(self, m: int, k: int, n: int) -> int:
        return core_cycles(self.cfg, m, k, n)

    def n_tiles(self, m: int, n: int) -> int:
        mts, nts = tile_grid(self.cfg, m, n)
        return mts * nts
