"""Accuracy against accumulator width: `oasa sweep` with its defaults, its plots copied into
docs/figures/, and its section of docs/results.md (``docs/results/accuracy_sweep.md``).

Runs ``oasa sweep -o out/bench/sweep`` (every quantizer, P = 8..24, both overflow modes,
PTQ). The folder is the sweep's cache: points whose code has not changed since an earlier
run are read from it, and the section says how many. Then copies points.csv, accuracy.png
and overflow.png to docs/figures/sweep_*.

    python bench/accuracy_sweep.py [--jobs J]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from pathlib import Path

from results import FIGURES, ROOT, Section, oasa_json

OUT = ROOT / "out" / "bench" / "sweep"
SHOWN = range(10, 17)  # the widths in the table (the CSV and the plot have 8..24)
CERTIFIED_METHODS = ("exact", "a2q+", "a2q")


def load_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    for r in rows:
        r["acc_bits"] = int(r["acc_bits"])
        r["accuracy"] = float(r["accuracy"])
        r["certified"] = r["certified"] == "True"
        r["flagged_rate"] = float(r["flagged_rate"])
    return rows


def first_p(rows, method, mode, test) -> dict | None:
    """The row of the smallest P at which ``test(row)`` holds."""
    pts = sorted((r for r in rows if r["method"] == method and r["overflow"] == mode),
                 key=lambda r: r["acc_bits"])  # fmt: skip
    return next((r for r in pts if test(r)), None)


def reading(rows: list[dict], float_acc: float) -> list[str]:
    """Sentences computed from the points: where each method gets within a point of float."""
    near = float_acc - 1.0
    out = []
    for method in CERTIFIED_METHODS:
        pts = [r for r in rows if r["method"] == method and r["overflow"] == "wrap"]
        always = all(r["certified"] for r in pts)
        what = "certified at every P" if always else "certified where marked"
        r = first_p(rows, method, "wrap", lambda r: r["certified"] and r["accuracy"] >= near)
        if r:
            out.append(
                f"- `{method}` ({what}) first comes within one point of float at "
                f"P = {r['acc_bits']} ({r['accuracy']:.1f} %)."
            )
        elif pts:
            best = max(pts, key=lambda r: (r["accuracy"], -r["acc_bits"]))
            out.append(
                f"- `{method}` ({what}) stays more than one point below float: at best "
                f"{best['accuracy']:.1f} % (P = {best['acc_bits']})."
            )
    by = {(r["method"], r["overflow"], r["acc_bits"]): r for r in rows}
    clean = first_p(rows, "rtn", "wrap", lambda r: r["flagged_rate"] == 0)
    gaps = [
        (by[("rtn", "saturate", r["acc_bits"])]["accuracy"] - r["accuracy"], r["acc_bits"])
        for r in rows
        if r["method"] == "rtn"
        and r["overflow"] == "wrap"
        and r["flagged_rate"] > 0
        and ("rtn", "saturate", r["acc_bits"]) in by
    ]
    if clean and gaps:
        _, p = max(gaps)
        w, s = by[("rtn", "wrap", p)], by[("rtn", "saturate", p)]
        out.append(
            f"- `rtn` (round to nearest, no bound) overflows on the test images below "
            f"P = {clean['acc_bits']}, and the overflow mode decides what that costs: at "
            f"P = {p} wraparound gives {w['accuracy']:.1f} %, saturation {s['accuracy']:.1f} %."
        )
    cert = first_p(rows, "rtn", "wrap", lambda r: r["certified"])
    if cert:
        out.append(f"- `rtn`'s weights happen to be certified from P = {cert['acc_bits']}.")
    oaq = first_p(rows, "oaq", "wrap", lambda r: r["flagged_rate"] == 0 and r["accuracy"] >= near)
    oaq_cert = first_p(rows, "oaq", "wrap", lambda r: r["certified"])
    if oaq:
        tail = f"; it is certified only from P = {oaq_cert['acc_bits']}" if oaq_cert else ""
        out.append(
            f"- `oaq` (data-dependent guarantee) is within one point of float with no overflow "
            f"on the test images from P = {oaq['acc_bits']} ({oaq['accuracy']:.1f} %){tail}."
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    section = Section("accuracy_sweep", "Accuracy against accumulator width")
    result = oasa_json("sweep", "-o", str(OUT), "--jobs", str(args.jobs), "--quiet")
    FIGURES.mkdir(parents=True, exist_ok=True)
    for src, dst in (("points.csv", "sweep_points.csv"), ("accuracy.png", "sweep_accuracy.png"),
                     ("overflow.png", "sweep_overflow.png")):  # fmt: skip
        shutil.copyfile(OUT / src, FIGURES / dst)
    float_acc = result["float_accuracy"]
    rows = load_rows(FIGURES / "sweep_points.csv")
    cache = f" This run computed {result['computed']} points in {result['seconds']:.0f} s" + (
        f" and read {result['cached']} from the cache (points of the same code, "
        "computed by an earlier run)."
        if result["cached"]
        else "."
    )

    section.para(
        "`oasa sweep` with its defaults: the digits network quantized by every method at "
        "every P from 8 to 24 (W4A4, dyadic scales, PTQ from the seed-0 float model), each "
        "evaluated on the 540 test images on integer arithmetic (the golden model) in both "
        "overflow modes (each point is quantized once, for wrap, and run in both)."
        f" Float accuracy {float_acc:.2f} %." + cache
    )
    series = sorted({(r["method"], r["overflow"]) for r in rows})
    by = {(r["method"], r["overflow"], r["acc_bits"]): r for r in rows}
    table = []
    for method, mode in series:
        cells = []
        for p in SHOWN:
            r = by.get((method, mode, p))
            if r is None:
                cells.append("-")
                continue
            mark = " ✓" if r["certified"] else (" *" if r["flagged_rate"] > 0 else "")
            cells.append(f"{r['accuracy']:.1f}{mark}")
        table.append([method, mode, *cells])
    section.table(["method", "mode", *(f"P={p}" for p in SHOWN)], table)
    section.para(
        "Accuracy in %. ✓: certified overflow-free at that P (no input can overflow); "
        "`*`: some dot products overflowed on the test images. Every point, P = 8..24, with "
        "its overflow rates and the minimum safe P of each layer: "
        "[sweep_points.csv](figures/sweep_points.csv)."
    )
    section.add(*reading(rows, float_acc), "")
    section.figure(FIGURES / "sweep_accuracy.png", "accuracy against accumulator width")
    section.figure(FIGURES / "sweep_overflow.png", "overflow rate against accumulator width")
    section.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
