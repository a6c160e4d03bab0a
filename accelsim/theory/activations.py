"""Expert activations and the constants the certified bounds rest on.

Each expert kind is registered once with its activation function and the Lipschitz constant
of that activation (the supremum of ``|phi'(z)|`` over the real line):

- ``swiglu``: SiLU gate ``z * sigmoid(z)``; ``max silu' = 1.0998393...`` at ``z = 2.39936``
  and ``min silu' = -0.0998393...`` at ``z = -2.39936``, so ``L = 1.0998394`` (rounded up).
- ``relu``: ``L = 1``.
- ``gelu``: ``gelu'(z) = Phi(z) + z phi(z)`` peaks at ``z = sqrt(2)`` with
  ``Phi(sqrt 2) + sqrt 2 phi(sqrt 2) = 1.1289041...`` for the exact (erf) GELU and at
  ``1.1289931...`` for the tanh approximation; ``L = 1.1290`` covers both.

All three also satisfy ``|phi(z)| <= |z|``. The tests check every constant against a dense
numerical derivative.

Examples
--------
>>> ACTIVATIONS["swiglu"].lipschitz
1.0998394
>>> float(silu(np.array(0.0)))
0.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import erf, expit

__all__ = ["Activation", "ACTIVATIONS", "silu", "relu", "gelu", "get_activation",
           "SILU_LIPSCHITZ", "GELU_LIPSCHITZ"]

SILU_LIPSCHITZ = 1.0998394
GELU_LIPSCHITZ = 1.1290


def silu(z: np.ndarray) -> np.ndarray:
    """``z * sigmoid(z)`` (Mixtral's gate activation)."""
    return z * expit(z)


def relu(z: np.ndarray) -> np.ndarray:
    """``max(z, 0)``."""
    return np.maximum(z, 0.0)


def gelu(z: np.ndarray) -> np.ndarray:
    """Exact GELU, ``z * Phi(z)``."""
    return 0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))


@dataclass(frozen=True)
class Activation:
    """One expert kind: its activation, its Lipschitz constant and whether it is gated
    (SwiGLU's ``phi(W1 x) * (W3 x)``) or plain (``phi(W1 x)``)."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    lipschitz: float
    gated: bool

    @property
    def matrices(self) -> tuple[str, ...]:
        return ("w1", "w3", "w2") if self.gated else ("w1", "w2")


ACTIVATIONS: dict[str, Activation] = {
    "swiglu": Activation("swiglu", silu, SILU_LIPSCHITZ, True),
    "relu": Activation("relu", relu, 1.0, False),
    "gelu": Activation("gelu", gelu, GELU_LIPSCHITZ, False),
}


def get_activation(kind: str) -> Activation:
    """The registered :class:`Activation` for ``kind``; ConfigError for an unknown kind."""
    from ..errors import ConfigError, did_you_mean
    try:
        return ACTIVATIONS[kind]
    except (KeyError, TypeError):
        raise ConfigError.single(
            f"unknown expert kind; choose one of {sorted(ACTIVATIONS)}"
            f"{did_you_mean(str(kind), ACTIVATIONS)}", key="kind", value=kind) from None
