"""Verilog generation for oasa components."""

from __future__ import annotations

import re

from amaranth.back import verilog
from amaranth.hdl import Const, Value
from amaranth.lib import wiring

from oasa.errors import InputError

__all__ = ["check_module_name", "component_ports", "to_verilog"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z")
#: Reserved words of Verilog-2005 and SystemVerilog that a tool would take for syntax.
_KEYWORD_TEXT = """
    always and assign automatic begin bit buf byte case casex casez cell class cmos config
    const deassign default defparam design disable edge else end endcase endclass endconfig
    endfunction endgenerate endinterface endmodule endpackage endprimitive endspecify
    endtable endtask enum event for force forever fork function generate genvar highz0
    highz1 if ifnone import incdir include initial inout input instance int integer
    interface join large liblist library localparam logic longint macromodule medium module
    nand negedge nmos nor noshowcancelled not notif0 notif1 or output package parameter
    pmos posedge primitive pull0 pull1 pulldown pullup pulsestyle_onevent
    pulsestyle_ondetect rcmos real realtime reg release repeat rnmos rpmos rtran rtranif0
    rtranif1 scalared shortint showcancelled signed small specify specparam strong0 strong1
    struct supply0 supply1 table task time tran tranif0 tranif1 tri tri0 tri1 triand trior
    trireg typedef union unsigned use uwire vectored wait wand weak0 weak1 while wire wor
    xnor xor
"""
_KEYWORDS = frozenset(_KEYWORD_TEXT.split())


def check_module_name(name: str) -> str:
    """``name`` if it can name a Verilog module; else :class:`InputError` saying why."""
    if not _IDENTIFIER.match(name):
        raise InputError(
            f"{name!r} is not a Verilog module name: use letters, digits, _ and $, "
            "starting with a letter or _"
        )
    if name in _KEYWORDS:
        raise InputError(f"{name!r} is a Verilog keyword; choose another module name")
    return name


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
    check_module_name(name)
    return verilog.convert(component, name=name, ports=component_ports(component))
