"""A serial port whose far end is the UART accelerator in Amaranth's simulator.

:class:`SimulatedSerial` looks like a ``serial.Serial`` to the host driver, and moves
every byte bit by bit over the design's real ``rx``/``tx`` pins, through its UART and
bridge: the host link is tested end to end with no board. Simulated time stands for
serial time: the simulation advances only inside :meth:`~SimulatedSerial.read` and
:meth:`~SimulatedSerial.flush`, and a read's ``timeout`` is counted in simulated
seconds, so at the simulated baud rate it means what it means on a real port.
"""

from __future__ import annotations

import contextlib
from collections import deque

from amaranth.sim import Simulator

from oasa.config import ArrayConfig
from oasa.fpga.soc import UARTAccelerator

__all__ = ["SimulatedSerial"]


class SimulatedSerial:
    """A pyserial-like port (``read``, ``write``, ``flush``, ``reset_input_buffer``,
    ``close``, ``timeout``, ``baudrate``) wired to a simulated :class:`UARTAccelerator`.

    Parameters
    ----------
    cfg : ArrayConfig
        The accelerator build on the far end.
    clk_hz, baud : float, int
        The design's clock and baud rate; keep ``clk_hz / baud`` small (4..8) so that a
        byte costs few simulated cycles.
    timeout : float or None
        Read timeout in simulated seconds (None: wait until the bytes come).
    host_baud : int or None
        The host side's baud rate, if it should differ from the device's (a misconfigured
        port: the device hears garbage and the host cannot read the replies).
    frame_gap_bits : int
        The device's frame gap (see :class:`UARTAccelerator`), in bit times.
    vcd : str or None
        Write a waveform of the whole session to this file (closed by :meth:`close`).
    """

    def __init__(
        self,
        cfg: ArrayConfig,
        *,
        clk_hz: float,
        baud: int,
        timeout: float | None = 1.0,
        host_baud: int | None = None,
        frame_gap_bits: int = 40,
        vcd: str | None = None,
    ):
        self.cfg = cfg
        self.dut = UARTAccelerator(cfg, clk_hz=clk_hz, baud=baud, frame_gap=frame_gap_bits / baud)
        self.baudrate = host_baud or baud
        self.timeout = timeout
        self.port = f"simulated:{cfg.name}@{baud}"
        #: Cable state: when False, the host hears nothing from the device.
        self.connected = True
        #: Bytes the host side received with a low stop bit (dropped, like a real UART).
        self.framing_errors = 0
        self.bytes_written = 0
        self.bytes_read = 0
        self.is_open = True
        self._bit = 1.0 / self.baudrate
        self._now = 0.0
        self._tx_bits: deque[int] = deque()
        self._rx = bytearray()
        self._corrupt: set[int] = set()

        self.sim = Simulator(self.dut)
        self.sim.add_clock(1.0 / clk_hz)
        self.sim.add_testbench(self._host_tx, background=True)
        self.sim.add_testbench(self._host_rx, background=True)
        self._vcd = contextlib.ExitStack()
        if vcd:
            self._vcd.enter_context(self.sim.write_vcd(vcd))

    # -- the host side of the line, as two testbenches --------------------------------------

    async def _host_tx(self, ctx) -> None:
        """Drives rx one bit time per bit; the line idles high."""
        while True:
            ctx.set(self.dut.rx, self._tx_bits.popleft() if self._tx_bits else 1)
            await ctx.delay(self._bit)

    async def _host_rx(self, ctx) -> None:
        """Samples tx in the middle of each bit after a falling edge, like a UART."""
        tx = self.dut.tx
        while True:
            await ctx.negedge(tx)
            await ctx.delay(self._bit / 2)
            if ctx.get(tx):
                continue  # a glitch, not a start bit
            byte = 0
            for i in range(8):
                await ctx.delay(self._bit)
                byte |= ctx.get(tx) << i
            await ctx.delay(self._bit)
            if not self.connected:
                continue
            if ctx.get(tx):
                self._rx.append(byte)
            else:
                self.framing_errors += 1
                if not ctx.get(tx):
                    await ctx.posedge(tx)

    def _step(self) -> None:
        # One bit time per step: longer than any gap between simulator events (half a clock
        # period), as run_until needs, and short enough to stop soon after a byte arrives.
        self._now += self._bit
        self.sim.run_until(self._now)

    # -- the pyserial surface ----------------------------------------------------------

    def write(self, data: bytes) -> int:
        """Queue bytes for the line (sent as the simulation advances)."""
        self._check_open()
        for i, byte in enumerate(bytes(data)):
            stop = 0 if i in self._corrupt else 1
            self._tx_bits.extend([0, *((byte >> b) & 1 for b in range(8)), stop])
        self._corrupt.clear()
        self.bytes_written += len(data)
        return len(data)

    def flush(self) -> None:
        """Wait until every written byte is on the wire (like pyserial's ``flush``)."""
        self._check_open()
        while self._tx_bits:
            self._step()

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes: fewer if ``timeout`` simulated seconds pass first."""
        self._check_open()
        deadline = None if self.timeout is None else self._now + self.timeout
        while len(self._rx) < size and (deadline is None or self._now < deadline):
            self._step()
        out = bytes(self._rx[:size])
        del self._rx[:size]
        self.bytes_read += len(out)
        return out

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def reset_input_buffer(self) -> None:
        self._rx.clear()

    def close(self) -> None:
        if self.is_open:
            if not self._now:
                self._step()  # start the host testbenches, so none is left un-awaited
            self.is_open = False
            self._vcd.close()

    def __enter__(self) -> SimulatedSerial:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- fault injection and figures -------------------------------------------------------

    def inject_framing_error(self, at: int = 0) -> None:
        """Send byte ``at`` of the next :meth:`write` with a low stop bit."""
        self._corrupt.add(at)

    @property
    def now(self) -> float:
        """Simulated seconds so far."""
        return self._now

    @property
    def cycles(self) -> int:
        """Clock cycles simulated so far."""
        return round(self._now * self.dut.clk_hz)

    def _check_open(self) -> None:
        if not self.is_open:
            raise ValueError("the simulated serial port is closed")
