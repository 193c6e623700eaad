"""Sweeps on Dask: the default sweep on ``--cluster local:2`` against ``--jobs 2`` on this
machine, and points per hour per worker for PTQ, QAT and FPGA points, with what that gives
for a 1,000-point QAT sweep on 64 workers. Writes ``docs/results/cluster.md``.

Every run starts from an empty output folder (no point comes from a cache), one after the
other, so the two default sweeps see the same machine.

    python bench/cluster_sweep.py [--qat-epochs 10] [--skip-fpga]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import ROOT, Section

OASA = [sys.executable, "-m", "oasa.cli"]


def run(*args: str) -> tuple[dict, float]:
    """``oasa ARGS --json``: its JSON result and the wall time of the whole command."""
    started = time.perf_counter()
    proc = subprocess.run([*OASA, *args, "--json"], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"oasa {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout), wall


def values(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qat-epochs", type=int, default=10)
    ap.add_argument("--skip-fpga", action="store_true", help="no FPGA build (minutes)")
    args = ap.parse_args(argv)
    section = Section("cluster", "Sweeps on a Dask cluster")
    tmp = Path(tempfile.mkdtemp(prefix="oasa-cluster-bench-"))

    print("default sweep, --jobs 2 ...", flush=True)
    local, local_wall = run("sweep", "-o", str(tmp / "jobs2"), "--jobs", "2", "--quiet")
    print("default sweep, --cluster local:2 ...", flush=True)
    dask, dask_wall = run("sweep", "-o", str(tmp / "local2"), "--cluster", "local:2", "--quiet")
    points = len(local["points"])
    assert local["computed"] == dask["computed"] == points, "a point came from a cache"
    same = values(local["points"]) == values(dask["points"])
    overhead = (dask_wall - local_wall) / points
    ptq_rate = 3600 * points / (2 * local["seconds"])

    print(f"QAT points ({args.qat_epochs} epochs), --cluster local:2 ...", flush=True)
    qat, _ = run(
        "sweep", "-o", str(tmp / "qat"), "--cluster", "local:2", "--quiet", "--methods",
        "exact,a2q", "--acc-bits", "12,16", "--qat-epochs", str(args.qat_epochs),
    )  # fmt: skip
    qat_points = len(qat["points"])
    qat_rate = 3600 * qat_points / (2 * qat["seconds"])

    fpga_row = None
    if not args.skip_fpga:
        print("FPGA point (iCE40 2 x 2), --cluster local:1 ...", flush=True)
        fpga, fpga_wall = run(
            "fpga", "sweep", "-o", str(tmp / "fpga"), "--cluster", "local:1", "--boards",
            "icebreaker", "--sizes", "2x2", "--acc-bits", "16",
        )  # fmt: skip
        assert fpga["ok"], fpga
        fpga_row = ["FPGA build (iCE40UP5K, 2 x 2: synthesis, place and route)", 1,
                    f"{fpga_wall:.0f} s", f"{3600 / fpga_wall:.0f}"]  # fmt: skip

    section.para(
        f"The default `oasa sweep` ({points} points: 5 methods, P = 8..24, both overflow "
        "modes, PTQ) from an empty folder, once on two local processes and once on a local "
        "Dask cluster of two worker processes, one after the other on this machine; wall time "
        "of the whole command (loading the digits workload, starting the pool or the cluster, "
        "the points, the outputs)."
    )
    section.table(
        ["run", "wall time", "points computed", "seconds in the points' loop"],
        [
            ["`--jobs 2`", f"{local_wall:.1f} s", points, f"{local['seconds']:.1f} s"],
            ["`--cluster local:2`", f"{dask_wall:.1f} s", points, f"{dask['seconds']:.1f} s"],
        ],
    )
    verdict = "within" if dask_wall <= 1.1 * local_wall else "more than"
    section.para(
        f"Dask's overhead: {dask_wall - local_wall:+.1f} s in all, {1000 * overhead:+.0f} ms "
        f"per point, {100 * (dask_wall / local_wall - 1):+.1f} % of the local run's wall time "
        f"({verdict} the 10 % goal). The two runs' rows are "
        + ("identical on every value but the seconds." if same else "**not** identical.")
    )
    section.para(
        "Points per hour per worker, measured here (one worker = one process on one core; a "
        "QAT or PTQ task quantizes once and evaluates both overflow modes, two points):"
    )
    table = [
        ["PTQ point (the default sweep)", points, f"{2 * local['seconds'] / points:.2f} s",
         f"{ptq_rate:,.0f}"],
        [f"QAT point ({args.qat_epochs} epochs; exact and a2q at P = 12, 16)", qat_points,
         f"{2 * qat['seconds'] / qat_points:.1f} s", f"{qat_rate:,.0f}"],
    ]  # fmt: skip
    if fpga_row:
        table.append(fpga_row)
    section.table(
        ["point", "points measured", "worker time per point", "points per hour per worker"],
        table,
    )
    per_qat = 2 * qat["seconds"] / qat_points
    waves = math.ceil(1000 / 64)
    section.para(
        f"On paper, a 1,000-point QAT sweep ({args.qat_epochs} epochs) on 64 workers: "
        f"{waves} waves of {per_qat:.1f} s, about {waves * per_qat / 60:.1f} min (plus the "
        f"cluster's start and {max(overhead, 0) * 1000 / 64:.1f} s of Dask overhead at the rate "
        f"measured above), against {1000 * per_qat / 3600:.1f} h on one core."
    )
    section.write()
    print(section.text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
