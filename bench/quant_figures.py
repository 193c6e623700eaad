"""The quantizer's figures, side by side, all on integer arithmetic.

    python bench/quant_figures.py                          # PTQ (a minute or two)
    python bench/quant_figures.py --qat-epochs 10 --skip-ptq
                                # QAT of a2q, a2q+, exact, 3 seeds (tens of minutes)
    python bench/quant_figures.py --tune   # choose the QAT learning rate on the
                                           # validation split (never the test set)

Every accuracy is measured by running the exported integer network through the golden
model (oasa.sim.network.run_network) at the stated P and overflow mode. Float models and
QAT use seeds 0, 1, 2 (``--seeds``); PTQ uses the seed-0 float model.

The PTQ part writes its section of docs/results.md to ``docs/results/quant_ptq.md``, the
QAT part to ``docs/results/quant_qat.md``; each names the exact command line that ran.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from results import Section

from oasa.config import ArrayConfig
from oasa.quant import model, ptq
from oasa.quant.data import digits_split
from oasa.sim import certificates, network

SWEEP = (10, 11, 12, 13, 14)


def evaluate(net, split, overflow=None):
    overrides = {"overflow": overflow} if overflow else None
    r = network.run_network(net, network.quantize_input(net, split.x_test), overrides=overrides)
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


PTQ_ROWS = [
    ("a2q PTQ (certified)", "a2q", "wrap", "dyadic"),
    ("a2q+ PTQ (certified)", "a2q+", "wrap", "dyadic"),
    ("exact PTQ (certified)", "exact", "wrap", "dyadic"),
    ("exact PTQ pow2 (certified)", "exact", "wrap", "pow2"),
    ("oaq PTQ (data-dependent)", "oaq", "wrap", "pow2"),
    ("rtn, quantized for wrap", "rtn", "wrap", "dyadic"),
    ("rtn, quantized for saturate", "rtn", "saturate", "dyadic"),
]


def ptq_at_16(params, split, section, times):
    print("W4A4 at P = 16 (PTQ, dyadic scales)")
    rows = []
    for method in ("rtn", "a2q", "a2q+", "exact", "oaq"):
        acc, counts, net, took = ptq_point(params, split, method, 16)
        times.append(took)
        rows.append(
            [method, f"{acc:.2f}", net.guarantee, max_safe(net),
             f"{counts['flagged']:,} of {counts['total']:,}", f"{took:.2f}"]
        )  # fmt: skip
        print(f"  {method:<6} {acc:6.2f} %  {net.guarantee}", flush=True)
    section.para("W4A4 at P = 16, PTQ, dyadic scales, wrap:")
    section.table(
        ["method", "test accuracy %", "guarantee", "largest min-safe P of a layer",
         "flagged dot products", "PTQ seconds"],
        rows,
    )  # fmt: skip


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


def float_model(split, seed=0):
    t = time.perf_counter()
    params, _, trained = model.load_or_train(model.Recipe(seed=seed))
    how = f"trained in {time.perf_counter() - t:.1f} s" if trained else "cached"
    return params, model.accuracy(params, split.x_test, split.y_test), how


def ptq_figures(split, sweep) -> None:
    section = Section("quant_ptq", "Quantizer figures: post-training quantization")
    params, float_acc, how = float_model(split)
    print(f"float model, seed 0 ({how}): {float_acc:.2f} %")
    section.para(
        "The digits network (conv 3x3 1→32, conv 3x3 32→64, maxpool, dense 1024→64, dense "
        f"64→10), float model of seed 0 (numpy): **{float_acc:.2f} %** on the "
        f"{len(split.y_test)} test images. Every accuracy below is measured on integer "
        "arithmetic: the exported network through the golden model at the stated P and "
        "overflow mode."
    )
    times: list[float] = []
    ptq_at_16(params, split, section, times)
    table = []
    for label, method, mode, scales in PTQ_ROWS:
        vals = []
        for p in sweep:
            acc, counts, _, took = ptq_point(params, split, method, p, mode, scales)
            times.append(took)
            vals.append(f"{acc:.1f}" + (" *" if counts["flagged"] else ""))
        table.append([label, *vals])
        print(f"  {label:<28} " + " ".join(f"{v:>7}" for v in vals), flush=True)
    section.para(f"Accuracy (%) against P, W4A4, PTQ (float {float_acc:.2f} %):")
    section.table(["method", *(f"P={p}" for p in sweep)], table)
    section.para(
        "`*`: some dot products overflowed on the test images (the accuracy is what the "
        "overflowing integer arithmetic gives). Each row quantizes for the mode it runs in: "
        "the activation scales of a layer are calibrated on the integer outputs of the layers "
        "before it, computed in that mode, so the rtn saturate row can differ from the accuracy "
        "sweep's, which quantizes each point once (for wrap) and runs it in both modes. "
        f"PTQ wall time per (method, P) point: median {statistics.median(times):.2f} s, "
        f"max {max(times):.2f} s over {len(times)} points."
    )
    section.write()


def qat_figures(split, sweep, args) -> None:
    from oasa.quant import qat

    section = Section("quant_qat", "Quantizer figures: quantization-aware training")
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.qat_methods.split(",")
    recipe = qat.QATRecipe()
    if args.qat_lr:
        recipe = qat.QATRecipe(lr=args.qat_lr, scale_lr=args.qat_lr)
    floats = {}
    for seed in seeds:
        _, floats[seed], how = float_model(split, seed)
        print(f"float model, seed {seed} ({how}): {floats[seed]:.2f} %")
    qat_times = []
    table = []
    for method in methods:
        per_p = []
        for p in sweep:
            accs = []
            for seed in seeds:
                fp, _, _ = model.load_or_train(model.Recipe(seed=seed))
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
                print(f"  QAT {method} P={p} seed {seed}: {acc:.2f} %", flush=True)
            per_p.append(accs)
        table.append(
            [f"{method} QAT {args.qat_epochs} ep (certified)",
             *(f"{np.mean(a):.1f} ± {np.std(a):.1f}" for a in per_p)]
        )  # fmt: skip
        if len(seeds) > 1:
            table.append(["  min..max", *(f"{min(a):.1f}..{max(a):.1f}" for a in per_p)])
    section.para(
        f"QAT (torch, one thread) fine-tunes the PTQ network of each certified method for "
        f"{args.qat_epochs} epochs, learning rate {recipe.lr:g} (chosen on the validation "
        f"split with `--tune`), seeds {', '.join(map(str, seeds))}: each seed trains its own "
        "float model ("
        + ", ".join(f"seed {s}: {a:.2f} %" for s, a in floats.items())
        + ") and its own QAT. Accuracy on the test images, integer arithmetic, mean ± "
        "population standard deviation over the seeds. Every exported network is certified "
        "and no test dot product overflowed (checked)."
    )
    section.table(["method", *(f"P={p}" for p in sweep)], table)
    section.para(
        f"QAT wall time per point ({args.qat_epochs} epochs, including its PTQ start and the "
        f"export): median {statistics.median(qat_times):.1f} s, max {max(qat_times):.1f} s "
        f"over {len(qat_times)} points."
    )
    section.write()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qat-epochs", type=int, default=0, help="QAT epochs (0: PTQ only)")
    ap.add_argument("--qat-lr", type=float, default=None, help="QAT learning rate")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the QAT points")
    ap.add_argument("--qat-methods", default="a2q,a2q+,exact")
    ap.add_argument("--p", default="10,11,12,13,14", help="accumulator widths of the sweep")
    ap.add_argument("--skip-ptq", action="store_true", help="only the QAT rows")
    ap.add_argument("--tune", action="store_true", help="choose the QAT lr on validation")
    args = ap.parse_args(argv)
    if args.tune:
        tune(args)
        return 0
    sweep = tuple(int(p) for p in args.p.split(","))
    split = digits_split()
    if not args.skip_ptq:
        ptq_figures(split, sweep)
    if args.qat_epochs:
        qat_figures(split, sweep, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
