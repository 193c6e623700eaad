"""Pieces several command families share: the board link options, Verilator builds before
timing, and the certificate report."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from oasa.cli import options as opt
from oasa.config import ArrayConfig

__all__ = [
    "Report",
    "add_board_options",
    "board_config",
    "board_link",
    "prebuild",
    "print_certificates",
    "require_torch",
]

#: What a command returns: its result as a JSON-ready dict (``ok`` False: exit 1), or an
#: exit code for commands without a result (``oasa demo``).
Report = dict[str, Any]


def add_board_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--port",
        help="board backend: the board's serial port, e.g. /dev/ttyUSB1 (default: none)",
    )
    p.add_argument(
        "--baud",
        type=opt.int_range(1),
        default=115200,
        help="board backend: baud rate (default 115200)",
    )


def board_config(args: argparse.Namespace) -> ArrayConfig:
    """The configuration of the build on the board at --port (it says so in reply to PING):
    the array options are not needed, and ignored."""
    from oasa.fpga.host import probe

    cfg = probe(args.port, baud=args.baud)
    print(f"the board on {args.port} runs: {cfg.describe()}")
    return cfg


def board_link(
    func: Callable[[argparse.Namespace], Report],
) -> Callable[[argparse.Namespace], Report]:
    """--backend board needs --port, and --port needs --backend board. A port that cannot
    be opened or a board of another build is bad input (exit 2), a failure on the link a
    tool failure (exit 3): the errors say so themselves."""

    def wrapped(args: argparse.Namespace) -> Report:
        if args.backend == "board" and not args.port:
            raise opt.UsageError(
                "--backend board needs --port (the board's serial port, e.g. /dev/ttyUSB1)"
            )
        if args.port and args.backend != "board":
            raise opt.UsageError(f"--port is for --backend board, not --backend {args.backend}")
        return func(args)

    return wrapped


def require_torch(option: str) -> None:
    """``option`` trains with PyTorch, an optional extra: say how to install it."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise opt.UsageError(
            f"{option} needs torch ({e}): pip install torch==2.13.0 'oasa[train]'"
        ) from None


def prebuild(backend: str, configs: list[ArrayConfig], *, trace: bool) -> None:
    """Build the backend's models first (each build says so, and how long it took), so
    that build time is not reported as simulation time. A traced run builds the first
    model with tracing."""
    from oasa.sim.backends import get_backend

    get_backend(backend).prepare(list(dict.fromkeys(configs)), trace=trace)


def print_certificates(net) -> list[dict[str, Any]]:
    """Verify every certificate of ``net`` and print one line per weighted layer."""
    from oasa.sim.certificates import check_certificates

    rows = check_certificates(net)
    for r in rows:
        verdict = "safe" if r["safe"] else "CAN OVERFLOW"
        print(
            f"  layer {r['index']} {r['name']:<7} min safe P {r['min_safe_acc_bits']:>2}  "
            f"(runs at P = {r['acc_bits']}: {verdict})"
        )
    return rows
