"""Round-to-nearest (RTN) weight quantization and per-row activation quantization.

Group parameters (shared with :func:`accelsim.quant.gptq`), for a group of weights ``w``:

* asymmetric, ``b`` in 2..8: the range is widened to contain 0 (``lo = min(w, 0)``,
  ``hi = max(w, 0)``) so that the zero point is a valid code; ``s = (hi - lo) / (2**b - 1)``
  rounded *up* to float16; ``z = round(-lo / s)``; ``q = clip(round(w / s) + z, 0, 2**b - 1)``.
* symmetric, ``b`` in 2..8: ``s = max|w| / (2**(b-1) - 1)`` rounded up to float16;
  ``q = clip(round(w / s), -2**(b-1), 2**(b-1) - 1) + 2**(b-1)`` (offset binary; the code
  ``0`` = ``-2**(b-1)`` is never produced by rounding but is decodable).
* 1 bit, sign binarisation: ``s = mean|w|`` (float16, nearest), ``q = 1`` where ``w >= 0``
  (decoded ``+s``) else ``0`` (decoded ``-s``). ``symmetric`` is ignored; no zero points.

Rounding the scale up (never down) to float16 keeps every weight inside the code range, so
for 2..8 bits every element satisfies ``|w - dequantize(w)| <= s / 2`` with ``s`` the stored
scale. 1-bit codes carry no such bound (the error is ``| |w| - s |``).
"""

from __future__ import annotations

import numpy as np

from accelsim.errors import ConfigError
from accelsim.kernels import check_bits, pack_bits
from accelsim.quant.tensor import QuantizedTensor, n_groups_for

__all__ = ["quantize_rtn", "quantize_activations", "group_params", "encode_group",
           "check_weight_matrix", "check_group_size"]

_FP16_MAX = float(np.finfo(np.float16).max)
_ROWS_PER_CHUNK_ELEMS = 1 << 22   # float64 work arrays of ~32 MiB


def check_weight_matrix(w, key: str = "w") -> np.ndarray:
    """A finite, real, 2-D ``(out_features, in_features)`` ndarray, else ConfigError."""
    arr = np.asarray(w)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ConfigError.single("must be a 2-D (out_features, in_features) matrix",
                                 key=key, value=arr.shape)
    if arr.dtype.kind not in "fiu":
        raise ConfigError.single("must be a real numeric array", key=key, value=str(arr.dtype))
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ConfigError.single("must be finite (found NaN or inf)", key=key)
    return arr


def check_group_size(group_size) -> int | None:
    """``group_size`` as int or None, else ConfigError."""
    if group_size is None:
        return None
    if isinstance(group_size, (bool, np.bool_)) or not isinstance(group_size, (int, np.integer)) \
            or group_size < 1:
        raise ConfigError.single("must be a positive integer or None", key="group_size",
                                 value=group_size)
    return int(group_size)


def _fp16(s: np.ndarray, up: bool) -> np.ndarray:
    """Nearest float16 (``up``: smallest float16 >=) of non-negative float64 values.

    Values beyond the float16 range become inf (checked by :func:`_check_scales`).
    """
    with np.errstate(over="ignore"):
        s16 = np.asarray(s).astype(np.float16)
        if up:
            low = s16.astype(np.float64) < s
            s16[low] = np.nextafter(s16[low], np.float16(np.inf))
    return s16


def _check_scales(s16: np.ndarray) -> np.ndarray:
    if not np.isfinite(s16).all():
        raise ConfigError.single(f"weights too large: a group scale exceeds the float16 range "
                                 f"({_FP16_MAX})", key="w")
    return s16


def group_params(wg: np.ndarray, bits: int, symmetric: bool):
    """Scale (float16) and zero point (uint8, or None) of each group along the last axis.

    Parameters
    ----------
    wg : numpy.ndarray
        float64 weights ``(..., group_len)``.
    bits : int
        1..8.
    symmetric : bool
        Symmetric grid (ignored for 1 bit).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray or None)
        ``scales`` float16 ``wg.shape[:-1]``; ``zeros`` uint8 of the same shape, or None.

    Examples
    --------
    >>> s, z = group_params(np.array([[-1.0, 0.5, 2.0]]), 2, False)   # (2 - -1) / 3 = 1
    >>> s, z
    (array([1.], dtype=float16), array([1], dtype=uint8))
    """
    if bits == 1:
        return _check_scales(_fp16(np.abs(wg).mean(axis=-1), up=False)), None
    if symmetric:
        qmax = (1 << (bits - 1)) - 1
        return _check_scales(_fp16(np.abs(wg).max(axis=-1) / qmax, up=True)), None
    lo = np.minimum(wg.min(axis=-1), 0.0)
    hi = np.maximum(wg.max(axis=-1), 0.0)
    s16 = _check_scales(_fp16((hi - lo) / ((1 << bits) - 1), up=True))
    s = s16.astype(np.float64)
    safe = np.where(s > 0, s, 1.0)
    z = np.clip(np.rint(-lo / safe), 0, (1 << bits) - 1).astype(np.uint8)
    return s16, z


def encode_group(wg: np.ndarray, scales: np.ndarray, zeros: np.ndarray | None, bits: int,
                 symmetric: bool) -> np.ndarray:
    """Codes (uint8) of float64 weights ``(..., group_len)`` given their group parameters.

    >>> encode_group(np.array([[-1.0, 0.5, 2.0]]), np.array([1.0]), np.array([1]), 2, False)
    array([[0, 1, 3]], dtype=uint8)

    (``round`` is numpy's round-half-to-even: ``0.5 -> 0``.)
    """
    if bits == 1:
        return (wg >= 0).astype(np.uint8)
    s = np.asarray(scales, dtype=np.float64)[..., None]
    safe = np.where(s > 0, s, 1.0)
    if symmetric:
        half = 1 << (bits - 1)
        q = np.clip(np.rint(wg / safe), -half, half - 1) + half
    else:
        z = np.asarray(zeros, dtype=np.float64)[..., None]
        q = np.clip(np.rint(wg / safe) + z, 0, (1 << bits) - 1)
    return q.astype(np.uint8)


def _quantize_rows(w64: np.ndarray, bits: int, gs: int, symmetric: bool):
    out, inf = w64.shape
    n_full = inf // gs
    parts = []
    if n_full:
        parts.append(w64[:, : n_full * gs].reshape(out, n_full, gs))
    if n_full * gs < inf:
        parts.append(w64[:, n_full * gs:].reshape(out, 1, inf - n_full * gs))
    codes, scales, zeros = [], [], []
    for part in parts:
        s, z = group_params(part, bits, symmetric)
        codes.append(encode_group(part, s, z, bits, symmetric).reshape(out, -1))
        scales.append(s)
        zeros.append(z)
    z_all = None if zeros[0] is None else np.concatenate(zeros, axis=1)
    return np.concatenate(codes, axis=1), np.concatenate(scales, axis=1), z_all


def quantize_rtn(w, bits: int, group_size: int | None = 128,
                 symmetric: bool = False) -> QuantizedTensor:
    """Round-to-nearest group quantization of a weight matrix.

    Parameters
    ----------
    w : array_like
        Real weights ``(out_features, in_features)`` (a Linear layer's ``weight``).
    bits : int
        1..8. 1 bit is sign binarisation to ``+-mean|w|`` per group.
    group_size : int or None, default 128
        Columns per group along ``in_features``; the last group may be shorter. ``None``:
        one group per row.
    symmetric : bool, default False
        Symmetric grid without stored zero points.

    Returns
    -------
    QuantizedTensor
        Group parameters and codes as in the module docstring; every element within
        ``scale / 2`` of ``w`` for 2..8 bits.

    Raises
    ------
    accelsim.errors.ConfigError
        Bad ``w`` (not 2-D, not finite), ``bits`` or ``group_size``, or a scale beyond float16.

    Examples
    --------
    >>> qt = quantize_rtn(np.array([[0.0, 1.0, 2.0, 3.0]]), 2, group_size=None)
    >>> qt.scales, qt.zeros, qt.codes()
    (array([[1.]], dtype=float16), array([[0]], dtype=uint8), array([[0, 1, 2, 3]], dtype=uint8))
    """
    bits = check_bits(bits)
    gs = check_group_size(group_size)
    arr = check_weight_matrix(w)
    symmetric = bool(symmetric)
    out, inf = arr.shape
    eff = inf if gs is None else gs
    ng = n_groups_for(inf, gs)
    codes = np.empty((out, inf), dtype=np.uint8)
    scales = np.empty((out, ng), dtype=np.float16)
    zeros = None if (bits == 1 or symmetric) else np.empty((out, ng), dtype=np.uint8)
    rows = max(1, _ROWS_PER_CHUNK_ELEMS // inf)
    for r0 in range(0, out, rows):
        r1 = min(out, r0 + rows)
        c, s, z = _quantize_rows(arr[r0:r1].astype(np.float64), bits, eff, symmetric)
        codes[r0:r1], scales[r0:r1] = c, s
        if zeros is not None:
            zeros[r0:r1] = z
    return QuantizedTensor(pack_bits(codes, bits), scales, zeros, bits, gs, (out, inf))


def quantize_activations(x, bits: int = 8):
    """Symmetric per-row (per-token) quantization of activations to signed integer codes.

    Parameters
    ----------
    x : array_like
        Real activations ``(tokens, features)``.
    bits : int, default 8
        2..8. Codes lie in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``int8`` codes ``(tokens, features)`` and ``float32`` scales ``(tokens,)`` with
        ``x ~= codes * scale[:, None]``; ``scale = max|x_row| / (2**(bits-1) - 1)`` (1.0 for an
        all-zero row) and ``|x - codes * scale| <= scale / 2``.

    Examples
    --------
    >>> q, s = quantize_activations(np.array([[0.5, -1.27, 0.0]]))
    >>> q, s
    (array([[  50, -127,    0]], dtype=int8), array([0.01], dtype=float32))
    """
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)) \
            or not 2 <= bits <= 8:
        raise ConfigError.single("must be an integer in 2..8", key="bits", value=bits)
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise ConfigError.single("must be a real 2-D array (tokens, features)", key="x",
                                 value=f"{arr.dtype} {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ConfigError.single("must be finite (found NaN or inf)", key="x")
    qmax = (1 << (int(bits) - 1)) - 1
    x64 = arr.astype(np.float64)
    amax = np.abs(x64).max(axis=1) if arr.shape[1] else np.zeros(arr.shape[0])
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    q = np.clip(np.rint(x64 / scale.astype(np.float64)[:, None]), -qmax, qmax)
    return q.astype(np.int8), scale
