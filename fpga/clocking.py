"""PLL settings for the boards' oscillators, and the clock/reset of a board top.

The dividers are searched here (as icepll and ecppll do) so that any target frequency
can be asked for; the search keeps every internal frequency inside the data-sheet range
(iCE40 sysCLOCK PLL: Lattice TN1251; ECP5 sysCLOCK PLL: Lattice TN1263).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Const,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer

from oasa.errors import InputError

__all__ = ["ECP5PLL", "ICE40PLL", "ClockError", "ResetGenerator", "ecp5_pll", "ice40_pll"]


class ClockError(InputError):
    """No PLL setting reaches the requested frequency."""


@dataclass(frozen=True)
class ICE40PLL:
    """SB_PLL40_CORE dividers: f_out = f_in * (divf + 1) / ((divr + 1) * 2**divq)."""

    f_in: float
    divr: int
    divf: int
    divq: int
    filter_range: int

    @property
    def f_out(self) -> float:
        return self.f_in * (self.divf + 1) / ((self.divr + 1) * 2**self.divq)


@dataclass(frozen=True)
class ECP5PLL:
    """EHXPLLL dividers with CLKOP feedback: f_out = f_in * clkfb_div / clki_div."""

    f_in: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def f_out(self) -> float:
        return self.f_in * self.clkfb_div / self.clki_div

    @property
    def f_vco(self) -> float:
        return self.f_out * self.clkop_div


def ice40_pll(f_in: float, f_out: float) -> ICE40PLL:
    """The SB_PLL40_CORE setting closest to ``f_out`` (Hz) from ``f_in`` (Hz)."""
    best: ICE40PLL | None = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                filter_range = next(
                    i + 1
                    for i, top in enumerate((17e6, 26e6, 44e6, 66e6, 101e6, 1e12))
                    if f_pfd < top
                )
                cand = ICE40PLL(f_in, divr, divf, divq, filter_range)
                if best is None or abs(cand.f_out - f_out) < abs(best.f_out - f_out):
                    best = cand
    if best is None or abs(best.f_out - f_out) > 0.01 * f_out:
        raise ClockError(
            f"the iCE40 PLL cannot make {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz "
            "(reachable: about 16..275 MHz); choose another --clock"
        )
    return best


def ecp5_pll(f_in: float, f_out: float) -> ECP5PLL:
    """The EHXPLLL setting closest to ``f_out`` (Hz) from ``f_in`` (Hz)."""
    best: ECP5PLL | None = None
    for clki_div in range(1, 129):
        if f_in / clki_div < 3.125e6:
            break
        for clkfb_div in range(1, 81):
            fo = f_in * clkfb_div / clki_div
            if not 3.125e6 <= fo <= 400e6:
                continue
            for clkop_div in range(1, 129):
                if 400e6 <= fo * clkop_div <= 800e6:
                    cand = ECP5PLL(f_in, clki_div, clkfb_div, clkop_div)
                    if best is None or abs(cand.f_out - f_out) < abs(best.f_out - f_out):
                        best = cand
                    break
    if best is None or abs(best.f_out - f_out) > 0.01 * f_out:
        raise ClockError(
            f"the ECP5 PLL cannot make {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz "
            "(reachable: 3.125..400 MHz); choose another --clock"
        )
    return best


def pll_instance(pll: ICE40PLL | ECP5PLL, clk_in, clk_out: Signal, locked: Signal) -> Instance:
    """The vendor primitive for ``pll``, from ``clk_in`` to ``clk_out``.

    On the iCE40 ``clk_in`` is the oscillator's pin itself (an I/O port): the UP5K's PLL
    sits behind the pad of the iCEBreaker's clock pin, so SB_PLL40_PAD must take the pad
    (SB_PLL40_CORE fed from that pad's input buffer cannot be placed). On the ECP5 it is
    the buffered clock signal.
    """
    if isinstance(pll, ICE40PLL):
        return Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE",
            p_PLLOUT_SELECT="GENCLK",
            p_DIVR=pll.divr,
            p_DIVF=pll.divf,
            p_DIVQ=pll.divq,
            p_FILTER_RANGE=pll.filter_range,
            i_PACKAGEPIN=clk_in,
            i_RESETB=Const(1),
            i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=clk_out,
            o_LOCK=locked,
        )
    return Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=f"{pll.f_in / 1e6:g}",
        a_FREQUENCY_PIN_CLKOP=f"{pll.f_out / 1e6:g}",
        a_ICP_CURRENT="12",
        a_LPF_RESISTOR="8",
        a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED",
        p_INTFB_WAKE="DISABLED",
        p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED",
        p_OUTDIVIDER_MUXA="DIVA",
        p_CLKI_DIV=pll.clki_div,
        p_CLKOP_ENABLE="ENABLED",
        p_CLKOP_DIV=pll.clkop_div,
        p_CLKOP_CPHASE=(pll.clkop_div - 1) // 2,
        p_CLKOP_FPHASE=0,
        p_FEEDBK_PATH="CLKOP",
        p_CLKFB_DIV=pll.clkfb_div,
        i_CLKI=clk_in,
        i_CLKFB=clk_out,
        i_RST=Const(0),
        i_STDBY=Const(0),
        i_PHASESEL0=Const(0),
        i_PHASESEL1=Const(0),
        i_PHASEDIR=Const(1),
        i_PHASESTEP=Const(1),
        i_PHASELOADREG=Const(1),
        i_PLLWAKESYNC=Const(0),
        i_ENCLKOP=Const(0),
        o_CLKOP=clk_out,
        o_LOCK=locked,
    )


class ResetGenerator(Elaboratable):
    """Holds ``sync`` (defined by the parent, clocked by ``clk``) in reset until the PLL
    has locked and ``delay`` cycles have passed, and while the reset button is pressed.

    The delay also covers the iCE40 quirk of block RAMs reading as zero for about 3 us after
    configuration (see amaranth's ``create_missing_domain`` for iCE40).
    """

    def __init__(
        self, clk: Signal, locked: Signal, button: Signal, delay: int, global_buffer: bool = False
    ):
        self.clk, self.locked, self.button, self.delay = clk, locked, button, delay
        self.global_buffer = global_buffer

    def elaborate(self, platform) -> Module:
        m = Module()
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.d.comb += ClockSignal("por").eq(self.clk)
        timer = Signal(range(self.delay + 1))
        ready = Signal()
        with m.If(~self.locked):
            m.d.por += [timer.eq(0), ready.eq(0)]
        with m.Elif(timer == self.delay):
            m.d.por += ready.eq(1)
        with m.Else():
            m.d.por += timer.eq(timer + 1)
        if self.global_buffer:
            # ECP5: the reset reaches every flip-flop; on a general net its routing alone
            # took 13-16 ns on large arrays. Through a DCCA it rides the clock network.
            button = Signal()
            m.submodules.button_sync = FFSynchronizer(self.button, button, o_domain="por")
            rst = Signal(init=1)
            m.d.por += rst.eq(~ready | button)
            m.submodules.reset_buf = Instance(
                "DCCA", i_CLKI=rst, i_CE=Const(1), o_CLKO=ResetSignal("sync")
            )
        else:
            m.submodules.reset_sync = ResetSynchronizer(~ready | self.button, domain="sync")
        return m
