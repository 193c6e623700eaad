"""The hardware side of the accumulator sweep, and whether packing products pays off.

1. LUTs per PE as P goes from 32 down to 12: an 8 x 8 array (with its drain registers and
   skew) synthesized by Yosys for the ECP5 and the iCE40, divided by its 64 PEs; the
   saving against P = 32 in the same run.
2. Two 4-bit products (shared activation) built three ways, on the ECP5: two LUT
   multipliers, two DSP blocks, one DSP block packed with both (``oasa.fpga.packing``);
   per product: LUTs and DSP blocks, and what a 16 x 16 array would need of the
   LFE5U-85F (83,640 LUTs, 156 MULT18X18D).

Synthesis only (no place and route): seconds per point, a few minutes in all. Prints the
tables and writes its section of docs/results.md (``docs/results/fpga_cost.md``).

    python bench/fpga_cost.py
"""

from __future__ import annotations

from results import Section

from oasa.config import ArrayConfig
from oasa.fpga.cost import synth_block, synth_cost
from oasa.fpga.packing import PACKINGS, ProductPair

WIDTHS = [32, 28, 24, 20, 16, 14, 12]
ROWS = COLS = 8
PES = ROWS * COLS
ECP5_LUTS, ECP5_DSPS = 83640, 156
ARRAY_PES = 256  # a 16 x 16 array


def luts_per_pe(section: Section) -> None:
    print(f"LUTs per PE of an {ROWS}x{COLS} array (Yosys synth, products in LUTs)")
    costs = {}
    for p in WIDTHS:
        cfg = ArrayConfig(rows=ROWS, cols=COLS, acc_bits=p)
        for fam in ("ecp5", "ice40"):
            costs[fam, p] = synth_cost(cfg, fam, what="array")
        e, i = costs["ecp5", p], costs["ice40", p]
        print(
            f"  P={p:>2}: ECP5 {e.luts / PES:6.1f} LUT/PE {e.ffs / PES:6.1f} FF/PE, "
            f"iCE40 {i.luts / PES:6.1f} LUT4/PE",
            flush=True,
        )
    section.para(
        f"LUTs per PE as P falls: an {ROWS} x {COLS} array synthesized bare by Yosys (no "
        "place and route), the PEs with their products in LUTs as the FPGA builds make them "
        "(on the ECP5 with the replicated marker registers kept apart, as the board build "
        f"does), divided by its {PES} PEs. An ECP5 carry cell counts as two LUTs."
    )
    section.table(
        ["", *(f"P={p}" for p in WIDTHS)],
        [
            ["ECP5 LUTs / PE", *(f"{costs['ecp5', p].luts / PES:.1f}" for p in WIDTHS)],
            ["ECP5 flip-flops / PE", *(f"{costs['ecp5', p].ffs / PES:.1f}" for p in WIDTHS)],
            ["iCE40 LUT4s / PE", *(f"{costs['ice40', p].luts / PES:.1f}" for p in WIDTHS)],
        ],
    )
    hi, lo = max(WIDTHS), min(WIDTHS)
    e_hi, e_lo = costs["ecp5", hi], costs["ecp5", lo]
    i_hi, i_lo = costs["ice40", hi], costs["ice40", lo]
    bits = (hi - lo) * PES
    section.para(
        f"From P = {hi} to {lo} a PE loses {100 * (1 - e_lo.luts / e_hi.luts):.0f} % of its "
        f"LUTs on the ECP5 ({100 * (1 - i_lo.luts / i_hi.luts):.0f} % on the iCE40) and "
        f"{100 * (1 - e_lo.ffs / e_hi.ffs):.0f} % of its flip-flops: each accumulator bit "
        f"costs about {(e_hi.luts - e_lo.luts) / bits:.1f} LUTs and "
        f"{(e_hi.ffs - e_lo.ffs) / bits:.1f} flip-flops per PE (adder, accumulator, drain "
        "shadow and pipeline, the initial-value chain that lets a dot product continue "
        "across calls, and the skew lines of the last two)."
    )


def packing(section: Section) -> None:
    print("Two 4x4 products sharing an activation, ECP5 (Yosys synth), per product")
    cfg = ArrayConfig()
    rows = []
    for how in PACKINGS:
        c = synth_block(ProductPair(cfg, how), "ecp5", what=how, dsp=how != "lut")
        lut, dsp = c.luts / 2, c.dsps / 2
        need_lut, need_dsp = lut * ARRAY_PES, dsp * ARRAY_PES
        fits = need_dsp <= ECP5_DSPS and need_lut <= ECP5_LUTS
        print(f"  {how:<7} {lut:5.1f} LUT {dsp:4.1f} DSP per product", flush=True)
        rows.append(
            [how, f"{lut:.1f}", f"{dsp:.1f}", f"{need_lut:,.0f}", f"{need_dsp:.0f}",
             "yes" if fits else "no"]
        )  # fmt: skip
    section.para(
        "Two 4 x 4 products sharing an activation, synthesized for the ECP5 three ways: two "
        "LUT multipliers (`lut`), two DSP blocks (`dsp`), and one DSP block computing "
        "a·(w1 + w2·2^8) with a borrow correction in LUTs (`packed`, `oasa.fpga.packing`). "
        f"Per product, and what a 16 x 16 array would need of the LFE5U-85F ({ECP5_LUTS:,} "
        f"LUTs, {ECP5_DSPS} MULT18X18D):"
    )
    section.table(
        ["build", "LUTs / product", "DSP blocks / product", "16 x 16: LUTs", "16 x 16: DSPs",
         "fits the 85F"],
        rows,
    )  # fmt: skip


def main() -> None:
    section = Section("fpga_cost", "FPGA cost of the array (synthesis)")
    luts_per_pe(section)
    packing(section)
    section.write()


if __name__ == "__main__":
    main()
