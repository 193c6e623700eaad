"""Bring your own network: the residual digits CNN (tests/data/residual_digits_bn.onnx,
made by bench/residual_model.py) through every oasa command, as a user would run them.

Measured in one run and written to ``docs/results/residual.md``:

- the imported float graph against onnxruntime (same predictions, largest logit error);
- ``oasa sweep --model --data``: integer accuracy per method and P = 8..16 (PTQ, and QAT
  for the certified methods; wrap), certified or not, beside the float accuracy;
- ``oasa quantize --model --data --method exact --acc-bits 12`` then ``oasa run`` on
  Verilator: bit-exact on the test images, cycles per image and utilization per layer
  (the depthwise layer included);
- the time to import the model and the golden model's speed on it.

    python bench/residual_figures.py [--images 64] [--jobs 2] [--qat-epochs 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from results import ROOT, Section, digits_data_file, oasa_json

MODEL = ROOT / "tests" / "data" / "residual_digits_bn.onnx"
OUT = ROOT / "out" / "bench" / "residual"


def against_onnxruntime(section: Section) -> float:
    """Import time, and the float graph's agreement with onnxruntime; returns its accuracy."""
    import onnxruntime as ort

    from oasa.quant.data import digits_split
    from oasa.quant.onnx_import import load_onnx

    t = time.perf_counter()
    graph = load_onnx(MODEL)
    import_s = time.perf_counter() - t
    s = digits_split()
    ours = graph.forward(s.x_test)
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {sess.get_inputs()[0].name: s.x_test})[0]
    same = int((ours.argmax(1) == theirs.argmax(1)).sum())
    rel = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    acc = 100.0 * float((ours.argmax(1) == s.y_test).mean())
    nodes = len(graph.nodes)
    kinds = sorted({n.op for n in graph.nodes})
    section.para(
        f"`{MODEL.relative_to(ROOT)}` (batch norm kept; {nodes} oasa nodes after folding: "
        f"{', '.join(kinds)}) imports in {import_s * 1000:.0f} ms. oasa's float execution of "
        f"the graph gives the same prediction as onnxruntime on {same} of {len(s.y_test)} "
        f"test images, largest logit difference {rel:.1e} relative; float accuracy "
        f"{acc:.2f} %."
    )
    return acc


def _sweep(data: str, jobs: int, methods: list[str], qat_epochs: int) -> dict:
    return oasa_json(
        "sweep", "--model", str(MODEL), "--data", data, "--acc-bits", "8:16",
        "--methods", ",".join(methods), "--overflow", "wrap", "--jobs", str(jobs),
        "--qat-epochs", str(qat_epochs), "-o", str(OUT / "sweep"), "--quiet",
    )  # fmt: skip


def _rows(r: dict, methods: list[str], how: str) -> list[list[str]]:
    widths = sorted({p["acc_bits"] for p in r["points"]})
    rows = []
    for m in methods:
        cells = []
        for p in widths:
            pt = next(x for x in r["points"] if x["method"] == m and x["acc_bits"] == p)
            if pt.get("status") != "ok":
                cells.append("n/a")
            else:
                cells.append(f"{pt['accuracy']:.1f}{'*' if pt['certified'] else ''}")
        rows.append([m, how, *cells])
    return rows


def sweep_table(section: Section, data: str, jobs: int, float_acc: float, qat: int) -> None:
    methods = ["rtn", "a2q", "a2q+", "exact", "oaq"]
    ptq = _sweep(data, jobs, methods, 0)
    rows = _rows(ptq, methods, "PTQ")
    seconds = ptq["seconds"]
    if qat:
        certified = ["a2q", "a2q+", "exact"]
        r = _sweep(data, jobs, certified, qat)
        rows += _rows(r, certified, f"QAT {qat} epochs")
        seconds += r["seconds"]
    widths = sorted({p["acc_bits"] for p in ptq["points"]})
    section.para(
        f"`oasa sweep --model {MODEL.name} --data DATA --acc-bits 8:16 --overflow wrap`"
        + (f" (and `--qat-epochs {qat}` for the certified methods)" if qat else "")
        + ": integer test accuracy (%), golden model; * = certified overflow-free at that P. "
        f"Float: {float_acc:.2f} %. Swept in {seconds:.0f} s."
    )
    section.table(["method", "training", *[f"P={p}" for p in widths]], rows)
    wide = next(x for x in ptq["points"] if x["method"] == "a2q+" and x["acc_bits"] == widths[-1])
    after = ""
    if qat:
        trained = next(
            x for x in r["points"] if x["method"] == "a2q+" and x["acc_bits"] == widths[-1]
        )
        after = f"; {qat} epochs of QAT bring it to {trained['accuracy']:.1f} %"
    section.para(
        "A2Q+ zero-centres every channel's weights (its bound needs it): post-training that is "
        "an error the bias correction removes only on average, so a2q+ PTQ stays at "
        f"{wide['accuracy']:.1f} % even at P = {widths[-1]}{after}."
    )


def verilator_run(section: Section, data: str, images: int) -> None:
    net = OUT / "residual_exact_p12.npz"
    q = oasa_json(
        "quantize", "--model", str(MODEL), "--data", data, "--method", "exact",
        "--acc-bits", "12", "-o", str(net),
    )  # fmt: skip
    r = oasa_json(
        "run", str(net), "--data", data, "--backend", "verilator", "--images", str(images),
        "--quiet",
    )  # fmt: skip
    section.para(
        f"`oasa quantize --model ... --method exact --acc-bits 12` "
        f"({q['certification']['label']}, integer accuracy {q['accuracy']:.2f} %), then "
        f"`oasa run --backend verilator`: {r['images']} test images on the "
        f"{r['array']['rows']} x {r['array']['cols']} array, every layer's outputs and flags "
        "equal to the golden model's"
        + (" (checked)" if r["checked_against_model"] else "")
        + f"; accuracy {r['accuracy']:.2f} %, {r['cycles_per_image']:,.0f} cycles per image, "
        f"utilization {100 * r['utilization']:.1f} % over the whole network, "
        f"simulated in {r['seconds']:.1f} s."
    )
    rows = []
    for s in r["layers"]:
        if s["kind"] not in ("conv2d", "dense"):
            rows.append([f"{s['index']}: {s['name']}", f"host {s['kind']}", "", "", ""])
            continue
        rows.append(
            [f"{s['index']}: {s['name']}", s["calls"], f"{s['cycles']:,}",
             f"{100 * s['utilization']:.1f} %", f"{s['flagged']:,}"]
        )  # fmt: skip
    section.table(["layer", "calls", "cycles", "utilization", "flagged"], rows)
    dw = next((s for s in r["layers"] if "dw" in s["name"]), None)
    if dw is not None:
        section.para(
            f"The depthwise layer gets {100 * dw['utilization']:.1f} %. Each of its groups is a "
            "GEMM with K = 9 and one output channel; the runner packs "
            f"{dw['groups_per_pack']} groups into one GEMM with block-diagonal weights (the "
            "pack size with the fewest cycles), which saves a call's fixed cost per group and "
            "fills the columns, but on the output-stationary array an output still gets one "
            "useful term per cycle out of a column's K = 9 x pack terms, so at most 1 / "
            f"{r['array']['cols']} of its MACs count."
        )


def golden_speed(section: Section, data: str) -> None:
    from oasa.sim import netfile, network

    net = netfile.load(OUT / "residual_exact_p12.npz")
    with np.load(data) as f:
        x = network.quantize_input(net, f["x_test"])
    network.run_network(net, x[:8])  # warm up
    t = time.perf_counter()
    network.run_network(net, x)
    secs = time.perf_counter() - t
    section.para(
        f"Golden model on the residual network: {len(x)} images in {secs:.2f} s "
        f"({len(x) / secs:,.0f} images/s, results and overflow flags of every dot product)."
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64, help="test images on Verilator")
    ap.add_argument("--jobs", type=int, default=2, help="sweep processes")
    ap.add_argument("--qat-epochs", type=int, default=10, help="QAT epochs (0: PTQ only)")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    section = Section("residual", "Bring your own network: a residual CNN from ONNX")
    data = digits_data_file(OUT)
    float_acc = against_onnxruntime(section)
    sweep_table(section, data, args.jobs, float_acc, args.qat_epochs)
    verilator_run(section, data, args.images)
    golden_speed(section, data)
    section.write()


if __name__ == "__main__":
    main()
