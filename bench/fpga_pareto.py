"""Accuracy against hardware: `oasa fpga pareto` on the accuracy sweep, its plot copied into
docs/figures/, and its section of docs/results.md (``docs/results/fpga_pareto.md``).

Joins the accuracy sweep of ``bench/accuracy_sweep.py`` (``out/bench/sweep/points.csv``,
or the copy in docs/figures/ when that folder is gone) with the LUTs of an 8 x 8 array on
the ECP5 at each P (a Yosys synthesis per width, cached in ``out/bench/pareto``).

    python bench/fpga_pareto.py
"""

from __future__ import annotations

import csv
import json
import shutil

from results import FIGURES, ROOT, Section, oasa_json

SWEEP = ROOT / "out" / "bench" / "sweep"
OUT = ROOT / "out" / "bench" / "pareto"


def main() -> None:
    section = Section("fpga_pareto", "Accuracy against FPGA cost")
    points_csv = SWEEP / "points.csv"
    if not points_csv.exists():
        points_csv = FIGURES / "sweep_points.csv"
    result = oasa_json("fpga", "pareto", "--accuracy", str(points_csv), "-o", str(OUT))
    shutil.copyfile(OUT / "pareto.csv", FIGURES / "fpga_pareto.csv")
    shutil.copyfile(OUT / "pareto.png", FIGURES / "fpga_pareto.png")
    points = result["points"]
    float_acc = None
    meta = points_csv.with_name("points.json")
    if meta.exists():
        float_acc = json.loads(meta.read_text()).get("float_accuracy")

    section.para(
        "`oasa fpga pareto`: every point of the accuracy sweep above placed at the LUTs of "
        "an 8 x 8 array at its P on the ECP5 (a Yosys synthesis of the bare array, products "
        "in LUTs). A point is on the front when no other point is at least as accurate for "
        "no more LUTs; the certified front considers only points no input can overflow."
    )
    front = sorted((p for p in points if p["on_certified_front"]), key=lambda p: p["luts"])
    rows: dict[tuple, list] = {}  # wrap and saturate often coincide: one row, both named
    for p in front:
        label = f"{p['method']} ({p['overflow']})"
        key = (p["acc_bits"], p["luts"], round(p["accuracy"], 1))
        if label not in rows.setdefault(key, []):
            rows[key].append(label)
    section.table(
        ["P", "array LUTs", "accuracy %", "method (overflow mode)"],
        [[pb, f"{luts:,}", f"{acc:.1f}", ", ".join(m)] for (pb, luts, acc), m in rows.items()],
    )
    luts16 = next((p["luts"] for p in points if p["acc_bits"] == 16), None)
    if float_acc is None or not luts16:
        float_acc = None
    near = [p for p in front if float_acc is not None and p["accuracy"] >= float_acc - 1.0]
    if near:
        best = min(near, key=lambda p: p["luts"])
        section.para(
            f"The cheapest certified point within one point of float ({float_acc:.2f} %) "
            f"is `{best['method']}` at P = {best['acc_bits']}: {best['accuracy']:.1f} % "
            f"for {best['luts']:,} array LUTs, against {luts16:,} at P = 16 "
            f"({100 * (1 - best['luts'] / luts16):.0f} % fewer)."
        )
    with points_csv.open(newline="") as f:
        flagged = {
            (r["method"], r["overflow"], int(r["acc_bits"])): float(r["flagged_rate"])
            for r in csv.DictReader(f)
            if r["status"] == "ok"
        }
    uncert = [
        p
        for p in points
        if p["on_front"]
        and not p["certified"]
        and float_acc is not None
        and p["accuracy"] >= float_acc - 1.0
    ]
    if uncert:
        cheap = min(uncert, key=lambda p: p["luts"])
        rate = flagged.get((cheap["method"], cheap["overflow"], cheap["acc_bits"]))
        seen = (
            "with no overflow on the test images"
            if rate == 0
            else f"with {100 * (rate or 0):.2g} % of the test dot products overflowing"
        )
        section.para(
            f"Without the guarantee, the cheapest point within one point of float is "
            f"`{cheap['method']}` ({cheap['overflow']}) at P = {cheap['acc_bits']}: "
            f"{cheap['accuracy']:.1f} % for {cheap['luts']:,} LUTs, {seen}, but not "
            "certified for every input."
        )
    section.para("Every point with its LUTs: [fpga_pareto.csv](figures/fpga_pareto.csv).")
    section.figure(FIGURES / "fpga_pareto.png", "accuracy against LUTs")
    section.write()


if __name__ == "__main__":
    main()
