"""Accuracy against hardware cost: the accuracy sweep joined with the array's LUTs per P.

Each accuracy point (method, overflow mode, P) is placed at the LUTs (iCE40: LCs) of the
array at that P, from a Yosys synthesis of the bare array (:mod:`oasa.fpga.cost`, cached
in the output folder). A point is on the Pareto front when no other point is at least as
accurate for no more LUTs. The front answers: how narrow an accumulator, and so how
little hardware, the network can live with.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oasa.config import ArrayConfig
from oasa.errors import InputError
from oasa.files import check_input_file

__all__ = ["ParetoPoint", "array_luts", "pareto_front", "read_accuracy", "write_pareto"]


@dataclass(frozen=True)
class ParetoPoint:
    method: str
    overflow: str
    acc_bits: int
    accuracy: float
    certified: bool
    luts: int
    on_front: bool = False
    on_certified_front: bool = False

    @property
    def label(self) -> str:
        return f"{self.method} {self.overflow}"


class ParetoInputError(InputError):
    """The accuracy sweep's CSV is missing or not one."""


def read_accuracy(path: str | Path) -> list[dict]:
    """Rows of an ``oasa sweep`` points.csv that finished (status ok), their numbers
    checked."""
    path = Path(path)
    if not path.exists() and not path.is_dir():
        raise ParetoInputError(
            f"{path}: no such file: run `oasa sweep -o {path.parent}` first, or give --accuracy"
        )
    try:
        check_input_file(path, "--accuracy")
    except InputError as e:
        raise ParetoInputError(str(e)) from None
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ParetoInputError(f"{path}: not a CSV file ({e})") from None
    need = {"method", "overflow", "acc_bits", "accuracy", "certified", "status"}
    if not rows or not need <= set(rows[0]):
        raise ParetoInputError(f"{path}: not an `oasa sweep` points.csv (needs {sorted(need)})")
    ok = [r for r in rows if r["status"] == "ok"]
    for i, r in enumerate(ok):
        try:
            int(r["acc_bits"]), float(r["accuracy"])
        except (TypeError, ValueError):
            raise ParetoInputError(
                f"{path}: row {i + 1} has acc_bits {r['acc_bits']!r} and accuracy "
                f"{r['accuracy']!r}, not numbers"
            ) from None
    if not ok:
        raise ParetoInputError(f"{path}: no finished points (status ok) to plot")
    return ok


def array_luts(
    widths: list[int],
    *,
    family: str,
    rows: int,
    cols: int,
    cache: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[int, int]:
    """LUTs of an R x C array at each P (Yosys synthesis, cached in ``cache``)."""
    from oasa.fpga.cost import synth_cost
    from oasa.fpga.sweep import design_fingerprint

    design = design_fingerprint()  # a figure of older source is not reused
    known: dict[str, int] = {}
    if cache and cache.exists():
        known = json.loads(cache.read_text())
    out = {}
    for p in widths:
        key = f"{family}_{rows}x{cols}_p{p}_lut_{design}"
        if key not in known:
            cost = synth_cost(ArrayConfig(rows=rows, cols=cols, acc_bits=p), family, what="array")
            known[key] = cost.luts
            if cache:
                cache.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
        out[p] = known[key]
        if progress:
            progress(p)
    return out


def _front(points: list[ParetoPoint]) -> set[int]:
    """Indices of the points that no other point dominates (as accurate for fewer LUTs,
    or more accurate for as many)."""
    return {
        i
        for i, p in enumerate(points)
        if not any(
            q.luts <= p.luts
            and q.accuracy >= p.accuracy
            and (q.luts < p.luts or q.accuracy > p.accuracy)
            for q in points
        )
    }


def pareto_front(points: list[ParetoPoint]) -> list[ParetoPoint]:
    """``points`` with ``on_front`` (among all points) and ``on_certified_front`` (among
    the certified ones: no input can overflow) set."""
    front = _front(points)
    cert = [i for i, p in enumerate(points) if p.certified]
    cert_front = {cert[j] for j in _front([points[i] for i in cert])}
    return [
        ParetoPoint(**{**p.__dict__, "on_front": i in front, "on_certified_front": i in cert_front})
        for i, p in enumerate(points)
    ]


def join(rows: list[dict], luts: dict[int, int]) -> list[ParetoPoint]:
    return [
        ParetoPoint(
            r["method"],
            r["overflow"],
            int(r["acc_bits"]),
            float(r["accuracy"]),
            r["certified"] == "True",
            luts[int(r["acc_bits"])],
        )
        for r in rows
        if int(r["acc_bits"]) in luts
    ]


def write_pareto(
    points: list[ParetoPoint], out: Path, *, title: str, float_accuracy: float | None = None
) -> list[Path]:
    """pareto.csv and pareto.png in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "pareto.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "overflow", "acc_bits", "luts", "accuracy", "certified", "on_front"])
        for p in sorted(points, key=lambda p: (p.luts, -p.accuracy)):
            w.writerow(
                [p.method, p.overflow, p.acc_bits, p.luts, p.accuracy, p.certified, p.on_front]
            )
    fig, ax = plt.subplots(figsize=(8, 5))
    for label in sorted({p.label for p in points}):
        series = sorted((p for p in points if p.label == label), key=lambda p: p.luts)
        line = ax.plot([p.luts for p in series], [p.accuracy for p in series], "-", lw=1, alpha=0.7)
        color = line[0].get_color()
        ax.scatter(
            [p.luts for p in series],
            [p.accuracy for p in series],
            s=[28 if p.certified else 10 for p in series],
            marker="o",
            color=color,
            label=label,
        )
    for attr, color, label in (
        ("on_front", "black", "Pareto front"),
        ("on_certified_front", "green", "Pareto front, certified only"),
    ):
        front = sorted((p for p in points if getattr(p, attr)), key=lambda p: p.luts)
        if not front:
            continue
        ax.step(
            [p.luts for p in front], [p.accuracy for p in front], where="post", color=color,
            lw=2, alpha=0.8, label=label,
        )  # fmt: skip
        seen = set()
        for p in front:
            if (p.luts, p.accuracy) not in seen:  # wrap and saturate often coincide
                seen.add((p.luts, p.accuracy))
                ax.annotate(f"{p.method} P={p.acc_bits}", (p.luts, p.accuracy), fontsize=7,
                            color=color, xytext=(3, -9), textcoords="offset points")  # fmt: skip
    if float_accuracy is not None:
        ax.axhline(float_accuracy, color="grey", ls="--", lw=0.8, label="float")
    ax.set_xlabel("LUTs of the array (Yosys synthesis)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    png = out / "pareto.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return [csv_path, png]
