"""``oasa sweep``: accuracy against accumulator width, for every quantizer and overflow
mode, cached point by point so an interrupted sweep resumes."""

from __future__ import annotations

import argparse
import os
import sys
import time

from oasa import files
from oasa.cli import options as opt
from oasa.cli.common import Report, require_torch
from oasa.cli.quantizer import add_data_option
from oasa.errors import EXIT_INTERRUPTED

__all__ = ["register"]


def _items(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def cmd_sweep(args: argparse.Namespace) -> Report | int:
    from tqdm import tqdm

    from oasa.quant import sweep
    from oasa.quant.workload import load_workload

    try:
        widths = sweep.parse_acc_bits(args.acc_bits)
    except ValueError as e:
        raise opt.UsageError(str(e)) from None
    methods, modes = _items(args.methods), _items(args.overflow)
    if args.qat_epochs:
        require_torch("--qat-epochs")
    where = opt.where_from_args(args, default_jobs=os.cpu_count() or 1)
    out = files.check_output_dir(args.output, "-o")
    work = load_workload(args.model, args.data, need_train=True, log=lambda m: print(f"  {m}"))
    points = sweep.plan(
        methods, widths, modes, qat_epochs=args.qat_epochs, scales=args.scales,
        model_hash=work.model_hash, data_hash=work.data_hash,
    )  # fmt: skip
    float_acc = work.float_accuracy()
    how = f"QAT {args.qat_epochs} epochs" if args.qat_epochs else "PTQ"
    print(
        f"sweep: {len(methods)} methods x {len(widths)} widths x {len(modes)} modes = "
        f"{len(points)} points ({how}, on {where.describe()}) -> {out}"
    )
    started = time.perf_counter()
    with tqdm(
        total=len(points), unit="pt", disable=True if args.quiet else None, leave=False
    ) as bar:
        try:
            rows, computed = sweep.run_sweep(
                points, out, where=where, workload=work,
                progress=lambda done, total: bar.update(done - bar.n), log=bar.write,
            )  # fmt: skip
        except KeyboardInterrupt:
            bar.close()
            saved = sum(map(sweep.finished, sweep.load_cache(out).values()))
            print(
                f"oasa: interrupted: {saved} finished points are saved in "
                f"{out / sweep.CACHE_FILE}; run the same command again to compute only the rest",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    secs = time.perf_counter() - started
    print(f"{computed} points computed in {secs:.1f} s, {len(points) - computed} from the cache")
    print(f"{work.model}: float accuracy {float_acc:.2f} %\n")
    print(sweep.table(rows))
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        f = failed[0]
        print(
            f"{len(failed)} points FAILED (kept in {out / sweep.CACHE_FILE}; a re-run tries "
            f"them again), e.g. {f['method']} at P = {f['acc_bits']} {f['overflow']}: "
            f"{f['error']}",
            file=sys.stderr,
        )
    skipped = [r for r in rows if r.get("status") not in ("ok", "failed")]
    if skipped:
        s = skipped[0]
        print(
            f"{len(skipped)} points not applicable, e.g. {s['method']} at "
            f"P = {s['acc_bits']}: {s['note']}"
        )
    checks = []
    if args.rtl_check:
        checks = sweep.rtl_check(
            sweep.spread_sample(rows, args.rtl_check), args.rtl_images, model=args.model,
            data=args.data,
        )  # fmt: skip
    paths = sweep.write_outputs(rows, out, float_accuracy=float_acc, extra={"rtl_checks": checks})
    print("wrote " + ", ".join(str(p) for p in paths))
    return {
        "ok": not failed and all(c["status"] == "ok" for c in checks),
        "float_accuracy": float_acc,
        "points": rows,
        "computed": computed,
        "cached": len(points) - computed,
        "seconds": secs,
        "rtl_checks": checks,
        "outputs": [str(p) for p in paths],
    }


def register(sub) -> None:
    p = sub.add_parser("sweep", help="accuracy versus accumulator width, for every quantizer")
    p.add_argument(
        "--acc-bits", default="8:24", help="widths: a range 8:24 or a list 10,12 (default 8:24)"
    )
    p.add_argument(
        "--methods", default="rtn,a2q,a2q+,exact,oaq", help="comma-separated (default all five)"
    )
    p.add_argument(
        "--overflow", default="wrap,saturate", help="modes, comma-separated (default both)"
    )
    p.add_argument(
        "--qat-epochs",
        type=opt.int_range(0, 10_000),
        default=0,
        help="QAT epochs per point (default 0: PTQ)",
    )
    p.add_argument(
        "--scales", choices=("dyadic", "pow2"), default="dyadic", help="requantization style"
    )
    opt.add_where_options(p, jobs_help="parallel processes on this machine (default all cores)")
    p.add_argument(
        "-o",
        "--output",
        default="out/sweep",
        help="output folder, also the cache (default out/sweep)",
    )
    p.add_argument(
        "--rtl-check", type=opt.int_range(0), default=0, metavar="K",
        help="run K points on the Verilator backend too",
    )  # fmt: skip
    p.add_argument(
        "--rtl-images",
        type=opt.int_range(1),
        default=16,
        help="test images per RTL check (default 16)",
    )
    p.add_argument("--model", help="a float ONNX model to sweep (needs --data; default: digits)")
    add_data_option(p, "calibration (train part) and accuracy (test part)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    opt.add_json_option(p)
    p.set_defaults(func=cmd_sweep)
