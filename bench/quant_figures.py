"""The quantizer's figures (issue 6), in one run, side by side, all on integer arithmetic.

    python bench/quant_figures.py                     # PTQ only (about a minute)
    python bench/quant_figures.py --qat-epochs 10     # plus QAT of a2q, a2q+, exact, 3 seeds
    python bench/quant_figures.py --tune              # choose the QAT learning rate on the
                                                      # validation split (never the test set)

Every accuracy is measured by running the exported integer network through the golden
model (oasa.sim.network.run_network) at the stated P and overflow mode. Float models and
QAT use seeds 0, 1, 2 (``--seeds``); PTQ uses the seed-0 float model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from oasa.config import ArrayConfig
from oasa.quant import model, ptq
from oasa.quant.data import digits_split
from oasa.sim import certificates, network

BREVITAS = {  # issue 6: Brevitas 0.13.4, mean of 3 seeds, same net / split / widths
    "Brevitas A2Q+ (30 ep)": [92.2, 97.1, 98.4, 98.6, 98.8],
    "Brevitas A2Q+ (10 ep)": [83.0, 94.6, 97.3, 97.9, 98.3],
    "Brevitas A2Q (30 ep)": [10.1, 10.1, 93.5, 96.7, 98.0],
}
SWEEP = (10, 11, 12, 13, 14)


def evaluate(net, split, overflow=None):
    r = network.run_network(
        net, network.quantize_input(net, split.x_test), overrides={"overflow": overflow}
    )
    return r.accuracy(split.y_test), r.overflow_counts()


def max_safe(net):
    return max(r["min_safe_acc_bits"] for r in certificates.check_certificates(net))


def ptq_point(params, split, method, p, overflow="wrap", scales="dyadic"):
    t = time.perf_counter()
    net = ptq.quantize(
        params, ptq.QuantSpec(method, ArrayConfig(acc_bits=p, overflow=overflow), scales)
    )
    took = time.perf_counter() - t
    acc, counts = evaluate(net, split)
    return acc, counts, net, took


def fmt_row(name, values, width=7):
    return f"| {name:<26} | " + " | ".join(f"{v:>{width}}" for v in values) + " |"


PTQ_ROWS = [
    ("a2q PTQ (certified)", "a2q", "wrap", "dyadic"),
    ("a2q+ PTQ (certified)", "a2q+", "wrap", "dyadic"),
    ("exact PTQ (certified)", "exact", "wrap", "dyadic"),
    ("exact PTQ pow2 (certified)", "exact", "wrap", "pow2"),
    ("oaq PTQ (data-dependent)", "oaq", "wrap", "pow2"),
    ("rtn wrap", "rtn", "wrap", "dyadic"),
    ("rtn saturate", "rtn", "saturate", "dyadic"),
]


def ptq_at_16(params, split, out, times):
    out("## W4A4 at P = 16 (PTQ, dyadic scales)\n")
    out("| method | test acc % | guarantee | max min-safe P | flagged dot products | PTQ s |")
    out("|---|---|---|---|---|---|")
    for method in ("rtn", "a2q", "a2q+", "exact", "oaq"):
        acc, counts, net, took = ptq_point(params, split, method, 16)
        times.append(took)
        out(
            f"| {method} | {acc:.2f} | {net.guarantee} | {max_safe(net)} | "
            f"{counts['flagged']} of {counts['total']} | {took:.2f} |"
        )


def tune(args):
    """QAT learning rate on the validation split (float model trained without it)."""
    from oasa.quant import qat

    val = digits_split(validation=True)
    params, _, _ = model.load_or_train(model.Recipe(seed=0, validation=True))
    print(f"validation split: train {len(val.y_train)}, validation {len(val.y_test)} images")
    print(
        f"float (trained without the validation images): "
        f"{model.accuracy(params, val.x_test, val.y_test):.2f} % on validation"
    )
    results = {}
    for lr in (3e-4, 1e-3, 3e-3):
        for method in ("a2q+", "exact"):
            for p in (10, 12):
                spec = ptq.QuantSpec(method, ArrayConfig(acc_bits=p))
                rec = qat.QATRecipe(epochs=args.qat_epochs or 10, lr=lr, scale_lr=lr, seed=0)
                net_t, _ = qat.train_qat(params, spec, rec, validation=True)
                net = qat.export(net_t, params, spec, {})
                acc, _ = evaluate(net, val)
                results[lr, method, p] = acc
                print(f"  lr {lr:g} {method:<5} P={p}: validation {acc:.2f} %", flush=True)
    for lr in (3e-4, 1e-3, 3e-3):
        mean = np.mean([v for k, v in results.items() if k[0] == lr])
        print(f"lr {lr:g}: mean validation accuracy {mean:.2f} %")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qat-epochs", type=int, default=0, help="QAT epochs (0: PTQ only)")
    ap.add_argument("--qat-lr", type=float, default=None, help="QAT learning rate")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the QAT points")
    ap.add_argument("--qat-methods", default="a2q,a2q+,exact")
    ap.add_argument("--p", default="10,11,12,13,14", help="accumulator widths of the sweep")
    ap.add_argument("--skip-ptq", action="store_true", help="only the QAT rows")
    ap.add_argument("--tune", action="store_true", help="choose the QAT lr on validation")
    ap.add_argument("--out", help="also write the tables to this markdown file")
    args = ap.parse_args(argv)
    if args.tune:
        tune(args)
        return 0
    sweep = tuple(int(p) for p in args.p.split(","))
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    split = digits_split()
    t = time.perf_counter()
    params, _, trained = model.load_or_train(model.Recipe(seed=0))
    float_acc = model.accuracy(params, split.x_test, split.y_test)
    how = f"trained in {time.perf_counter() - t:.1f} s" if trained else "cached"
    out(
        f"## Float model\n\nseed 0 ({how}): test accuracy {float_acc:.2f} % "
        f"({len(split.y_test)} test images)\n"
    )

    times = []
    if args.skip_ptq:
        rows = []
    else:
        ptq_at_16(params, split, out, times)
        rows = PTQ_ROWS
    out(f"\n## Accuracy (%) against P, W4A4, integer arithmetic (float {float_acc:.2f} %)\n")
    out(fmt_row("method", [f"P={p}" for p in sweep]))
    out("|" + "---|" * (len(sweep) + 1))
    for label, method, mode, scales in rows:
        vals = []
        for p in sweep:
            acc, counts, net, took = ptq_point(params, split, method, p, mode, scales)
            times.append(took)
            note = "*" if counts["flagged"] else ""
            vals.append(f"{acc:.1f}{note}")
        out(fmt_row(label, vals))

    qat_times = []
    if args.qat_epochs:
        from oasa.quant import qat

        seeds = [int(s) for s in args.seeds.split(",")]
        recipe = qat.QATRecipe()
        if args.qat_lr:
            recipe = qat.QATRecipe(lr=args.qat_lr, scale_lr=args.qat_lr)
        float_accs = []
        for method in args.qat_methods.split(","):
            per_p = []
            for p in sweep:
                accs = []
                for seed in seeds:
                    fp, _, _ = model.load_or_train(model.Recipe(seed=seed))
                    if method == args.qat_methods.split(",")[0] and p == sweep[0]:
                        float_accs.append(model.accuracy(fp, split.x_test, split.y_test))
                    t = time.perf_counter()
                    net = qat.train_and_export(
                        fp,
                        ptq.QuantSpec(method, ArrayConfig(acc_bits=p)),
                        epochs=args.qat_epochs,
                        seed=seed,
                        recipe=recipe,
                    )
                    qat_times.append(time.perf_counter() - t)
                    acc, counts = evaluate(net, split)
                    assert net.guarantee == "certified" and counts["flagged"] == 0
                    accs.append(acc)
                    print(
                        f"  QAT {method} P={p} seed {seed}: {acc:.2f} %",
                        file=sys.stderr,
                        flush=True,
                    )
                per_p.append(accs)
            label = f"{method} QAT {args.qat_epochs} ep"
            out(fmt_row(label, [f"{np.mean(a):.1f}±{np.std(a):.1f}" for a in per_p], 9))
            out(fmt_row("  (min..max)", [f"{min(a):.1f}..{max(a):.1f}" for a in per_p], 9))
        out(
            f"\nQAT: seeds {seeds} (float model and QAT), lr {recipe.lr:g}, mean ± std "
            f"(population) over seeds; float accuracy per seed: "
            + ", ".join(f"{a:.2f}" for a in float_accs)
            + " %"
        )
    out("")
    if sweep == SWEEP:
        for name, vals in BREVITAS.items():
            out(fmt_row(name, [f"{v:.1f}" for v in vals]))
    if rows:
        out(
            "\n`*`: some dot products overflowed on the test images (the accuracy is what the "
            "overflowing integer arithmetic gives)."
        )
    if times:
        out(
            f"\nPTQ wall time per (method, P) point: median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s over {len(times)} points."
        )
    if qat_times:
        out(
            f"QAT wall time per point ({args.qat_epochs} epochs, 1 torch thread, including its "
            f"PTQ start and the export): median {statistics.median(qat_times):.1f} s, "
            f"max {max(qat_times):.1f} s."
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
