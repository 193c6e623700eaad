"""The backend registry: built-in backends, the board from the ``oasa.backends`` entry
points, a third-party backend found the same way, and one protocol for all of them."""

from __future__ import annotations

from contextlib import ExitStack
from importlib.metadata import EntryPoint

import numpy as np
import pytest

from oasa.config import ArrayConfig
from oasa.errors import InputError
from oasa.sim import backends, golden
from oasa.sim.layer import run_gemm


def test_every_backend_is_registered_and_follows_the_protocol():
    assert backends.backend_names()[:3] == ("model", "amaranth", "verilator")
    assert "board" in backends.backend_names()  # from oasa.fpga, through the entry point
    for name in backends.backend_names():
        b = backends.get_backend(name)
        assert isinstance(b, backends.Backend) and b.name == name
    assert backends.get_backend("board").needs_port
    assert not backends.get_backend("model").waveform


def test_an_unknown_backend_names_the_choices():
    with pytest.raises(InputError, match="unknown backend 'fpga0': choose one of model, amaranth"):
        backends.get_backend("fpga0")


def test_a_port_backend_without_a_port_is_refused_before_any_work():
    with pytest.raises(InputError, match="the board backend needs a port"):
        run_gemm(np.ones((2, 2), int), np.ones((2, 2), int), cfg=ArrayConfig(), backend="board")


class _CountingBackend:
    """A third party's backend: the model's answers, counted."""

    name = "counting"
    needs_port = False
    waveform = False
    calls = 0

    def prepare(self, configs, *, trace=False):
        return None

    def open(self, stack: ExitStack, *, vcd=None, port=None, baud=115200):
        session = backends.get_backend("model").open(stack)
        outer = self

        class Session:
            def run(self, calls):
                outer.calls += len(calls)
                return session.run(calls)

        return Session()


COUNTING = _CountingBackend()


def test_a_third_party_backend_comes_in_through_the_entry_point_group(monkeypatch):
    ep = EntryPoint("counting", f"{__name__}:COUNTING", backends.ENTRY_POINT_GROUP)
    monkeypatch.setattr(backends, "entry_points", lambda group: [ep] if group == ep.group else [])
    backends._registered.cache_clear()
    backends.get_backend.cache_clear()
    try:
        assert backends.backend_names()[-1] == "counting"
        cfg = ArrayConfig(rows=2, cols=3, acc_bits=10)
        rng = np.random.default_rng(3)
        x, w = rng.integers(0, 16, (5, 30)), rng.integers(-8, 8, (30, 4))
        r = run_gemm(x, w, cfg=cfg, backend="counting")
        assert COUNTING.calls == 1 and r.backend == "counting"
        assert np.array_equal(r.out, golden.gemm(x, w, cfg=cfg).out)
    finally:
        backends._registered.cache_clear()
        backends.get_backend.cache_clear()
