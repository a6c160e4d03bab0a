"""Integer and bit-serial GEMM of int8 activations with group-quantized weights.

Both kernels compute ``out[t, n] ~= sum_k (xs[t] * xq[t, k]) * w[n, k]`` where the weight is
stored as integer codes ``q`` with one float scale ``s`` and one integer zero point ``z`` per
(row, group of ``group_size`` consecutive input columns)::

    w[n, k] = s[n, g] * (m * q[n, k] - z[n, g])          (g = k // group_size)

with ``m = 1`` for ordinary codes and ``m = 2, z = 1`` for 1-bit sign codes
(``w = s * (2q - 1) = +-s``). Per group the kernel forms the exact integer

    d[t, n, g] = m * sum_k xq[t, k] q[n, k] - z[n, g] * sum_k xq[t, k]

(the row-sum trick: the zero point is applied once per group, not per element), with an
int32 accumulator, then the float part in a fixed order, in float32::

    f = 0;  for g: f = f + float32(d[t, n, g]) * s[n, g];   out[t, n] = f * xs[t]

``int_gemm`` accumulates ``xq * q`` directly (a 4-token x 2-row register-blocked micro-kernel,
vectorised by LLVM into ``vpmaddwd``); ``bitserial_gemm`` is the bit-serial datapath: the
weight codes are split into bit planes ``(q >> b) & 1``, each plane's integer dot product
with the activations is formed separately, and the planes are combined by shift-and-add
``sum_b plane_b << b``. The integer per group is the same, and so is the float epilogue, so
the two kernels agree bit for bit (and with the numpy reference in
:mod:`accelsim.kernels.reference`).

Exactness: with ``|xq| <= 128``, ``|d| <= 128 * group_size * max(2 * (2**bits - 1), 3)``
(the 3 is for 1-bit codes, ``m = 2``), which must stay below ``2**31`` so that the whole
group computation fits an int32 datapath; :func:`int_gemm` checks this (any ``group_size``
up to 32,896 is fine at 8 bits).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from accelsim.errors import ConfigError

__all__ = ["GemmOperands", "int_gemm", "bitserial_gemm", "group_row_sums", "check_gemm_inputs",
           "kernel_operands"]

_INT32_MAX = 2**31 - 1
_CHUNKS = 256                 # work items handed to the thread pool per call
#: Below this many multiply-accumulates a call runs on one thread: thread start-up and
#: barrier costs exceed the work (and hurt badly when the cores are shared).
PARALLEL_MIN_MACS = 1 << 20


class GemmOperands(NamedTuple):
    """The integer view of a quantized weight matrix that the GEMM kernels consume.

    ``QuantizedTensor.gemm_operands()`` returns one (cached). ``codes`` is ``uint8``
    ``(out_features, in_features)``; ``scales`` ``float32`` and ``zeros`` ``int32``, both
    ``(out_features, n_groups)``; ``group_size`` is the effective group length (``in_features``
    when the tensor has one group per row); ``weight_mult`` is ``m`` above (2 for 1-bit).
    """

    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    group_size: int
    weight_mult: int
    bits: int


# --------------------------------------------------------------------------- numba kernels

@njit(cache=True, inline="always")
def _dot_1x1(xr, wr):  # pragma: no cover - compiled
    a = np.int32(0)
    for k in range(xr.shape[0]):
        a = np.int32(a + np.int16(xr[k]) * np.int16(wr[k]))
    return a


@njit(cache=True)
def _tile_1x1(xq, xs, codes, scales, zeros, xsum, gs, mult, out, t, n):  # pragma: no cover
    K = xq.shape[1]
    f = np.float32(0.0)
    for g in range(scales.shape[1]):
        k0 = g * gs
        k1 = min(K, k0 + gs)
        a = _dot_1x1(xq[t, k0:k1], codes[n, k0:k1])
        f += np.float32(mult * a - zeros[n, g] * xsum[t, g]) * scales[n, g]
    out[t, n] = f * xs[t]


@njit(cache=True)
def _tile_4x2(xq, xs, codes, scales, zeros, xsum, gs, mult, out, t0, n0):  # pragma: no cover
    K = xq.shape[1]
    f00 = np.float32(0.0)
    f01 = np.float32(0.0)
    f10 = np.float32(0.0)
    f11 = np.float32(0.0)
    f20 = np.float32(0.0)
    f21 = np.float32(0.0)
    f30 = np.float32(0.0)
    f31 = np.float32(0.0)
    for g in range(scales.shape[1]):
        k0 = g * gs
        k1 = min(K, k0 + gs)
        # 1-D row views: with them LLVM sees unit-stride loads and vectorises the k loop.
        c0 = codes[n0, k0:k1]
        c1 = codes[n0 + 1, k0:k1]
        r0 = xq[t0, k0:k1]
        r1 = xq[t0 + 1, k0:k1]
        r2 = xq[t0 + 2, k0:k1]
        r3 = xq[t0 + 3, k0:k1]
        a00 = np.int32(0)
        a01 = np.int32(0)
        a10 = np.int32(0)
        a11 = np.int32(0)
        a20 = np.int32(0)
        a21 = np.int32(0)
        a30 = np.int32(0)
        a31 = np.int32(0)
        for k in range(k1 - k0):
            w0 = np.int16(c0[k])
            w1 = np.int16(c1[k])
            x0 = np.int16(r0[k])
            x1 = np.int16(r1[k])
            x2 = np.int16(r2[k])
            x3 = np.int16(r3[k])
            # numba widens int products to int64; the int32() truncation lets LLVM narrow
            # the multiply-add back to 32 bits (exact: see the module's overflow bound).
            a00 = np.int32(a00 + x0 * w0)
            a01 = np.int32(a01 + x0 * w1)
            a10 = np.int32(a10 + x1 * w0)
            a11 = np.int32(a11 + x1 * w1)
            a20 = np.int32(a20 + x2 * w0)
            a21 = np.int32(a21 + x2 * w1)
            a30 = np.int32(a30 + x3 * w0)
            a31 = np.int32(a31 + x3 * w1)
        s0 = scales[n0, g]
        s1 = scales[n0 + 1, g]
        z0 = zeros[n0, g]
        z1 = zeros[n0 + 1, g]
        f00 += np.float32(mult * a00 - z0 * xsum[t0, g]) * s0
        f01 += np.float32(mult * a01 - z1 * xsum[t0, g]) * s1
        f10 += np.float32(mult * a10 - z0 * xsum[t0 + 1, g]) * s0
        f11 += np.float32(mult * a11 - z1 * xsum[t0 + 1, g]) * s1
        f20 += np.float32(mult * a20 - z0 * xsum[t0 + 2, g]) * s0
        f21 += np.float32(mult * a21 - z1 * xsum[t0 + 2, g]) * s1
        f30 += np.float32(mult * a30 - z0 * xsum[t0 + 3, g]) * s0
        f31 += np.float32(mult * a31 - z1 * xsum[t0 + 3, g]) * s1
    out[t0, n0] = f00 * xs[t0]
    out[t0, n0 + 1] = f01 * xs[t0]
    out[t0 + 1, n0] = f10 * xs[t0 + 1]
    out[t0 + 1, n0 + 1] = f11 * xs[t0 + 1]
    out[t0 + 2, n0] = f20 * xs[t0 + 2]
    out[t0 + 2, n0 + 1] = f21 * xs[t0 + 2]
    out[t0 + 3, n0] = f30 * xs[t0 + 3]
    out[t0 + 3, n0 + 1] = f31 * xs[t0 + 3]


@njit(cache=True)
def _int_gemm_rows(xq, xs, codes, scales, zeros, xsum, gs, mult, out, b0, b1):  # pragma: no cover
    """Serial: output rows ``2*b0 .. 2*b1`` (pairs of rows), all tokens."""
    T = xq.shape[0]
    N = codes.shape[0]
    t4 = T - T % 4
    for bi in range(b0, b1):
        n0 = 2 * bi
        if n0 + 1 < N:
            for t0 in range(0, t4, 4):
                _tile_4x2(xq, xs, codes, scales, zeros, xsum, gs, mult, out, t0, n0)
            for t in range(t4, T):
                _tile_1x1(xq, xs, codes, scales, zeros, xsum, gs, mult, out, t, n0)
                _tile_1x1(xq, xs, codes, scales, zeros, xsum, gs, mult, out, t, n0 + 1)
        else:
            for t in range(T):
                _tile_1x1(xq, xs, codes, scales, zeros, xsum, gs, mult, out, t, n0)


@njit(cache=True)
def _bitserial_rows(xq, xs, codes, scales, zeros, xsum, gs, mult, bits, out, n0,
                    n1):  # pragma: no cover
    """Serial: output rows ``n0 .. n1``, all tokens."""
    T, K = xq.shape
    for n in range(n0, n1):
        for t in range(T):
            f = np.float32(0.0)
            for g in range(scales.shape[1]):
                k0 = g * gs
                k1 = min(K, k0 + gs)
                xr = xq[t, k0:k1]
                wr = codes[n, k0:k1]
                acc = np.int32(0)
                for b in range(bits):
                    plane_dot = np.int32(0)
                    for k in range(k1 - k0):
                        bit = np.int16((wr[k] >> b) & 1)
                        plane_dot = np.int32(plane_dot + np.int16(xr[k]) * bit)
                    acc = np.int32(acc + (plane_dot << b))
                f += np.float32(mult * acc - zeros[n, g] * xsum[t, g]) * scales[n, g]
            out[t, n] = f * xs[t]


@njit(cache=True, parallel=True)
def _int_gemm_parallel(xq, xs, codes, scales, zeros, xsum, gs, mult, out):  # pragma: no cover
    nb = (codes.shape[0] + 1) // 2
    chunks = min(nb, _CHUNKS)
    for c in prange(chunks):
        _int_gemm_rows(xq, xs, codes, scales, zeros, xsum, gs, mult, out,
                       c * nb // chunks, (c + 1) * nb // chunks)


@njit(cache=True, parallel=True)
def _bitserial_parallel(xq, xs, codes, scales, zeros, xsum, gs, mult, bits,
                        out):  # pragma: no cover
    n = codes.shape[0]
    chunks = min(n, _CHUNKS)
    for c in prange(chunks):
        _bitserial_rows(xq, xs, codes, scales, zeros, xsum, gs, mult, bits, out,
                        c * n // chunks, (c + 1) * n // chunks)


# --------------------------------------------------------------------------- python side

def group_row_sums(xq: np.ndarray, group_size: int) -> np.ndarray:
    """Exact per-group row sums ``sum_k xq[t, k]`` over each group of columns, as int32.

    >>> group_row_sums(np.array([[1, 2, 3, -4, 5]], dtype=np.int8), 2)
    array([[ 3, -1,  5]], dtype=int32)
    """
    K = xq.shape[1]
    starts = np.arange(0, K, group_size)
    if xq.shape[0] == 0 or K == 0:
        return np.zeros((xq.shape[0], len(starts)), dtype=np.int32)
    return np.add.reduceat(xq.astype(np.int32), starts, axis=1).astype(np.int32)


def _readonly(a: np.ndarray, dtype) -> np.ndarray:
    # one array type per kernel argument (numba compiles writable and read-only separately)
    v = np.ascontiguousarray(a, dtype=dtype).view()
    v.setflags(write=False)
    return v


def kernel_operands(qt) -> GemmOperands:
    """The :class:`GemmOperands` of ``qt`` checked and in the kernels' exact array types.

    ``qt`` is a QuantizedTensor (anything with ``gemm_operands()``) or a GemmOperands.
    """
    ops = qt if isinstance(qt, GemmOperands) else None
    if ops is None:
        get = getattr(qt, "gemm_operands", None)
        if get is None:
            raise ConfigError.single("must be a QuantizedTensor (or GemmOperands)", key="qt",
                                     value=type(qt).__name__)
        ops = get()
    codes = np.asarray(ops.codes)
    if codes.ndim != 2 or codes.dtype != np.uint8:
        raise ConfigError.single("must be a 2-D uint8 array", key="codes",
                                 value=f"{codes.dtype} {codes.shape}")
    gs = int(ops.group_size)
    if gs < 1:
        raise ConfigError.single("must be >= 1", key="group_size", value=gs)
    want = (codes.shape[0], -(-codes.shape[1] // gs))
    for name in ("scales", "zeros"):
        if np.shape(getattr(ops, name)) != want:
            raise ConfigError.single(f"must have shape {want}", key=name,
                                     value=np.shape(getattr(ops, name)))
    return GemmOperands(_readonly(codes, np.uint8), _readonly(ops.scales, np.float32),
                        _readonly(ops.zeros, np.int32), gs, int(ops.weight_mult),
                        int(ops.bits))


def check_gemm_inputs(xq, xs, qt):
    """Validate and normalise GEMM inputs; return ``(xq, xs, operands)`` ready for the kernels.

    ``xq`` must be a 2-D int8 array ``(tokens, in_features)``; ``xs`` one float scale per token.
    """
    ops = kernel_operands(qt)
    xq = np.asarray(xq)
    if xq.ndim != 2 or xq.dtype != np.int8:
        raise ConfigError.single("must be a 2-D int8 array (tokens, in_features)", key="xq",
                                 value=f"{xq.dtype} {xq.shape}")
    n, k = ops.codes.shape
    if xq.shape[1] != k:
        raise ConfigError.single(f"has {xq.shape[1]} columns but the weight has in_features={k}",
                                 key="xq", value=xq.shape)
    xs = np.asarray(xs)
    if xs.shape != (xq.shape[0],) or xs.dtype.kind != "f":
        raise ConfigError.single("must be a float array with one scale per token row", key="xs",
                                 value=f"{xs.dtype} {xs.shape}")
    bound = 128 * ops.group_size * max(2 * (2**ops.bits - 1), 3)
    if bound > _INT32_MAX:
        raise ConfigError.single(
            f"group of {ops.group_size} columns at {ops.bits} bits can overflow the int32 "
            "accumulator; use a smaller group_size", key="group_size", value=ops.group_size)
    return (np.ascontiguousarray(xq), np.ascontiguousarray(xs, dtype=np.float32), ops)


def _prepare(xq, xs, qt):
    xq, xs, ops = check_gemm_inputs(xq, xs, qt)
    out = np.empty((xq.shape[0], ops.codes.shape[0]), dtype=np.float32)
    xsum = group_row_sums(xq, ops.group_size)
    args = (xq, xs, ops.codes, ops.scales, ops.zeros, xsum, np.int64(ops.group_size),
            np.int64(ops.weight_mult))
    return ops, out, args


def _parallel(out, k) -> bool:
    return out.size * k >= PARALLEL_MIN_MACS


def int_gemm(xq: np.ndarray, xs: np.ndarray, qt) -> np.ndarray:
    """Integer GEMM ``(xs * xq) @ W^T`` with exact int32 accumulation per weight group.

    Parameters
    ----------
    xq : numpy.ndarray
        int8 activation codes, ``(tokens, in_features)`` (from
        :func:`accelsim.quant.quantize_activations`).
    xs : numpy.ndarray
        float32 scale of each token row, ``(tokens,)``.
    qt : QuantizedTensor
        The weight, ``(out_features, in_features)`` (or its :class:`GemmOperands`).

    Returns
    -------
    numpy.ndarray
        float32 ``(tokens, out_features)``; numba, parallel over output rows. The formula and
        the order of the float operations are in the module docstring.

    Examples
    --------
    >>> from accelsim.quant import quantize_rtn, quantize_activations
    >>> w = np.array([[0.5, -1.0, 0.25, 1.0]], dtype=np.float32)
    >>> qt = quantize_rtn(w, 8, group_size=2)
    >>> xq, xs = quantize_activations(np.array([[1.0, 2.0, -1.0, 0.5]], dtype=np.float32))
    >>> y = int_gemm(xq, xs, qt)
    >>> y.shape, bool(abs(y[0, 0] - (0.5 - 2.0 - 0.25 + 0.5)) < 0.02)
    ((1, 1), True)
    """
    ops, out, args = _prepare(xq, xs, qt)
    if out.size == 0:
        return out
    if _parallel(out, ops.codes.shape[1]):
        _int_gemm_parallel(*args, out)
    else:
        _int_gemm_rows(*args, out, 0, (out.shape[1] + 1) // 2)
    return out


def bitserial_gemm(xq: np.ndarray, xs: np.ndarray, qt) -> np.ndarray:
    """Bit-serial GEMM: per weight bit plane integer dot products, combined by shift-and-add.

    Same arguments and result as :func:`int_gemm`, bit for bit; it models the datapath of
    bit-serial accelerators (one weight bit per cycle, Stripes/Loom/BISMO style) and is
    ``bits`` times more work on a CPU.

    Examples
    --------
    >>> from accelsim.quant import quantize_rtn, quantize_activations
    >>> rng = np.random.default_rng(0)
    >>> qt = quantize_rtn(rng.standard_normal((3, 8)).astype(np.float32), 3, group_size=4)
    >>> xq, xs = quantize_activations(rng.standard_normal((5, 8)).astype(np.float32))
    >>> bool(np.array_equal(bitserial_gemm(xq, xs, qt), int_gemm(xq, xs, qt)))
    True
    """
    ops, out, args = _prepare(xq, xs, qt)
    if out.size == 0:
        return out
    if _parallel(out, ops.codes.shape[1]):
        _bitserial_parallel(*args, np.int64(ops.bits), out)
    else:
        _bitserial_rows(*args, np.int64(ops.bits), out, 0, out.shape[1])
    return out
