"""Pack Python values into the flat Verilog vectors of Amaranth layouts, and back.

Amaranth flattens a stream payload (a :class:`~amaranth.lib.data.Layout`) into one port
``<member>__payload``. The codec here walks the very layout object the RTL uses
(:mod:`oasa.hw.layouts`), so the benches never restate an offset or a width.

A struct becomes a ``dict``, an array a ``list``, a leaf an ``int`` (sign-extended for
signed shapes).
"""

from __future__ import annotations

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["Codec", "codec"]


class Codec:
    """Encoder/decoder for one shape; build with :func:`codec`."""

    def __init__(self, shape):
        self.shape = shape
        if isinstance(shape, data.Layout):
            self.width = shape.size
            self.fields = [(name, f.offset, Codec(f.shape)) for name, f in shape]
            self.is_array = isinstance(shape, data.ArrayLayout)
            self.signed = False
        else:
            s = Shape.cast(shape)
            self.width = s.width
            self.signed = s.signed
            self.fields = None
            self.is_array = False
            if self.signed:
                self.lo, self.hi = -(1 << (s.width - 1)), (1 << (s.width - 1)) - 1
            else:
                self.lo, self.hi = 0, (1 << s.width) - 1
        self.mask = (1 << self.width) - 1

    def encode(self, value) -> int:
        """The raw bits of ``value``; raises ``ValueError`` if a leaf does not fit."""
        if self.fields is None:
            v = int(value)
            if not self.lo <= v <= self.hi:
                raise ValueError(f"{v} does not fit {self.shape} ({self.lo}..{self.hi})")
            return v & self.mask
        raw = 0
        if self.is_array:
            if len(value) != len(self.fields):
                raise ValueError(f"expected {len(self.fields)} elements, got {len(value)}")
            for (_, offset, sub), v in zip(self.fields, value, strict=True):
                raw |= sub.encode(v) << offset
        else:
            for name, offset, sub in self.fields:
                raw |= sub.encode(value[name]) << offset
        return raw

    def decode(self, raw: int):
        """The Python value of raw bits (an ``int``, ``list`` or ``dict``)."""
        raw = int(raw) & self.mask
        if self.fields is None:
            if self.signed and raw >> (self.width - 1):
                return raw - (1 << self.width)
            return raw
        if self.is_array:
            return [sub.decode(raw >> offset) for _, offset, sub in self.fields]
        return {name: sub.decode(raw >> offset) for name, offset, sub in self.fields}


def codec(shape) -> Codec:
    """A :class:`Codec` for an Amaranth shape or layout."""
    return Codec(shape)
