"""Certified perturbation of the hidden state through a stack of quantized MoE layers.

Model of one layer (assumptions, stated again in ``docs/theory.md``, section 3)::

    h'  = h + attn(h)                      attention: float; NOT simulated on the float path,
                                           its effect on a perturbation is a factor
                                           (1 + attn_lipschitz) (default 0 = attention-free)
    x   = norm(h')                         RMSNorm or LayerNorm with weight gamma, float
    h'' = h' + sum_{e in topk(R x)} g_e(x) f_e(x)  (+ shared experts, always on)

The quantized model runs the same stack with quantized experts (and router / shared experts
when the allocation says so). With ``eps_l >= ||h_l^q - h_l||`` (``eps_0 = 0``: embeddings
are float) each layer does, per token:

1. ``eps <- (1 + attn_lipschitz) eps``;
2. the norm's perturbation: ``||norm(u) - norm(v)||`` over ``||u - v|| <= eps`` is at most
   ``max|gamma| sqrt(d)`` times the chord of the largest angle ``asin(eps / ||v~||)``
   (``~ max|gamma| eps / rms(v)`` for small eps; :func:`norm_perturbation`);
3. routing is certified when ``eps_x`` is below the exact certified radius
   (:mod:`accelsim.theory.routing`) of the deployed router at the float ``x``;
4. certified tokens: same experts, gates within a factor ``exp(+-2 tau)`` with ``tau`` the
   largest possible logit change, so the MoE output moves by at most
   ``sum_e g_e (e^{2 tau} - 1) ||f_e(x)|| + sum_e min(1, g_e e^{2 tau}) B_e(x, eps_x)``,
   ``B_e`` the expert bound of :mod:`accelsim.theory.bounds` over the ball of radius
   ``eps_x``; uncertified tokens: at most ``||MoE(x)|| + max_{e candidate} (||f_e(x)|| +
   B_e(x, eps_x))`` over the experts that could still be selected (gates sum to <= 1);
5. ``eps_{l+1} = eps + (MoE bound) + (shared-expert bounds)``.

**Pruned experts** (0 bits): the quantized expert's output is absent (its dequantized
matrices are 0) and the deployed router never selects it -- its logit is removed, so the
top-k and the gates are over the surviving experts (the softmax renormalises over them).
A token whose float top-k set contains a pruned expert necessarily changes its set: it is
not certified and takes the uncertified bound. With the plain ``softmax`` gate the removal
also rescales every surviving gate, so tokens of a layer with pruned experts take the
uncertified bound too (it needs only gates summing to at most 1); with ``softmax_topk``
a certified set of survivors keeps its gates.

The same function also runs the quantized stack and measures ``||h_l^q - h_l||`` and the
share of tokens whose routing actually changed, so every row carries bound and measurement.

Examples
--------
>>> from accelsim.workload import load_workload
>>> m = load_workload("mixtral-8x7b")
>>> st = synthetic_stack(m, layers=1, scale=64, seed=0)
>>> st.d, st.layers[0].router.shape
(64, (8, 64))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ConfigError
from .activations import get_activation
from .bounds import (METHOD_NORMS, ExpertPair, dequantized, expert_error_norms,
                     pair_output_bound)
from .routing import pairwise_row_distances, radius_from_logits, topk_indices

__all__ = ["MoELayerWeights", "MoEStack", "QuantizedStack", "LayerCertificate",
           "StackCertificate", "synthetic_stack", "quantize_stack", "certify_stack",
           "GATES", "NORMS", "FAMILY_GATE", "SYNTHETIC_STATS", "norm_perturbation"]

#: How gates are formed from the logits of the selected experts.
GATES = ("softmax_topk", "softmax")
NORMS = ("rmsnorm", "layernorm", "none")
#: Gate of each model family: renormalised softmax over the selected logits (Mixtral,
#: Qwen3, DeepSeek-V3's normalised weights) or the plain softmax probability (Switch,
#: Qwen1.5/2-MoE, OLMoE, DeepSeek-V2).
FAMILY_GATE = {"mixtral": "softmax_topk", "qwen3_moe": "softmax_topk",
               "deepseek_v3": "softmax_topk", "switch": "softmax", "qwen2_moe": "softmax",
               "olmoe": "softmax", "deepseek_v2": "softmax", "generic": "softmax_topk"}
SYNTHETIC_STATS = ("synthetic weights: w1, w3 ~ N(0, 1/d), w2 ~ N(0, 1/ffn), router ~ "
                   "N(0, 1/d), norm weight 1; tokens h_0 ~ N(0, 1) per component")


@dataclass(frozen=True)
class MoELayerWeights:
    """Float weights of one MoE layer (float64). ``experts`` and ``shared`` map ``w1``,
    ``w2`` (and ``w3``) to arrays; ``norm_weight`` is the pre-MoE norm's gamma (None: no
    norm)."""

    index: int
    router: np.ndarray
    experts: tuple[Mapping[str, np.ndarray], ...]
    shared: tuple[Mapping[str, np.ndarray], ...] = ()
    norm_weight: np.ndarray | None = None


@dataclass(frozen=True)
class MoEStack:
    """A stack of MoE layers with residual connections (see the module docstring)."""

    layers: tuple[MoELayerWeights, ...]
    kind: str
    top_k: int
    gate: str = "softmax_topk"
    norm: str = "rmsnorm"
    norm_eps: float = 1e-5
    description: str = ""

    def __post_init__(self):
        get_activation(self.kind)
        if self.gate not in GATES:
            raise ConfigError.single(f"gate must be one of {list(GATES)}", key="gate",
                                     value=self.gate)
        if self.norm not in NORMS:
            raise ConfigError.single(f"norm must be one of {list(NORMS)}", key="norm",
                                     value=self.norm)
        if not self.layers:
            raise ConfigError.single("a stack needs at least one layer", key="layers")
        n_exp = self.layers[0].router.shape[0]
        if not 1 <= self.top_k <= n_exp:
            raise ConfigError.single(f"top_k must be in 1..{n_exp}", key="top_k",
                                     value=self.top_k)

    @property
    def d(self) -> int:
        return int(self.layers[0].router.shape[1])

    @property
    def num_experts(self) -> int:
        return int(self.layers[0].router.shape[0])


@dataclass(frozen=True)
class _QuantLayer:
    router: np.ndarray                       # deployed (dequantized) router
    experts: tuple[ExpertPair, ...]
    shared: tuple[ExpertPair, ...]
    expert_bits: tuple[int, ...]

    @property
    def pruned(self) -> np.ndarray:
        """Bool per routed expert: 0 bits (output absent, never selected)."""
        return np.array([b == 0 for b in self.expert_bits], dtype=bool)


@dataclass(frozen=True)
class QuantizedStack:
    """A :class:`MoEStack` with its quantized copy: per layer the deployed router and one
    :class:`~accelsim.theory.bounds.ExpertPair` (float + dequantized) per expert."""

    stack: MoEStack
    layers: tuple[_QuantLayer, ...]
    router_bits: int
    shared_bits: int
    group_size: int | None
    symmetric: bool


# ---------------------------------------------------------------------- construction
def _scaled(n: int, scale: int) -> int:
    return max(1, int(round(n / scale)))


def synthetic_stack(model, *, layers: int | None = None, scale: int = 1,
                    seed: int = 0) -> MoEStack:
    """Gaussian weights at ``model``'s dimensions divided by ``scale`` (see
    :data:`SYNTHETIC_STATS`), for its first ``layers`` MoE layers, keeping its number of
    experts, top-k, shared experts, expert kind, norm and gate."""
    n_moe = model.num_moe_layers
    n_layers = n_moe if layers is None else int(layers)
    if not 1 <= n_layers <= n_moe:
        raise ConfigError.single(f"layers must be in 1..{n_moe} for {model.name}",
                                 key="--layers", value=layers)
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ConfigError.single("scale must be a positive integer", key="--scale",
                                 value=scale)
    rng = np.random.default_rng(seed)
    d = _scaled(model.hidden_size, scale)
    ffn = _scaled(model.moe.expert_ffn_size, scale)
    sffn = _scaled(model.shared_ffn_size, scale)
    names = model.expert_matrices
    n_exp = model.moe.num_experts

    def expert(width: int) -> dict[str, np.ndarray]:
        shapes = {"w1": (width, d), "w3": (width, d), "w2": (d, width)}
        return {m: rng.normal(0.0, 1.0 / np.sqrt(shapes[m][1]), shapes[m]) for m in names}

    out = []
    for r in range(n_layers):
        out.append(MoELayerWeights(
            index=int(model.moe_layers[r]),
            router=rng.normal(0.0, 1.0 / np.sqrt(d), (n_exp, d)),
            experts=tuple(expert(ffn) for _ in range(n_exp)),
            shared=tuple(expert(sffn) for _ in range(model.moe.num_shared_experts)),
            norm_weight=np.ones(d)))
    desc = (f"{SYNTHETIC_STATS}; {model.name} at 1/{scale} scale: d={d}, ffn={ffn}"
            + (f", shared ffn={sffn} x {model.moe.num_shared_experts}"
               if model.moe.num_shared_experts else "")
            + f", {n_exp} experts, top-{model.moe.top_k}, first {n_layers} of {n_moe} MoE "
              f"layers, seed {seed}")
    return MoEStack(tuple(out), model.ffn_kind, model.moe.top_k,
                    FAMILY_GATE.get(model.family, "softmax_topk"),
                    "layernorm" if model.norm == "layernorm" and model.family != "switch"
                    else "rmsnorm", 1e-5, desc)


def _default_quantizer() -> Callable[..., Any]:
    from ..quant import quantize_rtn
    return quantize_rtn


def _quantize(w: np.ndarray, bits: int, group_size, symmetric, quantizer) -> np.ndarray:
    if bits == 0:
        # pruned: the expert's output is absent
        return np.zeros_like(w)
    if bits >= 16:
        # float16 storage: the reference weights are taken to be the float16 ones
        return w
    if not 1 <= bits <= 8:
        raise ConfigError.single("the RTN quantizer supports 1..8 bits (16 = float)",
                                 key="bits", value=bits)
    return dequantized(quantizer(w, int(bits), group_size=group_size, symmetric=symmetric))


def quantize_stack(stack: MoEStack, expert_bits: Any, *, router_bits: int = 16,
                   shared_bits: int = 16, group_size: int | None = 128,
                   symmetric: bool = False,
                   quantizer: Callable[..., Any] | None = None) -> QuantizedStack:
    """Quantize every expert of layer ``r`` to ``expert_bits[r][e]`` bits with RTN
    (:func:`accelsim.quant.quantize_rtn` unless ``quantizer`` is given); router and shared
    experts at ``router_bits`` / ``shared_bits`` (16 = left in float). 0 expert bits prune
    the expert (at least ``top_k`` per layer must survive)."""
    bits = np.asarray(expert_bits)
    want = (len(stack.layers), stack.num_experts)
    if bits.shape != want:
        raise ConfigError.single(f"expert bits must have shape {want} (layers, experts)",
                                 key="expert_bits", value=bits.shape)
    alive = (bits != 0).sum(axis=1)
    if alive.min() < stack.top_k:
        r = int(np.argmin(alive))
        raise ConfigError.single(f"layer {r} keeps {int(alive[r])} expert(s); the router "
                                 f"needs top_k={stack.top_k} survivors", key="expert_bits",
                                 value=int(alive[r]))
    if int(router_bits) == 0 or int(shared_bits) == 0:
        raise ConfigError.single("only routed experts may be pruned (0 bits)",
                                 key="router_bits" if int(router_bits) == 0 else
                                 "shared_bits", value=0)
    qz = quantizer or _default_quantizer()
    layers = []
    for r, lw in enumerate(stack.layers):
        def pair(w, b):
            return ExpertPair.build(w, {m: _quantize(a, b, group_size, symmetric, qz)
                                        for m, a in w.items()}, stack.kind)
        layers.append(_QuantLayer(
            router=_quantize(lw.router, int(router_bits), group_size, symmetric, qz),
            experts=tuple(pair(w, int(b)) for w, b in zip(lw.experts, bits[r])),
            shared=tuple(pair(w, int(shared_bits)) for w in lw.shared),
            expert_bits=tuple(int(b) for b in bits[r])))
    return QuantizedStack(stack, tuple(layers), int(router_bits), int(shared_bits),
                          group_size, bool(symmetric))


# ---------------------------------------------------------------------- certification
@dataclass(frozen=True)
class LayerCertificate:
    """Per-token results of one layer (arrays of length ``tokens``)."""

    index: int
    eps_in: np.ndarray          # bound on ||h^q - h|| entering the layer (after attention)
    certified: np.ndarray       # routing certified
    unchanged: np.ndarray       # routing of the quantized run equals the float routing
    bound: np.ndarray           # bound on ||h^q - h|| leaving the layer
    measured: np.ndarray        # the actual ||h^q - h|| leaving the layer
    hidden_norm: np.ndarray     # ||h|| leaving the layer (float run)

    def row(self) -> dict[str, float]:
        return {"layer": self.index,
                "eps_in_mean": float(self.eps_in.mean()),
                "certified": float(self.certified.mean()),
                "unchanged": float(self.unchanged.mean()),
                "bound_mean": float(self.bound.mean()),
                "bound_max": float(self.bound.max()),
                "measured_mean": float(self.measured.mean()),
                "measured_max": float(self.measured.max()),
                "hidden_norm_mean": float(self.hidden_norm.mean())}


@dataclass(frozen=True)
class StackCertificate:
    """Result of :func:`certify_stack`: one :class:`LayerCertificate` per layer."""

    layers: tuple[LayerCertificate, ...]
    method: str
    attn_lipschitz: float
    meta: Mapping[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, float]]:
        return [lc.row() for lc in self.layers]


def _normalize(h: np.ndarray, gamma: np.ndarray | None, kind: str, eps_n: float):
    """``(norm(h), rms)``: the normalised tokens and ``sqrt(mean(v^2) + eps_n)`` per token
    (``v`` = ``h``, centred for LayerNorm); rms is None without a norm."""
    if kind == "none":
        return h, None
    v = h - h.mean(axis=1, keepdims=True) if kind == "layernorm" else h
    s = np.sqrt(np.mean(v * v, axis=1) + eps_n)
    g = np.ones(h.shape[1]) if gamma is None else gamma
    return g * v / s[:, None], s


def norm_perturbation(eps: np.ndarray, rms: np.ndarray | None, d: int,
                      gamma: np.ndarray | None) -> np.ndarray:
    """Bound on ``||norm(u) - norm(v)||`` over ``||u - v|| <= eps`` (per token).

    ``u / sqrt(|u|^2/d + c)`` is ``sqrt(d)`` times the first ``d`` coordinates of the unit
    vector along ``(u, sqrt(d c))``; over a ball of radius ``eps`` around a vector of norm
    ``rho = sqrt(d) rms`` that unit vector turns by at most ``asin(eps / rho)``, i.e. moves
    by the chord ``r sqrt(2 / (1 + sqrt(1 - r^2)))``, ``r = eps / rho`` (2 once r >= 1). The
    weight ``gamma`` scales by at most ``max |gamma|``; LayerNorm's centring is a projection.
    """
    if rms is None:
        return eps
    gmax = 1.0 if gamma is None else float(np.max(np.abs(gamma)))
    r = eps / (np.sqrt(d) * rms)
    inside = np.minimum(r, 1.0)
    chord = np.where(r < 1.0, inside * np.sqrt(2.0 / (1.0 + np.sqrt(1.0 - inside ** 2))),
                     2.0)
    return np.sqrt(d) * gmax * chord * (1.0 + 1e-12)


def _gates(logits: np.ndarray, sel: np.ndarray, kind: str) -> np.ndarray:
    rows = np.arange(logits.shape[0])[:, None]
    if kind == "softmax_topk":
        z = logits[rows, sel]
    else:
        z = logits
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return p if kind == "softmax_topk" else p[rows, sel]


def _output_sup(pair: ExpertPair, nr, rho: np.ndarray) -> np.ndarray:
    """Bound on ``||f_q(x')||`` over ``||x'|| <= rho``, from ``|phi(z)| <= |z|``:
    ``||Q2|| ||Q1|| rho`` (times ``max_j ||q3_j|| rho`` for SwiGLU's ``||W3 x'||_inf``)."""
    out = nr.q2 * nr.q1 * rho
    if pair.act.gated:
        out = out * np.max(np.linalg.norm(pair.q["w3"], axis=1)) * rho
    return out


def _layer(st: MoEStack, lw: MoELayerWeights, ql: _QuantLayer, h: np.ndarray,
           hq: np.ndarray, eps: np.ndarray, method: str, norms_cache: list):
    T, k = h.shape[0], st.top_k
    rows = np.arange(T)[:, None]
    x, rms = _normalize(h, lw.norm_weight, st.norm, st.norm_eps)
    xq, _ = _normalize(hq, lw.norm_weight, st.norm, st.norm_eps)
    eps_x = norm_perturbation(eps, rms, st.d, lw.norm_weight)
    perturbed = bool(np.any(eps_x > 0))
    # a normalised token never exceeds sqrt(d) max|gamma| in norm
    xcap = np.inf if rms is None else np.sqrt(st.d) * (
        1.0 if lw.norm_weight is None else float(np.max(np.abs(lw.norm_weight))))

    # routing: float reference, deployed router at the float token, deployed at the real one
    z, zq, zm = x @ lw.router.T, x @ ql.router.T, xq @ ql.router.T
    dead = ql.pruned
    qn = np.linalg.norm(ql.router, axis=1)
    radius = radius_from_logits(z, zq, pairwise_row_distances(ql.router), k,
                                np.linalg.norm(x, axis=1) * qn.max())
    cert = eps_x < radius
    sel, _ = topk_indices(z, k)
    if dead.any():
        # the deployed router never selects a pruned expert (logit removed)
        zm = np.where(dead[None, :], -np.inf, zm)
        cert &= ~dead[sel].any(axis=1)
    selm, _ = topk_indices(zm, k)
    unchanged = np.all(np.sort(sel, axis=1) == np.sort(selm, axis=1), axis=1)
    g, gm = _gates(z, sel, st.gate), _gates(zm, selm, st.gate)

    # experts that a token may use in the quantized run (survivors only)
    half = eps_x[:, None] * qn[None, :]
    lower = np.where(dead[None, :], -np.inf, zq - half)
    kth_lb = -np.partition(-lower, k - 1, axis=1)[:, k - 1]
    cand = ((zq + half) >= kth_lb[:, None]) & ~dead[None, :]
    chosen = np.zeros_like(cand)
    chosen[rows, sel] = True
    need = chosen | (cand & ~cert[:, None])

    E = st.num_experts
    f_norm = np.zeros((T, E))
    bnd = np.zeros((T, E))
    moe = np.zeros_like(h)
    moe_q = np.zeros_like(h)
    for e, pair in enumerate(ql.experts):
        idx = np.flatnonzero(need[:, e])
        if idx.size:
            f = pair.forward(x[idx])
            f_norm[idx, e] = np.linalg.norm(f, axis=1)
            bnd[idx, e] = pair_output_bound(pair, x[idx], eps=eps_x[idx], method=method,
                                            norms=norms_cache[e])
            if perturbed:
                bnd[idx, e] = np.minimum(bnd[idx, e], f_norm[idx, e] + _output_sup(
                    pair, norms_cache[e],
                    np.minimum(xcap, np.linalg.norm(x[idx], axis=1) + eps_x[idx])))
            w_e = np.where(sel[idx] == e, g[idx], 0.0).sum(axis=1)
            moe[idx] += w_e[:, None] * f
        jdx = np.flatnonzero(np.any(selm == e, axis=1))
        if jdx.size:
            w_e = np.where(selm[jdx] == e, gm[jdx], 0.0).sum(axis=1)
            moe_q[jdx] += w_e[:, None] * pair.forward(xq[jdx], quantized=True)

    dz = np.abs(zq - z) + half
    tau = (dz[rows, sel] if st.gate == "softmax_topk" else dz).max(axis=1)
    grow = np.exp(np.minimum(2.0 * tau, 700.0))
    fs, bs = f_norm[rows, sel], bnd[rows, sel]
    err_cert = (g * (grow[:, None] - 1.0) * fs).sum(axis=1) + \
        (np.minimum(1.0, g * grow[:, None]) * bs).sum(axis=1)
    # certified tokens keep their set, so only the selected experts can be reached
    reach = np.where(np.where(cert[:, None], chosen, cand), f_norm + bnd, 0.0).max(axis=1)
    err_unc = np.linalg.norm(moe, axis=1) + reach
    # plain softmax gates over fewer experts are all rescaled: only the uncertified bound
    use_cert = cert if (st.gate == "softmax_topk" or not dead.any()) else np.zeros_like(cert)
    err = np.where(use_cert, np.minimum(err_cert, err_unc), err_unc)

    for s, pair in enumerate(ql.shared):
        f = pair.forward(x)
        moe += f
        moe_q += pair.forward(xq, quantized=True)
        nr = norms_cache[E + s]
        b = pair_output_bound(pair, x, eps=eps_x, method=method, norms=nr)
        if perturbed:
            b = np.minimum(b, np.linalg.norm(f, axis=1) + _output_sup(
                pair, nr, np.minimum(xcap, np.linalg.norm(x, axis=1) + eps_x)))
        err = err + b
    return h + moe, hq + moe_q, eps + err, cert, unchanged


def certify_stack(qstack: QuantizedStack, tokens: Any, *, method: str = "hybrid",
                  attn_lipschitz: float = 0.0, progress=None) -> StackCertificate:
    """Propagate certified bounds (and measured errors) through ``qstack``.

    Parameters
    ----------
    qstack : QuantizedStack
    tokens : array_like, shape (T, d)
        Hidden states entering the first layer (float; the quantized run starts equal).
    method : {'hybrid', 'analytic'}
        Expert bound used inside each layer (:func:`accelsim.theory.expert_output_bound`).
    attn_lipschitz : float
        Assumed Lipschitz constant of each attention block (perturbation factor ``1 + L``).
    progress : callable, optional
        Called with a message after each layer.

    Returns
    -------
    StackCertificate
    """
    st = qstack.stack
    h = np.asarray(tokens, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != st.d or not np.all(np.isfinite(h)):
        raise ConfigError.single(f"tokens must be a finite (T, {st.d}) array", key="tokens",
                                 value=h.shape)
    if not (np.isfinite(attn_lipschitz) and attn_lipschitz >= 0):
        raise ConfigError.single("attention Lipschitz constant must be >= 0",
                                 key="attn_lipschitz", value=attn_lipschitz)
    hq = h.copy()
    eps = np.zeros(h.shape[0])
    out = []
    for lw, ql in zip(st.layers, qstack.layers):
        eps = eps * (1.0 + attn_lipschitz)
        # the spectral norms only enter through the perturbation ball (and analytic)
        need = METHOD_NORMS[method] if (method == "analytic" or np.any(eps > 0)) else ()
        norms = [expert_error_norms(p, need) for p in ql.experts + ql.shared]
        eps_in = eps
        h, hq, eps, cert, unchanged = _layer(st, lw, ql, h, hq, eps, method, norms)
        out.append(LayerCertificate(lw.index, eps_in, cert, unchanged, eps,
                                    np.linalg.norm(hq - h, axis=1),
                                    np.linalg.norm(h, axis=1)))
        if progress:
            progress(f"certified layer {len(out)}/{len(st.layers)}")
    return StackCertificate(tuple(out), method, float(attn_lipschitz),
                            {"description": st.description})
