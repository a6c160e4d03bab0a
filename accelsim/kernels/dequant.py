"""Dequantization of group-quantized codes to float32 (the weight-only inference path).

``w[n, k] = s[n, g] * float32(m * q[n, k] - z[n, g])`` with ``g = k // group_size`` and the
operands of :class:`accelsim.kernels.GemmOperands` (``m = 2, z = 1`` for 1-bit sign codes).
The integer in parentheses is exact and so is its float32 value; the product is one
float32 rounding, so this kernel and its numpy reference agree bit for bit.

Examples
--------
>>> import numpy as np
>>> from accelsim.kernels import GemmOperands
>>> ops = GemmOperands(np.array([[0, 1, 3, 2]], np.uint8), np.array([[0.5, 2.0]], np.float32),
...                    np.array([[1, 2]], np.int32), 2, 1, 2)
>>> dequantize(ops)
array([[-0.5,  0. ,  2. ,  0. ]], dtype=float32)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from accelsim.kernels.gemm import GemmOperands, kernel_operands

__all__ = ["dequantize", "dequantize_reference"]

_CHUNKS = 256
#: Matrices with fewer elements are dequantized on one thread.
PARALLEL_MIN_ELEMENTS = 1 << 18


@njit(cache=True)
def _dequant_rows(codes, scales, zeros, gs, mult, out, r0, r1):  # pragma: no cover - compiled
    K = codes.shape[1]
    for n in range(r0, r1):
        for g in range(scales.shape[1]):
            k0 = g * gs
            k1 = min(K, k0 + gs)
            s = scales[n, g]
            z = zeros[n, g]
            row = codes[n, k0:k1]
            dst = out[n, k0:k1]
            for k in range(k1 - k0):
                dst[k] = np.float32(mult * np.int32(row[k]) - z) * s


@njit(cache=True, parallel=True)
def _dequant_parallel(codes, scales, zeros, gs, mult, out):  # pragma: no cover - compiled
    n = codes.shape[0]
    chunks = min(n, _CHUNKS)
    for c in prange(chunks):
        _dequant_rows(codes, scales, zeros, gs, mult, out, c * n // chunks,
                      (c + 1) * n // chunks)


def dequantize(ops) -> np.ndarray:
    """float32 ``(out_features, in_features)`` weights from integer operands (numba).

    ``ops``: a :class:`GemmOperands` or a QuantizedTensor.

    ``QuantizedTensor.dequantize()`` calls this with its cached operands.
    """
    ops = kernel_operands(ops)
    out = np.empty(ops.codes.shape, dtype=np.float32)
    args = (ops.codes, ops.scales, ops.zeros, np.int64(ops.group_size),
            np.int32(ops.weight_mult), out)
    if out.size >= PARALLEL_MIN_ELEMENTS:
        _dequant_parallel(*args)
    elif out.size:
        _dequant_rows(*args, 0, out.shape[0])
    return out


def dequantize_reference(ops: GemmOperands) -> np.ndarray:
    """numpy version of :func:`dequantize`."""
    ops = kernel_operands(ops)
    k = ops.codes.shape[1]

    def expand(a):
        return np.repeat(a, ops.group_size, axis=1)[:, :k]

    q = ops.weight_mult * ops.codes.astype(np.int64) - expand(ops.zeros).astype(np.int64)
    return q.astype(np.float32) * expand(ops.scales)
