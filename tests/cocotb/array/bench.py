"""cocotb bench 2: the systolic array (``ArrayCore``, raw results) against the golden model.

Whole GEMMs go in as tiles through the two input streams; every row that leaves is
compared in order with ``golden.gemm`` (values and flags, row by row), and a run with
no stalls must take exactly the cycles the cycle model predicts. Partial tiles (M, N not
multiples of R, C) are zero-padded by the driver, as every backend does.
"""

from __future__ import annotations

import cocotb
from oasa_tb.core import CoreDriver
from oasa_tb.coverage import Coverage
from oasa_tb.tb import ClockedTB


def operands(tb, m, k, n):
    """Operands over the whole legal range, with the extremes made common."""
    cfg, rng = tb.cfg, tb.rng
    x = rng.integers(cfg.act_min, cfg.act_max + 1, (m, k))
    w = rng.integers(cfg.weight_min, cfg.weight_max + 1, (k, n))
    x[rng.random((m, k)) < 0.25] = cfg.act_max
    w[rng.random((k, n)) < 0.15] = cfg.weight_min
    if rng.random() < 0.5:  # lean positive: large products of one sign overflow
        w[rng.random((k, n)) < 0.3] = cfg.weight_max
    return x, w


async def setup(dut, test, **pauses):
    tb = ClockedTB(dut, "array")
    drv = CoreDriver(tb, **pauses)
    await tb.start()
    return tb, drv, Coverage("array", test, tb.cfg)


async def gemm(tb, drv, cov, m, k, n, *, check_cycles=True):
    x, w = operands(tb, m, k, n)
    drv.restart_timing()
    drv.queue_gemm(x, w, tag=f"{m}x{k}x{n}", cov=cov)
    await drv.drain()
    if check_cycles:
        got, want = drv.measured_cycles(), drv.expected_cycles(m, k, n)
        assert got == want, f"{m}x{k}x{n}: {got} cycles, the cycle model says {want}"


def finish(drv, cov):
    drv.sb.finish()
    for agent in (drv.act, drv.wgt):
        cov.stream(agent)
    cov.write()


def long_k(cfg):
    """A K that overflows narrow accumulators often without making the run long."""
    return 24 if cfg.acc_bits <= 12 else 40


@cocotb.test()
async def test_random_tiles(dut):
    """Random GEMM shapes, each from an idle array, with exact cycle counts."""
    tb, drv, cov = await setup(dut, "random_tiles")
    cfg, rng = tb.cfg, tb.rng
    for _ in range(max(1, int(6 * tb.scale))):
        m = int(rng.integers(1, 2 * cfg.rows + 2))
        n = int(rng.integers(1, 2 * cfg.cols + 2))
        k = int(rng.integers(1, long_k(cfg) + 1))
        await gemm(tb, drv, cov, m, k, n)
    finish(drv, cov)


@cocotb.test()
async def test_back_to_back_tiles(dut):
    """Many tiles in one GEMM: K = R (never waits), K < R (a last beat waits for the
    drain), K = 1, and long K; the cycle model covers each case."""
    tb, drv, cov = await setup(dut, "back_to_back_tiles")
    cfg = tb.cfg
    m, n = 3 * cfg.rows, 2 * cfg.cols
    for k in sorted({cfg.rows, max(1, cfg.rows - 1), 1, 2, long_k(cfg)}):
        await gemm(tb, drv, cov, m, k, n)
    finish(drv, cov)


@cocotb.test()
async def test_partial_tiles(dut):
    """M and N that are not multiples of R and C, smaller than one tile, and one more
    than a tile."""
    tb, drv, cov = await setup(dut, "partial_tiles")
    cfg = tb.cfg
    shapes = {
        (1, 5, 1),
        (max(1, cfg.rows - 1), 7, max(1, cfg.cols - 1)),
        (cfg.rows + 1, 9, cfg.cols + 1),
        (2 * cfg.rows + 1, 3, 1),
        (1, 11, 2 * cfg.cols + 1),
    }
    for m, k, n in sorted(shapes):
        await gemm(tb, drv, cov, m, k, n)
    finish(drv, cov)


@cocotb.test()
@cocotb.parametrize(
    (
        ("act_pause", "wgt_pause"),
        [("random", "none"), ("none", "random"), ("bursty", "alternate"), ("heavy", "random")],
    )
)
async def test_stalls(dut, act_pause, wgt_pause):
    """Independent random gaps on the two input streams: nothing lost, duplicated or
    reordered, whatever the pattern (the DUT itself also holds ``ready`` low while a
    short tile waits for the drain)."""
    tb, drv, cov = await setup(
        dut, f"stalls_{act_pause}_{wgt_pause}", act_pause=act_pause, wgt_pause=wgt_pause
    )
    cfg, rng = tb.cfg, tb.rng
    for _ in range(max(1, int(3 * tb.scale))):
        m = int(rng.integers(1, 2 * cfg.rows + 2))
        n = int(rng.integers(1, 2 * cfg.cols + 2))
        k = int(rng.choice([1, max(1, cfg.rows - 1), cfg.rows, long_k(cfg)]))
        await gemm(tb, drv, cov, m, k, n, check_cycles=False)
    finish(drv, cov)


@cocotb.test()
async def test_requantized(dut):
    """The output stage in line: per-channel bias, multiplier and shift, ReLU off and on."""
    tb, drv, cov = await setup(dut, "requantized")
    cfg, rng = tb.cfg, tb.rng
    for relu in (False, True):
        n = cfg.cols
        k = long_k(cfg)
        span = k * max(abs(cfg.product_min), cfg.product_max)
        span = min(span, cfg.acc_max)
        mult = rng.integers(1, min(cfg.mult_max, 1 << 10) + 1, n)
        # Shift so that typical sums land across the activation range, not all clamped.
        shift = [
            max(0, min(cfg.shift_max, (span * int(mu)).bit_length() - cfg.act_bits - 1))
            for mu in mult
        ]
        bias = rng.integers(-span // 4 - 1, span // 4 + 1, n)
        drv.set_output_stage(requant=True, relu=relu, bias=bias, mult=mult, shift=shift)
        await gemm(tb, drv, cov, 2 * cfg.rows + 1, k, n)
    finish(drv, cov)
