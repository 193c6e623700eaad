"""A small 8N1 UART (receiver and transmitter) for the host link.

amaranth-stdio, which would provide one, is only a placeholder on PyPI, so these two are
written here by hand and kept as small as the job allows: one bit counter, one cycle
counter and one shift register each, no FIFOs, no parity, no flow control.
"""

# Component reads its ports from class annotations: no `from __future__ import annotations`.
import operator

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["MAX_BAUD_ERROR", "MIN_DIVISOR", "UARTReceiver", "UARTTransmitter", "baud_divisor"]

#: The receiver samples mid-bit with a detection jitter of one cycle, so it needs a few
#: cycles per bit to land near the middle.
MIN_DIVISOR = 4
#: Largest relative baud error accepted: over the ten bits of a frame the sample point may
#: drift 20 % of a bit, which still leaves margin at a 4-cycle divider.
MAX_BAUD_ERROR = 0.02


def baud_divisor(clk_hz: float, baud: float) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``, rejecting unusable combinations.

    Raises ``ValueError`` when fewer than :data:`MIN_DIVISOR` cycles fit a bit, or when
    the rounded divider misses the baud rate by more than :data:`MAX_BAUD_ERROR`.
    """
    if clk_hz <= 0 or baud <= 0:
        raise ValueError(f"clock {clk_hz} Hz and baud rate {baud} must both be positive")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(
            f"baud rate {baud} is too fast for a {clk_hz:g} Hz clock: {clk_hz / baud:.2f} "
            f"cycles per bit, the UART needs at least {MIN_DIVISOR}"
        )
    error = abs(clk_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(
            f"baud rate {baud} is off by {100 * error:.1f} % at {clk_hz:g} Hz (divider "
            f"{divisor} gives {clk_hz / divisor:.0f} baud); at most "
            f"{100 * MAX_BAUD_ERROR:g} % is reliable: choose another baud rate or clock"
        )
    return divisor


def _check_divisor(divisor: int) -> int:
    divisor = operator.index(divisor)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be at least {MIN_DIVISOR} cycles per bit, got {divisor}")
    return divisor


class UARTReceiver(wiring.Component):
    """8N1 receiver: samples each bit in its middle, after a two-flip-flop synchronizer.

    A start bit is a low level that is still low half a bit later; data bits follow LSB
    first, then the stop bit must be high. A low stop bit drops the byte, pulses
    ``framing_error`` for one cycle and waits for the line to go idle (high) before
    looking for the next start bit, so a break does not read as a stream of zero bytes.

    The receiver cannot hold a sender back: a byte not taken before the next one
    completes is overwritten. Latency: a byte is valid 2 + 9.5 bits after its start
    edge (plus two synchronizer cycles).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (see :func:`baud_divisor`), at least :data:`MIN_DIVISOR`.

    Members
    -------
    rx : In(1)                          the serial line (idle high)
    o_data : Out(stream.Signature(8))   received bytes
    framing_error : Out(1)              one-cycle pulse: a byte with a low stop bit
    """

    rx: In(1, init=1)
    o_data: Out(stream.Signature(8))
    framing_error: Out(1)

    def __init__(self, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(div))
        bits = Signal(range(8))
        shift = Signal(8)
        tick = timer == 0
        with m.If(~tick):
            m.d.sync += timer.eq(timer - 1)

        with m.If(self.o_data.ready):
            m.d.sync += self.o_data.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"), m.If(~rx):
                m.d.sync += timer.eq(div // 2 - 1)
                m.next = "START"
            with m.State("START"), m.If(tick):
                m.d.sync += [timer.eq(div - 1), bits.eq(0)]
                # A glitch shorter than half a bit is not a start bit.
                m.next = "DATA"
                with m.If(rx):
                    m.next = "IDLE"
            with m.State("DATA"), m.If(tick):
                m.d.sync += [timer.eq(div - 1), shift.eq(Cat(shift[1:], rx)), bits.eq(bits + 1)]
                with m.If(bits == 7):
                    m.next = "STOP"
            with m.State("STOP"), m.If(tick):
                with m.If(rx):
                    m.d.sync += [self.o_data.payload.eq(shift), self.o_data.valid.eq(1)]
                    # Back to IDLE half a bit early, so the next start edge is not missed.
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.framing_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"), m.If(rx):
                m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter: a start bit, eight data bits LSB first, a stop bit.

    Takes a byte whenever it is idle, so back-to-back bytes leave with no gap: throughput
    is one byte per ``10 * divisor`` cycles.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (see :func:`baud_divisor`), at least :data:`MIN_DIVISOR`.

    Members
    -------
    i_data : In(stream.Signature(8))   bytes to send
    tx : Out(1)                        the serial line (idle high)
    """

    i_data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        timer = Signal(range(div))
        left = Signal(range(11))  # bits still to send, start and stop included
        frame = Signal(10, init=0x3FF)  # stop, data, start: shifted out from bit 0
        # Ready in the last cycle of a stop bit too, so back-to-back bytes have no gap.
        ending = (left == 0) | ((left == 1) & (timer == 0))
        m.d.comb += [self.tx.eq(frame[0]), self.i_data.ready.eq(ending)]

        with m.If(ending & self.i_data.valid):
            m.d.sync += [
                frame.eq(Cat(0, self.i_data.payload, 1)),
                timer.eq(div - 1),
                left.eq(10),
            ]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [
                    timer.eq(div - 1),
                    frame.eq(Cat(frame[1:], 1)),
                    left.eq(left - 1),
                ]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
