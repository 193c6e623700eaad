"""``oasa explore`` on ResNet-50 at 224 x 224: 3 arrays x 2 dataflows x 3 accumulator
widths, its wall time from an empty synthesis cache (a cache folder of its own, so every
candidate is synthesized), again with every synthesis cached (goal: under 60 s on 2 cores),
and with ``--no-cost``; and the totals, the answer to "which array for this network".
Writes ``docs/results/explore.md`` and the command's tables and plots in
``docs/figures/explore_resnet50``.

    python bench/explore_speed.py [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from results import FIGURES, ROOT, Section, oasa_json

NET = ROOT / "bench" / "topologies" / "Resnet50.csv"
GRID = ["--arrays", "8x8,16x16,32x32", "--dataflows", "os,ws", "--acc-bits", "12,16,24"]
GOAL_SECONDS = 60.0


#: What the bench keeps of the command's outputs (explore.json repeats them, at 400 KB).
KEPT = ("totals.csv", "layers.csv", "cycles.png", "pareto.png")


def cached_syntheses(cache: Path) -> int:
    return len(list((cache / "synth").glob("*.json")))


def timed(*args: str) -> tuple[dict, float]:
    started = time.perf_counter()
    result = oasa_json(*args)
    return result, time.perf_counter() - started


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="syntheses at once (default 2)")
    args = ap.parse_args(argv)
    section = Section("explore", "Which array for ResNet-50 (`oasa explore`)")
    tmp = Path(tempfile.mkdtemp(prefix="oasa-explore-bench-"))
    out = FIGURES / "explore_resnet50"

    cache = tmp / "cache"
    os.environ["OASA_CACHE"] = str(cache)  # the commands below inherit it
    _, first_wall = timed(
        "explore", str(NET), *GRID, "--jobs", str(args.jobs), "-o", str(tmp / "a")
    )
    ran = cached_syntheses(cache)
    warm, warm_wall = timed("explore", str(NET), *GRID, "-o", str(tmp / "b"))
    assert cached_syntheses(cache) == ran, "the second run synthesized again"
    _, nocost_wall = timed("explore", str(NET), *GRID, "--no-cost", "-o", str(tmp / "c"))
    out.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        shutil.copyfile(tmp / "b" / name, out / name)
    shutil.rmtree(tmp)

    n = len(warm["totals"])
    verdict = "met" if warm_wall < GOAL_SECONDS else "**not met**"
    section.para(
        f"`oasa explore` on SCALE-Sim's ResNet-50 topology ({warm['layers']} weighted layers, "
        f"224 x 224) over {n} candidates (8x8, 16x16, 32x32; output- and weight-stationary; "
        "P = 12, 16, 24), every layer's calls counted by the exact cycle model and every "
        "candidate's array synthesized by Yosys for the ECP5. Wall time of the whole command, "
        "process start included:"
    )
    section.table(
        ["run", "syntheses run", "wall time"],
        [
            [f"empty synthesis cache (`--jobs {args.jobs}`)", ran, f"{first_wall:.1f} s"],
            ["every synthesis cached", 0, f"{warm_wall:.1f} s"],
            ["`--no-cost` (cycles only)", 0, f"{nocost_wall:.1f} s"],
        ],
    )
    section.para(
        f"Goal: under {GOAL_SECONDS:.0f} s on 2 cores with the cache warm: {verdict}. A "
        "synthesis is cached under the configuration, the source of the array and its PEs "
        "and the Yosys version, so a change to the array's code synthesizes every "
        "candidate again."
    )
    best = min(warm["totals"], key=lambda t: t["cycles"])
    rows = []
    for t in sorted(warm["totals"], key=lambda t: (t["rows"], t["dataflow"], t["acc_bits"])):
        rows.append(
            [
                f"{t['rows']}x{t['cols']}",
                t["dataflow"],
                t["acc_bits"],
                f"{t['calls']:,}",
                f"{t['cycles']:,}",
                f"{100 * t['utilization']:.1f} %",
                f"{t['luts']:,}",
                f"{t['ffs']:,}",
            ]
        )
    section.para("Totals per image (the command's own table):")
    section.table(
        ["array", "dataflow", "P", "calls", "cycles", "utilization", "LUTs", "flip-flops"], rows
    )
    section.para(
        f"Fewest cycles: {best['rows']}x{best['cols']} {best['dataflow']} "
        f"({best['cycles']:,} cycles, {100 * best['utilization']:.1f} % utilization). "
        "Every layer of every candidate: "
        f"[`layers.csv`](figures/explore_resnet50/layers.csv); the plots below are the "
        "command's own."
    )
    section.figure(out / "cycles.png", "cycles against array size per dataflow")
    section.figure(out / "pareto.png", "cycles against LUTs")
    section.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
