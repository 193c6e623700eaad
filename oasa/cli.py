"""The ``oasa`` command: parses arguments, calls the packages, prints. No logic of its own.

Bad input ends with a one-line ``oasa: error: ...`` and exit code 2; a result that
disagrees with the golden model ends with exit code 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from oasa.config import OVERFLOW_MODES, ArrayConfig, ConfigError

__all__ = ["main"]


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


# -- shared options ------------------------------------------------------------------------


def _array_options() -> argparse.ArgumentParser:
    d = ArrayConfig()
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("array options")
    g.add_argument("--rows", type=int, default=d.rows, help=f"array rows R (default {d.rows})")
    g.add_argument("--cols", type=int, default=d.cols, help=f"array columns C (default {d.cols})")
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
    return p


def _config(args: argparse.Namespace) -> ArrayConfig:
    return ArrayConfig(
        rows=args.rows,
        cols=args.cols,
        act_bits=args.act_bits,
        act_signed=args.act_signed,
        weight_bits=args.weight_bits,
        acc_bits=args.acc_bits,
        overflow=args.overflow,
    )


def _load_npy(path: str, name: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--{name} {path}: no such file")
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UsageError(f"--{name} {path}: not a readable .npy file ({e})") from None


# -- oasa verilog ------------------------------------------------------------------------------


def cmd_verilog(args: argparse.Namespace) -> int:
    from oasa.hw.core import ArrayCore
    from oasa.hw.verilog import component_ports, to_verilog

    cfg = _config(args)
    core = ArrayCore(cfg)
    text = to_verilog(core, args.name)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"config : {cfg.describe()}")
    print(f"module : {args.name} ({core.latency} cycles from a tile's last beat to its first row)")
    print("ports  :")
    for port in component_ports(core):
        print(f"  {port.name:<20} {len(port):>5} bits")
    print(f"wrote {out} ({len(text.splitlines())} lines)")
    if args.lint:
        from oasa.sim.backends.verilator_tool import lint

        lint(out, args.name)
        print("verilator --lint-only: clean")
    return 0


# -- oasa sim ----------------------------------------------------------------------------------


def _random_layer(cfg: ArrayConfig, m: int, k: int, n: int, seed: int):
    for name, v in (("m", m), ("k", k), ("n", n)):
        if v < 1:
            raise UsageError(f"--{name} {v}: must be at least 1")
    rng = np.random.default_rng(seed)
    x = rng.integers(cfg.act_min, cfg.act_max + 1, (m, k))
    w = rng.integers(cfg.weight_min, cfg.weight_max + 1, (k, n))
    return x, w


def _report(r, ref) -> None:
    from oasa.sim.layer import MismatchError

    m, n = r.out.shape
    transient = int((r.overflow & ~r.final_overflow).sum())
    final = int(r.final_overflow.sum())
    print(
        f"  {r.backend:<9} cycles {r.cycles:>9,}  utilization {100 * r.utilization:5.1f} %  "
        f"flagged {int(r.overflow.sum()):>6} of {m * n} (transient only {transient}, final {final})"
    )
    if ref is not None:
        from oasa.sim.layer import compare

        try:
            compare(r, ref)
        except MismatchError as e:
            print(f"  MISMATCH: {e}")
            raise
        print(f"  {r.backend:<9} matches the golden model: results, flags and cycles")


def cmd_sim(args: argparse.Namespace) -> int:
    from oasa.sim.layer import MismatchError, run_gemm

    cfg = _config(args)
    if (args.x is None) != (args.w is None):
        raise UsageError("give both --x and --w, or neither (for a random layer)")
    if args.x is not None:
        x, w = _load_npy(args.x, "x"), _load_npy(args.w, "w")
    else:
        x, w = _random_layer(cfg, args.m, args.k, args.n, args.seed)
    print(f"{cfg.describe()}")
    print(f"GEMM {x.shape[0]} x {x.shape[1]} times {w.shape[0]} x {w.shape[1]} on {args.backend}")
    ref = run_gemm(x, w, cfg=cfg, backend="model")
    started = time.perf_counter()
    r = (
        ref
        if args.backend == "model"
        else run_gemm(x, w, cfg=cfg, backend=args.backend, vcd=args.vcd)
    )
    try:
        _report(r, None if r is ref else ref)
    except MismatchError:
        return 1
    if r is not ref:
        print(f"  simulated {r.cycles:,} cycles in {time.perf_counter() - started:.2f} s")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            out,
            acc=r.out,
            overflow=r.overflow,
            final_overflow=r.final_overflow,
            cycles=np.int64(r.cycles),
        )
        print(f"wrote {out}")
    if args.vcd and args.backend != "model":
        print(f"wrote {args.vcd}")
    return 0


# -- oasa demo ---------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from oasa.hw.core import ArrayCore
    from oasa.hw.verilog import to_verilog
    from oasa.sim import golden
    from oasa.sim.layer import MismatchError, run_gemm

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = ArrayConfig()
    x, w = _random_layer(base, 24, 300, 20, seed=1)
    safe = int(golden.min_safe_acc_bits(w, cfg=base.replace(acc_bits=32)).max())
    print(
        "oasa demo: one random layer, X 24 x 300 (4-bit unsigned) times W 300 x 20 (4-bit signed)"
    )
    print(f"the data-free bound says these weights need P >= {safe} bits to be overflow-proof")
    for p, mode in ((16, "wrap"), (12, "wrap"), (12, "saturate")):
        cfg = base.replace(acc_bits=p, overflow=mode)
        print(f"\nP = {p}, {mode}:")
        ref = run_gemm(x, w, cfg=cfg, backend="model")
        _report(ref, None)
        rtl = run_gemm(x, w, cfg=cfg, backend="amaranth")
        try:
            _report(rtl, ref)
        except MismatchError:
            return 1
        if p == 12:
            err = np.abs(rtl.out - golden.gemm(x, w, cfg=cfg.replace(acc_bits=32)).acc)
            print(f"  largest error against the exact sum: {int(err.max())}")
    v = out_dir / "oasa_core.v"
    v.write_text(to_verilog(ArrayCore(base), "oasa_core"))
    print(f"\nwrote {v} ({base.describe()})")
    return 0


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
    if args.timeout < 1:
        raise UsageError(f"--timeout {args.timeout}: must be at least 1 second")
    work = Path(args.work_dir)
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
        type=int,
        help="output stage: prove only this lane (repeatable; default: every lane)",
    )
    p.add_argument("--work-dir", default="build/formal", help="work files (default build/formal)")
    p.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per proof (default {DEFAULT_TIMEOUT})",
    )
    p.set_defaults(func=cmd_prove)


# -- end of formal commands -----------------------------------------------------------------


# -- entry point -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oasa", description="Overflow-Aware Systolic Array: RTL, golden model, quantizer."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    array = _array_options()

    p = sub.add_parser(
        "verilog", parents=[array], help="write Verilog of the array and output stage"
    )
    p.add_argument("-o", "--output", required=True, help="Verilog file to write")
    p.add_argument("--name", default="oasa_core", help="top module name (default oasa_core)")
    p.add_argument("--lint", action="store_true", help="also run verilator --lint-only on it")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("sim", parents=[array], help="run one GEMM on the model or the RTL")
    p.add_argument("--x", help="activations X (M x K) as .npy")
    p.add_argument("--w", help="weights W (K x N) as .npy")
    p.add_argument("--m", type=int, default=16, help="random layer: M (default 16)")
    p.add_argument("--k", type=int, default=64, help="random layer: K (default 64)")
    p.add_argument("--n", type=int, default=16, help="random layer: N (default 16)")
    p.add_argument("--seed", type=int, default=0, help="random layer: seed (default 0)")
    p.add_argument("--backend", choices=("model", "amaranth"), default="model")
    p.add_argument("--out", help="write acc, overflow, final_overflow, cycles to this .npz")
    p.add_argument("--vcd", help="write a waveform (RTL backends)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("demo", help="a short showing of oasa end to end")
    p.add_argument("--out-dir", default="out/demo", help="where to write files (default out/demo)")
    p.set_defaults(func=cmd_demo)

    _add_formal_commands(sub, array)  # oasa prove (see "formal commands" above)
    return parser


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from oasa.sim.backends.verilator_tool import VerilatorError
    from oasa.sim.golden import OperandError

    try:
        return func(args)
    except (UsageError, ConfigError, OperandError) as e:
        print(f"oasa: error: {e}", file=sys.stderr)
        return 2
    except VerilatorError as e:
        print(f"oasa: {e}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return _run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
