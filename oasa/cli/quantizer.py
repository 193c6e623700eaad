"""``oasa train | quantize | eval | check``: the float model, overflow-safe integer
networks, their accuracy and their certificates."""

from __future__ import annotations

import argparse
import time

from oasa import files
from oasa.cli import options as opt
from oasa.cli.common import Report, print_certificates, require_torch

__all__ = ["add_data_option", "register", "test_data"]


def add_data_option(p: argparse.ArgumentParser, used_for: str) -> None:
    p.add_argument(
        "--data",
        help=f"DATA.npz with x_train, y_train, x_test, y_test: {used_for} "
        "(default: the digits benchmark)",
    )


def _print_overflow(result) -> dict:
    layers = []
    for r in result.layers:
        if r.overflow is None:
            continue
        n = r.overflow.size
        flagged, final = int(r.overflow.sum()), int(r.final_overflow.sum())
        print(
            f"  layer {r.index} {r.layer.name:<7} {n:>8} dot products: transient overflow "
            f"{(flagged - final) / n:8.4%}, final overflow {final / n:8.4%}"
        )
        layers.append({"index": r.index, "name": r.layer.name, "dot_products": n,
                       "flagged": flagged, "final": final})  # fmt: skip
    c = result.overflow_counts()
    print(
        f"  all layers     {c['total']:>8} dot products: transient overflow "
        f"{c['transient'] / c['total']:8.4%}, final overflow {c['final'] / c['total']:8.4%}"
    )
    return {"layers": layers, **c}


def cmd_train(args: argparse.Namespace) -> Report:
    from oasa.quant import model
    from oasa.quant.data import digits_split

    out = files.check_output_path(args.output, "-o") if args.output else None
    started = time.perf_counter()
    recipe = model.Recipe(seed=args.seed, epochs=args.epochs)
    params, path, trained = model.load_or_train(
        recipe, retrain=args.retrain, log=lambda m: print(f"  {m}")
    )
    split = digits_split()
    what = "trained" if trained else "loaded from the cache"
    print(f"float model {what}: {path} ({time.perf_counter() - started:.1f} s)")
    accuracy = model.accuracy(params, split.x_test, split.y_test)
    print(f"float test accuracy: {accuracy:.2f} %")
    if out:
        model.save_params(params, out, recipe)
        print(f"wrote {out}")
    return {
        "checkpoint": str(path),
        "trained": trained,
        "float_accuracy": accuracy,
        "output": str(out) if out else None,
    }


def _workload(args: argparse.Namespace, *, need_train: bool):
    """The digits benchmark (from --checkpoint or the cache), or --model with --data."""
    from oasa.quant import model
    from oasa.quant.workload import Workload, digits_workload, file_hash, load_workload

    if getattr(args, "checkpoint", None):
        w = digits_workload(args.seed)
        files.check_input_file(args.checkpoint, "--checkpoint")
        params = model.load_params(args.checkpoint)
        return Workload(model.digits_graph(params), w.split, str(args.checkpoint),
                        file_hash(args.checkpoint), w.data_hash, params)  # fmt: skip
    return load_workload(
        getattr(args, "model", None), args.data, need_train=need_train, seed=args.seed,
        log=lambda m: print(f"  {m}"),
    )  # fmt: skip


def cmd_quantize(args: argparse.Namespace) -> Report:
    from oasa.quant import ptq
    from oasa.sim import certificates, netfile, network

    spec = ptq.QuantSpec(
        args.method, opt.config_from_args(args), args.scales, input_bits=args.input_bits
    )
    out = files.check_output_path(args.output, "-o")
    if args.qat_epochs:
        require_torch("--qat-epochs")
        from oasa.quant import qat

    work = _workload(args, need_train=True)
    split = work.split
    float_accuracy = work.float_accuracy()
    print(f"{work.model}: float test accuracy {float_accuracy:.2f} %")
    started = time.perf_counter()
    if args.qat_epochs:
        net = qat.train_and_export(
            work.graph, spec, epochs=args.qat_epochs, seed=args.seed, split=work.split
        )
        how = f"QAT, {args.qat_epochs} epochs"
    else:
        net = ptq.quantize(work.graph, spec, calib=work.calibration(spec.calibration))
        how = "PTQ"
    took = time.perf_counter() - started
    r = network.run_network(net, network.quantize_input(net, split.x_test))
    accuracy = r.accuracy(split.y_test)
    print(
        f"{spec.method} ({how}, {spec.scale_style} scales), W{spec.weight_bits}A{spec.act_bits}, "
        f"P = {spec.acc_bits}, {spec.overflow}: integer test accuracy "
        f"{accuracy:.2f} % ({took:.1f} s)"
    )
    print_certificates(net)
    certification = certificates.certify(net)
    print(certification.summary())
    c = r.overflow_counts()
    print(f"test set: {c['flagged']} of {c['total']} dot products overflowed ({c['final']} final)")
    netfile.save(net, out)
    print(f"wrote {out}")
    return {
        "model": work.model,
        "method": spec.method,
        "training": "qat" if args.qat_epochs else "ptq",
        "qat_epochs": args.qat_epochs,
        "scales": spec.scale_style,
        "config": spec.cfg.to_dict("arithmetic"),
        "float_accuracy": float_accuracy,
        "accuracy": accuracy,
        "images": len(split.y_test),
        "certification": certification.to_dict(),
        "overflow": c,
        "seconds": took,
        "output": str(out),
    }


def test_data(args: argparse.Namespace, net) -> tuple:
    """(test inputs, labels, where they come from) for a network: the --data file's test
    part, checked against the network's input shape and classes, or the digits test set."""
    from oasa.quant.data import digits_split, load_data

    if args.data:
        split = load_data(args.data, need_train=False)
        out = net.tensors[net.output].shape[0]
        split.check_fits(net.input_shape, out, args.data)
        return split.x_test, split.y_test, args.data
    if tuple(net.input_shape) != (1, 8, 8):
        raise opt.UsageError(
            f"the network takes inputs of shape {tuple(net.input_shape)}, not the digits "
            "images: give its test data with --data DATA.npz"
        )
    split = digits_split()
    return split.x_test, split.y_test, "the digits test set"


def cmd_eval(args: argparse.Namespace) -> Report:
    from oasa.sim import certificates, netfile, network

    net = netfile.load(args.net)
    p = args.acc_bits
    overrides = {
        k: getattr(args, k) for k in ("acc_bits", "overflow") if getattr(args, k) is not None
    }
    x_test, y_test, source = test_data(args, net)
    r = network.run_network(net, network.quantize_input(net, x_test), overrides=overrides)
    modes = sorted({args.overflow or layer.overflow for _, layer in net.weighted})
    print(f"{args.net}: {net.method}, run in {' / '.join(modes)} mode")
    certification = certificates.certify(net, acc_bits=p)
    print(certification.summary())
    accuracy = r.accuracy(y_test)
    print(f"integer test accuracy: {accuracy:.2f} % ({len(y_test)} images of {source})")
    overflow = _print_overflow(r)
    return {
        "net": args.net,
        "method": net.method,
        "overflow_modes": modes,
        "accuracy": accuracy,
        "images": len(y_test),
        "certification": certification.to_dict(),
        "overflow": overflow,
    }


def cmd_check(args: argparse.Namespace) -> Report:
    from oasa.sim import certificates, netfile

    net = netfile.load(args.net)
    print_certificates(net)
    print(f"{args.net}: every certificate matches its integer weights")
    certification = certificates.certify(net)
    print(certification.summary())
    return {"net": args.net, "method": net.method, "certification": certification.to_dict()}


def register(sub) -> None:
    from oasa.quant.methods import METHODS
    from oasa.quant.ptq import SCALE_STYLES

    p = sub.add_parser("train", help="train (or load the cached) float digits model")
    p.add_argument("--seed", type=opt.SEED, default=0, help="training seed (default 0)")
    p.add_argument(
        "--epochs", type=opt.int_range(1, 10_000), default=20, help="epochs (default 20)"
    )
    p.add_argument("--retrain", action="store_true", help="ignore the cached checkpoint")
    p.add_argument(
        "-o",
        "--output",
        help="also write the float checkpoint here (.npz; default: only the cache)",
    )
    opt.add_json_option(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("quantize", help="quantize the digits network and export it (.npz)")
    p.add_argument("--method", required=True, choices=METHODS, help="quantizer")
    opt.add_config_options(
        p, ("arithmetic",), only=("act_bits", "weight_bits", "acc_bits", "overflow")
    )
    p.add_argument("--scales", choices=SCALE_STYLES, default="dyadic", help="requantization style")
    p.add_argument(
        "--input-bits", type=opt.int_range(2, 8), metavar="B",
        help="bits of the network's input, read by the first layer (default: --act-bits)",
    )  # fmt: skip
    p.add_argument(
        "--qat-epochs", type=opt.int_range(0, 10_000), default=0, help="QAT epochs (needs torch)"
    )
    p.add_argument("--seed", type=opt.SEED, default=0, help="seed of float training and QAT")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="float digits checkpoint (default: the cached one)")
    source.add_argument(
        "--model", help="a float ONNX model to quantize (needs --data; default: digits)"
    )
    add_data_option(p, "calibration (train part) and accuracy (test part)")
    p.add_argument("-o", "--output", required=True, help="network file to write (.npz)")
    opt.add_json_option(p)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("eval", help="integer accuracy and overflow of a network file")
    p.add_argument("net", help="network file (.npz)")
    opt.add_config_options(
        p, ("arithmetic",), defaults=None, default_note="each layer's own",
        only=("acc_bits", "overflow"),
    )  # fmt: skip
    add_data_option(p, "its test part")
    opt.add_json_option(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("check", help="recompute and verify every certificate of a network file")
    p.add_argument("net", help="network file (.npz)")
    opt.add_json_option(p)
    p.set_defaults(func=cmd_check)
