"""A small A2Q+ network trained with Brevitas on the digits data, exported to QONNX: the
test fixtures of the QONNX importer (:mod:`oasa.quant.qonnx_import`).

The network (input 1x8x8, every weight 4-bit with Brevitas' A2Q+ quantizer
``Int8AccumulatorAwareZeroCenterWeightQuant`` at ``weight_bit_width=4`` and
``weight_accumulator_bit_width=12``, so that no input can overflow a 12-bit accumulator):

    QuantIdentity 8-bit unsigned (the input)
    QuantConv2d 3x3 1->16 pad 1, QuantReLU 4-bit
    QuantConv2d 3x3 16->32 pad 1, QuantReLU 4-bit
    max pool 2, flatten
    QuantLinear 512->32, QuantReLU 4-bit
    QuantLinear 32->10 (unquantized output: the logits)

Training is quantization-aware from the start (EP-init of the A2Q+ norms, Adam, seed 0, one
thread, about 45 s on one core). Then ``brevitas.export.export_qonnx`` writes the model twice:

- ``tests/data/brevitas_a2qplus_p12.onnx``: as Brevitas writes it (re-saved as one file,
  without the external ``.onnx.data``). Brevitas 0.13.4 writes each A2Q+ weight as
  Quant(raw float parameter, effective scale), and the integers that Quant makes from the
  raw parameter are not the ones Brevitas computes (``docs`` of the toolchain, section 13):
  this file is not P = 12 safe.
- ``tests/data/brevitas_a2qplus_p12_int.onnx``: the faithful file, in which each weight Quant
  node reads Brevitas' own dequantized integer weights q * s (from ``layer.quant_weight``
  given the layer's quantized input, captured with a forward pre-hook), so Quant gives back
  exactly Brevitas' integers q.

and ``tests/data/brevitas_a2qplus_p12.json`` with what Brevitas itself measured: its
quantized test accuracy (540 test images), the accumulator width its quantizer targets, and
per layer the A2Q+ L1 bound and the L1 norms of its integer weights (largest per output
channel, and total). Regenerate (needs Brevitas, which the tests do not):

    pip install brevitas==0.13.4 onnxoptimizer   # torch 2.13.0 (CPU) first
    python bench/brevitas_model.py
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from oasa.quant.data import digits_split

__all__ = ["ACC_BITS", "DigitsA2QPlus", "export", "measure", "train"]

ACC_BITS = 12  # the accumulator width the A2Q+ quantizer targets
WEIGHT_BITS = 4
ACT_BITS = 4
INPUT_BITS = 8
LAYERS = ("conv1", "conv2", "fc1", "fc2")
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
STEM = "brevitas_a2qplus_p12"


def _brevitas():
    try:
        import brevitas.nn as qnn
        from brevitas.quant import Int8AccumulatorAwareZeroCenterWeightQuant, Uint8ActPerTensorFloat
    except ImportError:
        raise SystemExit(
            "this bench needs Brevitas: pip install brevitas==0.13.4 onnxoptimizer"
        ) from None
    return qnn, Int8AccumulatorAwareZeroCenterWeightQuant, Uint8ActPerTensorFloat


class DigitsA2QPlus(nn.Module):
    """The fixture network; every weighted layer returns and every activation is a
    QuantTensor, so each A2Q+ weight quantizer sees its input's bit width and sign."""

    def __init__(self) -> None:
        super().__init__()
        qnn, a2q_plus, uint_act = _brevitas()
        w = {
            "weight_quant": a2q_plus,
            "weight_bit_width": WEIGHT_BITS,
            "weight_accumulator_bit_width": ACC_BITS,
        }
        act = {"bit_width": ACT_BITS, "return_quant_tensor": True}
        self.inp = qnn.QuantIdentity(
            act_quant=uint_act, bit_width=INPUT_BITS, return_quant_tensor=True
        )
        self.conv1 = qnn.QuantConv2d(1, 16, 3, padding=1, **w)
        self.relu1 = qnn.QuantReLU(**act)
        self.conv2 = qnn.QuantConv2d(16, 32, 3, padding=1, **w)
        self.relu2 = qnn.QuantReLU(**act)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = qnn.QuantLinear(512, 32, bias=True, **w)
        self.relu3 = qnn.QuantReLU(**act)
        self.fc2 = qnn.QuantLinear(32, 10, bias=True, **w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        x = torch.flatten(self.pool(x), 1)
        x = self.relu3(self.fc1(x))
        return self.fc2(x)


def train(epochs: int = 50, seed: int = 0) -> DigitsA2QPlus:
    """Quantization-aware training from scratch: a few calibration batches for the
    activation scales, EP-init of the A2Q+ norms, then Adam with a cosine schedule."""
    from brevitas_examples.imagenet_classification.a2q.ep_init import apply_ep_init

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    s = digits_split()
    x = torch.from_numpy(np.asarray(s.x_train))
    y = torch.from_numpy(np.asarray(s.y_train))
    model = DigitsA2QPlus()
    model.train()
    with torch.no_grad():  # activation statistics before the norms are projected
        for i in range(0, len(x), 128):
            model(x[i : i + 128])
    apply_ep_init(model, x[:256])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = epochs * ((len(x) + 63) // 64)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def _layer_inputs(model: DigitsA2QPlus, x: torch.Tensor) -> dict[str, object]:
    """Each weighted layer's quantized input (a QuantTensor), from one forward pass."""
    seen: dict[str, object] = {}
    hooks = [
        getattr(model, name).register_forward_pre_hook(
            lambda mod, args, name=name: seen.__setitem__(name, args[0])
        )
        for name in LAYERS
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def measure(model: DigitsA2QPlus) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """What Brevitas itself says: the quantized test accuracy, and per layer its integer
    weights q and scales s (``quant_weight`` given the layer's quantized input), their L1
    norms and the A2Q+ L1 bound its quantizer enforces."""
    from brevitas.core.scaling import AccumulatorAwareParameterPreScaling

    s = digits_split()
    x = torch.from_numpy(np.asarray(s.x_test))
    with torch.no_grad():
        pred = model(x).argmax(dim=1).numpy()
    accuracy = 100.0 * float(np.mean(pred == s.y_test))
    inputs = _layer_inputs(model, x[:8])
    layers, weights = {}, {}
    for name in LAYERS:
        layer = getattr(model, name)
        qin = inputs[name]
        with torch.no_grad():
            qw = layer.quant_weight(quant_input=qin)
            q = qw.int().numpy().astype(np.int64)
            scale = qw.scale.detach().numpy().astype(np.float32)
            pre = next(
                m for m in layer.modules() if isinstance(m, AccumulatorAwareParameterPreScaling)
            )
            bound = float(pre.calc_max_l1_norm(qin.bit_width, bool(qin.signed)))
        l1 = np.abs(q.reshape(q.shape[0], -1)).sum(axis=1)
        weights[name] = (q, scale)
        layers[name] = {
            "weight_bits": int(qw.bit_width),
            "input_bits": int(qin.bit_width),
            "input_signed": bool(qin.signed),
            "l1_bound": bound,
            "l1_norm_max_channel": int(l1.max()),
            "l1_norm_total": int(l1.sum()),
            "weight_min": int(q.min()),
            "weight_max": int(q.max()),
        }
    measured = {
        "brevitas": _version("brevitas"),
        "torch": torch.__version__,
        "test_images": len(s.y_test),
        "quantized_test_accuracy": accuracy,
        "target_acc_bits": ACC_BITS,
        "input_bits": INPUT_BITS,
        "layers": layers,
    }
    return measured, weights


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def export(model: DigitsA2QPlus, weights: dict, out_dir: Path = DATA) -> tuple[Path, Path]:
    """Write the QONNX file as export_qonnx makes it (one file) and the faithful one."""
    import onnx
    from brevitas.export import export_qonnx
    from onnx import numpy_helper

    out_dir.mkdir(parents=True, exist_ok=True)
    raw_path, int_path = out_dir / f"{STEM}.onnx", out_dir / f"{STEM}_int.onnx"
    x = torch.from_numpy(np.asarray(digits_split().x_test[:2]))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp_path = Path(tmp) / "model.onnx"
        export_qonnx(
            model,
            x,
            export_path=str(tmp_path),
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        )
        m = onnx.load(str(tmp_path))  # reads model.onnx.data next to it
    onnx.save(m, str(raw_path), save_as_external_data=False)

    # The faithful file: each weight Quant reads q * s, Brevitas' own integers times scales.
    consts = {t.name: t for t in m.graph.initializer}
    weighted = [n for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    producers = {o: n for n in m.graph.node for o in n.output}
    if len(weighted) != len(LAYERS):
        raise RuntimeError(f"expected {len(LAYERS)} weighted nodes, found {len(weighted)}")
    for name, node in zip(LAYERS, weighted, strict=True):
        quant = producers[node.input[1]]
        if quant.op_type != "Quant" or quant.input[0] not in consts:
            raise RuntimeError(f"{name}: the weight is not a Quant of an initializer")
        q, s = weights[name]
        old = numpy_helper.to_array(consts[quant.input[0]])
        scale = numpy_helper.to_array(consts[quant.input[1]])
        if old.shape != q.shape or not np.allclose(scale.reshape(-1), s.reshape(-1), rtol=1e-6):
            raise RuntimeError(f"{name}: the Quant node's scale is not Brevitas' weight scale")
        w = (q.astype(np.float32) * s.reshape(scale.shape)).astype(np.float32)
        lim = 2 ** (WEIGHT_BITS - 1) - 1  # narrow signed, as the A2Q+ quantizer makes them
        back = np.round(np.clip(w / scale.astype(np.float32), -lim, lim))
        if not np.array_equal(back, q):  # Quant maps q * s back to q exactly
            raise RuntimeError(f"{name}: Quant(q * s) does not give back q")
        new = f"{name}.weight_int"
        m.graph.initializer.append(numpy_helper.from_array(w, new))
        quant.input[0] = new
    unused = {t.name for t in m.graph.initializer} - {i for n in m.graph.node for i in n.input}
    keep = [t for t in m.graph.initializer if t.name not in unused]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    inputs = [i for i in m.graph.input if i.name not in unused]
    del m.graph.input[:]
    m.graph.input.extend(inputs)
    onnx.checker.check_model(m)
    onnx.save(m, str(int_path), save_as_external_data=False)
    return raw_path, int_path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=DATA)
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    model = train(args.epochs, args.seed)
    t_train = time.perf_counter() - t0
    measured, weights = measure(model)
    measured.update(epochs=args.epochs, seed=args.seed)
    raw_path, int_path = export(model, weights, args.out_dir)
    json_path = args.out_dir / f"{STEM}.json"
    json_path.write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")
    print(f"trained in {t_train:.1f} s ({args.epochs} epochs)")
    print(
        f"Brevitas quantized test accuracy: {measured['quantized_test_accuracy']:.2f} % "
        f"on {measured['test_images']} images; A2Q+ target P = {ACC_BITS}"
    )
    for name, d in measured["layers"].items():
        print(
            f"  {name}: {d['weight_bits']}-bit weights in {d['weight_min']}..{d['weight_max']}, "
            f"inputs {d['input_bits']}-bit, L1 max per channel {d['l1_norm_max_channel']} "
            f"(bound {d['l1_bound']:.2f}), total {d['l1_norm_total']}"
        )
    for p in (raw_path, int_path, json_path):
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
