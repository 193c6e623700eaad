"""``oasa verilog`` and ``oasa sim``: the gateware as Verilog, and one GEMM on a backend."""

from __future__ import annotations

import argparse
import time

import numpy as np

from oasa import files
from oasa.cli import options as opt
from oasa.cli.common import Report, add_board_options, board_config, board_link, prebuild
from oasa.config import ArrayConfig

__all__ = ["register"]


def cmd_verilog(args: argparse.Namespace) -> Report:
    from oasa.hw.accelerator import Accelerator
    from oasa.hw.core import ArrayCore
    from oasa.hw.verilog import check_module_name, component_ports, to_verilog

    cfg = opt.config_from_args(args)
    args.top = args.top or ("accelerator" if cfg.dataflow == "ws" else "core")
    if args.top == "core" and cfg.dataflow == "ws":
        raise opt.UsageError(
            "--top core is the output-stationary array and output stage; for the "
            "weight-stationary array use --top accelerator"
        )
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
            f"{cfg.param_depth} parameter, {cfg.res_depth} result words; registers in "
            "docs/architecture.md)"
        )
    ports = [{"name": port.name, "bits": len(port)} for port in component_ports(top)]
    print("ports  :")
    for port in ports:
        print(f"  {port['name']:<20} {port['bits']:>5} bits")
    lines = len(text.splitlines())
    print(f"wrote {out} ({lines} lines)")
    if args.lint:
        from oasa.sim.backends.verilator_tool import lint

        lint(out, name)
        print("verilator --lint-only: clean")
    return {
        "config": cfg.to_dict(),
        "top": args.top,
        "module": name,
        "ports": ports,
        "output": str(out),
        "lines": lines,
        "linted": bool(args.lint),
    }


def _load_operand(path: str, name: str) -> np.ndarray:
    """An operand of ``oasa sim``: a 2-D, non-empty integer .npy array."""
    a = files.load_npy(path, f"--{name}")
    rows, cols = ("M", "K") if name == "x" else ("K", "N")
    if a.ndim != 2:
        raise opt.UsageError(
            f"--{name} {path}: needs a 2-D array ({rows} x {cols}), got shape {a.shape}"
        )
    if 0 in a.shape:
        raise opt.UsageError(
            f"--{name} {path}: is empty (shape {a.shape}); {rows} and {cols} must be >= 1"
        )
    return a


def _random_layer(cfg: ArrayConfig, m: int, k: int, n: int, seed: int):
    from oasa.sim.golden import gemm_memory_bytes

    files.require_memory(gemm_memory_bytes(m, k, n), f"a {m} x {k} x {n} GEMM")
    rng = np.random.default_rng(seed)
    x = rng.integers(cfg.act_min, cfg.act_max + 1, (m, k))
    w = rng.integers(cfg.weight_min, cfg.weight_max + 1, (k, n))
    return x, w


@board_link
def cmd_sim(args: argparse.Namespace) -> Report:
    from oasa.sim.backends import get_backend
    from oasa.sim.layer import compare, run_gemm

    if (args.x is None) != (args.w is None):
        raise opt.UsageError("give both --x and --w, or neither (for a random layer)")
    out = files.check_output_path(args.out, "--out") if args.out else None
    vcd = files.check_output_path(args.vcd, "--vcd") if args.vcd else None
    backend = get_backend(args.backend)
    if vcd and not backend.waveform:
        raise opt.UsageError(
            f"--vcd needs an RTL backend (amaranth or verilator): {args.backend} has no waveform"
        )
    cfg = board_config(args) if backend.needs_port else opt.config_from_args(args)
    if args.x is not None:
        x, w = _load_operand(args.x, "x"), _load_operand(args.w, "w")
    else:
        x, w = _random_layer(cfg, args.m, args.k, args.n, args.seed)
    print(f"{cfg.describe()}")
    print(f"GEMM {x.shape[0]} x {x.shape[1]} times {w.shape[0]} x {w.shape[1]} on {args.backend}")
    ref = run_gemm(x, w, cfg=cfg, backend="model")
    prebuild(args.backend, [cfg], trace=vcd is not None)
    started = time.perf_counter()
    if args.backend == "model":
        r = ref
    else:
        with files.atomic_path(vcd) as vcd_part:
            r = run_gemm(
                x, w, cfg=cfg, backend=args.backend, vcd=vcd_part, port=args.port, baud=args.baud
            )
    seconds = time.perf_counter() - started
    (m, n), flagged = r.out.shape, int(r.overflow.sum())
    final = int(r.final_overflow.sum())
    print(
        f"  {r.backend:<9} cycles {r.cycles:>9,}  utilization {100 * r.utilization:5.1f} %  "
        f"flagged {flagged:>6} of {m * n} (transient only {flagged - final}, final {final})"
        + (f"  in {r.calls} calls" if r.calls > 1 else "")
    )
    if r is not ref:
        compare(r, ref)  # a difference raises MismatchError: exit 1
        print(f"  {r.backend:<9} matches the golden model: results, flags and cycles")
        verb = "ran" if backend.needs_port else "simulated"  # a board: the link's time
        print(f"  {verb} {r.cycles:,} cycles in {seconds:.2f} s")
    if out:
        with files.atomic_write(out) as f:
            np.savez(
                f,
                out=r.out,
                overflow=r.overflow,
                final_overflow=r.final_overflow,
                cycles=np.int64(r.cycles),
            )
        print(f"wrote {out}")
    if vcd:
        print(f"wrote {vcd}")
    return {
        "config": cfg.to_dict(),
        "backend": r.backend,
        "gemm": {"m": m, "k": int(x.shape[1]), "n": n},
        "cycles": r.cycles,
        "calls": r.calls,
        "utilization": r.utilization,
        "flagged": flagged,
        "transient_overflow": flagged - final,
        "final_overflow": final,
        "checked_against_model": r is not ref,
        "seconds": seconds,
        "output": str(out) if out else None,
        "vcd": str(vcd) if vcd else None,
    }


def register(sub) -> None:
    from oasa.sim.backends import backend_names

    p = sub.add_parser("verilog", help="write Verilog of the array and output stage")
    opt.add_config_options(p)
    p.add_argument("-o", "--output", required=True, help="Verilog file to write")
    p.add_argument(
        "--top",
        choices=("core", "accelerator"),
        help="core: the output-stationary array and output stage (streams in, rows out); "
        "accelerator: buffers, sequencer and registers around the array (default core, "
        "accelerator with --dataflow ws)",
    )
    p.add_argument("--name", help="top module name (default oasa_core / oasa_accelerator)")
    p.add_argument("--lint", action="store_true", help="also run verilator --lint-only on it")
    opt.add_json_option(p)
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("sim", help="run one GEMM on the model or the RTL")
    opt.add_config_options(p)
    p.add_argument("--x", help="activations X (M x K) as .npy (default: a random layer)")
    p.add_argument("--w", help="weights W (K x N) as .npy (default: a random layer)")
    p.add_argument("--m", type=opt.int_range(1), default=16, help="random layer: M (default 16)")
    p.add_argument("--k", type=opt.int_range(1), default=64, help="random layer: K (default 64)")
    p.add_argument("--n", type=opt.int_range(1), default=16, help="random layer: N (default 16)")
    p.add_argument("--seed", type=opt.SEED, default=0, help="random layer: seed (default 0)")
    p.add_argument(
        "--backend",
        choices=backend_names(),
        default="model",
        help="model (golden model, cycles predicted), amaranth or verilator (the RTL), "
        "board (a board over its UART, with --port)",
    )
    add_board_options(p)
    p.add_argument(
        "--out", help="write out, overflow, final_overflow, cycles to this .npz (default: none)"
    )
    p.add_argument("--vcd", help="write a waveform (RTL backends; default: none)")
    opt.add_json_option(p)
    p.set_defaults(func=cmd_sim)
