"""Dense decoders (Llama, Mistral, Granite): Hugging Face import and presets, parameter counts
against the published totals (each model's Hugging Face page / paper)."""

import pytest

import accelsim
from accelsim.errors import UnsupportedModelError
from accelsim.workload.hf import from_hf_config

# config.json values as published on the Hugging Face hub (architectures, sizes)
LLAMA2_7B = {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
             "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False,
             "hidden_act": "silu", "model_type": "llama"}
LLAMA3_8B = {**LLAMA2_7B, "intermediate_size": 14336, "num_key_value_heads": 8,
             "vocab_size": 128256}
MISTRAL_7B = {"architectures": ["MistralForCausalLM"], "hidden_size": 4096,
              "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 8, "vocab_size": 32000, "tie_word_embeddings": False,
              "hidden_act": "silu", "sliding_window": 4096}
GRANITE_31_8B = {"architectures": ["GraniteForCausalLM"], "hidden_size": 4096,
                 "intermediate_size": 12800, "num_hidden_layers": 40,
                 "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 49155,
                 "tie_word_embeddings": True, "hidden_act": "silu", "attention_bias": False,
                 "mlp_bias": False, "embedding_multiplier": 12.0, "residual_multiplier": 0.22}
GRANITE_33_8B = {**GRANITE_31_8B, "vocab_size": 49159, "tie_word_embeddings": False}
LLAMA2_70B = {**LLAMA2_7B, "hidden_size": 8192, "intermediate_size": 28672,
              "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8}

# published totals: Llama-2-7B 6.74B, Llama-3-8B 8.03B, Mistral-7B 7.24B, Granite-3.1-8B
# 8.17B, Llama-2-70B 69B (Hugging Face model pages); Granite-3.3-8B 8,372,219,904 (quoted exactly)
CASES = [(LLAMA2_7B, "llama-2-7b", "llama", 6.74e9, 0.005e9),
         (LLAMA3_8B, "llama-3-8b", "llama", 8.03e9, 0.005e9),
         (MISTRAL_7B, "mistral-7b", "mistral", 7.24e9, 0.005e9),
         (GRANITE_31_8B, "granite-3.1-8b", "granite", 8.17e9, 0.005e9),
         (GRANITE_33_8B, "granite-3.3-8b", "granite", 8_372_219_904, 0),
         (LLAMA2_70B, "llama-2-70b", "llama", 69.0e9, 0.05e9)]


@pytest.mark.parametrize("cfg,preset,family,total,tol", CASES)
def test_dense_import_and_preset_match_published_totals(cfg, preset, family, total, tol):
    m = from_hf_config(cfg, file="config.json")
    assert m.family == family and m.is_dense and m.num_moe_layers == 0
    n = m.param_counts()["total_params"]
    assert abs(n - total) <= tol
    p = accelsim.load_workload(preset)
    assert p.param_counts()["total_params"] == n


def test_llama2_count_by_hand():
    # embed + lm_head 2 x 32000 x 4096; per layer 4 x 4096^2 + 3 x 4096 x 11008 + 2 norms
    d, f, v, L = 4096, 11008, 32000, 32
    want = 2 * v * d + L * (4 * d * d + 3 * d * f + 2 * d) + d
    assert from_hf_config(LLAMA2_7B).param_counts()["total_params"] == want == 6_738_415_616


def test_llama2_70b_count_by_hand():
    # GQA: q and o 8192^2, k and v 8192 x 1024 (8 KV heads of 128)
    d, f, v, L, kv = 8192, 28672, 32000, 80, 8 * 128
    want = 2 * v * d + L * (2 * d * d + 2 * d * kv + 3 * d * f + 2 * d) + d
    assert from_hf_config(LLAMA2_70B).param_counts()["total_params"] == want == 68_976_648_192


def test_dense_model_simulates_and_has_no_experts():
    m = accelsim.load_workload("llama-2-7b")
    a = accelsim.BitAllocation.uniform(m, 16)
    assert a.expert_bits.shape == (0, 0)
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=1, context=127))
    hw = accelsim.load_hw("h100")
    r = accelsim.simulate(hw, g, a)
    # decode at batch 1 reads every weight but the embedding table once: never faster than
    # the HBM roofline on what does not fit on chip
    embed = a.tensor_bytes(m, m.tensor("embed"))
    assert r.latency_s >= (a.weight_bytes(m) - embed - hw.onchip_weight_capacity_bytes) / 3.35e12


def test_dense_import_rejects_non_swiglu():
    with pytest.raises(UnsupportedModelError, match="hidden_act"):
        from_hf_config({**LLAMA2_7B, "hidden_act": "gelu"}, file="config.json")
