"""GPTQ (Frantar et al., ICLR 2023): second-order weight quantization with error feedback.

Columns of ``W`` (out_features x in_features) are quantized left to right; the rounding
error of each column is spread over the not-yet-quantized columns through the upper
Cholesky factor ``U`` of ``H^-1`` (``H = X^T X`` of calibration inputs ``X``, damped by
``damp * mean(diag H)``), which minimises ``||X W^T - X Q^T||`` column by column. Updates
within a block of ``block_size`` columns are applied immediately, those to later columns
once per block ("lazy batch" updates). Group parameters are those of
:func:`accelsim.quant.quantize_rtn` (same formats, same storage), computed when the first
column of a group is reached from the weights as updated so far (as in the reference
implementation, but also with the pending lazy updates applied, so that the result does
not depend on ``block_size`` beyond float rounding). Columns with ``H[i, i] == 0`` (inputs
that are always zero) are set to 0 before quantization.

With a diagonal ``H`` there is nothing to propagate and GPTQ returns exactly the RTN codes.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from accelsim.errors import ConfigError
from accelsim.kernels import check_bits, pack_bits
from accelsim.quant.rtn import (check_group_size, check_weight_matrix, encode_group,
                                group_params)
from accelsim.quant.tensor import QuantizedTensor, n_groups_for

__all__ = ["gptq", "hessian"]


def hessian(x) -> np.ndarray:
    """``H = X^T X`` (float64) of calibration inputs ``X`` shaped ``(tokens, in_features)``.

    >>> hessian(np.array([[1.0, 2.0], [0.0, 1.0]]))
    array([[1., 2.],
           [2., 5.]])
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError.single("must be 2-D (tokens, in_features)", key="x", value=x.shape)
    return x.T @ x


def _upper_cholesky_of_inverse(H: np.ndarray, damp: float) -> np.ndarray:
    diag = np.diag(H)
    H = H + damp * float(diag.mean()) * np.eye(H.shape[0])
    try:
        L = scipy.linalg.cholesky(H, lower=True)
        Hinv = scipy.linalg.cho_solve((L, True), np.eye(H.shape[0]))
        return scipy.linalg.cholesky(Hinv, lower=False)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise ConfigError.single(f"H (+ damping) is not positive definite ({exc}); increase "
                                 "damp or use more calibration data", key="H") from None


def _check_positive(value, key: str, kind=float):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise ConfigError.single("must be a number", key=key, value=value)
    if kind is int and (int(value) != value or value < 1):
        raise ConfigError.single("must be a positive integer", key=key, value=value)
    if kind is float and not (np.isfinite(value) and value >= 0):
        raise ConfigError.single("must be a finite number >= 0", key=key, value=value)
    return kind(value)


def gptq(w, H, bits: int, group_size: int | None = 128, damp: float = 0.01,
         block_size: int = 128, symmetric: bool = False) -> QuantizedTensor:
    """Quantize ``w`` with GPTQ against calibration statistics ``H = X^T X``.

    Parameters
    ----------
    w : array_like
        Weights ``(out_features, in_features)``.
    H : array_like
        ``(in_features, in_features)`` symmetric positive semi-definite, ``X^T X`` of the
        layer's calibration inputs (:func:`hessian`).
    bits : int
        1..8 (1 bit: sign binarisation per group, as in RTN).
    group_size : int or None, default 128
        As in :func:`accelsim.quant.quantize_rtn`.
    damp : float, default 0.01
        Ridge added to ``H`` as a fraction of its mean diagonal.
    block_size : int, default 128
        Columns per lazy-update block (a speed knob; the result does not depend on it beyond
        float rounding).
    symmetric : bool, default False
        Symmetric grid without zero points.

    Returns
    -------
    QuantizedTensor
        Same format as RTN's for the same arguments.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((256, 16)) @ rng.standard_normal((16, 16))  # correlated inputs
    >>> w = rng.standard_normal((8, 16))
    >>> from accelsim.quant import quantize_rtn
    >>> err = lambda qt: np.linalg.norm(x @ (w - qt.dequantize()).T)
    >>> bool(err(gptq(w, hessian(x), 3, group_size=8)) < err(quantize_rtn(w, 3, group_size=8)))
    True
    """
    bits = check_bits(bits)
    gs = check_group_size(group_size)
    W = check_weight_matrix(w).astype(np.float64)
    symmetric = bool(symmetric)
    damp = _check_positive(damp, "damp")
    block_size = _check_positive(block_size, "block_size", int)
    out, inf = W.shape
    H = np.asarray(H, dtype=np.float64)
    if H.shape != (inf, inf):
        raise ConfigError.single(f"must be ({inf}, {inf}) for in_features={inf}", key="H",
                                 value=H.shape)
    if not np.isfinite(H).all():
        raise ConfigError.single("must be finite (found NaN or inf)", key="H")
    H = H.copy()
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    U = _upper_cholesky_of_inverse(H, damp)

    eff = inf if gs is None else gs
    ng = n_groups_for(inf, gs)
    codes = np.empty((out, inf), dtype=np.uint8)
    scales = np.empty((out, ng), dtype=np.float16)
    zeros = None if (bits == 1 or symmetric) else np.empty((out, ng), dtype=np.uint8)
    s = z = None
    for i1 in range(0, inf, block_size):
        i2 = min(inf, i1 + block_size)
        err = np.empty((out, i2 - i1))
        for col in range(i1, i2):
            if col % eff == 0:
                g = col // eff
                s, z = group_params(_current(W, err, U, i1, i2, col, eff), bits, symmetric)
                scales[:, g] = s
                if zeros is not None:
                    zeros[:, g] = z
            wcol = W[:, col: col + 1]
            q = encode_group(wcol, s, z, bits, symmetric)
            codes[:, col] = q[:, 0]
            e = (wcol[:, 0] - _decode(q[:, 0], s, z, bits, symmetric)) / U[col, col]
            W[:, col + 1: i2] -= np.outer(e, U[col, col + 1: i2])
            err[:, col - i1] = e
        W[:, i2:] -= err @ U[i1:i2, i2:]
    return QuantizedTensor(pack_bits(codes, bits), scales, zeros, bits, gs, (out, inf))


def _current(W, err, U, i1, i2, col, eff):
    """Columns ``[col, col + eff)`` of ``W`` with all updates so far, including the lazy
    updates of this block that columns beyond ``i2`` have not received yet."""
    wg = W[:, col: col + eff]
    end = min(W.shape[1], col + eff)
    if end <= i2 or col == i1:
        return wg
    wg = wg.copy()
    wg[:, i2 - col:] -= err[:, : col - i1] @ U[i1:col, i2:end]
    return wg


def _decode(q, s, z, bits, symmetric):
    s = s.astype(np.float64)
    q = q.astype(np.float64)
    if bits == 1:
        return s * (2.0 * q - 1.0)
    if symmetric:
        return s * (q - (1 << (bits - 1)))
    return s * (q - z.astype(np.float64))
