"""The command line's error contract beyond bad input (tests/test_bad_inputs.py): exit
codes per error class, Ctrl-C, internal errors, atomic outputs, help texts that show
defaults, the Verilator build notes, and labels computed from the weights."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_netrun import digits_shaped_network

from oasa import files
from oasa.cli import build_parser, main
from oasa.errors import InputError, ToolError, VerificationError, exit_code
from oasa.sim import certificates, netfile


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("error", "code", "prefix"),
    [
        (InputError("bad"), 2, "oasa: error: bad"),
        (VerificationError("differs"), 1, "oasa: differs"),
        (ToolError("yosys crashed"), 3, "oasa: yosys crashed"),
        (KeyboardInterrupt(), 130, "oasa: interrupted"),
    ],
)
def test_each_error_class_has_its_exit_code(error, code, prefix, monkeypatch, capsys):
    import oasa.cli

    def fail(args):
        raise error

    monkeypatch.setattr(oasa.cli, "build_parser", lambda: _parser_calling(fail))
    assert main(["check", "x.npz"]) == code
    assert _one_line(capsys.readouterr().err) == prefix


def _parser_calling(func):
    parser = build_parser()
    parser.set_defaults(func=func)
    sub = next(a for a in parser._actions if a.dest == "command")
    for p in sub.choices.values():
        p.set_defaults(func=func)
    return parser


def test_an_unexpected_exception_is_a_bug_with_its_traceback(monkeypatch, capsys):
    import oasa.cli

    def fail(args):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(oasa.cli, "build_parser", lambda: _parser_calling(fail))
    assert main(["check", "x.npz"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("oasa: internal error")
    assert exit_code(ZeroDivisionError()) == 70


def test_verilator_failure_is_a_tool_error(monkeypatch, capsys):
    from oasa.sim.backends import verilator_build
    from oasa.sim.backends.verilator_tool import VerilatorError

    def broken(cfg, *, trace=False):
        raise VerilatorError("build failed: accel.v:1: syntax error")

    monkeypatch.setattr(verilator_build, "build_accelerator", broken)
    assert main(["sim", "--backend", "verilator", "--m", "2", "--k", "3", "--n", "2"]) == 3
    assert _one_line(capsys.readouterr().err).startswith("oasa: build failed")


def test_sim_out_writes_exactly_the_path_given(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sim", "--m", "3", "--k", "4", "--n", "2", "--out", "result"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["result"]  # not result.npz
    assert "wrote result" in capsys.readouterr().out
    with np.load(tmp_path / "result") as z:
        assert z["out"].shape == (3, 2)


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the result is written: exit 130, one line, and neither the file nor a
    temporary one is left."""

    def interrupted(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    out = tmp_path / "o.npz"
    assert main(["sim", "--m", "2", "--k", "3", "--n", "2", "--out", str(out)]) == 130
    assert _one_line(capsys.readouterr().err) == "oasa: interrupted"
    assert os.listdir(tmp_path) == []


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "net.npz"
    target.write_text("old")
    with pytest.raises(RuntimeError), files.atomic_write(target, "w") as f:
        f.write("new, half")
        raise RuntimeError
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["net.npz"]


@pytest.mark.slow
def test_ctrl_c_in_a_real_process(tmp_path):
    """SIGINT during an Amaranth simulation: exit 130, one line, no traceback, no file."""
    out = tmp_path / "o.npz"
    argv = ["sim", "--backend", "amaranth", "--m", "64", "--k", "512", "--n", "64"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "oasa.cli", *argv, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    # Wait until the command is past its imports and simulating.
    while proc.poll() is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("GEMM"):
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines() == ["oasa: interrupted"]
    assert os.listdir(tmp_path) == []


def _subparsers(parser):
    for action in parser._actions:
        if action.choices and hasattr(action, "_name_parser_map"):
            for name, p in action.choices.items():
                yield name, p
                yield from ((f"{name} {n}", q) for n, q in _subparsers(p))


def test_every_help_shows_its_defaults():
    """Each option's help says its default (argparse's own "(default: ...)" or the text's
    own words), flags and --help/--version aside."""
    missing = []
    for name, p in _subparsers(build_parser()):
        formatter = p._get_formatter()
        for a in p._actions:
            if not a.option_strings or a.nargs == 0 or a.required:  # flags, required
                continue
            if "default" not in (formatter._get_help_string(a) or "").lower():
                missing.append(f"oasa {name} {a.option_strings[-1]}")
    assert not missing, missing
    subcommands = dict(_subparsers(build_parser()))
    sim_help = " ".join(subcommands["sim"].format_help().split())
    assert "(default: model)" in sim_help and "(default 16)" in sim_help
    run_help = " ".join(subcommands["run"].format_help().split())
    assert "default verilator" in run_help


def test_version(capsys):
    from oasa import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"oasa {__version__}"


def test_first_verilator_build_says_so_and_how_long(tmp_path, monkeypatch, caplog):
    """A cold build logs that it is building and the seconds it took (compilers faked:
    the log is what is tested, the build itself is tested in test_verilator.py)."""
    import logging

    from oasa.config import ArrayConfig
    from oasa.sim.backends import verilator_build

    monkeypatch.setenv("OASA_CACHE", str(tmp_path))

    def fake_run(cmd, cwd, env=None):
        if "-o" in cmd:
            (Path(cwd) / cmd[cmd.index("-o") + 1]).write_bytes(b"")

    monkeypatch.setattr(verilator_build, "_run", fake_run)
    monkeypatch.setattr(verilator_build, "_runtime_objects", lambda *a: [])
    cfg = ArrayConfig(rows=1, cols=1, act_depth=16, wgt_depth=16, res_depth=16, param_depth=2)
    with caplog.at_level(logging.INFO, logger="oasa"):
        first = verilator_build.build_accelerator(cfg)
        again = verilator_build.build_accelerator(cfg)
    messages = [r.getMessage() for r in caplog.records]
    assert not first.cached and again.cached
    assert messages[0].startswith(f"building the Verilator model of {cfg.name}")
    assert messages[1].startswith(f"built the Verilator model of {cfg.name} in ")
    assert len(messages) == 2  # the cached second call says nothing


# -- labels: computed from the weights, never read ----------------------------------------


@pytest.fixture
def certified_net(tmp_path):
    net = digits_shaped_network(acc_bits=16, overflow="wrap")
    need = max(int(certificates.certificate(layer)[2].max()) for _, layer in net.weighted)
    assert need <= 16
    net.guarantee = "certified"
    path = tmp_path / "net.npz"
    netfile.save(net, path)
    return path, need


def _rewrite_meta(src, dst, change):
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"][()]))
    change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)


def test_eval_label_follows_the_width_it_runs_at(certified_net, capsys):
    path, need = certified_net
    assert main(["eval", str(path)]) == 0
    assert "certified overflow-free at P = 16" in capsys.readouterr().out
    # a narrower P at run time: not refused, but not labelled certified
    narrow = need - 1
    assert main(["eval", str(path), "--acc-bits", str(narrow)]) == 0
    out = capsys.readouterr().out
    assert f"NOT certified at P = {narrow}" in out and "certified overflow-free" not in out


def test_a_mixed_width_network_names_each_layer_width(certified_net, tmp_path, capsys):
    path, _ = certified_net
    mixed = tmp_path / "mixed.npz"
    _rewrite_meta(path, mixed, lambda m: m["layers"][2].update(acc_bits=20))
    assert main(["eval", str(mixed)]) == 0
    out = capsys.readouterr().out
    assert "P = 16 (conv), 20 (fc1), 16 (fc2)" in out


def test_a_network_that_is_not_certified_keeps_its_honest_label(tmp_path, capsys):
    net = digits_shaped_network(acc_bits=9, overflow="saturate")
    net.guarantee = "data-dependent"
    path = tmp_path / "oaq.npz"
    netfile.save(net, path)
    assert main(["run", str(path), "--backend", "model", "--images", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "data-dependent at P = 9" in out
    assert main(["eval", str(path), "--acc-bits", "10"]) == 0
    assert "NOT certified at P = 10" in capsys.readouterr().out


def test_certify_against_an_independent_sum():
    """certify's label from plain Python sums over the weights (unsigned 4-bit inputs)."""
    net = digits_shaped_network(acc_bits=12, overflow="wrap")
    need = []
    for _, layer in net.weighted:
        w = np.asarray(layer.weight, dtype=np.int64).reshape(layer.weight.shape[0], -1)
        worst = 0
        for row in w.tolist():
            pos = 15 * sum(v for v in row if v > 0)
            neg = 15 * sum(-v for v in row if v < 0)
            p = 2
            while pos > 2 ** (p - 1) - 1 or neg > 2 ** (p - 1):
                p += 1
            worst = max(worst, p)
        need.append(worst)
    for p in range(8, 20):
        cert = certificates.certify(net, acc_bits=p)
        assert cert.certified == (max(need) <= p)
        assert [s.min_safe_acc_bits for s in cert.layers] == need
