"""The catalogue of bad inputs the ``oasa`` command must refuse in one line with exit 2.

Each :class:`Case` is a command line with ``{name}`` placeholders for files that
:func:`make_fixtures` writes into a scratch folder (valid operands and networks, and
damaged, tampered, truncated or misplaced versions of them). ``tests/test_bad_inputs.py``
runs every case in-process and checks the contract; ``bench/bad_inputs.py`` runs them
too and writes the table in ``docs/bad_inputs.md`` from what the command printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CASES", "Case", "make_fixtures"]


@dataclass(frozen=True)
class Case:
    kind: str  # the class of bad input
    what: str  # what is wrong, in words
    argv: tuple[str, ...]  # the command line, with {placeholders} for fixture paths

    def command(self, fixtures: dict[str, str]) -> list[str]:
        return [a.format(**fixtures) for a in self.argv]

    @property
    def id(self) -> str:
        return f"{self.kind}: {self.what}"


def _case(kind: str, what: str, line: str) -> Case:
    return Case(kind, what, tuple(line.split()))


def _digits_network(acc_bits: int = 12):
    """A tiny network on the digits' 1 x 8 x 8 input (runs in milliseconds)."""
    from test_netrun import digits_shaped_network

    return digits_shaped_network(acc_bits=acc_bits, overflow="wrap")


def make_fixtures(root: Path) -> dict[str, str]:
    """Write every file the cases name into ``root``; return placeholder -> path."""
    from test_netfile import _rewrite

    from oasa.quant.model import init_params, save_params
    from oasa.sim import netfile

    root.mkdir(parents=True, exist_ok=True)
    p: dict[str, Path] = {}

    def path(name: str) -> Path:
        p[name.split(".")[0]] = root / name
        return root / name

    rng = np.random.default_rng(0)
    np.save(path("x.npy"), rng.integers(0, 16, (4, 6)))
    np.save(path("w.npy"), rng.integers(-8, 8, (6, 3)))
    np.save(path("w_k5.npy"), rng.integers(-8, 8, (5, 3)))
    np.save(path("x_1d.npy"), np.arange(6))
    np.save(path("x_3d.npy"), np.zeros((2, 2, 6), dtype=np.int64))
    np.save(path("x_empty.npy"), np.zeros((0, 6), dtype=np.int64))
    np.save(path("w_empty.npy"), np.zeros((6, 0), dtype=np.int64))
    np.save(path("x_float.npy"), np.full((4, 6), 1.5))
    np.save(path("x_bool.npy"), np.ones((4, 6), dtype=bool))
    np.save(path("x_u64.npy"), np.full((4, 6), 2**63 + 7, dtype=np.uint64))
    np.save(path("x_big.npy"), np.full((4, 6), 16))
    np.save(path("w_big.npy"), np.full((6, 3), -9))
    np.save(path("x_obj.npy"), np.array([[1, "a"]], dtype=object), allow_pickle=True)
    np.savez(path("x_npz.npz"), x=np.zeros((4, 6), dtype=np.int64))
    path("text.txt").write_text("not numbers\n")
    path("empty.npy").write_bytes(b"")
    full = (root / "x.npy").read_bytes()
    path("x_trunc.npy").write_bytes(full[: len(full) - 40])
    path("folder").mkdir()
    path("afile").write_text("a file, not a folder\n")

    net = path("net.npz")
    netfile.save(_digits_network(), net)
    with np.load(net) as f:
        weight = f["L0.weight"].copy()
        wc_hi = f["L2.wc_hi"].copy()
    weight[0, 0, 0, 0] = 7 if weight[0, 0, 0, 0] != 7 else -8
    _rewrite(net, path("net_weights.npz"), replace={"L0.weight": weight})
    wc_hi[1] -= 1
    _rewrite(net, path("net_cert.npz"), replace={"L2.wc_hi": wc_hi})

    def set_layer(i: int, **kv):
        return lambda m: m["layers"][i].update(kv)

    _rewrite(
        net,
        path("net_claim.npz"),
        meta=lambda m: (m.update(guarantee="certified"), set_layer(2, acc_bits=9)(m)),
    )
    _rewrite(net, path("net_version.npz"), meta=lambda m: m.update(version=99))
    _rewrite(net, path("net_format.npz"), meta=lambda m: m.update(format="other"))
    _rewrite(net, path("net_nokey.npz"), meta=lambda m: m["layers"][0].pop("acc_bits"))
    _rewrite(net, path("net_kind.npz"), meta=set_layer(0, kind="lstm"))
    _rewrite(net, path("net_type.npz"), meta=set_layer(0, acc_bits="16"))
    _rewrite(net, path("net_scale.npz"), meta=lambda m: m.update(input_scale=-1.0))
    _rewrite(net, path("net_shape.npz"), meta=lambda m: m["tensors"]["t2"].update(shape=[31, 1, 1]))
    _rewrite(net, path("net_guarantee.npz"), meta=lambda m: m.update(guarantee="maybe"))
    _rewrite(net, path("net_lastraw.npz"), meta=set_layer(3, requant=True))
    _rewrite(net, path("net_meta.npz"), replace={"meta": np.array("{not json")})
    _rewrite(net, path("net_nometa.npz"), drop=("meta",))
    _rewrite(net, path("net_noarray.npz"), drop=("L2.bias",))
    _rewrite(net, path("net_dtype.npz"), replace={"L0.weight": weight.astype(np.int64)})
    _rewrite(net, path("net_range.npz"), replace={"L0.weight": np.full_like(weight, -9)})
    _rewrite(net, path("net_shift.npz"), replace={"L2.shift": np.full(4, 64)})
    _rewrite(net, path("net_bias.npz"), replace={"L2.bias": np.zeros(3, dtype=np.int64)})
    data = net.read_bytes()
    path("net_trunc.npz").write_bytes(data[: len(data) // 2])

    ckpt = path("ckpt.npz")
    params = init_params(np.random.default_rng(0))
    save_params(params, ckpt)
    params.pop(next(iter(params)))
    save_params(params, path("ckpt_missing.npz"))
    ck = ckpt.read_bytes()
    path("ckpt_trunc.npz").write_bytes(ck[: len(ck) // 3])
    _data_fixtures(path)
    path("points.csv").write_bytes(bytes(range(256)))
    path("notsweep.csv").write_text("a,b\n1,2\n")
    return {k: str(v) for k, v in p.items()} | {"root": str(root)}


RESIDUAL = Path(__file__).parent / "data" / "residual_digits.onnx"


def _data_fixtures(path) -> None:
    """User data files (--data) in every way they can be wrong, for the residual model
    (1 x 8 x 8 inputs, 10 classes); a float model with an unsupported operator."""
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 8, 8)).astype(np.float32)
    y = np.arange(6) % 10
    good = {"x_train": x, "y_train": y, "x_test": x, "y_test": y}
    np.savez(path("data.npz"), **good)
    np.savez(path("data_notrain.npz"), x_test=x, y_test=y)
    np.savez(path("data_shape.npz"), **{**good, "x_test": x[:, :, :4]})
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    np.savez(path("data_nan.npz"), **{**good, "x_train": nan})
    np.savez(path("data_label.npz"), **{**good, "y_test": y + 5})
    np.savez(path("data_float_labels.npz"), **{**good, "y_test": y.astype(np.float32)})
    np.savez(path("data_rows.npz"), **{**good, "y_test": y[:3]})
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], name="soft")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              path("softmax.onnx"))  # fmt: skip


#: Read-only targets: /proc takes no new files, even for root.
_RO = "/proc/oasa-test"

CASES: list[Case] = [
    # -- numbers on the command line --------------------------------------------------------
    _case("option value", "M = 0", "sim --m 0"),
    _case("option value", "negative K", "sim --k -5"),
    _case("option value", "N not a number", "sim --n abc"),
    _case("option value", "negative seed", "sim --seed -1"),
    _case("option value", "seed above 2^32", "sim --seed 99999999999"),
    _case("option value", "zero rows", "sim --rows 0"),
    _case("option value", "65 columns", "sim --cols 65"),
    _case("option value", "P below the product width", "sim --acc-bits 7"),
    _case("option value", "P above 32", "sim --acc-bits 33"),
    _case("option value", "1-bit activations", "sim --act-bits 1"),
    _case("option value", "9-bit weights", "sim --weight-bits 9"),
    _case("option value", "unknown overflow mode", "sim --overflow clip"),
    _case("option value", "zero-word buffer", "sim --act-depth 0"),
    _case("option value", "unknown backend", "sim --backend gpu"),
    _case("option value", "zero images", "run {net} --backend model --images 0"),
    _case(
        "option value", "more images than the test set", "run {net} --backend model --images 100000"
    ),
    _case("option value", "zero batch", "run {net} --backend model --batch 0"),
    _case("option value", "zero clock", "run {net} --backend model --clock-mhz 0"),
    _case("option value", "NaN clock", "run {net} --backend model --clock-mhz nan"),
    _case("option value", "P above 32 at run time", "eval {net} --acc-bits 100"),
    _case("option value", "zero epochs", "train --epochs 0"),
    _case(
        "option value",
        "negative QAT epochs",
        "quantize --method exact --qat-epochs -1 -o {root}/q.npz",
    ),
    _case("option value", "unknown method", "quantize --method best -o {root}/q.npz"),
    _case(
        "option value",
        "P too narrow for the quantizer",
        "quantize --method exact --acc-bits 5 -o {root}/q.npz",
    ),
    _case(
        "option value",
        "unknown scale style",
        "quantize --method exact --scales log -o {root}/q.npz",
    ),
    _case("option value", "zero jobs", "sweep --jobs 0 -o {root}/sw"),
    _case("option value", "jobs and a cluster", "sweep --jobs 2 --cluster local:2 -o {root}/sw"),
    _case("option value", "cluster not local:N", "sweep --cluster local:two -o {root}/sw"),
    _case(
        "option value",
        "cluster and scheduler",
        "sweep --cluster local:2 --scheduler tcp://h:1 -o {root}/sw",
    ),
    _case("option value", "descending width range", "sweep --acc-bits 20:8 -o {root}/sw"),
    _case("option value", "width list with a word", "sweep --acc-bits 10,abc -o {root}/sw"),
    _case("option value", "width below the product", "sweep --acc-bits 4 -o {root}/sw"),
    _case("option value", "unknown sweep method", "sweep --methods rtn,best -o {root}/sw"),
    _case("option value", "unknown sweep mode", "sweep --overflow wrap,clip -o {root}/sw"),
    _case("option value", "empty method list", "sweep --methods , -o {root}/sw"),
    _case("option value", "lane past the array", "prove --lane 99 --work-dir {root}/pr"),
    _case("option value", "zero-second proof timeout", "prove --timeout 0 --work-dir {root}/pr"),
    _case("option value", "unknown board", "fpga build --board arty"),
    _case(
        "option value",
        "clock no PLL reaches",
        "fpga build --board icebreaker --clock 5 -o {root}/b",
    ),
    _case("option value", "negative clock", "fpga build --board icebreaker --clock -1 -o {root}/b"),
    _case(
        "option value",
        "P too narrow for a board build",
        "fpga build --board icebreaker --acc-bits 4 -o {root}/b",
    ),
    _case("option value", "array size not RxC", "fpga sweep --sizes 4by4 -o {root}/fs"),
    _case("command line", "no command", ""),
    _case("command line", "unknown command", "frobnicate"),
    _case("command line", "unknown option", "sim --frobnicate"),
    _case("command line", "missing required option", "quantize -o {root}/q.npz"),
    _case("command line", "only one operand", "sim --x {x}"),
    _case("command line", "--port without the board backend", "sim --port /dev/ttyUSB1"),
    _case("command line", "board backend without --port", "sim --backend board"),
    _case(
        "command line",
        "a serial port that does not exist",
        "sim --backend board --port /dev/oasa-no-such-port",
    ),
    _case("command line", "waveform from the model", "sim --vcd {root}/w.vcd"),
    _case(
        "command line",
        "waveform of a network on the model",
        "run {net} --backend model --vcd {root}/w.vcd",
    ),
    # -- operand arrays (.npy) ---------------------------------------------------------------
    _case("array file", "missing", "sim --x {root}/nothing.npy --w {w}"),
    _case("array file", "a folder", "sim --x {folder} --w {w}"),
    _case("array file", "below a file", "sim --x {afile}/x.npy --w {w}"),
    _case("array file", "an .npz archive", "sim --x {x_npz} --w {w}"),
    _case("array file", "a text file", "sim --x {text} --w {w}"),
    _case("array file", "zero bytes", "sim --x {empty} --w {w}"),
    _case("array file", "truncated", "sim --x {x_trunc} --w {w}"),
    _case("array file", "pickled objects", "sim --x {x_obj} --w {w}"),
    _case("array shape", "1-D", "sim --x {x_1d} --w {w}"),
    _case("array shape", "3-D", "sim --x {x_3d} --w {w}"),
    _case("array shape", "M = 0", "sim --x {x_empty} --w {w}"),
    _case("array shape", "N = 0", "sim --x {x} --w {w_empty}"),
    _case("array shape", "K differs", "sim --x {x} --w {w_k5}"),
    _case("array values", "floats", "sim --x {x_float} --w {w}"),
    _case("array values", "booleans", "sim --x {x_bool} --w {w}"),
    _case("array values", "uint64 above 2^63", "sim --x {x_u64} --w {w}"),
    _case("array values", "activation 16 at N = 4", "sim --x {x_big} --w {w}"),
    _case("array values", "weight -9 at M = 4", "sim --x {x} --w {w_big}"),
    _case("array values", "layer larger than memory", "sim --m 100000 --k 100000 --n 100000"),
    _case("array values", "result buffer below a row tile", "sim --m 9 --k 8 --n 4 --res-depth 4"),
    _case(
        "array values",
        "K past the buffers without preload",
        "sim --m 8 --k 300 --n 8 --act-depth 256 --wgt-depth 256 --no-preload",
    ),
    # -- network files -----------------------------------------------------------------------
    _case("network file", "missing", "eval {root}/nothing.npz"),
    _case("network file", "a folder", "eval {folder}"),
    _case("network file", "a text file", "run {text} --backend model"),
    _case("network file", "zero bytes", "check {empty}"),
    _case("network file", "truncated", "check {net_trunc}"),
    _case("network file", "an .npy array", "eval {x}"),
    _case("network file", "a float checkpoint", "eval {ckpt}"),
    _case("network file", "no meta entry", "check {net_nometa}"),
    _case("network file", "meta not JSON", "check {net_meta}"),
    _case("network file", "another format", "check {net_format}"),
    _case("network file", "unknown version", "check {net_version}"),
    _case("network file", "a layer key missing", "check {net_nokey}"),
    _case("network file", "a value of the wrong type", "check {net_type}"),
    _case("network file", "unknown layer kind", "check {net_kind}"),
    _case("network file", "negative input scale", "check {net_scale}"),
    _case("network file", "unknown guarantee", "check {net_guarantee}"),
    _case("network file", "shapes do not chain", "check {net_shape}"),
    _case("network file", "last layer requantized", "check {net_lastraw}"),
    _case("network file", "an array missing", "check {net_noarray}"),
    _case("network file", "weights of the wrong dtype", "check {net_dtype}"),
    _case("network file", "weights out of range", "check {net_range}"),
    _case("network file", "shift out of range", "check {net_shift}"),
    _case("network file", "bias of the wrong shape", "check {net_bias}"),
    _case("certificate", "weights changed after export (eval)", "eval {net_weights}"),
    _case("certificate", "weights changed after export (run)", "run {net_weights} --backend model"),
    _case(
        "certificate",
        "weights changed after export (run, RTL)",
        "run {net_weights} --backend amaranth",
    ),
    _case("certificate", "certificate changed (check)", "check {net_cert}"),
    _case("certificate", "certified claim at a narrower P (eval)", "eval {net_claim}"),
    _case(
        "certificate", "certified claim at a narrower P (run)", "run {net_claim} --backend model"
    ),
    # -- checkpoints -------------------------------------------------------------------------
    _case(
        "checkpoint",
        "missing",
        "quantize --method exact --checkpoint {root}/none.npz -o {root}/q.npz",
    ),
    _case(
        "checkpoint", "a folder", "quantize --method exact --checkpoint {folder} -o {root}/q.npz"
    ),
    _case(
        "checkpoint", "a network file", "quantize --method exact --checkpoint {net} -o {root}/q.npz"
    ),
    _case(
        "checkpoint",
        "truncated",
        "quantize --method exact --checkpoint {ckpt_trunc} -o {root}/q.npz",
    ),
    _case(
        "checkpoint", "a text file", "quantize --method exact --checkpoint {text} -o {root}/q.npz"
    ),
    _case(
        "checkpoint",
        "a tensor missing",
        "quantize --method exact --checkpoint {ckpt_missing} -o {root}/q.npz",
    ),
    # -- models and data (--model, --data) ---------------------------------------------------
    _case(
        "model",
        "--model without --data",
        f"quantize --method exact --model {RESIDUAL} -o {{root}}/q.npz",
    ),
    _case(
        "model",
        "--model with --checkpoint",
        f"quantize --method exact --model {RESIDUAL} --checkpoint {{ckpt}} --data {{data}} -o {{root}}/q.npz",
    ),
    _case(
        "model",
        "missing",
        "quantize --method exact --model {root}/none.onnx --data {data} -o {root}/q.npz",
    ),
    _case(
        "model",
        "a text file",
        "quantize --method exact --model {text} --data {data} -o {root}/q.npz",
    ),
    _case(
        "model",
        "an unsupported operator",
        "quantize --method exact --model {softmax} --data {data} -o {root}/q.npz",
    ),
    _case("model", "a float model given to import", f"import {RESIDUAL} -o {{root}}/q.npz"),
    _case(
        "data",
        "missing",
        f"quantize --method exact --model {RESIDUAL} --data {{root}}/none.npz -o {{root}}/q.npz",
    ),
    _case(
        "data",
        "not an .npz",
        f"quantize --method exact --model {RESIDUAL} --data {{text}} -o {{root}}/q.npz",
    ),
    _case(
        "data",
        "no training part for quantize",
        f"quantize --method exact --model {RESIDUAL} --data {{data_notrain}} -o {{root}}/q.npz",
    ),
    _case(
        "data",
        "inputs of another shape",
        f"quantize --method exact --model {RESIDUAL} --data {{data_shape}} -o {{root}}/q.npz",
    ),
    _case(
        "data",
        "NaN in the inputs",
        f"quantize --method exact --model {RESIDUAL} --data {{data_nan}} -o {{root}}/q.npz",
    ),
    _case("data", "labels beyond the classes", "eval {net} --data {data_label}"),
    _case("data", "float labels", "eval {net} --data {data_float_labels}"),
    _case("data", "fewer labels than inputs", "run {net} --backend model --data {data_rows}"),
    _case("data", "another model's inputs (run)", "run {net} --backend model --data {data_shape}"),
    # -- output paths (checked before any work) ----------------------------------------------
    _case("output path", "sim --out is a folder", "sim --out {folder}"),
    _case("output path", "sim --out below a file", "sim --out {afile}/o.npz"),
    _case("output path", "sim --out on a read-only file system", f"sim --out {_RO}.npz"),
    _case("output path", "sim --vcd is a folder", "sim --backend amaranth --vcd {folder}"),
    _case("output path", "verilog -o is a folder", "verilog -o {folder}"),
    _case("output path", "verilog -o below a file", "verilog -o {afile}/a.v"),
    _case("output path", "verilog -o read-only", f"verilog -o {_RO}.v"),
    _case("output path", "quantize -o below a file", "quantize --method exact -o {afile}/q.npz"),
    _case("output path", "quantize -o read-only", f"quantize --method exact -o {_RO}.npz"),
    _case("output path", "train -o is a folder", "train -o {folder}"),
    _case("output path", "sweep -o is a file", "sweep -o {afile}"),
    _case("output path", "sweep -o read-only", f"sweep -o {_RO}"),
    _case("output path", "demo --out-dir is a file", "demo --out-dir {afile}"),
    _case("output path", "prove --work-dir is a file", "prove --work-dir {afile}"),
    _case("output path", "fpga build -o is a file", "fpga build --board icebreaker -o {afile}"),
    _case("output path", "fpga sweep -o read-only", f"fpga sweep -o {_RO}"),
    _case(
        "output path", "run --vcd below a file", "run {net} --backend amaranth --vcd {afile}/w.vcd"
    ),
    Case("output path", "empty file name", ("verilog", "-o", "")),
    # -- other inputs ------------------------------------------------------------------------
    _case("name", "module name starts with a digit", "verilog -o {root}/a.v --name 1core"),
    _case("name", "module name is a keyword", "verilog -o {root}/a.v --name module"),
    _case("name", "module name with a dash", "verilog -o {root}/a.v --name my-core"),
    _case(
        "sweep table", "pareto input is a folder", "fpga pareto --accuracy {folder} -o {root}/pa"
    ),
    _case("sweep table", "pareto input is binary", "fpga pareto --accuracy {points} -o {root}/pa"),
    _case(
        "sweep table",
        "pareto input is another CSV",
        "fpga pareto --accuracy {notsweep} -o {root}/pa",
    ),
    _case(
        "sweep table", "pareto input missing", "fpga pareto --accuracy {root}/none.csv -o {root}/pa"
    ),
]


def listing(root: Path) -> set[str]:
    """Every path below ``root`` (to see that a refused command wrote nothing)."""
    return {
        os.path.relpath(os.path.join(d, f), root) for d, ds, fs in os.walk(root) for f in fs + ds
    }
