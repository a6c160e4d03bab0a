"""MoE model specifications (``workloads/*.yaml``) and their weight tensors.

A :class:`MoEModel` is validated from YAML (or imported from a Hugging Face ``config.json``
by :mod:`accelsim.workload.hf`). :meth:`MoEModel.tensors` enumerates every parameter tensor
with a stable name (``L3.E5.w1``, ``L3.attn.q``, ``L3.router``, ``L3.S0.w2``, ``embed``,
``lm_head``); parameter counts, the graph builder and the simulator's storage all derive from
that one list.

Shapes follow PyTorch ``Linear``: ``(out_features, in_features)``. SwiGLU experts have
``w1`` (gate, ffn x d), ``w3`` (up, ffn x d) and ``w2`` (down, d x ffn); ReLU/GELU experts have
``w1`` (ffn x d) and ``w2`` (d x ffn) (Switch's ``wi``/``wo``).

Examples
--------
>>> from accelsim.workload import load_workload
>>> m = load_workload("mixtral-8x7b")
>>> round(m.param_counts()["total_params"] / 1e9, 1)
46.7
>>> m.tensor("L3.E5.w1").shape
(14336, 4096)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from pydantic import Field, model_validator

from ..config import Bounded, Spec

__all__ = ["Attention", "MoeSpec", "MoEModel", "TensorSpec", "LayerInfo", "FAMILIES"]

FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "olmoe",
            "switch", "llama", "mistral", "granite", "generic")

Dim = Bounded(int, 1, 1 << 22)


class Attention(Spec):
    """Self-attention. ``kind: gqa`` covers MHA (kv heads = heads), GQA and MQA;
    ``kind: mla`` is DeepSeek's multi-head latent attention (low-rank q and kv)."""

    kind: Literal["gqa", "mla"] = "gqa"
    num_heads: Dim
    num_kv_heads: Dim | None = None
    head_dim: Dim | None = None
    qkv_bias: bool = False
    out_bias: bool = False
    qk_norm: bool = False
    qk_norm_per_head: bool = False
    q_lora_rank: Dim | None = None
    kv_lora_rank: Dim | None = None
    qk_nope_head_dim: Dim | None = None
    qk_rope_head_dim: Dim | None = None
    v_head_dim: Dim | None = None
    relative_attention_num_buckets: Bounded(int, 0, 1 << 16) = 0

    @model_validator(mode="after")
    def _check(self):
        if self.qk_norm_per_head and not self.qk_norm:
            raise ValueError("qk_norm_per_head needs qk_norm: true")
        if self.kind == "mla":
            missing = [k for k in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                                   "v_head_dim") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"MLA attention needs {', '.join(missing)}")
        kv = self.num_kv_heads or self.num_heads
        if self.kind == "gqa" and self.num_heads % kv:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of "
                             f"num_kv_heads ({kv})")
        return self


class MoeSpec(Spec):
    """Routed experts, shared experts and which layers are MoE.

    Layer ``i`` (counted within its stack) is an MoE layer when ``i >= first_dense_layers``,
    ``i % layer_step == layer_offset`` and ``i`` is not in ``dense_layers``.
    """

    num_experts: Bounded(int, 1, 1 << 16)
    top_k: Bounded(int, 1, 1 << 10)
    expert_ffn_size: Dim
    num_shared_experts: Bounded(int, 0, 64) = 0
    shared_expert_ffn_size: Dim | None = None
    shared_expert_gate: bool = False
    router_bias: bool = False
    capacity_factor: Bounded(float, 0.01, 1e3) | None = None
    first_dense_layers: Bounded(int, 0, 1 << 12) = 0
    layer_step: Bounded(int, 1, 1 << 12) = 1
    layer_offset: Bounded(int, 0, 1 << 12) = 0
    dense_layers: list[Bounded(int, 0, 1 << 12)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self):
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) must be <= num_experts "
                             f"({self.num_experts})")
        if self.layer_offset >= self.layer_step:
            raise ValueError("layer_offset must be < layer_step")
        return self

    def is_moe(self, i: int) -> bool:
        return (i >= self.first_dense_layers and i % self.layer_step == self.layer_offset
                and i not in self.dense_layers)


@dataclass(frozen=True)
class TensorSpec:
    """One parameter tensor.

    ``role`` is one of: expert, shared, router, shared_gate, attention, dense_ffn, embed,
    lm_head, norm, bias. ``layer`` is the global layer index (None for embed, lm_head and
    the final norms), ``expert`` the routed expert index or shared-expert index.
    ``matrix`` is ``w1``/``w2``/``w3``/``q``/... for matrices, None for vectors.
    """

    name: str
    role: str
    shape: tuple[int, ...]
    layer: int | None = None
    expert: int | None = None
    matrix: str | None = None

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) == 2 and self.role not in ("embed",)


@dataclass(frozen=True)
class LayerInfo:
    """One transformer block."""

    index: int          # global index, used in tensor names (L{index})
    stack: str          # 'decoder' or 'encoder'
    local_index: int    # index inside its stack
    is_moe: bool
    cross_attention: bool


class MoEModel(Spec):
    """A Mixture-of-Experts transformer, or a dense one when ``moe`` is absent (every layer a
    dense FFN of ``dense_ffn_size``)."""

    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    family: Literal["mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "olmoe",
                    "switch", "llama", "mistral", "granite", "generic"] = "generic"
    architecture: Literal["decoder", "encoder_decoder"] = "decoder"
    hidden_size: Dim
    num_layers: Bounded(int, 1, 4096)
    num_decoder_layers: Bounded(int, 0, 4096) = 0
    vocab_size: Dim
    tie_word_embeddings: bool = False
    ffn_kind: Literal["swiglu", "relu", "gelu"] = "swiglu"
    dense_ffn_size: Dim | None = None
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    attention: Attention
    #: None: a dense model (every layer a dense FFN of ``dense_ffn_size``; Llama, Mistral,
    #: Granite): no routed experts, an empty expert-bit table
    moe: MoeSpec | None = None
    mlp_bias: bool = False
    sources: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self):
        if self.architecture == "encoder_decoder" and self.num_decoder_layers < 1:
            raise ValueError("an encoder_decoder model needs num_decoder_layers >= 1")
        if self.architecture == "decoder" and self.num_decoder_layers:
            raise ValueError("num_decoder_layers is only for architecture: encoder_decoder")
        if any(not li.is_moe for li in self.layers) and self.dense_ffn_size is None:
            raise ValueError("some layers are dense: dense_ffn_size is required")
        if self.moe is not None and not any(li.is_moe for li in self.layers):
            raise ValueError("no layer is an MoE layer (check moe.first_dense_layers, "
                             "layer_step, layer_offset, dense_layers)")
        a = self.attention
        if a.kind == "gqa" and a.head_dim is None and self.hidden_size % a.num_heads:
            raise ValueError("hidden_size is not a multiple of num_heads: give head_dim")
        return self

    # ------------------------------------------------------------------ structure
    @cached_property
    def layers(self) -> tuple[LayerInfo, ...]:
        out = []
        stacks = [("encoder", self.num_layers), ("decoder", self.num_decoder_layers)] if (
            self.architecture == "encoder_decoder") else [("decoder", self.num_layers)]
        g = 0
        for stack, n in stacks:
            for i in range(n):
                out.append(LayerInfo(g, stack, i, self.moe is not None and self.moe.is_moe(i),
                                     self.architecture == "encoder_decoder"
                                     and stack == "decoder"))
                g += 1
        return tuple(out)

    @cached_property
    def moe_layers(self) -> tuple[int, ...]:
        """Global indices of the MoE layers; row ``r`` of a BitAllocation is layer
        ``moe_layers[r]``."""
        return tuple(li.index for li in self.layers if li.is_moe)

    @property
    def num_moe_layers(self) -> int:
        return len(self.moe_layers)

    @property
    def is_dense(self) -> bool:
        """True for a model without MoE layers (``moe`` absent)."""
        return self.moe is None

    @property
    def num_experts(self) -> int:
        """Routed experts per MoE layer (0 for a dense model): the columns of a
        BitAllocation's ``expert_bits``."""
        return 0 if self.moe is None else self.moe.num_experts

    @property
    def total_layers(self) -> int:
        return len(self.layers)

    @property
    def head_dim(self) -> int:
        a = self.attention
        return a.head_dim or self.hidden_size // a.num_heads

    @property
    def num_kv_heads(self) -> int:
        return self.attention.num_kv_heads or self.attention.num_heads

    @property
    def shared_ffn_size(self) -> int:
        if self.moe is None:
            return 0
        return self.moe.shared_expert_ffn_size or self.moe.expert_ffn_size

    @property
    def expert_matrices(self) -> tuple[str, ...]:
        return ("w1", "w3", "w2") if self.ffn_kind == "swiglu" else ("w1", "w2")

    def kv_bytes_per_token_per_layer(self, bits: float) -> float:
        """KV-cache bytes one token adds to one attention layer (MLA: the compressed latent and
        the rope key, as DeepSeek caches them)."""
        a = self.attention
        if a.kind == "mla":
            width = (a.kv_lora_rank or 0) + (a.qk_rope_head_dim or 0)
        else:
            width = 2 * self.num_kv_heads * self.head_dim
        return width * bits / 8.0

    # ------------------------------------------------------------------ tensors
    def _ffn(self, prefix: str, role: str, size: int, layer: int, expert: int | None):
        d = self.hidden_size
        shapes = {"w1": (size, d), "w3": (size, d), "w2": (d, size)}
        out = [TensorSpec(f"{prefix}.{m}", role, shapes[m], layer, expert, m)
               for m in self.expert_matrices]
        if self.mlp_bias and role == "dense_ffn":
            out += [TensorSpec(f"{prefix}.{m}_bias", "bias", (shapes[m][0],), layer)
                    for m in self.expert_matrices]
        return out

    def _attention(self, prefix: str, layer: int) -> list[TensorSpec]:
        a, d = self.attention, self.hidden_size
        T = TensorSpec
        out: list[TensorSpec] = []
        if a.kind == "mla":
            qk = (a.qk_nope_head_dim or 0) + (a.qk_rope_head_dim or 0)
            if a.q_lora_rank:
                out += [T(f"{prefix}.q_a", "attention", (a.q_lora_rank, d), layer, None, "q_a"),
                        T(f"{prefix}.q_a_norm", "norm", (a.q_lora_rank,), layer),
                        T(f"{prefix}.q_b", "attention", (a.num_heads * qk, a.q_lora_rank),
                          layer, None, "q_b")]
            else:
                out.append(T(f"{prefix}.q", "attention", (a.num_heads * qk, d), layer, None,
                             "q"))
            kvl = a.kv_lora_rank or 0
            out += [T(f"{prefix}.kv_a", "attention", (kvl + (a.qk_rope_head_dim or 0), d),
                      layer, None, "kv_a"),
                    T(f"{prefix}.kv_a_norm", "norm", (kvl,), layer),
                    T(f"{prefix}.kv_b", "attention",
                      (a.num_heads * ((a.qk_nope_head_dim or 0) + (a.v_head_dim or 0)), kvl),
                      layer, None, "kv_b"),
                    T(f"{prefix}.o", "attention", (d, a.num_heads * (a.v_head_dim or 0)),
                      layer, None, "o")]
            return out
        hd, h, kvh = self.head_dim, a.num_heads, self.num_kv_heads
        out += [T(f"{prefix}.q", "attention", (h * hd, d), layer, None, "q"),
                T(f"{prefix}.k", "attention", (kvh * hd, d), layer, None, "k"),
                T(f"{prefix}.v", "attention", (kvh * hd, d), layer, None, "v"),
                T(f"{prefix}.o", "attention", (d, h * hd), layer, None, "o")]
        if a.qkv_bias:
            out += [T(f"{prefix}.{m}_bias", "bias", (n,), layer) for m, n in
                    (("q", h * hd), ("k", kvh * hd), ("v", kvh * hd))]
        if a.out_bias:
            out.append(T(f"{prefix}.o_bias", "bias", (d,), layer))
        if a.qk_norm:
            # OLMoE normalises the whole q and k projections; Qwen3 each head (one
            # head_dim-sized weight shared by all heads)
            qn, kn = (hd, hd) if a.qk_norm_per_head else (h * hd, kvh * hd)
            out += [T(f"{prefix}.q_norm", "norm", (qn,), layer),
                    T(f"{prefix}.k_norm", "norm", (kn,), layer)]
        return out

    def _norm(self, name: str, layer: int | None) -> list[TensorSpec]:
        d = self.hidden_size
        t = [TensorSpec(name, "norm", (d,), layer)]
        if self.norm == "layernorm" and self.family != "switch":
            t.append(TensorSpec(name + "_bias", "bias", (d,), layer))
        return t

    def layer_tensors(self, li: LayerInfo) -> list[TensorSpec]:
        """Every tensor of one block."""
        L, d, moe = li.index, self.hidden_size, self.moe
        P = f"L{L}"
        out = self._norm(f"{P}.attn_norm", L) + self._attention(f"{P}.attn", L)
        if self.attention.relative_attention_num_buckets and li.local_index == 0:
            out.append(TensorSpec(f"{P}.attn.rel_bias", "attention",
                                  (self.attention.relative_attention_num_buckets,
                                   self.attention.num_heads), L))
        if li.cross_attention:
            out += self._norm(f"{P}.xattn_norm", L) + self._attention(f"{P}.xattn", L)
        out += self._norm(f"{P}.ffn_norm", L)
        if not li.is_moe:
            return out + self._ffn(f"{P}.ffn", "dense_ffn", self.dense_ffn_size or 0, L, None)
        out.append(TensorSpec(f"{P}.router", "router", (moe.num_experts, d), L, None, "router"))
        if moe.router_bias:
            out.append(TensorSpec(f"{P}.router_bias", "bias", (moe.num_experts,), L))
        for e in range(moe.num_experts):
            out += self._ffn(f"{P}.E{e}", "expert", moe.expert_ffn_size, L, e)
        for s in range(moe.num_shared_experts):
            out += self._ffn(f"{P}.S{s}", "shared", self.shared_ffn_size, L, s)
        if moe.shared_expert_gate and moe.num_shared_experts:
            out.append(TensorSpec(f"{P}.S.gate", "shared_gate", (1, d), L, None, "gate"))
        return out

    @cached_property
    def _tensors(self) -> tuple[TensorSpec, ...]:
        d, V = self.hidden_size, self.vocab_size
        out = [TensorSpec("embed", "embed", (V, d))]
        for li in self.layers:
            out += self.layer_tensors(li)
        if self.architecture == "encoder_decoder":
            out += self._norm("encoder_final_norm", None) + self._norm("final_norm", None)
        else:
            out += self._norm("final_norm", None)
        if not self.tie_word_embeddings:
            out.append(TensorSpec("lm_head", "lm_head", (V, d), None, None, "lm_head"))
        return tuple(out)

    def tensors(self) -> tuple[TensorSpec, ...]:
        """Every parameter tensor, in model order."""
        return self._tensors

    @cached_property
    def _by_name(self) -> dict[str, TensorSpec]:
        return {t.name: t for t in self._tensors}

    def tensor(self, name: str) -> TensorSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name} has no tensor {name!r}") from None

    # ------------------------------------------------------------------ counts
    def param_counts(self) -> dict[str, int]:
        """Parameter counts.

        ``active_params`` counts, per token, every non-expert parameter (embeddings and
        lm_head included), the ``top_k`` routed experts of each MoE layer and the shared
        experts (Mixtral, Qwen1.5-MoE and OLMoE publish their active counts that way);
        ``*_non_embedding`` leave out the embedding and lm_head matrices (the "1B" of
        OLMoE-1B-7B); ``active_params_excluding_input_embedding`` leaves out only the input
        embedding table, a lookup of one row per token, unless it is tied to the lm_head
        (DeepSeek publishes its activated counts that way).
        """
        total = expert = shared = embed = 0
        for t in self._tensors:
            n = t.numel
            total += n
            if t.role == "expert":
                expert += n
            elif t.role == "shared":
                shared += n
            elif t.role in ("embed", "lm_head"):
                embed += n
        per_expert = 0 if self.moe is None else sum(
            self.hidden_size * self.moe.expert_ffn_size for _ in self.expert_matrices)
        top_k = 0 if self.moe is None else self.moe.top_k
        active = total - expert + self.num_moe_layers * top_k * per_expert
        return {
            "total_params": total,
            "active_params": active,
            "expert_params": expert,
            "shared_expert_params": shared,
            "embedding_params": embed,
            "params_per_expert": per_expert,
            "total_params_non_embedding": total - embed,
            "active_params_non_embedding": active - embed,
            "active_params_excluding_input_embedding":
                active - (0 if self.tie_word_embeddings else self.tensor("embed").numel),
        }

    def summary(self) -> dict:
        """What ``accelsim workload show --format json`` prints."""
        c = self.param_counts()
        return {
            "name": self.name,
            "description": self.description,
            "family": self.family,
            "architecture": self.architecture,
            "hidden_size": self.hidden_size,
            "num_layers": self.total_layers,
            "num_moe_layers": self.num_moe_layers,
            "moe_layers": list(self.moe_layers),
            "num_experts": self.num_experts,
            "top_k": 0 if self.moe is None else self.moe.top_k,
            "num_shared_experts": 0 if self.moe is None else self.moe.num_shared_experts,
            "expert_ffn_size": None if self.moe is None else self.moe.expert_ffn_size,
            "ffn_kind": self.ffn_kind,
            "attention": self.attention.kind,
            "vocab_size": self.vocab_size,
            **c,
        }
