"""cocotb bench 4: whole layers through the Accelerator's command interface, on either
dataflow (``cfg.dataflow``: output- or weight-stationary; same registers and buffers,
different activation layout, all of it from ``build_image``).

The host loads the buffers, programs the command registers, writes CTRL, waits for done
and reads the result rows back, all through the generated Verilog's ports, with its own
operations spaced by a pause pattern. Every layer is compared with the golden model
(outputs and flags, every element), FLAGGED with the number of set flags, and CYCLES with
the cycle model; ``done`` must rise exactly CYCLES + 1 cycles after the start write.
Buffer room and the bases of further layers come from the image's own word counts, never
from one dataflow's layout formula. The host reads results only while no layer runs (the
weight-stationary sequencer reads its partial sums through the host's result read port
while busy); it may write the other buffers at any time.

The worst-case tests run the adversarial stimulus of the overflow bench
(:mod:`oasa_tb.adversarial`) through the whole accelerator, with K > R so that the
weight-stationary array carries partial sums and flags across K tiles through the result
buffer: each worst-case row's flag, as read back, must fire exactly when the data-free
bound leaves the P-bit range.

The K-cut test runs layers whose K is longer than a call holds as the host runs them
(:func:`oasa.sim.calls.plan_calls`): one call per K chunk, in increasing k, each after the
first continuing (MODE bit 2) the raw partial sums and flags the one before left in the
result buffer, which the host never rewrites; only the last call requantizes. Every call
is checked as a layer of its own against the dot products up to the end of its K range,
and the last calls against the golden model over the whole K.
"""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from oasa_tb.accel import AccelHost
from oasa_tb.adversarial import (
    EDGE_KINDS,
    assert_edges_built,
    check_against_bound,
    edge_k,
    edge_weights,
    leaning_weights,
    term_gain,
    worst_case_rows,
)
from oasa_tb.coverage import Coverage
from oasa_tb.scoreboard import Scoreboard
from oasa_tb.tb import ClockedTB

from oasa.sim import golden
from oasa.sim.accel_image import BufferFitError, build_image
from oasa.sim.calls import plan_calls
from oasa.sim.cycles import accelerator_cycles

#: The output stage passes raw P-bit sums (the worst-case tests compare flags and sums).
RAW = {"bias": 0, "mult": 1, "shift": 0, "relu": False, "requant": False}


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
    return x, w, stage_mode(cfg, rng, k, n, mode)


def stage_mode(cfg, rng, k, n, mode) -> dict:
    """Output-stage keywords of mode "raw", "requant" or "relu" for a K-term layer of N
    channels: random multipliers, shifts that keep the outputs spread over the range."""
    span = max(1, min(cfg.acc_max, k * max(abs(cfg.product_min), cfg.product_max)))
    mult = rng.integers(1, 1 << 10, n)
    shift = np.array(
        [max(0, min(cfg.shift_max, (span * int(u)).bit_length() - cfg.act_bits - 1)) for u in mult]
    )
    bias = rng.integers(-span // 4 - 1, span // 4 + 1, n)
    return {
        "bias": bias,
        "mult": mult,
        "shift": shift,
        "relu": mode == "relu",
        "requant": mode != "raw",
    }


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
    budget = 4 * accelerator_cycles(tb.cfg, img.m, img.k, img.n, cont=img.cont) + 1000
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
    predicted = accelerator_cycles(tb.cfg, img.m, img.k, img.n, cont=img.cont)
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


def free_words(cfg, img) -> dict[str, int]:
    """Words left after ``img`` in each buffer: the largest base it may start at."""
    return {
        "act_base": cfg.act_depth - img.act_words.shape[0],
        "wgt_base": cfg.wgt_depth - img.wgt_words.shape[0],
        "param_base": cfg.param_depth - img.bias.shape[0],
        "res_base": cfg.res_depth - img.res_words,
    }


def next_bases(img) -> dict[str, int]:
    """Bases right after ``img``'s words, for a second layer beside it."""
    return {
        "act_base": img.registers["ACT_BASE"] + img.act_words.shape[0],
        "wgt_base": img.registers["WGT_BASE"] + img.wgt_words.shape[0],
        "param_base": img.registers["PARAM_BASE"] + img.bias.shape[0],
        "res_base": img.registers["RES_BASE"] + img.res_words,
    }


def fits(cfg, m, k, n) -> bool:
    """An M x K x N layer fits the buffers (at base 0), by ``build_image``'s own check."""
    try:
        build_image(np.zeros((m, k), dtype=np.int64), np.zeros((k, n), dtype=np.int64), cfg=cfg)
    except BufferFitError:
        return False
    return True


def longest_k(cfg, m, n, k_max) -> int:
    """The largest K <= k_max of an M x K x N layer that fits (0 if none)."""
    lo, hi = 0, k_max
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(cfg, m, mid, n) else (lo, mid - 1)
    return lo


async def run_in_layers(tb, host, cov, sb, x, w, *, tag):
    """X @ W (raw) as consecutive layers of as many rows of X as the buffers take, each
    checked by :func:`check_layer`; returns the (M, N) flags read back."""
    cfg = tb.cfg
    m, k = x.shape
    n = w.shape[1]
    step = next((r for r in range(m, 0, -1) if fits(cfg, r, k, n)), 0)
    assert step, f"{tag}: not even one row of K={k}, N={n} fits the buffers"
    flags = np.zeros((m, n), dtype=bool)
    for r0 in range(0, m, step):
        xs = x[r0 : r0 + step]
        img = layer_image(tb, xs, w, RAW)
        host.load_layer(img)
        waited = await start_and_wait(tb, host, img)
        out, ovf, regs = await read_back(tb, host, img)
        rows = f"{tag} rows {r0}..{r0 + len(xs) - 1}"
        check_layer(tb, sb, cov, img, xs, w, RAW, out, ovf, regs, waited, rows)
        flags[r0 : r0 + len(xs)] = ovf
    return flags


#: What a column of a K-cut layer does over the calls (:func:`k_cut_operands`).
CUT_KINDS = ("early", "steady", "back", "late", "mid", "random")


def k_cut_operands(cfg, rng, m, k, n, chunks, first_kind=0):
    """X (M x K), W (K x N) and the columns' kinds, for a K cut into the calls of ``chunks``
    (K ranges, in increasing k). Row 0 of X is all ``act_max``, so each column's intent holds exactly
    there; the other rows are mostly ``act_max``. Column j is ``CUT_KINDS[first_kind + j]``
    (cyclically), leaning one way (random sign) with the extreme weight where it leans:

    - early: leans over the first call (and on until 1.2 x the range), zero after: its
      flag is raised in an early call and must survive the others, its sum carried as is;
    - steady: a few terms whose |x| |w| sum stays inside the range: never a flag, every
      partial sum exact;
    - back: overflows in the first call, then leans back by about 0.8 x the range in the
      second (saturate: the sum comes back into the range, the flag stays);
    - late: climbs to about 0.9 x the range before the last call and overflows in it;
    - mid: leans one way, thinly, to 1.5 x the range at the end (the flag rises midway);
    - random: uniform weights.
    """
    x = np.full((m, k), cfg.act_max, dtype=np.int64)
    pick = rng.random((m, k))
    pick[0] = 0.5
    x[pick < 0.15] = rng.integers(cfg.act_min, cfg.act_max + 1, int((pick < 0.15).sum()))
    x[pick > 0.95] = 0
    first, second, last = chunks[0], chunks[1], chunks[-1]
    x_big = max(cfg.act_max, -cfg.act_min)
    w = np.zeros((k, n), dtype=np.int64)

    def place(col, lo, hi, count, value):
        count = max(0, min(count, hi - lo))
        col[lo + rng.choice(hi - lo, count, replace=False)] = value

    for j in range(n):
        kind = CUT_KINDS[(first_kind + j) % len(CUT_KINDS)]
        up = rng.random() < 0.5
        lean, back = (cfg.weight_max, cfg.weight_min) if up else (cfg.weight_min, cfg.weight_max)
        term, term_back = cfg.act_max * abs(lean), cfg.act_max * abs(back)  # of row 0
        col = w[:, j]
        if kind == "early":
            col[: min(last.start, max(first.stop, -(-6 * cfg.acc_max // (5 * term))))] = lean
        elif kind == "back":
            col[first] = lean
            place(col, second.start, second.stop, -(-4 * cfg.acc_max // (5 * term_back)), back)
        elif kind == "late":
            place(col, 0, last.start, 9 * cfg.acc_max // (10 * term), lean)
            col[last] = lean
        elif kind == "mid":
            place(col, 0, k, -(-3 * cfg.acc_max // (2 * term)), lean)
        elif kind == "steady":
            budget = cfg.acc_max // x_big  # sum of |w| that no x can take out of the range
            for i in rng.permutation(k):
                v = int(rng.integers(cfg.weight_min, cfg.weight_max + 1))
                if abs(v) <= budget:
                    col[i], budget = v, budget - abs(v)
        else:
            col[:] = rng.integers(cfg.weight_min, cfg.weight_max + 1, k)
    return x, w, [CUT_KINDS[(first_kind + j) % len(CUT_KINDS)] for j in range(n)]


async def run_k_cut(tb, host, cov, sb, x, w, kw, *, res_base, tag):
    """X @ W as the calls of :func:`plan_calls`, run as a host runs them: for each call its
    activations, weights and parameters (at random bases), its registers (MODE bit 2 on
    every call but an output block's first, requantizing only in its last), CTRL.start
    and the wait for done; the result buffer is the calls' own (RES_BASE ``res_base`` for
    every call of an output block) and is only read. Each call is checked against the dot
    products up to the end of its K range (what the result buffer holds after it); returns
    the (M, N) outputs and flags of the last K calls, and their FLAGGED summed."""
    cfg = tb.cfg
    m, k = x.shape
    n = w.shape[1]
    plan = plan_calls(cfg, m, k, n)
    out = np.zeros((m, n), dtype=np.int64)
    ovf = np.zeros((m, n), dtype=bool)
    flagged = 0
    for i, call in enumerate(plan):
        last_k = call.ks.stop == k
        ckw = {name: kw[name][call.chans] for name in ("bias", "mult", "shift")}
        ckw.update(relu=kw["relu"], requant=kw["requant"] and last_k)
        xc, wc = x[call.rows, call.ks], w[call.ks, call.chans]
        room = free_words(cfg, build_image(xc, wc, cfg=cfg, cont=not call.first_k, **ckw))
        room["res_base"] -= res_base  # the block's results stay where the first call put them
        assert room["res_base"] >= 0, f"{tag}: RES_BASE {res_base} leaves no room"
        bases = {name: int(tb.rng.integers(0, r + 1)) for name, r in room.items()}
        bases["res_base"] = res_base
        img = build_image(xc, wc, cfg=cfg, cont=not call.first_k, **ckw, **bases)
        assert img.cont == (not call.first_k) and img.requant == ckw["requant"]
        host.load_layer(img)
        waited = await start_and_wait(tb, host, img)
        got, flags, regs = await read_back(tb, host, img)
        done = slice(0, call.ks.stop)  # the terms the result buffer holds after the call
        ctag = (
            f"{tag} call {i} rows {call.rows.start}..{call.rows.stop - 1} "
            f"chans {call.chans.start}..{call.chans.stop - 1} k {call.ks.start}..{call.ks.stop - 1}"
        )
        check_layer(
            tb, sb, cov, img, x[call.rows, done], w[done, call.chans], ckw, got, flags, regs,
            waited, ctag,
        )  # fmt: skip
        cov.add("k_cut_calls")
        cov.add("k_cut_continued", int(img.cont))
        if last_k:
            out[call.rows, call.chans] = got
            ovf[call.rows, call.chans] = flags
            flagged += regs["FLAGGED"]
    return out, ovf, flagged


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
            try:
                room = free_words(cfg, layer_image(tb, x, w, kw))
                break
            except BufferFitError:
                continue
        else:
            raise AssertionError("20 random layers in a row did not fit the buffers")
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
    k = longest_k(cfg, cfg.rows, cfg.cols, 500)
    x = np.full((cfg.rows, k), cfg.act_max)
    x[rng.random(x.shape) < 0.05] = 0
    w = np.where(rng.random((k, cfg.cols)) < 0.9, cfg.weight_max, cfg.weight_min)
    w[:, ::2] = np.where(rng.random((k, (cfg.cols + 1) // 2)) < 0.9, cfg.weight_min, cfg.weight_max)
    img = layer_image(tb, x, w, RAW)
    host.load_layer(img)
    waited = await start_and_wait(tb, host, img)
    out, ovf, regs = await read_back(tb, host, img)
    check_layer(tb, sb, cov, img, x, w, RAW, out, ovf, regs, waited, f"{cfg.rows}x{k}x{cfg.cols}")
    sb.finish()
    assert golden.gemm(x, w, cfg=cfg).overflow.any(), "the stimulus was meant to overflow"
    cov.stream(host)
    cov.write()


@cocotb.test()
async def test_next_layer_programmed_while_running(dut):
    """While a layer runs, the host writes the next layer's buffers into other regions and
    its command registers, and even writes CTRL again: the running layer must not notice
    (the command was copied at start, and start is ignored while busy). It reads no
    results until the layer is done."""
    tb, host, cov, sb = await setup(dut, "program_while_running", "random")
    cfg = tb.cfg
    x1, w1, kw1 = random_layer(tb, m=2 * cfg.rows, k=3 * cfg.rows + 5, n=cfg.cols)
    x2, w2, kw2 = random_layer(tb, m=cfg.rows + 1, k=cfg.rows, n=cfg.cols + 1)
    img1 = layer_image(tb, x1, w1, kw1)
    img2 = layer_image(tb, x2, w2, kw2, **next_bases(img1))
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
async def test_k_cut_into_calls(dut):
    """Two layers whose K is more than twice what one call holds, cut into calls by
    :func:`plan_calls` (three K chunks or more) and run as a host runs them: a full tile,
    raw, then a partial one that requantizes in its last call, with its results over the
    first one's. Columns overflow in the first call and must keep the flag (and the sum)
    through the others, stay inside the range (exact partial sums), come back into the
    range, or overflow only in a later call (:func:`k_cut_operands`). Every call's results,
    flags, FLAGGED and CYCLES are checked (the cycle model with ``cont``), then the layer's
    outputs, flags and FLAGGED against the golden model over the whole K."""
    tb, host, cov, sb = await setup(dut, "k_cut_into_calls")
    cfg, rng = tb.cfg, tb.rng
    fit = longest_k(cfg, 1, 1, 1 << 16)  # the longest K one call holds
    layers = (
        (cfg.rows, cfg.cols, "raw", 0),
        (max(1, cfg.rows - 1), max(1, cfg.cols - 1), rng.choice(["requant", "relu"]), 3),
    )
    res_base = 0
    for m, n, mode, first_kind in layers:
        k = 2 * fit + int(rng.integers(fit // 8, fit // 4 + 1))
        plan = plan_calls(cfg, m, k, n)
        chunks = [slice(a, b) for a, b in sorted({(c.ks.start, c.ks.stop) for c in plan})]
        tag = f"{m}x{k}x{n} {mode} in {len(plan)} calls"
        assert len(chunks) >= 3, f"{tag}: K cut into {len(chunks)} chunks, meant 3 or more"
        x, w, kinds = k_cut_operands(cfg, rng, m, k, n, chunks, first_kind)
        kw = stage_mode(cfg, rng, k, n, mode)
        out, ovf, flagged = await run_k_cut(tb, host, cov, sb, x, w, kw, res_base=res_base, tag=tag)
        want, g = expected(x, w, cfg, kw)
        sb.check(out.tolist(), want.tolist(), f"{tag}: layer outputs")
        sb.check(ovf.tolist(), g.overflow.tolist(), f"{tag}: layer flags")
        sb.check(flagged, int(g.overflow.sum()), f"{tag}: layer FLAGGED")
        # The stimulus did what it was meant to: flags raised in the first call (which must
        # survive two or more continuing calls) or at least before the last one, and the
        # columns' other intents.
        first = golden.gemm(x[:, : chunks[0].stop], w[: chunks[0].stop], cfg=cfg).overflow
        early = golden.gemm(x[:, : chunks[-2].stop], w[: chunks[-2].stop], cfg=cfg).overflow
        assert "early" not in kinds or first.any(), f"{tag}: no flag raised in the first call"
        assert early.any(), f"{tag}: no flag raised before the last call"
        assert "late" not in kinds or (g.overflow & ~early).any(), f"{tag}: no flag raised late"
        assert "steady" not in kinds or (~g.overflow).any(), f"{tag}: every output flagged"
        cov.add("k_cut_early_flags", int(early.sum()))
        res_base = int(rng.integers(0, m))  # the next layer's results over this one's
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


@cocotb.test()
async def test_worst_case_random_weights(dut):
    """Worst-case rows of random (partly one-signed) weight columns, K > R spread around
    where the bound meets the range (within the buffers), N = C and C + 1: every flag read
    back agrees with the data-free bound, every output with the golden model."""
    tb, host, cov, sb = await setup(dut, "worst_case_random_weights")
    cfg, rng = tb.cfg, tb.rng
    k_mid = cfg.acc_max / term_gain(cfg)
    capped = False
    for rep in range(max(1, int(2 * tb.scale))):
        n = cfg.cols if rep % 2 == 0 else cfg.cols + 1  # the second spills into a new tile
        k_top = longest_k(cfg, 1, n, 1 << 16)
        k = int(np.clip(k_mid * rng.uniform(0.5, 2.0), cfg.rows + 1, k_top))
        capped |= k_mid > k_top
        w = leaning_weights(cfg, rng, k, n)
        x, lo, hi = worst_case_rows(cfg, w)
        tag = f"random K={k} N={n}"
        ovf = await run_in_layers(tb, host, cov, sb, x, w, tag=tag)
        check_against_bound(cfg, ovf, lo, hi, tag=tag, cov=cov)
    if capped:
        cov.note(f"accelerator random weights of {cfg.name}: K capped by the buffers")
    sb.finish()
    cov.stream(host)
    cov.write()


@cocotb.test()
async def test_worst_case_edge_weights(dut):
    """Columns whose bound sits exactly at an end of the range (no flag allowed) and one
    unit of weight beyond it (the flag must fire), shuffled, plus two one step over with
    their weights packed into the first rows: the flag is set in an early K tile and must
    survive 2 or more K tiles of zeros (weight-stationary: through the result buffer)."""
    tb, host, cov, sb = await setup(dut, "worst_case_edge_weights")
    cfg, rng = tb.cfg, tb.rng
    front = 2
    n = max(cfg.cols, len(EDGE_KINDS) + front)
    k = edge_k(cfg) + 2 * cfg.rows
    if not fits(cfg, 1, k, n):
        reason = f"accelerator edge weights of {cfg.name} need K={k}: beyond the buffers"
        cov.note(reason)
        cov.write()
        pytest.skip(reason)
    w = edge_weights(cfg, rng, k, n, front=front)
    x, lo, hi = worst_case_rows(cfg, w)
    ovf = await run_in_layers(tb, host, cov, sb, x, w, tag=f"edge K={k}")
    want_hi, want_lo = check_against_bound(cfg, ovf, lo, hi, tag=f"edge K={k}", cov=cov)
    assert_edges_built(want_hi, want_lo, front)
    cov.add("adv_edge_safe", 2)
    cov.add("adv_edge_over", 2 + front)
    sb.finish()
    cov.stream(host)
    cov.write()
