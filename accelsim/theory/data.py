"""Data for the paper's experiment: the synthetic patch model and scikit-learn's digits.

Synthetic data model (``docs/theory.md``, section 4). Orthonormal directions in ``R^d``:

* class-relevant features: for each task (``pretrain``, ``finetune``) and class ``c`` in
  ``{+1, -1}``, ``K`` features ``o_{task, c, k}``; fine-tuning features appear with
  imbalanced frequencies ``p_k ~ rho^k`` (``rho = 0.5``: 53 %, 27 %, 13 %, 7 % for K = 4),
  pre-training features with equal frequencies;
* class-irrelevant features ``q_1 .. q_M``, shared by both tasks.

A sample of class ``y`` has ``n`` patches: one carries ``o_{task, y, k}`` (k drawn from the
frequencies), the other ``n - 1`` carry a uniformly drawn ``q_m``; every patch gets Gaussian
noise ``N(0, sigma^2 I)`` and the patches are shuffled.

Digits: each 8x8 image of :func:`sklearn.datasets.load_digits` becomes 9 overlapping 4x4
patches (stride 2) of pixel values / 16 with a one-hot patch position appended (d = 25).
Pre-training task: even vs odd digit; fine-tuning task: digit <= 4 vs >= 5, on disjoint
images, with the digits of each fine-tuning class kept at imbalanced rates
(1, 0.5, 0.3, 0.2, 0.15 of the images of the class's digits in a seeded random order).

Examples
--------
>>> tasks = synthetic_tasks(seed=0, n_pretrain=10, n_finetune=10, n_test=10)
>>> tasks.finetune_X.shape, tasks.d
((10, 8, 32), 32)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Tasks", "synthetic_tasks", "digits_tasks", "DATASETS"]


@dataclass(frozen=True)
class Tasks:
    """Pre-training set, fine-tuning set and a test set from the fine-tuning distribution;
    ``X`` arrays are ``(samples, patches, d)``, ``y`` in ``{-1, +1}``."""

    pretrain_X: np.ndarray
    pretrain_y: np.ndarray
    finetune_X: np.ndarray
    finetune_y: np.ndarray
    test_X: np.ndarray
    test_y: np.ndarray

    @property
    def d(self) -> int:
        return self.finetune_X.shape[-1]


def _sample(rng, feats, freqs, irrelevant, n, count, sigma):
    """``count`` samples of one task; ``feats[c]`` are class ``c``'s features (c=0: +1)."""
    y = np.where(rng.random(count) < 0.5, 1.0, -1.0)
    d = irrelevant.shape[1]
    X = irrelevant[rng.integers(0, irrelevant.shape[0], size=(count, n))]
    k = rng.choice(len(freqs), size=count, p=freqs)
    cls = (y < 0).astype(int)
    X[:, 0] = feats[cls, k]
    X = X + rng.normal(0.0, sigma, size=(count, n, d))
    perm = np.argsort(rng.random((count, n)), axis=1)
    return np.take_along_axis(X, perm[:, :, None], axis=1), y


def synthetic_tasks(seed: int, *, d: int = 32, patches: int = 8, features: int = 4,
                    irrelevant: int = 8, rho: float = 0.5, sigma: float = 0.25,
                    n_pretrain: int = 2000, n_finetune: int = 2000,
                    n_test: int = 2000) -> Tasks:
    """The synthetic patch model (module docstring); ``features`` = K per class."""
    n_dirs = 4 * features + irrelevant
    if n_dirs > d:
        raise ValueError(f"d={d} is too small for {n_dirs} orthonormal features")
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    dirs = basis.T[:n_dirs]
    pre = dirs[: 2 * features].reshape(2, features, d)
    fine = dirs[2 * features: 4 * features].reshape(2, features, d)
    irr = dirs[4 * features:]
    f_fine = rho ** np.arange(features)
    f_fine /= f_fine.sum()
    f_pre = np.full(features, 1.0 / features)
    pX, py = _sample(rng, pre, f_pre, irr, patches, n_pretrain, sigma)
    fX, fy = _sample(rng, fine, f_fine, irr, patches, n_finetune, sigma)
    tX, ty = _sample(rng, fine, f_fine, irr, patches, n_test, sigma)
    return Tasks(pX, py, fX, fy, tX, ty)


def _digit_patches(images: np.ndarray) -> np.ndarray:
    imgs = images.reshape(-1, 8, 8) / 16.0
    pats = [imgs[:, r:r + 4, c:c + 4].reshape(-1, 16) for r in (0, 2, 4) for c in (0, 2, 4)]
    X = np.stack(pats, axis=1)                                # (N, 9, 16)
    pos = np.broadcast_to(np.eye(9), (X.shape[0], 9, 9))
    return np.concatenate([X, pos], axis=2)


def digits_tasks(seed: int, *, keep=(1.0, 0.5, 0.3, 0.2, 0.15)) -> Tasks:
    """scikit-learn's bundled digits as a patch-level pre-train / fine-tune pair."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(seed)
    X = _digit_patches(data.data)
    t = data.target
    order = rng.permutation(len(t))
    pre_idx, fine_idx = order[: len(t) // 2], order[len(t) // 2:]
    keep_rate = np.zeros(10)
    for digits in (np.arange(0, 5), np.arange(5, 10)):
        keep_rate[rng.permutation(digits)] = keep
    fine_idx = fine_idx[rng.random(fine_idx.size) < keep_rate[t[fine_idx]]]
    split = int(0.6 * fine_idx.size)
    tr, te = fine_idx[:split], fine_idx[split:]
    fine_y = np.where(t <= 4, 1.0, -1.0)
    pre_y = np.where(t % 2 == 0, 1.0, -1.0)
    return Tasks(X[pre_idx], pre_y[pre_idx], X[tr], fine_y[tr], X[te], fine_y[te])


DATASETS = {"synthetic": synthetic_tasks, "digits": digits_tasks}
