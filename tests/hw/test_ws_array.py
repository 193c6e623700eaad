"""WSArray (weight-stationary) on Amaranth's simulator: whole GEMMs, K tiles chained through
the partial-sum inputs, against the golden model bit for bit (results and flags); cycle
counts against the cycle functions; broken variants that the comparison must catch."""

import numpy as np
import pytest
import reference
from amaranth.hdl import Signal, signed
from util import run_bench

from oasa.config import ArrayConfig
from oasa.hw.broken import WSArrayLoadsAllColumnsAtOnce
from oasa.hw.ws_array import (
    WSPE,
    WSArray,
    ws_gemm_cycles,
    ws_pass_interval,
    ws_tile_cycles,
)
from oasa.sim import golden


def rtl_ws_gemm(
    x,
    w,
    cfg,
    *,
    array=WSArray,
    chain="top",
    feedback=1,
    stall_rng=None,
    stall_prob=0.0,
    pad_rng=None,
):
    """Run X (M x K) times W (K x N) through ``array(cfg)``: one pass per (N tile, K tile),
    K tiles innermost in increasing k. Two independent producers offer the weight beats
    and the activation rows of every pass in order, each as early as it can (the array
    decides which goes in when); with ``stall_rng`` a producer idles before a new beat
    with probability ``stall_prob``.

    ``chain="top"`` feeds row m of a K tile's results back as row m's ``i_psum`` of the
    next K tile, ``feedback`` cycles after the row left. ``chain="bottom"`` (wrong: it
    changes the order of the additions) starts every K tile from 0 and adds the tiles'
    results up at the bottom, wrapping or clamping each addition and ORing the flags.

    Padding: activations of unused rows (K tile shorter than R) are random when
    ``pad_rng`` is given (the zero weights must cancel them); unused weight columns are
    random too. Returns (out, overflow, cycles), cycles counted from the first weight beat
    to the last result, inclusive.
    """
    rows, cols = cfg.rows, cfg.cols
    m, k = x.shape
    n = w.shape[1]
    kts, nts = -(-k // rows), -(-n // cols)
    xp = np.zeros((m, kts * rows), dtype=np.int64)
    wp = np.zeros((kts * rows, nts * cols), dtype=np.int64)
    if pad_rng is not None:
        xp[:] = pad_rng.integers(cfg.act_min, cfg.act_max + 1, xp.shape)
        wp[:k] = pad_rng.integers(cfg.weight_min, cfg.weight_max + 1, (k, nts * cols))
    xp[:, :k] = x
    wp[:k, :n] = w
    passes = [(nt, kt) for nt in range(nts) for kt in range(kts)]
    wq = [
        wp[kt * rows + rows - 1 - i, nt * cols : (nt + 1) * cols].tolist()
        for nt, kt in passes
        for i in range(rows)  # a K tile's rows last first, as the array loads them
    ]
    aq = [(p, row) for p in range(len(passes)) for row in range(m)]
    outs = [[] for _ in passes]  # per pass: (cycle, values, flags) of each row
    budget = 4 * ws_gemm_cycles(cfg, m, k, n, feedback=feedback) + 200
    dut = array(cfg)
    state = {}

    def offer_act(ctx, p, row, cycle) -> bool:
        kt = passes[p][1]
        if chain == "top" and kt > 0:
            done = outs[p - 1]
            if len(done) <= row or done[row][0] + feedback > cycle:
                return False  # the partial sums of this row are not back yet
            _, value, ovf = done[row]
        else:
            value, ovf = [0] * cols, [0] * cols
        ctx.set(dut.i_act.payload.data, xp[row, kt * rows : (kt + 1) * rows].tolist())
        ctx.set(dut.i_act.payload.last, row == m - 1)
        ctx.set(dut.i_psum.payload.value, value)
        ctx.set(dut.i_psum.payload.ovf, ovf)
        return True

    async def bench(ctx):
        wi = ai = q = cycle = 0
        w_on = a_on = False  # a beat is offered and must stay until it transfers
        while q < len(passes):
            assert cycle < budget, f"no progress after {cycle} cycles"
            stall = stall_rng is not None
            if not w_on and wi < len(wq) and not (stall and stall_rng.random() < stall_prob):
                ctx.set(dut.i_wgt.payload, wq[wi])
                w_on = True
            if not a_on and ai < len(aq) and not (stall and stall_rng.random() < stall_prob):
                a_on = offer_act(ctx, *aq[ai], cycle)
            ctx.set(dut.i_wgt.valid, w_on)
            ctx.set(dut.i_act.valid, a_on)
            ctx.set(dut.i_psum.valid, a_on)
            _, _, w_ready, a_ready, p_ready, o_valid, res = await ctx.tick().sample(
                dut.i_wgt.ready,
                dut.i_act.ready,
                dut.i_psum.ready,
                dut.o_res.valid,
                dut.o_res.payload,
            )
            assert a_ready == p_ready or not a_on, "i_act and i_psum must transfer together"
            if w_on and w_ready:
                wi, w_on = wi + 1, False
            if a_on and a_ready:
                ai, a_on = ai + 1, False
            if o_valid:
                outs[q].append((cycle, [int(v) for v in res.value], [bool(f) for f in res.ovf]))
                assert bool(res.last) == (len(outs[q]) == m)
                q += len(outs[q]) == m
            cycle += 1
        state["cycles"] = cycle

    run_bench(dut, bench, name=f"ws_{cfg.name}")

    out = np.zeros((m, nts * cols), dtype=np.int64)
    ovf = np.zeros((m, nts * cols), dtype=bool)
    for p, (nt, kt) in enumerate(passes):
        value = np.array([v for _, v, _ in outs[p]], dtype=np.int64)
        flag = np.array([f for _, _, f in outs[p]], dtype=bool)
        sl = slice(nt * cols, (nt + 1) * cols)
        if chain == "top" or kt == 0:
            out[:, sl], ovf[:, sl] = value, flag
        else:
            t = out[:, sl] + value
            wide = (t < cfg.acc_min) | (t > cfg.acc_max)
            if cfg.overflow == "wrap":
                t = (t - cfg.acc_min) % (1 << cfg.acc_bits) + cfg.acc_min
            out[:, sl] = np.clip(t, cfg.acc_min, cfg.acc_max)
            ovf[:, sl] |= flag | wide
    return out[:, :n], ovf[:, :n], state["cycles"]


def overflow_operands(rng, cfg, m, k, n):
    """Random operands, with columns whose weights run in blocks of +max and -min, so that
    the partial sums of large activations leave a narrow accumulator and come back
    (transient overflows), and columns of -min only (saturation, final overflow)."""
    x, w = reference.random_operands(rng, cfg, m, k, n)
    x[rng.random((m, k)) < 0.6] = cfg.act_max
    top = cfg.act_max * cfg.weight_max  # the largest positive product
    for j in range(n):
        if j % 3 == 0:
            run = -(-(cfg.acc_max + 1) // top) + j % 2  # just enough terms to leave the range
            w[:, j] = [
                cfg.weight_max if (kk // run) % 2 == 0 else cfg.weight_min for kk in range(k)
            ]
        elif j % 3 == 1:
            w[:, j] = cfg.weight_min
    return x, w


def check_gemm(cfg, x, w, **kw):
    out, ovf, cycles = rtl_ws_gemm(x, w, cfg, **kw)
    g = golden.gemm(x, w, cfg=cfg)
    np.testing.assert_array_equal(out, g.out)
    np.testing.assert_array_equal(ovf, g.overflow)
    return g, cycles


P9 = {"acc_bits": 9}

# (config, M, K, N, overflow-built operands): K not a multiple of R, N not a multiple of C,
# M = 1 and more, K < R, 4-bit unsigned and signed activations, P = 16 and 9, both modes.
CASES = [
    (ArrayConfig(rows=4, cols=4), 5, 11, 6, False),
    (ArrayConfig(rows=4, cols=4), 1, 13, 5, False),
    (ArrayConfig(rows=2, cols=3, **P9), 6, 13, 7, True),
    (ArrayConfig(rows=2, cols=3, overflow="saturate", **P9), 6, 13, 7, True),
    (ArrayConfig(rows=4, cols=4, overflow="saturate", **P9), 1, 14, 5, True),
    (ArrayConfig(rows=4, cols=4, **P9), 3, 10, 4, True),
    (ArrayConfig(rows=4, cols=4, acc_bits=12, overflow="saturate"), 9, 30, 10, True),
    (ArrayConfig(rows=2, cols=3, act_signed=True, overflow="saturate", **P9), 4, 9, 4, True),
    (ArrayConfig(rows=4, cols=4, act_signed=True), 2, 3, 2, False),
    (ArrayConfig(rows=1, cols=1, overflow="saturate", **P9), 2, 5, 2, True),
    (ArrayConfig(rows=3, cols=1, act_signed=True, **P9), 4, 14, 2, True),
]


@pytest.mark.parametrize(
    "cfg, m, k, n, ovf",
    CASES,
    ids=lambda v: v.name if isinstance(v, ArrayConfig) else str(v),
)
def test_gemm_matches_golden(cfg, m, k, n, ovf):
    rng = np.random.default_rng(sum(map(ord, cfg.name)) + m * k * n)
    x, w = (overflow_operands if ovf else reference.random_operands)(rng, cfg, m, k, n)
    g, cycles = check_gemm(cfg, x, w, pad_rng=rng)
    assert cycles == ws_gemm_cycles(cfg, m, k, n)
    if ovf:
        assert g.overflow.any() and (~g.overflow).any()
        if cfg.overflow == "wrap" and m > 1:
            assert (g.overflow & ~g.final_overflow).any(), "want transient overflows"
        if cfg.overflow == "saturate":
            assert np.isin(g.out, [cfg.acc_min, cfg.acc_max]).any(), "want saturation"


@pytest.mark.parametrize(
    "rows, cols, m", [(1, 1, 1), (1, 3, 2), (3, 1, 4), (2, 3, 1), (2, 3, 7), (4, 4, 3)]
)
def test_one_pass_takes_ws_tile_cycles(rows, cols, m):
    """One pass (K <= R, N <= C) on an idle array: R load beats, M rows, the latency."""
    cfg = ArrayConfig(rows=rows, cols=cols, acc_bits=10, overflow="saturate")
    rng = np.random.default_rng(rows * 100 + cols * 10 + m)
    x, w = reference.random_operands(rng, cfg, m, rows, cols)
    _, cycles = check_gemm(cfg, x, w)
    assert cycles == ws_tile_cycles(cfg, m) == 2 * rows + cols + m + 1
    assert WSArray.latency_of(cfg) == rows + cols + 1


@pytest.mark.parametrize("feedback", [1, 5])
def test_k_tiles_wait_for_their_partial_sums(feedback):
    """With M = 1 every next K tile waits for the previous result (and the feedback
    delay); with M = 12 the result is back before it is needed."""
    cfg = ArrayConfig(rows=2, cols=2, acc_bits=9, overflow="saturate")
    rng = np.random.default_rng(feedback)
    for m in (1, 12):
        x, w = overflow_operands(rng, cfg, m, 7, 3)
        _, cycles = check_gemm(cfg, x, w, feedback=feedback)
        assert cycles == ws_gemm_cycles(cfg, m, 7, 3, feedback=feedback)
        waits = ws_pass_interval(cfg, m, dependent=True, feedback=feedback) > ws_pass_interval(
            cfg, m, dependent=False
        )
        assert waits == (m == 1)


def test_random_stalls_change_nothing():
    cfg = ArrayConfig(rows=3, cols=2, overflow="saturate", **P9)
    rng = np.random.default_rng(7)
    x, w = overflow_operands(rng, cfg, 5, 10, 5)
    _, cycles = check_gemm(cfg, x, w, stall_rng=rng, stall_prob=0.3, pad_rng=rng)
    assert cycles > ws_gemm_cycles(cfg, 5, 10, 5)


# -- broken variants: the golden comparison must catch each --------------------------------


class PEDropsIncomingFlag(WSPE):
    """Flags only its own addition: ``flag_out`` forgets the flag from above."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        p = self.cfg.acc_bits
        product = Signal(signed(self.cfg.product_bits), name="bad_product")
        m.d.sync += product.eq(self.multiply(self.act, self.weight()))
        total = self.psum + product
        m.d.sync += self.flag_out.eq(total[p] ^ total[p - 1])  # the last assignment wins
        return m


def caught(cfg, x, w, **kw):
    """(some result differs from the golden model, some flag does)."""
    out, ovf, _ = rtl_ws_gemm(x, w, cfg, **kw)
    g = golden.gemm(x, w, cfg=cfg)
    return bool((out != g.out).any()), bool((ovf != g.overflow).any())


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_pe_that_drops_the_incoming_flag_is_caught(mode):
    cfg = ArrayConfig(rows=2, cols=3, overflow=mode, **P9)
    x, w = overflow_operands(np.random.default_rng(11), cfg, 4, 9, 3)
    bad = lambda c: WSArray(c, pe=PEDropsIncomingFlag)  # noqa: E731
    assert caught(cfg, x, w, array=bad) == (False, True)


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_k_tiles_added_at_the_bottom_are_caught(mode):
    """Column 0 runs 105, 210 | 315, 195 | 75, -45 (K tiles of R = 2 terms, P = 9): the
    prefix that leaves the range lies inside a K tile, and every K tile's own sums and
    the sums at the tile boundaries stay in range. So adding the K tiles up at the bottom
    misses the flag in both modes, and in saturate mode also the clamp to 255, which makes
    the golden result -105 instead of -45."""
    cfg = ArrayConfig(rows=2, cols=3, overflow=mode, **P9)
    x = np.full((2, 6), cfg.act_max)
    w = np.array([[7, 7, 7, -8, -8, -8], [1, -2, 3, -4, 5, -6], [-8] * 6]).T
    g = golden.gemm(x, w, cfg=cfg)
    assert g.overflow[0, 0] and not g.final_overflow[0, 0]
    assert int(g.out[0, 0]) == (-45 if mode == "wrap" else -105)
    assert caught(cfg, x, w) == (False, False)
    assert caught(cfg, x, w, chain="bottom") == (mode == "saturate", True)


@pytest.mark.parametrize("m, stall", [(1, 0.0), (2, 0.0), (1, 0.3), (3, 0.3)])
def test_passes_of_few_rows_on_a_wide_array_take_their_own_weights(m, stall):
    """The load race at its tightest: independent passes (K = R, many N tiles) of fewer
    rows than R + 1 on an array much wider than tall, where the next load begins the
    cycle after a pass's first row and column C - 1 swaps C - 1 cycles after column 0.
    Without the column skew of the loads this fails (below); random stalls on either
    producer change nothing."""
    cfg = ArrayConfig(rows=2, cols=5, acc_bits=12)
    rng = np.random.default_rng(40 + m)
    x, w = reference.random_operands(rng, cfg, m, 2, 20)
    kw = {"stall_rng": rng, "stall_prob": stall} if stall else {}
    _, cycles = check_gemm(cfg, x, w, **kw)
    model = ws_gemm_cycles(cfg, m, 2, 20)
    assert cycles > model if stall else cycles == model  # stalls did happen
    assert caught(cfg, x, w, array=WSArrayLoadsAllColumnsAtOnce)[0]


def test_loading_all_columns_at_once_is_caught():
    cfg = ArrayConfig(rows=2, cols=3, acc_bits=16)
    x, w = reference.random_operands(np.random.default_rng(5), cfg, 3, 6, 3)
    assert caught(cfg, x, w) == (False, False)
    assert caught(cfg, x, w, array=WSArrayLoadsAllColumnsAtOnce)[0]


def test_cycle_functions_reject_bad_sizes():
    cfg = ArrayConfig(rows=2, cols=3)
    with pytest.raises(ValueError, match="m=0"):
        ws_tile_cycles(cfg, 0)
    with pytest.raises(ValueError, match="feedback"):
        ws_pass_interval(cfg, 3, dependent=True, feedback=0)
    with pytest.raises(ValueError, match="positive"):
        ws_gemm_cycles(cfg, 3, 0, 4)


def test_passes_of_many_rows_follow_one_another_without_a_gap():
    """Double buffering: with M >= R + 1 the next pass's weights load while
    a pass streams, so the array takes a row every cycle: R + passes * M + latency."""
    cfg = ArrayConfig(rows=2, cols=2, acc_bits=12)
    x, w = reference.random_operands(np.random.default_rng(3), cfg, 12, 6, 3)
    _, cycles = check_gemm(cfg, x, w)
    assert cycles == ws_gemm_cycles(cfg, 12, 6, 3) == 2 + 6 * 12 + WSArray.latency_of(cfg)
