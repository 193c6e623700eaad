"""The accelerator behind a UART: what a board top instantiates."""

from collections.abc import Callable

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from oasa.config import ArrayConfig
from oasa.fpga.hostlink import HostLinkBridge
from oasa.fpga.uart import UARTReceiver, UARTTransmitter, baud_divisor
from oasa.hw.accelerator import Accelerator

__all__ = ["DEFAULT_FRAME_GAP", "UARTAccelerator"]

#: Default quiet time (seconds) that ends a broken frame. Long enough that USB-serial
#: bridges, which send in packets with gaps of about a millisecond, never split a good
#: frame; short enough that an error reply comes back well within a host's timeout.
DEFAULT_FRAME_GAP = 0.01
#: A frame gap shorter than a few bytes would split back-to-back bytes.
MIN_GAP_BITS = 30


class UARTAccelerator(wiring.Component):
    """The :class:`~oasa.hw.accelerator.Accelerator`, a UART and the host-link bridge.

    A host on the serial line loads buffers, programs registers, starts layers and reads
    results with the frames of :mod:`oasa.fpga.protocol`.

    Parameters
    ----------
    cfg : ArrayConfig
    clk_hz : float
        The clock the design runs at.
    baud : int
        Serial baud rate; ``clk_hz / baud`` must be at least 4 and within 2 % of an integer
        divider (see :func:`~oasa.fpga.uart.baud_divisor`).
    frame_gap : float
        Quiet time in seconds that ends a broken frame (at least 30 bit times).
    accelerator : callable
        Builds the accelerator: ``accelerator(cfg)`` (FPGA builds choose how its PEs
        multiply, see :func:`oasa.fpga.multipliers.accelerator_factory`).

    Members
    -------
    rx : In(1)           serial data from the host (idle high)
    tx : Out(1)          serial data to the host (idle high)
    busy, done : Out(1)  the accelerator's STATUS bits, for LEDs
    link_error : Out(1)  the last command was answered with an error, for an LED
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    busy: Out(1)
    done: Out(1)
    link_error: Out(1)

    def __init__(
        self,
        cfg: ArrayConfig,
        *,
        clk_hz: float,
        baud: int,
        frame_gap: float = DEFAULT_FRAME_GAP,
        accelerator: Callable[[ArrayConfig], Accelerator] = Accelerator,
    ):
        self.cfg = cfg
        self.accelerator = accelerator
        self.clk_hz = clk_hz
        self.baud = baud
        self.divisor = baud_divisor(clk_hz, baud)
        self.gap_cycles = max(round(frame_gap * clk_hz), MIN_GAP_BITS * self.divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.accel = accel = self.accelerator(self.cfg)
        m.submodules.uart_rx = rx = UARTReceiver(self.divisor)
        m.submodules.uart_tx = tx = UARTTransmitter(self.divisor)
        m.submodules.bridge = bridge = HostLinkBridge(self.cfg, gap_cycles=self.gap_cycles)

        wiring.connect(m, rx.o_data, bridge.i_data)
        wiring.connect(m, bridge.o_data, tx.i_data)
        for name in ("reg", "host_act", "host_wgt", "host_param", "host_res"):
            wiring.connect(m, getattr(bridge, name), getattr(accel, name))
        m.d.comb += [
            rx.rx.eq(self.rx),
            self.tx.eq(tx.tx),
            bridge.framing_error.eq(rx.framing_error),
            bridge.busy.eq(accel.busy),
            self.busy.eq(accel.busy),
            self.done.eq(accel.done),
            self.link_error.eq(bridge.link_error),
        ]
        return m
