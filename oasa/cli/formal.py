"""``oasa prove``: the formal proofs of :mod:`oasa.hw.formal` for one configuration."""

from __future__ import annotations

import argparse
import time

from oasa import files
from oasa.cli import options as opt
from oasa.cli.common import Report

__all__ = ["register"]


def cmd_prove(args: argparse.Namespace) -> Report:
    from oasa.hw.formal import PROPERTIES, applicable, prove_config

    cfg = opt.config_from_args(args)
    props = [p.name for p in applicable(cfg)]
    if args.only:
        skipped = [n for n in args.only if n not in props]
        if skipped:
            raise opt.UsageError(
                f"--only {skipped[0]}: does not apply to overflow={cfg.overflow!r} "
                f"(applicable: {', '.join(props)})"
            )
        props = [n for n in props if n in args.only]
    lanes = list(range(cfg.cols)) if args.lane is None else sorted(set(args.lane))
    for j in lanes:
        if not 0 <= j < cfg.cols:
            raise opt.UsageError(f"--lane {j}: out of range, the array has lanes 0..{cfg.cols - 1}")
    work = files.check_output_dir(args.work_dir, "--work-dir")
    print(f"config : {cfg.describe()} ({cfg.name})")
    print(
        "proving by k-induction with yowasp-sby and z3, one property at a time (a property "
        "marked 'bounded' is checked from reset up to its depth only)"
    )
    print(f"{'property':<22} {'result':<8} {'depth':>5} {'time':>9}  statement")

    def show(r) -> None:
        bounded = " [bounded: no counterexample within the depth]" if r.mode == "bmc" else ""
        print(
            f"{r.name:<22} {r.status:<8} {r.depth:>5} {r.seconds:>7.1f} s  "
            f"{PROPERTIES[r.property].summary}{bounded}",
            flush=True,
        )
        if not r.passed:
            for what in r.failed:
                print(f"  failed: {what}" + (f" (step {r.step})" if r.step is not None else ""))
            if r.trace is not None:
                print(f"  counterexample: {r.trace}")
            print(f"  log: {r.work_dir / 'sby.log'}")

    started = time.perf_counter()
    results = prove_config(
        cfg, work_dir=work, properties=props, lanes=lanes, timeout=args.timeout, progress=show
    )
    failed = sum(not r.passed for r in results)
    bounded = sum(r.mode == "bmc" for r in results)
    verdict = "all proved" if not failed else f"{failed} of {len(results)} NOT proved"
    if not failed and bounded:
        verdict = f"all passed ({bounded} bounded, the rest proved)"
    print(f"{verdict} in {time.perf_counter() - started:.1f} s (work files in {work / cfg.name})")
    return {
        "ok": not failed,
        "config": cfg.to_dict(),
        "results": [
            {
                "name": r.name,
                "property": r.property,
                "status": r.status,
                "passed": r.passed,
                "depth": r.depth,
                "mode": r.mode,
                "seconds": r.seconds,
                "failed": list(r.failed),
            }
            for r in results
        ],
        "work_dir": str(work / cfg.name),
    }


def register(sub) -> None:
    from oasa.hw.formal.run import DEFAULT_TIMEOUT, PROPERTIES

    p = sub.add_parser(
        "prove",
        help="prove the PE, output stage and array skew formally (needs oasa[formal])",
        description="Prove the PE, output stage and array properties for one configuration "
        "by k-induction (yowasp-sby, z3) and print property, result and time. Exit 1 if any "
        "is not proved.",
    )
    opt.add_config_options(p)
    p.add_argument(
        "--only",
        action="append",
        choices=list(PROPERTIES),
        help="prove only this property (repeatable; default: all that apply)",
    )
    p.add_argument(
        "--lane",
        action="append",
        type=opt.int_range(0),
        help="output stage: prove only this lane (repeatable; default: every lane)",
    )
    p.add_argument("--work-dir", default="build/formal", help="work files (default build/formal)")
    p.add_argument(
        "--timeout",
        type=opt.int_range(1),
        default=DEFAULT_TIMEOUT,
        help=f"seconds per proof (default {DEFAULT_TIMEOUT})",
    )
    opt.add_json_option(p)
    p.set_defaults(func=cmd_prove)
