"""Flip-flops that synthesis must keep apart, though they hold the same value.

A systolic array repeats one register many times: every PE on an anti-diagonal sees the
same beat markers, so the per-PE marker and ``done`` flip-flops compute the same function
from structurally identical inputs. Yosys' ``opt_merge`` folds such flip-flops into one,
which then drives the loads of a whole anti-diagonal: a net as long as the array, which
set the Fmax of the ECP5 build. Copies made by :func:`replica` carry the attribute
:data:`REPLICA_ATTR` on their wire; FPGA builds that want them kept apart run
:data:`KEEP_REPLICAS_SCRIPT` after reading the design, which sets ``keep`` on the
flip-flop cells driving those wires (``opt_merge`` never merges a kept cell; a ``keep`` on
the wire alone does not stop it). Simulation, proofs and generated Verilog are unaffected.
"""

from __future__ import annotations

from amaranth.hdl import Signal, Value

__all__ = ["KEEP_REPLICAS_SCRIPT", "REPLICA_ATTR", "replica"]

#: The wire attribute that marks a replicated register.
REPLICA_ATTR = "oasa_replica"

#: Yosys commands (after ``read_rtlil``): keep the flip-flops that drive marked wires.
KEEP_REPLICAS_SCRIPT = f"setattr -set keep 1 w:* a:{REPLICA_ATTR} %i %ci1:+$dff[Q] t:$dff %i"


def replica(like: Value, name: str) -> Signal:
    """A signal shaped like ``like`` whose driving flip-flop an FPGA build keeps apart
    from identical ones (assign it in a sync domain)."""
    return Signal.like(like, name=name, attrs={REPLICA_ATTR: 1})
