"""Integer inference of a network file against an independent per-layer computation."""

import numpy as np
import pytest
import reference
from test_netfile import small_network

from oasa.sim import golden, network


def _reference_run(net, x, acc_bits, mode):
    """Plain Python per image: im2col by loops, reference.dot per output, exact
    requantization (reference.requantize), max-pooling by loops."""
    outs = []
    for img in x.tolist():
        h = img  # [C][H][W] nested lists
        for layer in net.layers:
            if layer.kind == "maxpool":
                k = layer.kernel[0]
                h = [
                    [
                        [
                            max(ch[y * k + dy][xx * k + dx] for dy in range(k) for dx in range(k))
                            for xx in range(len(ch[0]) // k)
                        ]
                        for y in range(len(ch) // k)
                    ]
                    for ch in h
                ]
                continue
            w = np.asarray(layer.weight, dtype=np.int64)
            o = w.shape[0]

            def finish(acc, c, layer=layer):
                if not layer.requant:
                    return acc
                return reference.requantize(
                    acc,
                    int(layer.bias[c]),
                    int(layer.mult[c]),
                    int(layer.shift[c]),
                    layer.relu,
                    0,
                    15,
                )

            if layer.kind == "conv2d":
                c_in, hh, ww = len(h), len(h[0]), len(h[0][0])
                k, pad = layer.kernel[0], layer.padding[0]

                def px(c, y, xx, h=h, hh=hh, ww=ww):
                    return h[c][y][xx] if 0 <= y < hh and 0 <= xx < ww else 0

                h = [
                    [
                        [
                            finish(
                                reference.dot(
                                    [
                                        px(c, y + ky - pad, xx + kx - pad)
                                        for c in range(c_in)
                                        for ky in range(k)
                                        for kx in range(k)
                                    ],
                                    w[oc].ravel().tolist(),
                                    acc_bits,
                                    mode,
                                )[0],
                                oc,
                            )
                            for xx in range(ww)
                        ]
                        for y in range(hh)
                    ]
                    for oc in range(o)
                ]
            else:
                flat = np.asarray(h).ravel().tolist()
                h = [
                    finish(reference.dot(flat, w[oc].tolist(), acc_bits, mode)[0], oc)
                    for oc in range(o)
                ]
        outs.append(h)
    return np.asarray(outs, dtype=np.int64)


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
@pytest.mark.parametrize("acc_bits", [8, 9, 16])
def test_integer_inference_matches_reference(mode, acc_bits):
    net = small_network(seed=acc_bits, acc_bits=acc_bits, overflow=mode)
    rng = np.random.default_rng(acc_bits)
    x = rng.integers(0, 16, (6, 1, 4, 4))
    x[0] = 15  # the largest input, to make narrow accumulators overflow
    r = network.run_network(net, x, batch=4)  # two batches
    acc = _reference_run(net, x, acc_bits, mode)
    np.testing.assert_array_equal(r.layers[-1].out, acc)
    last = net.layers[-1]
    logits = (acc + last.bias) * last.mult / 2.0**last.shift
    np.testing.assert_array_equal(r.logits, logits)
    np.testing.assert_array_equal(r.predictions, logits.argmax(axis=1))
    c = r.overflow_counts()
    assert c["total"] == 6 * (3 * 16 + 5 + 3)
    if acc_bits == 8:
        assert c["flagged"] > 0
    if acc_bits == 16:
        assert c["flagged"] == 0


def test_gemm_backend_is_pluggable():
    net = small_network(acc_bits=9)
    x = np.random.default_rng(0).integers(0, 16, (5, 1, 4, 4))
    calls = []

    def backend(a, w, *, cfg):
        calls.append((a.shape, w.shape, cfg.acc_bits))
        return golden.gemm(a, w, cfg=cfg)

    r1 = network.run_network(net, x, gemm=backend)
    r2 = network.run_network(net, x)
    assert calls == [((5 * 16, 9), (9, 3), 9), ((5, 12), (12, 5), 9), ((5, 5), (5, 3), 9)]
    np.testing.assert_array_equal(r1.logits, r2.logits)
    # Overriding P reaches every GEMM.
    calls.clear()
    network.run_network(net, x, gemm=backend, overrides={"acc_bits": 14})
    assert {c[2] for c in calls} == {14}


def test_quantize_input():
    net = small_network()
    img = np.zeros((1, 1, 4, 4))
    img[0, 0, 0, :] = [0.0, 1 / 30, 0.5, 2.0]
    q = network.quantize_input(net, img)
    assert q[0, 0, 0].tolist() == [0, 1, 8, 15]  # half up; clamped to 15
    with pytest.raises(ValueError, match="shape"):
        network.quantize_input(net, np.zeros((1, 8, 8)))
