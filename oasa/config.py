"""The one configuration every part of oasa shares.

Widths and sizes live here and nowhere else: the RTL, the golden model, the quantizer and
the FPGA flow all take an :class:`ArrayConfig` and read derived numbers (product width,
accumulator range, ...) from its properties instead of recomputing them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from oasa.errors import InputError

__all__ = ["OVERFLOW_MODES", "ArrayConfig", "ConfigError"]

OVERFLOW_MODES = ("wrap", "saturate")

# Limits chosen so that every intermediate of the output stage, (acc + bias) * mult plus the
# rounding constant, stays exact in int64 (33 + 25 bits, plus 2**62 for a shift of 63).
_LIMITS = {
    "rows": (1, 64),
    "cols": (1, 64),
    "act_bits": (2, 8),
    "weight_bits": (2, 8),
    "acc_bits": (None, 32),  # lower bound is the product width, checked separately
    "bias_bits": (8, 32),
    "mult_bits": (1, 24),
    "shift_bits": (1, 6),
    "act_depth": (1, 1 << 20),
    "wgt_depth": (1, 1 << 20),
    "res_depth": (1, 1 << 20),
    "param_depth": (1, 1 << 16),
}


class ConfigError(InputError):
    """A configuration value is out of its allowed range."""


@dataclass(frozen=True)
class ArrayConfig:
    """Shape and arithmetic of the systolic array.

    Parameters
    ----------
    rows, cols:
        Array size R x C (1..64 each).
    act_bits, act_signed:
        Activation width N (2..8) and whether activations are two's complement.
    weight_bits:
        Weight width M (2..8); weights are always signed.
    acc_bits:
        Accumulator width P, from :attr:`product_bits` up to 32.
    overflow:
        ``"wrap"`` (two's complement) or ``"saturate"`` (clamp at every step).
    bias_bits, mult_bits, shift_bits:
        Output stage: signed bias width, unsigned requantization multiplier width, and the
        width of the right-shift amount (shifts 0 .. 2**shift_bits - 1).
    act_depth, wgt_depth, res_depth, param_depth:
        Accelerator buffers, in words: activations (R per word), weights (C per word),
        results (C results and flags per word), output-stage parameters (C channels per
        word). The defaults hold a 64 x 1024 x 64 layer on an 8 x 8 array.
    """

    rows: int = 8
    cols: int = 8
    act_bits: int = 4
    act_signed: bool = False
    weight_bits: int = 4
    acc_bits: int = 16
    overflow: str = "wrap"
    bias_bits: int = 32
    mult_bits: int = 16
    shift_bits: int = 6
    act_depth: int = 8192
    wgt_depth: int = 8192
    res_depth: int = 4096
    param_depth: int = 64

    def __post_init__(self) -> None:
        for name, (lo, hi) in _LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            if lo is not None and not lo <= value <= hi:
                raise ConfigError(f"{name}={value} is out of range: allowed {lo}..{hi}")
        if not isinstance(self.act_signed, bool):
            raise ConfigError(f"act_signed must be True or False, got {self.act_signed!r}")
        if self.overflow not in OVERFLOW_MODES:
            raise ConfigError(
                f"overflow={self.overflow!r} is not a mode: allowed {', '.join(OVERFLOW_MODES)}"
            )
        lo_p, hi_p = self.product_bits, _LIMITS["acc_bits"][1]
        if not lo_p <= self.acc_bits <= hi_p:
            raise ConfigError(
                f"acc_bits={self.acc_bits} is out of range: allowed {lo_p}..{hi_p} "
                f"(the product of {self.act_bits}-bit activations and {self.weight_bits}-bit "
                f"weights needs {lo_p} bits)"
            )

    # -- value ranges -------------------------------------------------------------------

    @property
    def act_min(self) -> int:
        return -(1 << (self.act_bits - 1)) if self.act_signed else 0

    @property
    def act_max(self) -> int:
        return (1 << (self.act_bits - 1)) - 1 if self.act_signed else (1 << self.act_bits) - 1

    @property
    def weight_min(self) -> int:
        return -(1 << (self.weight_bits - 1))

    @property
    def weight_max(self) -> int:
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def acc_min(self) -> int:
        return -(1 << (self.acc_bits - 1))

    @property
    def acc_max(self) -> int:
        return (1 << (self.acc_bits - 1)) - 1

    @property
    def product_min(self) -> int:
        return min(
            a * w for a in (self.act_min, self.act_max) for w in (self.weight_min, self.weight_max)
        )

    @property
    def product_max(self) -> int:
        return max(
            a * w for a in (self.act_min, self.act_max) for w in (self.weight_min, self.weight_max)
        )

    @property
    def product_bits(self) -> int:
        """Smallest signed width that holds every product x * w exactly.

        This is N + M for both unsigned and signed activations (e.g. 4 x 4: -120..105
        unsigned, -56..64 signed, both within signed 8 bits); it is also the narrowest
        legal accumulator, since a one-term dot product must never overflow.
        """
        bits = 1
        while not (-(1 << (bits - 1)) <= self.product_min and self.product_max < (1 << (bits - 1))):
            bits += 1
        return bits

    @property
    def shift_max(self) -> int:
        return (1 << self.shift_bits) - 1

    @property
    def bias_min(self) -> int:
        return -(1 << (self.bias_bits - 1))

    @property
    def bias_max(self) -> int:
        return (1 << (self.bias_bits - 1)) - 1

    @property
    def mult_max(self) -> int:
        return (1 << self.mult_bits) - 1

    # -- identity and transport -----------------------------------------------------------

    @property
    def name(self) -> str:
        """Short id such as ``r8c8_a4w4p16_wrap`` for test ids and build-cache folders."""
        sign = "s" if self.act_signed else ""
        return (
            f"r{self.rows}c{self.cols}_a{self.act_bits}{sign}w{self.weight_bits}"
            f"p{self.acc_bits}_{self.overflow}"
        )

    def replace(self, **changes: Any) -> ArrayConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ArrayConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration field(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> ArrayConfig:
        return cls.from_dict(json.loads(text))

    def describe(self) -> str:
        """One human-readable line for CLI output."""
        sign = "signed" if self.act_signed else "unsigned"
        return (
            f"{self.rows}x{self.cols} array, {self.act_bits}-bit {sign} activations x "
            f"{self.weight_bits}-bit signed weights, {self.acc_bits}-bit accumulators "
            f"({self.overflow}), product {self.product_bits} bits"
        )
