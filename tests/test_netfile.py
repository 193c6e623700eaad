"""The network file format: round trip, validation of bad files, the certificate checker."""

import json
import zipfile

import numpy as np
import pytest

from oasa.cli import main
from oasa.config import ArrayConfig
from oasa.sim import certificates, netfile
from oasa.sim.certificates import CertificateError
from oasa.sim.netfile import Layer, NetfileError, Network


def small_network(seed=0, acc_bits=12, overflow="wrap", scale=1.0):
    """conv 1->3 (3x3 pad 1) on 4x4, maxpool 2, dense 12->5 (ReLU), dense 5->3 (raw)."""
    rng = np.random.default_rng(seed)
    common = dict(cfg=ArrayConfig(acc_bits=acc_bits, overflow=overflow), method="test")

    def ints(lo, hi, shape):
        return rng.integers(lo, hi + 1, shape)

    layers = [
        Layer(
            "conv2d",
            (1, 4, 4),
            (3, 4, 4),
            name="conv",
            kernel=3,
            padding=1,
            relu=True,
            weight=ints(-8, 7, (3, 1, 3, 3)).astype(np.int8),
            bias=ints(-40, 40, 3),
            mult=ints(1, 300, 3),
            shift=np.full(3, 8),
            **common,
        ),
        Layer("maxpool", (3, 4, 4), (3, 2, 2), name="pool", kernel=2),
        Layer(
            "dense",
            (12,),
            (5,),
            name="fc1",
            relu=True,
            weight=ints(-8, 7, (5, 12)).astype(np.int8),
            bias=ints(-100, 100, 5),
            mult=ints(1, 200, 5),
            shift=np.full(5, 9),
            **common,
        ),
        Layer(
            "dense",
            (5,),
            (3,),
            name="fc2",
            requant=False,
            weight=ints(-8, 7, (3, 5)).astype(np.int8),
            bias=ints(-100, 100, 3),
            mult=ints(1, 1000, 3),
            shift=ints(0, 12, 3),
            **common,
        ),
    ]
    for layer in layers:
        if layer.has_weights:
            layer.bias, layer.mult, layer.shift = (
                np.asarray(a, dtype=np.int64) for a in (layer.bias, layer.mult, layer.shift)
            )
    return Network(
        layers,
        input_shape=(1, 4, 4),
        input_scale=1 / 15 * scale,
        method="test",
        logit_scale=0.01,
        info={"note": "hand-made"},
    )


def test_round_trip(tmp_path):
    net = small_network()
    path = tmp_path / "n.npz"
    netfile.save(net, path)
    back = netfile.load(path)
    assert back.to_meta() == json.loads(json.dumps(net.to_meta()))
    for (i, a), (_, b) in zip(net.weighted, back.weighted, strict=True):
        for name in ("weight", "bias", "mult", "shift", "wc_lo", "wc_hi"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), (i, name)
        assert b.weight.dtype == np.int8 and b.bias.dtype == np.int64
        assert b.cfg == a.cfg
    with np.load(path) as f:
        keys = set(f.files)
        meta = json.loads(str(f["meta"][()]))
    assert keys == {"meta"} | {
        f"L{i}.{n}"
        for i in (0, 2, 3)
        for n in ("weight", "bias", "mult", "shift", "wc_lo", "wc_hi")
    }
    assert meta["version"] == netfile.FORMAT_VERSION
    assert [d["kind"] for d in meta["layers"]] == ["conv2d", "maxpool", "dense", "dense"]
    assert meta["layers"][0]["act_bits"] == 4 and meta["layers"][0]["acc_bits"] == 12


def _rewrite(path, out, *, meta=None, drop=(), replace=None):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k not in drop}
    if meta is not None:
        m = json.loads(str(arrays["meta"][()]))
        meta(m)
        arrays["meta"] = np.array(json.dumps(m))
    arrays.update(replace or {})
    np.savez(out, **arrays)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "n.npz"
    netfile.save(small_network(), path)
    return path


def test_bad_files_give_one_clear_error(saved, tmp_path):
    bad = tmp_path / "bad.npz"
    with pytest.raises(NetfileError, match="no such file"):
        netfile.load(tmp_path / "missing.npz")
    bad.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(NetfileError, match="corrupt or truncated"):
        netfile.load(bad)
    bad.write_text("hello")
    with pytest.raises(NetfileError, match=r"not an \.npz"):
        netfile.load(bad)
    cases = [
        (dict(meta=lambda m: m.update(version=99)), "format version 99"),
        (dict(meta=lambda m: m.update(format="other")), "does not describe"),
        (dict(drop=("meta",)), "no 'meta'"),
        (dict(drop=("L2.mult",)), "'L2.mult' is missing"),
        (dict(replace={"L0.weight": np.zeros((3, 1, 3, 3), np.int64)}), "dtype int64"),
        (dict(replace={"L0.weight": np.full((3, 1, 3, 3), 9, np.int8)}), "outside -8..7"),
        (dict(replace={"L2.bias": np.zeros(4, np.int64)}), "bias has shape"),
        (dict(meta=lambda m: m["layers"][0].update(kind="pool")), "unknown kind"),
        (dict(meta=lambda m: m["layers"][0].update(acc_bits=40)), "acc_bits=40"),
        (dict(meta=lambda m: m["layers"][2].update(inputs=["nope"])), "not in the tensor table"),
        (dict(meta=lambda m: m["layers"][2].update(inputs=["t3"])), "before any layer writes"),
        (dict(meta=lambda m: m["tensors"]["input"].update(bits=8)), "reads a 8-bit unsigned"),
        (dict(meta=lambda m: m["layers"][1].update(stride=[0, 2])), "2 integers >= 1"),
        (dict(meta=lambda m: m["layers"][3].pop("relu")), "'relu' is missing"),
    ]
    for change, message in cases:
        _rewrite(saved, bad, **change)
        with pytest.raises(NetfileError, match=message):
            netfile.load(bad)
    # zip damage inside an entry
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("meta.npy", b"\x93NUMPY garbage")
    with pytest.raises(NetfileError):
        netfile.load(bad)


def test_checker_recomputes_certificates(saved, tmp_path):
    net = netfile.load(saved)
    rows = certificates.check_certificates(net)
    assert [r["index"] for r in rows] == [0, 2, 3]
    bad = tmp_path / "tampered.npz"
    hi = net.layers[2].wc_hi.copy()
    hi[4] -= 1
    _rewrite(saved, bad, replace={"L2.wc_hi": hi})
    with pytest.raises(CertificateError, match=r"layer 2 \(fc1\) channel 4: stored wc_hi"):
        certificates.check_certificates(netfile.load(bad))
    # A network that claims to be certified must be safe at the P it states.
    narrow = tmp_path / "narrow.npz"
    netfile.save(small_network(acc_bits=9), narrow)
    assert not all(r["safe"] for r in certificates.check_certificates(netfile.load(narrow)))
    _rewrite(narrow, bad, meta=lambda m: m.update(guarantee="certified"))
    with pytest.raises(CertificateError, match="claims to be certified"):
        certificates.check_certificates(netfile.load(bad))


def test_cli_check(saved, tmp_path, capsys):
    assert main(["check", str(saved)]) == 0
    assert "every certificate matches" in capsys.readouterr().out
    net = netfile.load(saved)
    bad = tmp_path / "tampered.npz"
    lo = net.layers[0].wc_lo.copy()
    lo[1] -= 3
    _rewrite(saved, bad, replace={"L0.wc_lo": lo})
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("oasa: error:") and "channel 1" in err[0]
    _rewrite(saved, bad, meta=lambda m: m.update(version=3))
    assert main(["check", str(bad)]) == 2
    assert "format version 3" in capsys.readouterr().err


def _as_version_1(path, out):
    """Rewrite a chain network file in the version-1 schema (no tensor table, square
    integer geometry, in_shape / out_shape per layer), as oasa wrote it before graphs."""

    def v1(m):
        tensors = m.pop("tensors")
        for key in ("input", "output"):
            m.pop(key)
        m["version"] = 1
        for d in m["layers"]:
            d["in_shape"] = tensors[d.pop("inputs")[0]]["shape"]
            d["out_shape"] = tensors[d.pop("output")]["shape"]
            if d["kind"] == "dense":
                d["in_shape"] = [int(np.prod(d["in_shape"]))]
            for key in ("kernel", "stride", "padding"):
                if key in d:
                    d[key] = d[key][0]
            if d["kind"] == "maxpool":
                d.pop("stride"), d.pop("padding")
            d.pop("groups", None)
        if "kernel" not in m["layers"][2]:
            m["layers"][2]["kernel"] = m["layers"][3]["kernel"] = 1
            m["layers"][2].update(stride=1, padding=0)
            m["layers"][3].update(stride=1, padding=0)

    _rewrite(path, out, meta=v1)


def test_version_1_files_load_as_the_same_graph(saved, tmp_path):
    old = tmp_path / "v1.npz"
    _as_version_1(saved, old)
    with np.load(old) as f:
        assert json.loads(str(f["meta"][()]))["version"] == 1
    a, b = netfile.load(saved), netfile.load(old)
    assert [
        (la.kind, la.inputs, la.output, la.kernel, la.stride, la.padding) for la in a.layers
    ] == [(lb.kind, lb.inputs, lb.output, lb.kernel, lb.stride, lb.padding) for lb in b.layers]
    assert a.tensors == b.tensors
    x = np.random.default_rng(3).integers(0, 16, (6, 1, 4, 4))
    from oasa.sim import network

    ra, rb = network.run_network(a, x), network.run_network(b, x)
    assert np.array_equal(ra.logits, rb.logits)
    netfile.save(b, tmp_path / "again.npz")  # a loaded v1 network is written as v2
    assert netfile.load(tmp_path / "again.npz").tensors == a.tensors
