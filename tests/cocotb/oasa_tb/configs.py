"""The covering set of configurations the benches run on.

Not the full cross product: every value of every parameter appears at least once —
(R, C) in {(2, 3), (4, 4), (8, 8)}; P in {the product width, 12, 16, 20, 32};
activation and weight widths 4 and 8; both overflow modes; unsigned and signed
activations — and every pair (overflow mode, P) appears exactly once. ``P = product
width`` is met by a4w4 at P=8 (both modes), a8w4 at P=12 and a8w8 at P=16.
"""

from __future__ import annotations

from oasa.config import ArrayConfig

__all__ = ["ACCEL_CONFIGS", "ARRAY_CONFIGS", "PE_CONFIGS", "STAGE_CONFIGS", "covering_report"]


def _c(rows, cols, a, w, p, mode, signed=False) -> ArrayConfig:
    return ArrayConfig(
        rows=rows,
        cols=cols,
        act_bits=a,
        weight_bits=w,
        acc_bits=p,
        overflow=mode,
        act_signed=signed,
    )


#: ArrayCore configurations (benches 2 and 5 share each build). The order matters to
#: :func:`oasa_tb.matrix.sim_params`: the first runs on both simulators, the others
#: alternate, Verilator first, so Verilator gets the odd positions and Icarus the even
#: ones. Position 7 (a4sw4 at P = 20) must be odd: only Verilator reaches its overflow
#: edge and PE saturation (K = 10702); position 2 is saturating, so that Icarus also
#: runs both modes.
ARRAY_CONFIGS = [
    _c(2, 3, 4, 4, 8, "wrap"),  # P = product width
    _c(4, 4, 8, 4, 12, "wrap"),  # P = product width of a8w4
    _c(4, 4, 4, 4, 8, "saturate", signed=True),  # P = product width, signed x
    _c(2, 3, 4, 4, 12, "saturate"),
    _c(8, 8, 4, 4, 16, "wrap"),
    _c(4, 4, 8, 8, 16, "saturate"),  # P = product width of a8w8
    _c(2, 3, 4, 8, 20, "wrap"),
    _c(8, 8, 4, 4, 20, "saturate", signed=True),
    _c(4, 4, 8, 8, 32, "wrap", signed=True),
    _c(2, 3, 4, 4, 32, "saturate"),
]

#: ProcessingElement configurations: the arithmetic of the same set (R and C play no
#: part in a PE, so the array size is left at the first value).
PE_CONFIGS = [c.replace(rows=2, cols=3) for c in ARRAY_CONFIGS]

#: OutputStage configurations: narrow and wide accumulators, 4/8-bit unsigned/signed
#: outputs, 3 to 8 lanes.
STAGE_CONFIGS = [
    _c(2, 3, 4, 4, 8, "wrap"),
    _c(4, 4, 8, 8, 32, "wrap", signed=True),
    _c(8, 8, 4, 4, 16, "saturate", signed=True),
]


#: Accelerator configurations: the three array sizes, both modes, signed and unsigned,
#: small buffers (the layers stay small; what matters is the sequencing), each on both
#: dataflows: the weight-stationary sequencer's K-tile loop, feedback wait and drain
#: depend on R, C and M, and clamping and flags must carry across K tiles in both modes.
#: Ordered for :func:`oasa_tb.matrix.sim_params` (first on both simulators, then
#: Verilator, Icarus, ...): each dataflow meets both simulators, and Icarus, the slow one
#: on large arrays, gets no 8 x 8.
ACCEL_CONFIGS = [
    # 512-word activation and weight buffers: one tile of K = 500 can overflow P = 16.
    c.replace(act_depth=512, wgt_depth=512, res_depth=256, param_depth=8)
    for c in (
        _c(2, 3, 4, 4, 10, "saturate"),  # both simulators
        _c(4, 4, 8, 8, 20, "wrap", signed=True).replace(dataflow="ws"),  # Verilator
        _c(2, 3, 4, 4, 10, "saturate").replace(dataflow="ws"),  # Icarus
        _c(8, 8, 4, 4, 16, "wrap"),  # Verilator
        _c(4, 4, 8, 8, 20, "wrap", signed=True),  # Icarus
        _c(8, 8, 4, 4, 16, "wrap").replace(dataflow="ws"),  # Verilator
    )
]


def covering_report(configs) -> dict:
    """Which values and (mode, P) pairs a list of configurations covers."""
    pairs = {(c.overflow, c.acc_bits) for c in configs}
    return {
        "sizes": sorted({(c.rows, c.cols) for c in configs}),
        "acc_bits": sorted({c.acc_bits for c in configs}),
        "act_bits": sorted({c.act_bits for c in configs}),
        "weight_bits": sorted({c.weight_bits for c in configs}),
        "modes": sorted({c.overflow for c in configs}),
        "mode_p_pairs": sorted(pairs),
        "p_is_product_width": sorted(
            {(c.overflow, c.name) for c in configs if c.acc_bits == c.product_bits}
        ),
    }
