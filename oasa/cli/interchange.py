"""``oasa import | export``: quantized models in from QONNX (Brevitas' ``export_qonnx``),
oasa networks out as QONNX (for FINN, hls4ml, qonnx)."""

from __future__ import annotations

import argparse
import time

from oasa import files
from oasa.cli import options as opt
from oasa.cli.common import Report, print_certificates
from oasa.cli.quantizer import add_data_option

__all__ = ["register"]


def _require_onnx(flag: str) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise opt.UsageError(
            f"{flag} needs the onnx extra: pip install 'oasa[onnx]' (or make test / make demo)"
        ) from None


def _test_data_if_any(args: argparse.Namespace, net):
    """The --data test part, or the digits test set when the network takes digits images,
    or None (then there is nothing to measure accuracy on)."""
    from oasa.cli.quantizer import test_data

    if args.data or tuple(net.input_shape) == (1, 8, 8):
        return test_data(args, net)
    return None


def cmd_import(args: argparse.Namespace) -> Report:
    import numpy as np

    from oasa.quant.qonnx_import import import_qonnx, qonnx_reference
    from oasa.sim import netfile, network

    _require_onnx("oasa import")
    files.check_input_file(args.model, "QMODEL")
    out = files.check_output_path(args.output, "-o")
    started = time.perf_counter()
    imported = import_qonnx(args.model, acc_bits=args.acc_bits, overflow=args.overflow)
    took = time.perf_counter() - started
    net = imported.net
    chosen = "given" if args.acc_bits is not None else "the smallest safe width"
    print(f"imported {args.model} in {took:.2f} s at P = {imported.acc_bits} ({chosen})")
    print(imported.summary())
    print_certificates(net)
    report: Report = {
        "model": args.model,
        "acc_bits": imported.acc_bits,
        "certification": imported.certification.to_dict(),
        "max_requant_error": imported.max_requant_error,
        "min_safe_acc_bits": imported.min_safe_acc_bits,
        "notes": imported.notes,
        "seconds": took,
        "accuracy": None,
        "images": 0,
        "agreement": None,
        "agreement_images": 0,
        "output": str(out),
    }
    data = _test_data_if_any(args, net)
    if data is not None:
        x_test, y_test, source = data
        r = network.run_network(net, network.quantize_input(net, x_test))
        accuracy = r.accuracy(y_test)
        c = r.overflow_counts()
        print(
            f"integer test accuracy {accuracy:.2f} % on {len(y_test)} images of {source}; "
            f"{c['flagged']} of {c['total']} dot products overflowed"
        )
        report.update(accuracy=accuracy, images=len(y_test))
        n = min(args.agree_images, len(x_test))
        if n:
            ref = qonnx_reference(args.model, x_test[:n]).argmax(axis=1)
            agreement = 100.0 * float(np.mean(ref == r.predictions[:n]))
            print(
                f"predictions agree with qonnx's execution of {args.model} on {agreement:.2f} % "
                f"of {n} images"
            )
            report.update(agreement=agreement, agreement_images=n)
    netfile.save(net, out)
    print(f"wrote {out}")
    return report


def cmd_export(args: argparse.Namespace) -> Report:
    from oasa.quant.qonnx_export import export_qonnx
    from oasa.sim import netfile

    _require_onnx("oasa export")
    net = netfile.load(args.net)
    out = files.check_output_path(args.output, "-o")
    report = export_qonnx(net, out, batch=args.batch)
    print(report.summary())
    print(
        "the model takes the quantized integer input (oasa.sim.network.quantize_input, scale "
        f"{net.input_scale:.6g}); executed by qonnx it equals the golden model wherever no "
        "dot product overflows"
    )
    return {"net": args.net, **report.to_dict()}


def register(sub) -> None:
    p = sub.add_parser("import", help="import a quantized QONNX model (Brevitas export_qonnx)")
    p.add_argument("model", metavar="QMODEL", help="QONNX model (.onnx)")
    p.add_argument("-o", "--output", required=True, help="network file to write (.npz)")
    p.add_argument(
        "--acc-bits", type=opt.int_range(2, 32), metavar="P",
        help="accumulator width (default: the smallest at which every layer is certified)",
    )  # fmt: skip
    p.add_argument(
        "--overflow", choices=("wrap", "saturate"), default="wrap", help="accumulator mode"
    )
    add_data_option(p, "its test part measures accuracy and agreement with qonnx")
    p.add_argument(
        "--agree-images", type=opt.int_range(0), default=128, metavar="N",
        help="test images executed by qonnx for the agreement (default 128; it is slow)",
    )  # fmt: skip
    opt.add_json_option(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export a network file as QONNX (FINN, hls4ml, qonnx)")
    p.add_argument("net", help="network file (.npz)")
    p.add_argument("-o", "--output", required=True, help="QONNX model to write (.onnx)")
    p.add_argument(
        "--batch", type=opt.int_range(1), default=1,
        help="the model's fixed batch size (default 1, as FINN expects)",
    )  # fmt: skip
    opt.add_json_option(p)
    p.set_defaults(func=cmd_export)
