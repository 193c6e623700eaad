"""oasa's exact cycle model beside SCALE-Sim 3.0, layer by layer, on the same GEMMs.

SCALE-Sim (``pip install scalesim==3.0.0``) is the usual analytical systolic-array
simulator; putting oasa's cycles next to its counts shows where oasa's RTL schedule costs
more or less than the textbook array. It is never an oasa dependency: the bench makes its
own venv (``~/.cache/oasa/scalesim-venv``, reused while it works) and runs SCALE-Sim as a
subprocess of that venv's Python.

Networks: ResNet-50 and MobileNet as SCALE-Sim ships them (``bench/topologies/``, 224 x
224), the digits CNN and the residual digits CNN (``tests/data/residual_digits.onnx``),
written as SCALE-Sim topologies whose GEMMs are oasa's. Arrays 8 x 8, 16 x 16, 32 x 32;
dataflows ``os`` and ``ws`` (one that oasa's ``ArrayConfig`` lacks is skipped and named).

Each layer is its own SCALE-Sim run (a one-row topology file in SCALE-Sim's plain format:
its 3.0.0 reader fails on its own Resnet50.csv, whose blank row and note columns it cannot
parse), cached as JSON under ``~/.cache/oasa/scalesim/`` by that file, the array, the
dataflow and SCALE-Sim's version, so identical layers are simulated once and a rerun is
instant. SCALE-Sim walks its demand
matrices one cycle at a time (3,000 to 5,000 cycles a second here), so the runs not
cached yet are taken cheapest first while their estimated time fits ``--budget-minutes``;
the others are left out and named in the output (``--all`` runs them, however long).

    python bench/scalesim_compare.py [--jobs 1] [--budget-minutes 30] [--all] [--plan]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from results import FIGURES, ROOT, Section, oasa_json

from oasa.config import ArrayConfig
from oasa.files import cache_dir
from oasa.fpga.explore import LayerShape, layer_cycles, layer_plan, layer_shapes
from oasa.sim.cycles import (
    OUTPUT_STAGE_LATENCY,
    SEQUENCER_FINISH_LATENCY,
    SEQUENCER_ISSUE_LATENCY,
)
from oasa.sim.topology import TopologyLayer, read_topology

SCALESIM_VERSION = "3.0.0"
#: numpy >= 2.4 breaks SCALE-Sim 3.0.0's memory model (a non-scalar ``int(max(...))``).
SCALESIM_PINS = (f"scalesim=={SCALESIM_VERSION}", "numpy<2.4")
TOPOLOGIES = ROOT / "bench" / "topologies"
RESIDUAL = ROOT / "tests" / "data" / "residual_digits.onnx"
OUT = ROOT / "out" / "bench" / "scalesim"
LAYERS_CSV = FIGURES / "scalesim_layers.csv"
ARRAYS = (8, 16, 32)
DATAFLOWS = ("os", "ws")
#: Each SRAM holds 8 MiB (SCALE-Sim words are one byte): more than any operand of these
#: networks (ResNet-50's largest is 2.4 MB of weights), so no operand is fetched twice.
SRAM_KB = 8192
#: SCALE-Sim cycles simulated per second, measured here (an 8 x 8 ResNet-50 layer of
#: 1.72 M cycles in 313 s); used until this machine's cache holds runs to measure.
DEFAULT_RATE = 5000.0
#: The header of SCALE-Sim 3.0.0's COMPUTE_REPORT.csv, as it writes it.
COMPUTE_HEADER = (
    "LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, Overall Util %, "
    "Mapping Efficiency %, Compute Util %,"
)
TOPOLOGY_HEADER = (
    "Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,Num Filter,Strides,"
)
#: SCALE-Sim's own top-level class with ``save_disk_space=True``: its CLI
#: (``python -m scalesim.scale``) parses ``-s N`` but always writes the full traces.
DRIVER = """
import sys
from scalesim.scale_sim import scalesim
config, topology, layout, out = sys.argv[1:5]
sim = scalesim(save_disk_space=True, verbose=False, config=config, topology=topology,
               layout=layout, input_type_gemm=False)
sim.run_scale(top_path=out)
import resource
print("max_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
CONFIG = """[general]
run_name = oasa

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
ifmapsramszkB = {sram}
filtersramszkB = {sram}
ofmapsramszkB = {sram}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
FilterCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = False
"""


# -- SCALE-Sim's venv ---------------------------------------------------------------------


def scalesim_version(python: Path) -> str | None:
    """The SCALE-Sim version that ``python`` imports, or None if it cannot."""
    probe = "import importlib.metadata as m, scalesim.scale_sim; print(m.version('scalesim'))"
    if not python.exists():
        return None
    proc = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_scalesim(venv: Path) -> tuple[Path, str]:
    """(its Python, its version): the venv reused when it imports SCALE-Sim, else made with
    ``python -m venv`` from this interpreter and the pinned packages installed."""
    python = venv / "bin" / "python"
    version = scalesim_version(python)
    if version != SCALESIM_VERSION:
        print(f"making SCALE-Sim's venv in {venv} ({' '.join(SCALESIM_PINS)})", flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
        subprocess.run([*pip, *SCALESIM_PINS], check=True)
        version = scalesim_version(python)
        if version != SCALESIM_VERSION:
            raise SystemExit(f"{venv}: SCALE-Sim {SCALESIM_VERSION} does not import after install")
    return python, version


# -- topology files -----------------------------------------------------------------------


def safe_name(name: str) -> str:
    """A layer name SCALE-Sim reads as it is: no commas or spaces, and no ``DP`` (SCALE-Sim
    splits a layer whose name holds ``DP`` into one layer per channel)."""
    clean = re.sub(r"[^A-Za-z0-9_.]+", "_", name).strip("_") or "layer"
    return clean.replace("DP", "dp")


def topology_line(t: TopologyLayer, name: str | None = None) -> str:
    """One row in SCALE-Sim's conv format, with the trailing comma its reader needs (it
    drops the last cell); a depthwise row carries ``#dw`` after it, as SCALE-Sim's own
    MobileNet file does."""
    cells = [safe_name(name or t.name), t.ifmap_h, t.ifmap_w, t.filter_h, t.filter_w,
             t.channels, t.filters, t.stride]  # fmt: skip
    return ",".join(str(c) for c in cells) + "," + ("#dw" if t.depthwise else "")


def write_topology(layers: Iterable[TopologyLayer], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([TOPOLOGY_HEADER, *(topology_line(t) for t in layers)]) + "\n")
    return path


def gemm_layer(name: str, m_hw: tuple[int, int], kernel: tuple[int, int], channels: int,
               filters: int, depthwise: bool = False) -> TopologyLayer:  # fmt: skip
    """A convolution whose SCALE-Sim GEMM is ``Ho * Wo`` x ``kh * kw * channels`` x
    ``filters``: SCALE-Sim has no padding, so the input is (Ho + kh - 1) x (Wo + kw - 1) at
    stride 1 (a strided layer keeps its GEMM; only the GEMM is compared)."""
    (ho, wo), (kh, kw) = m_hw, kernel
    return TopologyLayer(name, ho + kh - 1, wo + kw - 1, kh, kw, channels, filters, 1, depthwise)


def dense_layer(name: str, k: int, n: int) -> TopologyLayer:
    """A dense layer: a 1 x 1 filter on a 1 x 1 map with K channels and N filters."""
    return TopologyLayer(name, 1, 1, 1, 1, k, n, 1)


def as_topology(
    kind: str,
    name: str,
    out_shape: tuple[int, ...],
    kernel: tuple[int, int],
    weight_shape: tuple[int, ...],
    groups: int,
) -> TopologyLayer:
    """One weighted layer (``conv2d`` or ``dense``, as oasa's graphs and network files hold
    it) as a SCALE-Sim row of one group; a depthwise layer is marked as SCALE-Sim marks it."""
    if kind == "conv2d":
        c_out, ho, wo = out_shape
        per_group = c_out // groups
        dw = groups > 1 and weight_shape[1] == 1 and per_group == 1
        return gemm_layer(name, (ho, wo), tuple(kernel), int(weight_shape[1]), per_group, dw)
    return dense_layer(name, math.prod(int(s) for s in weight_shape[1:]), int(out_shape[0]))


def model_topology(path: Path) -> list[TopologyLayer]:
    """The weighted layers of an oasa network file (.npz) or float ONNX model (.onnx) as
    SCALE-Sim rows, one group each (the bench multiplies by the groups)."""
    if path.suffix == ".onnx":
        from oasa.quant.onnx_import import load_onnx

        g = load_onnx(path)
        return [as_topology(n.op, n.name, g.shapes[n.output], n.kernel, n.weight.shape,
                             n.groups) for n in g.weighted]  # fmt: skip
    from oasa.sim import netfile

    net = netfile.load(path)
    return [as_topology(x.kind, x.label, x.out_shape, x.kernel, x.weight.shape, x.groups)
            for _, x in net.weighted]  # fmt: skip


def check_gemms(layers: list[TopologyLayer], shapes: list[LayerShape], where: str) -> None:
    """SCALE-Sim's GEMM of every row equals oasa's (M, K, N) of the same layer."""
    if len(layers) != len(shapes):
        raise SystemExit(f"{where}: {len(layers)} SCALE-Sim rows for {len(shapes)} oasa layers")
    for t, s in zip(layers, shapes, strict=True):
        if t.gemm != (s.m, s.k, s.n):
            raise SystemExit(
                f"{where}: {t.name}: SCALE-Sim GEMM {t.gemm} != oasa {(s.m, s.k, s.n)}"
            )


# -- networks -------------------------------------------------------------------------------


@dataclass
class Net:
    """A network both sides run: SCALE-Sim's rows and oasa's shapes, layer for layer."""

    name: str
    source: str
    layers: list[TopologyLayer]
    shapes: list[LayerShape]


def csv_net(name: str, path: Path) -> Net:
    """A topology as SCALE-Sim ships it; ``layer_shapes`` derives oasa's GEMMs SCALE-Sim's
    way, a depthwise row as its one channel (groups = 1), as SCALE-Sim runs it."""
    layers = read_topology(path)
    _, shapes = layer_shapes(path)
    check_gemms(layers, shapes, str(path))
    return Net(name, str(path.relative_to(ROOT)), layers, shapes)


def model_net(name: str, model: Path, csv_path: Path) -> Net:
    """A model of oasa's: its SCALE-Sim topology written to ``csv_path``, read back with
    ``read_topology`` and checked against ``layer_shapes`` of the model."""
    write_topology(model_topology(model), csv_path)
    layers = read_topology(csv_path)
    _, shapes = layer_shapes(model)
    check_gemms(layers, shapes, str(csv_path))
    return Net(name, str(model.relative_to(ROOT)), layers, shapes)


def digits_network_file() -> Path:
    """The digits CNN as an oasa network file (``oasa quantize``, as bench/network_run.py
    makes it); only its shapes are used."""
    path = OUT / "digits_exact_p16.npz"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        oasa_json("quantize", "--method", "exact", "--acc-bits", "16", "-o", str(path))
    return path


def networks(which: list[str]) -> list[Net]:
    makers: dict[str, Callable[[], Net]] = {
        "digits": lambda: model_net("digits CNN", digits_network_file(), OUT / "digits.csv"),
        "residual": lambda: model_net("residual digits", RESIDUAL, OUT / "residual_digits.csv"),
        "mobilenet": lambda: csv_net("MobileNet", TOPOLOGIES / "mobilnet_paper.csv"),
        "resnet50": lambda: csv_net("ResNet-50", TOPOLOGIES / "Resnet50.csv"),
    }
    return [makers[w]() for w in which]


# -- SCALE-Sim runs -------------------------------------------------------------------------


def parse_compute_report(text: str) -> list[dict]:
    """The rows of SCALE-Sim 3.0's COMPUTE_REPORT.csv: cycles as ints, percentages as
    fractions. Raises ValueError on another header (another SCALE-Sim's columns)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != COMPUTE_HEADER:
        raise ValueError(f"not SCALE-Sim 3.0's COMPUTE_REPORT.csv header: {lines[:1]}")
    rows = []
    for line in lines[1:]:
        c = [x.strip() for x in line.rstrip(",").split(",")]
        rows.append({
            "layer": int(c[0]), "cycles_with_prefetch": int(c[1]), "cycles": int(c[2]),
            "stall_cycles": int(c[3]), "overall_util": float(c[4]) / 100,
            "mapping_efficiency": float(c[5]) / 100, "compute_util": float(c[6]) / 100,
        })  # fmt: skip
    return rows


@dataclass(frozen=True)
class Job:
    """One layer on one array and dataflow: a one-row topology file for SCALE-Sim."""

    layer: TopologyLayer
    rows: int
    cols: int
    dataflow: str

    @property
    def topology(self) -> str:
        return TOPOLOGY_HEADER + "\n" + topology_line(self.layer) + "\n"

    @property
    def config(self) -> str:
        return CONFIG.format(rows=self.rows, cols=self.cols, dataflow=self.dataflow, sram=SRAM_KB)

    @classmethod
    def of(cls, t: TopologyLayer, size: int, dataflow: str) -> Job:
        """The job of a layer on a square array, its name dropped: identical layers share a
        run and a cache entry."""
        return cls(replace(t, name="layer"), size, size, dataflow)

    def key(self, version: str) -> str:
        """The cache key: the topology file, the config file and SCALE-Sim's version."""
        text = f"{version}\n{self.config}\n{self.topology}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def estimate(self) -> int:
        """SCALE-Sim's cycles, from the fold count (for planning only): a fold streams K
        (os) or M (ws) beats plus the array's fill and drain."""
        m, k, n = self.layer.gemm
        r, c = self.rows, self.cols
        if self.dataflow == "os":
            return -(-m // r) * -(-n // c) * (k + r + c - 2)
        return -(-k // r) * -(-n // c) * (m + 2 * r + c - 2)


def run_scalesim(python: Path, job: Job) -> dict:
    """Run SCALE-Sim on one layer in a scratch folder; its COMPUTE_REPORT row and time."""
    with tempfile.TemporaryDirectory(prefix="oasa-scalesim-") as tmp:
        d = Path(tmp)
        (d / "scale.cfg").write_text(job.config)
        (d / "topology.csv").write_text(job.topology)
        (d / "layout.csv").write_text("Layer name,\n")  # read but unused (no custom layout)
        t = time.perf_counter()
        proc = subprocess.run(
            [str(python), "-c", DRIVER, *(str(d / f) for f in
             ("scale.cfg", "topology.csv", "layout.csv", "out"))],
            capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.perf_counter() - t
        if proc.returncode:
            raise RuntimeError(f"SCALE-Sim failed on {job}:\n{proc.stderr[-2000:]}")
        (row,) = parse_compute_report((d / "out" / "oasa" / "COMPUTE_REPORT.csv").read_text())
    rss = re.search(r"max_rss_kb (\d+)", proc.stdout)
    return {**row, "seconds": round(seconds, 2), "max_rss_mb": int(rss[1]) // 1024 if rss else None}


def cached_run(python: Path, version: str, job: Job, cache: Path) -> dict:
    path = cache / f"{job.key(version)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = {**run_scalesim(python, job), "scalesim": version, "rows": job.rows,
              "cols": job.cols, "dataflow": job.dataflow, "gemm": list(job.layer.gemm)}  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    return result


def cache_stats(cache: Path) -> dict:
    """The longest SCALE-Sim run cached here and the largest memory one took."""
    runs = [json.loads(p.read_text()) for p in cache.glob("*.json")]
    longest = max(runs, key=lambda d: d["seconds"], default=None)
    rss = [d["max_rss_mb"] for d in runs if d.get("max_rss_mb")]
    return {"longest": longest, "max_rss_mb": max(rss, default=None)}


def measured_rate(cache: Path) -> float:
    """SCALE-Sim cycles per second of wall time (process start included) over every run
    cached on this machine; DEFAULT_RATE before the first."""
    cycles = seconds = 0.0
    for p in cache.glob("*.json"):
        d = json.loads(p.read_text())
        cycles += d["cycles"]
        seconds += d["seconds"]
    return cycles / seconds if seconds > 30 else DEFAULT_RATE


def run_jobs(python: Path, version: str, jobs: list[Job], cache: Path, workers: int) -> float:
    """Run the jobs not cached yet, in their order (a run's layers together, so an
    interrupted bench leaves whole runs cached), with a progress bar in SCALE-Sim cycles;
    returns the seconds spent."""
    from tqdm import tqdm

    todo = list(dict.fromkeys(j for j in jobs if not (cache / f"{j.key(version)}.json").is_file()))
    if not todo:
        return 0.0
    t = time.perf_counter()
    total = sum(j.estimate() for j in todo)
    print(f"SCALE-Sim: {len(todo)} layer runs, about {total:,} cycles to simulate", flush=True)
    with tqdm(total=total, unit="cyc", unit_scale=True, smoothing=0.05, mininterval=5) as bar:

        def one(job: Job) -> None:
            bar.set_postfix_str(f"{job.rows}x{job.cols} {job.dataflow} MKN {job.layer.gemm}")
            cached_run(python, version, job, cache)
            bar.update(job.estimate())

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, todo))
    return time.perf_counter() - t


# -- oasa's side and the comparison --------------------------------------------------------


def oasa_dataflows(wanted: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """The dataflows oasa's cycle model runs here, and why each other one does not."""
    ok, missing = [], {}
    for df in wanted:
        try:
            cfg = ArrayConfig(rows=8, cols=8, dataflow=df)
            layer_cycles(cfg, LayerShape("probe", 8, 8, 8))
            ok.append(df)
        except Exception as e:  # a TypeError until ArrayConfig has the field
            missing[df] = f"{type(e).__name__}: {e}"
    return ok, missing


@dataclass
class LayerRow:
    """One layer of one network on one array and dataflow, both sides."""

    network: str
    array: str
    dataflow: str
    layer: str
    m: int
    k: int
    n: int
    groups: int
    depthwise: bool
    macs: int
    scalesim_reported: int  # COMPUTE_REPORT's Total Cycles of one group
    scalesim_cycles: int  # (reported + 1) * groups
    scalesim_folds_formula: int  # folds x fold length (Job.estimate) of one group
    scalesim_compute_util: float  # as SCALE-Sim reports it
    oasa_packs: int  # GEMMs oasa runs the layer as: packs of groups (oasa.sim.calls)
    oasa_calls: int
    oasa_cycles: int
    oasa_util: float  # MACs / (R * C * cycles)
    ratio: float  # oasa / SCALE-Sim
    oasa_default_calls: int  # with oasa's default buffers (ArrayConfig), not SCALE-Sim's
    oasa_default_cycles: int


def matched_buffers(size: int) -> dict[str, int]:
    """oasa's buffer depths on a size x size array holding as many operands as SCALE-Sim's
    SRAMs (SRAM_KB each, a byte per operand): an activation word holds R activations, a
    weight or result word C values; the parameter buffer a word per column tile of any N."""
    operands = SRAM_KB * 1024
    top = 1 << 20  # ArrayConfig's largest depth
    return {"act_depth": min(top, operands // size), "wgt_depth": min(top, operands // size),
            "res_depth": min(top, operands // size), "param_depth": 1 << 16}  # fmt: skip


def compare(net: Net, r: int, df: str, scalesim: list[dict]) -> list[LayerRow]:
    """Both sides of every layer of ``net`` on an r x r array (SCALE-Sim's results in layer
    order): oasa with buffers as large as SCALE-Sim's SRAMs, and with its defaults."""
    rows = []
    default = ArrayConfig(rows=r, cols=r, dataflow=df)
    cfg = default.replace(**matched_buffers(r))
    for t, s, ss in zip(net.layers, net.shapes, scalesim, strict=True):
        plan = layer_plan(cfg, s)
        calls, cycles = layer_cycles(cfg, s, plan)
        default_calls, default_cycles = layer_cycles(default, s)
        ss_cycles = (ss["cycles"] + 1) * s.groups
        rows.append(LayerRow(
            net.name, f"{r}x{r}", df, t.name, s.m, s.k, s.n, s.groups, t.depthwise, s.macs,
            ss["cycles"], ss_cycles, Job.of(t, r, df).estimate(), ss["compute_util"],
            len(plan), calls, cycles, s.macs / (r * r * cycles), cycles / ss_cycles,
            default_calls, default_cycles,
        ))  # fmt: skip
    return rows


def totals(rows: list[LayerRow]) -> list[dict]:
    """Per network, array and dataflow: cycles of both, their ratio, and both utilizations
    as MACs / (R * C * cycles)."""
    out: dict[tuple, dict] = {}
    for x in rows:
        t = out.setdefault((x.network, x.array, x.dataflow), {
            "network": x.network, "array": x.array, "dataflow": x.dataflow, "layers": 0,
            "macs": 0, "scalesim": 0, "oasa": 0, "pes": int(x.array.split("x")[0]) ** 2,
            "worst": x, "oasa_default": 0,
        })  # fmt: skip
        t["layers"] += 1
        t["macs"] += x.macs
        t["scalesim"] += x.scalesim_cycles
        t["oasa"] += x.oasa_cycles
        t["oasa_default"] += x.oasa_default_cycles
        if x.ratio > t["worst"].ratio:
            t["worst"] = x
    for t in out.values():
        t["ratio"] = t["oasa"] / t["scalesim"]
        t["scalesim_util"] = t["macs"] / (t["pes"] * t["scalesim"])
        t["oasa_util"] = t["macs"] / (t["pes"] * t["oasa"])
        t["default_ratio"] = t["oasa_default"] / t["scalesim"]
    return list(out.values())


# -- output ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One network on one array and dataflow, with what SCALE-Sim has left to simulate."""

    net: Net
    size: int
    dataflow: str
    cycles: int  # estimated SCALE-Sim cycles of its layers not cached yet
    minutes: float  # at the rate measured here

    def jobs(self) -> list[Job]:
        return [Job.of(t, self.size, self.dataflow) for t in self.net.layers]

    @property
    def label(self) -> str:
        return f"{self.net.name} {self.size}x{self.size} {self.dataflow}"


@dataclass
class Plan:
    """What runs (cheapest first), what is left out (with its estimate) and why."""

    runs: list[Run]
    left_out: list[Run]
    no_oasa: dict[str, str]
    budget_minutes: float


def make_plan(nets: list[Net], arrays: list[int], dataflows: list[str], version: str,
              cache: Path, budget_minutes: float, everything: bool) -> Plan:  # fmt: skip
    """Every network x array x dataflow, cheapest first (cached ones cost nothing), while
    SCALE-Sim's estimated time for the uncached layers fits ``budget_minutes`` in all (at
    the rate measured here); ``everything`` ignores the budget."""
    ok, no_oasa = oasa_dataflows(dataflows)
    rate = measured_rate(cache)
    runs = []
    for net in nets:
        for r in arrays:
            for df in ok:
                todo = {Job.of(t, r, df) for t in net.layers}
                todo = {j for j in todo if not (cache / f"{j.key(version)}.json").is_file()}
                cycles = sum(j.estimate() for j in todo)
                runs.append(Run(net, r, df, cycles, cycles / rate / 60))
    plan, spent = Plan([], [], no_oasa, budget_minutes), 0.0
    for run in sorted(runs, key=lambda x: x.cycles):
        if everything or spent + run.minutes <= budget_minutes:
            plan.runs.append(run)
            spent += run.minutes
        else:
            plan.left_out.append(run)
    return plan


def fmt_ratio(x: float) -> str:
    return f"{x:.3f}"


def print_summary(tot: list[dict]) -> None:
    print(f"{'network':<16} {'array':>6} {'df':>3} {'SCALE-Sim':>13} {'oasa':>13} "
          f"{'ratio':>6}  worst layer")  # fmt: skip
    for t in tot:
        w = t["worst"]
        print(f"{t['network']:<16} {t['array']:>6} {t['dataflow']:>3} {t['scalesim']:>13,} "
              f"{t['oasa']:>13,} {fmt_ratio(t['ratio']):>6}  {w.layer} "
              f"{fmt_ratio(w.ratio)}")  # fmt: skip


def write_layers_csv(rows: list[LayerRow]) -> Path:
    FIGURES.mkdir(parents=True, exist_ok=True)
    with LAYERS_CSV.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        w.writeheader()
        for x in rows:
            d = asdict(x)
            for key in ("scalesim_compute_util", "oasa_util", "ratio"):
                d[key] = round(d[key], 5)
            w.writerow(d)
    return LAYERS_CSV


#: Rows (output-stationary: K) of the reference fold the explanation is measured on.
REF = 64


def fold_cycles(size: int, dataflow: str, folds: int) -> tuple[int, int]:
    """(oasa, SCALE-Sim) cycles of a GEMM of ``folds`` folds on a size x size array: M =
    folds x R tiles of K = 64 (os), or K = folds x R with M = 64 (ws); N = C."""
    m, k = (folds * size, REF) if dataflow == "os" else (REF, folds * size)
    cfg = ArrayConfig(rows=size, cols=size, dataflow=dataflow)
    _, oasa = layer_cycles(cfg, LayerShape("ref", m, k, size))
    layer = TopologyLayer("ref", m, 1, 1, 1, k, size, 1)
    assert layer.gemm == (m, k, size)
    return oasa, Job(layer, size, size, dataflow).estimate()


def call_overhead(size: int, dataflow: str) -> int:
    """Cycles a one-fold call costs oasa beyond SCALE-Sim's fold: its fixed cost per call
    (start-up, output stage, result writes, done) less SCALE-Sim's fill and drain."""
    oasa, scalesim = fold_cycles(size, dataflow, 1)
    return oasa - scalesim


def _why(x: LayerRow) -> str:
    """Why oasa counts more on this layer: cut into calls by its buffers, its fixed cost
    per call alone, or folds that cost it more than SCALE-Sim's."""
    if x.oasa_calls > x.oasa_packs:
        return (
            "cut into several calls (by the planner, where calls are faster), each paying "
            "oasa's fixed cost and a fill and drain that SCALE-Sim pays once per fold"
        )
    size = int(x.array.split("x")[0])
    if x.oasa_cycles - x.scalesim_cycles <= x.oasa_calls * call_overhead(size, x.dataflow):
        if x.groups > 1:
            return "oasa's fixed cost per call, paid once per pack of groups of a grouped layer"
        return "oasa's fixed cost per call, on a layer of few folds"
    return "more than oasa's fixed cost per call: folds that cost oasa more than SCALE-Sim's"


def explain_fixed(section: Section, rows: list[LayerRow]) -> None:
    """Where the two schedules differ, in cycles of reference folds on this run's arrays."""
    sizes = sorted({int(x.array.split("x")[0]) for x in rows})
    fits = sum(x.scalesim_reported + 1 == x.scalesim_folds_formula for x in rows)
    flows = sorted({x.dataflow for x in rows})
    section.para(
        "Why they differ. SCALE-Sim runs a layer's folds one after another, each paying the "
        "array's whole fill and drain: K + R + C - 2 cycles per output-stationary fold (an "
        "R x C tile of outputs), M + 2R + C - 2 per weight-stationary fold (R x C weights; "
        f"its `Total Cycles` is that sum less one in {fits} of these {len(rows)} layer "
        "runs). oasa's output-stationary array starts a tile every max(K, R) cycles while "
        "the previous one drains. Every accelerator call also has a fixed cost that "
        "SCALE-Sim does not count: the start register and command latch before the first "
        "beat (4 cycles), the PE's pipeline registers, the output stage's pipeline, the "
        "result rows written one a cycle and the done cycle; a grouped layer pays it once "
        "per pack of groups (oasa runs a pack as one GEMM with block-diagonal weights, the "
        "pack size the planner's fastest). On reference folds "
        f"(output-stationary: K = {REF}; weight-stationary: M = {REF}; N = C), from oasa's "
        "cycle model and SCALE-Sim's fold sum:"
    )
    table = []
    for df in flows:
        for r in sizes:
            one, two = fold_cycles(r, df, 1), fold_cycles(r, df, 2)
            table.append([f"{r}x{r}", df, f"{one[0]:,}", f"{one[1]:,}", f"{two[0] - one[0]:,}",
                          f"{two[1] - one[1]:,}"])  # fmt: skip
    section.table(["array", "dataflow", "one fold: oasa", "SCALE-Sim", "each further fold: oasa",
                   "SCALE-Sim"], table)  # fmt: skip
    section.para(fixed_cost_text(sizes, flows))


def fixed_cost_text(sizes: list[int], flows: list[str]) -> str:
    """The one-fold difference, taken apart into the cycle model's own terms."""
    named = SEQUENCER_ISSUE_LATENCY + OUTPUT_STAGE_LATENCY + SEQUENCER_FINISH_LATENCY
    parts = []
    if "ws" in flows:
        ws = {call_overhead(r, "ws") for r in sizes}
        (fixed,) = ws  # the same on every array size
        parts.append(
            f"on the weight-stationary array a one-fold call costs {fixed} cycles more than "
            f"SCALE-Sim's fold on every array size: {SEQUENCER_ISSUE_LATENCY} to issue the "
            f"first beat, {OUTPUT_STAGE_LATENCY} of output stage, {SEQUENCER_FINISH_LATENCY} "
            f"to count FLAGGED, and {fixed - named} pipeline registers on the array's path "
            "(its input register and the PE's product register) that SCALE-Sim's fold does "
            "not have"
        )
    if "os" in flows:
        extra = {call_overhead(r, "os") - r for r in sizes}
        (fixed,) = extra
        parts.append(
            f"on the output-stationary array R + {fixed}: the same, and the R cycles the "
            "result rows take to leave the array (SCALE-Sim's fold ends with the last MAC)"
        )
    return (
        "Taken apart: " + "; ".join(parts) + ". No schedule hides this on a layer of one "
        "call and one fold; meeting SCALE-Sim there would mean not counting, or not having, "
        "the output path."
    )


def section_text(section: Section, version: str, plan: Plan, rows: list[LayerRow],
                 tot: list[dict], ran_s: float, rate: float, stats: dict) -> None:  # fmt: skip
    section.para(
        f"SCALE-Sim {version} (its own venv; `{' '.join(SCALESIM_PINS)}`) and oasa's exact "
        "cycle model (`oasa.fpga.explore.layer_cycles`: the calls `oasa run` cuts a layer "
        "into, each counted as the RTL's CYCLES register) on the same GEMMs, layer by "
        "layer. SCALE-Sim runs in its analytical bandwidth mode (`InterfaceBandwidth = "
        f"CALC`) with {SRAM_KB // 1024} MiB in each SRAM, more than any operand here, so "
        "memory never stalls compute (every run reported 0 stall cycles); no trace files "
        "are written. oasa's buffers are given the same capacity (`matched_buffers`: as many "
        "operands in each as in a SCALE-Sim SRAM, e.g. 8 Mi / R activation words of R "
        "activations), so neither side cuts a layer for memory; the last column of the "
        "totals is oasa with its default buffers (activations 8,192, weights 8,192, results "
        "4,096 words, 64 parameter words), where a layer too large for them runs as more "
        "calls. Its `Total Cycles` is one less than a counter from start to done "
        "such as oasa's, so 1 is added per layer (per group). Each layer is its own "
        "SCALE-Sim run (a one-row topology file; it gives the same counts as the layer in "
        "a whole network's run), cached by that file, array, dataflow and version: "
        "SCALE-Sim keeps every layer's demand matrices until a run ends, so one layer per "
        "process bounds its memory by the largest layer, and identical layers run once. "
        "The rows are written in SCALE-Sim's plain format from what `read_topology` reads: "
        "SCALE-Sim 3.0.0's reader fails on its own Resnet50.csv (an IndexError on the "
        "blank row and note columns)."
    )
    section.para(
        "Networks: ResNet-50 and MobileNet are SCALE-Sim's own topology files at 224 x 224 "
        "(no padding, SCALE-Sim's output sizes). MobileNet's depthwise rows are what "
        "SCALE-Sim's file says and runs: one channel (channels = 1, filters = 1), on both "
        "sides, so its totals hold one channel of each depthwise layer. The digits CNN "
        "(`oasa quantize` network file) and the residual digits CNN "
        f"(`{RESIDUAL.relative_to(ROOT)}`) are written as SCALE-Sim topologies whose GEMM "
        "equals oasa's per layer (a convolution as a (Ho + F - 1) x (Wo + F - 1) input at "
        "stride 1, a dense layer as a 1 x 1 map with K channels and N filters; checked by "
        "reading them back); the residual net's depthwise layer (32 groups) runs in "
        "SCALE-Sim as one group, whose cycles (+ 1) are multiplied by 32, and oasa runs "
        "its 32 groups as `oasa run` does, in packs of groups with block-diagonal weights: "
        "both sides count the whole layer. Utilization "
        "in the totals is MACs / (R x C x cycles) for both; per layer SCALE-Sim's is its "
        "reported `Compute Util %`."
    )
    section.table(
        ["network", "array", "dataflow", "layers", "SCALE-Sim cycles", "oasa cycles",
         "oasa / SCALE-Sim", "SCALE-Sim util.", "oasa util.", "worst layer (ratio)",
         "oasa, default buffers (ratio)"],
        [[t["network"], t["array"], t["dataflow"], t["layers"], f"{t['scalesim']:,}",
          f"{t['oasa']:,}", fmt_ratio(t["ratio"]), f"{100 * t['scalesim_util']:.1f} %",
          f"{100 * t['oasa_util']:.1f} %",
          f"{t['worst'].layer} ({fmt_ratio(t['worst'].ratio)})",
          f"{t['oasa_default']:,} ({fmt_ratio(t['default_ratio'])})"] for t in tot],
    )  # fmt: skip
    cut = [x for x in rows if x.oasa_default_calls > x.oasa_calls]
    if cut:
        worst = max(cut, key=lambda x: x.oasa_default_cycles / x.oasa_cycles)
        extra = sum(x.oasa_default_cycles - x.oasa_cycles for x in cut)
        section.para(
            f"With its default buffers oasa cuts {len(cut)} of {len(rows)} layer runs into "
            f"more calls, {extra:,} cycles more in all (at most "
            f"{100 * (worst.oasa_default_cycles / worst.oasa_cycles - 1):.1f} % on a layer: "
            f"{worst.network} {worst.layer}, {worst.array} {worst.dataflow}, "
            f"{worst.oasa_default_calls} calls against {worst.oasa_calls}): each call pays "
            "the fill, the drain and the fixed cost again."
        )
    above = sorted((x for x in rows if x.ratio > 1), key=lambda x: -x.ratio)
    section.para(
        f"Per layer: oasa counts more cycles than SCALE-Sim in {len(above)} of {len(rows)} "
        "layer runs. The ten largest ratios:"
    )
    section.table(
        ["network", "array", "df", "layer", "M x K x N", "groups", "SCALE-Sim", "oasa",
         "calls", "ratio", "SCALE-Sim util.", "oasa util."],
        [[x.network, x.array, x.dataflow, x.layer, f"{x.m} x {x.k} x {x.n}", x.groups,
          f"{x.scalesim_cycles:,}", f"{x.oasa_cycles:,}", x.oasa_calls, fmt_ratio(x.ratio),
          f"{100 * x.scalesim_compute_util:.1f} %", f"{100 * x.oasa_util:.1f} %"]
         for x in sorted(rows, key=lambda x: -x.ratio)[:10]],
    )  # fmt: skip
    explain_fixed(section, rows)
    section_reasons(section, rows, above)
    section_left_out(section, plan, rate, ran_s, stats)
    section.para(f"Every layer's figures: [`{LAYERS_CSV.name}`](figures/{LAYERS_CSV.name}).")


def section_reasons(section: Section, rows: list[LayerRow], above: list[LayerRow]) -> None:
    """Plain sentences: where oasa is above SCALE-Sim, by how much, and the likely reason."""
    if not above:
        section.para("oasa never counts more cycles than SCALE-Sim on these layers.")
    else:
        groups: dict[str, list[LayerRow]] = {}
        for x in above:
            groups.setdefault(_why(x), []).append(x)
        for why, xs in sorted(groups.items(), key=lambda kv: -max(x.ratio for x in kv[1])):
            worst = max(xs, key=lambda x: x.ratio)
            nets = sorted({x.network for x in xs})
            dw = sum(x.depthwise for x in xs)
            depthwise = (
                f" {dw} of them are depthwise rows of one channel, as SCALE-Sim's file "
                "writes them: one tiny GEMM each, where the fixed cost is all there is to "
                "see (run with its channels, a depthwise layer runs as packs of groups, as "
                "the residual net's does)."
            )
            section.para(
                f"{len(xs)} layer runs above SCALE-Sim ({why}; {', '.join(nets)}): up to "
                f"{100 * (worst.ratio - 1):.1f} % more ({worst.network} {worst.layer}, "
                f"{worst.array} {worst.dataflow}: {worst.oasa_cycles:,} against "
                f"{worst.scalesim_cycles:,}), median "
                f"{100 * (statistics.median(x.ratio for x in xs) - 1):.1f} % more."
                + (depthwise if dw else "")
            )
    below = [x for x in rows if x.ratio < 1]
    if below:
        best = min(below, key=lambda x: x.ratio)
        section.para(
            f"Below SCALE-Sim: {len(below)} layer runs, down to {fmt_ratio(best.ratio)} "
            f"({best.network} {best.layer}, {best.array} {best.dataflow}: "
            f"{best.oasa_cycles:,} against {best.scalesim_cycles:,}): layers of many folds, "
            "where each further fold costs oasa fewer cycles than SCALE-Sim (table above)."
        )


def section_left_out(section: Section, plan: Plan, rate: float, ran_s: float, stats: dict) -> None:
    if plan.no_oasa:
        missing = ", ".join(
            f"`{df}` (oasa's cycle model does not run it yet: {why})"
            for df, why in plan.no_oasa.items()
        )
        section.para(f"Not compared: dataflow {missing}.")
    if plan.left_out:
        items = [f"{x.label} (about {x.cycles / 1e6:.1f} M cycles to simulate, "
                 f"{x.minutes:.0f} min)" for x in plan.left_out]  # fmt: skip
        section.para(
            "Left out of this run: SCALE-Sim walks its demand matrices one cycle at a time, "
            f"at {rate:,.0f} simulated cycles per second on this machine (measured over the "
            "runs cached here, process start included), so the runs not cached yet are taken "
            f"cheapest first within {plan.budget_minutes:.0f} min of SCALE-Sim; these "
            "did not fit: "
            + "; ".join(items)
            + ". `python bench/scalesim_compare.py --all` includes them (results are cached "
            "per layer, so a later run shows them at once)."
        )
    longest, rss = stats["longest"], stats["max_rss_mb"]
    if longest:
        mem = f"; the largest SCALE-Sim process took {rss:,} MB" if rss else ""
        section.para(
            f"SCALE-Sim ran {ran_s / 60:.1f} min in this run (the rest came from its cache). "
            f"Its longest layer run here: {longest['cycles']:,} cycles on "
            f"{longest['rows']}x{longest['cols']} {longest['dataflow']} in "
            f"{longest['seconds']:.0f} s{mem}."
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1, help="SCALE-Sim runs at once")
    ap.add_argument("--arrays", default=",".join(map(str, ARRAYS)), help="square array sizes")
    ap.add_argument("--dataflows", default=",".join(DATAFLOWS), help="os, ws")
    ap.add_argument("--networks", default="digits,residual,mobilenet,resnet50")
    ap.add_argument("--budget-minutes", type=float, default=30.0,
                    help="SCALE-Sim time to spend on uncached runs, cheapest runs first")  # fmt: skip
    ap.add_argument("--all", action="store_true", help="run everything, however long")
    ap.add_argument("--plan", action="store_true", help="print the plan and stop")
    ap.add_argument("--venv", type=Path, default=cache_dir() / "scalesim-venv")
    ap.add_argument("--cache", type=Path, default=cache_dir() / "scalesim")
    args = ap.parse_args(argv)
    section = Section("scalesim", "oasa's cycle model beside SCALE-Sim 3.0")
    python, version = ensure_scalesim(args.venv)
    nets = networks(args.networks.split(","))
    arrays = [int(a) for a in args.arrays.split(",")]
    plan = make_plan(nets, arrays, args.dataflows.split(","), version, args.cache,
                     args.budget_minutes, args.all)  # fmt: skip
    for df, why in plan.no_oasa.items():
        print(f"dataflow {df}: not in oasa's cycle model yet ({why})")
    for x in plan.runs + plan.left_out:
        what = "run" if x in plan.runs else "left out"
        print(f"{what}: {x.label}: ~{x.cycles:,} SCALE-Sim cycles to go, ~{x.minutes:.0f} min")
    if args.plan:
        return
    jobs = [j for x in plan.runs for j in x.jobs()]
    ran_s = run_jobs(python, version, jobs, args.cache, args.jobs)
    rows: list[LayerRow] = []
    for x in sorted(plan.runs, key=lambda x: (nets.index(x.net), x.size, x.dataflow)):
        net, r, df = x.net, x.size, x.dataflow
        got = [cached_run(python, version, Job.of(t, r, df), args.cache) for t in net.layers]
        if any(g["stall_cycles"] for g in got):
            raise SystemExit(f"{net.name} {r}x{r} {df}: SCALE-Sim reports stalls; raise SRAM_KB")
        rows += compare(net, r, df, got)
    tot = totals(rows)
    print_summary(tot)
    write_layers_csv(rows)
    rate, stats = measured_rate(args.cache), cache_stats(args.cache)
    section_text(section, version, plan, rows, tot, ran_s, rate, stats)
    section.write()


if __name__ == "__main__":
    main()
