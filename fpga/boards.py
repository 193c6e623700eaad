"""Board tops: the accelerator with its UART host link, clocking, reset and status LEDs.

A board is described once (:class:`Board`): its amaranth-boards platform, the part's
resources for the reports, the oscillator, the default clock target, and buffer depths
that fit the part's block RAMs. :class:`BoardTop` is the whole design for one board.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Signal
from amaranth.lib import io

from oasa.config import ArrayConfig
from oasa.errors import InputError
from oasa.fpga.clocking import ResetGenerator, ecp5_pll, ice40_pll, pll_instance
from oasa.fpga.multipliers import accelerator_factory

__all__ = ["BOARDS", "Board", "BoardTop", "UnknownBoardError", "board_config", "get_board"]


class UnknownBoardError(InputError):
    """No board of that name."""


@dataclass(frozen=True)
class Board:
    """What oasa needs to know about one board."""

    name: str
    platform: str  #: "module:Class" in amaranth_boards
    family: str  #: "ice40" or "ecp5"
    part: str
    f_osc: float  #: the oscillator, Hz
    f_target: float  #: default clock target, Hz
    resources: dict[str, int]  #: what the part has, by report name
    defaults: dict[str, int]  #: ArrayConfig fields that fit the part (buffer depths, ...)
    leds: tuple[tuple[str, str, int], ...]  #: (core status, resource, number)
    button: tuple[str, int]  #: the reset button
    default_array: tuple[int, int]  #: rows, cols built when none are given
    #: rows, cols of a weight-stationary build when none are given (None: default_array)
    default_ws_array: tuple[int, int] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    #: How the output stage's requantization product is built ("dsp" or "lut", see
    #: :mod:`oasa.fpga.multipliers`).
    stage_multiplier: str = "dsp"
    #: Keep the array's replicated marker registers apart in synthesis (see
    #: :mod:`oasa.hw.replicas`): local nets for speed, at a few flip-flops per PE.
    keep_replicas: bool = False

    def array_for(self, dataflow: str) -> tuple[int, int]:
        """The rows and columns built in ``dataflow`` when none are given."""
        return (self.default_ws_array if dataflow == "ws" else None) or self.default_array

    def platform_class(self):
        module, cls = self.platform.split(":")
        return getattr(__import__(module, fromlist=[cls]), cls)

    def pll(self, f_out: float):
        return (ice40_pll if self.family == "ice40" else ecp5_pll)(self.f_osc, f_out)


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            name="icebreaker",
            platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
            family="ice40",
            part="iCE40UP5K-SG48",
            f_osc=12e6,
            f_target=24e6,
            resources={"LC": 5280, "BRAM": 30, "DSP": 8},
            # The UP5K has 5,280 LCs and eight 16x16 DSPs: a narrower output stage (bias
            # 16 bits, multiplier 8 bits, shifts 0..31) leaves room for the array, and so
            # does leaving out the preload chain (P + 1 flip-flops per PE and the columns'
            # skew, each flip-flop a logic cell here, and the sequencer's reader). A
            # layer's K must then fit the buffers in one call: 1,024 words of activations
            # and weights (4 block RAMs each at 4 x 3) hold the digits CNN's K = 1,024.
            defaults={
                "preload": False,
                "act_depth": 1024,
                "wgt_depth": 1024,
                "res_depth": 128,
                "param_depth": 4,
                "bias_bits": 16,
                "mult_bits": 8,
                "shift_bits": 5,
            },
            leds=(("done", "led_g", 0), ("link_error", "led_r", 0)),
            button=("button", 0),
            default_array=(4, 3),
            # The weight-stationary sequencer (a second issuer, the partial sums' round
            # trip) takes about 280 LCs more: its 4 x 3 does not place, its 3 x 3 does
            # (python bench/fpga_builds.py).
            default_ws_array=(3, 3),
        ),
        Board(
            name="ulx3s-85f",
            platform="amaranth_boards.ulx3s:ULX3S_85F_Platform",
            family="ecp5",
            part="LFE5U-85F-6BG381C",
            f_osc=25e6,
            f_target=100e6,
            resources={"LUT": 83640, "FF": 83640, "BRAM": 208, "DSP": 156},
            defaults={"act_depth": 2048, "wgt_depth": 2048, "res_depth": 1024, "param_depth": 16},
            leds=(("busy", "led", 0), ("done", "led", 1), ("link_error", "led", 7)),
            button=("button_fire", 0),
            default_array=(16, 16),
            # amaranth-boards lists openFPGALoader as required even when not programming.
            extra_env={"OPENFPGALOADER": "openFPGALoader"},
            # The output-stage products in DSP blocks, with the blocks' own registers: the
            # route to the block's fixed site and back no longer shares a path with the
            # multiply (oasa.fpga.ecp5_dsp). In LUTs (ShiftAddStage) the 16 x 16 build took
            # 11,000 more LUTs and still ran at 80 MHz.
            stage_multiplier="dsp-regs",
            # Merged, the marker registers drive whole anti-diagonals (an 11.6 ns route on
            # 16 x 16); kept apart they cost ~4 flip-flops per PE of the 83,640.
            keep_replicas=True,
        ),
    )
}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise UnknownBoardError(
            f"unknown board {name!r}: choose one of {', '.join(BOARDS)}"
        ) from None


def board_config(board: Board, **array) -> ArrayConfig:
    """An ArrayConfig with the board's defaults where ``array`` gives no value.

    Unless the board or ``array`` says otherwise, the bias is
    :attr:`~oasa.config.ArrayConfig.useful_bias_bits` wide: with P = 16 the output
    stage's multiply is then 17 x 16 bits, one ECP5 DSP block instead of two and an
    adder, which is what keeps it above 100 MHz.
    """
    merged = {**board.defaults, **array}
    cfg = ArrayConfig(**merged)
    return cfg if "bias_bits" in merged else cfg.replace(bias_bits=cfg.useful_bias_bits)


def _default_core(
    cfg: ArrayConfig, clk_hz: float, baud: int, accelerator: Callable[[ArrayConfig], Elaboratable]
) -> Elaboratable:
    from oasa.fpga.soc import UARTAccelerator

    return UARTAccelerator(cfg, clk_hz=clk_hz, baud=baud, accelerator=accelerator)


class BoardTop(Elaboratable):
    """The accelerator and its UART host link on ``board``, clocked at ``f_clk``.

    The core must have ``rx``/``tx`` (the board's FTDI UART) and ``busy``/``done``/
    ``link_error`` (LEDs); ``core_factory`` exists so that benches can put another core
    into the same clocking and pins. ``multiplier`` chooses how the PEs' products are
    built (:mod:`oasa.fpga.multipliers`).
    """

    def __init__(
        self,
        board: Board,
        cfg: ArrayConfig,
        *,
        f_clk: float | None = None,
        baud: int = 115200,
        multiplier: str = "lut",
        core_factory: Callable[[ArrayConfig, float, int, Callable], Elaboratable] = _default_core,
    ):
        self.board = board
        self.cfg = cfg
        self.pll = board.pll(f_clk or board.f_target)
        self.baud = baud
        self.multiplier = multiplier
        accelerator = accelerator_factory(multiplier, board.stage_multiplier)
        self.core = core_factory(cfg, self.pll.f_out, baud, accelerator)

    def elaborate(self, platform) -> Module:
        m = Module()
        board = self.board
        osc = platform.request(platform.default_clk, dir="-")
        if board.family == "ice40":
            clk_in = osc.io
        else:
            m.submodules.osc_buf = osc_buf = io.Buffer("i", osc)
            clk_in = osc_buf.i
        clk, locked = Signal(), Signal()
        m.submodules.pll = pll_instance(self.pll, clk_in, clk, locked)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clk)
        platform.add_clock_constraint(clk, self.pll.f_out)
        m.submodules.button = button = io.Buffer("i", platform.request(*board.button, dir="-"))
        m.submodules.reset = ResetGenerator(
            clk,
            locked,
            button.i,
            delay=int(20e-6 * self.pll.f_out),
            global_buffer=board.family == "ecp5",
        )

        m.submodules.core = core = self.core
        # Every subsignal raw (the ULX3S's UART also has rts and dtr, left unused).
        lines = {sub.name: "-" for sub in platform.lookup("uart", 0).ios}
        uart = platform.request("uart", 0, dir=lines)
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]
        for status, name, number in board.leds:
            m.submodules[f"led_{status}"] = led = io.Buffer(
                "o", platform.request(name, number, dir="-")
            )
            m.d.comb += led.o.eq(getattr(core, status))
        return m
