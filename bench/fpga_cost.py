"""The hardware side of the accumulator sweep, and whether packing products pays off.

1. LUTs per PE as P goes from 32 down to 12: an 8 x 8 array (with its drain registers and
   skew) synthesized by Yosys for the ECP5 and the iCE40, divided by its 64 PEs; the
   saving against P = 32 in the same run.
2. Two 4-bit products (shared activation) built three ways, on the ECP5: two LUT
   multipliers, two DSP blocks, one DSP block packed with both (``oasa.fpga.packing``);
   per product: LUTs and DSP blocks, and what a 16 x 16 array would need of the
   LFE5U-85F (83,640 LUTs, 156 MULT18X18D).

Synthesis only (no place and route): seconds per point. Run: python bench/fpga_cost.py
"""

from __future__ import annotations

import time

from oasa.config import ArrayConfig
from oasa.fpga.cost import synth_block, synth_cost
from oasa.fpga.packing import PACKINGS, ProductPair

WIDTHS = [32, 28, 24, 20, 16, 14, 12]
ROWS = COLS = 8
ECP5_LUTS, ECP5_DSPS = 83640, 156


def luts_per_pe() -> None:
    print(
        f"LUTs per PE of an {ROWS}x{COLS} array (Yosys synth, the FPGA builds' PEs: products in LUTs)"
    )
    print(f"{'P':>3} {'ECP5 LUT':>9} {'per PE':>7} {'FF/PE':>6} {'vs P=32':>8}   "
          f"{'iCE40 LUT':>9} {'per PE':>7} {'vs P=32':>8}")  # fmt: skip
    base = {}
    for p in WIDTHS:
        cfg = ArrayConfig(rows=ROWS, cols=COLS, acc_bits=p)
        row = []
        for fam in ("ecp5", "ice40"):
            c = synth_cost(cfg, fam, what="array")
            base.setdefault(fam, c.luts)
            row.append(
                (c.luts, c.luts / (ROWS * COLS), c.ffs / (ROWS * COLS), 1 - c.luts / base[fam])
            )
        (el, epe, eff, esave), (il, ipe, _, isave) = row
        print(f"{p:>3} {el:>9,} {epe:>7.1f} {eff:>6.1f} {100 * esave:>7.1f}%   "
              f"{il:>9,} {ipe:>7.1f} {100 * isave:>7.1f}%", flush=True)  # fmt: skip


def packing() -> None:
    print("\nTwo 4x4 products sharing an activation, ECP5 (Yosys synth), per product:")
    print(
        f"{'build':<8} {'LUT':>5} {'DSP':>5}   16x16 array: {'LUTs':>7} {'DSPs':>5}  fits the 85F?"
    )
    cfg = ArrayConfig()
    for packing in PACKINGS:
        c = synth_block(ProductPair(cfg, packing), "ecp5", what=packing, dsp=packing != "lut")
        lut, dsp = c.luts / 2, c.dsps / 2
        need_lut, need_dsp = lut * 256, dsp * 256
        fits = need_dsp <= ECP5_DSPS and need_lut <= ECP5_LUTS
        print(f"{packing:<8} {lut:>5.1f} {dsp:>5.1f}   {'':>12} {need_lut:>7,.0f} {need_dsp:>5.0f}  "
              f"{'yes' if fits else 'no'}")  # fmt: skip


if __name__ == "__main__":
    t = time.perf_counter()
    luts_per_pe()
    packing()
    print(f"\n({time.perf_counter() - t:.0f} s)")
