"""How a GEMM is cut into array tiles: the order every backend and the cycle model share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from oasa.config import ArrayConfig

__all__ = ["Tile", "pad_operands", "tile_grid", "tiles"]


@dataclass(frozen=True)
class Tile:
    """One R x C block of outputs: rows m0 .. m0+R-1, columns n0 .. n0+C-1."""

    index: int
    mt: int
    nt: int
    m0: int
    n0: int


def tile_grid(cfg: ArrayConfig, m: int, n: int) -> tuple[int, int]:
    """Number of row tiles and column tiles: ceil(M / R), ceil(N / C)."""
    return -(-m // cfg.rows), -(-n // cfg.cols)


def tiles(cfg: ArrayConfig, m: int, n: int) -> Iterator[Tile]:
    """Tiles in issue order: row tiles outer, column tiles inner."""
    mts, nts = tile_grid(cfg, m, n)
    index = 0
    for mt in range(mts):
        for nt in range(nts):
            yield Tile(index, mt, nt, mt * cfg.rows, nt * cfg.cols)
            index += 1


def pad_operands(
    x: NDArray[np.int64], w: NDArray[np.int64], cfg: ArrayConfig
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Zero-pad M to a multiple of R and N to a multiple of C.

    Zero activations and zero weights add nothing to any partial sum, so padding never
    changes a result or a flag; the padded outputs are simply dropped.
    """
    mts, nts = tile_grid(cfg, x.shape[0], w.shape[1])
    xp = np.zeros((mts * cfg.rows, x.shape[1]), dtype=np.int64)
    wp = np.zeros((w.shape[0], nts * cfg.cols), dtype=np.int64)
    xp[: x.shape[0]] = x
    wp[:, : w.shape[1]] = w
    return xp, wp
