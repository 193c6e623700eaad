"""Full FPGA builds (yosys + nextpnr from PyPI) for the figures of the FPGA issue.

- iCE40UP5K (iCEBreaker): array sizes at P = 16 up to the first that does not fit; the
  largest that places and routes, its Fmax against 24 MHz, and LCs per PE.
- ECP5-85F (ULX3S): 16 x 16 at P = 16 against 100 MHz, with LUT, FF, BRAM and DSP use;
  8 x 8 with the PE products in LUTs and in DSP blocks (the packing question at array
  level; bench/fpga_cost.py measures the packed multiplier itself).

Builds are cached in out/fpga-bench (the sweep's cache): a second run prints at once.
Each ECP5 16 x 16 build takes several minutes on one core.
Run: python bench/fpga_builds.py [--only ice40|ecp5]
"""

from __future__ import annotations

import argparse

from oasa.fpga.report import BuildReport
from oasa.fpga.sweep import SweepPoint, run_sweep, table

OUT = "out/fpga-bench"
ICE40 = [SweepPoint("icebreaker", r, c, 16) for r, c in ((2, 2), (3, 3), (4, 3), (4, 4))]
ECP5 = [
    SweepPoint("ulx3s-85f", 16, 16, 16, "lut"),
    SweepPoint("ulx3s-85f", 8, 8, 16, "lut"),
    SweepPoint("ulx3s-85f", 8, 8, 16, "dsp"),
]


def progress(point, rec, i, n) -> None:
    state = "fits" if rec["fits"] else "does not fit"
    print(f"  [{i}/{n}] {point.key}: {state}", flush=True)


def ice40() -> None:
    recs = run_sweep(ICE40, OUT, progress=progress)
    print(table(recs))
    fits = [r for r in recs if r["fits"]]
    if fits:
        best = max(fits, key=lambda r: r["rows"] * r["cols"])
        rep = BuildReport.from_json(best["report"])
        print(
            f"iCE40UP5K: largest array at P=16: {best['rows']}x{best['cols']}, "
            f"{rep.used['LUT']:,} LCs ({100 * rep.utilization('LUT'):.0f} %), "
            f"Fmax {rep.fmax_mhz:.1f} MHz (target {rep.target_mhz:g}), "
            f"{rep.used['LUT'] / rep.pes:.0f} LCs per PE (whole design / PEs)"
        )


def ecp5() -> None:
    recs = run_sweep(ECP5, OUT, progress=progress)
    print(table(recs))
    by = {r["key"]: r for r in recs}
    lut8, dsp8 = by[ECP5[1].key], by[ECP5[2].key]
    if lut8["fits"] and dsp8["fits"]:
        a, b = BuildReport.from_json(lut8["report"]), BuildReport.from_json(dsp8["report"])
        print(
            f"ECP5 8x8, products in LUTs vs DSP blocks: {a.used['LUT']:,} vs {b.used['LUT']:,} "
            f"LUTs ({a.used['LUT'] - b.used['LUT']:+,}), {a.used.get('DSP', 0)} vs "
            f"{b.used.get('DSP', 0)} DSPs, Fmax {a.fmax_mhz:.1f} vs {b.fmax_mhz:.1f} MHz"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("ice40", "ecp5"))
    args = ap.parse_args()
    if args.only in (None, "ice40"):
        ice40()
    if args.only in (None, "ecp5"):
        ecp5()
