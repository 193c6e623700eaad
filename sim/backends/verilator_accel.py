"""Run GEMM layers on the Accelerator's Verilog compiled by Verilator.

Python makes a few calls per layer into the C++ harness (``harness.cpp``); every clock
cycle runs there. Buffers are loaded either straight into the simulated memories
(``load="backdoor"``, the default: no clock cycles spent) or through the host write and
read ports one word per cycle (``load="ports"``, what a real host does).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from oasa.config import ArrayConfig
from oasa.errors import HardwareTimeout
from oasa.hw.registers import REG
from oasa.sim.accel_image import AccelRun, LayerImage
from oasa.sim.backends import PerConfigSession, verilator_build
from oasa.sim.backends.verilator_build import Build, build_accelerator
from oasa.sim.backends.words import act_word, param_word, result_word, wgt_word
from oasa.sim.cycles import accelerator_cycles, cycle_budget

__all__ = ["VerilatorAccelerator", "VerilatorBackend"]

_BUFFER_ID = {"act": 0, "wgt": 1, "param": 2}
_P = ctypes.c_void_p
_U32 = ctypes.c_uint32


def _bind(lib: ctypes.CDLL) -> None:
    sig = {
        "oasa_open": (_P, [ctypes.c_char_p]),
        "oasa_close": (None, [_P]),
        "oasa_total_cycles": (ctypes.c_uint64, [_P]),
        "oasa_write": (None, [_P, ctypes.c_int, _U32, _U32, _P, ctypes.c_int]),
        "oasa_poke": (None, [_P, ctypes.c_int, _U32, _U32, _P, ctypes.c_int]),
        "oasa_read": (None, [_P, _U32, _U32, _P, ctypes.c_int]),
        "oasa_peek": (None, [_P, _U32, _U32, _P, ctypes.c_int]),
        "oasa_reg_write": (None, [_P, _U32, _U32]),
        "oasa_reg_read": (_U32, [_P, _U32]),
        "oasa_run": (ctypes.c_uint64, [_P, _U32, ctypes.c_uint64]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


class VerilatorAccelerator:
    """One Verilated accelerator instance; layers run back to back without reset.

    Parameters
    ----------
    cfg : ArrayConfig
    vcd : path or None
        Write a VCD waveform of everything simulated (uses a separate traced build).
    load : "backdoor" or "ports"
        How buffers are loaded and results read back (see the module docstring).
    """

    def __init__(self, cfg: ArrayConfig, *, vcd: str | Path | None = None, load: str = "backdoor"):
        if load not in ("backdoor", "ports"):
            raise ValueError(f"load must be 'backdoor' or 'ports', got {load!r}")
        self.cfg = cfg
        self.load = load
        self.build: Build = build_accelerator(cfg, trace=vcd is not None)
        self._lib = ctypes.CDLL(str(self.build.library))
        _bind(self._lib)
        self._handle = self._lib.oasa_open(str(vcd).encode() if vcd else None)
        self._formats = {"act": act_word(cfg), "wgt": wgt_word(cfg), "param": param_word(cfg)}
        self._result = result_word(cfg)

    def close(self) -> None:
        if self._handle:
            self._lib.oasa_close(self._handle)
            self._handle = None

    def __enter__(self) -> VerilatorAccelerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    @property
    def total_cycles(self) -> int:
        """Every cycle simulated so far, loads included."""
        return int(self._lib.oasa_total_cycles(self._handle))

    def _write(self, name: str, base: int, words: np.ndarray) -> None:
        fn = self._lib.oasa_poke if self.load == "backdoor" else self._lib.oasa_write
        fmt = self._formats[name]
        fn(self._handle, _BUFFER_ID[name], base, words.shape[0], words.ctypes.data, fmt.chunks)

    def reg_read(self, name: str) -> int:
        return int(self._lib.oasa_reg_read(self._handle, REG[name]))

    def run(self, img: LayerImage) -> AccelRun:
        """Load one layer, run it to done, read the results back."""
        if img.cfg != self.cfg:
            raise ValueError("the layer was laid out for a different configuration")
        r = img.registers
        self._write("act", r["ACT_BASE"], self._formats["act"].pack(img.act_words))
        self._write("wgt", r["WGT_BASE"], self._formats["wgt"].pack(img.wgt_words))
        self._write(
            "param", r["PARAM_BASE"], self._formats["param"].pack(img.bias, img.mult, img.shift)
        )
        for name, value in r.items():
            self._lib.oasa_reg_write(self._handle, REG[name], value)
        predicted = accelerator_cycles(self.cfg, img.m, img.k, img.n, cont=img.cont)
        budget = cycle_budget(predicted)
        counted = self._lib.oasa_run(self._handle, REG["CTRL"], budget)
        if counted == 0:
            raise HardwareTimeout(
                f"{img.label}: the accelerator did not finish: {budget} cycles elapsed, the "
                f"cycle model predicts {predicted} (Verilator)"
            )
        words = np.zeros((img.res_words, self._result.chunks), dtype=np.uint32)
        read = self._lib.oasa_peek if self.load == "backdoor" else self._lib.oasa_read
        read(self._handle, r["RES_BASE"], img.res_words, words.ctypes.data, self._result.chunks)
        values, flags = self._result.unpack(words)
        out, ovf = img.decode(values, flags.astype(bool))
        return AccelRun(out, ovf, self.reg_read("CYCLES"), self.reg_read("FLAGGED"), int(counted))


class VerilatorBackend:
    """The RTL compiled by Verilator: built once per configuration (cached), then fast."""

    name = "verilator"
    needs_port = False
    waveform = True

    def prepare(self, configs: Sequence[ArrayConfig], *, trace: bool = False) -> None:
        for i, cfg in enumerate(configs):
            verilator_build.build_accelerator(cfg, trace=trace and i == 0)

    def open(
        self, stack: ExitStack, *, vcd: str | None = None, port=None, baud: int = 115200
    ) -> PerConfigSession:
        waveform = [vcd]  # one waveform: the first model's

        def open_model(cfg: ArrayConfig) -> VerilatorAccelerator:
            return VerilatorAccelerator(cfg, vcd=waveform.pop() if waveform else None)

        return PerConfigSession(stack, open_model)
