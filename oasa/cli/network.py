"""``oasa run``: a network file on the accelerator, cycle-accurately, checked layer by
layer against the golden model."""

from __future__ import annotations

import argparse
import time

from oasa import files
from oasa.cli import options as opt
from oasa.cli.common import Report, add_board_options, board_config, board_link, prebuild
from oasa.cli.quantizer import add_data_option

__all__ = ["DEFAULT_IMAGES", "register"]

# Test images per backend when --images is not given: the model is instant, the RTL
# simulators take about a second per image of the digits network (amaranth: minutes).
DEFAULT_IMAGES = {"model": 100_000, "amaranth": 2, "rtl": 64}


@board_link
def cmd_run(args: argparse.Namespace) -> Report:
    from tqdm import tqdm

    from oasa.cli.quantizer import test_data
    from oasa.sim import certificates, netfile, network
    from oasa.sim.backends import get_backend
    from oasa.sim.netrun import run_network_rtl

    backend = get_backend(args.backend)
    vcd = files.check_output_path(args.vcd, "--vcd") if args.vcd else None
    if vcd and not backend.waveform:
        raise opt.UsageError(
            f"--vcd needs an RTL backend (amaranth or verilator), not {args.backend}"
        )
    net = netfile.load(args.net)
    x_test, y_test, source = test_data(args, net)
    default = DEFAULT_IMAGES.get(args.backend, DEFAULT_IMAGES["rtl"])
    n = args.images if args.images is not None else min(default, len(y_test))
    if not 1 <= n <= len(y_test):
        raise opt.UsageError(f"--images {n}: choose 1..{len(y_test)} ({source})")
    array = {k: getattr(args, k) for k in opt.config_fields("shape", "buffers")}
    if backend.needs_port:  # the board's build decides the array; the net the widths
        board = board_config(args)
        array = {k: getattr(board, k) for k in opt.config_fields("shape", "buffers", "stage")}
        for i, layer in net.weighted:
            if layer.cfg.to_dict("arithmetic") != board.to_dict("arithmetic"):
                raise opt.UsageError(
                    f"layer {i} ({layer.label}) needs {layer.cfg.describe_arithmetic()}, but the "
                    f"board runs {board.describe_arithmetic()}: build one for it, or run "
                    "this network on a simulator (one accelerator per layer configuration)"
                )
    configs = [layer.cfg.replace(**array) for _, layer in net.weighted]
    x = network.quantize_input(net, x_test[:n])
    first = configs[0]
    modes = sorted({layer.overflow for _, layer in net.weighted})
    certification = certificates.certify(net)
    print(f"{args.net}: {net.method}, {' / '.join(modes)} mode")
    print(certification.summary())
    print(
        f"{n} test images on {args.backend}, {args.batch} per pass, {first.rows}x{first.cols} array"
    )
    print(
        "im2col, pooling and residual adds run on the host; every layer is checked against the golden model"
    )
    prebuild(args.backend, configs, trace=vcd is not None)
    started = time.perf_counter()
    # disable=None: tqdm draws only on a terminal, so logs and CI stay clean.
    with (
        tqdm(total=n, unit="img", disable=True if args.quiet else None, leave=False) as bar,
        files.atomic_path(vcd) as vcd_part,
    ):
        run = run_network_rtl(
            net, x, backend=args.backend, overrides=array, batch=args.batch, vcd=vcd_part,
            progress=lambda done: bar.update(done - bar.n), port=args.port, baud=args.baud,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    print(f"\n{'layer':<14} {'calls':>6} {'cycles':>11} {'util %':>7} {'flagged':>9} {'of':>9}")
    for s in run.stats:
        if s.kind not in ("conv2d", "dense"):
            print(f"{s.index}:{s.name:<12} {'(host ' + s.kind + ')':>6}")
            continue
        print(
            f"{s.index}:{s.name:<12} {s.calls:>6} {s.cycles:>11,} {100 * s.utilization:7.2f} "
            f"{s.flagged:>9} {s.dot_products:>9}"
        )
    accuracy = run.result.accuracy(y_test[:n])
    speed = run.throughput(args.clock_mhz * 1e6, args.batch)
    print(
        f"\naccuracy {accuracy:.2f} % on {n} images; predictions, logits and flags equal the "
        "golden model's"
    )
    print(
        f"total {run.cycles:,} cycles, {speed.cycles_per_image:,.0f} per image, "
        f"utilization {100 * run.utilization:.2f} %"
    )
    print(
        f"at {args.clock_mhz:g} MHz: {speed.images_per_second:,.0f} images/s, "
        f"latency {1e6 * speed.latency_s:,.1f} us per pass of {speed.batch} images"
    )
    if backend.needs_port:
        print(f"ran on the board in {seconds:.1f} s, serial link included")
    elif args.backend != "model":
        print(f"simulated in {seconds:.1f} s ({run.cycles / seconds:,.0f} accelerator cycles/s)")
    if vcd:
        print(f"wrote {vcd} (the first accelerator model's run)")
    return {
        "net": args.net,
        "method": net.method,
        "backend": args.backend,
        "array": {"rows": first.rows, "cols": first.cols},
        "images": n,
        "batch": args.batch,
        "accuracy": accuracy,
        "checked_against_model": True,
        "certification": certification.to_dict(),
        "cycles": run.cycles,
        "cycles_per_image": speed.cycles_per_image,
        "utilization": run.utilization,
        "clock_mhz": args.clock_mhz,
        "images_per_second": speed.images_per_second,
        "latency_us": 1e6 * speed.latency_s,
        "seconds": seconds,
        "layers": [
            {
                "index": s.index,
                "name": s.name,
                "kind": s.kind,
                "calls": s.calls,
                "cycles": s.cycles,
                "utilization": s.utilization,
                "flagged": s.flagged,
                "dot_products": s.dot_products,
                "groups_per_pack": s.groups_per_pack,
            }
            for s in run.stats
        ],
        "vcd": str(vcd) if vcd else None,
    }


def register(sub) -> None:
    from oasa.sim.backends import backend_names

    p = sub.add_parser("run", help="run a network file on the accelerator, cycle-accurately")
    p.add_argument("net", help="network file (.npz) from oasa quantize or oasa import")
    opt.add_config_options(p, ("shape", "buffers"))
    p.add_argument(
        "--backend",
        choices=backend_names(),
        default="verilator",
        help="default verilator; board: a board over its UART, with --port",
    )
    add_board_options(p)
    add_data_option(p, "its test part")
    p.add_argument(
        "--images",
        type=opt.int_range(1),
        help="test images to classify (default: all on model, 64 on verilator and board, 2 on amaranth)",
    )
    p.add_argument(
        "--batch",
        type=opt.int_range(1),
        default=8,
        help="images per pass (default 8: fills 8 rows)",
    )
    p.add_argument(
        "--vcd", help="write a waveform of the RTL run (keep --images small; default: none)"
    )
    p.add_argument(
        "--clock-mhz",
        type=opt.positive_float,
        default=100.0,
        help="clock for throughput (default 100)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    opt.add_json_option(p)
    p.set_defaults(func=cmd_run)
