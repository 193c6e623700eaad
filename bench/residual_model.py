"""A small residual CNN on the digits data, trained in torch and exported to ONNX: the test
fixtures of the ONNX importer (:mod:`oasa.quant.onnx_import`).

The network has what a plain chain lacks: batch normalization (folded by the exporter, or
kept), a residual add whose input also feeds the next convolution, a strided convolution, a
depthwise (grouped) convolution, a global average pool and a dense head. Input 1x8x8:

    conv3x3 1->16 pad 1, BN, ReLU
    residual block: conv3x3 16->16, BN, ReLU, conv3x3 16->16, BN, + block input, ReLU
    conv3x3 16->32 stride 2 pad 1, BN, ReLU                        (-> 32x4x4)
    depthwise block: conv3x3 groups 32, BN, ReLU, conv1x1 32->32, BN, + block input, ReLU
    global average pool, flatten, dense 32->10

Training is deterministic (seed 0, one thread, Adam, 30 epochs, well under a minute).
Regenerate the two committed fixtures with

    python bench/residual_model.py

which writes ``tests/data/residual_digits.onnx`` (default export: BN folded into the
convolutions) and ``tests/data/residual_digits_bn.onnx`` (``do_constant_folding=False``:
BatchNormalization nodes kept), and prints the float test accuracy of the torch model and
of onnxruntime on each file.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oasa.quant.data import digits_split

__all__ = ["ResidualNet", "export", "onnx_accuracy", "torch_accuracy", "train"]

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data"
FOLDED = FIXTURES / "residual_digits.onnx"
WITH_BN = FIXTURES / "residual_digits_bn.onnx"


def _conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    )


class ResidualNet(nn.Module):
    """The architecture of the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn(1, 16)
        self.res1 = _conv_bn(16, 16)
        self.res2 = _conv_bn(16, 16)
        self.down = _conv_bn(16, 32, stride=2)
        self.dw = _conv_bn(32, 32, groups=32)
        self.pw = _conv_bn(32, 32, k=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.res2(F.relu(self.res1(x))) + x)
        x = F.relu(self.down(x))
        x = F.relu(self.pw(F.relu(self.dw(x))) + x)
        return self.fc(torch.flatten(self.pool(x), 1))


def train(epochs: int = 30, seed: int = 0, lr: float = 3e-3, batch: int = 64) -> ResidualNet:
    """Adam on the digits training split; deterministic for a given seed (one thread)."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    split = digits_split()
    x = torch.from_numpy(np.array(split.x_train))
    y = torch.from_numpy(np.array(split.y_train))
    model = ResidualNet()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def torch_accuracy(model: nn.Module) -> float:
    """Test accuracy in percent."""
    split = digits_split()
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(np.array(split.x_test))).argmax(1).numpy()
    return 100.0 * float((pred == split.y_test).mean())


def export(model: nn.Module, path: Path, keep_bn: bool = False) -> None:
    """ONNX opset 17 with a dynamic batch axis; ``keep_bn`` leaves the BatchNormalization
    nodes in (``do_constant_folding=False``), else the exporter folds them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # dynamo=False is the TorchScript exporter, on purpose
        warnings.filterwarnings(
            "ignore", "You are using the legacy TorchScript", DeprecationWarning
        )
        _export(model, path, keep_bn)


def _export(model: nn.Module, path: Path, keep_bn: bool) -> None:
    torch.onnx.export(
        model.eval(),
        (torch.zeros(1, 1, 8, 8),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=not keep_bn,
    )


def onnx_accuracy(path: Path) -> float:
    """Test accuracy in percent of the ONNX file run by onnxruntime."""
    import onnxruntime as ort

    split = digits_split()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = sess.run(None, {"image": np.array(split.x_test)})
    return 100.0 * float((logits.argmax(1) == split.y_test).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=FIXTURES, help="folder for the two .onnx files")
    args = ap.parse_args()
    t0 = time.perf_counter()
    model = train(args.epochs)
    print(f"trained {args.epochs} epochs in {time.perf_counter() - t0:.1f} s")
    print(f"torch float test accuracy: {torch_accuracy(model):.2f} %")
    for name, keep_bn in ((FOLDED.name, False), (WITH_BN.name, True)):
        path = args.out / name
        export(model, path, keep_bn=keep_bn)
        print(
            f"onnxruntime test accuracy of {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
            f" ({'BN kept' if keep_bn else 'BN folded'}, {path.stat().st_size} bytes): "
            f"{onnx_accuracy(path):.2f} %"
        )


if __name__ == "__main__":
    main()
