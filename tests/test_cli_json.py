"""``--json`` on every command that prints a result: stdout is one JSON object with stable
keys, whose figures agree with the library computed independently here; the human
report goes to stderr; an error is a JSON object too."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from oasa.cli import main
from oasa.config import ArrayConfig
from oasa.sim import certificates, netfile
from oasa.sim.cycles import accelerator_cycles


def _run_json(capsys, argv: list[str], code: int = 0) -> dict:
    assert main([*argv, "--json"]) == code
    captured = capsys.readouterr()
    payload = json.loads(captured.out)  # stdout holds the object and nothing else
    assert isinstance(payload, dict)
    return payload


def test_sim_json_agrees_with_an_independent_count(tmp_path, capsys):
    cfg = ArrayConfig(rows=4, cols=3, acc_bits=10, overflow="saturate")
    rng = np.random.default_rng(7)
    x = rng.integers(0, 16, (5, 40))
    w = rng.integers(-8, 8, (40, 6))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    argv = ["sim", "--rows", "4", "--cols", "3", "--acc-bits", "10", "--overflow", "saturate"]
    r = _run_json(capsys, [*argv, "--x", str(tmp_path / "x.npy"), "--w", str(tmp_path / "w.npy")])
    # Flags from plain prefix sums: some partial sum leaves the signed 10-bit range.
    partial = np.cumsum(x[:, :, None] * w[None, :, :], axis=1)
    flagged = int(((partial < -512) | (partial > 511)).any(axis=1).sum())
    final = int(((partial[:, -1] < -512) | (partial[:, -1] > 511)).sum())
    assert r["ok"] is True and r["backend"] == "model"
    assert r["gemm"] == {"m": 5, "k": 40, "n": 6}
    assert r["config"] == cfg.to_dict()
    assert (r["flagged"], r["final_overflow"]) == (flagged, final)
    assert r["transient_overflow"] == flagged - final
    assert r["cycles"] == accelerator_cycles(cfg, 5, 40, 6)
    assert r["utilization"] == pytest.approx(5 * 40 * 6 / (4 * 3 * r["cycles"]))


def test_report_goes_to_stderr_with_json(capsys):
    assert main(["sim", "--m", "2", "--k", "3", "--n", "2", "--json"]) == 0
    captured = capsys.readouterr()
    assert "GEMM 2 x 3 times 3 x 2 on model" in captured.err
    assert captured.out.lstrip().startswith("{")


@pytest.mark.parametrize(
    "argv, code",
    [
        (["sim", "--rows", "0"], 2),  # a parse-time error
        (["sim", "--acc-bits", "33"], 2),  # a configuration error
        (["check", "missing.npz"], 2),
    ],
)
def test_errors_are_json_too(argv, code, capsys):
    r = _run_json(capsys, argv, code)
    assert r["ok"] is False and r["exit_code"] == code and r["error"]


def test_verilog_json(tmp_path, capsys):
    out = tmp_path / "core.v"
    r = _run_json(capsys, ["verilog", "--rows", "2", "--cols", "2", "-o", str(out)])
    text = out.read_text()
    assert r["output"] == str(out) and r["lines"] == len(text.splitlines())
    assert r["module"] == "oasa_core" and f"module {r['module']}" in text
    for port in r["ports"]:
        assert port["name"] in text and port["bits"] >= 1


@pytest.fixture(scope="module")
def net_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("net") / "rtn_p12.npz"
    assert main(["quantize", "--method", "rtn", "--acc-bits", "12", "-o", str(path)]) == 0
    return str(path)


def test_quantizer_commands_json(net_file, capsys):
    net = netfile.load(net_file)
    need = {
        i: certificates.min_safe_acc_bits(netfile.gemm_weight(layer), cfg=layer.cfg).max()
        for i, layer in net.weighted
    }
    r = _run_json(capsys, ["check", net_file])
    layers = r["certification"]["layers"]
    assert [s["index"] for s in layers] == list(need)
    assert all(s["min_safe_acc_bits"] == need[s["index"]] for s in layers)
    assert r["certification"]["certified"] == all(v <= 12 for v in need.values())

    r = _run_json(capsys, ["eval", net_file, "--acc-bits", "24"])
    assert r["certification"]["certified"] is True  # every layer is safe at P = 24
    assert r["overflow"]["flagged"] == 0 and 0 < r["accuracy"] <= 100
    assert r["images"] == 540


def test_run_json_on_the_model(net_file, capsys):
    r = _run_json(
        capsys, ["run", net_file, "--backend", "model", "--images", "4", "--clock-mhz", "50"]
    )
    assert r["images"] == 4 and r["backend"] == "model" and r["checked_against_model"]
    weighted = [s for s in r["layers"] if s["kind"] != "maxpool"]
    assert r["cycles"] == sum(s["cycles"] for s in weighted) > 0
    assert r["cycles_per_image"] == pytest.approx(r["cycles"] / 4)
    assert r["images_per_second"] == pytest.approx(50e6 / r["cycles_per_image"])
    assert r["latency_us"] == pytest.approx(1e6 * r["cycles"] / 50e6)  # one pass of 4


def test_sweep_json(tmp_path, capsys):
    argv = ["sweep", "--acc-bits", "14", "--methods", "exact", "--overflow", "wrap"]
    r = _run_json(capsys, [*argv, "--jobs", "1", "-o", str(tmp_path), "--quiet"])
    (point,) = r["points"]
    assert (point["method"], point["acc_bits"], point["overflow"]) == ("exact", 14, "wrap")
    assert point["certified"] is True and r["computed"] + r["cached"] == 1
    assert all(Path(p).exists() for p in r["outputs"])


BREVITAS_INT = Path(__file__).parent / "data" / "brevitas_a2qplus_p12_int.onnx"


def _documented_keys() -> dict[str, set[str]]:
    """The top-level keys docs/commands.md promises, per command."""
    page = (Path(__file__).parents[1] / "docs" / "commands.md").read_text()
    keys = {}
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`") and "`, `" in cells[1]:
            top = re.sub(r"\([^)]*\)", "", cells[1])  # nested keys in parentheses
            keys[cells[0].strip("`")] = set(re.findall(r"`(\w+)`", top)) | {"ok"}
    return keys


def test_the_documented_keys_are_the_printed_ones(tmp_path, net_file, capsys):
    docs = _documented_keys()
    runs = {
        "sim": ["sim", "--m", "2", "--k", "3", "--n", "2"],
        "verilog": ["verilog", "--rows", "1", "--cols", "1", "-o", str(tmp_path / "v.v")],
        "check": ["check", net_file],
        "eval": ["eval", net_file],
        "run": ["run", net_file, "--backend", "model", "--images", "2"],
        "sweep": ["sweep", "--acc-bits", "16", "--methods", "rtn", "--overflow", "wrap",
                  "--jobs", "1", "-o", str(tmp_path / "sw"), "--quiet"],
        "export": ["export", net_file, "-o", str(tmp_path / "e.onnx")],
        "import": ["import", str(BREVITAS_INT), "-o", str(tmp_path / "i.npz"),
                   "--agree-images", "4"],
    }  # fmt: skip
    for command, argv in runs.items():
        assert set(_run_json(capsys, argv)) == docs[command], command
