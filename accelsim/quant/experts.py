"""Experts and MoE layers in float and quantized form.

An :class:`Expert` holds its matrices as Linear ``weight`` arrays ``(out, in)``, each either a
float array (kept in float32) or a :class:`~accelsim.quant.QuantizedTensor`:

* ``"swiglu"``: ``w1`` (gate) and ``w3`` (up) ``(ffn, hidden)``, ``w2`` (down)
  ``(hidden, ffn)``; ``y = (silu(x w1^T) * (x w3^T)) w2^T`` (Mixtral, Qwen2-MoE, OLMoE,
  DeepSeek);
* ``"relu"`` / ``"gelu"``: ``wi`` ``(ffn, hidden)``, ``wo`` ``(hidden, ffn)``;
  ``y = act(x wi^T) wo^T`` (Switch uses ReLU; GELU is the exact erf form).

Each quantized matrix is applied in one of two ways (``act_bits``):

* ``None`` (weight-only quantization, the setting of the accuracy experiments): float32
  ``x @ dequantize(W)^T``;
* ``b`` in 2..8 (integer inference, W{bits}A{b}): the input of each matrix is quantized per
  token to ``b``-bit codes (:func:`~accelsim.quant.quantize_activations`) and multiplied with
  :func:`accelsim.kernels.int_gemm`.

Float matrices are always applied in float32. An MoE layer (:class:`MoELayer`) routes each
token to its ``top_k`` experts by softmax of the router logits (optionally renormalised over
the chosen ``k``; ties go to the lower expert index), runs every expert once on the batch of
tokens routed to it, and combines the outputs weighted by the routing weights; shared
experts (DeepSeek, Qwen2-MoE) are added for every token with weight 1. Routers stay float.
Token dropping by expert capacity (Switch) is not modelled.

A **pruned** expert (0 bits in :func:`quantize_moe`; ``None`` in :attr:`MoELayer.experts`)
has no output and is never selected: its router logit is removed before the softmax, so the
router renormalises over the surviving experts and takes its top-k among them. A layer must
keep at least ``top_k`` experts.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, NamedTuple, Sequence

import numpy as np
from scipy.special import erf, expit

from accelsim.errors import ConfigError, Problem
from accelsim.kernels import int_gemm
from accelsim.quant.gptq import gptq, hessian
from accelsim.quant.rtn import quantize_activations, quantize_rtn
from accelsim.quant.tensor import QuantizedTensor

__all__ = ["FFN_KINDS", "Expert", "MoELayer", "Routing", "MoEOutput", "route", "linear",
           "expert_forward", "moe_forward", "quantize_expert", "quantize_moe"]

#: Matrix names of each FFN kind: the input-side matrices first, the output matrix last.
FFN_KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "swiglu": ("w1", "w3", "w2"),
    "relu": ("wi", "wo"),
    "gelu": ("wi", "wo"),
})

_ACTIVATIONS = MappingProxyType({
    "relu": lambda z: np.maximum(z, np.float32(0.0)),
    "gelu": lambda z: (0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))).astype(np.float32),
})


def _shape(m) -> tuple[int, int]:
    return tuple(m.shape) if isinstance(m, QuantizedTensor) else tuple(np.shape(m))


@dataclass(frozen=True, eq=False)
class Expert:
    """One FFN expert: ``kind`` and its matrices (float arrays or QuantizedTensors).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> e = Expert("relu", {"wi": rng.standard_normal((6, 4)), "wo": rng.standard_normal((4, 6))})
    >>> e.hidden_size, e.ffn_size, expert_forward(e, np.ones((3, 4))).shape
    (4, 6, (3, 4))
    """

    kind: str
    weights: Mapping[str, np.ndarray | QuantizedTensor]

    def __post_init__(self):
        if self.kind not in FFN_KINDS:
            raise ConfigError.single(f"must be one of {sorted(FFN_KINDS)}", key="kind",
                                     value=self.kind)
        names = FFN_KINDS[self.kind]
        weights = dict(self.weights)
        problems = [Problem("missing matrix", key=f"weights.{n}") for n in names
                    if n not in weights]
        problems += [Problem(f"unknown matrix for a {self.kind} expert (expected {names})",
                             key=f"weights.{n}") for n in weights if n not in names]
        if problems:
            raise ConfigError(problems)
        clean = {}
        for n in names:
            m = weights[n]
            if not isinstance(m, QuantizedTensor):
                m = np.asarray(m)
                if m.ndim != 2 or m.dtype.kind not in "fiu":
                    raise ConfigError.single("must be a real 2-D matrix or a QuantizedTensor",
                                             key=f"weights.{n}", value=f"{m.dtype} {m.shape}")
                m = np.ascontiguousarray(m, dtype=np.float32)
            clean[n] = m
        ffn, hidden = _shape(clean[names[0]])
        expected = {n: (ffn, hidden) for n in names[:-1]}
        expected[names[-1]] = (hidden, ffn)
        problems = [Problem(f"shape must be {expected[n]} (from {names[0]} {(ffn, hidden)})",
                            key=f"weights.{n}", value=_shape(clean[n]))
                    for n in names if _shape(clean[n]) != expected[n]]
        if problems:
            raise ConfigError(problems)
        object.__setattr__(self, "weights", MappingProxyType(clean))

    @property
    def hidden_size(self) -> int:
        """Model (input and output) width."""
        return _shape(self.weights[FFN_KINDS[self.kind][0]])[1]

    @property
    def ffn_size(self) -> int:
        """Intermediate width."""
        return _shape(self.weights[FFN_KINDS[self.kind][0]])[0]

    @property
    def nbytes(self) -> int:
        """Stored bytes: ``QuantizedTensor.nbytes``, or the float arrays' bytes (float32)."""
        return int(sum(m.nbytes for m in self.weights.values()))

    def bits(self) -> dict[str, int | None]:
        """Bits of each matrix (None for float)."""
        return {n: (m.bits if isinstance(m, QuantizedTensor) else None)
                for n, m in self.weights.items()}


def _check_act_bits(act_bits):
    if act_bits is None:
        return None
    if isinstance(act_bits, (bool, np.bool_)) or not isinstance(act_bits, (int, np.integer)) \
            or not 2 <= act_bits <= 8:
        raise ConfigError.single("must be None or an integer in 2..8", key="act_bits",
                                 value=act_bits)
    return int(act_bits)


def _check_x(x, hidden: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != hidden or arr.dtype.kind not in "fiu":
        raise ConfigError.single(f"must be a real (tokens, {hidden}) array", key="x",
                                 value=f"{arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def linear(x: np.ndarray, m, act_bits: int | None = None) -> np.ndarray:
    """``x @ W^T`` in float32 for a float matrix or a QuantizedTensor (see module docstring).

    >>> linear(np.ones((2, 3), np.float32), np.eye(3, dtype=np.float32)[:2])
    array([[1., 1.],
           [1., 1.]], dtype=float32)
    """
    if isinstance(m, QuantizedTensor):
        if act_bits is None:
            return x @ m.dequantize().T
        xq, xs = quantize_activations(x, act_bits)
        return int_gemm(xq, xs, m)
    return x @ m.T


def expert_forward(expert: Expert, x, act_bits: int | None = None) -> np.ndarray:
    """Apply an expert to a batch of tokens ``x`` ``(tokens, hidden)``; float32 result.

    Parameters
    ----------
    expert : Expert
    x : array_like
        ``(tokens, hidden)``.
    act_bits : int or None, default None
        None: weight-only quantization (dequantized float matmul); 2..8: integer path with
        per-token activation quantization before every quantized matrix.

    Examples
    --------
    >>> w = {"w1": np.eye(2), "w3": np.eye(2), "w2": np.eye(2)}
    >>> expert_forward(Expert("swiglu", w), np.array([[1.0, -1.0]])).round(4)   # silu(x) * x
    array([[0.7311, 0.2689]], dtype=float32)
    """
    act_bits = _check_act_bits(act_bits)
    x = _check_x(x, expert.hidden_size)
    w = expert.weights
    if expert.kind == "swiglu":
        gate = linear(x, w["w1"], act_bits)
        up = linear(x, w["w3"], act_bits)
        h = (gate * expit(gate) * up).astype(np.float32)
        return linear(h, w["w2"], act_bits)
    h = _ACTIVATIONS[expert.kind](linear(x, w["wi"], act_bits))
    return linear(np.ascontiguousarray(h, dtype=np.float32), w["wo"], act_bits)


def _intermediate(expert: Expert, x: np.ndarray) -> np.ndarray:
    w = expert.weights
    if expert.kind == "swiglu":
        gate, up = linear(x, w["w1"]), linear(x, w["w3"])
        return gate * expit(gate) * up
    return _ACTIVATIONS[expert.kind](linear(x, w["wi"]))


def quantize_expert(expert: Expert, bits: int | None, group_size: int | None = 128,
                    symmetric: bool = False, method: str = "rtn", calib=None,
                    damp: float = 0.01) -> Expert:
    """Quantize every matrix of an expert to ``bits`` (None: keep it as it is).

    Parameters
    ----------
    expert : Expert
        Float (or already quantized) expert; quantized matrices are re-quantized from their
        dequantized values.
    bits : int or None
        1..8, or None to return ``expert`` unchanged.
    group_size, symmetric
        As in :func:`accelsim.quant.quantize_rtn`.
    method : {"rtn", "gptq"}
        GPTQ needs ``calib``: the input-side matrices use ``H`` of ``calib``, the output
        matrix ``H`` of the intermediate activations computed with the already quantized
        input-side matrices (sequential, as GPTQ does).
    calib : array_like, optional
        Calibration tokens ``(tokens, hidden)`` for GPTQ.
    damp : float
        GPTQ damping.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> e = Expert("gelu", {"wi": rng.standard_normal((8, 4)), "wo": rng.standard_normal((4, 8))})
    >>> q = quantize_expert(e, 4, group_size=4)
    >>> q.bits(), q.nbytes    # per matrix: 32*4/8 + 8 scales*2 + 8 zeros = 40 bytes
    ({'wi': 4, 'wo': 4}, 80)
    """
    if bits is None:
        return expert
    if method not in _QUANTIZERS:
        raise ConfigError.single(f"must be one of {sorted(_QUANTIZERS)}", key="method",
                                 value=method)
    names = FFN_KINDS[expert.kind]

    def dense(m):
        return m.dequantize() if isinstance(m, QuantizedTensor) else m

    src = {n: dense(expert.weights[n]) for n in names}
    if method == "rtn":
        return Expert(expert.kind, {n: quantize_rtn(src[n], bits, group_size, symmetric)
                                    for n in names})
    if calib is None:
        raise ConfigError.single("GPTQ needs calibration tokens", key="calib")
    x = _check_x(calib, expert.hidden_size)
    H_in = hessian(x)
    out = {n: gptq(src[n], H_in, bits, group_size, damp=damp, symmetric=symmetric)
           for n in names[:-1]}
    partial = Expert(expert.kind, {**out, names[-1]: src[names[-1]]})
    H_mid = hessian(_intermediate(partial, x))
    out[names[-1]] = gptq(src[names[-1]], H_mid, bits, group_size, damp=damp,
                          symmetric=symmetric)
    return Expert(expert.kind, out)


_QUANTIZERS = MappingProxyType({"rtn": quantize_rtn, "gptq": gptq})


# --------------------------------------------------------------------------- MoE layer

class Routing(NamedTuple):
    """Routing of a batch: chosen experts, their weights, and the full softmax."""

    indices: np.ndarray   #: int64 (tokens, top_k), best first
    weights: np.ndarray   #: float32 (tokens, top_k)
    probs: np.ndarray     #: float32 (tokens, n_experts), softmax of the router logits


class MoEOutput(NamedTuple):
    """Result of :func:`moe_forward`."""

    y: np.ndarray         #: float32 (tokens, hidden)
    routing: Routing


@dataclass(frozen=True, eq=False)
class MoELayer:
    """A router ``(n_experts, hidden)``, its experts, ``top_k`` and optional shared experts.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> mk = lambda: Expert("relu", {"wi": rng.standard_normal((6, 4)),
    ...                              "wo": rng.standard_normal((4, 6))})
    >>> layer = MoELayer(rng.standard_normal((3, 4)), (mk(), mk(), mk()), top_k=2)
    >>> out = moe_forward(layer, rng.standard_normal((5, 4)))
    >>> out.y.shape, out.routing.indices.shape
    ((5, 4), (5, 2))
    """

    router: np.ndarray
    experts: tuple[Expert, ...]
    top_k: int
    normalize_topk: bool = True
    shared_experts: tuple[Expert, ...] = ()

    def __post_init__(self):
        router = np.asarray(self.router)
        if router.ndim != 2 or router.dtype.kind not in "fiu":
            raise ConfigError.single("must be a real (n_experts, hidden) matrix", key="router",
                                     value=f"{router.dtype} {router.shape}")
        E, d = router.shape
        experts = tuple(self.experts)
        shared = tuple(self.shared_experts)
        problems = []
        if len(experts) != E:
            problems.append(Problem(f"must hold one expert per router row ({E})",
                                    key="experts", value=len(experts)))
        for group, items in (("experts", experts), ("shared_experts", shared)):
            for i, e in enumerate(items):
                if e is None and group == "experts":
                    continue        # pruned
                if not isinstance(e, Expert):
                    problems.append(Problem("must be an Expert", key=f"{group}[{i}]",
                                            value=type(e).__name__))
                elif e.hidden_size != d:
                    problems.append(Problem(f"hidden size must be the router's {d}",
                                            key=f"{group}[{i}]", value=e.hidden_size))
        k = self.top_k
        alive = sum(e is not None for e in experts)
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) \
                or not 1 <= k <= max(E, 1):
            problems.append(Problem(f"must be an integer in 1..{E}", key="top_k", value=k))
        elif alive < k:
            problems.append(Problem(f"only {alive} expert(s) survive pruning; the router "
                                    f"needs top_k={k}", key="experts", value=alive))
        if problems:
            raise ConfigError(problems)
        object.__setattr__(self, "router", np.ascontiguousarray(router, dtype=np.float32))
        object.__setattr__(self, "experts", experts)
        object.__setattr__(self, "shared_experts", shared)
        object.__setattr__(self, "top_k", int(k))
        object.__setattr__(self, "normalize_topk", bool(self.normalize_topk))

    @property
    def n_experts(self) -> int:
        return self.router.shape[0]

    @property
    def pruned(self) -> np.ndarray:
        """Bool per routed expert: pruned (no output, never selected)."""
        return np.array([e is None for e in self.experts], dtype=bool)

    @property
    def hidden_size(self) -> int:
        return self.router.shape[1]

    @property
    def nbytes(self) -> int:
        """Stored bytes of all routed and shared experts (router excluded)."""
        return int(sum(e.nbytes for e in self.experts + self.shared_experts
                       if e is not None))


def route(x, router, top_k: int, normalize: bool = True, pruned=None) -> Routing:
    """Top-k softmax routing of tokens ``x`` ``(tokens, hidden)`` by ``router`` ``(E, hidden)``.

    Logits are float32 ``x @ router^T``; the softmax is taken in float64 and returned as
    float32; the ``top_k`` largest probabilities are chosen (ties: lower index first) and,
    when ``normalize``, rescaled to sum to 1 per token. ``pruned`` (bool per expert): those
    experts' logits are removed, so the softmax is over the survivors (probability 0 for a
    pruned expert) and the top-k is taken among them.

    Examples
    --------
    >>> r = route(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), 2)
    >>> r.indices, r.weights.round(3)
    (array([[0, 2]]), array([[0.731, 0.269]], dtype=float32))
    """
    router = np.asarray(router, dtype=np.float32)
    x = _check_x(x, router.shape[1])
    logits = (x @ router.T).astype(np.float64)
    if pruned is not None and np.any(pruned):
        logits[:, np.asarray(pruned, dtype=bool)] = -np.inf
    logits -= logits.max(axis=1, keepdims=True) if logits.size else 0.0
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    idx = np.argsort(-p, axis=1, kind="stable")[:, :top_k]
    w = np.take_along_axis(p, idx, axis=1)
    if normalize:
        w = w / w.sum(axis=1, keepdims=True)
    return Routing(idx.astype(np.int64), w.astype(np.float32), p.astype(np.float32))


def moe_forward(layer: MoELayer, x, act_bits: int | None = None) -> MoEOutput:
    """Router, top-k, experts (each once, on its batch of routed tokens), weighted combine.

    Parameters
    ----------
    layer : MoELayer
    x : array_like
        ``(tokens, hidden)``.
    act_bits : int or None
        Passed to :func:`expert_forward`.

    Returns
    -------
    MoEOutput
        ``y`` float32 ``(tokens, hidden)`` and the :class:`Routing` (for routing-stability
        checks between a float and a quantized layer).
    """
    act_bits = _check_act_bits(act_bits)
    x = _check_x(x, layer.hidden_size)
    r = route(x, layer.router, layer.top_k, layer.normalize_topk, layer.pruned)
    y = np.zeros_like(x)
    for e, expert in enumerate(layer.experts):
        if expert is None:
            continue            # pruned: never selected
        tok, slot = np.nonzero(r.indices == e)   # each token picks an expert at most once
        if tok.size:
            y[tok] += r.weights[tok, slot][:, None] * expert_forward(expert, x[tok], act_bits)
    for expert in layer.shared_experts:
        y += expert_forward(expert, x, act_bits)
    return MoEOutput(y, r)


def quantize_moe(layer: MoELayer, bits: int | None | Sequence[int | None],
                 group_size: int | None = 128, symmetric: bool = False, method: str = "rtn",
                 calib=None, damp: float = 0.01,
                 shared_bits: int | None = None) -> MoELayer:
    """Quantize the experts of a layer, each with its own precision.

    Parameters
    ----------
    layer : MoELayer
    bits : int, None, or sequence of (int or None)
        One value for all routed experts, or one per expert (None keeps an expert float,
        0 prunes it): the mixed-precision allocation.
    group_size, symmetric, method, damp
        As in :func:`quantize_expert`.
    calib : array_like, optional
        Calibration tokens ``(tokens, hidden)`` for GPTQ; each expert is calibrated on the
        tokens the (float) router sends to it; an expert that receives none falls back to RTN.
    shared_bits : int or None, default None
        Precision of the shared experts (None: keep them float).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> mk = lambda: Expert("relu", {"wi": rng.standard_normal((8, 4)),
    ...                              "wo": rng.standard_normal((4, 8))})
    >>> layer = MoELayer(rng.standard_normal((2, 4)), (mk(), mk()), top_k=1)
    >>> [e.bits() for e in quantize_moe(layer, [2, None], group_size=4).experts]
    [{'wi': 2, 'wo': 2}, {'wi': None, 'wo': None}]
    """
    E = layer.n_experts
    per = list(bits) if isinstance(bits, (list, tuple, np.ndarray)) else [bits] * E
    if len(per) != E:
        raise ConfigError.single(f"must give one precision per expert ({E})", key="bits",
                                 value=len(per))
    routed = None
    if method == "gptq" and calib is not None:
        calib = _check_x(calib, layer.hidden_size)
        dead = [b is not None and int(b) == 0 for b in per]
        routed = route(calib, layer.router, layer.top_k, layer.normalize_topk,
                       np.asarray(dead) | layer.pruned).indices
    experts = []
    for e, (expert, b) in enumerate(zip(layer.experts, per)):
        if expert is None or (b is not None and int(b) == 0):
            experts.append(None)        # pruned
            continue
        m, c = method, None
        if method == "gptq" and routed is not None:
            tok = np.nonzero((routed == e).any(axis=1))[0]
            c = calib[tok] if tok.size else None
            m = "gptq" if tok.size else "rtn"
        experts.append(quantize_expert(expert, b, group_size, symmetric, m, c, damp))
    shared = tuple(quantize_expert(s, shared_bits, group_size, symmetric, method, calib, damp)
                   for s in layer.shared_experts)
    return MoELayer(layer.router, tuple(experts), layer.top_k, layer.normalize_topk, shared)
