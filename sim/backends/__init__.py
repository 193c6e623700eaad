"""The backends a layer can run on, behind one protocol and one registry.

A :class:`Backend` opens a :class:`Session` that runs GEMM calls (each a
:class:`~oasa.sim.accel_image.LayerImage` and the operands it was built from) and returns
one :class:`~oasa.sim.accel_image.AccelRun` per call, keeping models or links open across
calls. ``model``, ``amaranth`` and ``verilator`` are built in; other packages add
backends through the ``oasa.backends`` entry-point group (``oasa.fpga`` adds ``board``),
so the simulator never imports them and library callers find them too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from oasa.errors import InputError

if TYPE_CHECKING:  # annotations only: a board top imports this package (words) without them
    import numpy as np
    from numpy.typing import NDArray

    from oasa.sim.accel_image import AccelRun, LayerImage

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "GemmCall",
    "PerConfigSession",
    "Session",
    "backend_names",
    "get_backend",
    "open_session",
    "usable_backend",
]

#: Where other packages register backends (name = "module:object").
ENTRY_POINT_GROUP = "oasa.backends"

_BUILTIN = {
    "model": "oasa.sim.backends.model:ModelBackend",
    "amaranth": "oasa.sim.backends.amaranth_accel:AmaranthBackend",
    "verilator": "oasa.sim.backends.verilator_accel:VerilatorBackend",
}


@dataclass(frozen=True)
class GemmCall:
    """One accelerator call: the buffer image, and the operands it holds (for the model)."""

    image: LayerImage
    x: NDArray[np.int64]
    w: NDArray[np.int64]
    stage: dict[str, Any] = field(default_factory=dict)  # bias, mult, shift, relu


@runtime_checkable
class Session(Protocol):
    """An open backend: runs calls in order, on one instance (no reset in between)."""

    def run(self, calls: Sequence[GemmCall]) -> list[AccelRun]: ...


@runtime_checkable
class Backend(Protocol):
    """A place to run layers. ``needs_port``: it talks to hardware on a serial port;
    ``waveform``: it can write a VCD of what it ran."""

    name: str
    needs_port: bool
    waveform: bool

    def prepare(self, configs: Sequence[Any], *, trace: bool = False) -> None:
        """Do slow one-time work (a Verilator build) before anything is timed."""
        ...

    def open(
        self, stack: ExitStack, *, vcd: str | None = None, port: object = None, baud: int = 115200
    ) -> Session:
        """A session whose resources ``stack`` closes."""
        ...


class PerConfigSession:
    """A session that opens one model per configuration on first use (``open_model``
    enters it into ``stack``) and runs each call on its configuration's model."""

    def __init__(self, stack: ExitStack, open_model: Callable[[Any], Any]) -> None:
        self.stack = stack
        self.open_model = open_model
        self.models: dict[Any, Any] = {}

    def run(self, calls: Sequence[GemmCall]) -> list[AccelRun]:
        runs = []
        for call in calls:
            cfg = call.image.cfg
            if cfg not in self.models:
                self.models[cfg] = self.stack.enter_context(self.open_model(cfg))
            runs.append(self.models[cfg].run(call.image))
        return runs


def _load(target: str) -> Backend:
    module, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    return obj() if isinstance(obj, type) else obj


@cache
def _registered() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **_BUILTIN}  # a plug-in cannot replace a built-in backend


def backend_names() -> tuple[str, ...]:
    """Every backend: the built-in ones first, then those of installed packages."""
    return (*_BUILTIN, *sorted(set(_registered()) - set(_BUILTIN)))


@cache
def get_backend(name: str) -> Backend:
    """The backend called ``name``; :class:`InputError` naming the choices otherwise."""
    targets = _registered()
    if name not in targets:
        raise InputError(f"unknown backend {name!r}: choose one of {', '.join(backend_names())}")
    return _load(targets[name])


def usable_backend(name: str, port: object = None) -> Backend:
    """The backend called ``name``, checked to have what it needs (a port) to run."""
    backend = get_backend(name)
    if backend.needs_port and port is None:
        raise InputError(f"the {name} backend needs a port (e.g. port='/dev/ttyUSB1')")
    return backend


def open_session(
    name: str, stack: ExitStack, *, vcd: str | None = None, port: object = None, baud: int = 115200
) -> Session:
    """Open backend ``name`` (see :func:`usable_backend`)."""
    return usable_backend(name, port).open(stack, vcd=vcd, port=port, baud=baud)
