"""Certificates that an MoE router's top-k expert set cannot change.

A linear router scores token ``x`` with logits ``z = R x`` (``R``: (experts, d)) and sends it
to the ``k`` experts of largest logit (softmax or any other increasing map does not change
which ones). The *reference* set ``S`` is the float router's top-k at the clean token. The
deployed router uses ``Q`` (the dequantized router, or ``R`` itself when it is not quantized)
on a perturbed token ``x + delta``. For ``i`` in ``S`` and ``j`` outside it::

    (Q (x + delta))_i - (Q (x + delta))_j = (Qx)_i - (Qx)_j + (q_i - q_j) . delta
                                         >= (Qx)_i - (Qx)_j - ||q_i - q_j|| eps

and the bound is attained by ``delta = -eps (q_i - q_j) / ||q_i - q_j||``. The set stays
``S`` for every ``||delta|| <= eps`` if and only if every such pair keeps a positive
difference, so the *certified radius*

    r(x) = min over i in S, j not in S of ((Qx)_i - (Qx)_j) / ||q_i - q_j||

(0 when a difference is already <= 0 at ``delta = 0``) is exact: the set is certified for
``eps < r(x)`` and a perturbation of norm just above ``r(x)`` changes it. The router's own
quantization error enters exactly through ``Qx`` instead of the looser worst case
``||(R - Q)_i - (R - Q)_j|| ||x||``.

Examples
--------
>>> import numpy as np
>>> R = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
>>> x = np.array([[2.0, 1.0]])
>>> certified_radius(R, x, top_k=1).round(4)   # gap 1 over ||r0 - r1|| = sqrt 2
array([0.7071])
>>> certify_routing(R, x, eps=0.5, top_k=1), certify_routing(R, x, eps=0.8, top_k=1)
(array([ True]), array([False]))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .bounds import dequantized

__all__ = ["certify_routing", "certified_radius", "pairwise_row_distances", "topk_indices",
           "radius_from_logits"]

#: Relative allowance (on the logit scale ||x|| max ||q_e||) for floating-point rounding.
ROUNDING = 1e-9


def topk_indices(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(selected, rest)``: per row the indices of the ``k`` largest logits (largest
    first) and of the others. Ties are broken by lower index, as ``torch.topk`` does."""
    order = np.argsort(-logits, axis=-1, kind="stable")
    return order[..., :k], order[..., k:]


def pairwise_row_distances(q: np.ndarray) -> np.ndarray:
    """``D[i, j] = ||q_i - q_j||_2`` computed from explicit differences (a Gram-matrix
    shortcut can round a small distance down, which would over-certify)."""
    q = np.asarray(q, dtype=np.float64)
    d = np.empty((q.shape[0], q.shape[0]))
    for i in range(q.shape[0]):
        d[i] = np.linalg.norm(q - q[i], axis=1)
    return d * (1.0 + 1e-12)


def _check(router_w: Any, x: Any, top_k: Any, router_quantized: Any):
    r = np.asarray(router_w, dtype=np.float64)
    if r.ndim != 2 or not np.all(np.isfinite(r)):
        raise ConfigError.single("router_w must be a finite 2-D array (experts, d)",
                                 key="router_w", value=r.shape)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] != r.shape[1] or not np.all(np.isfinite(x)):
        raise ConfigError.single(f"x must be a finite array of shape (..., {r.shape[1]})",
                                 key="x", value=x.shape)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not (
            1 <= top_k <= r.shape[0]):
        raise ConfigError.single(f"top_k must be an integer in 1..{r.shape[0]}",
                                 key="top_k", value=top_k)
    q = r if router_quantized is None else dequantized(router_quantized)
    if q.shape != r.shape or not np.all(np.isfinite(q)):
        raise ConfigError.single(f"router_quantized must have the router's shape {r.shape}",
                                 key="router_quantized", value=q.shape)
    return r, x, int(top_k), q


def radius_from_logits(ref_logits: np.ndarray, dep_logits: np.ndarray, dist: np.ndarray,
                       k: int, scale: np.ndarray | float = 0.0) -> np.ndarray:
    """Certified radius per token from the reference logits (which fix the set ``S``),
    the deployed router's logits at the clean token and its pairwise row distances.
    ``scale`` (per token) sets the rounding allowance subtracted from every difference."""
    n_exp = ref_logits.shape[-1]
    lead = ref_logits.shape[:-1]
    if k >= n_exp:
        return np.full(lead, np.inf)
    ref = ref_logits.reshape(-1, n_exp)
    dep = dep_logits.reshape(-1, n_exp)
    sel, rest = topk_indices(ref, k)
    rows = np.arange(ref.shape[0])[:, None]
    gap = dep[rows, sel][:, :, None] - dep[rows, rest][:, None, :]
    gap = gap - (ROUNDING * np.broadcast_to(scale, lead).reshape(-1))[:, None, None]
    den = dist[sel[:, :, None], rest[:, None, :]]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den > 0, gap / np.where(den > 0, den, 1.0),
                         np.where(gap > 0, np.inf, 0.0))
    ratio = np.where(gap > 0, ratio, 0.0)
    return ratio.min(axis=(1, 2)).reshape(lead)


def certified_radius(router_w: Any, x: Any, top_k: int, router_quantized: Any = None
                     ) -> np.ndarray:
    """Largest input-perturbation norm under which the top-k set is certified, per token.

    Parameters
    ----------
    router_w : array_like, shape (experts, d)
        Float router weights (they define the reference top-k set).
    x : array_like, shape (..., d)
    top_k : int
    router_quantized : QuantizedTensor or array_like, optional
        The deployed (quantized) router; None means the float router is deployed.

    Returns
    -------
    numpy.ndarray, shape x.shape[:-1]
        ``r(x)``: certified for every ``eps < r(x)`` (``inf`` when ``top_k`` = experts).
    """
    r, x, k, q = _check(router_w, x, top_k, router_quantized)
    scale = np.linalg.norm(x, axis=-1) * np.max(np.linalg.norm(q, axis=1))
    return radius_from_logits(x @ r.T, x @ q.T, pairwise_row_distances(q), k, scale)


def certify_routing(router_w: Any, x: Any, eps: Any, top_k: int,
                    router_quantized: Any = None) -> np.ndarray:
    """True for tokens whose top-k expert set provably stays the float router's set under
    every perturbation ``||delta||_2 <= eps`` (and the router's quantization, when given).

    Parameters
    ----------
    router_w : array_like, shape (experts, d)
    x : array_like, shape (..., d)
    eps : float or array_like broadcasting to x.shape[:-1]
    top_k : int
    router_quantized : QuantizedTensor or array_like, optional

    Returns
    -------
    numpy.ndarray of bool, shape x.shape[:-1]
    """
    eps = np.asarray(eps, dtype=np.float64)
    if np.any(~np.isfinite(eps)) or np.any(eps < 0):
        raise ConfigError.single("eps must be finite and >= 0", key="eps", value=eps)
    return eps < certified_radius(router_w, x, top_k, router_quantized)
