"""Verilog generation for oasa components."""

from __future__ import annotations

from amaranth.back import verilog
from amaranth.hdl import Const, Value
from amaranth.lib import wiring

__all__ = ["component_ports", "to_verilog"]


def component_ports(component: wiring.Component) -> list:
    """The signals of a component's signature, without the constant members.

    ``always_ready`` / ``always_valid`` stream members are constants, which
    :func:`amaranth.back.verilog.convert` refuses as ports, so the port list is built here.
    """
    ports = []
    for _path, _member, value in component.signature.flatten(component):
        value = Value.cast(value)  # data.View payloads unwrap to their signal
        if not isinstance(value, Const):
            ports.append(value)
    return ports


def to_verilog(component: wiring.Component, name: str) -> str:
    """Verilog text of ``component`` as module ``name`` (ports: clk, rst and its members)."""
    return verilog.convert(component, name=name, ports=component_ports(component))
