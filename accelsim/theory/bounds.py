"""Certified bounds on how far a quantized expert's output can move.

For one expert ``f`` (SwiGLU ``f(x) = W2 (silu(W1 x) * (W3 x))``, or ReLU/GELU
``f(x) = W2 phi(W1 x)``) and its quantized copy ``f_q`` (every ``W`` replaced by the
dequantized ``Q``), :func:`expert_output_bound` returns, per token, a number ``B(x)`` with

    ||f(x) - f_q(x + delta)||_2 <= B(x)   for every ||delta||_2 <= eps

(``eps = 0`` by default: the plain output error of quantization). The derivation is in
``docs/theory.md``; in short, with ``E = W - Q`` and spectral norms ``||.||_2`` computed
exactly once per matrix (:func:`expert_error_norms`):

``analytic`` (the default; needs only the float forward pass at ``x``)::

    alpha = ||E1|| ||x|| + ||Q1|| eps          >= ||Q1 (x + delta) - W1 x||_2
    beta  = ||E3|| ||x|| + ||Q3|| eps          >= ||Q3 (x + delta) - W3 x||_2
    (alpha_inf, beta_inf: the same with the largest row norms, >= the infinity norms)
    eta   = L min(alpha ||b||_inf, alpha_inf ||b||_2) + L min(alpha beta_inf, alpha_inf beta)
            + min(||phi(a)||_inf beta, ||phi(a)||_2 beta_inf)   (SwiGLU, a = W1 x, b = W3 x)
    eta   = L alpha                                                (ReLU, GELU)
    B     = ||E2|| ||h|| + ||Q2|| eta                              (h = hidden of f at x)

``hybrid`` (evaluates ``f_q`` at ``x`` exactly, bounds only the ball around it)::

    B = ||f(x) - f_q(x)|| + ||Q2|| eta_q,   eta_q as eta with alpha = ||Q1|| eps,
        beta = ||Q3|| eps and a, b taken from the quantized expert at x.

Both are certified (never below the true error, up to the stated floating-point allowance);
``hybrid`` is tighter and equals the measured error at ``eps = 0``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> w = {"w1": rng.normal(size=(8, 4)), "w3": rng.normal(size=(8, 4)),
...      "w2": rng.normal(size=(4, 8))}
>>> q = {k: np.round(v * 4) / 4 for k, v in w.items()}   # any dequantized copy
>>> x = rng.normal(size=(3, 4))
>>> b = expert_output_bound(w, q, x)
>>> bool(np.all(b >= measured_output_error(w, q, x)))
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError, Problem
from .activations import Activation, get_activation
from .linalg import spectral_norm

__all__ = ["ExpertPair", "ExpertErrorNorms", "expert_error_norms", "expert_output_bound",
           "pair_output_bound", "measured_output_error", "dequantized", "BOUND_METHODS"]

BOUND_METHODS = ("analytic", "hybrid")
#: Relative allowance for floating-point rounding added to every bound.
ROUNDING = 1e-9


def dequantized(t: Any) -> np.ndarray:
    """Float64 array of a QuantizedTensor (anything with ``.dequantize()``) or an array."""
    if hasattr(t, "dequantize"):
        t = t.dequantize()
    return np.asarray(t, dtype=np.float64)


@dataclass(frozen=True)
class ExpertPair:
    """One expert's float weights and the dequantized weights of its quantized copy
    (float64), validated for shape. ``w`` and ``q`` map ``w1``, ``w2`` (and ``w3`` for
    SwiGLU) to arrays of PyTorch ``Linear`` shape: ``w1``/``w3`` (ffn, d), ``w2`` (d, ffn)."""

    act: Activation
    w: Mapping[str, np.ndarray]
    q: Mapping[str, np.ndarray]

    @classmethod
    def build(cls, weights: Mapping[str, Any], quantized: Mapping[str, Any],
              kind: str = "swiglu") -> "ExpertPair":
        act = get_activation(kind)
        problems: list[Problem] = []
        w: dict[str, np.ndarray] = {}
        q: dict[str, np.ndarray] = {}
        for name in act.matrices:
            for label, src, dst in (("weights", weights, w), ("quantized", quantized, q)):
                if name not in src:
                    problems.append(Problem(f"missing matrix '{name}' for a {kind} expert",
                                            key=f"{label}.{name}"))
                    continue
                arr = dequantized(src[name])
                if arr.ndim != 2 or not np.all(np.isfinite(arr)):
                    problems.append(Problem("must be a finite 2-D array",
                                            key=f"{label}.{name}", value=arr.shape))
                    continue
                dst[name] = arr
        if problems:
            raise ConfigError(problems)
        ffn, d = w["w1"].shape
        want = {"w1": (ffn, d), "w3": (ffn, d), "w2": (d, ffn)}
        for name in act.matrices:
            for label, arrs in (("weights", w), ("quantized", q)):
                if arrs[name].shape != want[name]:
                    problems.append(Problem(f"must have shape {want[name]} (w1 is (ffn, d) = "
                                            f"{(ffn, d)})", key=f"{label}.{name}",
                                            value=arrs[name].shape))
        if problems:
            raise ConfigError(problems)
        return cls(act, w, q)

    @property
    def d(self) -> int:
        return self.w["w1"].shape[1]

    def check_tokens(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 0 or x.shape[-1] != self.d or not np.all(np.isfinite(x)):
            raise ConfigError.single(f"tokens must be a finite array of shape (..., {self.d})",
                                     key="x", value=x.shape)
        return x

    def hidden(self, x: np.ndarray, quantized: bool = False) -> tuple[np.ndarray, ...]:
        """``(phi(a), b, h)`` of the float (or quantized) expert at tokens ``x``; ``b`` is
        None for non-gated experts."""
        m = self.q if quantized else self.w
        s = self.act.fn(x @ m["w1"].T)
        if self.act.gated:
            b = x @ m["w3"].T
            return s, b, s * b
        return s, None, s

    def forward(self, x: np.ndarray, quantized: bool = False) -> np.ndarray:
        m = self.q if quantized else self.w
        return self.hidden(x, quantized)[2] @ m["w2"].T


@dataclass(frozen=True)
class ExpertErrorNorms:
    """Spectral norms of the error matrices ``E = W - Q`` and of the dequantized ``Q``
    (``e3``/``q3`` are 0 for non-gated experts)."""

    e1: float
    e2: float
    e3: float
    q1: float
    q2: float
    q3: float
    # largest row L2 norm of E1, E3, Q1, Q3: bounds the largest entry of E x (for the
    # infinity-norm forms of the product terms)
    e1_row: float = float("nan")
    e3_row: float = float("nan")
    q1_row: float = float("nan")
    q3_row: float = float("nan")


ALL_NORMS = ("e1", "e2", "e3", "q1", "q2", "q3")
#: Norms each bound method needs.
METHOD_NORMS = {"analytic": ALL_NORMS, "hybrid": ("q1", "q2", "q3")}


def expert_error_norms(pair: ExpertPair, names: tuple[str, ...] = ALL_NORMS
                       ) -> ExpertErrorNorms:
    """Exact spectral norms of one expert's quantization errors ``e*`` and quantized
    matrices ``q*``; only ``names`` are computed (the others are NaN)."""
    def norm_of(field: str) -> float:
        if field not in names:
            return float("nan")
        mat = "w" + field[1]
        if mat not in pair.w:
            return 0.0
        m = pair.w[mat] - pair.q[mat] if field[0] == "e" else pair.q[mat]
        return spectral_norm(m)

    def row_of(field: str) -> float:
        mat = "w" + field[1]
        if mat not in pair.w:
            return 0.0
        m = pair.w[mat] - pair.q[mat] if field[0] == "e" else pair.q[mat]
        return float(np.max(np.linalg.norm(m, axis=1)) * (1.0 + ROUNDING))

    rows = {f + "_row": row_of(f) for f in ("e1", "e3", "q1", "q3")}
    return ExpertErrorNorms(**{f: norm_of(f) for f in ALL_NORMS}, **rows)


def _ball_hidden_bound(act: Activation, s: np.ndarray, b: np.ndarray | None,
                       alpha: np.ndarray, beta: np.ndarray, alpha_inf: np.ndarray,
                       beta_inf: np.ndarray) -> np.ndarray:
    """Bound on ``||h(a', b') - h(a, b)||`` given ``||a' - a||_2 <= alpha``,
    ``||a' - a||_inf <= alpha_inf`` and the same for ``b`` with ``beta``, with
    ``s = phi(a)`` (docs/theory.md, section 1). Each product term takes the smaller of its
    two Hoelder forms ``||u v||_2 <= min(||u||_2 ||v||_inf, ||u||_inf ||v||_2)``."""
    lip = act.lipschitz
    if not act.gated:
        return lip * alpha
    b_inf, b_2 = np.max(np.abs(b), axis=-1), np.linalg.norm(b, axis=-1)
    s_inf, s_2 = np.max(np.abs(s), axis=-1), np.linalg.norm(s, axis=-1)
    return (lip * np.minimum(alpha * b_inf, alpha_inf * b_2)
            + lip * np.minimum(alpha * beta_inf, alpha_inf * beta)
            + np.minimum(s_inf * beta, s_2 * beta_inf))


def expert_output_bound(weights: Mapping[str, Any], quantized: Mapping[str, Any], x: Any,
                        kind: str = "swiglu", *, eps: float = 0.0, method: str = "analytic",
                        norms: ExpertErrorNorms | None = None) -> np.ndarray:
    """Certified upper bound on ``||f(x) - f_q(x + delta)||_2`` per token, over all input
    perturbations ``||delta||_2 <= eps``.

    Parameters
    ----------
    weights : mapping
        ``w1`` (ffn, d), ``w3`` (ffn, d; SwiGLU only), ``w2`` (d, ffn) float arrays.
    quantized : mapping
        The same keys, as :class:`~accelsim.quant.QuantizedTensor` (or dequantized arrays).
    x : array_like, shape (..., d)
        Tokens.
    kind : {'swiglu', 'relu', 'gelu'}
    eps : float
        Radius of the input perturbation (0: quantization error only).
    method : {'analytic', 'hybrid'}
        ``analytic`` uses only the float forward pass and error-matrix norms; ``hybrid``
        also evaluates the quantized expert at ``x`` (tighter).
    norms : ExpertErrorNorms, optional
        Precomputed :func:`expert_error_norms` (saves the spectral norms on repeated calls).

    Returns
    -------
    numpy.ndarray, shape x.shape[:-1]
    """
    pair = ExpertPair.build(weights, quantized, kind)
    x = pair.check_tokens(x)
    return pair_output_bound(pair, x, eps=eps, method=method, norms=norms)


def pair_output_bound(pair: ExpertPair, x: np.ndarray, *, eps: float | np.ndarray = 0.0,
                      method: str = "analytic",
                      norms: ExpertErrorNorms | None = None) -> np.ndarray:
    """:func:`expert_output_bound` on a validated :class:`ExpertPair`; ``eps`` may be an
    array broadcasting against ``x.shape[:-1]`` (one radius per token)."""
    if method not in BOUND_METHODS:
        raise ConfigError.single(f"method must be one of {list(BOUND_METHODS)}",
                                 key="method", value=method)
    eps = np.asarray(eps, dtype=np.float64)
    if np.any(~np.isfinite(eps)) or np.any(eps < 0):
        raise ConfigError.single("eps must be finite and >= 0", key="eps", value=eps)
    if norms is None:
        need = METHOD_NORMS[method] if (method == "analytic" or np.any(eps > 0)) else ()
        norms = expert_error_norms(pair, need)
    nr = norms
    act = pair.act
    if method == "analytic":
        s, b, h = pair.hidden(x)
        xn = np.linalg.norm(x, axis=-1)
        alpha = nr.e1 * xn + nr.q1 * eps
        beta = nr.e3 * xn + nr.q3 * eps
        alpha_inf = nr.e1_row * xn + nr.q1_row * eps
        beta_inf = nr.e3_row * xn + nr.q3_row * eps
        eta = _ball_hidden_bound(act, s, b, alpha, beta, alpha_inf, beta_inf)
        bound = nr.e2 * np.linalg.norm(h, axis=-1) + nr.q2 * eta
        return bound * (1.0 + ROUNDING)
    f = pair.forward(x)
    sq, bq, hq = pair.hidden(x, quantized=True)
    fq = hq @ pair.q["w2"].T
    err0 = np.linalg.norm(f - fq, axis=-1)
    ball = 0.0
    if np.any(eps > 0):
        ball = nr.q2 * _ball_hidden_bound(act, sq, bq, nr.q1 * eps, nr.q3 * eps,
                                          nr.q1_row * eps, nr.q3_row * eps)
    allowance = ROUNDING * (np.linalg.norm(f, axis=-1) + np.linalg.norm(fq, axis=-1))
    return (err0 + ball) * (1.0 + ROUNDING) + allowance


def measured_output_error(weights: Mapping[str, Any], quantized: Mapping[str, Any], x: Any,
                          kind: str = "swiglu") -> np.ndarray:
    """The actual ``||f(x) - f_q(x)||_2`` per token (float64), for tightness reports."""
    pair = ExpertPair.build(weights, quantized, kind)
    x = pair.check_tokens(x)
    return np.linalg.norm(pair.forward(x) - pair.forward(x, quantized=True), axis=-1)
