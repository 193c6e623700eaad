"""oasa sweep: points computed in parallel, cached, resumable, written as CSV/JSON/plots."""

import json

import pytest

from oasa.cli import main
from oasa.points import Where
from oasa.quant import sweep


def test_parse_acc_bits():
    assert sweep.parse_acc_bits("8:11") == [8, 9, 10, 11]
    assert sweep.parse_acc_bits("10,16") == [10, 16]
    with pytest.raises(ValueError, match="give a range like 8:24"):
        sweep.parse_acc_bits("8-24")


def test_sweep_writes_outputs_and_reuses_its_cache(tmp_path, capsys):
    out = tmp_path / "sw"
    argv = [
        "sweep",
        "--acc-bits",
        "12,16",
        "--methods",
        "exact,rtn",
        "-o",
        str(out),
        "--jobs",
        "2",
        "--quiet",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "8 points computed" in printed and "exact" in printed
    for name in ("points.csv", "points.json", "points.jsonl", "accuracy.png", "overflow.png"):
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "points.json").read_text())
    rows = {(r["method"], r["acc_bits"], r["overflow"]): r for r in data["points"]}
    assert len(rows) == 8 and 90 < data["float_accuracy"] < 100
    # exact is certified at both widths; rtn at P = 12 overflows and wrap hurts it
    assert (
        rows[("exact", 12, "wrap")]["certified"]
        and rows[("exact", 12, "wrap")]["flagged_rate"] == 0
    )
    assert (
        rows[("rtn", 12, "wrap")]["flagged_rate"] > 0 and not rows[("rtn", 12, "wrap")]["certified"]
    )
    assert rows[("rtn", 12, "saturate")]["accuracy"] > rows[("rtn", 12, "wrap")]["accuracy"]
    assert rows[("exact", 16, "wrap")]["accuracy"] == rows[("exact", 16, "saturate")]["accuracy"]

    # Re-run with one more width: only the new points are computed.
    argv[2] = "12,14,16"
    assert main(argv) == 0
    assert "4 points computed" in capsys.readouterr().out


def test_interrupted_sweep_keeps_finished_points(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sw"
    calls = {"n": 0}
    real = sweep.run_sweep

    def interrupt_after_first(points, out_dir, **kw):
        def progress(done, total):
            calls["n"] = done
            if done >= 1:
                raise KeyboardInterrupt

        return real(points, out_dir, where=Where(jobs=1), progress=progress)

    monkeypatch.setattr(sweep, "run_sweep", interrupt_after_first)
    rc = main(
        [
            "sweep",
            "--acc-bits",
            "14",
            "--methods",
            "exact,oaq",
            "--overflow",
            "wrap",
            "-o",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 130
    err = capsys.readouterr().err
    assert "run the same command again" in err
    saved = sweep.load_cache(out)
    assert len(saved) == 1


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--methods", "nope"], "unknown method 'nope'"),
        (["--overflow", "clip"], "unknown mode 'clip'"),
        (["--acc-bits", "x"], "give a range like 8:24"),
        (["--acc-bits", "40"], "acc_bits=40 is out of range"),
        (["--jobs", "0"], "--jobs"),
        (["--jobs", "2", "--cluster", "local:2"], "--jobs and --cluster both given"),
        (["--cluster", "local:two"], "give local:N"),
        (["--cluster", "remote:2"], "give local:N"),
        (["--cluster", "local:2", "--scheduler", "tcp://x:1"], "choose one"),
    ],
)
def test_bad_arguments(argv, words, tmp_path, capsys):
    assert main(["sweep", "-o", str(tmp_path), *argv]) == 2
    assert words in capsys.readouterr().err
