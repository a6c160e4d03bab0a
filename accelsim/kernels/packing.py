"""Dense bit packing of integer codes (1 to 8 bits per code).

Bit order (the storage contract shared with :mod:`accelsim.precision` and the checkpoints
written by :mod:`accelsim.quant`): the codes form one little-endian bit stream. Code ``i``
occupies stream bits ``[i * bits, (i + 1) * bits)``, least significant bit first, and stream
bit ``p`` is bit ``p % 8`` (LSB = 0) of byte ``p // 8``. Nothing is padded between codes;
only the last byte may carry unused (zero) high bits. ``n`` codes therefore take exactly
``ceil(n * bits / 8)`` bytes. This is ``numpy.packbits(..., bitorder="little")`` applied to
the codes' bits, which is what the numpy references in :mod:`accelsim.kernels.reference` do.

The numba kernels work on chunks of 8 codes, which always fill exactly ``bits`` bytes, so
every chunk is independent and long streams are split over threads.

Examples
--------
>>> import numpy as np
>>> packed = pack_bits(np.array([1, 2, 3]), 2)   # 0b01 | 0b10 << 2 | 0b11 << 4
>>> packed, bin(int(packed[0]))
(array([57], dtype=uint8), '0b111001')
>>> unpack_bits(packed, 2, 3)
array([1, 2, 3], dtype=uint8)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from accelsim.errors import ConfigError

__all__ = ["pack_bits", "unpack_bits", "packed_nbytes", "check_bits"]

_CHUNKS = 256
#: Streams shorter than this many codes are (un)packed on one thread.
PARALLEL_MIN_CODES = 1 << 16


def check_bits(bits, key: str = "bits") -> int:
    """Return ``bits`` as an int if it is an integer in 1..8, else raise :class:`ConfigError`.

    >>> check_bits(4)
    4
    >>> check_bits(9)
    Traceback (most recent call last):
    ...
    accelsim.errors.ConfigError: bits: must be an integer in 1..8 (got 9)
    """
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)) \
            or not 1 <= int(bits) <= 8:
        raise ConfigError.single("must be an integer in 1..8", key=key, value=bits)
    return int(bits)


def packed_nbytes(count: int, bits: int) -> int:
    """Bytes taken by ``count`` codes of ``bits`` bits when densely packed: ``ceil(count*bits/8)``.

    >>> packed_nbytes(3, 3), packed_nbytes(8, 3), packed_nbytes(0, 5)
    (2, 3, 0)
    """
    return (int(count) * int(bits) + 7) // 8


@njit(cache=True)
def _pack_chunks(codes, bits, out, c0, c1):  # pragma: no cover - compiled
    """Serial: chunks ``c0 .. c1`` of 8 codes (``bits`` bytes each)."""
    ub = np.uint64(bits)
    for c in range(c0, c1):
        v = np.uint64(0)
        base = c * 8
        for i in range(8):
            v |= np.uint64(codes[base + i]) << (np.uint64(i) * ub)
        o = c * bits
        for j in range(bits):
            out[o + j] = np.uint8((v >> np.uint64(8 * j)) & np.uint64(0xFF))


@njit(cache=True)
def _pack_tail(codes, bits, out):  # pragma: no cover - compiled
    n = codes.shape[0]
    nfull = n // 8
    v = np.uint64(0)
    for i in range(n - nfull * 8):
        v |= np.uint64(codes[nfull * 8 + i]) << (np.uint64(i) * np.uint64(bits))
    o = nfull * bits
    for j in range(out.shape[0] - o):
        out[o + j] = np.uint8((v >> np.uint64(8 * j)) & np.uint64(0xFF))


@njit(cache=True)
def _unpack_chunks(packed, bits, out, c0, c1):  # pragma: no cover - compiled
    ub = np.uint64(bits)
    mask = np.uint64((1 << bits) - 1)
    for c in range(c0, c1):
        v = np.uint64(0)
        o = c * bits
        for j in range(bits):
            v |= np.uint64(packed[o + j]) << np.uint64(8 * j)
        base = c * 8
        for i in range(8):
            out[base + i] = np.uint8((v >> (np.uint64(i) * ub)) & mask)


@njit(cache=True)
def _unpack_tail(packed, bits, out):  # pragma: no cover - compiled
    n = out.shape[0]
    nfull = n // 8
    rem = n - nfull * 8
    ub = np.uint64(bits)
    mask = np.uint64((1 << bits) - 1)
    v = np.uint64(0)
    o = nfull * bits
    for j in range((rem * bits + 7) // 8):
        v |= np.uint64(packed[o + j]) << np.uint64(8 * j)
    for i in range(rem):
        out[nfull * 8 + i] = np.uint8((v >> (np.uint64(i) * ub)) & mask)


@njit(cache=True, parallel=True)
def _split(fn_is_pack, src, bits, out, nfull):  # pragma: no cover - compiled
    chunks = min(nfull, _CHUNKS)
    for c in prange(chunks):
        c0 = c * nfull // chunks
        c1 = (c + 1) * nfull // chunks
        if fn_is_pack:
            _pack_chunks(src, bits, out, c0, c1)
        else:
            _unpack_chunks(src, bits, out, c0, c1)


def _run(pack: bool, src, bits: int, out, n: int) -> None:
    nfull = n // 8
    if n >= PARALLEL_MIN_CODES:
        _split(pack, src, np.int64(bits), out, np.int64(nfull))
    elif pack:
        _pack_chunks(src, np.int64(bits), out, 0, nfull)
    else:
        _unpack_chunks(src, np.int64(bits), out, 0, nfull)
    if n > nfull * 8:
        (_pack_tail if pack else _unpack_tail)(src, np.int64(bits), out)


def pack_bits(codes, bits: int) -> np.ndarray:
    """Pack integer codes densely, ``bits`` bits each, into a ``uint8`` stream.

    Parameters
    ----------
    codes : array_like of int
        Codes in ``[0, 2**bits)``, any integer dtype and shape; flattened in C order.
    bits : int
        Bits per code, 1 to 8.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of length ``ceil(codes.size * bits / 8)`` (bit order: module docstring).

    Raises
    ------
    accelsim.errors.ConfigError
        ``bits`` outside 1..8, non-integer codes, or a code outside ``[0, 2**bits)``.

    Examples
    --------
    >>> pack_bits([5, 0, 7, 1], 3)    # 5 | 0 << 3 | 7 << 6 | 1 << 9 = 965 = 0x03C5
    array([197,   3], dtype=uint8)
    """
    bits = check_bits(bits)
    arr = np.asarray(codes)
    if arr.size and arr.dtype.kind not in "iub":
        raise ConfigError.single("must be integer codes", key="codes", value=str(arr.dtype))
    flat = arr.reshape(-1)
    if flat.size:
        lo, hi = int(flat.min()), int(flat.max())
        if lo < 0 or hi >= (1 << bits):
            bad = lo if lo < 0 else hi
            raise ConfigError.single(f"codes must lie in [0, {1 << bits}) for {bits} bits",
                                     key="codes", value=bad)
    flat = np.ascontiguousarray(flat, dtype=np.uint8)
    out = np.zeros(packed_nbytes(flat.size, bits), dtype=np.uint8)
    if flat.size:
        _run(True, flat, bits, out, flat.size)
    return out


def unpack_bits(packed, bits: int, count: int) -> np.ndarray:
    """Unpack the first ``count`` codes of a dense ``bits``-bit stream written by :func:`pack_bits`.

    Parameters
    ----------
    packed : array_like of uint8
        The stream; at least ``ceil(count * bits / 8)`` bytes (extra trailing bytes are ignored).
    bits : int
        Bits per code, 1 to 8.
    count : int
        Number of codes to return.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of ``count`` codes.

    Raises
    ------
    accelsim.errors.ConfigError
        ``bits`` outside 1..8, a negative ``count``, a non-``uint8`` stream or one too short.

    Examples
    --------
    >>> unpack_bits(np.array([197, 3], dtype=np.uint8), 3, 4)
    array([5, 0, 7, 1], dtype=uint8)
    """
    bits = check_bits(bits)
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)) \
            or count < 0:
        raise ConfigError.single("must be a non-negative integer", key="count", value=count)
    arr = np.asarray(packed)
    if arr.dtype != np.uint8:
        raise ConfigError.single("must be a uint8 array", key="packed", value=str(arr.dtype))
    flat = np.ascontiguousarray(arr.reshape(-1))
    need = packed_nbytes(count, bits)
    if flat.size < need:
        raise ConfigError.single(f"too short: {count} codes of {bits} bits need {need} bytes",
                                 key="packed", value=int(flat.size))
    out = np.empty(int(count), dtype=np.uint8)
    if count:
        _run(False, flat, bits, out, int(count))
    return out
