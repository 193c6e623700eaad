"""Brevitas' A2Q+ network imported at its P, side by side with oasa's own quantizers on the
same architecture at the same P.

- ``oasa import`` of the two QONNX fixtures of bench/brevitas_model.py (as
  ``export_qonnx`` writes it, and with Brevitas' own integers): the P it is certified at,
  oasa's integer accuracy against Brevitas' own (from the fixture's json, measured by
  Brevitas), agreement with qonnx's execution of the file, import time;
- the same architecture (8-bit input, conv 3x3 1->16, conv 3x3 16->32, maxpool, dense
  512->32, dense 32->10, 4-bit weights and activations) trained in float with torch and
  exported to ONNX, then ``oasa quantize --model --input-bits 8 --acc-bits 12`` with every
  method (PTQ; with ``--qat-epochs E`` also QAT for the certified methods).

Writes ``docs/results/brevitas.md``. Needs torch (the ``train`` extra), not Brevitas.

    python bench/brevitas_compare.py [--qat-epochs 10] [--agree-images 128]
"""

from __future__ import annotations

import argparse
import json

import torch
from results import ROOT, Section, digits_data_file, oasa_json
from torch import nn

from oasa.quant.data import digits_split

DATA = ROOT / "tests" / "data"
OUT = ROOT / "out" / "bench" / "brevitas"
P = 12


class FloatTwin(nn.Module):
    """bench/brevitas_model.py's architecture without quantizers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(512, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def train_float_twin(epochs: int = 30, seed: int = 0) -> tuple[FloatTwin, float]:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    s = digits_split()
    x, y = torch.tensor(s.x_train), torch.tensor(s.y_train)
    net = FloatTwin()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = 100.0 * float((net(torch.tensor(s.x_test)).argmax(1).numpy() == s.y_test).mean())
    return net, acc


def export_onnx(net: FloatTwin) -> str:
    import warnings

    path = OUT / "float_twin.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net.eval(), (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, opset_version=17,
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )  # fmt: skip
    return str(path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qat-epochs", type=int, default=0, help="also QAT (certified methods)")
    ap.add_argument("--agree-images", type=int, default=128, help="images run by qonnx")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    section = Section("brevitas", "Brevitas A2Q+ imported, beside oasa's quantizers")
    measured = json.loads((DATA / "brevitas_a2qplus_p12.json").read_text())
    brev_acc = measured["quantized_test_accuracy"]

    rows = []
    for name, label in (
        ("brevitas_a2qplus_p12_int.onnx", "with Brevitas' integers"),
        ("brevitas_a2qplus_p12.onnx", "as `export_qonnx` writes it"),
    ):
        for p in (None, P):
            argv = ["import", str(DATA / name), "-o", str(OUT / f"{name}.{p}.npz"),
                    "--agree-images", str(args.agree_images)]  # fmt: skip
            if p is not None:
                argv += ["--acc-bits", str(p)]
            r = oasa_json(*argv)
            need = max(r["min_safe_acc_bits"].values())
            rows.append(
                [label, f"{r['acc_bits']}" + (" (given)" if p else " (smallest safe)"),
                 r["certification"]["label"], need, f"{r['accuracy']:.2f} %",
                 f"{r['agreement']:.1f} % of {r['agreement_images']}",
                 f"{r['max_requant_error']:.1e}", f"{r['seconds']:.2f} s"]
            )  # fmt: skip
    section.para(
        f"Brevitas 0.13.4 trained the A2Q+ network of `bench/brevitas_model.py` for P = "
        f"{measured.get('acc_bits', P)} and measured its own integer test accuracy: "
        f"**{brev_acc:.2f} %**. `oasa import` of its two QONNX files:"
    )
    section.table(
        ["file", "P", "label", "largest min-safe P", "oasa integer accuracy",
         "agrees with qonnx", "largest requant error", "import"],
        rows,
    )  # fmt: skip

    twin, float_acc = train_float_twin()
    model, data = export_onnx(twin), digits_data_file(OUT)
    rows = []
    methods = ["rtn", "a2q", "a2q+", "exact", "oaq"]
    for m in methods:
        q = oasa_json(
            "quantize", "--model", model, "--data", data, "--method", m, "--acc-bits", str(P),
            "--input-bits", "8", "-o", str(OUT / f"twin_{m}.npz"),
        )  # fmt: skip
        rows.append([m, "PTQ", f"{q['accuracy']:.2f} %", q["certification"]["label"]])
    if args.qat_epochs:
        for m in ("a2q", "a2q+", "exact"):
            q = oasa_json(
                "quantize", "--model", model, "--data", data, "--method", m, "--acc-bits",
                str(P), "--input-bits", "8", "--qat-epochs", str(args.qat_epochs),
                "-o", str(OUT / f"twin_{m}_qat.npz"),
            )  # fmt: skip
            rows.append([m, f"QAT {args.qat_epochs} epochs", f"{q['accuracy']:.2f} %",
                         q["certification"]["label"]])  # fmt: skip
    rows.append(["Brevitas A2Q+ (imported)", "QAT 50 epochs", f"{brev_acc:.2f} %", "certified"])
    section.para(
        f"The same architecture trained in float (torch, 30 epochs: {float_acc:.2f} %), "
        f"exported to ONNX and quantized by oasa at P = {P}, W4A4 with an 8-bit input as "
        "Brevitas' network has:"
    )
    section.table(["method", "training", "integer test accuracy", "at P = 12"], rows)
    section.write()


if __name__ == "__main__":
    main()
