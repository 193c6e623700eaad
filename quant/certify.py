"""Certificates of overflow safety (DESIGN.md section 3), per layer and per channel.

The computation lives with the file format (:mod:`oasa.sim.netfile`), so that any reader
can check a network without the quantizer; this module gives it the quantizer's names.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from oasa.sim.netfile import Layer, certificate, check_certificates

__all__ = ["certificate", "check_certificates", "min_safe_acc_bits"]


def min_safe_acc_bits(layer: Layer) -> int:
    """The smallest accumulator width P at which no input can overflow any channel of
    ``layer`` (the maximum over its channels of the per-channel value)."""
    per_channel: NDArray[np.int64] = certificate(layer)[2]
    return int(per_channel.max())
