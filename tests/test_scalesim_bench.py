"""bench/scalesim_compare.py without SCALE-Sim: the topology files it writes for oasa's
models give SCALE-Sim the GEMMs oasa runs, and it reads SCALE-Sim 3.0's compute report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from oasa.fpga.explore import LayerShape
from oasa.sim.topology import read_topology

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import scalesim_compare as sc  # noqa: E402

#: Written by SCALE-Sim 3.0.0 (its own venv, numpy 2.3) for the digits CNN's conv1, conv2
#: and dense1 on an 8 x 8 output-stationary array, as it wrote them.
REPORT = """\
LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, Overall Util %, Mapping Efficiency %, Compute Util %,
0, 68099, 735, 0, 39.183673469387756, 100.0, 39.130434782608724,
1, 86947, 19327, 0, 95.36917266000931, 100.0, 95.36423841059612,
2, 75419, 8303, 0, 12.332891725882211, 12.5, 12.33140655105973,
"""


def test_digits_rows_round_trip_to_oasas_gemms(tmp_path):
    """The digits CNN as oasa defines it (8 x 8 images, 3 x 3 convolutions padded to keep
    8 x 8, maxpool, two dense layers): each weighted layer written SCALE-Sim's way and read
    back has the (M, K, N) that ``layer_shapes`` gives for its network file."""
    from oasa.quant.model import ARCH, INPUT_SHAPE

    _, h, w = INPUT_SHAPE
    layers = []
    for spec in (s for s in ARCH if "name" in s):
        if spec["kind"] == "conv2d":
            k = spec["kernel"]
            wshape = (spec["out"], spec["in"], k, k)
            layers.append(
                sc.as_topology("conv2d", spec["name"], (spec["out"], h, w), (k, k), wshape, 1)
            )
        else:
            wshape = (spec["out"], spec["in"])
            layers.append(sc.as_topology("dense", spec["name"], (spec["out"],), (1, 1), wshape, 1))
    back = read_topology(sc.write_topology(layers, tmp_path / "digits.csv"))
    assert [t.gemm for t in back] == [(64, 9, 32), (64, 288, 64), (1, 1024, 64), (1, 64, 10)]
    assert [t.name for t in back] == ["conv1", "conv2", "dense1", "dense2"]
    assert (back[1].ifmap_h, back[1].ifmap_w, back[1].stride) == (10, 10, 1)  # no padding
    assert (back[2].ifmap_h, back[2].filter_h, back[2].channels) == (1, 1, 1024)


def test_depthwise_layer_is_one_group_and_marked(tmp_path):
    """The residual digits CNN's depthwise layer (32 groups of 3 x 3 on a 4 x 4 output, as
    oasa's graph holds it): one group for SCALE-Sim, marked #dw, GEMM 16 x 9 x 1."""
    dw = sc.as_topology("conv2d", "/dw/dw.0/Conv", (32, 4, 4), (3, 3), (32, 1, 3, 3), 32)
    pw = sc.as_topology("conv2d", "/pw/pw.0/Conv", (32, 4, 4), (1, 1), (32, 32, 1, 1), 1)
    fc = sc.as_topology("dense", "/fc/Gemm", (10,), (1, 1), (10, 32), 1)
    csv = sc.write_topology([dw, pw, fc], tmp_path / "residual.csv")
    shapes = [
        LayerShape("dw", 16, 9, 1, 32),
        LayerShape("pw", 16, 32, 32),
        LayerShape("fc", 1, 32, 10),
    ]
    back = read_topology(csv)
    sc.check_gemms(back, shapes, str(csv))  # raises on any difference
    assert [t.depthwise for t in back] == [True, False, False]
    assert "#dw" in csv.read_text() and "/" not in csv.read_text()


def test_layer_names_safe_for_scalesim():
    # SCALE-Sim splits a layer named with "DP" into channels, and commas would shift cells
    assert sc.safe_name("/blockDP,1/Conv") == "blockdp_1_Conv"


def test_compute_report_parses_scalesim_30_columns():
    rows = sc.parse_compute_report(REPORT)
    assert [r["cycles"] for r in rows] == [735, 19327, 8303]
    assert rows[1]["stall_cycles"] == 0 and rows[1]["cycles_with_prefetch"] == 86947
    assert rows[2]["compute_util"] == pytest.approx(0.1233140655105973)
    assert rows[2]["mapping_efficiency"] == pytest.approx(0.125)
    with pytest.raises(ValueError, match="header"):
        sc.parse_compute_report(REPORT.replace("Compute Util %", "Util"))


def test_fold_estimate_is_scalesims_count_plus_one():
    """The planning estimate, checked against SCALE-Sim's own counts above (os) and for
    the same conv2 on the weight-stationary array (24,767 reported)."""
    conv2 = sc.gemm_layer("conv2", (8, 8), (3, 3), 32, 64)
    assert sc.Job.of(conv2, 8, "os").estimate() == 19327 + 1
    assert sc.Job.of(sc.dense_layer("d", 1024, 64), 8, "os").estimate() == 8303 + 1
    assert sc.Job.of(conv2, 8, "ws").estimate() == 24767 + 1
    # identical layers share a run and a cache entry, whatever their names
    other = sc.gemm_layer("block4_conv", (8, 8), (3, 3), 32, 64)
    assert sc.Job.of(conv2, 8, "os").key("3.0.0") == sc.Job.of(other, 8, "os").key("3.0.0")
    assert sc.Job.of(conv2, 8, "os").key("3.0.0") != sc.Job.of(conv2, 8, "ws").key("3.0.0")


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_buffers_matched_to_scalesims_srams_never_cut_a_layer(dataflow):
    """With as many operands in each buffer as in a SCALE-Sim SRAM, every layer of ResNet-50
    and MobileNet fits one call on 8x8 to 32x32, as SCALE-Sim runs it without stalls (the
    planner may still cut K where calls are faster: on ws, K cut into calls puts the N
    tiles of one K tile back to back, which need not wait for partial sums); with the
    default buffers some layers do not fit (what the totals' last column shows)."""
    from oasa.config import ArrayConfig
    from oasa.fpga.explore import layer_cycles
    from oasa.sim.calls import _plan, plan_calls, plan_cycles

    cut_by_default = 0
    for net in sc.networks(["resnet50", "mobilenet"]):
        for size in (8, 16, 32):
            default = ArrayConfig(rows=size, cols=size, dataflow=dataflow)
            cfg = default.replace(**sc.matched_buffers(size))
            for s in net.shapes:
                assert s.groups == 1
                whole = _plan(cfg, s.m, s.k, s.n, s.k)
                assert len(whole) == 1, (net.name, size, s)
                chosen = plan_calls(cfg, s.m, s.k, s.n)
                assert plan_cycles(cfg, chosen) <= plan_cycles(cfg, whole)
                cut_by_default += layer_cycles(default, s)[0] > 1
    assert cut_by_default > 0
