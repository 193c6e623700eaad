"""The digits network on the accelerator: `oasa quantize --method exact --acc-bits 16`, then
`oasa run` on the Verilator backend, every layer checked against the golden model.

Runs the two commands (with ``--json``) on all 540 test images, 8 x 8 array, 8 images per
pass, and writes its section of docs/results.md (``docs/results/network_run.md``):
accuracy, cycles and utilization per layer, throughput at 100 MHz and the simulation's wall
time.

    python bench/network_run.py [--backend verilator|model]
"""

from __future__ import annotations

import argparse

from results import ROOT, Section, oasa_json

NET = ROOT / "out" / "bench" / "net_exact_p16.npz"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="verilator", choices=("verilator", "model"))
    args = ap.parse_args(argv)
    section = Section("network_run", "The digits network on the accelerator")
    NET.parent.mkdir(parents=True, exist_ok=True)
    q = oasa_json("quantize", "--method", "exact", "--acc-bits", "16", "-o", str(NET))
    r = oasa_json("run", str(NET), "--backend", args.backend, "--images", "540", "--quiet")
    cfg = q["config"]
    arr = r["array"]
    section.para(
        f"`oasa quantize --method exact --acc-bits {cfg['acc_bits']}` (W{cfg['weight_bits']}"
        f"A{cfg['act_bits']}, {q['scales']} scales, {cfg['overflow']}; "
        f"{q['certification']['label']}), then `oasa run NET --backend {r['backend']}`: "
        f"{r['images']} test images, {r['batch']} per pass, on the {arr['rows']} x "
        f"{arr['cols']} accelerator. Every layer's outputs and overflow flags are compared "
        "with the golden model on the same input, bit for bit"
        + (" (all equal)." if r["checked_against_model"] else ".")
    )
    layers = []
    for s in r["layers"]:
        if s["kind"] not in ("conv2d", "dense"):
            layers.append([f"{s['index']}: {s['name']}", "on the host", "", "", "", ""])
            continue
        layers.append(
            [f"{s['index']}: {s['name']}", s["calls"], f"{s['cycles']:,}",
             f"{100 * s['utilization']:.1f} %", f"{s['flagged']:,}", f"{s['dot_products']:,}"]
        )  # fmt: skip
    section.table(["layer", "calls", "cycles", "utilization", "flagged", "dot products"], layers)
    section.table(
        ["figure", "value"],
        [
            ["accuracy on the accelerator", f"{r['accuracy']:.2f} %"],
            ["accuracy printed by `oasa quantize` (golden model)", f"{q['accuracy']:.2f} %"],
            ["float model", f"{q['float_accuracy']:.2f} %"],
            ["cycles, all images", f"{r['cycles']:,}"],
            ["cycles per image", f"{r['cycles_per_image']:,.0f}"],
            ["utilization, whole network", f"{100 * r['utilization']:.1f} %"],
            [f"throughput at {r['clock_mhz']:g} MHz", f"{r['images_per_second']:,.0f} images/s"],
            [f"simulation wall time ({r['backend']})", f"{r['seconds']:.1f} s"],
        ],
    )
    section.write()


if __name__ == "__main__":
    main()
