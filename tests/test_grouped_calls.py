"""A grouped convolution's groups packed into one GEMM with block-diagonal weights: every
output is its own group's, results and flags, in wrap and saturate, on the model and the
RTL; the cycles are the planner's; and the planner packs only when it saves cycles."""

from contextlib import ExitStack

import numpy as np
import pytest

from oasa.config import ArrayConfig
from oasa.sim import calls as calls_module
from oasa.sim import golden
from oasa.sim.backends import open_session
from oasa.sim.calls import (
    pack_operands,
    packs_cycles,
    plan_calls,
    plan_cycles,
    plan_groups,
    run_grouped,
)

GROUPS, M, K, N = 5, 7, 6, 2


def grouped_operands(cfg: ArrayConfig, seed: int = 3):
    """(G, M, K) activations and (K, G N) weights whose partial sums leave a P = 8 range in
    some outputs only: groups 1 and 3 are driven to the limits early in their K."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(cfg.act_min, cfg.act_max + 1, (GROUPS, M, K))
    w = rng.integers(cfg.weight_min, cfg.weight_max + 1, (K, GROUPS * N))
    cols[1, :3, :3], w[:3, 1 * N] = cfg.act_max, cfg.weight_max  # up past the top
    cols[3, 2:5, :4], w[:4, 3 * N + 1] = cfg.act_max, cfg.weight_min  # down past the bottom
    return cols, w


def group_by_group(cols, w, cfg):
    """The golden model on each group's own GEMM, side by side in group order."""
    runs = [golden.gemm(cols[g], w[:, g * N : (g + 1) * N], cfg=cfg) for g in range(GROUPS)]
    return np.hstack([r.out for r in runs]), np.hstack([r.overflow for r in runs])


@pytest.mark.parametrize(
    ("backend", "overflow", "dataflow"),
    [
        ("model", "wrap", "os"),
        ("model", "saturate", "ws"),
        ("amaranth", "saturate", "os"),
        ("amaranth", "wrap", "ws"),
    ],
)
def test_packed_groups_equal_each_group_alone(backend, overflow, dataflow, monkeypatch):
    cfg = ArrayConfig(rows=2, cols=3, acc_bits=8, overflow=overflow, dataflow=dataflow,
                      act_depth=64, wgt_depth=64, res_depth=64, param_depth=8)  # fmt: skip
    monkeypatch.setattr(calls_module, "_pack_sizes", lambda groups: [3])  # packs of 3 and 2
    cols, w = grouped_operands(cfg)
    want_out, want_ovf = group_by_group(cols, w, cfg)
    assert want_ovf.any() and not want_ovf.all()
    if overflow == "saturate":  # clamped partial sums: the order of the terms shows
        assert (want_out == cfg.acc_max).any() or (want_out == cfg.acc_min).any()
    packs = plan_groups(cfg, GROUPS, M, K, N)
    assert [(p.first, p.count) for p in packs] == [(0, 3), (3, 2)]
    stage = {"bias": np.arange(GROUPS * N) - 4, "mult": np.full(GROUPS * N, 3),
             "shift": np.full(GROUPS * N, 2), "relu": True}  # fmt: skip
    with ExitStack() as stack:
        session = open_session(backend, stack)
        raw = run_grouped(session, cols, w, cfg=cfg, stage=stage, requant=False)
        req = run_grouped(session, cols, w, cfg=cfg, stage=stage, requant=True)
    np.testing.assert_array_equal(raw.out, want_out)
    np.testing.assert_array_equal(raw.overflow, want_ovf)
    np.testing.assert_array_equal(req.out, golden.output_stage(want_out, cfg=cfg, **stage))
    assert raw.flagged == req.flagged == int(want_ovf.sum())
    assert raw.calls == sum(len(p.plan) for p in packs)
    assert raw.cycles == req.cycles == packs_cycles(cfg, packs)


def test_pack_operands_are_block_diagonal():
    cfg = ArrayConfig()
    cols, w = grouped_operands(cfg)
    pack = calls_module.Pack(first=1, count=3, plan=[])
    x, wp = pack_operands(cols, w, pack)
    assert x.shape == (M, 3 * K) and wp.shape == (3 * K, 3 * N)
    for j in range(3):
        g = 1 + j
        np.testing.assert_array_equal(x[:, j * K : (j + 1) * K], cols[g])
        np.testing.assert_array_equal(wp[j * K : (j + 1) * K, j * N : (j + 1) * N],
                                      w[:, g * N : (g + 1) * N])  # fmt: skip
    mask = np.kron(np.eye(3, dtype=bool), np.ones((K, N), dtype=bool))
    assert not wp[~mask].any()


@pytest.mark.parametrize("dataflow", ["os", "ws"])
@pytest.mark.parametrize("size", [8, 16, 32])
def test_depthwise_groups_are_packed_and_never_slower(size, dataflow):
    """A depthwise 3 x 3 (K = 9, N = 1 per group) on 32 channels: packed, it takes fewer
    cycles than 32 calls of one group; the planner's choice is the fastest pack size."""
    cfg = ArrayConfig(rows=size, cols=size, dataflow=dataflow)
    for m in (16, 3136):
        packs = plan_groups(cfg, 32, m, 9, 1)
        one_by_one = 32 * plan_cycles(cfg, plan_calls(cfg, m, 9, 1))
        assert packs[0].count > 1
        assert packs_cycles(cfg, packs) < one_by_one
        for p in (1, 2, 4, 8, 16, 32):
            forced = [
                calls_module.Pack(g, p, plan_calls(cfg, m, 9 * p, p)) for g in range(0, 32, p)
            ]
            assert packs_cycles(cfg, packs) <= packs_cycles(cfg, forced)


def test_a_group_too_large_for_the_buffers_is_refused_as_before():
    cfg = ArrayConfig(rows=2, cols=2, act_depth=8, wgt_depth=8, res_depth=64, preload=False)
    with pytest.raises(calls_module.BufferFitError, match="--preload"):
        plan_groups(cfg, 4, 5, 20, 1)
