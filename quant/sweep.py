"""Accumulator width versus accuracy: quantize the digits network at every (method, P) and
evaluate it on integer arithmetic (golden model) in each overflow mode.

Points run in parallel, in local processes or on Dask workers (:mod:`oasa.points`). Every
finished point is appended at once to ``points.jsonl`` in the output folder, which is also
the cache: a re-run computes only the points that are missing (or whose code changed, or
that failed), and an interrupted sweep loses nothing that had finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from oasa.config import ArrayConfig
from oasa.errors import InputError
from oasa.points import Failure, Where, run_points

__all__ = [
    "Point",
    "Task",
    "code_version",
    "load_cache",
    "parse_acc_bits",
    "plan",
    "rtl_check",
    "run_sweep",
    "spread_sample",
    "table",
    "write_outputs",
]

CACHE_FILE = "points.jsonl"


@dataclass(frozen=True)
class Task:
    """One quantization, evaluated in one or more overflow modes."""

    method: str
    acc_bits: int
    qat_epochs: int = 0
    seed: int = 0
    scales: str = "dyadic"
    act_bits: int = 4
    weight_bits: int = 4
    model_hash: str = "digits"  # what was quantized (oasa.quant.workload.file_hash) ...
    data_hash: str = "digits"  # ... and on which data: part of every cache key


@dataclass(frozen=True)
class Point:
    task: Task
    overflow: str

    def key(self, code: str) -> str:
        return json.dumps(
            {**asdict(self.task), "overflow": self.overflow, "code": code}, sort_keys=True
        )


def code_version() -> str:
    """Hash of the code a point's result depends on; a change invalidates cached points."""
    import oasa.quant
    import oasa.sim

    h = hashlib.sha256()
    for pkg in (oasa.quant, oasa.sim):
        for path in sorted(Path(pkg.__file__).parent.glob("*.py")):
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def parse_acc_bits(text: str) -> list[int]:
    """``"8:24"`` (inclusive range), ``"10,12,16"`` or ``"16"``."""
    try:
        if ":" in text:
            lo, hi = (int(v) for v in text.split(":"))
            values = list(range(lo, hi + 1))
        else:
            values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--acc-bits {text!r}: give a range like 8:24 or a list like 10,12,16"
        ) from None
    if not values or min(values) < 1:
        raise ValueError(f"--acc-bits {text!r}: no accumulator widths in it")
    return values


def plan(
    methods: Iterable[str], acc_bits: Iterable[int], modes: Iterable[str], **task
) -> list[Point]:
    """Every (method, P, mode) point; :class:`InputError` for an unknown method or mode, or
    a width no configuration can have, before any work."""
    from oasa.config import OVERFLOW_MODES
    from oasa.quant.methods import METHODS

    methods, acc_bits, modes = list(methods), list(acc_bits), list(modes)
    if not methods or not modes:
        raise InputError("a sweep needs at least one method and one overflow mode")
    for what, values, allowed in (("method", methods, METHODS), ("mode", modes, OVERFLOW_MODES)):
        for v in values:
            if v not in allowed:
                raise InputError(f"unknown {what} {v!r}: choose from {', '.join(allowed)}")
    for p in acc_bits:
        ArrayConfig(acc_bits=p)  # ConfigError (an InputError) names the allowed range
    return [Point(Task(m, p, **task), mode) for m in methods for p in acc_bits for mode in modes]


def load_cache(out_dir: Path) -> dict[str, dict]:
    """Every row of the cache by key, the last one written winning (a point that failed
    and later finished has both)."""
    rows = {}
    path = Path(out_dir) / CACHE_FILE
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                rows[row["key"]] = row
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut short by an interrupted write
    return rows


def finished(row: dict | None) -> bool:
    """A cached row that a re-run keeps: any outcome of the point but a failure."""
    return row is not None and row.get("status") != "failed"


# -- the work of one task (runs in a worker process) -------------------------------------------

_STATE: dict = {}


def _init_worker(model: str | None = None, data: str | None = None) -> None:
    """Load the float model and the data (the digits benchmark without a model file)."""
    from oasa.quant.workload import load_workload

    use_workload(load_workload(model, data, need_train=True))


def use_workload(work) -> None:
    """Make ``work`` (a :class:`~oasa.quant.workload.Workload`) the one this process's
    points quantize, with the float network's calibration statistics, which are the same
    for every point."""
    from oasa.quant import ptq

    _STATE["work"] = work
    calib = work.calibration(ptq.CALIBRATION_IMAGES)
    _STATE["calib"] = calib
    _STATE["reference"] = ptq.float_reference(work.graph, calib)


def evaluate_task(task: Task, modes: tuple[str, ...]) -> list[dict]:
    """Quantize once, evaluate in every requested mode; one row per mode."""
    import time

    from oasa.quant import ptq
    from oasa.sim import certificates, network

    if not _STATE:
        _init_worker()  # called without a pool: the digits benchmark
    work = _STATE["work"]
    split = work.split
    started = time.perf_counter()
    base = {**asdict(task)}
    try:
        spec = ptq.QuantSpec(
            task.method,
            ArrayConfig(
                acc_bits=task.acc_bits, act_bits=task.act_bits, weight_bits=task.weight_bits
            ),
            scales=task.scales,
        )
        if task.qat_epochs:
            from oasa.quant import qat

            net = qat.train_and_export(
                work.graph, spec, epochs=task.qat_epochs, seed=task.seed, split=work.split
            )
        else:
            net = ptq.quantize(
                work.graph, spec, calib=_STATE["calib"], reference=_STATE["reference"]
            )
    except ptq.QuantError as e:
        return [
            {**base, "overflow": mode, "status": "not applicable", "note": str(e)} for mode in modes
        ]
    quant_seconds = time.perf_counter() - started
    x = network.quantize_input(net, split.x_test)
    safe_p = [int(certificates.certificate(layer)[2].max()) for _, layer in net.weighted]
    rows = []
    clean = None  # a run in which no dot product overflowed
    for mode in modes:
        t = time.perf_counter()
        # Without any overflow, wrap and saturate compute the same thing layer after layer
        # (each layer gets the same input and never clamps), so one run serves both.
        r = clean or network.run_network(net, x, overrides={"overflow": mode}, batch=256)
        c = r.overflow_counts()
        if c["flagged"] == 0:
            clean = r
        rows.append(
            {
                **base,
                "overflow": mode,
                "status": "ok",
                "accuracy": r.accuracy(split.y_test),
                "dot_products": c["total"],
                "transient_rate": c["transient"] / c["total"],
                "final_rate": c["final"] / c["total"],
                "flagged_rate": c["flagged"] / c["total"],
                "certified": net.guarantee == "certified",
                "guarantee": net.guarantee,
                "min_safe_p": safe_p,
                "seconds": round(quant_seconds + time.perf_counter() - t, 3),
            }
        )
    return rows


# -- the sweep -----------------------------------------------------------------------------------


def run_sweep(
    points: list[Point],
    out_dir: Path,
    *,
    where: Where | None = None,
    progress: Callable[[int, int], None] | None = None,
    model: str | None = None,
    data: str | None = None,
    workload=None,
    evaluate: Callable[[Task, tuple[str, ...]], list[dict]] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[dict], int]:
    """Compute the missing points (appending each to the cache as it finishes); return all
    requested rows in ``points`` order and how many were computed now.

    ``where`` says where the points run (default: one local process). ``workload`` is the
    loaded :class:`~oasa.quant.workload.Workload` the points' tasks were planned for (its
    model and data hashes are in the tasks), handed to each worker once; without it,
    ``model`` / ``data`` (ONNX model and data files, or the digits benchmark) are loaded
    in each worker. ``evaluate`` replaces :func:`evaluate_task` (tests inject faults).

    A point that raises, or whose worker dies twice, is written to the cache with status
    "failed" and its error, returned as such, and computed again by the next run.
    KeyboardInterrupt propagates after the workers are stopped; every point finished
    before it is already saved.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    code = code_version()
    cache = load_cache(out_dir)
    todo: dict[Task, list[str]] = {}
    for p in points:
        if not finished(cache.get(p.key(code))):
            todo.setdefault(p.task, []).append(p.overflow)
    computed = 0
    total = sum(len(m) for m in todo.values())
    if todo:
        if workload is not None:
            setup, setup_args = use_workload, (workload,)
        else:
            setup, setup_args = _init_worker, (model, data)
        # Slowest first (QAT, rtn at narrow P overflows the most) for an even finish.
        order = sorted(todo.items(), key=lambda kv: (-kv[0].qat_epochs, kv[0].acc_bits))
        items = [(task, tuple(modes)) for task, modes in order]
        results = run_points(
            evaluate or evaluate_task, items, where=where or Where(), setup=setup,
            setup_args=setup_args, version=code_version, log=log,
        )  # fmt: skip
        with open(out_dir / CACHE_FILE, "a") as cache_file, contextlib.closing(results):
            for i, result in results:
                task, modes = items[i]
                if isinstance(result, Failure):
                    result = [
                        {**asdict(task), "overflow": mode, "status": "failed",
                         "error": result.error}
                        for mode in modes
                    ]  # fmt: skip
                for row in result:
                    row["key"] = Point(task, row["overflow"]).key(code)
                    cache[row["key"]] = row
                    cache_file.write(json.dumps(row) + "\n")
                    cache_file.flush()
                    computed += 1
                if progress:
                    progress(computed, total)
    return [cache[p.key(code)] for p in points], computed


def write_outputs(
    rows: list[dict], out_dir: Path, *, float_accuracy: float, extra: dict | None = None
) -> list[Path]:
    """points.csv, points.json, accuracy.png (accuracy vs P) and overflow.png."""
    import csv

    out_dir = Path(out_dir)
    fields = [
        "method",
        "overflow",
        "acc_bits",
        "qat_epochs",
        "scales",
        "seed",
        "status",
        "accuracy",
        "certified",
        "guarantee",
        "transient_rate",
        "final_rate",
        "flagged_rate",
        "dot_products",
        "min_safe_p",
        "seconds",
        "model_hash",
        "data_hash",
    ]
    with open(out_dir / "points.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({**row, "min_safe_p": " ".join(map(str, row.get("min_safe_p", [])))})
    (out_dir / "points.json").write_text(
        json.dumps({"float_accuracy": float_accuracy, **(extra or {}), "points": rows}, indent=1)
    )
    return [out_dir / "points.csv", out_dir / "points.json", *_plots(rows, out_dir, float_accuracy)]


def _series(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row.get("status") == "ok":
            out.setdefault((row["method"], row["overflow"]), []).append(row)
    return {k: sorted(v, key=lambda r: r["acc_bits"]) for k, v in out.items()}


def _plots(rows: list[dict], out_dir: Path, float_accuracy: float) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(rows)
    colors = {m: f"C{i}" for i, m in enumerate(sorted({m for m, _ in series}))}
    style = {"wrap": "-", "saturate": "--"}
    paths = []

    fig, ax = plt.subplots(figsize=(8, 5))
    ax.axhline(float_accuracy, color="0.4", lw=1, ls=":", label=f"float ({float_accuracy:.1f} %)")
    for (method, mode), pts in sorted(series.items()):
        p = [r["acc_bits"] for r in pts]
        a = [r["accuracy"] for r in pts]
        ax.plot(p, a, style.get(mode, "-"), color=colors[method], label=f"{method}, {mode}", lw=1.5)
        cp = [r["acc_bits"] for r in pts if r["certified"]]
        ca = [r["accuracy"] for r in pts if r["certified"]]
        ax.plot(
            cp,
            ca,
            "o",
            color=colors[method],
            ms=4,
            mfc="none" if mode == "saturate" else colors[method],
        )
    ax.set_xlabel("accumulator width P (bits)")
    ax.set_ylabel("test accuracy (%), integer arithmetic")
    ax.set_title(
        "digits network, W4A4: accuracy vs accumulator width (circles: certified overflow-free)"
    )
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    paths.append(out_dir / "accuracy.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5))
    for (method, mode), pts in sorted(series.items()):
        if mode != "wrap":
            continue  # the flags do not depend on the mode until the first overflow
        p = [r["acc_bits"] for r in pts]
        ax.plot(
            p,
            [100 * r["flagged_rate"] for r in pts],
            "-",
            color=colors[method],
            label=f"{method}: any overflow",
        )
        ax.plot(
            p,
            [100 * r["final_rate"] for r in pts],
            ":",
            color=colors[method],
            label=f"{method}: final sum out of range",
        )
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("accumulator width P (bits)")
    ax.set_ylabel("dot products that overflow (%), test set")
    ax.set_title("overflow rate vs accumulator width (golden model)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(out_dir / "overflow.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def table(rows: list[dict]) -> str:
    """Compact terminal table: one line per method and mode, accuracy per P (* certified)."""
    series = _series(rows)
    widths = sorted({r["acc_bits"] for r in rows})
    head = f"{'method':<8} {'mode':<8} " + " ".join(f"{p:>6}" for p in widths)
    lines = [head, "-" * len(head)]
    for (method, mode), pts in sorted(series.items()):
        by_p = {r["acc_bits"]: r for r in pts}
        cells = []
        for p in widths:
            r = by_p.get(p)
            if r is None:
                cells.append(f"{'-':>6}")
            else:
                mark = "*" if r["certified"] else " "
                cells.append(f"{r['accuracy']:5.1f}{mark}")
        lines.append(f"{method:<8} {mode:<8} " + " ".join(cells))
    lines.append("accuracy in %, integer arithmetic; * = certified overflow-free at that P")
    return "\n".join(lines)


def rtl_check(
    rows: list[dict],
    images: int,
    *,
    report: Callable[[str], None] = print,
    model: str | None = None,
    data: str | None = None,
) -> list[dict]:
    """Quantize ``rows``' points again and run each on the Verilator backend with ``images``
    test images: predictions, logits and every layer's outputs and flags must equal the
    golden model's. One record per point, ``status`` "ok" or what differed."""
    from oasa.quant import ptq
    from oasa.quant.workload import load_workload
    from oasa.sim import network
    from oasa.sim.netrun import LayerMismatch, run_network_rtl

    work = load_workload(model, data, need_train=True)
    split = work.split
    calib = work.calibration(ptq.CALIBRATION_IMAGES)
    checks = []
    report(f"\nRTL check: {len(rows)} points on Verilator, {images} test images each")
    for row in rows:
        spec = ptq.QuantSpec(row["method"], ArrayConfig(acc_bits=row["acc_bits"]), row["scales"])
        net = ptq.quantize(work.graph, spec, calib=calib)
        x = network.quantize_input(net, split.x_test[:images])
        label = f"{row['method']} P={row['acc_bits']} {row['overflow']}"
        try:
            mode = {"overflow": row["overflow"]}
            run = run_network_rtl(net, x, backend="verilator", overrides=mode)
            ref = network.run_network(net, x, overrides=mode)
            same = np.array_equal(run.result.predictions, ref.predictions) and np.array_equal(
                run.result.logits, ref.logits
            )
            status = "ok" if same else "predictions or logits differ"
        except LayerMismatch as e:
            status = str(e)
        if status == "ok":
            report(f"  {label:<28} ok ({run.cycles:,} cycles)")
        else:
            report(f"  {label:<28} MISMATCH: {status}")
        checks.append(
            {key: row[key] for key in ("method", "acc_bits", "overflow")}
            | {"images": images, "status": status}
        )
    return checks


def spread_sample(rows: list[dict], k: int) -> list[dict]:
    """k rows spread over the list (for --rtl-check)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if k <= 0 or not ok:
        return []
    idx = np.unique(np.linspace(0, len(ok) - 1, min(k, len(ok))).round().astype(int))
    return [ok[i] for i in idx]
