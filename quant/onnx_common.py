"""Reading ONNX protobufs, shared by the float importer (:mod:`oasa.quant.onnx_import`) and
the QONNX importer (:mod:`oasa.quant.qonnx_import`): the file, node names, attributes and
the 2-D window geometry both map onto oasa's operators the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oasa.errors import InputError

__all__ = [
    "Refused",
    "attrs",
    "constant_value",
    "ints",
    "node_name",
    "pads",
    "read_model",
    "window",
]


class Refused(Exception):
    """Raised by an operator handler; the importer adds the node's name and operator."""


def read_model(path: Path, what: str = "ONNX") -> Any:
    """Load the protobuf (and its external data next to it); every failure is one
    :class:`InputError` line, since a wrong path or file is the user's to correct."""
    try:
        import onnx
    except ImportError:
        raise InputError(
            f"reading {what} models needs the onnx package: pip install 'oasa[onnx]'"
        ) from None
    if not path.exists():
        raise InputError(f"{path}: no such {what} file")
    if not path.is_file():
        raise InputError(f"{path}: not a file (an {what} model is one .onnx file)")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError, a missing external-data file, ...
        raise InputError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    if not model.ir_version or not model.graph.node or not model.graph.output:
        raise InputError(f"{path}: not an ONNX model (no graph in it)")
    return model


def node_name(node: Any, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def attrs(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values (strings decoded)."""
    import onnx

    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def ints(v: Any) -> tuple[int, ...]:
    return tuple(int(a) for a in v)


def pads(a: dict[str, Any]) -> tuple[int, int, int, int]:
    """ONNX ``pads`` (begins, then ends) are oasa's (top, left, bottom, right); auto_pad
    SAME_* depends on the input size in a way the explicit form states better, so refuse."""
    auto = a.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto != "NOTSET":
        raise Refused(f"auto_pad {auto} is not supported (NOTSET or VALID; export explicit pads)")
    p = ints(a.get("pads", [0, 0, 0, 0]))
    if len(p) != 4:
        raise Refused(f"pads {list(p)}: oasa runs 2-D windows (4 pads)")
    return p  # type: ignore[return-value]


def window(a: dict[str, Any], kernel: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Kernel and strides of a 2-D window; dilation has no counterpart in the array."""
    if len(kernel) != 2:
        raise Refused(f"kernel {list(kernel)}: oasa runs 2-D windows")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise Refused(f"dilations {list(a['dilations'])} are not supported (only 1)")
    strides = ints(a.get("strides", [1, 1]))
    if len(strides) != 2:
        raise Refused(f"strides {list(strides)}: oasa runs 2-D windows")
    return (kernel[0], kernel[1]), (strides[0], strides[1])


def constant_value(node: Any) -> Any:
    """The numeric tensor of a Constant node (``value`` or one of the scalar/list forms)."""
    import numpy as np
    from onnx import numpy_helper

    a = attrs(node)
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for key in ("value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            return np.asarray(a[key])
    raise Refused(f"attribute {next(iter(a), 'value')!r} is not supported (a numeric tensor)")
