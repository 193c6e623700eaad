"""Delay lines: a value passed through a row of registers, as skew, de-skew and look-ahead
paths need, each register named after its place so that waveforms and netlists stay
readable."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value

__all__ = ["delay_line", "delayed"]


def delay_line(m: Module, value: Value, cycles: int, name: str) -> list[Value]:
    """``[value, value delayed 1, ..., value delayed cycles]`` (``cycles`` >= 0)."""
    taps = [value]
    for n in range(cycles):
        reg = Signal.like(taps[-1], name=f"{name}_d{n}")
        m.d.sync += reg.eq(taps[-1])
        taps.append(reg)
    return taps


def delayed(m: Module, value: Value, cycles: int, name: str) -> Value:
    """``value`` delayed by ``cycles`` registers (``cycles`` >= 0)."""
    return delay_line(m, value, cycles, name)[-1]
