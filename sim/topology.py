"""SCALE-Sim topology files: a network as a list of convolution shapes, one CSV row each.

Columns (SCALE-Sim's conv format): layer name, IFMAP height, IFMAP width, filter height,
filter width, channels, number of filters, strides. Files are read as SCALE-Sim's own
repository writes them: a header row, blank rows, extra trailing columns (its notes), a
``#dw`` comment marking a depthwise layer, spaces and tabs around values.

The GEMM of a layer is derived the way SCALE-Sim derives it, so a comparison is like with
like: no padding, output size ceil((I - F + S) / S) per axis, M = output pixels, K =
F_h * F_w * channels, N = filters. SCALE-Sim writes a depthwise layer as one channel and
one filter (the work of one channel), and so it is read; a row is marked depthwise by a
``#dw`` comment or ``dw`` in its name (SCALE-Sim's own files use both, not always the
comment).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from oasa.errors import InputError
from oasa.files import check_input_file

__all__ = ["TopologyError", "TopologyLayer", "read_topology"]

_COLUMNS = ("IFMAP height", "IFMAP width", "filter height", "filter width", "channels",
            "filters", "stride")  # fmt: skip


class TopologyError(InputError):
    """A topology file that is not SCALE-Sim's conv format (names the line)."""


@dataclass(frozen=True)
class TopologyLayer:
    """One row: a convolution (a dense layer is a 1 x 1 convolution on a 1 x 1 map)."""

    name: str
    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    filters: int
    stride: int
    depthwise: bool = False  # marked ``#dw`` in the file, or ``dw`` in its name

    @property
    def ofmap(self) -> tuple[int, int]:
        """SCALE-Sim's output size, ceil((I - F + S) / S) per axis (no padding)."""
        s = self.stride
        return (
            math.ceil((self.ifmap_h - self.filter_h + s) / s),
            math.ceil((self.ifmap_w - self.filter_w + s) / s),
        )

    @property
    def gemm(self) -> tuple[int, int, int]:
        """(M, K, N): output pixels, window size, filters."""
        oh, ow = self.ofmap
        return oh * ow, self.filter_h * self.filter_w * self.channels, self.filters

    @property
    def macs(self) -> int:
        m, k, n = self.gemm
        return m * k * n


def _cells(line: str) -> list[str]:
    return [c.strip() for c in next(csv.reader([line.replace("\t", " ")]))]


def read_topology(path: str | Path) -> list[TopologyLayer]:
    """The layers of a SCALE-Sim conv topology CSV; :class:`TopologyError` for a file that
    is not one (a line with too few or non-integer columns, a filter larger than its
    input, no layers)."""
    p = check_input_file(path, "topology")
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise TopologyError(f"{path}: not a text (CSV) file") from None
    layers = []
    for number, line in enumerate(text.splitlines(), start=1):
        depthwise = "#dw" in line.lower()
        line = line.split("#", 1)[0]
        cells = _cells(line) if line.strip() else []
        if not any(cells):
            continue  # a blank row, or a comment only
        if not layers and (len(cells) < 2 or not cells[1].isdigit()):
            continue  # the header
        where = f"{path}, line {number}"
        if len(cells) < 8 or not all(c.isdigit() for c in cells[1:8]):
            raise TopologyError(
                f"{where}: expected a layer name and 7 positive integers "
                f"({', '.join(_COLUMNS)}), got {','.join(cells[:8])!r}"
            )
        values = [int(c) for c in cells[1:8]]
        if min(values) < 1:
            raise TopologyError(f"{where}: every size must be at least 1, got {values}")
        name = cells[0] or f"layer{len(layers)}"
        depthwise = depthwise or re.search(r"(^|[_\W])dw([_\W]|$)", name.lower()) is not None
        layer = TopologyLayer(name, *values, depthwise=depthwise)
        if layer.filter_h > layer.ifmap_h or layer.filter_w > layer.ifmap_w:
            raise TopologyError(f"{where}: a {layer.filter_h}x{layer.filter_w} filter does not "
                                f"fit a {layer.ifmap_h}x{layer.ifmap_w} input")  # fmt: skip
        layers.append(layer)
    if not layers:
        raise TopologyError(f"{path}: no layers (is it a SCALE-Sim conv topology CSV?)")
    return layers
