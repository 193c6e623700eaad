"""``oasa demo``: the end-to-end story, as the commands a user would type."""

from __future__ import annotations

import argparse
import sys
import time

from oasa import files

__all__ = ["register"]


def cmd_demo(args: argparse.Namespace) -> int:
    """Run each step through :func:`oasa.cli.main`; stop at the first that fails."""
    from oasa.cli import main as main_

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
        rc = main_(argv)
        if rc:
            print(f"oasa demo: step {n} failed (exit {rc})", file=sys.stderr)
            return rc
    print(f"\noasa demo finished in {time.perf_counter() - started:.0f} s; files in {out}/")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="a short showing of oasa end to end")
    p.add_argument("--out-dir", default="out/demo", help="where to write files (default out/demo)")
    p.set_defaults(func=cmd_demo)
