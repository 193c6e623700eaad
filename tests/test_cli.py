"""The oasa command end to end: files written, exit codes, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from oasa.cli import main
from oasa.config import ArrayConfig
from oasa.sim import golden


def test_verilog_writes_a_module_that_lints(tmp_path, capsys):
    out = tmp_path / "core.v"
    assert (
        main(
            [
                "verilog",
                "--rows",
                "2",
                "--cols",
                "3",
                "--acc-bits",
                "12",
                "--overflow",
                "saturate",
                "-o",
                str(out),
                "--lint",
            ]
        )
        == 0
    )
    text = out.read_text()
    assert "module oasa_core" in text
    printed = capsys.readouterr().out
    for port in ("i_act__payload", "i_wgt__valid", "o_res__payload", "params", "requant"):
        assert port in printed and port in text
    assert "lint-only: clean" in printed


def test_verilog_accelerator_top_lints(tmp_path, capsys):
    out = tmp_path / "acc.v"
    assert (
        main(
            [
                "verilog",
                "--top",
                "accelerator",
                "--rows",
                "2",
                "--cols",
                "2",
                "-o",
                str(out),
                "--lint",
            ]
        )
        == 0
    )
    assert "module oasa_accelerator" in out.read_text()
    printed = capsys.readouterr().out
    for port in ("reg__addr", "host_act__data", "host_res__data", "done"):
        assert port in printed


def test_sim_model_writes_npz(tmp_path):
    cfg = ArrayConfig(acc_bits=10)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 16, (6, 40))
    w = rng.integers(-8, 8, (40, 5))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    out = tmp_path / "o.npz"
    rc = main(
        [
            "sim",
            "--x",
            str(tmp_path / "x.npy"),
            "--w",
            str(tmp_path / "w.npy"),
            "--acc-bits",
            "10",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    with np.load(out) as z:
        g = golden.gemm(x, w, cfg=cfg)
        np.testing.assert_array_equal(z["out"], g.out)
        np.testing.assert_array_equal(z["overflow"], g.overflow)
        np.testing.assert_array_equal(z["final_overflow"], g.final_overflow)
        assert z["out"].dtype == np.int64 and z["overflow"].dtype == bool
        assert int(z["cycles"]) > 0


def test_sim_amaranth_random_layer_checks_itself(tmp_path, capsys):
    out = tmp_path / "o.npz"
    rc = main(
        [
            "sim",
            "--backend",
            "amaranth",
            "--rows",
            "2",
            "--cols",
            "3",
            "--m",
            "5",
            "--k",
            "9",
            "--n",
            "4",
            "--acc-bits",
            "8",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert "matches the golden model" in capsys.readouterr().out
    with np.load(out) as z:
        assert z["out"].shape == (5, 4)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["sim", "--acc-bits", "7"], "acc_bits=7 is out of range: allowed 8..32"),
        (["sim", "--acc-bits", "33"], "acc_bits=33"),
        (["sim", "--rows", "0"], "rows=0 is out of range: allowed 1..64"),
        (["sim", "--rows", "65"], "rows=65"),
        (["sim", "--x", "missing.npy", "--w", "missing.npy"], "--x missing.npy: no such file"),
        (["sim", "--x", "x.npy"], "give both --x and --w"),
        (["sim", "--m", "0"], "argument --m: 0 is out of range: allowed at least 1"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_files(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.full((2, 3), 16))
    np.save(tmp_path / "w.npy", np.zeros((3, 2), dtype=np.int64))
    np.save(tmp_path / "wf.npy", np.zeros((3, 2)))
    np.save(tmp_path / "w4.npy", np.zeros((4, 2), dtype=np.int64))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    cases = [
        ("x.npy", "w.npy", "x holds 16, outside the 4-bit unsigned activation range 0..15"),
        ("junk.npy", "w.npy", "not a .npy file (no NumPy header)"),
        ("w.npy", "wf.npy", "w must be an integer array"),
        ("w.npy", "w4.npy", "shapes do not chain"),
    ]
    for x, w, words in cases:
        assert main(["sim", "--x", str(tmp_path / x), "--w", str(tmp_path / w)]) == 2
        assert words in capsys.readouterr().err


def test_unknown_mode_is_rejected_by_argparse():
    proc = subprocess.run(
        [sys.executable, "-m", "oasa.cli", "sim", "--overflow", "clip"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "invalid choice: 'clip'" in proc.stderr


def test_sim_verilator_backend(tmp_path, capsys):
    out = tmp_path / "o.npz"
    argv = [
        "sim",
        "--backend",
        "verilator",
        "--rows",
        "2",
        "--cols",
        "3",
        "--acc-bits",
        "9",
        "--overflow",
        "saturate",
        "--act-signed",
        "--act-depth",
        "1024",
        "--wgt-depth",
        "1024",
        "--res-depth",
        "1024",
        "--param-depth",
        "16",
        "--m",
        "7",
        "--k",
        "30",
        "--n",
        "5",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert "matches the golden model" in capsys.readouterr().out
    with np.load(out) as z:
        assert z["out"].shape == (7, 5) and int(z["cycles"]) > 30


def test_layer_too_big_for_the_buffers_runs_as_calls(capsys):
    """Rows, columns and a K longer than the buffers are cut into calls, on the RTL as in
    the model; a result buffer too small for one row tile is refused, naming it."""
    argv = ["sim", "--backend", "verilator", "--m", "24", "--k", "200", "--n", "8",
            "--act-depth", "100", "--acc-bits", "12", "--json"]  # fmt: skip
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["calls"] == 6 and r["checked_against_model"]
    assert main([*argv[:-1], "--res-depth", "4"]) == 2
    assert "the result buffer holds 4 words" in capsys.readouterr().err
