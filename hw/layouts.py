"""Data layouts derived from the configuration, defined once for every block.

Each function returns an Amaranth shape built from :class:`~oasa.config.ArrayConfig`, so
no block re-derives a width the configuration already states.
"""

from __future__ import annotations

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from oasa.config import ArrayConfig

__all__ = [
    "acc_shape",
    "act_beat_layout",
    "act_shape",
    "params_layout",
    "result_layout",
    "result_word_layout",
    "stage_out_layout",
    "weight_beat_layout",
    "weight_shape",
]


def act_shape(cfg: ArrayConfig) -> Shape:
    """One activation: N bits, signed or unsigned."""
    return signed(cfg.act_bits) if cfg.act_signed else unsigned(cfg.act_bits)


def weight_shape(cfg: ArrayConfig) -> Shape:
    """One weight: M-bit two's complement."""
    return signed(cfg.weight_bits)


def acc_shape(cfg: ArrayConfig) -> Shape:
    """One accumulator: P-bit two's complement."""
    return signed(cfg.acc_bits)


def act_beat_layout(cfg: ArrayConfig) -> data.StructLayout:
    """One beat at the left edge: activation k of every row, and the tile markers.

    ``first`` starts new dot products (the accumulators restart from zero, the flags
    clear); ``last`` ends them (the results are captured for draining).
    """
    return data.StructLayout(
        {
            "data": data.ArrayLayout(act_shape(cfg), cfg.rows),
            "first": 1,
            "last": 1,
        }
    )


def weight_beat_layout(cfg: ArrayConfig) -> data.ArrayLayout:
    """One beat at the top edge: weight k of every column."""
    return data.ArrayLayout(weight_shape(cfg), cfg.cols)


def result_layout(cfg: ArrayConfig) -> data.StructLayout:
    """One drained row of a tile: C accumulators, their sticky flags, and the row index."""
    return data.StructLayout(
        {
            "acc": data.ArrayLayout(acc_shape(cfg), cfg.cols),
            "ovf": data.ArrayLayout(1, cfg.cols),
            "row": range(cfg.rows),
        }
    )


def params_layout(cfg: ArrayConfig) -> data.StructLayout:
    """Output-stage parameters for the C channels of a tile."""
    return data.StructLayout(
        {
            "bias": data.ArrayLayout(signed(cfg.bias_bits), cfg.cols),
            "mult": data.ArrayLayout(unsigned(cfg.mult_bits), cfg.cols),
            "shift": data.ArrayLayout(unsigned(cfg.shift_bits), cfg.cols),
        }
    )


def stage_out_layout(cfg: ArrayConfig) -> data.StructLayout:
    """One row leaving the output stage: raw P-bit results or requantized activations
    (both fit signed P bits, since P >= N + M), with the flags and the row index."""
    return data.StructLayout(
        {
            "value": data.ArrayLayout(acc_shape(cfg), cfg.cols),
            "ovf": data.ArrayLayout(1, cfg.cols),
            "row": range(cfg.rows),
        }
    )


def result_word_layout(cfg: ArrayConfig) -> data.StructLayout:
    """One result-buffer word: a row of C values (raw or requantized) and their flags."""
    return data.StructLayout(
        {
            "value": data.ArrayLayout(acc_shape(cfg), cfg.cols),
            "ovf": data.ArrayLayout(1, cfg.cols),
        }
    )
