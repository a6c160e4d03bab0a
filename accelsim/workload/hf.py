"""Hugging Face ``config.json`` import: one :class:`~accelsim.workload.model.MoEModel` per file.

Supported families (``architectures`` entry, or ``model_type`` when ``architectures`` is
absent -> ``MoEModel.family``):

- ``MixtralForCausalLM`` / ``mixtral`` -> ``mixtral``
- ``Qwen2MoeForCausalLM`` / ``qwen2_moe`` -> ``qwen2_moe``
- ``Qwen3MoeForCausalLM`` / ``qwen3_moe`` -> ``qwen3_moe``
- ``DeepseekV2ForCausalLM`` / ``deepseek_v2`` -> ``deepseek_v2``
- ``DeepseekV3ForCausalLM`` / ``deepseek_v3`` -> ``deepseek_v3``
- ``OlmoeForCausalLM`` / ``olmoe`` -> ``olmoe``
- ``SwitchTransformersForConditionalGeneration`` / ``switch_transformers`` -> ``switch``

Dense decoders (no MoE layers; ``MoEModel.moe`` is None):

- ``LlamaForCausalLM`` / ``llama`` -> ``llama``
- ``MistralForCausalLM`` / ``mistral`` -> ``mistral``
- ``GraniteForCausalLM`` / ``granite`` -> ``granite``

Each family is a table of :class:`_Key` rows (config key, MoEModel field, type, default) plus
the constants of the family (FFN kind, attention kind, biases) and a small ``derive`` function
for what is not a plain copy (which layers are MoE, shared experts, the router bias). Every
key problem (missing, wrong type) is collected and raised together as one
:class:`~accelsim.errors.ConfigError` naming the file and the config.json key; a problem found
when validating the assembled model is reported under the config.json key it came from.
``docs/workloads.md`` has the key-by-key mapping.

Examples
--------
>>> cfg = {"architectures": ["MixtralForCausalLM"], "hidden_size": 4096,
...        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
...        "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
...        "vocab_size": 32000, "tie_word_embeddings": False}
>>> m = from_hf_config(cfg)
>>> m.family, m.num_moe_layers, round(m.param_counts()["total_params"] / 1e9, 1)
('mixtral', 32, 46.7)
>>> try:
...     from_hf_config({"architectures": ["GPT2LMHeadModel"]}, file="config.json")
... except UnsupportedModelError as e:
...     print(str(e)[:68])
config.json: architectures: unsupported architecture 'GPT2LMHeadMode
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..config import validate
from ..errors import ConfigError, Problem, UnsupportedModelError
from .model import MoEModel

__all__ = ["from_hf_config", "SUPPORTED_ARCHITECTURES", "hf_key_mapping"]

_REQUIRED = object()


@dataclass(frozen=True)
class _Key:
    """One config.json key: where it goes in the MoEModel mapping and what it must be.

    ``kind``: ``int`` (an integer >= ``minimum``), ``int?`` (the same or null), ``bool``,
    ``str``, ``int_list`` (a list of integers >= 0). ``target`` is a dotted MoEModel field
    ('' when only ``derive`` uses the value).
    """

    hf: str
    target: str
    kind: str = "int"
    default: Any = _REQUIRED
    minimum: int = 1


_Derived = tuple[dict[str, Any], dict[str, str], list[str]]


@dataclass(frozen=True)
class _Family:
    family: str
    architecture: str
    model_type: str
    keys: tuple[_Key, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    #: values by config key -> (extra fields, their config keys, notes)
    derive: Callable[[dict[str, Any]], _Derived] | None = None


# ----------------------------------------------------------------------------- key tables

def _decoder_keys(ffn_key: str, experts_key: str) -> tuple[_Key, ...]:
    """Keys every decoder-only family shares (Llama-style names)."""
    return (
        _Key("hidden_size", "hidden_size"),
        _Key("num_hidden_layers", "num_layers"),
        _Key("vocab_size", "vocab_size"),
        _Key("tie_word_embeddings", "tie_word_embeddings", "bool", False),
        _Key("num_attention_heads", "attention.num_heads"),
        _Key(ffn_key, "moe.expert_ffn_size"),
        _Key(experts_key, "moe.num_experts"),
        _Key("num_experts_per_tok", "moe.top_k"),
    )


_GQA_KEYS = (
    _Key("num_key_value_heads", "attention.num_kv_heads", "int?", None),
    _Key("head_dim", "attention.head_dim", "int?", None),
)

_QWEN_LAYER_KEYS = (
    _Key("intermediate_size", "dense_ffn_size", "int?", None),
    _Key("decoder_sparse_step", "", "int", 1),
    _Key("mlp_only_layers", "moe.dense_layers", "int_list", ()),
)

_DEEPSEEK_KEYS = (
    *_decoder_keys("moe_intermediate_size", "n_routed_experts"),
    _Key("intermediate_size", "dense_ffn_size", "int?", None),
    _Key("n_shared_experts", "moe.num_shared_experts", "int?", None, minimum=0),
    _Key("first_k_dense_replace", "moe.first_dense_layers", "int", 0, minimum=0),
    _Key("moe_layer_freq", "moe.layer_step", "int", 1),
    _Key("q_lora_rank", "attention.q_lora_rank", "int?"),
    _Key("kv_lora_rank", "attention.kv_lora_rank"),
    _Key("qk_nope_head_dim", "attention.qk_nope_head_dim"),
    _Key("qk_rope_head_dim", "attention.qk_rope_head_dim"),
    _Key("v_head_dim", "attention.v_head_dim"),
    _Key("topk_method", "", "str", "greedy"),
    _Key("attention_bias", "", "bool", False),
    _Key("num_nextn_predict_layers", "", "int?", None, minimum=0),
)

_DECODER_FIXED = {"architecture": "decoder", "ffn_kind": "swiglu", "norm": "rmsnorm",
                  "attention.kind": "gqa"}

#: Dense Llama-style decoders (Llama, Mistral, Granite): SwiGLU FFN in every layer.
_DENSE_KEYS = (
    _Key("hidden_size", "hidden_size"),
    _Key("num_hidden_layers", "num_layers"),
    _Key("vocab_size", "vocab_size"),
    _Key("tie_word_embeddings", "tie_word_embeddings", "bool", False),
    _Key("num_attention_heads", "attention.num_heads"),
    _Key("intermediate_size", "dense_ffn_size"),
    *_GQA_KEYS,
    _Key("attention_bias", "", "bool", False),
    _Key("mlp_bias", "mlp_bias", "bool", False),
    _Key("hidden_act", "", "str", "silu"),
    _Key("sliding_window", "", "int?", None),
)


def _dense(v: dict[str, Any]) -> _Derived:
    # LlamaAttention: attention_bias puts a bias on q, k, v and o alike
    if v["hidden_act"] != "silu":
        raise UnsupportedModelError.single(
            "only SwiGLU FFNs (hidden_act silu) are modelled for dense decoders",
            key="hidden_act", value=v["hidden_act"])
    out, src, _ = _attention_bias(v)
    notes = ["dense decoder: every layer has a SwiGLU FFN of intermediate_size"]
    if v.get("sliding_window"):
        notes.append(f"sliding_window {v['sliding_window']}: attention is charged over the "
                     "whole context (the window is not modelled)")
    return out, src, notes


def _qwen_layers(v: dict[str, Any]) -> _Derived:
    # Qwen2/3-MoE: layer i is sparse when (i + 1) % decoder_sparse_step == 0 and
    # i not in mlp_only_layers
    step = v["decoder_sparse_step"]
    out = {"moe.layer_step": step, "moe.layer_offset": step - 1}
    src = {"moe.layer_step": "decoder_sparse_step", "moe.layer_offset": "decoder_sparse_step"}
    return out, src, []


def _qwen2(v: dict[str, Any]) -> _Derived:
    out, src, notes = _qwen_layers(v)
    if v["shared_expert_intermediate_size"]:
        out |= {"moe.num_shared_experts": 1, "moe.shared_expert_gate": True,
                "moe.shared_expert_ffn_size": v["shared_expert_intermediate_size"]}
        src["moe.shared_expert_ffn_size"] = "shared_expert_intermediate_size"
        notes.append("one shared expert with a sigmoid gate (Qwen2MoeSparseMoeBlock)")
    return out, src, notes


def _attention_bias(v: dict[str, Any]) -> _Derived:
    # Qwen3-MoE and OLMoE: attention_bias puts a bias on q, k, v and o alike
    b = v["attention_bias"]
    return ({"attention.qkv_bias": b, "attention.out_bias": b},
            {"attention.qkv_bias": "attention_bias", "attention.out_bias": "attention_bias"}, [])


def _qwen3(v: dict[str, Any]) -> _Derived:
    out, src, notes = _qwen_layers(v)
    bias, bsrc, _ = _attention_bias(v)
    notes.append("q and k RMSNorm per head (head_dim), no shared expert")
    return out | bias, src | bsrc, notes


def _deepseek(v: dict[str, Any]) -> _Derived:
    out: dict[str, Any] = {"moe.num_shared_experts": v["n_shared_experts"] or 0,
                           "moe.router_bias": v["topk_method"] == "noaux_tc"}
    src = {"moe.num_shared_experts": "n_shared_experts", "moe.router_bias": "topk_method"}
    notes = ["layer i is MoE when i >= first_k_dense_replace and i % moe_layer_freq == 0"]
    if v["n_shared_experts"]:
        notes.append(f"HF's shared MLP of width n_shared_experts x moe_intermediate_size is "
                     f"modelled as {v['n_shared_experts']} shared experts of "
                     f"moe_intermediate_size (same parameter count)")
    if out["moe.router_bias"]:
        notes.append("topk_method noaux_tc: the router carries e_score_correction_bias "
                     "(L{i}.router_bias)")
    if v.get("num_nextn_predict_layers"):
        notes.append("the multi-token-prediction layers (num_nextn_predict_layers) are "
                     "not modelled")
    if v["attention_bias"]:
        raise UnsupportedModelError.single(
            "MLA projections with biases are not modelled (only false is supported)",
            key="attention_bias", value=True)
    return out, src, notes


_SWITCH_ACT = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu"}


def _switch_step(v: dict[str, Any], stack: str, layers: int) -> tuple[int | None, str]:
    key = f"{stack}_sparse_step"
    if v.get(key) is not None:
        return v[key], key
    n_key = f"num_sparse_{stack}_layers"
    n = v.get(n_key)
    if n is None:
        return None, key
    # SwitchTransformersConfig derives the step from the count of sparse layers
    return (layers // n if n > 0 else 0), n_key


def _switch(v: dict[str, Any]) -> _Derived:
    enc_layers = v["num_layers"]
    dec_layers = v["num_decoder_layers"] or enc_layers
    enc, enc_key = _switch_step(v, "encoder", enc_layers)
    dec, dec_key = _switch_step(v, "decoder", dec_layers)
    problems = [Problem(f"field required (or num_sparse_{s}_layers)", key=k)
                for s, (step, k) in (("encoder", (enc, enc_key)), ("decoder", (dec, dec_key)))
                if step is None]
    if problems:
        raise ConfigError(problems)
    if enc != dec:
        raise UnsupportedModelError.single(
            f"encoder and decoder with different sparse steps ({enc_key} {enc}, {dec_key} "
            f"{dec}) are not supported: MoEModel has one MoE-layer rule for both stacks",
            key=dec_key, value=dec)
    if enc == 0:
        raise UnsupportedModelError.single("no sparse (MoE) block: not an MoE model",
                                           key=enc_key, value=0)
    act = v["dense_act_fn"]
    if act not in _SWITCH_ACT:
        raise UnsupportedModelError.single(
            f"unsupported activation (supported: {', '.join(sorted(_SWITCH_ACT))})",
            key="dense_act_fn", value=act)
    # SwitchTransformersStack: block i is sparse when i % step == 1, or every block for step 1
    step, offset = (1, 0) if enc == 1 else (enc, 1)
    out = {"num_decoder_layers": dec_layers, "moe.layer_step": step, "moe.layer_offset": offset,
           "ffn_kind": _SWITCH_ACT[act], "dense_ffn_size": v["d_ff"]}
    src = {"num_decoder_layers": "num_decoder_layers", "moe.layer_step": enc_key,
           "moe.layer_offset": enc_key, "ffn_kind": "dense_act_fn", "dense_ffn_size": "d_ff"}
    notes = ["block i of each stack is sparse when i % sparse_step == 1 (every block for "
             "sparse_step 1)",
             "one token embedding serves encoder and decoder (HF 'shared')"]
    if v.get("expert_capacity") is not None:
        notes.append(f"expert_capacity {v['expert_capacity']} tokens per expert is not part "
                     f"of the model spec (use the scenario's capacity factor)")
    return out, src, notes


_FAMILIES: tuple[_Family, ...] = (
    _Family("mixtral", "MixtralForCausalLM", "mixtral",
            (*_decoder_keys("intermediate_size", "num_local_experts"), *_GQA_KEYS),
            _DECODER_FIXED),
    _Family("qwen2_moe", "Qwen2MoeForCausalLM", "qwen2_moe",
            (*_decoder_keys("moe_intermediate_size", "num_experts"), *_GQA_KEYS,
             *_QWEN_LAYER_KEYS,
             _Key("shared_expert_intermediate_size", "", "int", minimum=0)),
            {**_DECODER_FIXED, "attention.qkv_bias": True}, _qwen2),
    _Family("qwen3_moe", "Qwen3MoeForCausalLM", "qwen3_moe",
            (*_decoder_keys("moe_intermediate_size", "num_experts"), *_GQA_KEYS,
             *_QWEN_LAYER_KEYS,
             _Key("attention_bias", "", "bool", False)),
            {**_DECODER_FIXED, "attention.qk_norm": True, "attention.qk_norm_per_head": True},
            _qwen3),
    _Family("deepseek_v2", "DeepseekV2ForCausalLM", "deepseek_v2", _DEEPSEEK_KEYS,
            {**_DECODER_FIXED, "attention.kind": "mla"}, _deepseek),
    _Family("deepseek_v3", "DeepseekV3ForCausalLM", "deepseek_v3", _DEEPSEEK_KEYS,
            {**_DECODER_FIXED, "attention.kind": "mla"}, _deepseek),
    _Family("olmoe", "OlmoeForCausalLM", "olmoe",
            (*_decoder_keys("intermediate_size", "num_experts"), *_GQA_KEYS,
             _Key("attention_bias", "", "bool", False)),
            {**_DECODER_FIXED, "attention.qk_norm": True}, _attention_bias),
    _Family("llama", "LlamaForCausalLM", "llama", _DENSE_KEYS, _DECODER_FIXED, _dense),
    _Family("mistral", "MistralForCausalLM", "mistral", _DENSE_KEYS, _DECODER_FIXED, _dense),
    _Family("granite", "GraniteForCausalLM", "granite", _DENSE_KEYS, _DECODER_FIXED, _dense),
    _Family("switch", "SwitchTransformersForConditionalGeneration", "switch_transformers",
            (_Key("d_model", "hidden_size"),
             _Key("d_ff", "moe.expert_ffn_size"),
             _Key("d_kv", "attention.head_dim"),
             _Key("num_heads", "attention.num_heads"),
             _Key("num_layers", "num_layers"),
             _Key("num_decoder_layers", "", "int?", None),
             _Key("num_experts", "moe.num_experts"),
             _Key("encoder_sparse_step", "", "int?", None, minimum=0),
             _Key("decoder_sparse_step", "", "int?", None, minimum=0),
             _Key("num_sparse_encoder_layers", "", "int?", None, minimum=0),
             _Key("num_sparse_decoder_layers", "", "int?", None, minimum=0),
             _Key("expert_capacity", "", "int?", None),
             _Key("relative_attention_num_buckets", "attention.relative_attention_num_buckets",
                  "int", 32, minimum=0),
             _Key("vocab_size", "vocab_size"),
             _Key("tie_word_embeddings", "tie_word_embeddings", "bool", True),
             _Key("router_bias", "moe.router_bias", "bool", False),
             _Key("dense_act_fn", "", "str", "relu")),
            {"architecture": "encoder_decoder", "norm": "layernorm", "attention.kind": "gqa",
             "moe.top_k": 1},
            _switch),
)

#: Hugging Face ``architectures`` names that :func:`from_hf_config` imports.
SUPPORTED_ARCHITECTURES: tuple[str, ...] = tuple(f.architecture for f in _FAMILIES)


def hf_key_mapping(architecture: str) -> list[tuple[str, str, str, str]]:
    """The import table of one architecture: ``(config key, MoEModel field, kind, default)``.

    >>> hf_key_mapping("OlmoeForCausalLM")[0]
    ('hidden_size', 'hidden_size', 'int', 'required')
    """
    fam = next((f for f in _FAMILIES if f.architecture == architecture), None)
    if fam is None:
        raise KeyError(architecture)
    return [(k.hf, k.target or "(derived)", k.kind,
             "required" if k.default is _REQUIRED else repr(k.default)) for k in fam.keys]


# ----------------------------------------------------------------------------- reading keys

def _type_problem(k: _Key, value: Any) -> str | None:
    def is_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    if k.kind in ("int", "int?"):
        if value is None and k.kind == "int?":
            return None
        if not is_int(value):
            return "must be an integer" + (" or null" if k.kind == "int?" else "")
        if value < k.minimum:
            return f"must be >= {k.minimum}"
    elif k.kind == "bool":
        if not isinstance(value, bool):
            return "must be true or false"
    elif k.kind == "str":
        if not isinstance(value, str):
            return "must be a string"
    elif k.kind == "int_list":
        if not isinstance(value, list) or not all(is_int(x) and x >= 0 for x in value):
            return "must be a list of layer indices (integers >= 0)"
    return None


def _read(fam: _Family, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for k in fam.keys:
        if k.hf not in data:
            if k.default is _REQUIRED:
                problems.append(Problem(f"field required for {fam.architecture}", key=k.hf))
            else:
                values[k.hf] = list(k.default) if isinstance(k.default, tuple) else k.default
            continue
        reason = _type_problem(k, data[k.hf])
        if reason:
            problems.append(Problem(reason, key=k.hf, value=data[k.hf]))
        else:
            values[k.hf] = data[k.hf]
    return values, problems


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _detect(data: Mapping[str, Any]) -> _Family:
    supported = ", ".join(SUPPORTED_ARCHITECTURES)
    if "architectures" in data:
        archs = data["architectures"]
        if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
            raise ConfigError.single("must be a non-empty list of architecture names",
                                     key="architectures", value=archs)
        for a in archs:
            for fam in _FAMILIES:
                if fam.architecture == a:
                    return fam
        shown = archs[0] if len(archs) == 1 else archs
        raise UnsupportedModelError.single(
            f"unsupported architecture {shown!r}; supported: {supported}",
            key="architectures")
    if "model_type" not in data:
        raise ConfigError.single("a Hugging Face config.json needs this key (or model_type); "
                                 f"supported: {supported}", key="architectures")
    mt = data["model_type"]
    if not isinstance(mt, str):
        raise ConfigError.single("must be a string", key="model_type", value=mt)
    for fam in _FAMILIES:
        if fam.model_type == mt:
            return fam
    raise UnsupportedModelError.single(
        f"unsupported model_type {mt!r}; supported: "
        f"{', '.join(f.model_type for f in _FAMILIES)} (architectures {supported})",
        key="model_type")


def _model_name(data: Mapping[str, Any], file: str | None, fam: _Family) -> str:
    name = data.get("_name_or_path")
    if isinstance(name, str) and name.strip():
        return name.strip()[:128]
    if file:
        p = Path(file)
        stem = p.parent.name if p.stem == "config" and p.parent.name else p.stem
        if stem:
            return stem[:128]
    return f"{fam.family}-hf"


def _build(fam: _Family, data: Mapping[str, Any], file: str | None) -> MoEModel:
    values, problems = _read(fam, data)
    if problems:
        raise ConfigError(problems)
    flat: dict[str, Any] = dict(fam.fixed)
    source: dict[str, str] = {}
    for k in fam.keys:
        if k.target:
            source[k.target] = k.hf
            if values.get(k.hf) is not None:
                flat[k.target] = values[k.hf]
    notes: list[str] = []
    if fam.derive is not None:
        derived, src, notes = fam.derive(values)
        flat.update(derived)
        source.update(src)
    label = file or "a Hugging Face config.json"
    flat |= {
        "name": _model_name(data, file, fam),
        "description": f"imported from {label} ({fam.architecture})",
        "family": fam.family,
        "sources": [f"Hugging Face config.json: {label}"],
        "notes": notes,
    }
    try:
        return validate(MoEModel, _nest(flat))
    except ConfigError as exc:
        raise type(exc)([_to_hf_key(p, source, values) for p in exc.problems]) from None


def _to_hf_key(p: Problem, source: Mapping[str, str], values: Mapping[str, Any]) -> Problem:
    """Report a MoEModel validation problem under the config.json key it came from."""
    hf_key = source.get(p.key) or next(
        (source[t] for t in sorted(source, key=len, reverse=True)
         if p.key and p.key.startswith(t + ".")), None)
    if hf_key is None:
        # a rule over several fields: name the field below p.key its message mentions first
        found = [(m.start(), source[t]) for t in source
                 if not p.key or t.startswith(p.key + ".")
                 for m in [re.search(rf"\b{t.rsplit('.', 1)[-1]}\b", p.reason)] if m]
        if not found:
            return p
        hf_key = min(found)[1]
        if values.get(hf_key) is None:
            return Problem(p.reason, key=hf_key)
        return Problem(p.reason, key=hf_key, value=values[hf_key])
    where = f" (MoEModel {p.key})" if p.key != hf_key else ""
    return Problem(p.reason + where, key=hf_key, value=p.value)


def from_hf_config(data: Mapping[str, Any], *, file: str | None = None) -> MoEModel:
    """Build an :class:`MoEModel` from a Hugging Face ``config.json`` mapping.

    Parameters
    ----------
    data : mapping
        The parsed ``config.json``.
    file : str, optional
        The file it came from; named in every error and used for the model name when the
        config carries no ``_name_or_path``.

    Raises
    ------
    UnsupportedModelError
        The architecture (or a feature of it) is not one this importer models; the message
        lists the supported architectures.
    ConfigError
        A key the family needs is missing or has the wrong type (every such key is reported).
    """
    if not isinstance(data, Mapping):
        raise ConfigError.single("a config.json must be a mapping of keys to values",
                                 file=file, value=type(data).__name__)
    try:
        return _build(_detect(data), data, file)
    except ConfigError as exc:
        if file:
            raise exc.with_file(file) from None
        raise
