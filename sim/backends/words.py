"""Pack buffer words into bits and back, many words at once.

A buffer word is a bit-field layout (``oasa.hw.layouts``): lanes of a fixed width, laid
out from bit 0 upwards, struct members one after another. Here a word is described as a
list of (lanes, width, signed) fields in that order, and converted between (n, lanes)
integer arrays and (n, chunks) little-endian uint32 arrays — the layout Verilator uses for
wide signals — or Python integers for simulators that take whole values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from oasa.config import ArrayConfig

__all__ = ["Field", "WordFormat", "act_word", "param_word", "result_word", "wgt_word"]


@dataclass(frozen=True)
class Field:
    lanes: int
    width: int
    signed: bool


@dataclass(frozen=True)
class WordFormat:
    """The fields of one buffer word, least significant first."""

    fields: tuple[Field, ...]

    @property
    def bits(self) -> int:
        return sum(f.lanes * f.width for f in self.fields)

    @property
    def chunks(self) -> int:
        """32-bit chunks per word."""
        return max(1, -(-self.bits // 32))

    def pack(self, *values: NDArray[np.int64]) -> NDArray[np.uint32]:
        """One (n, lanes) array per field -> (n, chunks) uint32."""
        n = values[0].shape[0]
        bits = np.zeros((n, self.chunks * 32), dtype=np.uint8)
        offset = 0
        for f, v in zip(self.fields, values, strict=True):
            v = np.asarray(v, dtype=np.int64).reshape(n, f.lanes)
            b = (v[:, :, None] >> np.arange(f.width)) & 1  # two's complement bits
            bits[:, offset : offset + f.lanes * f.width] = b.reshape(n, -1)
            offset += f.lanes * f.width
        return np.packbits(bits, axis=1, bitorder="little").view("<u4").copy()

    def unpack(self, words: NDArray[np.uint32]) -> list[NDArray[np.int64]]:
        """(n, chunks) uint32 -> one (n, lanes) int64 array per field."""
        words = np.ascontiguousarray(words, dtype="<u4")
        bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little").astype(np.int64)
        out, offset = [], 0
        for f in self.fields:
            b = bits[:, offset : offset + f.lanes * f.width].reshape(-1, f.lanes, f.width)
            v = (b << np.arange(f.width)).sum(axis=2)
            if f.signed:
                v = np.where(v >= 1 << (f.width - 1), v - (1 << f.width), v)
            out.append(v)
            offset += f.lanes * f.width
        return out

    def to_ints(self, *values: NDArray[np.int64]) -> list[int]:
        """Words as Python integers (for simulators that set whole signals)."""
        packed = self.pack(*values)
        return [int.from_bytes(row.tobytes(), "little") for row in packed]

    def from_ints(self, ints: list[int]) -> list[NDArray[np.int64]]:
        raw = b"".join(int(i).to_bytes(self.chunks * 4, "little") for i in ints)
        return self.unpack(np.frombuffer(raw, dtype="<u4").reshape(len(ints), self.chunks))


def act_word(cfg: ArrayConfig) -> WordFormat:
    return WordFormat((Field(cfg.rows, cfg.act_bits, cfg.act_signed),))


def wgt_word(cfg: ArrayConfig) -> WordFormat:
    return WordFormat((Field(cfg.cols, cfg.weight_bits, True),))


def param_word(cfg: ArrayConfig) -> WordFormat:
    return WordFormat(
        (
            Field(cfg.cols, cfg.bias_bits, True),
            Field(cfg.cols, cfg.mult_bits, False),
            Field(cfg.cols, cfg.shift_bits, False),
        )
    )


def result_word(cfg: ArrayConfig) -> WordFormat:
    return WordFormat((Field(cfg.cols, cfg.acc_bits, True), Field(cfg.cols, 1, False)))
