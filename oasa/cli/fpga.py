"""``oasa fpga build | sweep | pareto``: bitstreams, resource sweeps, accuracy against
cost."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from oasa import files
from oasa.cli import options as opt
from oasa.cli.common import Report
from oasa.errors import EXIT_INTERRUPTED, InputError

__all__ = ["register"]

#: Where each kind of output-stage multiplier puts the product (for the build banner).
_WHERE = {"lut": "LUTs", "dsp": "DSPs", "dsp-regs": "DSPs, registered inside the block"}


class FPGAUsageError(InputError):
    """Bad input to an fpga command: one line, exit 2."""


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            r, c = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise FPGAUsageError(f"--sizes {text!r}: give sizes as RxC, e.g. 4x4,8x8") from None
        sizes.append((r, c))
    return sizes


def cmd_build(args: argparse.Namespace) -> Report:
    from oasa.fpga.boards import board_config, get_board
    from oasa.fpga.build import build_board

    board = get_board(args.board)
    fields = opt.config_fields("shape", "arithmetic", "buffers")
    array = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    rows, cols = board.array_for(array.get("dataflow", board.defaults.get("dataflow", "os")))
    array.setdefault("rows", rows)
    array.setdefault("cols", cols)
    cfg = board_config(board, **array)
    flow = "_ws" if cfg.dataflow == "ws" else ""
    default_out = f"build/{board.name}_{cfg.rows}x{cfg.cols}_p{cfg.acc_bits}{flow}"
    out = files.check_output_dir(args.output or default_out, "-o")
    f_clk = args.clock * 1e6 if args.clock else None
    pll = board.pll(f_clk or board.f_target)  # an unreachable clock fails here, before any work
    print(f"board  : {board.name} ({board.part}), clock {pll.f_out / 1e6:g} MHz from the PLL")
    print(
        f"config : {cfg.describe()}, PE products in {args.multiplier.upper()}s, output-stage"
        f" products in {_WHERE[board.stage_multiplier]}, UART {args.baud} baud"
    )
    print(f"running yosys and nextpnr (yowasp) in {out} ...", flush=True)
    started = time.perf_counter()
    report = build_board(
        board, cfg, out, f_clk=f_clk, baud=args.baud, seed=args.seed,
        program=args.program, multiplier=args.multiplier,
    )  # fmt: skip
    print(report.table())
    print(
        f"bitstream {report.bitstream}, report {out / 'report.json'} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return {
        "ok": report.timing_met,
        "board": board.name,
        "config": cfg.to_dict(),
        "multiplier": args.multiplier,
        "report": report.to_json(),
        "output": str(out),
    }


def cmd_sweep(args: argparse.Namespace) -> Report | int:
    from oasa.fpga.sweep import grid_points, run_sweep, summarize, table, write_outputs
    from oasa.quant.sweep import parse_acc_bits

    boards = args.boards.split(",")
    sizes = _parse_sizes(args.sizes) if args.sizes else None
    try:
        widths = parse_acc_bits(args.acc_bits) if args.acc_bits else None
    except ValueError as e:
        raise FPGAUsageError(str(e)) from None
    points = grid_points(boards, sizes, widths, args.multiplier, args.dataflow)
    where = opt.where_from_args(args, default_jobs=1)
    out = files.check_output_dir(args.output, "-o")
    print(
        f"fpga sweep: {len(points)} builds on {where.describe()} -> {out} "
        "(finished builds come from the cache)"
    )

    def progress(point, rec, i, n):
        what = "fits" if rec["fits"] else "does not fit"
        if rec.get("status") == "failed":
            what = f"FAILED ({rec['error']})"
        print(
            f"  [{i}/{n}] {point.board} {point.rows}x{point.cols} {point.dataflow} "
            f"P={point.acc_bits}: {what}",
            flush=True,
        )

    try:
        records = run_sweep(points, out, seed=args.seed, progress=progress, where=where)
    except KeyboardInterrupt:
        print(
            f"oasa: interrupted: finished builds are saved in {out}/builds.jsonl; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(table(records))
    for name, s in summarize(records).items():
        big = s["largest_p16"]
        if big:
            print(
                f"{name}: largest array at P=16 with timing met: {big['rows']}x{big['cols']} "
                f"({big['lut']:,} LUT/LC, {big['fmax_mhz']:.1f} MHz)"
            )
    paths = write_outputs(records, out)
    print("wrote " + ", ".join(str(p) for p in paths))
    failed = [r for r in records if r.get("status") == "failed"]
    if failed:
        print(
            f"{len(failed)} builds FAILED (a re-run builds them again), e.g. "
            f"{failed[0]['key']}: {failed[0]['error']}",
            file=sys.stderr,
        )
    return {"ok": not failed, "builds": records, "outputs": [str(p) for p in paths]}


def cmd_pareto(args: argparse.Namespace) -> Report:
    from oasa.fpga.pareto import array_luts, join, pareto_front, read_accuracy, write_pareto

    out = files.check_output_dir(args.output, "-o")
    rows = read_accuracy(args.accuracy)
    if args.method:
        rows = [r for r in rows if r["method"] in args.method.split(",")]
    if not rows:
        raise FPGAUsageError(f"--method {args.method}: no such method in {args.accuracy}")
    widths = sorted({int(r["acc_bits"]) for r in rows})
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"array LUTs for P = {widths[0]}..{widths[-1]} ({args.family}, {args.rows}x{args.cols}, "
        "Yosys synthesis, cached) ...",
        flush=True,
    )
    luts = array_luts(
        widths, family=args.family, rows=args.rows, cols=args.cols, cache=out / "array_luts.json"
    )
    points = pareto_front(join(rows, luts))
    for attr, what in (("on_front", "all points"), ("on_certified_front", "certified only")):
        front = sorted((p for p in points if getattr(p, attr)), key=lambda p: p.luts)
        print(f"Pareto front, {what} (the most accurate point at each cost):")
        for p in front:
            cert = "certified" if p.certified else "not certified"
            print(
                f"  P={p.acc_bits:<3} {p.luts:>7,} LUTs  {p.accuracy:5.1f} %  {p.method} {p.overflow} ({cert})"
            )
    float_acc = None
    meta = Path(args.accuracy).with_name("points.json")
    with contextlib.suppress(OSError, ValueError, AttributeError):  # only a plot label
        float_acc = json.loads(meta.read_text()).get("float_accuracy")
    paths = write_pareto(
        points,
        out,
        title=f"digits W4A4: accuracy vs {args.family} LUTs of a {args.rows}x{args.cols} array",
        float_accuracy=float_acc,
    )
    print("wrote " + ", ".join(str(p) for p in paths))
    return {"points": [asdict(p) for p in points], "outputs": [str(p) for p in paths]}


def register(sub) -> None:
    from oasa.config import DATAFLOWS
    from oasa.fpga.boards import BOARDS
    from oasa.fpga.multipliers import MULTIPLIERS

    fpga = sub.add_parser("fpga", help="FPGA bitstreams, resource sweeps, accuracy vs cost")
    fsub = fpga.add_subparsers(dest="fpga_command", required=True, metavar="FPGA_COMMAND")

    p = fsub.add_parser("build", help="bitstream and resource/Fmax report for one board")
    p.add_argument("--board", required=True, choices=list(BOARDS))
    opt.add_config_options(p, defaults=None, default_note="the board's")
    p.add_argument(
        "--multiplier",
        choices=MULTIPLIERS,
        default="lut",
        help="PE products in LUTs (default) or inferred, for DSP blocks",
    )
    p.add_argument(
        "--clock", type=opt.positive_float, help="clock target in MHz (default: the board's)"
    )
    p.add_argument(
        "--baud", type=opt.int_range(1), default=115200, help="UART baud rate (default 115200)"
    )
    p.add_argument(
        "--seed",
        type=opt.int_range(0, 2**31 - 1),
        default=1,
        help="nextpnr placement seed (default 1)",
    )
    p.add_argument(
        "-o",
        "--output",
        help="build folder (default build/BOARD_RxC_pP, with _ws for weight-stationary)",
    )
    p.add_argument("--program", action="store_true", help="program the attached board")
    opt.add_json_option(p)
    p.set_defaults(func=cmd_build)

    p = fsub.add_parser("sweep", help="resources and Fmax over array sizes and accumulator widths")
    p.add_argument("--boards", default=",".join(BOARDS), help="comma-separated (default both)")
    p.add_argument("--sizes", help="array sizes, e.g. 4x4,8x8 (default: per board)")
    p.add_argument("--acc-bits", help="widths, e.g. 12,16,24,32 (default 12,16,24,32)")
    p.add_argument("--multiplier", choices=MULTIPLIERS, default="lut", help="default lut")
    p.add_argument("--dataflow", choices=DATAFLOWS, default="os", help="default os")
    p.add_argument(
        "--seed",
        type=opt.int_range(0, 2**31 - 1),
        default=1,
        help="nextpnr placement seed (default 1)",
    )
    p.add_argument(
        "-o", "--output", default="out/fpga-sweep", help="folder and cache (default out/fpga-sweep)"
    )
    opt.add_where_options(p, jobs_help="builds at once on this machine (default 1)")
    opt.add_json_option(p)
    p.set_defaults(func=cmd_sweep)

    p = fsub.add_parser("pareto", help="accuracy of each quantizer against the array's LUTs")
    p.add_argument(
        "--accuracy",
        default="out/sweep/points.csv",
        help="points.csv of `oasa sweep` (default out/sweep/points.csv)",
    )
    p.add_argument("--family", choices=("ecp5", "ice40"), default="ecp5", help="default ecp5")
    opt.add_config_options(p, ("shape",))
    p.add_argument("--method", help="only these methods, comma-separated (default: all)")
    p.add_argument("-o", "--output", default="out/fpga-pareto", help="default out/fpga-pareto")
    opt.add_json_option(p)
    p.set_defaults(func=cmd_pareto)
