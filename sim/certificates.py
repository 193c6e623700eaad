"""Overflow-safety certificates (DESIGN.md section 3), computed from integer weights alone.

For a weight column, the lowest and highest partial sum any legal input can produce
(:func:`worst_case_partial_sums`) give the narrowest accumulator no input can overflow
(:func:`min_safe_acc_bits`). A network file stores these bounds per channel; every reader
recomputes them (:func:`verify_certificates`) and says what they guarantee at the P each
layer runs at (:func:`certify`), so no one trusts a certificate the weights do not give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oasa.config import ArrayConfig
from oasa.errors import InputError
from oasa.sim.golden import check_weights
from oasa.sim.netfile import Layer, Network, gemm_weight

__all__ = [
    "CertificateError",
    "Certification",
    "LayerSafety",
    "certificate",
    "certify",
    "check_certificates",
    "min_safe_acc_bits",
    "verify_certificates",
    "worst_case_partial_sums",
]


class CertificateError(InputError):
    """A stored certificate does not match what its integer weights give."""


def worst_case_partial_sums(
    w: ArrayLike, *, cfg: ArrayConfig
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Lowest and highest value any partial sum can take, over every legal input.

    ``w`` is (K, N); the result is two (N,) arrays. Each term contributes its own worst
    case (for unsigned activations: x = 2**N - 1 where it helps, 0 where it does not), and
    since a zero activation is always legal both extremes are reached by the full sum, so
    the bounds are tight.

    >>> lo, hi = worst_case_partial_sums(np.array([[7], [-8], [3]]), cfg=ArrayConfig())
    >>> int(lo[0]), int(hi[0])
    (-120, 150)
    """
    wa = check_weights(w, cfg)
    term_hi = np.maximum(wa * cfg.act_max, wa * cfg.act_min)
    term_lo = np.minimum(wa * cfg.act_max, wa * cfg.act_min)
    return np.minimum(term_lo, 0).sum(axis=0), np.maximum(term_hi, 0).sum(axis=0)


def min_safe_acc_bits(w: ArrayLike, *, cfg: ArrayConfig) -> NDArray[np.int64]:
    """Per output channel, the smallest P that no input can overflow (never below the
    product width).

    >>> min_safe_acc_bits(np.array([[7], [-8], [3]]), cfg=ArrayConfig()).tolist()
    [9]
    """
    lo, hi = worst_case_partial_sums(w, cfg=cfg)
    # Smallest P with -2**(P-1) <= lo and hi <= 2**(P-1) - 1.
    need_hi = np.array([int(v).bit_length() + 1 for v in hi], dtype=np.int64)
    need_lo = np.array([int(-v - 1).bit_length() + 1 if v < 0 else 1 for v in lo], dtype=np.int64)
    return np.maximum(np.maximum(need_hi, need_lo), cfg.product_bits)


def certificate(layer: Layer) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(wc_lo, wc_hi, min safe P) per output channel, from the integer weights alone."""
    cfg = layer.cfg
    w = gemm_weight(layer)
    lo, hi = worst_case_partial_sums(w, cfg=cfg)
    return lo, hi, min_safe_acc_bits(w, cfg=cfg)


@dataclass(frozen=True)
class LayerSafety:
    """One weighted layer's overflow safety at the P it runs at."""

    index: int
    name: str
    min_safe_acc_bits: int  # the smallest P no input can overflow, from the weights
    acc_bits: int  # the P the layer runs at

    @property
    def safe(self) -> bool:
        return self.min_safe_acc_bits <= self.acc_bits


@dataclass(frozen=True)
class Certification:
    """What can be said of a network's overflow safety, computed from its integer weights,
    never read from the file: ``certified`` iff every layer is safe at the P it runs at.

    ``claim`` is the file's own word (``certified``, ``data-dependent`` or ``none``), kept
    for networks whose guarantee the weights cannot show (oaq is safe only on its
    calibration data, and only at the P it was made for).
    """

    layers: tuple[LayerSafety, ...]
    claim: str
    overridden: bool = False  # P was changed at run time

    @property
    def certified(self) -> bool:
        return all(s.safe for s in self.layers)

    @property
    def label(self) -> str:
        """``certified``, ``data-dependent`` or ``not certified``."""
        if self.certified:
            return "certified"
        if self.claim == "data-dependent" and not self.overridden:
            return "data-dependent"
        return "not certified"

    @property
    def widths(self) -> str:
        """``P = 16``, or each layer's width when they differ."""
        ps = {s.acc_bits for s in self.layers}
        if len(ps) == 1:
            return f"P = {ps.pop()}"
        return "P = " + ", ".join(f"{s.acc_bits} ({s.name})" for s in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """The certification as JSON-ready values (the keys of ``--json`` output)."""
        return {
            "label": self.label,
            "certified": self.certified,
            "summary": self.summary(),
            "layers": [
                {
                    "index": s.index,
                    "name": s.name,
                    "min_safe_acc_bits": s.min_safe_acc_bits,
                    "acc_bits": s.acc_bits,
                    "safe": s.safe,
                }
                for s in self.layers
            ],
        }

    def summary(self) -> str:
        """One line: the label, at which widths, and what a layer that can overflow needs."""
        if self.certified:
            return f"certified overflow-free at {self.widths}: no input can overflow any layer"
        unsafe = [s for s in self.layers if not s.safe]
        needs = ", ".join(f"{s.name} needs P = {s.min_safe_acc_bits}" for s in unsafe)
        if self.label == "data-dependent":
            return (
                f"data-dependent at {self.widths}: safe only on the calibration data "
                f"(for every input: {needs})"
            )
        return f"NOT certified at {self.widths}: some inputs can overflow ({needs})"


def verify_certificates(net: Network) -> None:
    """Recompute every certificate from the integer weights; raise
    :class:`CertificateError` if a stored one differs, or if the network claims to be
    ``certified`` while some layer can overflow at the P it states."""
    for i, layer in net.weighted:
        lo, hi, need = certificate(layer)
        for what, stored, real in (("wc_lo", layer.wc_lo, lo), ("wc_hi", layer.wc_hi, hi)):
            bad = np.nonzero(np.asarray(stored) != real)[0]
            if bad.size:
                c = int(bad[0])
                raise CertificateError(
                    f"layer {i} ({layer.name or layer.kind}) channel {c}: stored {what} "
                    f"{int(stored[c])} but its weights give {int(real[c])} "
                    f"({bad.size} channel(s) differ): the weights or the certificate were "
                    "changed after export; quantize it again"
                )
        if net.guarantee == "certified" and int(need.max()) > layer.acc_bits:
            c = int(np.argmax(need))
            raise CertificateError(
                f"layer {i} ({layer.name or layer.kind}) channel {c}: the network claims to be "
                f"certified at P = {layer.acc_bits}, but this channel needs P = {int(need[c])}"
            )


def certify(net: Network, *, acc_bits: int | None = None) -> Certification:
    """Each weighted layer's smallest safe P against the P it runs at (its own, or
    ``acc_bits`` for all layers), and the label that follows."""
    layers = []
    for i, layer in net.weighted:
        need = certificate(layer)[2]
        runs_at = layer.acc_bits if acc_bits is None else acc_bits
        layers.append(LayerSafety(i, layer.name or layer.kind, int(need.max()), runs_at))
    overridden = acc_bits is not None and any(
        acc_bits != layer.acc_bits for _, layer in net.weighted
    )
    return Certification(tuple(layers), net.guarantee, overridden)


def check_certificates(net: Network) -> list[dict[str, Any]]:
    """Verify every certificate (:func:`verify_certificates`) and return one summary per
    weighted layer (index, name, min_safe_acc_bits, acc_bits, safe)."""
    verify_certificates(net)
    return certify(net).to_dict()["layers"]
