"""The ``oasa`` command: parses arguments, calls the packages, prints.

Errors are classified where they are raised (:mod:`oasa.errors`) and mapped to exit codes
in one place, :func:`main`: bad input ends with one line ``oasa: error: ...`` and exit
code 2, a result that disagrees with the golden model with exit code 1, a failed tool with
3, Ctrl-C with 130. Output paths are checked before any work and written atomically.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from oasa import files
from oasa.config import OVERFLOW_MODES, ArrayConfig, ConfigError
from oasa.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    exit_code,
    one_line,
)
from oasa.options import SEED, Parser, UsageError, int_range, positive_float
from oasa.sim.layer import ALL_BACKENDS

__all__ = ["main"]


# -- shared options ------------------------------------------------------------------------


def _array_options(arithmetic: bool = True) -> argparse.ArgumentParser:
    """Array options; without ``arithmetic`` only the shape and buffers (for commands whose
    widths come from a network file)."""
    d = ArrayConfig()
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("array options")
    g.add_argument("--rows", type=int, default=d.rows, help=f"array rows R (default {d.rows})")
    g.add_argument("--cols", type=int, default=d.cols, help=f"array columns C (default {d.cols})")
    if arithmetic:
        _arithmetic_options(g, d)
    b = p.add_argument_group("accelerator buffer options (words)")
    for name, what in (
        ("act", "activation"),
        ("wgt", "weight"),
        ("res", "result"),
        ("param", "parameter"),
    ):
        default = getattr(d, f"{name}_depth")
        b.add_argument(
            f"--{name}-depth",
            type=int,
            default=default,
            help=f"{what} buffer depth (default {default})",
        )
    return p


def _arithmetic_options(g, d: ArrayConfig) -> None:
    g.add_argument(
        "--act-bits", type=int, default=d.act_bits, help=f"activation bits N (default {d.act_bits})"
    )
    g.add_argument(
        "--act-signed", action="store_true", help="signed activations (default unsigned)"
    )
    g.add_argument(
        "--weight-bits",
        type=int,
        default=d.weight_bits,
        help=f"weight bits M (default {d.weight_bits})",
    )
    g.add_argument(
        "--acc-bits",
        type=int,
        default=d.acc_bits,
        help=f"accumulator bits P (default {d.acc_bits})",
    )
    g.add_argument(
        "--overflow",
        choices=OVERFLOW_MODES,
        default=d.overflow,
        help="overflow mode (default wrap)",
    )


def _config(args: argparse.Namespace) -> ArrayConfig:
    return ArrayConfig(
        rows=args.rows,
        cols=args.cols,
        act_bits=args.act_bits,
        act_signed=args.act_signed,
        weight_bits=args.weight_bits,
        acc_bits=args.acc_bits,
        overflow=args.overflow,
        act_depth=args.act_depth,
        wgt_depth=args.wgt_depth,
        res_depth=args.res_depth,
        param_depth=args.param_depth,
    )


def _load_operand(path: str, name: str) -> np.ndarray:
    """An operand of ``oasa sim``: a 2-D, non-empty integer .npy array."""
    a = files.load_npy(path, f"--{name}")
    rows, cols = ("M", "K") if name == "x" else ("K", "N")
    if a.ndim != 2:
        raise UsageError(
            f"--{name} {path}: needs a 2-D array ({rows} x {cols}), got shape {a.shape}"
        )
    if 0 in a.shape:
        raise UsageError(
            f"--{name} {path}: is empty (shape {a.shape}); {rows} and {cols} must be >= 1"
        )
    return a


# -- oasa verilog ------------------------------------------------------------------------------


def cmd_verilog(args: argparse.Namespace) -> int:
    from oasa.hw.accelerator import Accelerator
    from oasa.hw.core import ArrayCore
    from oasa.hw.verilog import check_module_name, component_ports, to_verilog

    cfg = _config(args)
    name = check_module_name(args.name or f"oasa_{args.top}")
    out = files.check_output_path(args.output, "-o")
    top = ArrayCore(cfg) if args.top == "core" else Accelerator(cfg)
    text = to_verilog(top, name)
    with files.atomic_write(out, "w") as f:
        f.write(text)
    print(f"config : {cfg.describe()}")
    if args.top == "core":
        print(f"module : {name} ({top.latency} cycles from a tile's last beat to its first row)")
    else:
        print(
            f"module : {name} (buffers: {cfg.act_depth} activation, {cfg.wgt_depth} weight, "
            f"{cfg.param_depth} parameter, {cfg.res_depth} result words; registers as in README)"
        )
    print("ports  :")
    for port in component_ports(top):
        print(f"  {port.name:<20} {len(port):>5} bits")
    print(f"wrote {out} ({len(text.splitlines())} lines)")
    if args.lint:
        from oasa.sim.backends.verilator_tool import lint

        lint(out, name)
        print("verilator --lint-only: clean")
    return 0


# -- oasa sim ----------------------------------------------------------------------------------


def _random_layer(cfg: ArrayConfig, m: int, k: int, n: int, seed: int):
    from oasa.sim.golden import gemm_memory_bytes

    files.require_memory(gemm_memory_bytes(m, k, n), f"a {m} x {k} x {n} GEMM")
    rng = np.random.default_rng(seed)
    x = rng.integers(cfg.act_min, cfg.act_max + 1, (m, k))
    w = rng.integers(cfg.weight_min, cfg.weight_max + 1, (k, n))
    return x, w


def _report(r, ref) -> None:
    m, n = r.out.shape
    transient = int((r.overflow & ~r.final_overflow).sum())
    final = int(r.final_overflow.sum())
    print(
        f"  {r.backend:<9} cycles {r.cycles:>9,}  utilization {100 * r.utilization:5.1f} %  "
        f"flagged {int(r.overflow.sum()):>6} of {m * n} (transient only {transient}, final {final})"
    )
    if ref is not None:
        from oasa.sim.layer import compare

        compare(r, ref)  # a difference raises MismatchError: exit 1
        print(f"  {r.backend:<9} matches the golden model: results, flags and cycles")


def _prebuild(backend: str, configs: list[ArrayConfig], *, trace: bool) -> None:
    """Build the Verilator models first (each build says so, and how long it took), so
    that build time is not reported as simulation time. A traced run builds the first
    model with tracing."""
    if backend != "verilator":
        return
    from oasa.sim.backends.verilator_build import build_accelerator

    for i, cfg in enumerate(dict.fromkeys(configs)):
        build_accelerator(cfg, trace=trace and i == 0)


def _board_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--port",
        help="board backend: the board's serial port, e.g. /dev/ttyUSB1 (default: none)",
    )
    p.add_argument(
        "--baud",
        type=int_range(1),
        default=115200,
        help="board backend: baud rate (default 115200)",
    )


def _board_config(args: argparse.Namespace) -> ArrayConfig:
    """The configuration of the build on the board at --port (it says so in reply to PING):
    the array options are not needed, and ignored."""
    from oasa.fpga.host import probe

    cfg = probe(args.port, baud=args.baud)
    print(f"the board on {args.port} runs: {cfg.describe()}")
    return cfg


def _board_link(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """--backend board needs --port, and --port needs --backend board. A port that cannot
    be opened or a board of another build is bad input (exit 2), a failure on the link a
    tool failure (exit 3): the errors say so themselves."""

    def wrapped(args: argparse.Namespace) -> int:
        if args.backend == "board" and not args.port:
            raise UsageError(
                "--backend board needs --port (the board's serial port, e.g. /dev/ttyUSB1)"
            )
        if args.port and args.backend != "board":
            raise UsageError(f"--port is for --backend board, not --backend {args.backend}")
        return func(args)

    return wrapped


@_board_link
def cmd_sim(args: argparse.Namespace) -> int:
    from oasa.sim.layer import run_gemm

    if (args.x is None) != (args.w is None):
        raise UsageError("give both --x and --w, or neither (for a random layer)")
    out = files.check_output_path(args.out, "--out") if args.out else None
    vcd = files.check_output_path(args.vcd, "--vcd") if args.vcd else None
    if vcd and args.backend == "model":
        raise UsageError(
            "--vcd needs an RTL backend (amaranth or verilator): the model has no waveform"
        )
    cfg = _config(args) if args.backend != "board" else _board_config(args)
    if args.x is not None:
        x, w = _load_operand(args.x, "x"), _load_operand(args.w, "w")
    else:
        x, w = _random_layer(cfg, args.m, args.k, args.n, args.seed)
    print(f"{cfg.describe()}")
    print(f"GEMM {x.shape[0]} x {x.shape[1]} times {w.shape[0]} x {w.shape[1]} on {args.backend}")
    ref = run_gemm(x, w, cfg=cfg, backend="model")
    _prebuild(args.backend, [cfg], trace=vcd is not None)
    started = time.perf_counter()
    if args.backend == "model":
        r = ref
    else:
        with files.atomic_path(vcd) as vcd_part:
            r = run_gemm(
                x, w, cfg=cfg, backend=args.backend, vcd=vcd_part, port=args.port, baud=args.baud
            )
    _report(r, None if r is ref else ref)
    if r is not ref:
        verb = "ran" if args.backend == "board" else "simulated"  # a board: the link's time
        print(f"  {verb} {r.cycles:,} cycles in {time.perf_counter() - started:.2f} s")
    if out:
        with files.atomic_write(out) as f:
            np.savez(
                f,
                acc=r.out,
                overflow=r.overflow,
                final_overflow=r.final_overflow,
                cycles=np.int64(r.cycles),
            )
        print(f"wrote {out}")
    if vcd:
        print(f"wrote {vcd}")
    return 0


# -- oasa demo ---------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """The end-to-end story, as the commands a user would type."""
    out = files.check_output_dir(args.out_dir, "--out-dir")
    out.mkdir(parents=True, exist_ok=True)
    safe, risky = str(out / "exact_p16.npz"), str(out / "rtn_p12_saturate.npz")
    steps = [
        ("the float digits model (trained once in numpy, then cached)", ["train"]),
        (
            "quantize it overflow-safe for a 16-bit accumulator (method exact)",
            ["quantize", "--method", "exact", "--acc-bits", "16", "-o", safe],
        ),
        ("check its certificate from the integer weights alone", ["check", safe]),
        (
            "run 16 test images on the RTL (Verilator; the first run compiles the accelerator), "
            "every layer checked bit for bit against the golden model",
            ["run", safe, "--images", "16", "--quiet"],
        ),
        (
            "the same network rounded to nearest for a 12-bit saturating accumulator: "
            "not certified, and the hardware flags the overflows",
            [
                "quantize",
                "--method",
                "rtn",
                "--acc-bits",
                "12",
                "--overflow",
                "saturate",
                "-o",
                risky,
            ],
        ),
        (
            "run it on the RTL: flagged outputs counted by the accelerator, checked against the model",
            ["run", risky, "--images", "16", "--quiet"],
        ),
        (
            "a short sweep of accuracy against accumulator width",
            [
                "sweep",
                "--acc-bits",
                "10:14",
                "--methods",
                "rtn,a2q+,exact,oaq",
                "-o",
                str(out / "sweep"),
                "--quiet",
            ],
        ),
        (
            "Verilog of the whole accelerator for an FPGA flow",
            ["verilog", "--top", "accelerator", "-o", str(out / "oasa_accelerator.v")],
        ),
    ]
    started = time.perf_counter()
    for n, (title, argv) in enumerate(steps, 1):
        print(f"\n== {n}/{len(steps)}: {title}\n$ oasa {' '.join(argv)}", flush=True)
        rc = main(argv)
        if rc:
            print(f"oasa demo: step {n} failed (exit {rc})", file=sys.stderr)
            return rc
    print(f"\noasa demo finished in {time.perf_counter() - started:.0f} s; files in {out}/")
    return 0


# -- quantizer commands --------------------------------------------------------------------------
# oasa train / quantize / eval / check.


def _float_params(args: argparse.Namespace):
    from oasa.quant import model

    if getattr(args, "checkpoint", None):
        files.check_input_file(args.checkpoint, "--checkpoint")
        return model.load_params(args.checkpoint), Path(args.checkpoint)
    params, path, trained = model.load_or_train(
        model.Recipe(seed=args.seed), log=lambda m: print(f"  {m}")
    )
    if trained:
        print(f"trained the float model (seed {args.seed}), cached in {path}")
    return params, path


def _print_certificates(net) -> bool:
    from oasa.sim.netfile import check_certificates

    rows = check_certificates(net)
    for r in rows:
        verdict = "safe" if r["safe"] else "CAN OVERFLOW"
        print(
            f"  layer {r['index']} {r['name']:<7} min safe P {r['min_safe_acc_bits']:>2}  "
            f"(runs at P = {r['acc_bits']}: {verdict})"
        )
    return all(r["safe"] for r in rows)


def _print_overflow(result) -> None:
    for r in result.layers:
        if r.overflow is None:
            continue
        n = r.overflow.size
        flagged, final = int(r.overflow.sum()), int(r.final_overflow.sum())
        print(
            f"  layer {r.index} {r.layer.name:<7} {n:>8} dot products: transient overflow "
            f"{(flagged - final) / n:8.4%}, final overflow {final / n:8.4%}"
        )
    c = result.overflow_counts()
    print(
        f"  all layers     {c['total']:>8} dot products: transient overflow "
        f"{c['transient'] / c['total']:8.4%}, final overflow {c['final'] / c['total']:8.4%}"
    )


def cmd_train(args: argparse.Namespace) -> int:
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
    print(f"float test accuracy: {model.accuracy(params, split.x_test, split.y_test):.2f} %")
    if out:
        model.save_params(params, out, recipe)
        print(f"wrote {out}")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from oasa.quant import model, ptq
    from oasa.quant.data import digits_split
    from oasa.sim import netfile, network

    spec = ptq.QuantSpec(
        method=args.method,
        acc_bits=args.acc_bits,
        act_bits=args.act_bits,
        weight_bits=args.weight_bits,
        scales=args.scales,
        overflow=args.overflow,
    )
    out = files.check_output_path(args.output, "-o")
    if args.qat_epochs:
        try:
            from oasa.quant import qat
        except ImportError as e:
            raise UsageError(
                f"--qat-epochs needs torch ({e}): pip install torch==2.13.0 'oasa[train]'"
            ) from None
    params, _ = _float_params(args)
    split = digits_split()
    print(f"float test accuracy: {model.accuracy(params, split.x_test, split.y_test):.2f} %")
    started = time.perf_counter()
    if args.qat_epochs:
        net = qat.train_and_export(params, spec, epochs=args.qat_epochs, seed=args.seed)
        how = f"QAT, {args.qat_epochs} epochs"
    else:
        net = ptq.quantize(params, spec)
        how = "PTQ"
    took = time.perf_counter() - started
    r = network.run_network(net, network.quantize_input(net, split.x_test))
    print(
        f"{spec.method} ({how}, {spec.scale_style} scales), W{spec.weight_bits}A{spec.act_bits}, "
        f"P = {spec.acc_bits}, {spec.overflow}: integer test accuracy "
        f"{r.accuracy(split.y_test):.2f} % ({took:.1f} s)"
    )
    _print_certificates(net)
    print(netfile.certify(net).summary())
    c = r.overflow_counts()
    print(f"test set: {c['flagged']} of {c['total']} dot products overflowed ({c['final']} final)")
    netfile.save(net, out)
    print(f"wrote {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from oasa.quant.data import digits_split
    from oasa.sim import netfile, network

    net = netfile.load(args.net)
    p = args.acc_bits
    try:
        for _, layer in net.weighted:
            layer.config(acc_bits=p, overflow=args.overflow)
    except ConfigError as e:
        raise UsageError(f"--acc-bits / --overflow: {e}") from None
    split = digits_split()
    r = network.run_network(
        net, network.quantize_input(net, split.x_test), acc_bits=p, overflow=args.overflow
    )
    modes = sorted({args.overflow or layer.overflow for _, layer in net.weighted})
    print(f"{args.net}: {net.method}, run in {' / '.join(modes)} mode")
    print(netfile.certify(net, acc_bits=p).summary())
    print(f"integer test accuracy: {r.accuracy(split.y_test):.2f} % ({len(split.y_test)} images)")
    _print_overflow(r)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from oasa.sim import netfile

    net = netfile.load(args.net)
    _print_certificates(net)
    print(f"{args.net}: every certificate matches its integer weights")
    print(netfile.certify(net).summary())
    return 0


# -- network on the accelerator ------------------------------------------------------------


@_board_link
def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from oasa.quant.data import digits_split
    from oasa.sim import netfile, network
    from oasa.sim.netrun import run_network_rtl

    vcd = files.check_output_path(args.vcd, "--vcd") if args.vcd else None
    if vcd and args.backend in ("model", "board"):
        raise UsageError(f"--vcd needs an RTL backend (amaranth or verilator), not {args.backend}")
    net = netfile.load(args.net)
    split = digits_split()
    n = (
        args.images
        if args.images is not None
        else (2 if args.backend == "amaranth" else len(split.y_test))
    )
    if not 1 <= n <= len(split.y_test):
        raise UsageError(f"--images {n}: choose 1..{len(split.y_test)} (the digits test set)")
    array = {
        "rows": args.rows,
        "cols": args.cols,
        "act_depth": args.act_depth,
        "wgt_depth": args.wgt_depth,
        "res_depth": args.res_depth,
        "param_depth": args.param_depth,
    }
    if args.backend == "board":  # the board's build decides the array; the net the widths
        board = _board_config(args)
        array = {k: getattr(board, k) for k in (*array, "bias_bits", "mult_bits", "shift_bits")}
    try:
        configs = [layer.config().replace(**array) for _, layer in net.weighted]
    except ConfigError as e:
        raise UsageError(str(e)) from None
    try:
        x = network.quantize_input(net, split.x_test[:n])
    except ValueError as e:
        raise UsageError(f"{args.net}: {e}") from None
    first = configs[0]
    modes = sorted({layer.overflow for _, layer in net.weighted})
    print(f"{args.net}: {net.method}, {' / '.join(modes)} mode")
    print(netfile.certify(net).summary())
    print(
        f"{n} test images on {args.backend}, {args.batch} per pass, {first.rows}x{first.cols} array"
    )
    print("max-pooling and im2col run on the host; every layer is checked against the golden model")
    _prebuild(args.backend, configs, trace=vcd is not None)
    started = time.perf_counter()
    # disable=None: tqdm draws only on a terminal, so logs and CI stay clean.
    with (
        tqdm(total=n, unit="img", disable=True if args.quiet else None, leave=False) as bar,
        files.atomic_path(vcd) as vcd_part,
    ):
        run = run_network_rtl(
            net,
            x,
            backend=args.backend,
            array=array,
            batch=args.batch,
            vcd=vcd_part,
            progress=lambda done: bar.update(done - bar.n),
            port=args.port,
            baud=args.baud,
        )
    secs = time.perf_counter() - started
    print(f"\n{'layer':<14} {'calls':>6} {'cycles':>11} {'util %':>7} {'flagged':>9} {'of':>9}")
    for s in run.stats:
        if s.kind == "maxpool":
            print(f"{s.index}:{s.name:<12} {'(host)':>6}")
            continue
        print(
            f"{s.index}:{s.name:<12} {s.calls:>6} {s.cycles:>11,} {100 * s.utilization:7.2f} {s.flagged:>9} {s.dot_products:>9}"
        )
    cycles = run.cycles
    util = run.macs / (first.rows * first.cols * cycles)
    acc = run.result.accuracy(split.y_test[:n])
    f = args.clock_mhz * 1e6
    per_image = cycles / n
    batch_cycles = cycles * min(args.batch, n) / n
    print(
        f"\naccuracy {acc:.2f} % on {n} images; predictions, logits and flags equal the golden model's"
    )
    print(f"total {cycles:,} cycles, {per_image:,.0f} per image, utilization {100 * util:.2f} %")
    print(
        f"at {args.clock_mhz:g} MHz: {f / per_image:,.0f} images/s, "
        f"latency {1e6 * batch_cycles / f:,.1f} us per pass of {min(args.batch, n)} images"
    )
    if args.backend == "board":
        print(f"ran on the board in {secs:.1f} s, serial link included")
    elif args.backend != "model":
        print(f"simulated in {secs:.1f} s ({cycles / secs:,.0f} accelerator cycles/s)")
    if vcd:
        print(f"wrote {vcd} (the first accelerator model's run)")
    return 0


# -- the accumulator-width sweep ------------------------------------------------------------


def cmd_sweep(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from oasa.quant import model, sweep
    from oasa.quant.data import digits_split
    from oasa.quant.methods import METHODS

    try:
        widths = sweep.parse_acc_bits(args.acc_bits)
    except ValueError as e:
        raise UsageError(str(e)) from None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    modes = [m.strip() for m in args.overflow.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise UsageError(f"--methods: unknown method {m!r}: choose from {', '.join(METHODS)}")
    for m in modes:
        if m not in OVERFLOW_MODES:
            raise UsageError(
                f"--overflow: unknown mode {m!r}: choose from {', '.join(OVERFLOW_MODES)}"
            )
    if not methods or not modes:
        raise UsageError("--methods and --overflow need at least one value each")
    for p in widths:
        try:
            ArrayConfig(acc_bits=p)
        except ConfigError as e:
            raise UsageError(f"--acc-bits: {e}") from None
    if args.qat_epochs:
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise UsageError(
                f"--qat-epochs needs torch ({e}): pip install torch==2.13.0 'oasa[train]'"
            ) from None
    out = files.check_output_dir(args.output, "-o")
    points = sweep.plan(methods, widths, modes, qat_epochs=args.qat_epochs, scales=args.scales)
    params, _, _ = model.load_or_train(model.Recipe(), log=lambda m: print(f"  {m}"))
    split = digits_split()
    float_acc = model.accuracy(params, split.x_test, split.y_test)
    how = f"QAT {args.qat_epochs} epochs" if args.qat_epochs else "PTQ"
    print(
        f"sweep: {len(methods)} methods x {len(widths)} widths x {len(modes)} modes = {len(points)} points ({how}, {args.jobs} jobs) -> {out}"
    )
    started = time.perf_counter()
    with tqdm(
        total=len(points), unit="pt", disable=True if args.quiet else None, leave=False
    ) as bar:
        try:
            rows, computed = sweep.run_sweep(
                points, out, jobs=args.jobs, progress=lambda done, total: bar.update(done - bar.n)
            )
        except KeyboardInterrupt:
            bar.close()
            saved = len(sweep.load_cache(out))
            print(
                f"oasa: interrupted: {saved} finished points are saved in {out / sweep.CACHE_FILE}; "
                "run the same command again to compute only the rest",
                file=sys.stderr,
            )
            return 130
    secs = time.perf_counter() - started
    print(f"{computed} points computed in {secs:.1f} s, {len(points) - computed} from the cache")
    print(f"float accuracy {float_acc:.2f} %\n")
    print(sweep.table(rows))
    skipped = [r for r in rows if r.get("status") != "ok"]
    if skipped:
        print(
            f"{len(skipped)} points not applicable, e.g. {skipped[0]['method']} at P = {skipped[0]['acc_bits']}: {skipped[0]['note']}"
        )
    checks = []
    if args.rtl_check:
        checks = _sweep_rtl_check(sweep.spread_sample(rows, args.rtl_check), args.rtl_images)
    paths = sweep.write_outputs(rows, out, float_accuracy=float_acc, extra={"rtl_checks": checks})
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0 if all(c["status"] == "ok" for c in checks) else 1


def _sweep_rtl_check(rows: list[dict], images: int) -> list[dict]:
    """Re-quantize a few points and run them on the Verilator backend: predictions,
    logits and every layer's outputs and flags must equal the golden model's."""
    from oasa.quant import model, ptq
    from oasa.quant.data import digits_split
    from oasa.sim import network
    from oasa.sim.netrun import LayerMismatch, run_network_rtl

    params, _, _ = model.load_or_train(model.Recipe())
    split = digits_split()
    checks = []
    print(f"\nRTL check: {len(rows)} points on Verilator, {images} test images each")
    for row in rows:
        spec = ptq.QuantSpec(method=row["method"], acc_bits=row["acc_bits"], scales=row["scales"])
        net = ptq.quantize(params, spec)
        x = network.quantize_input(net, split.x_test[:images])
        label = f"{row['method']} P={row['acc_bits']} {row['overflow']}"
        try:
            run = run_network_rtl(net, x, backend="verilator", array={"overflow": row["overflow"]})
            ref = network.run_network(net, x, overflow=row["overflow"])
            same = np.array_equal(run.result.predictions, ref.predictions) and np.array_equal(
                run.result.logits, ref.logits
            )
            status = "ok" if same else "predictions or logits differ"
        except LayerMismatch as e:
            status = str(e)
        print(
            f"  {label:<28} {status} ({run.cycles:,} cycles)"
            if status == "ok"
            else f"  {label:<28} MISMATCH: {status}"
        )
        checks.append(
            {
                "method": row["method"],
                "acc_bits": row["acc_bits"],
                "overflow": row["overflow"],
                "images": images,
                "status": status,
            }
        )
    return checks


def _add_quant_commands(sub) -> None:
    from oasa.quant.methods import METHODS
    from oasa.quant.ptq import SCALE_STYLES

    d = ArrayConfig()
    p = sub.add_parser("train", help="train (or load the cached) float digits model")
    p.add_argument("--seed", type=SEED, default=0, help="training seed (default 0)")
    p.add_argument("--epochs", type=int_range(1, 10_000), default=20, help="epochs (default 20)")
    p.add_argument("--retrain", action="store_true", help="ignore the cached checkpoint")
    p.add_argument(
        "-o",
        "--output",
        help="also write the float checkpoint here (.npz; default: only the cache)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("quantize", help="quantize the digits network and export it (.npz)")
    p.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    p.add_argument("--acc-bits", type=int, default=d.acc_bits, help="accumulator bits P")
    p.add_argument("--act-bits", type=int, default=d.act_bits, help="activation bits N")
    p.add_argument("--weight-bits", type=int, default=d.weight_bits, help="weight bits M")
    p.add_argument("--scales", choices=SCALE_STYLES, default="dyadic", help="requantization style")
    p.add_argument("--overflow", choices=OVERFLOW_MODES, default=d.overflow)
    p.add_argument(
        "--qat-epochs", type=int_range(0, 10_000), default=0, help="QAT epochs (needs torch)"
    )
    p.add_argument("--seed", type=SEED, default=0, help="seed of float training and QAT")
    p.add_argument("--checkpoint", help="float checkpoint (default: the cached one)")
    p.add_argument("-o", "--output", required=True, help="network file to write (.npz)")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("eval", help="integer accuracy and overflow of a network file")
    p.add_argument("net", help="network file (.npz)")
    p.add_argument(
        "--acc-bits", type=int, help="run every layer at this P (default: each layer's own)"
    )
    p.add_argument(
        "--overflow", choices=OVERFLOW_MODES, help="run in this mode (default: each layer's own)"
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("check", help="recompute and verify every certificate of a network file")
    p.add_argument("net", help="network file (.npz)")
    p.set_defaults(func=cmd_check)


# -- end of quantizer commands --------------------------------------------------------------------

# -- formal commands ------------------------------------------------------------------------
# oasa prove: the formal proofs of hw/formal (issue 9) for one configuration.


def cmd_prove(args: argparse.Namespace) -> int:
    from oasa.hw.formal import PROPERTIES, FormalToolError, applicable, prove_config

    cfg = _config(args)
    props = [p.name for p in applicable(cfg)]
    if args.only:
        skipped = [n for n in args.only if n not in props]
        if skipped:
            raise UsageError(
                f"--only {skipped[0]}: does not apply to overflow={cfg.overflow!r} "
                f"(applicable: {', '.join(props)})"
            )
        props = [n for n in props if n in args.only]
    lanes = list(range(cfg.cols)) if args.lane is None else sorted(set(args.lane))
    for j in lanes:
        if not 0 <= j < cfg.cols:
            raise UsageError(f"--lane {j}: out of range, the array has lanes 0..{cfg.cols - 1}")
    work = files.check_output_dir(args.work_dir, "--work-dir")
    print(f"config : {cfg.describe()} ({cfg.name})")
    print("proving by k-induction with yowasp-sby and z3, one property at a time")
    print(f"{'property':<22} {'result':<8} {'depth':>5} {'time':>9}  statement")

    def show(r) -> None:
        print(
            f"{r.name:<22} {r.status:<8} {r.depth:>5} {r.seconds:>7.1f} s  "
            f"{PROPERTIES[r.property].summary}",
            flush=True,
        )
        if not r.passed:
            for what in r.failed:
                print(f"  failed: {what}" + (f" (step {r.step})" if r.step is not None else ""))
            if r.trace is not None:
                print(f"  counterexample: {r.trace}")
            print(f"  log: {r.work_dir / 'sby.log'}")

    started = time.perf_counter()
    try:
        results = prove_config(
            cfg, work_dir=work, properties=props, lanes=lanes, timeout=args.timeout, progress=show
        )
    except FormalToolError as e:
        print(f"oasa: {e}", file=sys.stderr)
        return 1
    failed = sum(not r.passed for r in results)
    verdict = "all proved" if not failed else f"{failed} of {len(results)} NOT proved"
    print(f"{verdict} in {time.perf_counter() - started:.1f} s (work files in {work / cfg.name})")
    return 1 if failed else 0


def _add_formal_commands(sub, array: argparse.ArgumentParser) -> None:
    from oasa.hw.formal.run import DEFAULT_TIMEOUT, PROPERTIES

    p = sub.add_parser(
        "prove",
        parents=[array],
        help="prove the PE, output stage and array skew formally (needs oasa[formal])",
        description="Prove the properties of issue 9 for one configuration by k-induction "
        "(yowasp-sby, z3) and print property, result and time. Exit 1 if any is not proved.",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=list(PROPERTIES),
        help="prove only this property (repeatable; default: all that apply)",
    )
    p.add_argument(
        "--lane",
        action="append",
        type=int_range(0),
        help="output stage: prove only this lane (repeatable; default: every lane)",
    )
    p.add_argument("--work-dir", default="build/formal", help="work files (default build/formal)")
    p.add_argument(
        "--timeout",
        type=int_range(1),
        default=DEFAULT_TIMEOUT,
        help=f"seconds per proof (default {DEFAULT_TIMEOUT})",
    )
    p.set_defaults(func=cmd_prove)


# -- end of formal commands -----------------------------------------------------------------


# -- entry point -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from oasa import __version__

    parser = Parser(
        prog="oasa",
        description="Overflow-Aware Systolic Array: RTL, golden model, quantizer.",
        epilog="exit codes: 0 ok, 1 verification failed, 2 bad input, 3 a tool or link "
        "failed, 130 interrupted, 141 broken pipe",
    )
    parser.add_argument("--version", action="version", version=f"oasa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    array = _array_options()
    array_shape = _array_options(arithmetic=False)

    p = sub.add_parser(
        "verilog", parents=[array], help="write Verilog of the array and output stage"
    )
    p.add_argument("-o", "--output", required=True, help="Verilog file to write")
    p.add_argument(
        "--top",
        choices=("core", "accelerator"),
        default="core",
        help="core: the array and output stage (streams in, rows out); accelerator: "
        "buffers, sequencer and registers around it (default core)",
    )
    p.add_argument("--name", help="top module name (default oasa_core / oasa_accelerator)")
    p.add_argument("--lint", action="store_true", help="also run verilator --lint-only on it")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("sim", parents=[array], help="run one GEMM on the model or the RTL")
    p.add_argument("--x", help="activations X (M x K) as .npy (default: a random layer)")
    p.add_argument("--w", help="weights W (K x N) as .npy (default: a random layer)")
    p.add_argument("--m", type=int_range(1), default=16, help="random layer: M (default 16)")
    p.add_argument("--k", type=int_range(1), default=64, help="random layer: K (default 64)")
    p.add_argument("--n", type=int_range(1), default=16, help="random layer: N (default 16)")
    p.add_argument("--seed", type=SEED, default=0, help="random layer: seed (default 0)")
    p.add_argument(
        "--backend",
        choices=ALL_BACKENDS,
        default="model",
        help="model (golden model, cycles predicted), amaranth or verilator (the RTL), "
        "board (a board over its UART, with --port)",
    )
    _board_options(p)
    p.add_argument(
        "--out", help="write acc, overflow, final_overflow, cycles to this .npz (default: none)"
    )
    p.add_argument("--vcd", help="write a waveform (RTL backends; default: none)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("demo", help="a short showing of oasa end to end")
    p.add_argument("--out-dir", default="out/demo", help="where to write files (default out/demo)")
    p.set_defaults(func=cmd_demo)

    _add_quant_commands(sub)

    p = sub.add_parser(
        "run", parents=[array_shape], help="run a network file on the accelerator, cycle-accurately"
    )
    p.add_argument("net", help="network file (.npz) from oasa quantize")
    p.add_argument(
        "--backend",
        choices=ALL_BACKENDS,
        default="verilator",
        help="default verilator; board: a board over its UART, with --port",
    )
    _board_options(p)
    p.add_argument(
        "--images",
        type=int_range(1),
        help="test images to classify (default all 540; 2 on amaranth)",
    )
    p.add_argument(
        "--batch", type=int_range(1), default=8, help="images per pass (default 8: fills 8 rows)"
    )
    p.add_argument(
        "--vcd", help="write a waveform of the RTL run (keep --images small; default: none)"
    )
    p.add_argument(
        "--clock-mhz",
        type=positive_float,
        default=100.0,
        help="clock for throughput (default 100)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

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
        type=int_range(0, 10_000),
        default=0,
        help="QAT epochs per point (default 0: PTQ)",
    )
    p.add_argument(
        "--scales", choices=("dyadic", "pow2"), default="dyadic", help="requantization style"
    )
    p.add_argument(
        "--jobs",
        type=int_range(1, 1024),
        default=os.cpu_count() or 1,
        help="parallel processes (default all cores)",
    )
    p.add_argument(
        "-o",
        "--output",
        default="out/sweep",
        help="output folder, also the cache (default out/sweep)",
    )
    p.add_argument(
        "--rtl-check",
        type=int_range(0),
        default=0,
        metavar="K",
        help="run K points on the Verilator backend too",
    )
    p.add_argument(
        "--rtl-images", type=int_range(1), default=16, help="test images per RTL check (default 16)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    _add_formal_commands(sub, array)  # oasa prove (see "formal commands" above)

    from oasa.fpga.cli import add_fpga_commands

    add_fpga_commands(sub)  # oasa fpga build | sweep | pareto
    return parser


def _report_error(error: BaseException) -> int:
    """Print ``error`` the way its exit code asks, and return that code."""
    code = exit_code(error)
    if code == EXIT_INTERRUPTED:
        print("oasa: interrupted", file=sys.stderr)
    elif code == EXIT_BROKEN_PIPE:
        # The reader went away (e.g. `oasa eval net.npz | head`): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    elif code == EXIT_INPUT:
        print(f"oasa: error: {one_line(error)}", file=sys.stderr)
    elif code == EXIT_INTERNAL:
        traceback.print_exc()
        print(
            f"oasa: internal error ({type(error).__name__}): a bug in oasa; please report "
            "it with the traceback above",
            file=sys.stderr,
        )
    else:
        print(f"oasa: {one_line(error)}", file=sys.stderr)
    return code


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a message comes (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


def _show_info_messages() -> None:
    """oasa's progress notes (a Verilator build starting, and how long it took) go to
    stderr, so that they never mix with a command's results."""
    log = logging.getLogger("oasa")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("oasa: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``oasa`` command with ``argv``; return its exit code (see
    :mod:`oasa.errors`)."""
    _show_info_messages()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else EXIT_INPUT
    except (Exception, KeyboardInterrupt) as e:  # every error ends here, as an exit code
        return _report_error(e)


if __name__ == "__main__":
    sys.exit(main())
