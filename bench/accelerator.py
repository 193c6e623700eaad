"""Accelerator figures: utilization per layer, cycle model vs RTL, simulation speed.

Prints, for the benchmark layers of issue 4, the cycles predicted by the cycle model and
measured on the RTL (Verilator), the utilization (useful MACs / (R*C*cycles)) and where
the cycles beyond K*tiles go; then the Verilator backend's speed (first build, and
simulated cycles per second with buffer load and read-back included) and the Amaranth
backend's speed on the same array.
"""

from __future__ import annotations

import time

import numpy as np

from oasa.config import ArrayConfig
from oasa.sim.accel_image import build_image
from oasa.sim.backends.amaranth_accel import run_accel_images
from oasa.sim.backends.verilator_accel import VerilatorAccelerator
from oasa.sim.backends.verilator_build import build_accelerator
from oasa.sim.cycles import accelerator_cycles, tile_period
from oasa.sim.tiling import tile_grid

LAYERS = [
    ("3x3x32 conv as GEMM", ArrayConfig(), 64, 288, 64),
    ("short K", ArrayConfig(), 64, 9, 64),
    ("long K", ArrayConfig(), 64, 1024, 64),
    ("16x16 array", ArrayConfig(rows=16, cols=16), 64, 576, 64),
]


def operands(rng, m, k, n):
    return rng.integers(0, 16, (m, k)), rng.integers(-8, 8, (k, n))


def main() -> None:
    rng = np.random.default_rng(0)
    print("utilization, whole layer start to done (useful MACs / (R*C*cycles))")
    print(
        f"{'layer':<22} {'array':<6} {'M x K x N':<13} {'model':>7} {'RTL':>7} {'util %':>7}  beyond K per tile"
    )
    for name, cfg, m, k, n in LAYERS:
        predicted = accelerator_cycles(cfg, m, k, n)
        x, w = operands(rng, m, k, n)
        with VerilatorAccelerator(cfg) as accel:
            measured = accel.run(build_image(x, w, cfg=cfg)).cycles
        mts, nts = tile_grid(cfg, m, n)
        tiles = mts * nts
        stall = tiles * (tile_period(cfg, k) - k)
        fixed = predicted - tiles * k - stall
        util = m * k * n / (cfg.rows * cfg.cols * measured)
        print(
            f"{name:<22} {cfg.rows}x{cfg.cols:<4} {f'{m}x{k}x{n}':<13} {predicted:>7} {measured:>7} "
            f"{100 * util:7.2f}  {fixed} fill/drain once + {stall} waiting for the drain"
        )

    print("\nVerilator backend, 8 x 8, 64 x 288 x 64 (buffer load and read-back included)")
    cfg = ArrayConfig()
    started = time.perf_counter()
    b = build_accelerator(cfg)
    print(
        f"  build: {'cached' if b.cached else f'{b.seconds:.1f} s'} ({time.perf_counter() - started:.1f} s incl. Verilog)"
    )
    x, w = operands(rng, 64, 288, 64)
    for load in ("backdoor", "ports"):
        with VerilatorAccelerator(cfg, load=load) as accel:
            best = float("inf")
            for _ in range(5):
                t = time.perf_counter()
                run = accel.run(build_image(x, w, cfg=cfg))
                best = min(best, time.perf_counter() - t)
            print(
                f"  load={load:<8} {run.cycles} layer cycles in {best * 1e3:.1f} ms: {run.cycles / best / 1e6:.2f} M cycles/s"
            )

    xs, ws = operands(rng, 16, 288, 16)
    img = build_image(xs, ws, cfg=cfg)
    t = time.perf_counter()
    (run,) = run_accel_images([img])
    secs = time.perf_counter() - t
    print(
        f"Amaranth backend, 8 x 8, 16 x 288 x 16: {run.cycles} cycles in {secs:.1f} s: {run.cycles / secs:.0f} cycles/s"
    )


if __name__ == "__main__":
    main()
