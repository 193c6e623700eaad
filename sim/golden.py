"""Bit-exact golden model of the oasa arithmetic contract (DESIGN.md section 2).

One function per hardware stage, so each bench compares at the same cut:

- :func:`gemm`: the P-bit accumulation of X (M x K) times W (K x N) in wrap or saturate
  mode, with the sticky transient overflow flag and the final-sum overflow flag;
- :func:`output_stage`: bias, integer multiplier, round-half-up shift, ReLU, clamp;
- :func:`conv2d` / :func:`im2col`: convolution lowered to the same GEMM;
- the data-free safety condition of DESIGN.md section 3 builds on these, in
  :mod:`oasa.sim.certificates`.

Why it is fast without being clever about the result: the wrapped result is the exact sum
wrapped once, and the exact sum comes from one BLAS matmul in float64 (exact while every
sum stays below 2**53). The positive and negative parts of each dot product, two more
products, bound every prefix; only outputs whose bounds leave the accumulator range need
a prefix scan, and only the ones that really overflow in saturate mode need the step by
step clamped scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oasa.config import ArrayConfig
from oasa.errors import InputError
from oasa.sim import ops

__all__ = [
    "GemmResult",
    "OperandError",
    "check_activations",
    "check_weights",
    "conv2d",
    "conv_output_size",
    "gemm",
    "gemm_memory_bytes",
    "im2col",
    "output_stage",
    "partial_sum_bounds",
    "round_shift",
    "wrap",
]

# Elements of any temporary (outputs x terms, or blocks x outputs) made at once: ~32 MiB.
_SCAN_CHUNK_ELEMENTS = 1 << 22
# K is cut into blocks of this many terms; only blocks whose bounds allow an overflow are
# ever scanned term by term.
_SCAN_BLOCK = 64
_FLOAT_EXACT = 1 << 53


class OperandError(InputError):
    """An operand has the wrong shape, dtype or values for the configuration."""


@dataclass(frozen=True)
class GemmResult:
    """What the array computes for every output of a GEMM.

    Attributes
    ----------
    out:
        (M, N) int64, the P-bit accumulator contents after the last term (``out`` in
        every result type of oasa, whatever produced it).
    overflow:
        (M, N) bool, the sticky hardware flag: some partial sum t_k left the P-bit range.
    final_overflow:
        (M, N) bool, the exact (infinite-precision) sum is outside the P-bit range, so no
        mode can return it. ``final_overflow`` implies ``overflow``.
    """

    out: NDArray[np.int64]
    overflow: NDArray[np.bool_]
    final_overflow: NDArray[np.bool_]


def _as_int_array(
    a: ArrayLike, name: str, ndim: int, bounds: tuple[int, int, str] | None = None
) -> NDArray[np.int64]:
    """``a`` as int64 after checking dtype, dimensions and, given ``bounds`` (lo, hi,
    what), the values: checked in the array's own dtype, before the cast, so that a
    uint64 above 2**63 is reported as itself and not as the negative number it wraps to."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise OperandError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise OperandError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if bounds is not None:
        _check_range(arr, name, *bounds)
    return arr.astype(np.int64, copy=False)


def _check_range(arr: NDArray[np.integer], name: str, lo: int, hi: int, what: str) -> None:
    if arr.size == 0:
        return
    amin, amax = int(arr.min()), int(arr.max())
    if amin < lo or amax > hi:
        bad = amin if amin < lo else amax
        raise OperandError(f"{name} holds {bad}, outside the {what} range {lo}..{hi}")


def check_activations(x: ArrayLike, cfg: ArrayConfig, *, name: str = "x", ndim: int = 2):
    """Return ``x`` as int64 after checking dtype, dimensions and the activation range."""
    sign = "signed" if cfg.act_signed else "unsigned"
    what = f"{cfg.act_bits}-bit {sign} activation"
    return _as_int_array(x, name, ndim, (cfg.act_min, cfg.act_max, what))


def check_weights(w: ArrayLike, cfg: ArrayConfig, *, name: str = "w", ndim: int = 2):
    """Return ``w`` as int64 after checking dtype, dimensions and the weight range."""
    what = f"{cfg.weight_bits}-bit signed weight"
    return _as_int_array(w, name, ndim, (cfg.weight_min, cfg.weight_max, what))


def wrap(values: ArrayLike, bits: int) -> NDArray[np.int64]:
    """Two's-complement wrap of int64 values to ``bits`` bits (bits <= 63).

    >>> wrap(np.array([127, 128, -129]), 8).tolist()
    [127, -128, 127]
    """
    v = np.asarray(values, dtype=np.int64)
    half = np.int64(1) << np.int64(bits - 1)
    mask = (np.int64(1) << np.int64(bits)) - np.int64(1)
    return ((v + half) & mask) - half


def _matmul_exact(a: NDArray, b: NDArray, bound: int) -> NDArray[np.int64]:
    """Exact integer matmul of operands whose entries are at most ``bound`` in magnitude
    (the product of the two): float64 BLAS where every sum provably fits 53 bits."""
    if a.shape[1] * bound < _FLOAT_EXACT:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def _split(a: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Positive and negative magnitudes: a == pos - neg, both >= 0."""
    return np.maximum(a, 0), np.maximum(-a, 0)


def partial_sum_bounds(
    x: ArrayLike, w: ArrayLike, *, cfg: ArrayConfig
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Data-dependent bounds of every prefix sum: (-sum of negative terms, sum of positive).

    Every partial sum t_k of output (m, n) lies in [lo[m, n], hi[m, n]], and both ends are
    reached only by a suitable ordering, so an output whose bounds fit the accumulator
    cannot overflow in any order.

    >>> cfg = ArrayConfig()
    >>> lo, hi = partial_sum_bounds([[15, 15]], [[7], [-8]], cfg=cfg)
    >>> int(lo[0, 0]), int(hi[0, 0])
    (-120, 105)
    """
    xa = check_activations(x, cfg)
    wa = check_weights(w, cfg)
    _check_gemm_shapes(xa, wa)
    return _bounds(xa, wa, cfg)


def _bounds(xa, wa, cfg: ArrayConfig):
    """(lo, hi): minus the sum of the negative terms, and the sum of the positive ones.

    The positive and negative weights go side by side into one matrix, so an unsigned
    activation matrix is converted and multiplied once (signed: twice)."""
    n = wa.shape[1]
    bound = max(-cfg.act_min, cfg.act_max) * -cfg.weight_min
    wpn = np.concatenate(_split(wa), axis=1)  # K x 2N: [w+ | w-]
    if not cfg.act_signed or not np.any(xa < 0):
        r = _matmul_exact(xa, wpn, bound)
        return -r[:, n:], r[:, :n]
    xp, xn = _split(xa)
    a = _matmul_exact(xp, wpn, bound)
    b = _matmul_exact(xn, wpn, bound)
    return -(a[:, n:] + b[:, :n]), a[:, :n] + b[:, n:]


def _check_gemm_shapes(xa: NDArray[np.int64], wa: NDArray[np.int64]) -> None:
    if xa.shape[1] != wa.shape[0]:
        raise OperandError(
            f"shapes do not chain: x is {xa.shape[0]} x {xa.shape[1]} but w is "
            f"{wa.shape[0]} x {wa.shape[1]} (x's columns must equal w's rows)"
        )
    if xa.shape[1] == 0:
        raise OperandError("K = 0: a dot product needs at least one term")


def _block_sums(xa, wa, block: int, cfg: ArrayConfig):
    """Per K-block: the exact sums, and the bounds of every prefix inside each block.

    Returns (before, lo, hi), each (blocks, M, N): before[b] is the exact prefix sum
    ahead of block b, and every partial sum inside block b lies in
    [before[b] + lo[b], before[b] + hi[b]].
    """
    k = xa.shape[1]
    starts = range(0, k, block)
    lo = np.empty((len(starts), xa.shape[0], wa.shape[1]), dtype=np.int64)
    hi = np.empty_like(lo)
    for b, k0 in enumerate(starts):
        lo[b], hi[b] = _bounds(xa[:, k0 : k0 + block], wa[k0 : k0 + block], cfg)
    sums = lo + hi
    before = np.cumsum(sums, axis=0) - sums
    return before, lo, hi


def _overflows(xa, wa, mi, ni, before, cand, block: int, lo: int, hi: int):
    """Whether some partial sum of each listed output leaves [lo, hi]. Only blocks whose
    bounds allow an overflow are scanned term by term, in order, until one does."""
    k = xa.shape[1]
    hit = np.zeros(mi.size, dtype=bool)
    cand = cand[:, mi, ni].T  # (outputs, blocks)
    block_ids = np.arange(cand.shape[1])
    nxt = np.where(cand.any(axis=1), cand.argmax(axis=1), -1)
    pending = np.nonzero(nxt >= 0)[0]
    offsets = np.arange(block)
    chunk = max(1, _SCAN_CHUNK_ELEMENTS // block)
    while pending.size:
        still = []
        for c0 in range(0, pending.size, chunk):
            p = pending[c0 : c0 + chunk]
            b = nxt[p]
            ks = b[:, None] * block + offsets  # (outputs, block) term indices
            valid = ks < k
            ks = np.minimum(ks, k - 1)
            terms = np.where(valid, xa[mi[p][:, None], ks] * wa[ks, ni[p][:, None]], 0)
            prefix = before[b, mi[p], ni[p]][:, None] + np.cumsum(terms, axis=1)
            found = (((prefix > hi) | (prefix < lo)) & valid).any(axis=1)
            hit[p[found]] = True
            miss = p[~found]
            later = cand[miss] & (block_ids[None, :] > nxt[miss][:, None])
            nxt[miss] = np.where(later.any(axis=1), later.argmax(axis=1), -1)
            still.append(miss[nxt[miss] >= 0])
        pending = np.concatenate(still)
    return hit


def _saturating_walk(xa, wa, mi, ni, k_start: int, start, lo: int, hi: int):
    """Step-by-step clamped sums of the listed outputs from term ``k_start`` on, where
    ``start`` is each one's exact, in-range partial sum before that term.

    No per-output bookkeeping of where each first overflows: until then the clamp is the
    identity, so clamping every step from a common earlier start gives the same result.
    """
    rows, ri = np.unique(mi, return_inverse=True)
    cols, ci = np.unique(ni, return_inverse=True)
    # int32 halves the memory traffic; it holds a P <= 30 state plus one product.
    dtype = np.int32 if hi < (1 << 30) else np.int64
    xs = np.ascontiguousarray(xa[rows, k_start:].T, dtype=dtype)  # one row per term
    ws = np.ascontiguousarray(wa[k_start:, cols], dtype=dtype)
    if rows.size * cols.size <= 4 * mi.size:
        # Dense over the covering sub-matrix: whole arrays per term, no gathers.
        state = np.zeros((rows.size, cols.size), dtype=dtype)
        state[ri, ci] = start
        step = np.empty_like(state)
        for xk, wk in zip(xs, ws, strict=True):
            np.multiply.outer(xk, wk, out=step)
            step += state
            np.minimum(step, hi, out=step)
            np.maximum(step, lo, out=state)
        return state[ri, ci].astype(np.int64)
    state = start.astype(dtype)
    for xk, wk in zip(xs, ws, strict=True):
        state = np.clip(state + xk[ri] * wk[ci], lo, hi)
    return state.astype(np.int64)


def _gemm_rows(xa, wa, cfg: ArrayConfig, block: int):
    """gemm() for a slab of rows; the caller slices M to bound memory."""
    lo, hi = cfg.acc_min, cfg.acc_max
    lo_all, hi_all = _bounds(xa, wa, cfg)
    exact = lo_all + hi_all
    final_overflow = (exact > hi) | (exact < lo)
    overflow = final_overflow.copy()
    saturate = cfg.overflow == "saturate"
    acc = exact.copy() if saturate else wrap(exact, cfg.acc_bits)
    if not ((hi_all > hi) | (lo_all < lo)).any():
        return acc, overflow, final_overflow  # no partial sum can leave the range
    before, lo_b, hi_b = _block_sums(xa, wa, block, cfg)
    cand = (before + hi_b > hi) | (before + lo_b < lo)
    # A final overflow certainly set the flag; the others need their candidate blocks.
    mi, ni = np.nonzero(cand.any(axis=0) & ~final_overflow)
    if mi.size:
        overflow[mi, ni] = _overflows(xa, wa, mi, ni, before, cand, block, lo, hi)
    if saturate and overflow.any():
        mi, ni = np.nonzero(overflow)
        b0 = int(cand[:, mi, ni].argmax(axis=0).min())  # no overflow before this block
        acc[mi, ni] = _saturating_walk(xa, wa, mi, ni, b0 * block, before[b0, mi, ni], lo, hi)
    return acc, overflow, final_overflow


def gemm_memory_bytes(m: int, k: int, n: int) -> int:
    """About the most memory :func:`gemm` needs at once for an M x K x N GEMM, operands
    included: the int64 operands and their float copies, the outputs, and one row slab's
    per-block bounds (at least one row, however wide N and K are).

    >>> gemm_memory_bytes(64, 288, 64) < 2**27
    True
    """
    blocks = -(-k // min(max(k, 1), _SCAN_BLOCK))
    slab = max(4 * n * blocks, _SCAN_CHUNK_ELEMENTS)
    return 16 * m * k + 24 * k * n + 34 * m * n + 8 * slab


def gemm(x: ArrayLike, w: ArrayLike, *, cfg: ArrayConfig) -> GemmResult:
    """X (M x K) times W (K x N) as the array computes it, with both overflow flags.

    Parameters
    ----------
    x:
        (M, K) integer activations within the configured activation range.
    w:
        (K, N) integer weights within the configured weight range.
    cfg:
        Supplies P (``acc_bits``) and the overflow mode.

    Returns
    -------
    GemmResult
        P-bit results, the sticky transient flag and the final-sum flag, each (M, N).

    Notes
    -----
    Terms are added in order k = 0..K-1: t_k = s_{k-1} + x_k w_k, s_k = wrap_P(t_k)
    ("wrap") or clamp_P(t_k) ("saturate"), s_{-1} = 0. The flag is set iff some t_k is
    outside [-2**(P-1), 2**(P-1) - 1]. Until the first overflow s_k equals the exact
    prefix sum in both modes, so the flag is "some exact prefix is out of range".

    Examples
    --------
    A transient overflow that wrap mode survives (8-bit accumulator, 4-bit operands):

    >>> cfg = ArrayConfig(acc_bits=8)
    >>> r = gemm([[15, 15, 15]], [[7], [7], [-8]], cfg=cfg)
    >>> int(r.out[0, 0]), bool(r.overflow[0, 0]), bool(r.final_overflow[0, 0])
    (90, True, False)
    >>> r = gemm([[15, 15, 15]], [[7], [7], [-8]], cfg=cfg.replace(overflow="saturate"))
    >>> int(r.out[0, 0])
    7
    """
    xa = check_activations(x, cfg)
    wa = check_weights(w, cfg)
    _check_gemm_shapes(xa, wa)
    m, k = xa.shape
    n = wa.shape[1]
    block = min(k, _SCAN_BLOCK)
    blocks = -(-k // block)
    acc = np.empty((m, n), dtype=np.int64)
    overflow = np.empty((m, n), dtype=bool)
    final_overflow = np.empty((m, n), dtype=bool)
    # Row slabs keep the (blocks, rows, N) temporaries within the chunk budget.
    rows = max(1, _SCAN_CHUNK_ELEMENTS // (4 * max(1, n) * blocks))
    for r0 in range(0, m, rows):
        sl = slice(r0, r0 + rows)
        acc[sl], overflow[sl], final_overflow[sl] = _gemm_rows(xa[sl], wa, cfg, block)
    return GemmResult(out=acc, overflow=overflow, final_overflow=final_overflow)


# -- output stage ------------------------------------------------------------------------


def _per_channel(value: ArrayLike, n: int, name: str, lo: int, hi: int) -> NDArray[np.int64]:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise OperandError(f"{name} must be integer, got dtype {arr.dtype}")
    _check_range(arr, name, lo, hi, name)
    arr = np.broadcast_to(arr.astype(np.int64), (n,)) if arr.ndim == 0 else arr.astype(np.int64)
    if arr.shape != (n,):
        raise OperandError(
            f"{name} must be a scalar or have one value per channel ({n}), got shape {arr.shape}"
        )
    return arr


def round_shift(z: ArrayLike, shift: ArrayLike) -> NDArray[np.int64]:
    """floor(z / 2**shift + 1/2) on int64: round half up (towards +inf at exactly .5, for
    negative z too), the one rounding rule of every integer rescale in oasa.

    >>> round_shift(np.array([5, -5, 6, -6]), 2).tolist()
    [1, -1, 2, -1]
    """
    z = np.asarray(z, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return (z + half) >> s


def output_stage(
    acc: ArrayLike,
    *,
    cfg: ArrayConfig,
    bias: ArrayLike = 0,
    mult: ArrayLike = 1,
    shift: ArrayLike = 0,
    relu: bool = False,
    out_range: tuple[int, int] | None = None,
) -> NDArray[np.int64]:
    """Requantize accumulator results to the next layer's activations.

    Parameters
    ----------
    acc:
        (..., N) int64 accumulator results (P-bit values), channels on the last axis.
    bias, mult, shift:
        Per channel (shape (N,)) or scalar: signed ``bias_bits`` bias, unsigned
        ``mult_bits`` multiplier, shift 0..``shift_max``.
    relu:
        Clamp negative values to 0 before the activation clamp.
    out_range:
        (lo, hi) of the output's integer format when it is not the layer's activation
        format (a signed or wider tensor a host operator reads); the array's output stage
        itself always clamps to [act_min, act_max].

    Returns
    -------
    NDArray[np.int64]
        Activations within the configured activation range.

    Notes
    -----
    y = acc + bias (wide, never wraps); z = y * mult; r = floor(z / 2**shift + 1/2)
    (round half up, i.e. towards +inf at exactly .5, for negative z too); then
    r = max(r, 0) if relu; then clamp to [act_min, act_max].

    Examples
    --------
    >>> cfg = ArrayConfig()
    >>> output_stage(np.array([[5, -5, 3, 100]]), cfg=cfg, mult=1, shift=1).tolist()
    [[3, 0, 2, 15]]
    >>> output_stage(np.array([[-5]]), cfg=cfg.replace(act_signed=True), shift=1).tolist()
    [[-2]]
    """
    a = np.asarray(acc)
    if a.dtype.kind not in "iu":
        raise OperandError(f"acc must be an integer array, got dtype {a.dtype}")
    if a.ndim < 1:
        raise OperandError("acc must have a channel axis")
    _check_range(a, "acc", cfg.acc_min, cfg.acc_max, f"{cfg.acc_bits}-bit accumulator")
    a = a.astype(np.int64)
    n = a.shape[-1]
    b = _per_channel(bias, n, "bias", cfg.bias_min, cfg.bias_max)
    m = _per_channel(mult, n, "mult", 0, cfg.mult_max)
    s = _per_channel(shift, n, "shift", 0, cfg.shift_max)
    r = round_shift((a + b) * m, s)
    if relu:
        r = np.maximum(r, 0)
    lo, hi = (cfg.act_min, cfg.act_max) if out_range is None else out_range
    return np.clip(r, lo, hi)


# -- convolution lowered to GEMM ---------------------------------------------------------


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise OperandError(
            f"kernel {kernel} with stride {stride} and padding {padding} "
            f"does not fit input size {size}"
        )
    return out


def im2col(
    x: ArrayLike, kernel: tuple[int, int], *, stride: int = 1, padding: int = 0
) -> NDArray[np.int64]:
    """Lower an NCHW activation tensor to the GEMM operand of a convolution.

    Returns an (B * Ho * Wo, C * kh * kw) matrix. Rows are ordered (b, oy, ox); columns,
    which are also the accumulation order k, are ordered (c, ky, kx), matching
    ``weight.reshape(O, -1)`` of an (O, C, kh, kw) kernel. Padding inserts zeros.

    >>> im2col(np.arange(4).reshape(1, 1, 2, 2), (2, 2)).tolist()
    [[0, 1, 2, 3]]
    """
    xa = _as_int_array(x, "x", 4)
    if stride < 1 or padding < 0:
        raise OperandError(f"stride must be >= 1 and padding >= 0, got {stride} and {padding}")
    try:
        return ops.im2col(xa, kernel, ops.as_pair(stride), ops.as_pads(padding))[0]
    except InputError as e:
        raise OperandError(str(e)) from None


def conv2d(
    x: ArrayLike, w: ArrayLike, *, cfg: ArrayConfig, stride: int = 1, padding: int = 0
) -> GemmResult:
    """2-D convolution (NCHW input, OIHW kernel) computed as the array's GEMM.

    The result arrays have shape (B, O, Ho, Wo); they are exactly the GEMM of
    :func:`im2col` with ``w.reshape(O, -1).T``, results and flags alike.
    """
    xa = check_activations(x, cfg, ndim=4)
    wa = check_weights(w, cfg, ndim=4)
    if xa.shape[1] != wa.shape[1]:
        raise OperandError(
            f"x has {xa.shape[1]} input channels but w expects {wa.shape[1]} (w is O x C x kh x kw)"
        )
    b, _, h, wd = xa.shape
    o, _, kh, kw = wa.shape
    ho = conv_output_size(h, kh, stride, padding)
    wo = conv_output_size(wd, kw, stride, padding)
    cols = im2col(xa, (kh, kw), stride=stride, padding=padding)
    r = gemm(cols, wa.reshape(o, -1).T, cfg=cfg)

    def to_nchw(a: NDArray) -> NDArray:
        return a.reshape(b, ho, wo, o).transpose(0, 3, 1, 2)

    return GemmResult(to_nchw(r.out), to_nchw(r.overflow), to_nchw(r.final_overflow))
