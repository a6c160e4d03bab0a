"""Spectral norms for the certified bounds.

The bounds need ``||M||_2`` (largest singular value) of quantization-error matrices
``W - Q(W)`` and of dequantized weights. It is computed in float64 from the smaller Gram
matrix's largest eigenvalue (LAPACK ``syevr`` restricted to one eigenvalue) when the smaller
side is at most :data:`EXACT_LIMIT`; larger matrices use ARPACK's Lanczos iteration to a
relative tolerance of 1e-12. Either result is then inflated by :data:`SAFETY` so that
floating-point rounding never makes a bound fall below the value it certifies.

Examples
--------
>>> import numpy as np
>>> round(spectral_norm(np.diag([3.0, -4.0, 1.0])), 6)
4.0
"""

from __future__ import annotations

import numpy as np

__all__ = ["spectral_norm", "EXACT_LIMIT", "SAFETY"]

#: Largest smaller-side dimension handled by the dense Gram eigenvalue solver.
EXACT_LIMIT = 4096
#: Relative inflation covering floating-point error of the norm computation.
SAFETY = 1e-9


def spectral_norm(m: np.ndarray) -> float:
    """Largest singular value of a 2-D array (float64), rounded up by :data:`SAFETY`.

    Parameters
    ----------
    m : array_like, shape (rows, cols)

    Returns
    -------
    float
    """
    import scipy.linalg

    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"spectral_norm needs a 2-D array, got shape {m.shape}")
    if m.size == 0 or not np.any(m):
        return 0.0
    rows, cols = m.shape
    n = min(rows, cols)
    if n <= EXACT_LIMIT:
        g = m @ m.T if rows <= cols else m.T @ m
        lam = scipy.linalg.eigvalsh(g, subset_by_index=[n - 1, n - 1])[0]
        # Gram rounding is at most ~n*eps relative to ||g||; add it explicitly.
        lam = max(float(lam), 0.0) * (1.0 + 4.0 * n * np.finfo(np.float64).eps)
        return float(np.sqrt(lam) * (1.0 + SAFETY))
    from scipy.sparse.linalg import svds
    s = svds(m, k=1, which="LM", return_singular_vectors=False, tol=1e-12,
             random_state=np.random.default_rng(0))
    return float(s[0] * (1.0 + 1e3 * SAFETY))
