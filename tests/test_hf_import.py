"""Hugging Face ``config.json`` import.

The config dicts below are written after the public ``config.json`` files of the named
checkpoints (keys the importer ignores kept, to show it tolerates them). An imported config
must give the same tensors and parameter counts as the preset of the same model; Qwen3-MoE has
no preset and is checked against its own closed form and the model card's totals.
"""

from __future__ import annotations

import json

import pytest

from accelsim.errors import ConfigError, UnsupportedModelError
from accelsim.workload import load_workload
from accelsim.workload.hf import SUPPORTED_ARCHITECTURES, from_hf_config, hf_key_mapping

B = 1e9

MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
    "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
    "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": False,
    "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
    "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.36.0.dev0", "use_cache": True, "vocab_size": 32000,
}

QWEN15_MOE = {
    "architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 8192,
    "max_window_layers": 21, "model_type": "qwen2_moe", "num_attention_heads": 16,
    "num_hidden_layers": 24, "num_key_value_heads": 16, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.39.0.dev0", "use_cache": True,
    "use_sliding_window": False, "vocab_size": 151936, "decoder_sparse_step": 1,
    "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
    "num_experts_per_tok": 4, "num_experts": 60, "norm_topk_prob": False,
    "output_router_logits": False, "router_aux_loss_coef": 0.001,
}

DEEPSEEK_V2_LITE = {
    "architectures": ["DeepseekV2ForCausalLM"], "attention_bias": False,
    "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV2Config",
                 "AutoModel": "modeling_deepseek.DeepseekV2Model",
                 "AutoModelForCausalLM": "modeling_deepseek.DeepseekV2ForCausalLM"},
    "aux_loss_alpha": 0.001, "bos_token_id": 100000, "eos_token_id": 100001,
    "first_k_dense_replace": 1, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 10944, "kv_lora_rank": 512,
    "max_position_embeddings": 163840, "model_type": "deepseek_v2",
    "moe_intermediate_size": 1408, "moe_layer_freq": 1, "n_group": 1, "n_routed_experts": 64,
    "n_shared_experts": 2, "norm_topk_prob": False, "num_attention_heads": 16,
    "num_experts_per_tok": 6, "num_hidden_layers": 27, "num_key_value_heads": 16,
    "pretraining_tp": 1, "q_lora_rank": None, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
                     "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096,
                     "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 1.0, "scoring_func": "softmax",
    "seq_aux": True, "tie_word_embeddings": False, "topk_group": 1, "topk_method": "greedy",
    "torch_dtype": "bfloat16", "transformers_version": "4.33.1", "use_cache": True,
    "v_head_dim": 128, "vocab_size": 102400,
}

DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": False,
    "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config",
                 "AutoModel": "modeling_deepseek.DeepseekV3Model",
                 "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"},
    "aux_loss_alpha": 0.001, "bos_token_id": 0, "eos_token_id": 1, "ep_size": 1,
    "first_k_dense_replace": 3, "hidden_act": "silu", "hidden_size": 7168,
    "initializer_range": 0.02, "intermediate_size": 18432, "kv_lora_rank": 512,
    "max_position_embeddings": 163840, "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256,
    "n_shared_experts": 1, "norm_topk_prob": True, "num_attention_heads": 128,
    "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1, "q_lora_rank": 1536, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                            "quant_method": "fp8", "weight_block_size": [128, 128]},
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                     "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                     "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid",
    "seq_aux": True, "tie_word_embeddings": False, "topk_group": 4, "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16", "transformers_version": "4.33.1", "use_cache": True,
    "v_head_dim": 128, "vocab_size": 129280,
}

OLMOE = {
    "architectures": ["OlmoeForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "clip_qkv": None, "eos_token_id": 50279, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 1024, "max_position_embeddings": 4096,
    "model_type": "olmoe", "norm_topk_prob": False, "num_attention_heads": 16,
    "num_experts": 64, "num_experts_per_tok": 8, "num_hidden_layers": 16,
    "num_key_value_heads": 16, "output_router_logits": False, "pad_token_id": 1,
    "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 10000.0,
    "router_aux_loss_coef": 0.01, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": True, "vocab_size": 50304,
}

# google/switch-base-64; tie_word_embeddings left out: SwitchTransformersConfig's default
# (true) applies
SWITCH_BASE_64 = {
    "architectures": ["SwitchTransformersForConditionalGeneration"],
    "batch_prioritized_routing": False, "d_ff": 3072, "d_kv": 64, "d_model": 768,
    "decoder_sparse_step": 2, "decoder_start_token_id": 0, "dense_act_fn": "relu",
    "dropout_rate": 0.1, "encoder_sparse_step": 2, "eos_token_id": 1, "expert_capacity": 64,
    "feed_forward_proj": "relu", "initializer_factor": 1.0, "is_encoder_decoder": True,
    "is_gated_act": False, "layer_norm_epsilon": 1e-06, "model_type": "switch_transformers",
    "num_decoder_layers": 12, "num_experts": 64, "num_heads": 12, "num_layers": 12,
    "num_selected_experts": 1, "num_sparse_decoder_layers": 6, "num_sparse_encoder_layers": 6,
    "pad_token_id": 0, "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32, "router_aux_loss_coef": 0.01, "router_bias": False,
    "router_dtype": "float32", "router_ignore_padding_tokens": False,
    "router_jitter_noise": 0.01, "router_type": "tokens_choice", "router_z_loss_coef": 0.001,
    "torch_dtype": "float32", "transformers_version": "4.25.0.dev0", "use_cache": True,
    "vocab_size": 32128,
}

QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128,
    "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 6144, "max_position_embeddings": 40960, "max_window_layers": 48,
    "mlp_only_layers": [], "model_type": "qwen3_moe", "moe_intermediate_size": 768,
    "norm_topk_prob": True, "num_attention_heads": 32, "num_experts": 128,
    "num_experts_per_tok": 8, "num_hidden_layers": 48, "num_key_value_heads": 4,
    "output_router_logits": False, "rms_norm_eps": 1e-06, "rope_scaling": None,
    "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001, "sliding_window": None,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
    "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
}

SAME_AS_PRESET = [
    (MIXTRAL_8X7B, "mixtral-8x7b"),
    (QWEN15_MOE, "qwen1.5-moe-a2.7b"),
    (DEEPSEEK_V2_LITE, "deepseek-v2-lite"),
    (DEEPSEEK_V3, "deepseek-v3"),
    (OLMOE, "olmoe-1b-7b"),
    (SWITCH_BASE_64, "switch-base-64"),
]


def tensor_table(m):
    return [(t.name, t.shape, t.role) for t in m.tensors()]


@pytest.mark.parametrize("cfg, preset", SAME_AS_PRESET, ids=[p for _, p in SAME_AS_PRESET])
def test_hf_config_gives_the_preset_counts(cfg, preset):
    hf, ref = from_hf_config(cfg), load_workload(preset)
    assert hf.param_counts() == ref.param_counts()
    assert hf.moe_layers == ref.moe_layers
    assert (hf.moe.top_k, hf.moe.num_experts, hf.family) == (ref.moe.top_k, ref.moe.num_experts,
                                                            ref.family)


@pytest.mark.parametrize("cfg, preset", SAME_AS_PRESET, ids=[p for _, p in SAME_AS_PRESET])
def test_hf_config_gives_the_preset_tensors(cfg, preset):
    assert tensor_table(from_hf_config(cfg)) == tensor_table(load_workload(preset))


def test_qwen3_moe_closed_form_and_model_card():
    # Qwen3-30B-A3B: GQA 32/4 with head_dim 128 (q width 4096 != hidden 2048), RMSNorm of
    # head_dim on q and k (per head), no biases, no shared expert, 128 experts top-8.
    d, L, V, h, kv, hd, E, k, f = 2048, 48, 151936, 32, 4, 128, 128, 8, 768
    attention = d * h * hd + 2 * d * kv * hd + h * hd * d + 2 * hd
    per_expert = 3 * d * f
    router = E * d
    norms = 2 * d * L + d
    embed = lm_head = V * d
    total = L * (attention + router + E * per_expert) + norms + embed + lm_head
    active = total - L * (E - k) * per_expert
    m = from_hf_config(QWEN3_30B_A3B)
    c = m.param_counts()
    assert (c["total_params"], c["active_params"]) == (total, active)
    assert m.tensor("L0.attn.q").shape == (4096, 2048)
    assert m.tensor("L0.attn.q_norm").shape == (128,) == m.tensor("L0.attn.k_norm").shape
    # model card (Qwen/Qwen3-30B-A3B): 30.5B total, 3.3B activated, 29.9B non-embedding.
    # The activated count is 3.353B, which rounds to 3.4B: the card truncates to one
    # decimal (30.53 -> 30.5 and 29.91 -> 29.9 agree with both), so that is the window here.
    assert abs(total - 30.5 * B) < 0.05 * B
    assert abs(total - embed - lm_head - 29.9 * B) < 0.05 * B
    assert 3.3 * B <= active < 3.4 * B


def test_load_workload_reads_a_config_json(tmp_path):
    d = tmp_path / "Mixtral-8x7B-v0.1"
    d.mkdir()
    path = d / "config.json"
    path.write_text(json.dumps(MIXTRAL_8X7B))
    m = load_workload(str(path))
    assert m.name == "Mixtral-8x7B-v0.1"          # config.json: named after its directory
    assert str(path) in m.sources[0]
    assert m.param_counts() == load_workload("mixtral-8x7b").param_counts()
    assert load_workload(path).name == m.name       # a Path works too
    # a mapping with model_type goes to the importer as well
    assert load_workload(dict(MIXTRAL_8X7B, _name_or_path="x/y")).name == "x/y"


def test_model_type_alone_selects_the_family():
    cfg = {k: v for k, v in OLMOE.items() if k != "architectures"}
    assert from_hf_config(cfg).family == "olmoe"


# ----------------------------------------------------------------------------- layer rules

def test_qwen2_sparse_step_and_mlp_only_layers():
    cfg = dict(QWEN15_MOE, num_hidden_layers=8, decoder_sparse_step=2, mlp_only_layers=[3])
    m = from_hf_config(cfg)
    # (i + 1) % 2 == 0 -> 1, 3, 5, 7; minus the mlp-only layer 3
    assert m.moe_layers == (1, 5, 7)
    assert m.tensor("L0.ffn.w1").shape == (5632, 2048)      # dense layers use intermediate_size


def test_deepseek_layer_freq():
    cfg = dict(DEEPSEEK_V2_LITE, num_hidden_layers=10, first_k_dense_replace=3, moe_layer_freq=2)
    assert from_hf_config(cfg).moe_layers == (4, 6, 8)      # i >= 3 and i % 2 == 0


def test_deepseek_v2_has_no_router_bias_v3_has():
    lite, v3 = from_hf_config(DEEPSEEK_V2_LITE), from_hf_config(DEEPSEEK_V3)
    assert not lite.moe.router_bias and v3.moe.router_bias
    assert v3.tensor("L3.router_bias").shape == (256,)


def test_switch_sparse_steps():
    every = from_hf_config(dict(SWITCH_BASE_64, encoder_sparse_step=1, decoder_sparse_step=1))
    assert every.moe_layers == tuple(range(24))
    every4 = from_hf_config(dict(SWITCH_BASE_64, encoder_sparse_step=4, decoder_sparse_step=4))
    assert every4.moe_layers == (1, 5, 9, 13, 17, 21)
    # without the step keys, HF derives them from the number of sparse layers: 12 // 6 = 2
    cfg = {k: v for k, v in SWITCH_BASE_64.items() if not k.endswith("_sparse_step")}
    assert from_hf_config(cfg).moe_layers == load_workload("switch-base-64").moe_layers


def test_switch_untied_has_an_lm_head():
    m = from_hf_config(dict(SWITCH_BASE_64, tie_word_embeddings=False))
    assert m.tensor("lm_head").shape == (32128, 768)


# ----------------------------------------------------------------------------- errors

def test_unsupported_architecture_names_file_key_and_supported(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                                "hidden_size": 4096}))
    with pytest.raises(UnsupportedModelError) as info:
        load_workload(str(path))
    err = info.value
    assert isinstance(err, ConfigError)
    assert err.file == str(path) and err.key == "architectures"
    msg = str(err)
    assert "GPT2LMHeadModel" in msg
    for arch in SUPPORTED_ARCHITECTURES:
        assert arch in msg


def test_unsupported_model_type():
    with pytest.raises(UnsupportedModelError) as info:
        from_hf_config({"model_type": "gpt2"}, file="c.json")
    assert info.value.key == "model_type" and "qwen2_moe" in str(info.value)


def test_missing_keys_are_all_reported():
    cfg = {k: v for k, v in DEEPSEEK_V3.items() if k not in ("kv_lora_rank", "hidden_size")}
    with pytest.raises(ConfigError) as info:
        from_hf_config(cfg, file="v3/config.json")
    keys = {p.key for p in info.value.problems}
    assert keys == {"kv_lora_rank", "hidden_size"}
    assert all(p.file == "v3/config.json" and "required" in p.reason
               for p in info.value.problems)
    assert not isinstance(info.value, UnsupportedModelError)


def test_q_lora_rank_must_be_present_even_if_null():
    cfg = {k: v for k, v in DEEPSEEK_V2_LITE.items() if k != "q_lora_rank"}
    with pytest.raises(ConfigError, match="q_lora_rank: field required"):
        from_hf_config(cfg)


@pytest.mark.parametrize("key, value, reason", [
    ("hidden_size", "4096", "must be an integer"),
    ("hidden_size", 4096.0, "must be an integer"),
    ("num_local_experts", True, "must be an integer"),
    ("num_experts_per_tok", 0, "must be >= 1"),
    ("tie_word_embeddings", "false", "must be true or false"),
    ("num_key_value_heads", [8], "must be an integer or null"),
])
def test_wrong_types(key, value, reason):
    with pytest.raises(ConfigError) as info:
        from_hf_config(dict(MIXTRAL_8X7B, **{key: value}), file="config.json")
    (p,) = info.value.problems
    assert (p.key, p.reason, p.value) == (key, reason, value)
    assert str(info.value).startswith(f"config.json: {key}: {reason}")


def test_wrong_type_of_list_key():
    with pytest.raises(ConfigError, match="mlp_only_layers: must be a list of layer indices"):
        from_hf_config(dict(QWEN15_MOE, mlp_only_layers=[1, "2"]))


def test_empty_config_names_the_missing_key():
    with pytest.raises(ConfigError, match="architectures: a Hugging Face config.json needs"):
        from_hf_config({})


def test_architectures_must_be_a_list_of_names():
    with pytest.raises(ConfigError, match="architectures: must be a non-empty list"):
        from_hf_config(dict(MIXTRAL_8X7B, architectures="MixtralForCausalLM"))


def test_model_level_rule_is_reported_under_the_config_key():
    # 32 heads do not split into 5 kv groups: reported against the HF key, not the MoEModel one
    with pytest.raises(ConfigError) as info:
        from_hf_config(dict(MIXTRAL_8X7B, num_key_value_heads=5), file="config.json")
    assert info.value.file == "config.json"
    assert info.value.key == "num_attention_heads"
    assert "multiple of num_kv_heads (5)" in str(info.value)
    # a dense layer needs the dense FFN size: intermediate_size
    cfg = {k: v for k, v in QWEN15_MOE.items() if k != "intermediate_size"}
    with pytest.raises(ConfigError) as info:
        from_hf_config(dict(cfg, decoder_sparse_step=2))
    assert info.value.key == "intermediate_size"
    with pytest.raises(ConfigError) as info:
        from_hf_config(dict(OLMOE, num_experts_per_tok=65))
    assert info.value.key == "num_experts_per_tok" and "top_k (65)" in str(info.value)


def test_unsupported_features_of_supported_families():
    with pytest.raises(UnsupportedModelError, match="decoder_sparse_step"):
        from_hf_config(dict(SWITCH_BASE_64, decoder_sparse_step=0))
    with pytest.raises(UnsupportedModelError, match="dense_act_fn"):
        from_hf_config(dict(SWITCH_BASE_64, dense_act_fn="gated-gelu"))
    with pytest.raises(UnsupportedModelError, match="attention_bias"):
        from_hf_config(dict(DEEPSEEK_V3, attention_bias=True))


def test_malformed_json_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"architectures": ["MixtralForCausalLM"], "hidden_size": 4096,,}')
    with pytest.raises(ConfigError) as info:
        load_workload(str(path))
    assert info.value.file == str(path)
    assert "invalid JSON at line 1" in str(info.value)


def test_json_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_workload(str(path))


def test_import_never_prints(capsys):
    from_hf_config(DEEPSEEK_V3)
    with pytest.raises(ConfigError):
        from_hf_config({"architectures": ["Nope"]})
    assert capsys.readouterr() == ("", "")


def test_key_mapping_table_lists_the_documented_keys():
    keys = {row[0] for row in hf_key_mapping("DeepseekV3ForCausalLM")}
    assert {"n_routed_experts", "n_shared_experts", "moe_intermediate_size",
            "first_k_dense_replace", "moe_layer_freq", "q_lora_rank", "kv_lora_rank",
            "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "topk_method"} <= keys
    assert {"intermediate_size", "num_key_value_heads", "attention_bias", "mlp_bias"} <= {
        row[0] for row in hf_key_mapping("LlamaForCausalLM")}
    with pytest.raises(KeyError):
        hf_key_mapping("GPT2LMHeadModel")
