"""Export a :class:`~accelsim.precision.BitAllocation` to real quantization stacks.

* ``gptqmodel``: a GPTQModel ``QuantizeConfig`` dict with a ``dynamic`` per-module override
  table. GPTQModel (and vLLM when loading) walks ``dynamic`` in order and applies the first
  key whose regex ``re.match``-es the module name (anchored at the start only): ``+:`` (or
  no prefix) overrides fields such as ``bits``/``group_size``, ``-:`` leaves the module
  unquantized. One rule per (layer, bit-width) names the experts by index, e.g.
  ``+:model\\.layers\\.3\\.block_sparse_moe\\.experts\\.(?:1|5)\\..*``. GPTQ bit-widths are
  2, 3, 4 and 8; 16 means "not quantized" (a ``-:`` rule).
* ``llama.cpp``: ``pattern=type`` lines for ``llama-quantize --tensor-type`` (one per flag)
  or ``--tensor-type-file``. llama-quantize lower-cases the pattern and applies the first
  pattern that ``std::regex_search``-es the GGUF tensor name. GGUF stores the experts of a
  layer merged in one tensor per projection (``blk.{i}.ffn_gate_exps.weight`` ...), so
  **per-expert bit-widths cannot be expressed**: each layer's experts get the GGML type
  nearest the layer's mean expert bits (ties go up), see :data:`GGML_TYPES`.
* ``hqq``: a dict from full module name to ``{"nbits", "group_size", "axis"}`` (``None``:
  keep the module in float16), for building ``HQQLinear(layer, BaseQuantizeConfig(**cfg))``
  module by module. HQQ bit-widths are 1, 2, 3, 4 and 8.

None of the three can drop a routed expert: an allocation with pruned (0-bit) experts is
refused in one line (remove the experts from the checkpoint and its router first).

Module names follow the Hugging Face implementations of each family (:func:`hf_module_name`).
Routers and embeddings are not exported (GPTQModel and HQQ leave them alone; for llama.cpp
use ``--token-embedding-type`` / ``--output-tensor-type``).

Examples
--------
>>> from accelsim.workload import load_workload
>>> from accelsim.precision import BitAllocation
>>> m = load_workload("mixtral-8x7b")
>>> bits = np.full((32, 8), 2); bits[3, [1, 5]] = 4
>>> a = BitAllocation(m.name, bits, defaults={"attention": 4})
>>> cfg = gptqmodel_config(a, m)
>>> cfg["bits"]           # the most common bit-width is the base
2
>>> for key, override in cfg["dynamic"].items():
...     print(key, override)
+:model\\.layers\\.3\\.block_sparse_moe\\.experts\\.(?:1|5)\\..* {'bits': 4, 'group_size': 128}
+:model\\.layers\\.\\d+\\.self_attn\\..* {'bits': 4, 'group_size': 128}
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ConfigError, UnsupportedModelError

__all__ = ["hf_module_name", "gguf_tensor_name", "gptqmodel_config", "llama_cpp_overrides",
           "hqq_config", "EXPORTS", "export_text", "GGML_TYPES", "nearest_ggml_type",
           "GPTQ_BITS", "HQQ_BITS"]

GPTQ_BITS = (2, 3, 4, 8)
HQQ_BITS = (1, 2, 3, 4, 8)
#: Nominal bits -> GGML type used for llama.cpp overrides (k-quants where they exist).
GGML_TYPES: Mapping[int, str] = {1: "iq1_s", 2: "q2_k", 3: "q3_k", 4: "q4_k", 5: "q5_k",
                                 6: "q6_k", 8: "q8_0", 16: "f16"}
_EXPORTED_ROLES = ("expert", "attention", "shared", "dense_ffn")

_HF_FFN = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}
_HF_ATTN = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "q_a": "q_a_proj",
            "q_b": "q_b_proj", "kv_a": "kv_a_proj_with_mqa", "kv_b": "kv_b_proj"}
_GGUF_FFN = {"w1": "gate", "w3": "up", "w2": "down"}
_GGUF_ATTN = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output",
              "q_a": "attn_q_a", "q_b": "attn_q_b", "kv_a": "attn_kv_a_mqa",
              "kv_b": "attn_kv_b"}


def _moe_prefix(model, layer: int) -> str:
    if model.family == "mixtral":
        return f"model.layers.{layer}.block_sparse_moe"
    return f"model.layers.{layer}.mlp"


def hf_module_name(model, tensor) -> str | None:
    """The Hugging Face module (``nn.Linear``) holding ``tensor``, or None for tensors the
    exports do not cover (norms, router, embeddings).

    >>> from accelsim.workload import load_workload
    >>> m = load_workload("qwen1.5-moe-a2.7b")
    >>> hf_module_name(m, m.tensor("L2.E7.w2")), hf_module_name(m, m.tensor("L2.S0.w1"))
    ('model.layers.2.mlp.experts.7.down_proj', 'model.layers.2.mlp.shared_expert.gate_proj')
    """
    if tensor.role not in _EXPORTED_ROLES or tensor.matrix is None:
        return None
    if model.family == "switch":
        return _switch_module_name(model, tensor)
    if model.family == "generic":
        raise UnsupportedModelError.single(
            "exports need a known model family (mixtral, qwen2_moe, qwen3_moe, olmoe, "
            "deepseek_v2, deepseek_v3, switch) for the Hugging Face module names",
            key="family", value=model.family)
    i = tensor.layer
    if tensor.role == "attention":
        return f"model.layers.{i}.self_attn.{_HF_ATTN[tensor.matrix]}"
    if tensor.role == "dense_ffn":
        return f"model.layers.{i}.mlp.{_HF_FFN[tensor.matrix]}"
    proj = tensor.matrix if model.family == "mixtral" else _HF_FFN[tensor.matrix]
    if tensor.role == "expert":
        return f"{_moe_prefix(model, i)}.experts.{tensor.expert}.{proj}"
    shared = "shared_expert" if model.family in ("qwen2_moe",) else "shared_experts"
    return f"model.layers.{i}.mlp.{shared}.{proj}"


def _switch_module_name(model, tensor) -> str:
    li = model.layers[tensor.layer]
    stack = "encoder" if li.stack == "encoder" else "decoder"
    j = li.local_index
    if tensor.role == "attention":
        sub = "layer.0.SelfAttention"
        if ".xattn." in tensor.name:
            sub = "layer.1.EncDecAttention"
        return f"{stack}.block.{j}.{sub}.{tensor.matrix}"
    ffn_layer = 2 if stack == "decoder" else 1
    proj = {"w1": "wi", "w2": "wo"}[tensor.matrix]
    if tensor.role == "expert":
        return f"{stack}.block.{j}.layer.{ffn_layer}.mlp.experts.expert_{tensor.expert}.{proj}"
    return f"{stack}.block.{j}.layer.{ffn_layer}.DenseReluDense.{proj}"


def _modules(alloc, model) -> dict[str, int]:
    """Every exported module name -> its bits under ``alloc``."""
    alloc.check(model)
    out = {}
    for t in model.tensors():
        name = hf_module_name(model, t)
        if name is not None:
            out[name] = alloc.bits_for(model, t)
    return out


_CANNOT_DROP = {
    "GPTQModel": "GPTQModel quantizes every module of the checkpoint and cannot drop an expert",
    "llama.cpp": "llama.cpp stores a layer's experts as one merged GGUF tensor and cannot drop "
                 "an expert",
    "HQQ": "HQQ quantizes every module of the checkpoint and cannot drop an expert",
}


def _refuse_pruned(alloc, model, tool: str) -> None:
    """One-line error when ``alloc`` prunes experts: none of the exports can express it."""
    dead = np.argwhere(np.asarray(alloc.expert_bits) == 0)
    if dead.size:
        r, e = (int(v) for v in dead[0])
        raise ConfigError.single(
            f"{_CANNOT_DROP[tool]}; the allocation prunes {len(dead)} expert(s) (0 bits), "
            f"e.g. L{model.moe_layers[r]}.E{e}: remove them from the checkpoint and its "
            f"router first", key="export", value=tool)


def _check_bits(mods: Mapping[str, int], allowed, tool: str) -> None:
    bad = sorted({b for b in mods.values() if b not in allowed and b < 16})
    if bad:
        first = next(n for n, b in mods.items() if b in bad)
        raise ConfigError.single(f"{tool} supports {', '.join(map(str, allowed))} bits (and "
                                 f"16 = not quantized); the allocation uses {bad}, e.g. "
                                 f"{first}", key="export", value=tool)


def _alt(indices) -> str:
    return "(?:" + "|".join(str(i) for i in sorted(indices)) + ")"


# ----------------------------------------------------------------------------- GPTQModel
def gptqmodel_config(alloc, model, *, desc_act: bool = False) -> dict[str, Any]:
    """GPTQModel ``QuantizeConfig`` fields: base ``bits``/``group_size``/``sym`` and the
    ``dynamic`` overrides that give every exported module its allocated bits."""
    _refuse_pruned(alloc, model, "GPTQModel")
    mods = _modules(alloc, model)
    _check_bits(mods, GPTQ_BITS, "GPTQModel")
    quantized = [b for b in mods.values() if b < 16]
    base = Counter(quantized).most_common(1)[0][0] if quantized else 4
    gs = -1 if alloc.group_size is None else int(alloc.group_size)
    dynamic: dict[str, dict] = {}
    # experts: one rule per (layer, bits) that differs from the base
    for r, layer in enumerate(model.moe_layers):
        row = alloc.expert_bits[r]
        for b in sorted(set(row.tolist())):
            if b == base:
                continue
            ids = np.flatnonzero(row == b).tolist()
            prefix = re.escape(_expert_prefix(model, layer))
            key = f"{prefix}\\.{_alt(ids)}\\..*"
            dynamic[_rule(key, b)] = _override(b, gs)
    # other roles: one rule per role whose bits differ from the base
    for role, regex in _role_patterns(model).items():
        b = _role_bits(alloc, role)
        if b != base and regex is not None:
            dynamic[_rule(regex, b)] = _override(b, gs)
    return {"bits": int(base), "group_size": gs, "sym": bool(alloc.symmetric),
            "desc_act": bool(desc_act), "dynamic": dynamic}


def _expert_prefix(model, layer: int) -> str:
    if model.family == "switch":
        raise UnsupportedModelError.single("GPTQModel does not support Switch Transformers",
                                           key="family", value="switch")
    return f"{_moe_prefix(model, layer)}.experts"


def _rule(regex: str, bits: int) -> str:
    return ("-:" if bits >= 16 else "+:") + regex


def _override(bits: int, gs: int) -> dict:
    return {} if bits >= 16 else {"bits": int(bits), "group_size": gs}


def _role_bits(alloc, role: str) -> int:
    return int(alloc.defaults[role])


def _role_patterns(model) -> dict[str, str | None]:
    sh = "shared_expert" if model.family == "qwen2_moe" else "shared_experts"
    return {
        "attention": r"model\.layers\.\d+\.self_attn\..*",
        "shared": (rf"model\.layers\.\d+\.mlp\.{sh}\..*" if model.moe.num_shared_experts
                   else None),
        "dense_ffn": (r"model\.layers\.\d+\.mlp\.(?:gate_proj|up_proj|down_proj)$"
                      if model.dense_ffn_size else None),
    }


# ----------------------------------------------------------------------------- llama.cpp
def nearest_ggml_type(mean_bits: float) -> str:
    """GGML type whose nominal bits are nearest ``mean_bits`` (ties: the larger).

    >>> nearest_ggml_type(2.25), nearest_ggml_type(2.5), nearest_ggml_type(7.0)
    ('q2_k', 'q3_k', 'q8_0')
    """
    keys = sorted(GGML_TYPES)
    best = min(keys, key=lambda k: (abs(k - mean_bits), -k))
    return GGML_TYPES[best]


def gguf_tensor_name(model, tensor) -> str | None:
    """The GGUF tensor (llama.cpp naming) holding ``tensor``; every routed expert of a layer
    maps to the same merged tensor.

    >>> from accelsim.workload import load_workload
    >>> m = load_workload("mixtral-8x7b")
    >>> gguf_tensor_name(m, m.tensor("L3.E5.w2"))
    'blk.3.ffn_down_exps.weight'
    """
    if model.family == "switch":
        raise UnsupportedModelError.single("llama.cpp does not run Switch Transformers",
                                           key="family", value="switch")
    if tensor.role not in _EXPORTED_ROLES or tensor.matrix is None:
        return None
    i = tensor.layer
    if tensor.role == "attention":
        return f"blk.{i}.{_GGUF_ATTN[tensor.matrix]}.weight"
    proj = _GGUF_FFN[tensor.matrix]
    suffix = {"expert": "_exps", "shared": "_shexp", "dense_ffn": ""}[tensor.role]
    return f"blk.{i}.ffn_{proj}{suffix}.weight"


def llama_cpp_overrides(alloc, model) -> list[str]:
    """``pattern=type`` lines for ``llama-quantize --tensor-type`` (first match wins)."""
    alloc.check(model)
    _refuse_pruned(alloc, model, "llama.cpp")
    if model.family == "switch":
        gguf_tensor_name(model, model.tensors()[0])
    lines = []
    for r, layer in enumerate(model.moe_layers):
        t = nearest_ggml_type(float(alloc.expert_bits[r].mean()))
        lines.append(f"^blk\\.{layer}\\.ffn_(gate|up|down)_exps\\.weight$={t}")
    attn = sorted({_GGUF_ATTN[t.matrix] for t in model.tensors() if t.role == "attention"
                   and t.matrix in _GGUF_ATTN})
    lines.append(f"^blk\\.[0-9]+\\.({'|'.join(attn)})\\.weight$="
                 f"{nearest_ggml_type(_role_bits(alloc, 'attention'))}")
    if model.moe.num_shared_experts:
        lines.append("^blk\\.[0-9]+\\.ffn_(gate|up|down)_shexp\\.weight$="
                     f"{nearest_ggml_type(_role_bits(alloc, 'shared'))}")
    if model.dense_ffn_size:
        lines.append("^blk\\.[0-9]+\\.ffn_(gate|up|down)\\.weight$="
                     f"{nearest_ggml_type(_role_bits(alloc, 'dense_ffn'))}")
    return lines


# ----------------------------------------------------------------------------- HQQ
def hqq_config(alloc, model, *, axis: int = 1) -> dict[str, dict | None]:
    """Full module name -> HQQ ``BaseQuantizeConfig`` arguments (None: float16)."""
    _refuse_pruned(alloc, model, "HQQ")
    mods = _modules(alloc, model)
    _check_bits(mods, HQQ_BITS, "HQQ")
    gs = None if alloc.group_size is None else int(alloc.group_size)
    return {name: (None if b >= 16 else {"nbits": int(b), "group_size": gs, "axis": axis})
            for name, b in mods.items()}


# ----------------------------------------------------------------------------- registry
def _gptq_text(alloc, model) -> str:
    return json.dumps(gptqmodel_config(alloc, model), indent=2) + "\n"


def _llama_text(alloc, model) -> str:
    return "\n".join(llama_cpp_overrides(alloc, model)) + "\n"


def _hqq_text(alloc, model) -> str:
    return json.dumps(hqq_config(alloc, model), indent=2) + "\n"


#: format -> (text builder, file suffix)
EXPORTS: Mapping[str, tuple[Callable[[Any, Any], str], str]] = {
    "gptqmodel": (_gptq_text, ".gptqmodel.json"),
    "llama.cpp": (_llama_text, ".llama-quantize.txt"),
    "hqq": (_hqq_text, ".hqq.json"),
}


def export_text(fmt: str, alloc, model) -> str:
    """The file content of export ``fmt`` (a key of :data:`EXPORTS`)."""
    if fmt not in EXPORTS:
        raise ConfigError.single(f"must be one of {', '.join(EXPORTS)}", key="--export",
                                 value=fmt)
    return EXPORTS[fmt][0](alloc, model)
