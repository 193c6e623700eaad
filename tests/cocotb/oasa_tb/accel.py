"""Host agent for the ``Accelerator`` toplevel: buffer writes, register reads and writes,
result reads, one bus operation per cycle, with host pauses between them.

The accelerator's host interface has no valid/ready handshake: the register bus and the
buffer ports act in the cycle they are driven (a result read answers one cycle later).
What a host can vary is its timing, so the agent spaces its operations with a pause
pattern (:func:`oasa_tb.streams.pattern`) and may program the next layer while one runs.
The layer layout comes from :func:`oasa.sim.accel_image.build_image`, as for every other
backend; words are encoded from the hardware's own layouts.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from oasa.hw.layouts import act_beat_layout, params_layout, result_word_layout, weight_beat_layout
from oasa.hw.registers import REG

from .packing import codec
from .streams import pattern

__all__ = ["AccelHost"]


class AccelHost:
    """Bus agent; queue operations with the methods below, step the testbench until
    :attr:`idle_now`.

    ``paused_cycles`` counts the cycles the host held an operation back (its "stalls");
    ``log`` records ``(cycle, operation)`` for every operation driven.
    """

    def __init__(self, tb, *, pause: str = "none"):
        self.tb = tb
        self.name = "host"
        cfg = tb.cfg
        dut = tb.dut
        self.pause_name = pause
        self._pause = pattern(pause, tb.sub_rng("host"))
        self.codecs = {
            "act": codec(act_beat_layout(cfg).members["data"]),
            "wgt": codec(weight_beat_layout(cfg)),
            "param": codec(params_layout(cfg)),
            "res": codec(result_word_layout(cfg)),
        }
        self.ports = {
            name: (
                getattr(dut, f"host_{name}__addr"),
                getattr(dut, f"host_{name}__data"),
                getattr(dut, f"host_{name}__en"),
            )
            for name in ("act", "wgt", "param")
        }
        self.res_addr, self.res_en, self.res_data = (
            dut.host_res__addr,
            dut.host_res__en,
            dut.host_res__data,
        )
        self.reg_addr, self.reg_w_data, self.reg_w_en, self.reg_r_data = (
            dut.reg__addr,
            dut.reg__w_data,
            dut.reg__w_en,
            dut.reg__r_data,
        )
        self.h_done = dut.done
        self.ops: deque = deque()
        self.log: list[tuple[int, tuple]] = []
        #: Cycle of the CTRL write that started the current layer, and the first cycle
        #: ``done`` was seen after it (``done`` is sampled with the other outputs, in the
        #: read-only phase, so both simulators agree).
        self.start_cycle: int | None = None
        self.done_cycle: int | None = None
        self.paused_cycles = 0
        self._read_due = None  # callback for the result word that arrives this cycle
        self._read_issued = None
        self._reg_read = None

    # -- queueing -------------------------------------------------------------------------

    def write_reg(self, name: str, value: int) -> None:
        self.ops.append(("reg", REG[name], int(value) & 0xFFFFFFFF, name))

    def write_words(self, buf: str, base: int, words) -> None:
        c = self.codecs[buf]
        for i, word in enumerate(words):
            self.ops.append(("mem", buf, base + i, c.encode(word)))

    def read_reg(self, name: str, into: dict) -> None:
        self.ops.append(("regread", REG[name], name, into))

    def read_results(self, base: int, count: int, into: list) -> None:
        c = self.codecs["res"]
        for i in range(count):
            self.ops.append(("res", base + i, lambda raw, c=c: into.append(c.decode(raw))))

    def load_layer(self, img) -> None:
        """Buffers and command registers of one layer (from ``build_image``)."""
        r = img.registers
        self.write_words("act", r["ACT_BASE"], img.act_words.tolist())
        self.write_words("wgt", r["WGT_BASE"], img.wgt_words.tolist())
        params = [
            {"bias": b.tolist(), "mult": m.tolist(), "shift": s.tolist()}
            for b, m, s in zip(img.bias, img.mult, img.shift, strict=True)
        ]
        self.write_words("param", r["PARAM_BASE"], params)
        for name, value in r.items():
            self.write_reg(name, value)

    @property
    def idle_now(self) -> bool:
        return not self.ops and self._read_due is None and self._read_issued is None

    # -- per cycle --------------------------------------------------------------------------

    def idle(self, tb) -> None:
        for _, _, en in self.ports.values():
            en.value = 0
        self.res_en.value = 0
        self.reg_w_en.value = 0

    def drive(self, tb) -> None:
        self.idle(tb)
        self._read_due, self._read_issued = self._read_issued, None
        self._reg_read = None
        if not self.ops:
            return
        if next(self._pause):
            self.paused_cycles += 1
            return
        op = self.ops.popleft()
        self.log.append((tb.cycle, op))
        kind = op[0]
        if kind == "reg":
            _, addr, value, name = op
            if name == "CTRL" and value & 1 and self.start_cycle is None:
                # A start; a CTRL write while a layer runs is ignored by the hardware,
                # so it does not restart the measurement either.
                self.start_cycle, self.done_cycle = tb.cycle, None
            self.reg_addr.value = addr
            self.reg_w_data.value = value
            self.reg_w_en.value = 1
        elif kind == "mem":
            _, buf, addr, raw = op
            a, d, en = self.ports[buf]
            a.value = addr
            d.value = raw
            en.value = 1
        elif kind == "res":
            _, addr, callback = op
            self.res_addr.value = addr
            self.res_en.value = 1
            self._read_issued = callback  # the word is there after this edge
        else:  # regread: combinational, sampled in this cycle
            _, addr, name, into = op
            self.reg_addr.value = addr
            self._reg_read = (name, into)

    @property
    def layer_done(self) -> bool:
        """``done`` was seen after the last start."""
        return self.start_cycle is not None and self.done_cycle is not None

    def take_layer_cycles(self) -> int:
        """Cycles from the start write to the first cycle ``done`` was seen (CYCLES + 1)."""
        waited = self.done_cycle - self.start_cycle
        self.start_cycle = self.done_cycle = None
        return waited

    def sample(self, tb) -> None:
        waiting = self.start_cycle is not None and self.done_cycle is None
        if waiting and tb.cycle > self.start_cycle and int(self.h_done.value):
            self.done_cycle = tb.cycle
        if self._read_due is not None:
            self._read_due(int(self.res_data.value))
        if self._reg_read is not None:
            name, into = self._reg_read
            into[name] = int(self.reg_r_data.value)

    def decode_results(self, words: list, img) -> tuple[np.ndarray, np.ndarray]:
        values = np.array([w["value"] for w in words], dtype=np.int64)
        flags = np.array([w["ovf"] for w in words], dtype=bool)
        return img.decode(values, flags)
