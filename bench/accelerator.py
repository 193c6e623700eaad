"""Accelerator figures: utilization per layer, cycle model vs RTL, simulation speed.

For a few benchmark layers, in both dataflows: the cycles predicted by the cycle model and
measured on the RTL (Verilator), the utilization (useful MACs / (R*C*cycles)) and where
the cycles beyond the beats go; then the Verilator backend's speed (first build, and simulated cycles per
second with buffer load and read-back included) and the Amaranth backend's speed on the
same array. Prints the tables and writes its section of docs/results.md
(``docs/results/accelerator.md``).
"""

from __future__ import annotations

import time

import numpy as np
from results import Section

from oasa.config import ArrayConfig
from oasa.sim.accel_image import build_image
from oasa.sim.backends.amaranth_accel import run_accel_images
from oasa.sim.backends.verilator_accel import VerilatorAccelerator
from oasa.sim.backends.verilator_build import build_accelerator
from oasa.sim.cycles import accelerator_cycles
from oasa.sim.tiling import tile_grid

LAYERS = [
    ("3x3x32 conv as GEMM", ArrayConfig(), 64, 288, 64),
    ("short K", ArrayConfig(), 64, 9, 64),
    ("long K", ArrayConfig(), 64, 1024, 64),
    ("16 x 16 array", ArrayConfig(rows=16, cols=16), 64, 576, 64),
]


def operands(rng, m, k, n):
    return rng.integers(0, 16, (m, k)), rng.integers(-8, 8, (k, n))


def beats_and_waits(cfg: ArrayConfig, m: int, k: int, n: int) -> tuple[int, int, int]:
    """(beats, once, waiting): the cycles the array takes a beat in (output-stationary:
    K per tile; weight-stationary: M rows per pass), the cycles paid once per layer (those
    of a one-tile layer beyond its beats), and the rest (waits between tiles or passes)."""
    predicted = accelerator_cycles(cfg, m, k, n)
    mts, nts = tile_grid(cfg, m, n)
    if cfg.dataflow == "ws":
        beats = nts * -(-k // cfg.rows) * m
        once = accelerator_cycles(cfg, m, min(k, cfg.rows), min(n, cfg.cols)) - m
    else:
        beats = mts * nts * k
        once = accelerator_cycles(cfg, min(m, cfg.rows), k, min(n, cfg.cols)) - k
    return beats, once, predicted - beats - once


def utilization(section: Section, rng) -> None:
    print("utilization, whole layer start to done (useful MACs / (R*C*cycles))")
    print(
        f"{'layer':<22} {'array':<6} {'flow':<4} {'M x K x N':<13} {'model':>7} {'RTL':>7} "
        f"{'util %':>7}  once / waiting"
    )
    rows = []
    for name, base, m, k, n in LAYERS:
        for flow in ("os", "ws"):
            cfg = base.replace(dataflow=flow)
            predicted = accelerator_cycles(cfg, m, k, n)
            x, w = operands(rng, m, k, n)
            with VerilatorAccelerator(cfg) as accel:
                measured = accel.run(build_image(x, w, cfg=cfg)).cycles
            _, once, waiting = beats_and_waits(cfg, m, k, n)
            util = m * k * n / (cfg.rows * cfg.cols * measured)
            print(
                f"{name:<22} {cfg.rows}x{cfg.cols:<4} {flow:<4} {f'{m}x{k}x{n}':<13} "
                f"{predicted:>7} {measured:>7} {100 * util:7.2f}  {once} / {waiting}"
            )
            rows.append(
                [name, f"{cfg.rows} x {cfg.cols}", flow, f"{m} x {k} x {n}", f"{predicted:,}",
                 f"{measured:,}", f"{100 * util:.2f} %", once, waiting]
            )  # fmt: skip
    section.para(
        "A whole layer, start to done, on the RTL compiled by Verilator, random 4-bit "
        "operands, output-stationary (`os`) and weight-stationary (`ws`). *model* is "
        "`oasa.sim.cycles.accelerator_cycles`, *RTL* the CYCLES register; utilization is "
        "useful MACs / (R·C·cycles). The array takes one beat a cycle (`os`: K per tile, "
        "`ws`: M rows per pass); *once* counts the cycles a one-tile layer pays beyond its "
        "beats (issue, weight load, array latency, drain, output stage, flag count), "
        "*waiting* the rest: `os` tiles shorter than R waiting for the drain, `ws` passes "
        "waiting for their weights (R + 1 cycles a pass when M is smaller) "
        "or for their partial sums."
    )
    section.table(
        ["layer", "array", "dataflow", "M x K x N", "model cycles", "RTL cycles",
         "utilization", "once", "waiting"],
        rows,
    )  # fmt: skip
    agree = all(r[4] == r[5] for r in rows)
    section.para(
        "The model's cycles equal the RTL's on every line."
        if agree
        else "**The model's cycles differ from the RTL's on some line.**"
    )


def speed(section: Section, rng) -> None:
    print("\nVerilator backend, 8 x 8, 64 x 288 x 64 (buffer load and read-back included)")
    cfg = ArrayConfig()
    started = time.perf_counter()
    b = build_accelerator(cfg)
    build = "cached" if b.cached else f"{b.seconds:.1f} s"
    print(f"  build: {build} ({time.perf_counter() - started:.1f} s incl. Verilog)")
    x, w = operands(rng, 64, 288, 64)
    rows = []
    for load, how in (
        ("backdoor", "buffers loaded straight into the simulated memories (the default)"),
        ("ports", "buffers loaded word by word through the host ports"),
    ):
        with VerilatorAccelerator(cfg, load=load) as accel:
            best = float("inf")
            for _ in range(5):
                t = time.perf_counter()
                run = accel.run(build_image(x, w, cfg=cfg))
                best = min(best, time.perf_counter() - t)
            print(
                f"  load={load:<8} {run.cycles} layer cycles in {best * 1e3:.1f} ms: {run.cycles / best / 1e6:.2f} M cycles/s"
            )
            rows.append(
                [f"Verilator, {how}", "8 x 8", "64 x 288 x 64", f"{run.cycles:,}",
                 f"{best * 1e3:.1f} ms", f"{run.cycles / best / 1e6:.2f} M"]
            )  # fmt: skip

    xs, ws = operands(rng, 16, 288, 16)
    img = build_image(xs, ws, cfg=cfg)
    t = time.perf_counter()
    (run,) = run_accel_images([img])
    secs = time.perf_counter() - t
    print(
        f"Amaranth backend, 8 x 8, 16 x 288 x 16: {run.cycles} cycles in {secs:.1f} s: {run.cycles / secs:.0f} cycles/s"
    )
    rows.append(
        ["Amaranth simulator", "8 x 8", "16 x 288 x 16", f"{run.cycles:,}", f"{secs:.1f} s",
         f"{run.cycles / secs:,.0f}"]
    )  # fmt: skip
    section.para(
        "Simulation speed of the whole accelerator (build excluded; Verilator: best of 5, "
        f"buffer load and read-back included). The Verilator build of this configuration: "
        f"{build} in this run (a first build is cached under `~/.cache/oasa`)."
    )
    section.table(["backend", "array", "M x K x N", "cycles", "wall time", "cycles/s"], rows)


def main() -> None:
    section = Section("accelerator", "Accelerator: utilization and simulation speed")
    rng = np.random.default_rng(0)
    utilization(section, rng)
    speed(section, rng)
    section.write()


if __name__ == "__main__":
    main()
