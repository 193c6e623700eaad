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

__all__ = [
    "BUFFERS",
    "CHOICES",
    "DATAFLOWS",
    "FIELD_GROUPS",
    "LIMITS",
    "OVERFLOW_MODES",
    "ArrayConfig",
    "ConfigError",
    "ConfigField",
]

OVERFLOW_MODES = ("wrap", "saturate")

#: How the array moves data: ``os`` output-stationary (each PE keeps one output's
#: accumulator while activations and weights stream past), ``ws`` weight-stationary (each
#: PE keeps one weight while activations stream across and partial sums flow down). Both
#: compute the same results and flags (DESIGN.md section 2); they differ in cycles and cost.
DATAFLOWS = ("os", "ws")

#: The fields that take one of a few words, and the words.
CHOICES = {"overflow": OVERFLOW_MODES, "dataflow": DATAFLOWS}

# Limits chosen so that every intermediate of the output stage, (acc + bias) * mult plus the
# rounding constant, stays exact in int64 (33 + 25 bits, plus 2**62 for a shift of 63).
LIMITS = {
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


def _field(default: Any, group: str, help: str) -> Any:
    """A configuration field; ``group`` and ``help`` describe it to the command line
    (:mod:`oasa.cli.options` builds every array option from these)."""
    return dataclasses.field(default=default, metadata={"group": group, "help": help})


#: The accelerator's buffers, by the prefix of their ``*_depth`` fields.
BUFFERS = ("act", "wgt", "param", "res")

#: The field groups, in the order the command line shows them.
FIELD_GROUPS = ("shape", "arithmetic", "stage", "buffers")


class ConfigField:
    """A read-only attribute that reads the field of the same name from ``self.cfg``: for
    objects that carry an :class:`ArrayConfig` (a network layer, a quantization request)
    and are read as if the field were theirs, without declaring it again."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return self if obj is None else getattr(obj.cfg, self.name)


class ConfigError(InputError):
    """A configuration value is out of its allowed range."""


@dataclass(frozen=True)
class ArrayConfig:
    """Shape and arithmetic of the systolic array.

    Parameters
    ----------
    rows, cols:
        Array size R x C (1..64 each).
    dataflow:
        ``"os"`` (output-stationary, the default) or ``"ws"`` (weight-stationary); see
        :data:`DATAFLOWS`.
    preload:
        Whether a call can start its dot products from the partial sums and flags an
        earlier call left in the result buffer (MODE bit 2), which lets a layer whose K
        does not fit the buffers run as several calls. On the output-stationary array it
        costs a register chain (P + 1 flip-flops per PE, plus the columns' skew) and the
        sequencer's reader; small FPGAs turn it off (``--no-preload``, the iCEBreaker's
        default) and run only layers whose K fits.
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

    rows: int = _field(8, "shape", "array rows R")
    cols: int = _field(8, "shape", "array columns C")
    dataflow: str = _field(
        "os", "shape", "dataflow: os (output-stationary) or ws (weight-stationary)"
    )
    preload: bool = _field(
        True,
        "shape",
        "initial partial sums per output, so a layer's K can be cut into calls",
    )
    act_bits: int = _field(4, "arithmetic", "activation bits N")
    act_signed: bool = _field(False, "arithmetic", "signed activations (default unsigned)")
    weight_bits: int = _field(4, "arithmetic", "weight bits M (weights are signed)")
    acc_bits: int = _field(16, "arithmetic", "accumulator bits P")
    overflow: str = _field("wrap", "arithmetic", "accumulator overflow mode")
    bias_bits: int = _field(32, "stage", "output stage: signed bias bits")
    mult_bits: int = _field(16, "stage", "output stage: requantization multiplier bits")
    shift_bits: int = _field(6, "stage", "output stage: bits of the right-shift amount")
    act_depth: int = _field(8192, "buffers", "activation buffer depth (words)")
    wgt_depth: int = _field(8192, "buffers", "weight buffer depth (words)")
    res_depth: int = _field(4096, "buffers", "result buffer depth (words)")
    param_depth: int = _field(64, "buffers", "parameter buffer depth (words)")

    def __post_init__(self) -> None:
        for name, (lo, hi) in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            if lo is not None and not lo <= value <= hi:
                raise ConfigError(f"{name}={value} is out of range: allowed {lo}..{hi}")
        for name in ("act_signed", "preload"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name, words in CHOICES.items():
            if getattr(self, name) not in words:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} is not one of: {', '.join(words)}"
                )
        lo_p, hi_p = self.product_bits, LIMITS["acc_bits"][1]
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

    @property
    def useful_bias_bits(self) -> int:
        """The widest bias that is not wasted: ``max(8, P)``. A bias past the accumulator's
        range would only saturate the output, and a narrower bias keeps the output stage's
        multiply small (17 x 16 bits at P = 16: one ECP5 DSP block)."""
        return max(LIMITS["bias_bits"][0], self.acc_bits)

    # -- buffers --------------------------------------------------------------------------

    def address_bits(self, buffer: str) -> int:
        """Address width of buffer ``buffer`` (``act``, ``wgt``, ``param`` or ``res``):
        ceil(log2(depth)) bits, 0 for a one-word buffer."""
        if buffer not in BUFFERS:
            raise ValueError(f"unknown buffer {buffer!r}: choose one of {', '.join(BUFFERS)}")
        return (getattr(self, f"{buffer}_depth") - 1).bit_length()

    # -- identity and transport -----------------------------------------------------------

    @property
    def name(self) -> str:
        """Short id such as ``r8c8_a4w4p16_wrap`` for test ids and build-cache folders."""
        sign = "s" if self.act_signed else ""
        return (
            f"r{self.rows}c{self.cols}_a{self.act_bits}{sign}w{self.weight_bits}"
            f"p{self.acc_bits}_{self.overflow}"
            + ("_ws" if self.dataflow == "ws" else "")
            + ("" if self.preload else "_nopre")
        )

    def replace(self, **changes: Any) -> ArrayConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self, *groups: str) -> dict[str, Any]:
        """Every field, or only those of ``groups`` (e.g. ``"arithmetic"``: N, M, P,
        signedness and mode, what a network file stores per layer)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not groups or f.metadata["group"] in groups
        }

    def arithmetic(self) -> ArrayConfig:
        """This configuration's arithmetic (N, M, P, signedness, mode) with every other
        field at its default: what a network's layer is made for, whatever array runs it."""
        return ArrayConfig(**self.to_dict("arithmetic"))

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
        flow = " weight-stationary" if self.dataflow == "ws" else ""
        flow += "" if self.preload else " without preload"
        return f"{self.rows}x{self.cols}{flow} array, {self.describe_arithmetic()}, product {self.product_bits} bits"

    def describe_arithmetic(self) -> str:
        """The arithmetic alone (what a layer of a network file fixes), in words."""
        sign = "signed" if self.act_signed else "unsigned"
        return (
            f"{self.act_bits}-bit {sign} activations x {self.weight_bits}-bit signed weights, "
            f"{self.acc_bits}-bit accumulators ({self.overflow})"
        )
