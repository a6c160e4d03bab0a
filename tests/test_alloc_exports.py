"""Exports: emulate each tool's matching rule and check every module gets its bits.

GPTQModel (``dynamic_get``): first key in order whose regex ``re.match``-es the module name;
``-:`` = not quantized, else the override's bits; no match = base bits.
llama-quantize: first pattern (lower-cased) that ``std::regex_search``-es the tensor name.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from accelsim.alloc.exports import (export_text, gguf_tensor_name, gptqmodel_config,
                                    hf_module_name, hqq_config, llama_cpp_overrides,
                                    nearest_ggml_type)
from accelsim.errors import ConfigError, UnsupportedModelError
from accelsim.precision import BitAllocation
from accelsim.workload import load_workload


def gptq_bits(cfg, module):
    for key, override in cfg["dynamic"].items():
        if key.startswith("-:"):
            if re.match(key[2:], module):
                return 16
        elif re.match(key.removeprefix("+:"), module):
            return override.get("bits", cfg["bits"])
    return cfg["bits"]


def llama_type(lines, tensor):
    for line in lines:
        pattern, _, qtype = line.rpartition("=")
        if re.search(pattern.lower(), tensor):
            return qtype
    return None


def random_alloc(model, levels, seed=0, **defaults):
    rng = np.random.default_rng(seed)
    bits = rng.choice(levels, size=(model.num_moe_layers, model.moe.num_experts))
    return BitAllocation(model.name, bits, defaults=defaults)


@pytest.mark.parametrize("wl, defaults", [
    ("mixtral-8x7b", {"attention": 4}),
    ("mixtral-8x7b", {"attention": 16}),
    ("qwen1.5-moe-a2.7b", {"attention": 8, "shared": 16}),
    ("deepseek-v2-lite", {"attention": 4, "shared": 8, "dense_ffn": 16}),
    ("olmoe-1b-7b", {"attention": 3}),
])
def test_gptqmodel_patterns_select_exactly_the_intended_modules(wl, defaults):
    m = load_workload(wl)
    a = random_alloc(m, [2, 3, 4, 8], **defaults)
    cfg = gptqmodel_config(a, m)
    checked = 0
    for t in m.tensors():
        name = hf_module_name(m, t)
        if name is None:
            continue
        assert gptq_bits(cfg, name) == a.bits_for(m, t), name
        checked += 1
    assert checked > m.num_moe_layers * m.moe.num_experts
    json.dumps(cfg)                    # a plain JSON document


def test_gptq_expert_patterns_do_not_catch_longer_indices():
    m = load_workload("qwen1.5-moe-a2.7b")         # 60 experts: 5 vs 50..59
    bits = np.full((m.num_moe_layers, 60), 4)
    bits[0, 5] = 2
    cfg = gptqmodel_config(BitAllocation(m.name, bits, defaults={"attention": 4}), m)
    assert gptq_bits(cfg, "model.layers.0.mlp.experts.5.up_proj") == 2
    assert gptq_bits(cfg, "model.layers.0.mlp.experts.50.up_proj") == 4
    assert gptq_bits(cfg, "model.layers.10.mlp.experts.5.up_proj") == 4


def test_gptq_refuses_bits_it_cannot_store():
    m = load_workload("mixtral-8x7b")
    with pytest.raises(ConfigError, match="GPTQModel supports 2, 3, 4, 8"):
        gptqmodel_config(random_alloc(m, [1, 2]), m)


@pytest.mark.parametrize("wl", ["mixtral-8x7b", "qwen1.5-moe-a2.7b", "deepseek-v2-lite"])
def test_llama_cpp_overrides_per_layer_nearest_type(wl):
    m = load_workload(wl)
    a = random_alloc(m, [2, 3, 4], attention=4, shared=8, dense_ffn=6)
    lines = llama_cpp_overrides(a, m)
    for t in m.tensors():
        g = gguf_tensor_name(m, t)
        if g is None:
            continue
        got = llama_type(lines, g)
        if t.role == "expert":
            r = m.moe_layers.index(t.layer)
            assert got == nearest_ggml_type(a.expert_bits[r].mean()), g
        else:
            want = {"attention": "q4_k", "shared": "q8_0", "dense_ffn": "q6_k"}[t.role]
            assert got == want, g
    # nothing else in the GGUF matches: norms, router, embeddings
    for other in ("blk.1.attn_norm.weight", "blk.1.ffn_gate_inp.weight", "token_embd.weight",
                  "output.weight", "blk.1.ffn_norm.weight"):
        assert llama_type(lines, other) is None, other


def test_llama_cpp_layer_patterns_do_not_cross_layers():
    m = load_workload("mixtral-8x7b")
    bits = np.full((32, 8), 2)
    bits[1] = 4
    lines = llama_cpp_overrides(BitAllocation(m.name, bits), m)
    assert llama_type(lines, "blk.1.ffn_up_exps.weight") == "q4_k"
    assert llama_type(lines, "blk.11.ffn_up_exps.weight") == "q2_k"
    assert llama_type(lines, "blk.21.ffn_down_exps.weight") == "q2_k"


def test_nearest_ggml_type():
    assert [nearest_ggml_type(b) for b in (1, 1.4, 1.5, 3.9, 4.5, 6.9, 7, 11.9, 12, 16)] == [
        "iq1_s", "iq1_s", "q2_k", "q4_k", "q5_k", "q6_k", "q8_0", "q8_0", "f16", "f16"]


def test_hqq_config_keys_and_values():
    m = load_workload("mixtral-8x7b")
    a = random_alloc(m, [1, 2, 3, 4], attention=16)
    cfg = hqq_config(a, m)
    want = {hf_module_name(m, t): a.bits_for(m, t) for t in m.tensors()
            if hf_module_name(m, t) is not None}
    assert set(cfg) == set(want)
    for name, bits in want.items():
        if bits >= 16:
            assert cfg[name] is None
        else:
            assert cfg[name] == {"nbits": bits, "group_size": 128, "axis": 1}
    assert "model.layers.31.block_sparse_moe.experts.7.w2" in cfg
    with pytest.raises(ConfigError, match="HQQ supports"):
        hqq_config(random_alloc(m, [5]), m)


def test_switch_names_and_unsupported_exports():
    m = load_workload("switch-base-64")
    r = 0
    t = m.tensor(f"L{m.moe_layers[r]}.E3.w1")
    name = hf_module_name(m, t)
    assert re.fullmatch(r"encoder\.block\.\d+\.layer\.1\.mlp\.experts\.expert_3\.wi", name)
    a = random_alloc(m, [2, 4])
    assert "expert_3.wi" in json.dumps(hqq_config(a, m))
    with pytest.raises(UnsupportedModelError):
        llama_cpp_overrides(a, m)
    with pytest.raises(UnsupportedModelError):
        gptqmodel_config(a, m)


def test_export_text_formats():
    m = load_workload("mixtral-8x7b")
    a = random_alloc(m, [2, 4])
    assert json.loads(export_text("gptqmodel", a, m))["dynamic"]
    assert export_text("llama.cpp", a, m).count("\n") == 33
    with pytest.raises(ConfigError):
        export_text("awq", a, m)
