"""The UART host-link protocol, written down once for the gateware and the host driver.

Every command is one frame; the device answers every frame, well-formed or not, with
one reply, so a host never waits forever::

    command  SYNC(0x5A) | header (8 bytes) | CRC-8(header) [| payload | CRC-8(payload)]
    header   op (1) | arg (1) | word (4, LE) | count (2, LE)
    reply    status (1) [| body] | CRC-8(status and body)       (errors carry no body)

A payload follows only ``WRITE_BUF``: ``count`` buffer words of ``word_bytes`` bytes
each, little-endian, in the bit layout of :mod:`oasa.sim.backends.words` (the same as
:mod:`oasa.hw.layouts`). The header is checked before anything is done, so a corrupted
header never writes a register or a buffer; a payload is written as it arrives and its
checksum is checked at the end (an error reply means: send it again).

Errors found before a frame's end (a bad header checksum, an unknown opcode, a buffer
range that does not fit, a framing error on the line, a stray byte outside a frame) are
answered once the line has been quiet for the device's frame gap, so the rest of the
host's frame is swallowed and the next command starts clean. A frame that stops half way
is answered with ``TRUNCATED`` after the same gap.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from amaranth.lib import data

from oasa.config import ArrayConfig
from oasa.hw.registers import CONFIG_LAYOUT, REGISTERS, config_from_word, config_word
from oasa.sim.backends.words import WordFormat, act_word, param_word, result_word, wgt_word

__all__ = [
    "CRC_POLY",
    "HEADER_BYTES",
    "HEADER_LAYOUT",
    "IDENTIFY_BYTES",
    "PROTOCOL_VERSION",
    "SYNC",
    "Buffer",
    "Identity",
    "Op",
    "Status",
    "buffer_depth",
    "command",
    "crc8",
    "identify_body",
    "readable_registers",
    "reply",
    "word_bytes",
    "word_format",
    "writable_registers",
]

#: Bumped whenever a frame format or the CONFIG word (``oasa.hw.registers.CONFIG_LAYOUT``)
#: changes; the identify reply carries it, and a host refuses a board of another version.
PROTOCOL_VERSION = 3
#: First byte of every command frame.
SYNC = 0x5A
#: CRC-8 polynomial x^8 + x^2 + x + 1 (initial value 0, no reflection, no final XOR), so
#: the CRC of a message followed by its own CRC is 0.
CRC_POLY = 0x07


class Op(enum.IntEnum):
    """Command opcodes (header byte 0)."""

    PING = 0x01  #: identify the build: body is :func:`identify_body`
    WRITE_REG = 0x02  #: arg = register address, word = value
    READ_REG = 0x03  #: arg = register address; body is the 32-bit value, LE
    WRITE_BUF = 0x04  #: arg = buffer, word = first address, count = words; payload follows
    READ_BUF = 0x05  #: arg = buffer (only RES), word = first address, count = words


class Status(enum.IntEnum):
    """Reply status (reply byte 0)."""

    OK = 0x00
    BAD_OPCODE = 0x01  #: unknown opcode, or a byte outside a frame
    BAD_ARGUMENT = 0x02  #: no such register or buffer, or words out of the buffer
    FRAMING = 0x03  #: the device's UART saw a byte with a low stop bit
    CHECKSUM = 0x04  #: header or payload CRC wrong
    TRUNCATED = 0x05  #: the line went quiet before the frame was complete
    BUSY = 0x06  #: buffer access while a layer runs


class Buffer(enum.IntEnum):
    """Buffer ids (header ``arg`` of the buffer commands)."""

    ACT = 0
    WGT = 1
    PARAM = 2
    RES = 3


#: The 8 header bytes as the gateware sees them (little-endian, first byte at bit 0).
HEADER_LAYOUT = data.StructLayout({"op": 8, "arg": 8, "word": 32, "count": 16})
HEADER_BYTES = 8


def readable_registers() -> tuple[int, ...]:
    """Register addresses a READ_REG may name (from :data:`oasa.hw.registers.REGISTERS`)."""
    return tuple(r.addr for r in REGISTERS if "r" in r.access)


def writable_registers() -> tuple[int, ...]:
    """Register addresses a WRITE_REG may name."""
    return tuple(r.addr for r in REGISTERS if "w" in r.access)


def crc8(data_: bytes | bytearray, crc: int = 0) -> int:
    """CRC-8 with :data:`CRC_POLY`, MSB first, continuing from ``crc``."""
    for byte in data_:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def word_format(cfg: ArrayConfig, buffer: Buffer) -> WordFormat:
    """The bit layout of one word of ``buffer``."""
    return {
        Buffer.ACT: act_word,
        Buffer.WGT: wgt_word,
        Buffer.PARAM: param_word,
        Buffer.RES: result_word,
    }[buffer](cfg)


def word_bytes(cfg: ArrayConfig, buffer: Buffer) -> int:
    """Bytes per word of ``buffer`` on the wire: ceil(bits / 8)."""
    return math.ceil(word_format(cfg, buffer).bits / 8)


def buffer_depth(cfg: ArrayConfig, buffer: Buffer) -> int:
    return getattr(cfg, f"{buffer.name.lower()}_depth")


def command(op: Op, arg: int = 0, word: int = 0, count: int = 0, payload: bytes = b"") -> bytes:
    """One command frame (see the module docstring)."""
    header = bytes([op, arg]) + word.to_bytes(4, "little") + count.to_bytes(2, "little")
    frame = bytes([SYNC]) + header + bytes([crc8(header)])
    if payload:
        frame += payload + bytes([crc8(payload)])
    return frame


def reply(status: Status, body: bytes = b"") -> bytes:
    """One reply frame, as the device sends it (used by tests and as the reference)."""
    msg = bytes([status]) + body
    return msg + bytes([crc8(msg)])


#: Bytes of the identify body: version, CONFIG, four buffer depths, three widths.
IDENTIFY_BYTES = 1 + 4 + 4 * 3 + 3


@dataclass(frozen=True)
class Identity:
    """What a board build says about itself in reply to PING."""

    version: int
    config: int  # the CONFIG register
    act_depth: int
    wgt_depth: int
    param_depth: int
    res_depth: int
    bias_bits: int
    mult_bits: int
    shift_bits: int

    @classmethod
    def of(cls, cfg: ArrayConfig) -> Identity:
        """The identity a build of ``cfg`` reports."""
        return cls(
            PROTOCOL_VERSION,
            config_word(cfg),
            cfg.act_depth,
            cfg.wgt_depth,
            cfg.param_depth,
            cfg.res_depth,
            cfg.bias_bits,
            cfg.mult_bits,
            cfg.shift_bits,
        )

    def to_bytes(self) -> bytes:
        depths = (self.act_depth, self.wgt_depth, self.param_depth, self.res_depth)
        return (
            bytes([self.version])
            + self.config.to_bytes(4, "little")
            + b"".join(d.to_bytes(3, "little") for d in depths)
            + bytes([self.bias_bits, self.mult_bits, self.shift_bits])
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> Identity:
        if len(body) != IDENTIFY_BYTES:
            raise ValueError(f"identify body has {len(body)} bytes, expected {IDENTIFY_BYTES}")
        d = [int.from_bytes(body[5 + 3 * i : 8 + 3 * i], "little") for i in range(4)]
        return cls(body[0], int.from_bytes(body[1:5], "little"), *d, *body[17:20])

    def to_config(self) -> ArrayConfig:
        """The configuration of the build (the inverse of :meth:`of`)."""
        return config_from_word(
            self.config,
            ArrayConfig(
                act_depth=self.act_depth,
                wgt_depth=self.wgt_depth,
                param_depth=self.param_depth,
                res_depth=self.res_depth,
                bias_bits=self.bias_bits,
                mult_bits=self.mult_bits,
                shift_bits=self.shift_bits,
            ),
        )

    def describe(self) -> str:
        """One line, e.g. ``2x2 array, a4 w4 p10 wrap, buffers act 64 wgt 64 ...``."""
        c = data.Const(CONFIG_LAYOUT, self.config)
        sign = "s" if c.act_signed else ""
        mode = "saturate" if c.saturate else "wrap"
        return (
            f"{c.rows}x{c.cols} array, a{c.act_bits}{sign} w{c.weight_bits} "
            f"p{c.acc_bits} {mode}, buffers act {self.act_depth} wgt {self.wgt_depth} "
            f"param {self.param_depth} res {self.res_depth}, output stage bias "
            f"{self.bias_bits} mult {self.mult_bits} shift {self.shift_bits} bits, "
            f"protocol v{self.version}"
        )


def identify_body(cfg: ArrayConfig) -> bytes:
    """The body of the PING reply of a build of ``cfg``."""
    return Identity.of(cfg).to_bytes()
