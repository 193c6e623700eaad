"""``oasa explore``: which array for this network, from the exact cycle model and the
FPGA cost model."""

from __future__ import annotations

import argparse
import time

from oasa import files
from oasa.cli import options as opt
from oasa.cli.common import Report

__all__ = ["register"]


def _arrays(text: str) -> list[tuple[int, int]]:
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        try:
            r, c = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise opt.UsageError(f"--arrays: {item!r} is not ROWSxCOLS (e.g. 8x8,16x16)") from None
        out.append((r, c))
    if not out:
        raise opt.UsageError("--arrays: give at least one array, e.g. 8x8")
    return out


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise opt.UsageError(
            f"{flag}: {text!r} is not a comma-separated list of integers"
        ) from None


def cmd_explore(args: argparse.Namespace) -> Report:
    from oasa.config import DATAFLOWS, ArrayConfig
    from oasa.files import cache_dir
    from oasa.fpga import explore

    files.check_input_file(args.net, "NET")
    out = files.check_output_dir(args.output, "-o")
    dataflows = [d.strip() for d in args.dataflows.split(",") if d.strip()]
    bad = [d for d in dataflows if d not in DATAFLOWS]
    if bad or not dataflows:
        raise opt.UsageError(
            f"--dataflows: {','.join(bad) or 'none given'}; choose from {','.join(DATAFLOWS)} "
            "(os: output-stationary, ws: weight-stationary)"
        )
    candidates = [
        explore.Candidate(r, c, d, p)
        for r, c in _arrays(args.arrays)
        for d in dataflows
        for p in _ints(args.acc_bits, "--acc-bits")
    ]
    for cand in candidates:
        ArrayConfig(rows=cand.rows, cols=cand.cols, acc_bits=cand.acc_bits)  # names the range
    kind, shapes = explore.layer_shapes(args.net)
    print(f"{args.net}: {kind}, {len(shapes)} weighted layers, "
          f"{sum(s.macs for s in shapes):,} MACs per image")  # fmt: skip
    where = opt.where_from_args(args, default_jobs=1)
    started = time.perf_counter()
    family = None if args.no_cost else args.family
    rows = explore.explore(
        shapes, candidates, family=family, cache=cache_dir() / "synth", where=where,
        progress=lambda m: print(f"  {m}", flush=True),
    )  # fmt: skip
    checked = []
    if args.rtl_check:
        checked = explore.rtl_check(
            shapes, candidates, rows, args.rtl_check, seed=args.seed,
            progress=lambda m: print(f"  {m}", flush=True),
        )  # fmt: skip
        print(f"  RTL check: {len(checked)} layer runs on Verilator equal the model "
              "(results, flags, cycles)")  # fmt: skip
    tot = explore.totals(rows)
    meta = {"network": str(args.net), "kind": kind, "family": family, "rtl_checked": checked}
    paths = explore.write_outputs(rows, out, meta=meta)
    secs = time.perf_counter() - started
    print(f"\n{'array':<8} {'flow':<4} {'P':>3} {'calls':>8} {'cycles':>14} {'util %':>7} "
          f"{'LUTs':>8} {'FFs':>8}")  # fmt: skip
    for t in tot:
        cost = f"{t['luts']:>8,} {t['ffs']:>8,}" if t["luts"] is not None else f"{'-':>8} {'-':>8}"
        print(f"{t['rows']}x{t['cols']:<5} {t['dataflow']:<4} {t['acc_bits']:>3} "
              f"{t['calls']:>8,} {t['cycles']:>14,} {100 * t['utilization']:7.2f} {cost}")  # fmt: skip
    print(f"\nexplored {len(candidates)} candidates in {secs:.1f} s; wrote "
          + ", ".join(str(p) for p in paths))  # fmt: skip
    return {"network": str(args.net), "kind": kind, "layers": len(shapes), "totals": tot,
            "rtl_checked": checked, "seconds": secs,
            "outputs": [str(p) for p in paths]}  # fmt: skip


def register(sub) -> None:
    p = sub.add_parser("explore", help="cycles and cost of a network on candidate arrays")
    p.add_argument("net", metavar="NET", help="network file (.npz), ONNX model or SCALE-Sim CSV")
    p.add_argument(
        "--arrays", default="8x8,16x16,32x32", help="ROWSxCOLS list (default 8x8,16x16,32x32)"
    )
    p.add_argument("--dataflows", default="os,ws", help="dataflows: os, ws or both (default os,ws)")
    p.add_argument("--acc-bits", default="16", help="accumulator widths, e.g. 12,16 (default 16)")
    p.add_argument("--family", choices=("ecp5", "ice40"), default="ecp5",
                   help="FPGA family of the cost model (default ecp5)")  # fmt: skip
    p.add_argument("--no-cost", action="store_true", help="skip synthesis (no LUTs)")
    opt.add_where_options(p, jobs_help="syntheses at once on this machine (default 1)")
    p.add_argument(
        "--rtl-check",
        type=opt.int_range(0),
        default=0,
        metavar="K",
        help="also run K sampled layers of every candidate on the Verilator RTL (random "
        "operands, one group) and exit 1 if any differs from the model (default 0)",
    )
    p.add_argument("--seed", type=int, default=0, help="--rtl-check: sampling seed (default 0)")
    p.add_argument(
        "-o", "--output", default="out/explore", help="output folder (default out/explore)"
    )
    opt.add_json_option(p)
    p.set_defaults(func=cmd_explore)
