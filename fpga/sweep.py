"""Resources and Fmax over array sizes and accumulator widths, per board.

Every point is a full build (synthesis, place and route), in local processes or on Dask
workers (:mod:`oasa.points`); each result is appended to ``builds.jsonl`` in the output
folder as soon as it is known, so an interrupted sweep resumes where it stopped and a larger
sweep only builds the new points. A point that does not fit the part is recorded as such,
with the tool's reason; a build that fails otherwise (a tool crash, a lost worker) is
recorded as failed and built again by the next sweep.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from oasa.config import ConfigError
from oasa.fpga.boards import Board, board_config, get_board
from oasa.fpga.build import BuildError, build_board
from oasa.fpga.report import BuildReport
from oasa.points import Failure, Where, run_points

__all__ = [
    "DEFAULT_GRID",
    "SweepPoint",
    "design_fingerprint",
    "load_results",
    "run_sweep",
    "summarize",
    "write_outputs",
]

#: The modules whose source makes the bitstream: a cached build made from other source is
#: stale (its Fmax and resources describe a design that no longer exists). With the report
#: parser, whose figures the cache keeps, and the synthesis of the array's cost (the
#: Pareto plot's cache uses the same fingerprint).
DESIGN_MODULES = (
    "oasa.config",
    "oasa.errors",
    *(f"oasa.sim.{n}" for n in ("backends.words", "cycles", "tiling")),
    *(
        f"oasa.hw.{n}"
        for n in (
            "accelerator", "array", "core", "delays", "layouts", "output_stage", "pe", "registers",
            "replicas", "sequencer", "ws_array", "ws_sequencer",
        )
    ),
    *(
        f"oasa.fpga.{n}"
        for n in (
            "boards", "build", "clocking", "cost", "ecp5_dsp", "hostlink", "multipliers",
            "protocol", "report", "soc", "uart",
        )
    ),
)  # fmt: skip


def design_fingerprint() -> str:
    """A short hash of the design's source (:data:`DESIGN_MODULES`)."""
    h = hashlib.sha256()
    for name in DESIGN_MODULES:
        h.update(Path(importlib.import_module(name).__file__).read_bytes())
    return h.hexdigest()[:12]


@dataclass(frozen=True, order=True)
class SweepPoint:
    board: str
    rows: int
    cols: int
    acc_bits: int
    multiplier: str = "lut"
    dataflow: str = "os"

    @property
    def key(self) -> str:
        flow = "" if self.dataflow == "os" else f"_{self.dataflow}"
        return f"{self.board}_{self.rows}x{self.cols}_p{self.acc_bits}_{self.multiplier}{flow}"

    @property
    def pes(self) -> int:
        return self.rows * self.cols


#: Default sizes (at P = 16) and widths (at the reference size) per board.
DEFAULT_GRID: dict[str, dict] = {
    "icebreaker": {
        # Columns cost an output-stage lane each (~220 LCs), rows only PEs: on the UP5K
        # tall arrays fit more PEs; 10 x 2 is the first that does not fit.
        "sizes": [(2, 2), (3, 3), (4, 3), (5, 3), (4, 4), (8, 2), (9, 2), (10, 2)],
        "widths": [12, 16, 24, 32],
        "at": (4, 3),
    },
    "ulx3s-85f": {
        "sizes": [(4, 4), (8, 8), (12, 12), (16, 16)],
        "widths": [12, 16, 24, 32],
        "at": (8, 8),
    },
}


def grid_points(
    boards: Iterable[str],
    sizes: list[tuple[int, int]] | None = None,
    widths: list[int] | None = None,
    multiplier: str = "lut",
    dataflow: str = "os",
) -> list[SweepPoint]:
    """Sizes at P = 16 and widths at the board's reference size (or at every size given)."""
    points: set[SweepPoint] = set()
    for name in boards:
        get_board(name)
        grid = DEFAULT_GRID[name]
        for r, c in sizes or grid["sizes"]:
            points.add(SweepPoint(name, r, c, 16, multiplier, dataflow))
        at = sizes or [grid["at"]]
        for r, c in at:
            for p in widths or grid["widths"]:
                points.add(SweepPoint(name, r, c, p, multiplier, dataflow))
    return sorted(points, key=lambda p: (p.board, p.pes, p.acc_bits))


def load_results(out: Path, design: str | None = None, seed: int | None = None) -> dict[str, dict]:
    """Finished points by key, from ``builds.jsonl`` (a torn last line is ignored); with
    ``design`` (``seed``), only those built from that :func:`design_fingerprint` (with
    that placement seed). Failed builds are not finished: the next sweep builds them."""
    path = Path(out) / "builds.jsonl"
    results: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if design is not None and rec.get("design") != design:
                continue
            if seed is not None and rec.get("seed") != seed:
                continue
            if rec.get("status") == "failed":
                results.pop(rec["key"], None)
            else:
                results[rec["key"]] = rec
    return results


def run_sweep(
    points: list[SweepPoint],
    out: str | Path,
    *,
    seed: int = 1,
    progress: Callable[[SweepPoint, dict, int, int], None] | None = None,
    where: Where | None = None,
    build: Callable[[SweepPoint, Path | None, int], dict] | None = None,
) -> list[dict]:
    """Build every point not yet in ``out``'s cache for the current design (on ``where``:
    by default one after the other, here); return all their records, in ``points`` order.
    Records of other designs stay in the file (an older one is found again if the source
    goes back to it). Local builds keep their folders in ``out/builds``; Dask workers keep
    theirs (only the records come back). ``build`` replaces the board build (tests)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    where = where or Where()
    design = design_fingerprint()
    records = load_results(out, design, seed)
    todo = [p for p in points if p.key not in records]
    count = 0
    for point in points:
        if point.key in records:
            count += 1
            if progress:
                progress(point, records[point.key], count, len(points))
    items = [(p, None if where.dask else out / "builds" / p.key, seed) for p in todo]
    results = run_points(build or _build_point, items, where=where, version=design_fingerprint)
    with contextlib.closing(results):
        for i, rec in results:
            point = todo[i]
            if isinstance(rec, Failure):
                rec = {"key": point.key, **asdict(point), "fits": False, "status": "failed",
                       "error": rec.error}  # fmt: skip
            rec.update(design=design, seed=seed)
            with open(out / "builds.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            records[point.key] = rec
            count += 1
            if progress:
                progress(point, rec, count, len(points))
    return [records[p.key] for p in points]


def _build_point(point: SweepPoint, build_dir: Path | None, seed: int) -> dict:
    """One build's record; ``build_dir`` None: a folder of this machine's cache (a Dask
    worker keeps its builds). A tool crash raises: it says nothing about fitting."""
    if build_dir is None:
        from oasa.files import cache_dir

        build_dir = cache_dir() / "fpga-builds" / point.key
    board = get_board(point.board)
    rec = {"key": point.key, **asdict(point)}
    try:
        cfg = board_config(board, rows=point.rows, cols=point.cols, acc_bits=point.acc_bits,
                           dataflow=point.dataflow)  # fmt: skip
        report = build_board(board, cfg, build_dir, seed=seed, multiplier=point.multiplier)
    except BuildError as e:
        if not e.placed:  # a tool crash says nothing about fitting: not cached as a fit
            raise
        return {**rec, "fits": False, "error": str(e)}
    except ConfigError as e:
        return {**rec, "fits": False, "error": str(e)}
    return {**rec, "fits": True, "report": report.to_json()}


def _row(rec: dict) -> dict:
    row = {k: rec[k] for k in ("board", "rows", "cols", "acc_bits", "multiplier", "fits")}
    row["dataflow"] = rec.get("dataflow", "os")  # a record without one is output-stationary
    row["pes"] = rec["rows"] * rec["cols"]
    if rec["fits"]:
        rep = BuildReport.from_json(rec["report"])
        for what in ("LUT", "FF", "BRAM", "DSP"):
            row[what.lower()] = rep.used.get(what, "")
        row["lut_pct"] = round(100 * rep.utilization("LUT"), 1)
        row["fmax_mhz"] = rep.fmax_mhz
        row["target_mhz"] = rep.target_mhz
        row["timing_met"] = rep.timing_met
        row["build_s"] = rep.seconds
    else:
        row["error"] = rec.get("error", "")
    return row


def summarize(records: list[dict]) -> dict[str, dict]:
    """Per board: the largest array that fits (at P = 16, with timing met; of the
    output-stationary builds when there are some, so that sizes compare in one dataflow),
    and every point's row."""
    out: dict[str, dict] = {}
    for name in sorted({r["board"] for r in records}):
        rows = [_row(r) for r in records if r["board"] == name]
        flows = {r["dataflow"] for r in rows}
        flow = "os" if "os" in flows else min(flows)
        fit16 = [r for r in rows if r["fits"] and r["acc_bits"] == 16 and r["timing_met"]
                 and r["dataflow"] == flow]  # fmt: skip
        largest = max(fit16, key=lambda r: (r["pes"], r["rows"]), default=None)
        out[name] = {"largest_p16": largest, "points": rows}
    return out


def table(records: list[dict]) -> str:
    lines = [
        f"{'board':<11} {'array':>6} {'flow':>4} {'P':>3} {'mult':>4} {'LUT/LC':>8} {'FF':>7} {'BRAM':>5} {'DSP':>4} "
        f"{'LUT %':>6} {'Fmax':>7} {'target':>7}  verdict"
    ]
    for r in sorted(
        (_row(r) for r in records), key=lambda r: (r["board"], r["pes"], r["acc_bits"])
    ):
        size = f"{r['rows']}x{r['cols']}"
        if not r["fits"]:
            lines.append(
                f"{r['board']:<11} {size:>6} {r['dataflow']:>4} {r['acc_bits']:>3} "
                f"{r['multiplier']:>4}  does not fit: "
                f"{r['error'].split('ERROR: ')[-1][:70]}"
            )
            continue
        verdict = "ok" if r["timing_met"] else "timing NOT met"
        ff = f"{r['ff']:,}" if r["ff"] != "" else "-"  # iCE40: flip-flops sit in the LCs
        lines.append(
            f"{r['board']:<11} {size:>6} {r['dataflow']:>4} {r['acc_bits']:>3} {r['multiplier']:>4} "
            f"{r['lut']:>8,} {ff:>7} "
            f"{r['bram']:>5} {r['dsp']:>4} {r['lut_pct']:>5.1f}% {r['fmax_mhz']:>6.1f}M "
            f"{r['target_mhz']:>6.1f}M  {verdict}"
        )
    return "\n".join(lines)


def write_outputs(records: list[dict], out: str | Path) -> list[Path]:
    """fpga_sweep.csv, fpga_sweep.json and fpga_sweep.png in ``out``."""
    out = Path(out)
    rows = [_row(r) for r in records]
    fields = [
        "board", "rows", "cols", "pes", "dataflow", "acc_bits", "multiplier", "fits", "lut", "ff", "bram",
        "dsp", "lut_pct", "fmax_mhz", "target_mhz", "timing_met", "build_s", "error",
    ]  # fmt: skip
    with open(out / "fpga_sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})
    (out / "fpga_sweep.json").write_text(json.dumps(summarize(records), indent=2) + "\n")
    png = out / "fpga_sweep.png"
    plot(records, png)
    return [out / "fpga_sweep.csv", out / "fpga_sweep.json", png]


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One line per board: output-stationary with LUT products; the others are in the table.
    rows = [_row(r) for r in records
            if r["fits"] and r["multiplier"] == "lut" and r.get("dataflow", "os") == "os"]  # fmt: skip
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in sorted({r["board"] for r in rows}):
        board: Board = get_board(name)
        unit = "LC" if board.family == "ice40" else "LUT"
        at16 = sorted(
            (r for r in rows if r["board"] == name and r["acc_bits"] == 16), key=lambda r: r["pes"]
        )
        if at16:
            line = ax1.plot(
                [r["pes"] for r in at16],
                [100 * r["lut"] / board.resources[unit] for r in at16],
                "o-",
                label=f"{name} ({board.part})",
            )
            for r in at16:
                ax1.annotate(
                    f"{r['rows']}x{r['cols']}\n{r['fmax_mhz']:.0f} MHz",
                    (r["pes"], 100 * r["lut"] / board.resources[unit]),
                    fontsize=7,
                    color=line[0].get_color(),
                )
        at = DEFAULT_GRID.get(name, {}).get("at")
        widths = sorted(
            (r for r in rows if r["board"] == name and (r["rows"], r["cols"]) == tuple(at or ())),
            key=lambda r: r["acc_bits"],
        )
        if len(widths) > 1:
            ax2.plot(
                [r["acc_bits"] for r in widths],
                [r["lut"] / r["pes"] for r in widths],
                "o-",
                label=f"{name} {at[0]}x{at[1]}: {unit}s per PE (whole design)",
            )
    ax1.axhline(100, color="grey", lw=0.8, ls="--")
    ax1.set_xlabel("PEs (R x C), P = 16")
    ax1.set_ylabel("logic used (% of the part's LUTs / LCs)")
    ax1.set_title("What fits: utilization and Fmax")
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=8)
    ax2.set_xlabel("accumulator width P (bits)")
    ax2.set_ylabel("LUTs (LCs) per PE")
    ax2.set_title("What narrower accumulators save")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
