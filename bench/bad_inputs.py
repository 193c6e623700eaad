"""Run every bad input of the catalogue (tests/bad_inputs.py) through the ``oasa`` command
and write docs/bad_inputs.md: each input with its exit code and the one line printed.

    python bench/bad_inputs.py [-o docs/bad_inputs.md]

The table is what this run printed (fixture paths shortened to DIR/), never copied by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the catalogue and its helpers live with the tests

from bad_inputs import CASES, listing, make_fixtures  # noqa: E402

from oasa.cli import main  # noqa: E402


def run_case(argv: list[str], scratch: Path) -> tuple[int, str, bool]:
    """(exit code, stderr, whether a traceback was printed), run in ``scratch``."""
    err, out = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(scratch)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
    finally:
        os.chdir(here)
    text = err.getvalue()
    return rc, text, "Traceback" in text + out.getvalue()


def main_bench() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "bad_inputs.md"))
    args = ap.parse_args()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = make_fixtures(Path(tmp) / "DIR")
        root = Path(fixtures["root"])
        for case in CASES:
            scratch = Path(tempfile.mkdtemp(dir=tmp))
            before = listing(root)
            argv = case.command(fixtures)
            rc, err, tb = run_case(argv, scratch)
            left = (listing(root) - before) | listing(scratch)
            lines = err.strip().splitlines()
            ok = rc == 2 and len(lines) == 1 and lines[0].startswith("oasa: error:") and not tb
            ok = ok and not left
            shown = " ".join(argv).replace(str(root), "DIR")
            message = (lines[-1] if lines else "").replace(str(root), "DIR")
            rows.append((case, shown, rc, message, ok))
    secs = time.perf_counter() - started
    good = sum(r[4] for r in rows)
    by_kind = Counter(r[0].kind for r in rows)
    lines = [
        "# Bad inputs and what `oasa` says",
        "",
        "Every input below is refused with exit code 2 and one line on stderr, without a",
        "traceback and without leaving a file behind (checked by `tests/test_bad_inputs.py`,",
        "which runs the same catalogue, `tests/bad_inputs.py`). Written by",
        "`python bench/bad_inputs.py` from what the command printed; `DIR/` is the folder",
        "of the test files. The exit codes are listed in",
        "[the command reference](commands.md#exit-codes).",
        "",
        f"{len(rows)} inputs in {len(by_kind)} classes, {good} behave as required ({secs:.1f} s).",
        "",
        "| class | input | command | exit | message |",
        "|---|---|---|---|---|",
    ]
    for case, shown, rc, message, ok in rows:
        cell = message.replace("|", "\\|")
        flag = "" if ok else " **(not as required)**"
        lines.append(f"| {case.kind} | {case.what} | `oasa {shown}` | {rc}{flag} | {cell} |")
    out = Path(args.output)
    out.write_text("\n".join(lines) + "\n")
    print(f"{len(rows)} bad inputs, {good} refused as required, in {secs:.1f} s; wrote {out}")
    return 0 if good == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main_bench())
