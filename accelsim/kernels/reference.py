"""Plain numpy references of the numba kernels (slow, simple, independent code paths).

Tests check each numba kernel against its reference: packing bit for bit, the GEMMs bit for
bit (the references form the same exact integers with int64 ``einsum`` and then apply the
same float32 operations in the same order).

Examples
--------
>>> import numpy as np
>>> pack_bits_reference(np.array([1, 2, 3]), 2)
array([57], dtype=uint8)
>>> unpack_bits_reference(np.array([57], dtype=np.uint8), 2, 3)
array([1, 2, 3], dtype=uint8)
"""

from __future__ import annotations

import numpy as np

from accelsim.kernels.gemm import GemmOperands, check_gemm_inputs, group_row_sums

__all__ = ["pack_bits_reference", "unpack_bits_reference", "int_gemm_reference",
           "bitserial_gemm_reference"]


def pack_bits_reference(codes, bits: int) -> np.ndarray:
    """numpy version of :func:`accelsim.kernels.pack_bits` (no validation)."""
    c = np.asarray(codes).reshape(-1).astype(np.int64)
    bitmat = ((c[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
    return np.packbits(bitmat.reshape(-1), bitorder="little")


def unpack_bits_reference(packed, bits: int, count: int) -> np.ndarray:
    """numpy version of :func:`accelsim.kernels.unpack_bits` (no validation)."""
    stream = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")
    bitmat = stream[: count * bits].reshape(count, bits).astype(np.int64)
    return (bitmat @ (1 << np.arange(bits))).astype(np.uint8)


def _group_integers(xq, ops: GemmOperands, weight_codes) -> np.ndarray:
    """``sum_k xq[t, k] * weight_codes[n, k]`` per group, exact, int64 ``(T, N, G)``."""
    T, K = xq.shape
    gs = ops.group_size
    G = ops.scales.shape[1]
    pad = G * gs - K
    x = np.pad(xq.astype(np.int64), ((0, 0), (0, pad))).reshape(T, G, gs)
    w = np.pad(weight_codes.astype(np.int64), ((0, 0), (0, pad))).reshape(-1, G, gs)
    return np.einsum("tgk,ngk->tng", x, w)


def _epilogue(acc, xq, xs, ops: GemmOperands) -> np.ndarray:
    xsum = group_row_sums(xq, ops.group_size).astype(np.int64)
    d = ops.weight_mult * acc - ops.zeros.astype(np.int64)[None, :, :] * xsum[:, None, :]
    f = np.zeros(d.shape[:2], dtype=np.float32)
    for g in range(d.shape[2]):
        f = f + d[:, :, g].astype(np.float32) * ops.scales[None, :, g]
    return f * xs[:, None]


def int_gemm_reference(xq, xs, qt) -> np.ndarray:
    """numpy version of :func:`accelsim.kernels.int_gemm` (int64 einsum per group)."""
    xq, xs, ops = check_gemm_inputs(xq, xs, qt)
    return _epilogue(_group_integers(xq, ops, ops.codes), xq, xs, ops)


def bitserial_gemm_reference(xq, xs, qt) -> np.ndarray:
    """numpy version of :func:`accelsim.kernels.bitserial_gemm`: explicit bit planes."""
    xq, xs, ops = check_gemm_inputs(xq, xs, qt)
    acc = 0
    for b in range(ops.bits):
        plane = (ops.codes >> b) & 1
        acc = acc + (_group_integers(xq, ops, plane) << b)
    if ops.bits == 0:  # pragma: no cover - bits >= 1 always
        acc = np.zeros((xq.shape[0], ops.codes.shape[0], ops.scales.shape[1]), np.int64)
    return _epilogue(acc, xq, xs, ops)
