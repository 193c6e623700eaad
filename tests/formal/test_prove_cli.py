"""``oasa prove``: the table of property, result and time; one-line errors, exit 2."""

import pytest

from oasa.cli import main
from oasa.hw.formal import FormalToolError
from oasa.hw.formal.run import tool_env

try:
    tool_env()
except FormalToolError as e:  # pragma: no cover - make test installs the formal extra
    pytest.skip(f"formal tools missing: {e}", allow_module_level=True)

pytestmark = pytest.mark.formal


def test_prove_prints_a_table(tmp_path, capsys):
    rc = main(
        [
            "prove",
            "--rows",
            "2",
            "--cols",
            "2",
            "--acc-bits",
            "8",
            "--overflow",
            "saturate",
            "--only",
            "saturate",
            "--only",
            "skew",
            "--work-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = [ln.split() for ln in out.splitlines() if ln.split()[:1] in (["saturate"], ["skew"])]
    assert [r[:2] for r in rows] == [["saturate", "PASS"], ["skew", "PASS"]]
    assert "all proved" in out
    assert (tmp_path / "r2c2_a4w4p8_saturate" / "skew" / "top.sby").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cols", "2", "--lane", "2"], "--lane 2: out of range"),
        (["--only", "saturate"], "--only saturate: does not apply"),
        (["--acc-bits", "4"], "acc_bits=4 is out of range"),
        (["--timeout", "0"], "argument --timeout: 0 is out of range"),
    ],
)
def test_prove_rejects_bad_input(argv, message, tmp_path, capsys):
    assert main(["prove", "--work-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("oasa: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_prove_config_plans_one_run_per_lane(monkeypatch, tmp_path):
    """prove_config runs each applicable property once and the output stage per lane."""
    from oasa.config import ArrayConfig
    from oasa.hw.formal import run

    calls = []

    def fake(cfg, prop, *, work_dir, lanes=None, label="", timeout=0):
        calls.append((prop.name, lanes, label))
        return run.ProofResult(prop.name, cfg.name, "PASS", 0.0, 1, work_dir, label=label)

    monkeypatch.setattr(run, "run_property", fake)
    cfg = ArrayConfig(rows=2, cols=3, overflow="saturate")
    seen = []
    results = run.prove_config(cfg, work_dir=tmp_path, progress=seen.append)
    assert [c[0] for c in calls] == ["saturate", "flag", *["output_stage"] * 3, "skew"]
    assert [c[1] for c in calls if c[0] == "output_stage"] == [[0], [1], [2]]
    assert [r.name for r in results] == [
        "saturate",
        "flag",
        "output_stage lane 0",
        "output_stage lane 1",
        "output_stage lane 2",
        "skew",
    ]
    assert seen == results
    calls.clear()
    run.prove_config(cfg, work_dir=tmp_path, properties=["output_stage"], lanes=[1])
    assert calls == [("output_stage", [1], "output_stage lane 1")]
