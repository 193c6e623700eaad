"""SCALE-Sim topology files read as SCALE-Sim writes them, with its GEMM shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from oasa.errors import InputError
from oasa.sim.topology import TopologyError, read_topology

TOPOLOGIES = Path(__file__).parents[1] / "bench" / "topologies"


def test_resnet50_as_scale_sim_ships_it():
    layers = read_topology(TOPOLOGIES / "Resnet50.csv")
    assert len(layers) == 54  # conv1, 48 convolutions in 16 blocks, 4 projections, fc
    conv1 = layers[0]
    # SCALE-Sim's output size ceil((224 - 7 + 2) / 2) = 110, the Eh / Ew it notes itself
    assert conv1.name == "Conv1" and conv1.ofmap == (110, 110)
    assert conv1.gemm == (110 * 110, 7 * 7 * 3, 64)
    assert layers[-1].name == "FC6" and layers[-1].gemm == (1, 2048, 1000)
    assert not any(layer.depthwise for layer in layers)


def test_mobilenet_depthwise_rows_are_one_channel():
    layers = read_topology(TOPOLOGIES / "mobilnet_paper.csv")
    dw = [layer for layer in layers if layer.depthwise]
    assert len(layers) == 28 and len(dw) == 13  # MobileNet v1: 13 depthwise-separable blocks
    assert all(layer.gemm[1:] == (9, 1) for layer in dw)
    # no padding in SCALE-Sim: ceil((112 - 3 + 1) / 1) = 110 per axis
    assert layers[1].name == "Conv2_dw" and layers[1].gemm == (110 * 110, 9, 1)


def test_a_messy_file_reads_like_a_clean_one(tmp_path):
    clean = tmp_path / "clean.csv"
    clean.write_text(
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,\nc1,8,8,3,3,1,4,1,\nd1,6,6,3,3,1,1,1,#dw\n"
    )
    messy = tmp_path / "messy.csv"
    messy.write_text(
        "# a comment line\r\nLayer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,"
        "Channels,Num Filter,Strides,,,Eh,Ew\r\n,,,,,,,,,\r\n\r\n"
        "c1,\t8, 8,\t3,3, 1,  4, 1,,,6,6,36\r\n  d1 , 6,6,3,3,1,1,1 ,#dw ,,\r\n\r\n"
    )
    assert read_topology(messy) == read_topology(clean)
    assert [layer.depthwise for layer in read_topology(messy)] == [False, True]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,h\nc1,8,8,3,3,1\n", "line 2: expected a layer name and 7 positive integers"),
        ("name,h\nc1,8,8,3,3,1,4,x\n", "line 2: expected"),
        ("name,h\nc1,8,8,3,3,0,4,1\n", "at least 1"),
        ("name,h\nc1,2,2,3,3,1,4,1\n", "does not fit a 2x2 input"),
        ("name,h\n\n,,,\n", "no layers"),
    ],
)
def test_bad_topologies_name_the_line(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(TopologyError, match=message):
        read_topology(path)
    with pytest.raises(InputError, match="no such file"):
        read_topology(tmp_path / "none.csv")
