"""Quantization-aware training (torch, the `train` extra): constraints hold at every step,
the export is certified, and the fake-quantized model agrees with integer inference."""

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oasa.config import ArrayConfig  # noqa: E402
from oasa.quant import methods, model, ptq, qat  # noqa: E402
from oasa.quant.data import digits_split  # noqa: E402
from oasa.sim import certificates, network  # noqa: E402


@pytest.fixture(scope="module")
def params():
    torch.set_num_threads(1)
    return model.load_or_train()[0]


def test_constrained_parametrisations_keep_their_bound(params):
    """Random parameter values, far from the initial ones, still give certified weights."""
    torch.manual_seed(0)
    node = model.digits_graph(params).nodes[1]
    w = node.weight
    for method in ("a2q", "a2q+", "exact"):
        cfg = ptq.QuantSpec(method, ArrayConfig(acc_bits=10)).cfg
        s0 = np.abs(w).reshape(64, -1).max(axis=1) / 7
        layer = qat.QLayer(node, s0, method, cfg)
        with torch.no_grad():
            for _ in range(3):
                for p in layer.parameters():
                    p.add_(torch.randn_like(p) * p.abs().mean() * 2)
                _, q = layer.quantized()
                assert int(certificates.min_safe_acc_bits(q.T, cfg=cfg).max()) <= 10
                bp, bn = methods.exact_budgets(cfg)
                assert (np.maximum(q, 0).sum(axis=1) <= bp).all()
                assert (np.maximum(-q, 0).sum(axis=1) <= bn).all()


def test_qat_exports_a_certified_network_that_matches_its_fake_quant_model(params):
    spec = ptq.QuantSpec("exact", ArrayConfig(acc_bits=10), calibration=256)
    recipe = qat.QATRecipe(epochs=1, seed=0)
    net_t, start = qat.train_qat(params, spec, recipe)
    net = qat.export(net_t, params, dataclasses.replace(spec), {"qat": {"epochs": 1}})
    assert net.guarantee == "certified"
    certificates.check_certificates(net)
    split = digits_split()
    r = network.run_network(net, network.quantize_input(net, split.x_test))
    assert r.overflow_counts()["flagged"] == 0
    r0 = network.run_network(start, network.quantize_input(start, split.x_test))
    # One epoch already recovers most of what PTQ loses at P = 10.
    assert r.accuracy(split.y_test) > r0.accuracy(split.y_test) + 10.0
    with torch.no_grad():
        fake = net_t(net_t.quantize_input(split.x_test)).argmax(dim=1).numpy()
    assert np.mean(fake == r.predictions) >= 0.97


def test_qat_rejects_what_it_cannot_train(params):
    with pytest.raises(ptq.QuantError, match="QAT supports"):
        qat.train_qat(params, ptq.QuantSpec(method="oaq"), qat.QATRecipe(epochs=1))
    with pytest.raises(ptq.QuantError, match="dyadic"):
        qat.train_qat(params, ptq.QuantSpec(scales="pow2"), qat.QATRecipe(epochs=1))
