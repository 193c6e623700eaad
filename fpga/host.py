"""The host driver of the UART link: runs layers on a board with the backends' layer API.

:class:`BoardAccelerator` speaks :mod:`oasa.fpga.protocol` over a pyserial port (or any
object with the same ``read``/``write``/``timeout`` surface, such as
:class:`~oasa.fpga.simserial.SimulatedSerial`), and offers what
:class:`~oasa.sim.backends.verilator_accel.VerilatorAccelerator` offers: ``run(image)``
returning an :class:`~oasa.sim.backends.amaranth_accel.AccelRun`, and ``close()``.
Every failure is one exception with a one-line message that says what to check.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oasa.config import ArrayConfig
from oasa.errors import InputError, ToolError
from oasa.fpga.protocol import (
    IDENTIFY_BYTES,
    Buffer,
    Identity,
    Op,
    Status,
    command,
    crc8,
    word_bytes,
    word_format,
)
from oasa.hw.registers import REG
from oasa.sim.accel_image import AccelRun, LayerImage
from oasa.sim.backends import PerConfigSession

__all__ = [
    "BoardAccelerator",
    "BoardBackend",
    "ConfigMismatchError",
    "LinkError",
    "LinkTimeout",
    "PortError",
    "decode_words",
    "encode_words",
    "probe",
]

#: Most payload bytes in one frame, so a frame takes well under a second even at 9600 baud
#: and an error costs little to resend.
MAX_FRAME_BYTES = 1024
#: STATUS bits.
_BUSY, _DONE = 1, 2


class LinkError(ToolError):
    """The board answered with an error, or its answer was damaged."""


class LinkTimeout(LinkError):
    """The board did not answer in time."""


class PortError(LinkError, InputError):
    """The serial port could not be opened: the user names another (exit 2)."""

    exit_code = InputError.exit_code


class ConfigMismatchError(LinkError, InputError):
    """The board runs a build of another configuration: build or pick the right one
    (exit 2)."""

    exit_code = InputError.exit_code


def encode_words(cfg: ArrayConfig, buffer: Buffer, *values: NDArray[np.int64]) -> bytes:
    """Buffer words as the wire carries them: ``word_bytes`` little-endian bytes each."""
    packed = word_format(cfg, buffer).pack(*values)
    n = packed.shape[0]
    return packed.view(np.uint8).reshape(n, -1)[:, : word_bytes(cfg, buffer)].tobytes()


def decode_words(cfg: ArrayConfig, buffer: Buffer, raw: bytes) -> list[NDArray[np.int64]]:
    """The inverse of :func:`encode_words`: one (n, lanes) array per field."""
    fmt = word_format(cfg, buffer)
    nb = word_bytes(cfg, buffer)
    n = len(raw) // nb
    full = np.zeros((n, fmt.chunks * 4), dtype=np.uint8)
    full[:, :nb] = np.frombuffer(raw, dtype=np.uint8).reshape(n, nb)
    return fmt.unpack(full.view("<u4"))


_STATUS_ADVICE = {
    Status.BAD_OPCODE: "it did not understand the command: does the bitstream speak this "
    "protocol version? (reload the oasa bitstream)",
    Status.BAD_ARGUMENT: "a register or buffer range is out of bounds for this build",
    Status.FRAMING: "its UART saw a framing error: check the baud rate ({baud}) and the "
    "cable, then retry",
    Status.CHECKSUM: "the command arrived with a bad checksum (line noise): retry, or "
    "lower the baud rate",
    Status.TRUNCATED: "the command arrived incomplete (bytes lost on the line): retry",
    Status.BUSY: "a layer is still running",
}


def probe(
    port: str | os.PathLike | Any, *, baud: int = 115200, timeout: float = 2.0
) -> ArrayConfig:
    """The configuration of the build running on the board at ``port`` (from PING), so a
    host can use the board without being told how it was built."""
    board = BoardAccelerator(None, port, baud=baud, timeout=timeout)
    try:
        return board.identity.to_config()
    finally:
        board.close()


class BoardAccelerator:
    """An oasa bitstream on a board, behind its UART; layers run back to back.

    Parameters
    ----------
    cfg : ArrayConfig or None
        The configuration the board was built for; checked against the board on open.
        None takes the board's own (see :func:`probe`).
    port : str or serial-like
        A serial device path (opened with pyserial), or an open object with pyserial's
        ``read(n)``, ``write(b)``, ``reset_input_buffer()``, ``close()`` and ``timeout``
        (and optionally ``flush()`` and ``baudrate``).
    baud : int
        Baud rate, for a path (a serial-like object's own ``baudrate`` wins).
    timeout : float
        Seconds to wait for a reply to start, beyond its own transmission time.
    """

    def __init__(
        self,
        cfg: ArrayConfig | None,
        port: str | os.PathLike | Any,
        *,
        baud: int = 115200,
        timeout: float = 2.0,
    ):
        self.cfg = cfg
        self.timeout = timeout
        self._owned = isinstance(port, (str, os.PathLike))
        if self._owned:
            self.port = os.fspath(port)
            self.baud = baud
            self._ser = _open_serial(self.port, baud, timeout)
        else:
            self._ser = port
            self.port = str(getattr(port, "port", None) or type(port).__name__)
            self.baud = int(getattr(port, "baudrate", None) or baud)
        #: Bytes sent and received so far (frames, payloads, checksums).
        self.bytes_sent = 0
        self.bytes_received = 0
        try:
            self.identity = self.ping()
            if cfg is None:
                self.cfg = cfg = self.identity.to_config()
            want = Identity.of(cfg)
            if self.identity != want:
                raise ConfigMismatchError(
                    f"the board on {self.port} runs a different build: {self.identity.describe()}; "
                    f"expected {want.describe()}: load the bitstream built for this "
                    f"configuration or pass the board's configuration"
                )
        except BaseException:
            self.close()
            raise

    # -- context manager -------------------------------------------------------------------

    def close(self) -> None:
        """Close the port if this object opened it (a passed-in port stays the caller's)."""
        if self._owned and self._ser is not None:
            self._ser.close()
        self._ser = None

    def __enter__(self) -> BoardAccelerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one command, one reply -------------------------------------------------------------

    def _read(self, n: int, what: str) -> bytes:
        got = self._ser.read(n)
        self.bytes_received += len(got)
        if len(got) < n:
            if not got:
                raise LinkTimeout(
                    f"no reply from the board on {self.port} within {self._ser.timeout:.3g} s "
                    f"after {what}: check the port, the baud rate ({self.baud}) and that "
                    f"the oasa bitstream is loaded"
                )
            raise LinkTimeout(
                f"the reply to {what} stopped after {len(got)} of {n} bytes (board on "
                f"{self.port}): check the baud rate ({self.baud}) and the cable, then retry"
            )
        return got

    def _transact(self, what: str, frame: bytes, body: int) -> bytes:
        """Send one frame and return the body of its OK reply (``body`` bytes)."""
        if self._ser is None:
            raise LinkError(f"the link to {self.port} is closed")
        self._ser.reset_input_buffer()  # a late reply to an earlier, failed command
        self._ser.write(frame)
        flush = getattr(self._ser, "flush", None)
        if flush is not None:
            flush()  # the timeout below counts from the end of the frame
        self.bytes_sent += len(frame)
        # A reply takes its own transmission time on top of the board's latency.
        self._ser.timeout = self.timeout + 10 * (body + 2) / self.baud
        status = self._read(1, what)
        if status[0] != Status.OK:
            check = self._read(1, what)
            if crc8(status + check) != 0 or status[0] not in Status.__members__.values():
                raise LinkError(
                    f"garbled reply to {what} from the board on {self.port}: check the "
                    f"baud rate ({self.baud}), then retry"
                )
            s = Status(status[0])
            advice = _STATUS_ADVICE[s].format(baud=self.baud)
            raise LinkError(f"the board on {self.port} refused {what} ({s.name}): {advice}")
        rest = self._read(body + 1, what)
        if crc8(status + rest) != 0:
            raise LinkError(
                f"the reply to {what} from the board on {self.port} failed its checksum: "
                f"line noise or a baud-rate mismatch ({self.baud}); retry or lower the baud rate"
            )
        return rest[:-1]

    # -- commands --------------------------------------------------------------------------

    def ping(self) -> Identity:
        """Ask the board which build it runs."""
        return Identity.from_bytes(self._transact("PING", command(Op.PING), IDENTIFY_BYTES))

    def write_reg(self, name: str, value: int) -> None:
        self._transact(f"WRITE_REG {name}", command(Op.WRITE_REG, REG[name], value & 0xFFFFFFFF), 0)

    def read_reg(self, name: str) -> int:
        body = self._transact(f"READ_REG {name}", command(Op.READ_REG, REG[name]), 4)
        return int.from_bytes(body, "little")

    def write_buffer(self, buffer: Buffer, base: int, raw: bytes) -> None:
        """Write encoded words (see :func:`encode_words`) from word ``base`` on."""
        nb = word_bytes(self.cfg, buffer)
        per = max(1, min(0xFFFF, MAX_FRAME_BYTES // nb))
        n = len(raw) // nb
        for i in range(0, n, per):
            count = min(per, n - i)
            frame = command(Op.WRITE_BUF, buffer, base + i, count, raw[i * nb : (i + count) * nb])
            self._transact(f"WRITE_BUF {buffer.name} [{base + i}, +{count})", frame, 0)

    def read_buffer(self, buffer: Buffer, base: int, n: int) -> bytes:
        """Read ``n`` encoded words from word ``base`` on (only the result buffer)."""
        nb = word_bytes(self.cfg, buffer)
        per = max(1, min(0xFFFF, MAX_FRAME_BYTES // nb))
        out = bytearray()
        for i in range(0, n, per):
            count = min(per, n - i)
            frame = command(Op.READ_BUF, buffer, base + i, count)
            out += self._transact(
                f"READ_BUF {buffer.name} [{base + i}, +{count})", frame, count * nb
            )
        return bytes(out)

    # -- a layer ---------------------------------------------------------------------------

    def run(self, img: LayerImage) -> AccelRun:
        """Load one layer, run it to done, read the results back.

        ``wall_cycles`` is the CYCLES register too: the host cannot count board cycles.
        """
        if img.cfg != self.cfg:
            raise ValueError("the layer was laid out for a different configuration")
        r = img.registers
        cfg = self.cfg
        self.write_buffer(Buffer.ACT, r["ACT_BASE"], encode_words(cfg, Buffer.ACT, img.act_words))
        self.write_buffer(Buffer.WGT, r["WGT_BASE"], encode_words(cfg, Buffer.WGT, img.wgt_words))
        self.write_buffer(
            Buffer.PARAM,
            r["PARAM_BASE"],
            encode_words(cfg, Buffer.PARAM, img.bias, img.mult, img.shift),
        )
        for name, value in r.items():
            self.write_reg(name, value)
        self.write_reg("CTRL", 1)
        # A layer takes microseconds to milliseconds, a poll about a millisecond at
        # 115200 baud: give up after `timeout` seconds' worth of polls.
        polls = max(4, math.ceil(self.timeout * self.baud / (10 * 16)))
        for _ in range(polls):
            status = self.read_reg("STATUS")
            if status & _DONE and not status & _BUSY:
                break
        else:
            raise LinkTimeout(
                f"the layer ({img.m} x {img.k} x {img.n}) did not finish within {polls} status "
                f"polls on {self.port}: the bitstream may be hung; reset the board"
            )
        raw = self.read_buffer(Buffer.RES, r["RES_BASE"], img.res_words)
        values, flags = decode_words(cfg, Buffer.RES, raw)
        out, ovf = img.decode(values, flags.astype(bool))
        cycles = self.read_reg("CYCLES")
        return AccelRun(out, ovf, cycles, self.read_reg("FLAGGED"), cycles)


def _open_serial(port: str, baud: int, timeout: float):
    try:
        import serial
    except ImportError:
        raise PortError(
            "the board backend needs pyserial: pip install 'oasa[fpga]' (or pyserial)"
        ) from None
    try:
        return serial.Serial(port, baud, timeout=timeout)
    except (serial.SerialException, ValueError) as e:
        raise PortError(
            f"cannot open serial port {port} at {baud} baud ({e}): check that the board "
            f"is plugged in and the port name (the iCEBreaker's UART is usually the "
            f"second FTDI port, /dev/ttyUSB1)"
        ) from None


class BoardBackend:
    """An oasa bitstream on a board behind its UART (registered as the ``board`` backend
    through the ``oasa.backends`` entry-point group)."""

    name = "board"
    needs_port = True
    waveform = False

    def prepare(self, configs: Sequence[ArrayConfig], *, trace: bool = False) -> None:
        return None

    def open(
        self, stack: ExitStack, *, vcd: str | None = None, port: Any = None, baud: int = 115200
    ) -> PerConfigSession:
        # One board holds one build: a second configuration fails its identity check.
        return PerConfigSession(stack, lambda cfg: BoardAccelerator(cfg, port, baud=baud))
