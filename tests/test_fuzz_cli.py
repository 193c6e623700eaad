"""Property-based fuzzing of the ``oasa`` command line (Hypothesis), in-process, on the
model backend and tiny networks so that each example takes milliseconds.

Generated: option values out of range or not numbers, operand arrays of any dtype, shape
and value, byte strings given as .npy and network files, network files with edited meta
JSON or arrays, tampered weights. Asserted for every example: the command either succeeds
(and then the input was valid, judged independently) or exits 2 with exactly one stderr
line starting ``oasa: error:``, no traceback, and no output file left behind.

``OASA_FUZZ_EXAMPLES`` sets the examples per property (default 25, a few seconds in all;
e.g. ``OASA_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_cli.py`` for a long run).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from fuzzing import FUZZ
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_netrun import digits_shaped_network

from oasa.cli import main
from oasa.sim import netfile


def run(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``oasa argv``, run in-process."""
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)  # whatever a command writes by a relative name lands here
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(argv)
        finally:
            os.chdir(here)
        assert rc != 2 or os.listdir(scratch) == [], "a refused command wrote a file"
    return rc, out.getvalue(), err.getvalue()


def assert_refused(rc: int, out: str, err: str) -> None:
    assert rc == 2, f"exit {rc}: {err}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("oasa: error: "), err
    assert "Traceback" not in out + err


# -- option values ----------------------------------------------------------------------------

#: Option of ``oasa sim`` -> the integers it accepts.
SIM_INTS = {
    "--m": (1, None),
    "--k": (1, None),
    "--n": (1, None),
    "--seed": (0, 2**32 - 1),
    "--rows": (1, 64),
    "--cols": (1, 64),
    "--act-bits": (2, 8),
    "--weight-bits": (2, 8),
    "--acc-bits": (8, 32),
    "--act-depth": (1, 1 << 20),
    "--param-depth": (1, 1 << 16),
}


def _parses_as_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


@st.composite
def bad_sim_option(draw) -> list[str]:
    option = draw(st.sampled_from(sorted(SIM_INTS)))
    lo, hi = SIM_INTS[option]
    below = st.integers(max_value=lo - 1).map(str)
    above = st.integers(min_value=hi + 1).map(str) if hi is not None else st.nothing()
    words = st.text(min_size=0, max_size=12).filter(
        lambda s: not _parses_as_int(s) and not s.startswith("-")
    )
    floats = st.floats(allow_nan=True, allow_infinity=True).map(repr)
    return ["sim", option, draw(st.one_of(below, above, words, floats))]


@FUZZ
@given(argv=bad_sim_option())
def test_out_of_range_option_values_are_refused(argv):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "o.npz"
        assert_refused(*run([*argv, "--out", str(out)]))
        assert not out.exists() and os.listdir(tmp) == []


def _known_options() -> dict[str, set[str]]:
    """Each subcommand's own option strings (a generated name may happen to be one)."""
    from oasa.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {
        name: {s for a in p._actions for s in a.option_strings} for name, p in sub.choices.items()
    }


KNOWN_OPTIONS = _known_options()


@FUZZ
@given(
    cmd=st.sampled_from(["eval", "run", "check", "quantize", "sweep", "verilog", "train"]),
    option=st.text(alphabet="-abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12),
)
def test_unknown_options_are_refused(cmd, option):
    assume(option.startswith("--") and len(option) > 2 and option[2] != "-")
    assume(option not in KNOWN_OPTIONS[cmd])
    argv = [cmd, option, "1"]
    rc, out, err = run(argv)
    assert_refused(rc, out, err)


# -- operand arrays ---------------------------------------------------------------------------

K = 5
VALID_W = np.random.default_rng(0).integers(-8, 8, (K, 3))

dtypes = st.one_of(
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(),
)


def _valid_activations(a: np.ndarray) -> bool:
    """An independent statement of what ``oasa sim --x`` accepts (unsigned 4-bit, K = 5)."""
    if a.dtype.kind not in "iu" or a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != K:
        return False
    return all(0 <= int(v) <= 15 for v in a.ravel().tolist())


@FUZZ
@given(
    a=hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    | hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.just(K)), elements=st.integers(-3, 20))
)
def test_any_activation_array_runs_or_is_refused(a):
    with tempfile.TemporaryDirectory() as tmp:
        x, w, out = (Path(tmp) / n for n in ("x.npy", "w.npy", "o.npz"))
        np.save(x, a)
        np.save(w, VALID_W)
        rc, stdout, err = run(["sim", "--x", str(x), "--w", str(w), "--out", str(out)])
        if _valid_activations(a):
            assert rc == 0, err
            with np.load(out) as z:
                np.testing.assert_array_equal(z["out"], a.astype(np.int64) @ VALID_W)
        else:
            assert_refused(rc, stdout, err)
            assert not out.exists()


@FUZZ
@given(data=st.binary(max_size=300), as_net=st.booleans())
def test_random_bytes_are_refused(data, as_net):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("f.npz" if as_net else "f.npy")
        path.write_bytes(data)
        w = Path(tmp) / "w.npy"
        np.save(w, VALID_W)
        argv = ["check", str(path)] if as_net else ["sim", "--x", str(path), "--w", str(w)]
        assert_refused(*run(argv))


# -- network files ------------------------------------------------------------------------------


def _saved_network(folder: Path) -> Path:
    path = folder / "net.npz"
    netfile.save(digits_shaped_network(acc_bits=12, overflow="wrap"), path)
    return path


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@FUZZ
@given(data=st.data())
def test_edited_meta_is_loaded_or_refused(data):
    """Any edit of the meta JSON: the commands that load the file either accept it or
    refuse it in one line; none crashes."""
    with tempfile.TemporaryDirectory() as tmp:
        src = _saved_network(Path(tmp))
        with np.load(src) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays["meta"][()]))
        target = data.draw(st.sampled_from(["net", *range(len(meta["layers"]))]))
        d = meta if target == "net" else meta["layers"][target]
        key = data.draw(st.sampled_from(sorted(d)))
        if data.draw(st.booleans()):
            del d[key]
        else:
            d[key] = data.draw(json_values)
        arrays["meta"] = np.array(json.dumps(meta))
        bad = Path(tmp) / "bad.npz"
        np.savez(bad, **arrays)
        cmd = data.draw(
            st.sampled_from(
                [["check"], ["eval"], ["run", "--backend", "model", "--images", "2", "--quiet"]]
            )
        )
        rc, out, err = run([cmd[0], str(bad), *cmd[1:]])
        if rc != 0:
            assert_refused(rc, out, err)


@FUZZ
@given(data=st.data())
def test_edited_arrays_are_loaded_or_refused(data):
    with tempfile.TemporaryDirectory() as tmp:
        src = _saved_network(Path(tmp))
        with np.load(src) as f:
            arrays = {k: f[k] for k in f.files}
        key = data.draw(st.sampled_from(sorted(k for k in arrays if k != "meta")))
        arrays[key] = data.draw(
            hnp.arrays(
                st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes()),
                hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
            )
        )
        bad = Path(tmp) / "bad.npz"
        np.savez(bad, **arrays)
        rc, out, err = run(["eval", str(bad)])
        if rc != 0:
            assert_refused(rc, out, err)


@FUZZ
@given(data=st.data())
def test_tampered_weights_are_refused_unless_the_sums_hold(data):
    """New weights, old certificate: every command that loads the file refuses it, unless
    each channel's positive and negative sums are unchanged (then the certificate still
    holds, and the file is valid)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = _saved_network(Path(tmp))
        with np.load(src) as f:
            arrays = {k: f[k] for k in f.files}
        key = data.draw(st.sampled_from(sorted(k for k in arrays if k.endswith(".weight"))))
        old = arrays[key]
        new = data.draw(hnp.arrays(np.int8, old.shape, elements=st.integers(-8, 7)))
        arrays[key] = new

        def sums(w):
            rows = w.reshape(w.shape[0], -1).astype(int).tolist()
            return [(sum(v for v in r if v > 0), sum(v for v in r if v < 0)) for r in rows]

        bad = Path(tmp) / "bad.npz"
        np.savez(bad, **arrays)
        cmd = data.draw(st.sampled_from([["check"], ["eval"], ["run", "--backend", "model"]]))
        rc, out, err = run(
            [cmd[0], str(bad), *cmd[1:], *(["--images", "2"] if cmd[0] == "run" else [])]
        )
        if sums(new) == sums(old):
            assert rc == 0, err
        else:
            assert_refused(rc, out, err)
            assert "changed after export" in err
