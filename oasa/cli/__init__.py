"""The ``oasa`` command: parses arguments, calls the library, prints.

One module per command family (:mod:`.hardware`: verilog, sim; :mod:`.quantizer`: train,
quantize, eval, check; :mod:`.interchange`: import, export; :mod:`.network`: run; :mod:`.explore`; :mod:`.sweep`; :mod:`.fpga`; :mod:`.formal`:
prove; :mod:`.demo`), each registering its subcommands. A command returns its result as a
dict, printed as JSON with ``--json`` (the human report then goes to stderr).

Errors are classified where they are raised (:mod:`oasa.errors`) and mapped to exit codes
in one place, :func:`main`: bad input ends with one line ``oasa: error: ...`` and exit
code 2, a result that disagrees with the golden model with exit code 1, a failed tool with
3, Ctrl-C with 130. Output paths are checked before any work and written atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from oasa.cli import (
    demo,
    explore,
    formal,
    fpga,
    hardware,
    interchange,
    network,
    quantizer,
    sweep,
)
from oasa.cli.options import Parser
from oasa.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_VERIFICATION,
    exit_code,
    one_line,
)

__all__ = ["build_parser", "main"]

#: The command families, in the order ``oasa --help`` lists their commands.
FAMILIES = (hardware, demo, quantizer, interchange, network, sweep, explore, formal, fpga)


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
    for family in FAMILIES:
        family.register(sub)
    return parser


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, paths and tuples as JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _print_json(payload: dict) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=_jsonable), flush=True)


def _report_error(error: BaseException) -> int:
    """Print ``error`` the way its exit code asks, and return that code."""
    code = exit_code(error)
    if code == EXIT_INTERRUPTED:
        # Hardware built but not yet elaborated when Ctrl-C came is no news to the user.
        warnings.filterwarnings("ignore", message=r".* created but never used")
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
    as_json = "--json" in (sys.argv[1:] if argv is None else argv)  # for a parse error too
    try:
        args = build_parser().parse_args(argv)
        as_json = getattr(args, "json", False)
        # With --json, stdout carries the JSON object alone; the report goes to stderr.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            result = args.func(args)
        if isinstance(result, int):  # a command without a result (demo, an interrupted sweep)
            return result
        ok = result.setdefault("ok", True)
        if as_json:
            _print_json(result)
        return EXIT_OK if ok else EXIT_VERIFICATION
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else EXIT_INPUT
    except (Exception, KeyboardInterrupt) as e:  # every error ends here, as an exit code
        code = _report_error(e)
        if as_json and code != EXIT_BROKEN_PIPE:
            _print_json({"ok": False, "exit_code": code, "error": one_line(e)})
        return code


if __name__ == "__main__":
    sys.exit(main())
