"""The integer output stage: bias, dyadic requantization, ReLU, clamp."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from oasa.config import ArrayConfig
from oasa.hw.layouts import params_layout, result_layout, stage_out_layout

__all__ = ["OutputStage"]


class OutputStage(wiring.Component):
    """Requantizes drained rows to the next layer's activations, C lanes in parallel.

    Per lane, with ``requant`` set: y = acc + bias; z = y * mult; r = round_half_up(z /
    2**shift); r = max(r, 0) if ``relu``; value = clamp(r, act_min, act_max). With
    ``requant`` clear the accumulator passes through unchanged (bias 0, mult 1, shift 0,
    no ReLU, no clamp). Flags and the row index pass through. Bit for bit the golden
    model's ``output_stage`` (sim/golden.py).

    Rounding uses floor(z / 2**s + 1/2) = (t + 1) >> 1 with t = z >> (s - 1), which needs
    no adder as wide as 2**(s-1); and since a requantized value is clamped to N bits, the
    add works on an (N + 3)-bit window of t (see stage 6).

    Latency: ``latency`` = :attr:`LATENCY` = 6 cycles (add, multiply, move, shift by a
    multiple of 8, shift by the rest, round and clamp).
    Throughput: one row per cycle.

    Parameters
    ----------
    cfg : ArrayConfig

    Members
    -------
    i_res : In(stream.Signature(result_layout(cfg), always_ready=True))
        Rows from the array.
    params : In(params_layout(cfg))
        Bias, multiplier and shift of each lane; sampled with each beat.
    relu, requant : In(1)
        Mode bits; sampled with each beat.
    o_res : Out(stream.Signature(stage_out_layout(cfg), always_ready=True))
        Requantized (or raw) rows.
    """

    #: Pipeline depth: the six stages of ``elaborate``. The cycle model (sim/cycles.py)
    #: reads it from here.
    LATENCY = 6

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg
        super().__init__(
            {
                "i_res": In(stream.Signature(result_layout(cfg), always_ready=True)),
                "params": In(params_layout(cfg)),
                "relu": In(1),
                "requant": In(1),
                "o_res": Out(stream.Signature(stage_out_layout(cfg), always_ready=True)),
            }
        )

    @property
    def latency(self) -> int:
        """Cycles from a row at ``i_res`` to the same row at ``o_res``: :attr:`LATENCY`."""
        return self.LATENCY

    def multiply(self, m: Module, y: Value, mult: Value, enables: tuple, lane: int) -> Value:
        """``y * mult`` through two pipeline registers, loaded with ``enables[0]`` and
        ``enables[1]``. The product gets a register of its own, then moves on: on an FPGA
        the multiplier is a DSP block at a fixed site, and a register that feeds only the
        next one can sit next to it. A hook: FPGA builds may build the product otherwise
        (``oasa.fpga.multipliers``), within the same two stages."""
        prod = Signal.like(y * mult, name=f"prod_{lane}")
        z = Signal.like(prod, name=f"z_{lane}")
        with m.If(enables[0]):
            m.d.sync += prod.eq(y * mult)
        with m.If(enables[1]):
            m.d.sync += z.eq(prod)
        return z

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()

        # Side-band that only travels down the pipeline: valid, flags, row, mode bits.
        side = [
            (
                self.i_res.valid,
                self.i_res.payload.ovf,
                self.i_res.payload.row,
                self.relu,
                self.requant,
            )
        ]
        for stage in range(self.latency):
            regs = tuple(
                Signal.like(v, name=f"s{stage + 1}_{n}")
                for v, n in zip(side[-1], ("valid", "ovf", "row", "relu", "requant"), strict=True)
            )
            m.d.sync += regs[0].eq(side[-1][0])
            with m.If(side[-1][0]):  # data registers load only with a valid row
                m.d.sync += [r.eq(v) for r, v in zip(regs[1:], side[-1][1:], strict=True)]
            side.append(regs)
        # Each stage's data registers load only when a valid row enters it: a clock enable
        # that saves switching (and simulation time) while the array computes.
        enable = [regs[0] for regs in side[:-1]]

        for lane in range(cfg.cols):
            acc = self.i_res.payload.acc[lane]
            bias = self.params.bias[lane]
            mult = self.params.mult[lane]
            shift = self.params.shift[lane]
            requant = self.requant

            # Stage 1: add the bias (raw mode: acc itself, times 1, no shift). The shift
            # is decoded here, off the critical path: s - 1, and whether s is 0.
            y = Signal.like(acc + bias, name=f"y_{lane}")
            mult1 = Signal.like(mult, name=f"mult1_{lane}")
            shifting = requant & (shift != 0)
            sm1 = Signal.like(shift, name=f"sm1_{lane}")  # s - 1 when shifting, else 0
            noshift1 = Signal(name=f"noshift1_{lane}")
            with m.If(enable[0]):
                m.d.sync += [
                    y.eq(Mux(requant, acc + bias, acc)),
                    mult1.eq(Mux(requant, mult, 1)),
                    sm1.eq(Mux(shifting, shift - 1, 0)),
                    noshift1.eq(~shifting),
                ]
            # Stages 2 and 3: the requantization multiply (see ``multiply``).
            z = self.multiply(m, y, mult1, (enable[1], enable[2]), lane)
            sm2 = Signal.like(sm1, name=f"sm2_{lane}")
            noshift2 = Signal(name=f"noshift2_{lane}")
            with m.If(enable[1]):
                m.d.sync += [sm2.eq(sm1), noshift2.eq(noshift1)]
            sm3 = Signal.like(sm1, name=f"sm3_{lane}")
            noshift3 = Signal(name=f"noshift3_{lane}")
            with m.If(enable[2]):
                m.d.sync += [sm3.eq(sm2), noshift3.eq(noshift2)]
            # Stages 4 and 5: t = z >> (s - 1), a barrel shifter in two halves: by the
            # multiple of 8 in s - 1, then by the rest (t = z without a shift). Arithmetic
            # shifts compose, so this is z >> (s - 1) exactly. Halved, the shifter fits
            # beside the route from the ECP5 DSP block's output register.
            coarse = Cat(Const(0, 3), sm3[3:])
            t4 = Signal.like(z, name=f"t4_{lane}")
            fine4 = Signal(3, name=f"fine4_{lane}")
            noshift4 = Signal(name=f"noshift4_{lane}")
            with m.If(enable[3]):
                m.d.sync += [t4.eq(z >> coarse), fine4.eq(sm3[:3]), noshift4.eq(noshift3)]
            t = Signal.like(z, name=f"t_{lane}")
            noshift5 = Signal(name=f"noshift5_{lane}")
            with m.If(enable[4]):
                m.d.sync += [t.eq(t4 >> fine4), noshift5.eq(noshift4)]
            # Stage 6: round half up, r = (t + 1) >> 1, then ReLU and clamp (requant only).
            # Requantized values are clamped to the N-bit range, so only a window of
            # W = N + 3 bits of t matters: the rounding adds on W bits, and a t outside the
            # window is past the clamp range on the side of its sign. Bit for bit the wide
            # formula; the carry chain is W bits instead of the product's (on the ECP5 the
            # wide one set Fmax).
            relu, req = side[5][3], side[5][4]
            w = min(cfg.act_bits + 3, len(t))
            t_w = t[:w].as_signed()
            top = t[w - 1 :]
            fits = (top == 0) | (top == (1 << len(top)) - 1)
            r = Mux(noshift5, t_w, (t_w + 1) >> 1)
            value = Signal.like(self.o_res.payload.value[lane], name=f"value_{lane}")
            with m.If(enable[5]):
                with m.If(~req):
                    m.d.sync += value.eq(t)
                with m.Elif(~fits):
                    m.d.sync += value.eq(Mux(t[-1], Mux(relu, 0, cfg.act_min), cfg.act_max))
                with m.Elif((r < 0) & relu):
                    m.d.sync += value.eq(0)
                with m.Elif(r < cfg.act_min):
                    m.d.sync += value.eq(cfg.act_min)
                with m.Elif(r > cfg.act_max):
                    m.d.sync += value.eq(cfg.act_max)
                with m.Else():
                    m.d.sync += value.eq(r)
            m.d.comb += self.o_res.payload.value[lane].eq(value)

        valid, ovf, row, _, _ = side[-1]
        m.d.comb += [
            self.o_res.valid.eq(valid),
            self.o_res.payload.ovf.eq(ovf),
            self.o_res.payload.row.eq(row),
        ]
        return m
