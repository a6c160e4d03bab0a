"""Certify a model under a bit allocation: the engine of ``accelsim theory certify``.

:func:`certify_model` builds the MoE stack (synthetic weights of stated statistics, or the
routers and experts of a safetensors checkpoint), quantizes it as the
:class:`~accelsim.precision.BitAllocation` says with RTN, propagates certified bounds with
:func:`~accelsim.theory.stack.certify_stack` and returns one row per layer together with a
statement of everything that was assumed or reduced.

Examples
--------
>>> from accelsim.workload import load_workload
>>> from accelsim.precision import BitAllocation
>>> m = load_workload("mixtral-8x7b")
>>> rep = certify_model(m, BitAllocation.uniform(m, 8), tokens=16, layers=1, scale=64)
>>> rep.rows[0]["certified"]
1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, UnsupportedModelError
from .stack import (FAMILY_GATE, MoELayerWeights, MoEStack, certify_stack, quantize_stack,
                    synthetic_stack)

__all__ = ["CertifyReport", "certify_model", "auto_scale", "default_layers",
           "DEFAULT_MAX_DIM", "DEFAULT_LAYERS", "DEFAULT_LAYER_WEIGHTS"]

#: Synthetic default: the smallest power-of-two reduction with max(d, ffn) <= this.
DEFAULT_MAX_DIM = 512
#: Default number of MoE layers (the first ones).
DEFAULT_LAYERS = 4
#: Synthetic default: at most this many routed-expert weights per layer.
DEFAULT_LAYER_WEIGHTS = 4_000_000

_NORM_NAMES = {"switch": "encoder.block.{i}.layer.1.layer_norm.weight"}
_DECODER_NORM = "model.layers.{i}.post_attention_layernorm.weight"


@dataclass(frozen=True)
class CertifyReport:
    """Per-layer rows and the setup that produced them (all JSON-serialisable)."""

    rows: list[dict]
    setup: dict = field(default_factory=dict)


def auto_scale(model, max_dim: int = DEFAULT_MAX_DIM,
               max_layer_weights: int = DEFAULT_LAYER_WEIGHTS) -> int:
    """Smallest power of two ``s`` with ``max(hidden, expert ffn) / s <= max_dim`` and at
    most ``max_layer_weights`` routed-expert weights per layer at that scale."""
    m = model.moe
    big = max(model.hidden_size, m.expert_ffn_size, model.shared_ffn_size)
    per_layer = m.num_experts * len(model.expert_matrices) * model.hidden_size * \
        m.expert_ffn_size
    s = 1
    while big / s > max_dim or per_layer / (s * s) > max_layer_weights:
        s *= 2
    return s


def default_layers(model) -> int:
    """:data:`DEFAULT_LAYERS`, but 2 for models with more than 16 experts per layer."""
    n = DEFAULT_LAYERS if model.moe.num_experts <= 16 else 2
    return min(n, model.num_moe_layers)


def _checkpoint_stack(model, path: str, layers: int) -> MoEStack:
    from ..quant import FAMILIES, open_checkpoint

    if model.family not in FAMILIES:
        raise UnsupportedModelError.single(
            f"no checkpoint reader for family '{model.family}' (readers: {sorted(FAMILIES)})",
            key="--checkpoint", value=path)
    ck = open_checkpoint(path, model.family)
    keys = ck.moe_layers()
    if layers > len(keys):
        raise ConfigError.single(f"the checkpoint has {len(keys)} MoE layers",
                                 key="--layers", value=layers)
    out = []
    for r, key in enumerate(keys[:layers]):
        n_exp = ck.num_experts(key)
        if n_exp != model.moe.num_experts:
            raise ConfigError.single(
                f"checkpoint layer {key} has {n_exp} experts, {model.name} has "
                f"{model.moe.num_experts}", file=str(path), key="--checkpoint")

        def canon(m: dict) -> dict:
            return {{"wi": "w1", "wo": "w2"}.get(k, k): np.asarray(v, np.float64)
                    for k, v in m.items()}

        shared = ck.shared_expert(key)
        i = key if isinstance(key, int) else int(str(key).split(".")[-1])
        norm_name = _NORM_NAMES.get(model.family, _DECODER_NORM).format(i=i)
        gamma = (np.asarray(ck.tensor(norm_name), np.float64)
                 if norm_name in ck.tensors else None)
        out.append(MoELayerWeights(
            index=int(model.moe_layers[r]),
            router=np.asarray(ck.router(key), np.float64),
            experts=tuple(canon(ck.expert(key, e)) for e in range(n_exp)),
            shared=() if shared is None else (canon(shared),),
            norm_weight=gamma))
    has_norm = all(lw.norm_weight is not None for lw in out)
    desc = (f"checkpoint {path}: first {layers} of {len(keys)} MoE layers at full size; "
            + ("pre-MoE norm weights from the checkpoint" if has_norm else
               "norm weights not found in the checkpoint: taken as 1")
            + "; tokens h_0 ~ N(0, 1) per component")
    kind = "relu" if ck.ffn_kind == "relu" else model.ffn_kind
    return MoEStack(tuple(out), kind, model.moe.top_k,
                    FAMILY_GATE.get(model.family, "softmax_topk"),
                    "rmsnorm" if model.norm == "rmsnorm" or model.family == "switch"
                    else "layernorm", 1e-5, desc)


def certify_model(model, alloc, *, checkpoint: str | None = None, tokens: int = 256,
                  layers: int | None = None, scale: int | None = None,
                  method: str = "hybrid", attn_lipschitz: float = 0.0,
                  seed: int = 0, progress=None) -> CertifyReport:
    """Certified hidden-state perturbation and routing per MoE layer of ``model``.

    Parameters
    ----------
    model : MoEModel
    alloc : BitAllocation
        Expert bits per (MoE layer, expert); ``defaults['router']`` and
        ``defaults['shared']`` give the router's and shared experts' bits (16 = float);
        ``group_size`` and ``symmetric`` the RTN format.
    checkpoint : str, optional
        Safetensors checkpoint (file, directory or index); synthetic weights when None.
    tokens : int
        Number of random tokens ``h_0 ~ N(0, 1)``.
    layers : int, optional
        First MoE layers to use (default :func:`default_layers`).
    scale : int, optional
        Synthetic only: divide hidden and FFN sizes by this (default :func:`auto_scale`).
    method : {'hybrid', 'analytic'}
    attn_lipschitz : float
    seed : int
    progress : callable, optional
        Called with a message at each stage (weights, quantization, each layer).

    Returns
    -------
    CertifyReport
    """
    alloc.check(model)
    if not 1 <= int(tokens) <= 1 << 20:
        raise ConfigError.single("must be in 1..1048576", key="--tokens", value=tokens)
    n_layers = default_layers(model) if layers is None else int(layers)
    if not 1 <= n_layers <= model.num_moe_layers:
        raise ConfigError.single(f"must be in 1..{model.num_moe_layers} for {model.name}",
                                 key="--layers", value=layers)
    if checkpoint is not None:
        if scale not in (None, 1):
            raise ConfigError.single("a checkpoint is used at its own size: drop --scale",
                                     key="--scale", value=scale)
        stack = _checkpoint_stack(model, checkpoint, n_layers)
        scale = 1
    else:
        scale = auto_scale(model) if scale is None else scale
        stack = synthetic_stack(model, layers=n_layers, scale=scale, seed=seed)
    say = progress or (lambda msg: None)
    say(f"weights of {n_layers} layer(s) ready; quantizing")
    bits = np.asarray(alloc.expert_bits)[:n_layers]
    qs = quantize_stack(stack, bits, router_bits=alloc.defaults["router"],
                        shared_bits=alloc.defaults["shared"], group_size=alloc.group_size,
                        symmetric=alloc.symmetric)
    h0 = np.random.default_rng([seed, 1]).normal(size=(int(tokens), stack.d))
    say("quantized; certifying")
    cert = certify_stack(qs, h0, method=method, attn_lipschitz=attn_lipschitz,
                         progress=progress)
    setup = {"model": model.name, "weights": stack.description,
             "scale": scale, "layers": n_layers, "tokens": int(tokens),
             "allocation": f"{alloc.method}, average expert bits "
                           f"{float(bits.mean()):.3g} over these layers"
                           + (f" ({int((bits == 0).sum())} experts pruned: never selected)"
                              if (bits == 0).any() else "") + ", router "
                           f"{alloc.defaults['router']} bits, shared {alloc.defaults['shared']} "
                           f"bits, RTN group {alloc.group_size}, "
                           f"{'symmetric' if alloc.symmetric else 'asymmetric'}",
             "bound": method, "gate": stack.gate, "norm": stack.norm,
             "attention": (f"not simulated; perturbation factor 1 + {attn_lipschitz:g} "
                           "per layer"),
             "seed": seed}
    return CertifyReport(cert.rows(), setup)
