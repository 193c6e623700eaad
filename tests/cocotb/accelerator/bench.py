"""cocotb bench 4: whole layers through the Accelerator's command interface.

The host loads the buffers, programs the command registers, writes CTRL, waits for done
and reads the result rows back, all through the generated Verilog's ports, with its own
operations spaced by a pause pattern. Every layer is compared with the golden model
(outputs and flags, every element), FLAGGED with the number of set flags, and CYCLES with
the cycle model; ``done`` must rise exactly CYCLES + 1 cycles after the start write.
"""

from __future__ import annotations

import cocotb
import numpy as np
from oasa_tb.accel import AccelHost
from oasa_tb.coverage import Coverage
from oasa_tb.scoreboard import Scoreboard
from oasa_tb.tb import ClockedTB

from oasa.sim import golden
from oasa.sim.accel_image import build_image
from oasa.sim.cycles import accelerator_cycles
from oasa.sim.tiling import tile_grid


def random_layer(tb, *, m=None, k=None, n=None):
    """A random shape that fits the buffers, operands over the whole range (extremes made
    common, leaning one way so narrow accumulators overflow), random output-stage mode."""
    cfg, rng = tb.cfg, tb.rng
    m = m or int(rng.integers(1, 3 * cfg.rows + 2))
    n = n or int(rng.integers(1, 3 * cfg.cols + 2))
    k = k or int(rng.choice([1, max(1, cfg.rows - 1), cfg.rows, int(rng.integers(2, 40))]))
    x = rng.integers(cfg.act_min, cfg.act_max + 1, (m, k))
    w = rng.integers(cfg.weight_min, cfg.weight_max + 1, (k, n))
    x[rng.random((m, k)) < 0.25] = cfg.act_max
    w[rng.random((k, n)) < 0.3] = rng.choice([cfg.weight_min, cfg.weight_max])
    mode = rng.choice(["raw", "requant", "relu"])
    span = max(1, min(cfg.acc_max, k * max(abs(cfg.product_min), cfg.product_max)))
    mult = rng.integers(1, 1 << 10, n)
    shift = np.array(
        [max(0, min(cfg.shift_max, (span * int(u)).bit_length() - cfg.act_bits - 1)) for u in mult]
    )
    bias = rng.integers(-span // 4 - 1, span // 4 + 1, n)
    return (
        x,
        w,
        {
            "bias": bias,
            "mult": mult,
            "shift": shift,
            "relu": mode == "relu",
            "requant": mode != "raw",
        },
    )


def expected(x, w, cfg, kw):
    g = golden.gemm(x, w, cfg=cfg)
    out = g.out
    if kw["requant"]:
        out = golden.output_stage(
            g.out, cfg=cfg, bias=kw["bias"], mult=kw["mult"], shift=kw["shift"], relu=kw["relu"]
        )
    return out, g


async def setup(dut, test, pause="none"):
    tb = ClockedTB(dut, "accelerator")
    host = tb.add(AccelHost(tb, pause=pause))
    await tb.start()
    return tb, host, Coverage("accelerator", test, tb.cfg), Scoreboard("layer", tb.log)


async def start_and_wait(tb, host, img):
    """Write CTRL.start, then step until done; return the cycles from the start write."""
    host.write_reg("CTRL", 1)
    budget = 4 * accelerator_cycles(tb.cfg, img.m, img.k, img.n) + 1000
    await tb.run_until(lambda: host.layer_done, budget, "done")
    return host.take_layer_cycles()


async def read_back(tb, host, img):
    words, regs = [], {}
    host.read_results(img.registers["RES_BASE"], img.res_words, words)
    host.read_reg("FLAGGED", regs)
    host.read_reg("CYCLES", regs)
    host.read_reg("STATUS", regs)
    await tb.run_until(lambda: host.idle_now, 20 * img.res_words + 200, "the read-back")
    out, ovf = host.decode_results(words, img)
    return out, ovf, regs


def check_layer(tb, sb, cov, img, x, w, kw, out, ovf, regs, waited, tag):
    want, g = expected(x, w, tb.cfg, kw)
    sb.check(out.tolist(), want.tolist(), f"{tag} outputs")
    sb.check(ovf.tolist(), g.overflow.tolist(), f"{tag} flags")
    predicted = accelerator_cycles(tb.cfg, img.m, img.k, img.n)
    sb.check(
        {
            "FLAGGED": regs["FLAGGED"],
            "CYCLES": regs["CYCLES"],
            "STATUS": regs["STATUS"],
            "done_after": waited,
        },
        {
            "FLAGGED": int(g.overflow.sum()),
            "CYCLES": predicted,
            "STATUS": 2,
            "done_after": predicted + 1,
        },
        f"{tag} registers",
    )
    cov.add("dot_products", g.out.size)
    cov.add("layers")
    cov.flags(g.overflow, g.final_overflow)


def layer_image(tb, x, w, kw, **bases):
    return build_image(x, w, cfg=tb.cfg, **kw, **bases)


@cocotb.test()
@cocotb.parametrize(pause=["none", "random", "bursty"])
async def test_layers(dut, pause):
    """Random layers one after another (no reset), random buffer bases, random host
    timing; every output mode; shapes with partial tiles and K < R."""
    tb, host, cov, sb = await setup(dut, f"layers_{pause}", pause)
    cfg, rng = tb.cfg, tb.rng
    for i in range(max(1, int(4 * tb.scale))):
        for _ in range(20):
            x, w, kw = random_layer(tb)
            m, k = x.shape
            n = w.shape[1]
            mts, nts = tile_grid(cfg, m, n)
            room = {
                "act_base": cfg.act_depth - mts * k,
                "wgt_base": cfg.wgt_depth - nts * k,
                "param_base": cfg.param_depth - nts,
                "res_base": cfg.res_depth - nts * m,
            }
            if min(room.values()) >= 0:
                break
        bases = {name: int(rng.integers(0, r + 1)) for name, r in room.items()}
        img = layer_image(tb, x, w, kw, **bases)
        host.load_layer(img)
        waited = await start_and_wait(tb, host, img)
        out, ovf, regs = await read_back(tb, host, img)
        check_layer(
            tb,
            sb,
            cov,
            img,
            x,
            w,
            kw,
            out,
            ovf,
            regs,
            waited,
            f"layer {i} {x.shape[0]}x{x.shape[1]}x{w.shape[1]}",
        )
    sb.finish()
    cov.stream(host)
    cov.write()


@cocotb.test()
async def test_overflowing_layer(dut):
    """One tile with a long K of the largest products leaning one way per column: most
    outputs overflow; the flags land next to each result and FLAGGED counts them."""
    tb, host, cov, sb = await setup(dut, "overflowing_layer", "random")
    cfg, rng = tb.cfg, tb.rng
    k = min(cfg.act_depth, cfg.wgt_depth, 500)
    x = np.full((cfg.rows, k), cfg.act_max)
    x[rng.random(x.shape) < 0.05] = 0
    w = np.where(rng.random((k, cfg.cols)) < 0.9, cfg.weight_max, cfg.weight_min)
    w[:, ::2] = np.where(rng.random((k, (cfg.cols + 1) // 2)) < 0.9, cfg.weight_min, cfg.weight_max)
    kw = {"bias": 0, "mult": 1, "shift": 0, "relu": False, "requant": False}
    img = layer_image(tb, x, w, kw)
    host.load_layer(img)
    waited = await start_and_wait(tb, host, img)
    out, ovf, regs = await read_back(tb, host, img)
    check_layer(tb, sb, cov, img, x, w, kw, out, ovf, regs, waited, f"{cfg.rows}x{k}x{cfg.cols}")
    sb.finish()
    assert golden.gemm(x, w, cfg=cfg).overflow.any(), "the stimulus was meant to overflow"
    cov.stream(host)
    cov.write()


@cocotb.test()
async def test_next_layer_programmed_while_running(dut):
    """While a layer runs, the host writes the next layer's buffers into other regions and
    its command registers, and even writes CTRL again: the running layer must not notice
    (the command was copied at start, and start is ignored while busy)."""
    tb, host, cov, sb = await setup(dut, "program_while_running", "random")
    cfg = tb.cfg
    x1, w1, kw1 = random_layer(tb, m=2 * cfg.rows, k=3 * cfg.rows + 5, n=cfg.cols)
    x2, w2, kw2 = random_layer(tb, m=cfg.rows + 1, k=cfg.rows, n=cfg.cols + 1)
    img1 = layer_image(tb, x1, w1, kw1)
    k1 = x1.shape[1]
    img2 = layer_image(
        tb,
        x2,
        w2,
        kw2,
        act_base=2 * k1,
        wgt_base=k1,
        param_base=1,
        res_base=img1.res_words,
    )
    host.load_layer(img1)
    host.write_reg("CTRL", 1)
    await tb.run_until(lambda: host.start_cycle is not None, 10_000, "loading layer 1")
    host.load_layer(img2)  # while layer 1 runs
    host.write_reg("CTRL", 1)  # ignored: busy
    budget = 4 * accelerator_cycles(cfg, img1.m, img1.k, img1.n) + 10_000
    await tb.run_until(lambda: host.idle_now and host.layer_done, budget, "layer 1")
    overlapped = [
        c for c, op in host.log if op[0] == "mem" and host.start_cycle < c < host.done_cycle
    ]
    waited1 = host.take_layer_cycles()
    out1, ovf1, regs1 = await read_back(tb, host, img1)
    check_layer(tb, sb, cov, img1, x1, w1, kw1, out1, ovf1, regs1, waited1, "layer 1")
    assert overlapped, "layer 2 was meant to be loaded while layer 1 ran"
    assert regs1["STATUS"] == 2, "a CTRL write while busy must not start another layer"
    waited2 = await start_and_wait(tb, host, img2)
    out2, ovf2, regs2 = await read_back(tb, host, img2)
    check_layer(tb, sb, cov, img2, x2, w2, kw2, out2, ovf2, regs2, waited2, "layer 2")
    sb.finish()
    cov.stream(host)
    cov.write()


@cocotb.test()
async def test_zero_size_finishes_at_once(dut):
    """A start with M = 0 completes at once, with nothing written and zero cycles."""
    tb, host, cov, sb = await setup(dut, "zero_size")
    for name, value in (("M", 0), ("K", 5), ("N", 3)):
        host.write_reg(name, value)
    host.write_reg("CTRL", 1)
    await tb.run_until(lambda: host.idle_now, 100, "the writes")
    await tb.step(2)
    regs = {}
    host.read_reg("STATUS", regs)
    host.read_reg("CYCLES", regs)
    host.read_reg("FLAGGED", regs)
    await tb.run_until(lambda: host.idle_now, 100, "the reads")
    sb.check(regs, {"STATUS": 2, "CYCLES": 0, "FLAGGED": 0}, "zero-size layer")
    sb.finish()
    cov.write()
