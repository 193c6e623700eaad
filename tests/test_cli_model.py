"""Every command on a model from outside: the residual CNN (tests/data, exported from torch
by bench/residual_model.py) with the digits data as a user's --data file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from oasa.cli import main
from oasa.quant.data import digits_split
from oasa.sim import certificates, netfile, network

MODEL = Path(__file__).parent / "data" / "residual_digits_bn.onnx"
ort = pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    s = digits_split()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x_train=s.x_train, y_train=s.y_train, x_test=s.x_test, y_test=s.y_test)
    return path


def _json(capsys, argv: list[str]) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_quantize_eval_run_an_onnx_model(tmp_path, data, capsys):
    s = digits_split()
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: s.x_test})[0]
    float_acc = 100.0 * float((logits.argmax(1) == s.y_test).mean())

    net_path = tmp_path / "res.npz"
    q = _json(capsys, ["quantize", "--model", str(MODEL), "--data", str(data),
                       "--method", "exact", "--acc-bits", "12", "-o", str(net_path)])  # fmt: skip
    assert q["model"] == str(MODEL) and q["float_accuracy"] == pytest.approx(float_acc)
    # certified at P = 12, recomputed here from the integers in the file
    net = netfile.load(net_path)
    assert certificates.certify(net).certified and q["certification"]["certified"]
    assert q["accuracy"] >= float_acc - 1.0  # the goal, met by PTQ already
    kinds = {layer.kind for layer in net.layers}
    assert {"conv2d", "dense", "add", "avgpool"} <= kinds
    assert any(layer.groups > 1 for layer in net.layers)  # the depthwise convolution

    e = _json(capsys, ["eval", str(net_path), "--data", str(data)])
    r = network.run_network(net, network.quantize_input(net, s.x_test))
    assert e["accuracy"] == pytest.approx(r.accuracy(s.y_test)) == pytest.approx(q["accuracy"])

    run = _json(capsys, ["run", str(net_path), "--data", str(data), "--backend", "model",
                         "--images", "16", "--rows", "4", "--cols", "4"])  # fmt: skip
    assert run["images"] == 16 and run["checked_against_model"]
    assert run["accuracy"] == pytest.approx(
        100.0 * float(np.mean(r.predictions[:16] == s.y_test[:16]))
    )


def test_sweep_of_a_model_never_reuses_digits_points(tmp_path, data, capsys):
    out = tmp_path / "sw"
    base = ["sweep", "--acc-bits", "16", "--methods", "rtn", "--overflow", "wrap", "--jobs", "1",
            "-o", str(out), "--quiet"]  # fmt: skip
    digits = _json(capsys, base)
    assert digits["computed"] == 1
    model = _json(capsys, [*base, "--model", str(MODEL), "--data", str(data)])
    assert model["computed"] == 1 and model["cached"] == 0  # same key but for the hashes
    (pm,) = model["points"]
    (pd,) = digits["points"]
    assert pm["model_hash"] != pd["model_hash"] and pm["data_hash"] != pd["data_hash"]
    header = (out / "points.csv").read_text().splitlines()[0].split(",")
    assert "model_hash" in header and "data_hash" in header


BREVITAS = Path(__file__).parent / "data"


def test_import_says_what_a_brevitas_file_really_guarantees(tmp_path, capsys):
    measured = json.loads((BREVITAS / "brevitas_a2qplus_p12.json").read_text())
    ok = _json(capsys, ["import", str(BREVITAS / "brevitas_a2qplus_p12_int.onnx"),
                        "-o", str(tmp_path / "int.npz"), "--agree-images", "32"])  # fmt: skip
    assert ok["acc_bits"] <= 12 and ok["certification"]["certified"]
    assert ok["accuracy"] == pytest.approx(measured["quantized_test_accuracy"], abs=0.5)
    assert ok["agreement"] >= 99.5 and ok["agreement_images"] == 32
    assert certificates.certify(netfile.load(tmp_path / "int.npz")).certified

    raw = _json(capsys, ["import", str(BREVITAS / "brevitas_a2qplus_p12.onnx"),
                         "--acc-bits", "12", "-o", str(tmp_path / "raw.npz"),
                         "--agree-images", "0"])  # fmt: skip
    assert raw["acc_bits"] == 12 and not raw["certification"]["certified"]
    assert raw["certification"]["label"] == "not certified"
    assert max(raw["min_safe_acc_bits"].values()) > 12
    assert netfile.load(tmp_path / "raw.npz").guarantee != "certified"
