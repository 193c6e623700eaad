"""Post-training quantization of the digits network, measured on integer arithmetic."""

import numpy as np
import pytest

from oasa.cli import main
from oasa.config import ArrayConfig
from oasa.quant import model, ptq
from oasa.quant.data import digits_split
from oasa.sim import certificates, network


@pytest.fixture(scope="module")
def params():
    # Trained once (a few seconds) and cached in ~/.cache/oasa for later runs.
    return model.load_or_train()[0]


@pytest.fixture(scope="module")
def split():
    return digits_split()


@pytest.fixture(scope="module")
def float_acc(params, split):
    return model.accuracy(params, split.x_test, split.y_test)


_NETS = {}


def _net(params, method, p, scales="dyadic", calibration=ptq.CALIBRATION_IMAGES):
    key = (method, p, scales, calibration)
    if key not in _NETS:
        spec = ptq.QuantSpec(method, ArrayConfig(acc_bits=p), scales, calibration=calibration)
        _NETS[key] = ptq.quantize(params, spec)
    return _NETS[key]


class _Few:
    """The first 270 test images: enough for claims with a wide margin, at half the cost."""

    def __init__(self, split):
        self.x_test, self.y_test = split.x_test[:270], split.y_test[:270]


def _run(net, split, **kw):
    return network.run_network(net, network.quantize_input(net, split.x_test), **kw)


def test_float_model(float_acc, split):
    assert float_acc >= 97.5
    assert digits_split(validation=True).x_train.shape[0] < split.x_train.shape[0]


def test_certified_methods(params, split, float_acc):
    """W4A4: certified, no overflow on any test image, exact within a point of float at
    P = 16 and not worse than a2q+ at P = 12."""
    acc = {}
    for method, p in (("exact", 16), ("exact", 12), ("a2q+", 12), ("a2q", 12)):
        full = p == 16  # the within-a-point claim is measured on the whole test set
        net = _net(params, method, p, calibration=512 if full else 256)
        assert net.guarantee == "certified"
        rows = certificates.check_certificates(net)
        assert max(r["min_safe_acc_bits"] for r in rows) <= p
        data = split if full else _Few(split)
        r = _run(net, data)
        assert r.overflow_counts()["flagged"] == 0
        acc[method, p] = r.accuracy(data.y_test)
    assert acc["exact", 16] >= float_acc - 1.0
    assert acc["exact", 12] >= max(95.0, acc["a2q+", 12])


def test_oaq_is_data_dependent_rtn_overflows_and_pow2_is_shift_only(params, split):
    few = _Few(split)
    oaq = _net(params, "oaq", 11, calibration=256)
    assert oaq.guarantee == "data-dependent" and oaq.scales == "pow2"
    assert _run(oaq, few).accuracy(few.y_test) >= 90.0
    for _, layer in oaq.weighted:
        assert (layer.mult & (layer.mult - 1) == 0).all()  # powers of two: shift only
    rtn = _net(params, "rtn", 12, calibration=256)
    assert rtn.guarantee == "none"
    x = network.quantize_input(rtn, few.x_test[:100])
    assert network.run_network(rtn, x).overflow_counts()["flagged"] > 0
    assert not all(r["safe"] for r in certificates.check_certificates(rtn))
    net = _net(params, "exact", 14, scales="pow2", calibration=256)
    assert net.guarantee == "certified" and net.scales == "pow2"
    for _, layer in net.weighted:
        assert (layer.mult & (layer.mult - 1) == 0).all()
    assert _run(net, few).accuracy(few.y_test) >= 95.0


def test_integer_inference_of_the_digits_net_by_hand(params, split):
    """Plain numpy, no golden model: at a certified P the accumulators are exact sums."""
    net = _net(params, "exact", 12, calibration=256)
    x = network.quantize_input(net, split.x_test[:20])
    h = x
    for layer in net.layers:
        if layer.kind == "maxpool":
            b, c, hh, ww = h.shape
            h = h.reshape(b, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
            continue
        w = layer.weight.astype(np.int64)
        if layer.kind == "conv2d":
            pad = np.pad(h, ((0, 0), (0, 0), (1, 1), (1, 1)))
            acc = np.zeros((h.shape[0], w.shape[0], h.shape[2], h.shape[3]), dtype=np.int64)
            for ky in range(3):
                for kx in range(3):
                    patch = pad[:, :, ky : ky + h.shape[2], kx : kx + h.shape[3]]
                    acc += np.einsum("bchw,oc->bohw", patch, w[:, :, ky, kx])
            acc = acc.transpose(0, 2, 3, 1)  # channels last for the output stage
        else:
            acc = h.reshape(len(h), -1) @ w.T
        if not layer.requant:
            break
        z = (acc + layer.bias) * layer.mult
        r = (z + np.where(layer.shift > 0, 1 << np.maximum(layer.shift - 1, 0), 0)) >> layer.shift
        h = np.clip(np.maximum(r, 0), 0, 15)
        if layer.kind == "conv2d":
            h = h.transpose(0, 3, 1, 2)
    r = network.run_network(net, x)
    np.testing.assert_array_equal(r.layers[-1].out, acc)


def test_cli_quantize_eval_check(tmp_path, capsys, params):
    assert main(["train", "-o", str(tmp_path / "float.npz")]) == 0
    text = capsys.readouterr().out
    assert "float test accuracy" in text and (tmp_path / "float.npz").is_file()
    out = tmp_path / "net.npz"
    argv = ["quantize", "--method", "exact", "--acc-bits", "13", "-o", str(out)]
    assert main([*argv, "--checkpoint", str(tmp_path / "float.npz")]) == 0
    text = capsys.readouterr().out
    assert "certified overflow-free at P = 13" in text and "min safe P" in text
    assert main(["check", str(out)]) == 0
    assert main(["eval", str(out), "--acc-bits", "10", "--overflow", "saturate"]) == 0
    text = capsys.readouterr().out
    assert "integer test accuracy" in text and "final overflow" in text
    for argv, message in (
        (["quantize", "--method", "foo", "-o", str(out)], "invalid choice: 'foo'"),
        (["quantize", "--method", "exact", "--weight-bits", "9", "-o", str(out)], "weight_bits"),
        (
            ["quantize", "--method", "a2q", "--scales", "log", "-o", str(out)],
            "invalid choice: 'log'",
        ),
        (["eval", str(out), "--acc-bits", "5"], "acc_bits=5"),
        (["eval", str(out), "--acc-bits", "0"], "acc_bits=0"),  # 0 is a value, not "unset"
        (["eval", str(tmp_path / "none.npz")], "no such file"),
        (["quantize", "--method", "exact", "--checkpoint", str(out), "-o", str(out)], "not a"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("oasa: error:") and message in err[0]
