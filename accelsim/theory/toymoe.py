"""A small patch-level MoE classifier trained with numpy (the paper's two-layer model).

A sample is a set of ``n`` patches ``x_j`` in ``R^d``; label ``y`` in ``{-1, +1}``. One MoE
layer of ``E`` experts routes every patch to its top-1 expert (``argmax R x_j``), weighted by
the softmax probability ``g`` of that expert (Switch Transformer style). Expert ``e`` is a
two-layer ReLU network with ``m`` neurons and a fixed second layer ``a`` (half ``+1``, half
``-1``), as in the theoretical model::

    F(X) = (1/n) sum_j g_{e_j}(x_j) sum_r a_r relu(w_{e_j, r} . x_j)

Training minimises the logistic loss ``log(1 + exp(-y F))`` plus Switch's load-balancing
term ``alpha E sum_e frac_e mean_prob_e`` with Adam (hand-written gradients). Everything is
seeded. ``pruned`` (bool per expert) in :func:`forward` and :func:`accuracy` removes those
experts: their router logits are dropped, so every patch goes to the best surviving expert
with the softmax taken over the survivors.

Examples
--------
>>> import numpy as np
>>> p = init_params(d=4, experts=2, neurons=2, seed=0)
>>> X = np.ones((3, 5, 4)); y = np.array([1, -1, 1])
>>> forward(p, X).shape
(3,)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["ToyParams", "init_params", "forward", "loss_and_grads", "train", "routing",
           "accuracy"]


@dataclass(frozen=True)
class ToyParams:
    """Router ``(E, d)``, expert first layers ``(E, m, d)``, fixed second layer ``(m,)``."""

    router: np.ndarray
    w: np.ndarray
    a: np.ndarray

    @property
    def experts(self) -> int:
        return self.w.shape[0]


def init_params(d: int, experts: int, neurons: int, seed: int, *, w_std: float = 0.3,
                router_std: float = 0.01) -> ToyParams:
    rng = np.random.default_rng(seed)
    a = np.where(np.arange(neurons) < neurons // 2, 1.0, -1.0)
    return ToyParams(rng.normal(0, router_std, (experts, d)),
                     rng.normal(0, w_std, (experts, neurons, d)), a)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def routing(p: ToyParams, X: np.ndarray) -> np.ndarray:
    """Selected expert of every patch, shape ``(samples, patches)``."""
    return np.argmax(X @ p.router.T, axis=-1)


def _pass(p: ToyParams, X: np.ndarray, w: np.ndarray | None = None, pruned=None):
    B, n, d = X.shape
    P = X.reshape(B * n, d)
    logits = P @ p.router.T
    if pruned is not None and np.any(pruned):
        logits = np.where(np.asarray(pruned, dtype=bool)[None, :], -np.inf, logits)
    probs = _softmax(logits)
    sel = np.argmax(probs, axis=1)
    rows = np.arange(P.shape[0])
    g = probs[rows, sel]
    ws = (p.w if w is None else w)[sel]                     # (N, m, d)
    pre = np.einsum("nmd,nd->nm", ws, P)
    f = np.maximum(pre, 0.0) @ p.a
    out = (g * f).reshape(B, n).mean(axis=1)
    return out, (P, probs, sel, g, pre, f, rows)


def forward(p: ToyParams, X: np.ndarray, w: np.ndarray | None = None,
            pruned=None) -> np.ndarray:
    """``F(X)`` per sample; ``w`` replaces the expert weights (e.g. dequantized ones);
    ``pruned`` experts are never selected (module docstring)."""
    return _pass(p, X, w, pruned)[0]


def accuracy(p: ToyParams, X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
             pruned=None) -> float:
    return float(np.mean(np.sign(forward(p, X, w, pruned)) == y))


def loss_and_grads(p: ToyParams, X: np.ndarray, y: np.ndarray, aux: float = 0.01):
    """Loss and gradients ``(d router, d w)``."""
    B, n, _ = X.shape
    out, (P, probs, sel, g, pre, f, rows) = _pass(p, X)
    margin = y * out
    loss = float(np.mean(np.logaddexp(0.0, -margin)))
    dout = -y * np.exp(-np.logaddexp(0.0, margin)) / B       # d loss / d F
    dpatch = np.repeat(dout / n, n)                           # d loss / d (g f) per patch
    E = p.experts
    dz = np.zeros_like(probs)
    dz[rows, sel] = dpatch * f * g
    dz -= (dpatch * f * g)[:, None] * probs                   # softmax Jacobian
    frac = np.bincount(sel, minlength=E) / sel.size
    loss += aux * E * float(frac @ probs.mean(axis=0))
    v = aux * E * frac / probs.shape[0]
    dz += probs * (v[None, :] - (probs @ v)[:, None])
    d_router = dz.T @ P
    dpre = (dpatch * g)[:, None] * (pre > 0) * p.a[None, :]   # (N, m)
    d_w = np.zeros_like(p.w)
    for e in range(E):                  # per expert, its patches' outer products summed
        mine = sel == e
        if mine.any():
            d_w[e] = dpre[mine].T @ P[mine]
    return loss, d_router, d_w


def train(p: ToyParams, X: np.ndarray, y: np.ndarray, *, steps: int, lr: float,
          batch: int, seed: int, aux: float = 0.01) -> ToyParams:
    """Adam on minibatches; returns new parameters (``p`` is not modified)."""
    rng = np.random.default_rng(seed)
    params = [p.router.copy(), p.w.copy()]
    m = [np.zeros_like(t) for t in params]
    v = [np.zeros_like(t) for t in params]
    b1, b2 = 0.9, 0.999
    for t in range(1, steps + 1):
        idx = rng.integers(0, X.shape[0], size=min(batch, X.shape[0]))
        cur = replace(p, router=params[0], w=params[1])
        _, gr, gw = loss_and_grads(cur, X[idx], y[idx], aux)
        for i, grad in enumerate((gr, gw)):
            m[i] = b1 * m[i] + (1 - b1) * grad
            v[i] = b2 * v[i] + (1 - b2) * grad * grad
            step = lr * (m[i] / (1 - b1 ** t)) / (np.sqrt(v[i] / (1 - b2 ** t)) + 1e-8)
            params[i] = params[i] - step
    return replace(p, router=params[0], w=params[1])
