"""Stream agents: a source and a sink for Amaranth ``stream.Signature`` ports.

A stream member ``x`` of a component becomes the Verilog ports ``x__payload``,
``x__valid`` and ``x__ready`` (no ``x__ready`` when the stream is ``always_ready``).
The rules checked here are Amaranth's stream contract (``docs/stdlib/stream.rst``):
a transfer happens at a rising edge where ``valid`` and ``ready`` are both high; once
``valid`` is raised it stays high, with the payload unchanged, until the transfer.

Pause patterns (``idle`` cycles of a source, back-pressure cycles of a sink) are named,
so the coverage summary can count which ones ran.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np

from .packing import codec

__all__ = ["PATTERNS", "StreamSink", "StreamSource", "pattern"]

#: Pause patterns: a generator of booleans, True = pause in this cycle.
PATTERNS = ("none", "random", "bursty", "alternate", "heavy")


def pattern(name: str, rng: np.random.Generator) -> Iterator[bool]:
    """An endless pause sequence.

    none: never pause; random: 30 % of cycles, independently; bursty: runs of 1..12
    pauses between runs of 1..20 free cycles; alternate: every other cycle; heavy:
    70 % of cycles.
    """
    if name == "none":
        while True:
            yield False
    elif name == "random":
        while True:
            yield from (rng.random(256) < 0.3).tolist()
    elif name == "heavy":
        while True:
            yield from (rng.random(256) < 0.7).tolist()
    elif name == "alternate":
        while True:
            yield True
            yield False
    elif name == "bursty":
        while True:
            yield from [False] * int(rng.integers(1, 21))
            yield from [True] * int(rng.integers(1, 13))
    else:
        raise ValueError(f"unknown pause pattern {name!r}: use one of {', '.join(PATTERNS)}")


class StreamSource:
    """Drives a stream into the DUT from a queue of payload values.

    Parameters
    ----------
    dut:
        cocotb toplevel handle.
    name:
        Stream member name (``i_act`` drives ``i_act__payload/valid``, reads ``i_act__ready``).
    layout:
        The payload shape, e.g. ``act_beat_layout(cfg)``.
    pause:
        Pause pattern name (see :func:`pattern`); in a paused cycle ``valid`` is low even
        though data is queued.
    rng:
        Generator for the pattern.
    """

    def __init__(self, dut, name: str, layout, *, pause: str = "none", rng=None):
        self.name = name
        self.codec = codec(layout)
        self.h_payload = getattr(dut, f"{name}__payload")
        self.h_valid = getattr(dut, f"{name}__valid")
        self.h_ready = getattr(dut, f"{name}__ready", None)
        self.queue: deque = deque()
        self.set_pause(pause, rng)
        self.current = None  # (raw, item) being presented
        self.accepted: list[tuple[int, object]] = []  # (cycle of the edge, item)
        self.paused_cycles = 0  # cycles with data queued but valid held low
        self.waited_cycles = 0  # cycles with valid high and ready low (back-pressure)
        self.first_valid_cycle: int | None = None
        self._valid = None

    def set_pause(self, pause: str, rng=None) -> None:
        self.pause_name = pause
        self._pause = pattern(pause, rng if rng is not None else np.random.default_rng(0))

    def send(self, item) -> None:
        """Queue one payload value (checked against the layout now, not at the edge)."""
        self.queue.append((self.codec.encode(item), item))

    @property
    def idle_now(self) -> bool:
        """Nothing queued and nothing in flight."""
        return self.current is None and not self.queue

    def _set_valid(self, v: int) -> None:
        if v != self._valid:
            self.h_valid.value = v
            self._valid = v

    def idle(self, tb) -> None:
        self._set_valid(0)

    def drive(self, tb) -> None:
        if self.current is not None:
            return  # hold valid and payload until the transfer
        if not self.queue:
            self._set_valid(0)
            return
        if next(self._pause):
            self.paused_cycles += 1
            self._set_valid(0)
            return
        self.current = self.queue.popleft()
        self.h_payload.value = self.current[0]
        self._set_valid(1)
        if self.first_valid_cycle is None:
            self.first_valid_cycle = tb.cycle

    def sample(self, tb) -> None:
        if self.current is None:
            return
        if self.h_ready is None or int(self.h_ready.value):
            self.accepted.append((tb.cycle, self.current[1]))
            self.current = None
        else:
            self.waited_cycles += 1


class StreamSink:
    """Receives a stream from the DUT; drives ``ready`` with a back-pressure pattern if the
    stream has one, and checks the stream rules.

    ``received`` lists ``(cycle, value)`` for every transfer, ``value`` decoded with the
    layout. ``on_receive(cycle, value)``, if given, is called for each transfer.
    """

    def __init__(self, dut, name: str, layout, *, pause: str = "none", rng=None, on_receive=None):
        self.name = name
        self.codec = codec(layout)
        self.h_payload = getattr(dut, f"{name}__payload")
        self.h_valid = getattr(dut, f"{name}__valid")
        self.h_ready = getattr(dut, f"{name}__ready", None)
        self.on_receive = on_receive
        self.received: list[tuple[int, object]] = []
        self.pause_name = pause if self.h_ready is not None else "none"
        self._pause = pattern(self.pause_name, rng if rng is not None else np.random.default_rng(0))
        self.backpressure_cycles = 0
        self.violations: list[str] = []
        self._pending = None  # raw payload of a beat offered but not taken
        self._ready = None

    def _set_ready(self, v: int) -> None:
        if self.h_ready is not None and v != self._ready:
            self.h_ready.value = v
            self._ready = v

    def idle(self, tb) -> None:
        self._set_ready(0)

    def drive(self, tb) -> None:
        if self.h_ready is not None:
            stall = next(self._pause)
            self.backpressure_cycles += stall
            self._set_ready(0 if stall else 1)

    def sample(self, tb) -> None:
        valid = int(self.h_valid.value)
        if self._pending is not None:
            # A beat was offered last cycle and not taken: it must still be offered.
            if not valid:
                self.violations.append(f"cycle {tb.cycle}: {self.name} dropped valid before ready")
            elif int(self.h_payload.value) != self._pending:
                self.violations.append(
                    f"cycle {tb.cycle}: {self.name} payload changed while stalled"
                )
            self._pending = None
        if not valid:
            return
        raw = int(self.h_payload.value)
        if self.h_ready is None or self._ready:
            value = self.codec.decode(raw)
            self.received.append((tb.cycle, value))
            if self.on_receive is not None:
                self.on_receive(tb.cycle, value)
        else:
            self._pending = raw
