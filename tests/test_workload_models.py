"""The model presets: parameter counts against closed forms and against published totals.

Every expected count here is computed from the model constants of
``/work/shared/reference/models.md`` (copied into ``FAMILY`` below, not read from the presets)
by closed-form per-family formulas written out in this file. Each test checks the code against
the formula exactly, and the formula against the published total within the rounding of the
published figure; so a wrong preset value, a wrong tensor shape in ``MoEModel.tensors()`` or a
wrong formula each make a test fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from accelsim.errors import ConfigError
from accelsim.presets import list_presets
from accelsim.workload import load_workload, workload_from_dict

B = 1e9

# ----------------------------------------------------------------------------- closed forms


def gqa_attention(d, h, kv, hd, *, qkv_bias=False, qk_norm=None):
    """q, k, v, o projections (+ q/k/v biases, + q/k norm weights of the given widths)."""
    p = d * h * hd + 2 * d * kv * hd + h * hd * d
    if qkv_bias:
        p += h * hd + 2 * kv * hd
    if qk_norm:
        p += qk_norm[0] + qk_norm[1]
    return p


def mla_attention(d, h, *, q_lora, kv_lora, nope, rope, v):
    """DeepSeek MLA: q (full or q_a + norm + q_b), kv_a (+ rope key), kv norm, kv_b, o."""
    if q_lora is None:
        q = d * h * (nope + rope)
    else:
        q = d * q_lora + q_lora + q_lora * h * (nope + rope)
    kv = d * (kv_lora + rope) + kv_lora + kv_lora * h * (nope + v)
    return q + kv + h * v * d


def decoder_counts(*, d, layers, vocab, attention, E, k, f, moe_layers, dense_f=0,
                   shared=0, shared_f=0, shared_gate=False, router_bias=False):
    """Decoder-only SwiGLU MoE: total, active (all non-expert params + top-k experts),
    and the pieces the published conventions leave out."""
    norms = 2 * d * layers + d                       # attn_norm + ffn_norm per block, final
    expert = 3 * d * f                               # w1, w3: f x d; w2: d x f
    routed = moe_layers * E * expert
    router = moe_layers * (E * d + (E if router_bias else 0))
    shared_p = moe_layers * (shared * 3 * d * shared_f + (d if shared_gate else 0))
    dense = (layers - moe_layers) * 3 * d * dense_f
    embed = lm_head = vocab * d                      # untied
    total = norms + layers * attention + routed + router + shared_p + dense + embed + lm_head
    active = total - routed + moe_layers * k * expert
    return {"total": total, "active": active, "embed": embed, "lm_head": lm_head,
            "routed": routed, "per_expert": expert,
            "shared": moe_layers * shared * 3 * d * shared_f}


def switch_counts(*, d, f, h, hd, enc, dec, vocab, E, buckets, step=2):
    """T5/Switch encoder-decoder, ReLU FFN (wi, wo), weight-only norms, one shared tied
    embedding. Block i of each stack is sparse when i % step == 1."""
    attn = 4 * d * h * hd
    ffn = 2 * d * f
    total = vocab * d + 2 * d                        # shared embedding; two final norms
    active = total
    for n, cross in ((enc, False), (dec, True)):
        for i in range(n):
            block = (3 if cross else 2) * d + (2 if cross else 1) * attn
            block += h * buckets if i == 0 else 0    # relative-position bias, first block
            if i % step == 1:
                total += block + E * ffn + E * d
                active += block + ffn + E * d
            else:
                total += block + ffn
                active += block + ffn
    return {"total": total, "active": active}


# model constants from models.md (not from the YAML files under test)
FAMILY = {
    "mixtral-8x7b": dict(d=4096, layers=32, vocab=32000, E=8, k=2, f=14336, moe_layers=32,
                         attention=gqa_attention(4096, 32, 8, 128)),
    "mixtral-8x22b": dict(d=6144, layers=56, vocab=32000, E=8, k=2, f=16384, moe_layers=56,
                          attention=gqa_attention(6144, 48, 8, 128)),
    "deepseek-v2-lite": dict(d=2048, layers=27, vocab=102400, E=64, k=6, f=1408,
                             moe_layers=26, dense_f=10944, shared=2, shared_f=1408,
                             attention=mla_attention(2048, 16, q_lora=None, kv_lora=512,
                                                     nope=128, rope=64, v=128)),
    "deepseek-v3": dict(d=7168, layers=61, vocab=129280, E=256, k=8, f=2048, moe_layers=58,
                        dense_f=18432, shared=1, shared_f=2048, router_bias=True,
                        attention=mla_attention(7168, 128, q_lora=1536, kv_lora=512,
                                                nope=128, rope=64, v=128)),
    "qwen1.5-moe-a2.7b": dict(d=2048, layers=24, vocab=151936, E=60, k=4, f=1408,
                              moe_layers=24, shared=1, shared_f=5632, shared_gate=True,
                              attention=gqa_attention(2048, 16, 16, 128, qkv_bias=True)),
    "olmoe-1b-7b": dict(d=2048, layers=16, vocab=50304, E=64, k=8, f=1024, moe_layers=16,
                        attention=gqa_attention(2048, 16, 16, 128, qk_norm=(2048, 2048))),
}
SWITCH = {
    "switch-base-64": dict(d=768, f=3072, h=12, hd=64, enc=12, dec=12, vocab=32128, E=64,
                           buckets=32),
    "switch-base-128": dict(d=768, f=3072, h=12, hd=64, enc=12, dec=12, vocab=32128, E=128,
                            buckets=32),
}


def expected(name):
    return decoder_counts(**FAMILY[name])


# ----------------------------------------------------------------------------- code == formula

@pytest.mark.parametrize("name", sorted(FAMILY))
def test_decoder_counts_match_closed_form(name):
    c = load_workload(name).param_counts()
    e = expected(name)
    assert c["total_params"] == e["total"]
    assert c["active_params"] == e["active"]
    assert c["expert_params"] == e["routed"]
    assert c["params_per_expert"] == e["per_expert"]
    assert c["shared_expert_params"] == e["shared"]
    assert c["embedding_params"] == e["embed"] + e["lm_head"]
    assert c["active_params_non_embedding"] == e["active"] - e["embed"] - e["lm_head"]
    assert c["total_params_non_embedding"] == e["total"] - e["embed"] - e["lm_head"]
    assert c["active_params_excluding_input_embedding"] == e["active"] - e["embed"]


@pytest.mark.parametrize("name", sorted(SWITCH))
def test_switch_counts_match_closed_form(name):
    c = load_workload(name).param_counts()
    e = switch_counts(**SWITCH[name])
    assert c["total_params"] == e["total"]
    assert c["active_params"] == e["active"]
    # tied and shared: one vocab x d matrix, no lm_head
    assert c["embedding_params"] == 32128 * 768
    assert c["active_params_excluding_input_embedding"] == e["active"]


def test_switch_base_active_is_t5_base_sized():
    # Switch-Base is FLOP-matched to T5-Base ("roughly 220 million parameters", Raffel et al.
    # 2020, JMLR 21:140): one expert per sparse block plus the dense rest is a T5-Base, the
    # 12 routers (12 x E x 768) come on top
    for name, spec in SWITCH.items():
        routers = 12 * spec["E"] * 768
        assert abs(switch_counts(**spec)["active"] - routers - 220e6) < 5e6


def test_switch_closed_form_by_hand():
    # 12 sparse blocks x E experts x (wi + wo), plus dense and attention parts: the numbers a
    # reader can redo on paper
    e64, e128 = (switch_counts(**SWITCH[n])["total"] for n in ("switch-base-64",
                                                                "switch-base-128"))
    assert e128 - e64 == 12 * 64 * (2 * 768 * 3072 + 768)
    assert 3.7 * B < e64 < 3.9 * B and 7.3 * B < e128 < 7.5 * B


# ----------------------------------------------------------------------------- formula == published
# (total, active) in units of 1e9 and the half-unit of the last published digit

PUBLISHED = {
    "mixtral-8x7b": (46.7, 12.9, 0.05),
    "mixtral-8x22b": (141, 39, 0.5),
    "qwen1.5-moe-a2.7b": (14.3, 2.7, 0.05),
    "olmoe-1b-7b": (6.9, 1.3, 0.05),
    "deepseek-v3": (671, 37, 0.5),
    "deepseek-v2-lite": (15.7, 2.4, 0.05),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_closed_form_total_matches_published(name):
    total, _, tol = PUBLISHED[name]
    assert abs(expected(name)["total"] - total * B) < tol * B


@pytest.mark.parametrize("name", ["mixtral-8x7b", "mixtral-8x22b", "qwen1.5-moe-a2.7b",
                                  "olmoe-1b-7b"])
def test_closed_form_active_matches_published(name):
    # these publish the active count with the embedding and lm_head matrices included
    _, active, tol = PUBLISHED[name]
    assert abs(expected(name)["active"] - active * B) < tol * B


def test_olmoe_name_counts_active_without_embeddings():
    # OLMoE-"1B"-7B: the 1B is the active count without the embedding and lm_head (1.08B);
    # the 1.3B of the paper includes them (tested above)
    e = expected("olmoe-1b-7b")
    assert abs(e["active"] - e["embed"] - e["lm_head"] - 1.0 * B) < 0.1 * B


def test_deepseek_v3_activated_leaves_out_input_embedding():
    # DeepSeek's 37B excludes the input embedding (a lookup): 36.63B; with it 37.55B would
    # round to 38B
    e = expected("deepseek-v3")
    assert abs(e["active"] - e["embed"] - 37 * B) < 0.5 * B
    assert abs(e["active"] - 37 * B) > 0.5 * B


def test_deepseek_v2_lite_activated_leaves_out_input_embedding():
    # 2.4514B without the input embedding (2.66B with it, 2.24B without embed and lm_head).
    # That is 1.4M (0.06%) above the half-unit window [2.35B, 2.45B) of "2.4B": DeepSeek's
    # figure is truncated, or leaves out something as small as the 3.4M router weights. The
    # window is widened by 2M for that, and no further.
    e = expected("deepseek-v2-lite")
    x = e["active"] - e["embed"]
    assert 2.35 * B <= x < 2.45 * B + 2e6
    for other in (e["active"], e["active"] - e["embed"] - e["lm_head"]):
        assert abs(other - 2.4 * B) > 0.15 * B


# ----------------------------------------------------------------------------- structure


def test_every_preset_is_named_after_its_file_and_cites_sources():
    presets = list_presets("workload")
    assert set(FAMILY) | set(SWITCH) <= set(presets)
    for name, path in presets.items():
        m = load_workload(name)
        assert m.name == name == Path(path).stem
        assert m.sources and m.description
    for name in (set(FAMILY) | set(SWITCH)) - {"mixtral-8x7b"}:
        assert load_workload(name).notes, name


def test_preset_names_with_dots_resolve():
    assert load_workload("qwen1.5-moe-a2.7b").moe.num_experts == 60
    with pytest.raises(ConfigError, match="did you mean 'qwen1.5-moe-a2.7b'"):
        load_workload("qwen1.5-moe")


@pytest.mark.parametrize("name, moe_layers", [
    ("mixtral-8x22b", list(range(56))),
    ("deepseek-v2-lite", list(range(1, 27))),
    ("deepseek-v3", list(range(3, 61))),
    ("qwen1.5-moe-a2.7b", list(range(24))),
    ("olmoe-1b-7b", list(range(16))),
    # encoder blocks are global layers 0-11, decoder blocks 12-23; odd blocks are sparse
    ("switch-base-64", [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23]),
])
def test_moe_layers(name, moe_layers):
    assert list(load_workload(name).moe_layers) == moe_layers


def shapes(m, *names):
    return [m.tensor(n).shape for n in names]


def test_deepseek_tensors():
    v3 = load_workload("deepseek-v3")
    assert shapes(v3, "L0.attn.q_a", "L0.attn.q_b", "L0.attn.kv_a", "L0.attn.kv_b",
                  "L0.attn.o") == [(1536, 7168), (128 * 192, 1536), (576, 7168),
                                   (128 * 256, 512), (7168, 128 * 128)]
    assert shapes(v3, "L2.ffn.w1", "L3.E255.w2", "L3.S0.w1", "L3.router", "L3.router_bias") == [
        (18432, 7168), (7168, 2048), (2048, 7168), (256, 7168), (256,)]
    with pytest.raises(KeyError):
        v3.tensor("L2.router")
    with pytest.raises(KeyError):
        v3.tensor("L3.S1.w1")
    lite = load_workload("deepseek-v2-lite")
    assert shapes(lite, "L0.attn.q", "L1.S1.w3", "L0.ffn.w2") == [
        (16 * 192, 2048), (1408, 2048), (2048, 10944)]
    with pytest.raises(KeyError):
        lite.tensor("L0.attn.q_a")
    with pytest.raises(KeyError):
        lite.tensor("L1.router_bias")


def test_qwen_tensors():
    m = load_workload("qwen1.5-moe-a2.7b")
    assert shapes(m, "L0.attn.q_bias", "L0.attn.k_bias", "L0.S0.w1", "L0.S0.w2", "L0.S.gate",
                  "L23.E59.w3") == [(2048,), (2048,), (5632, 2048), (2048, 5632), (1, 2048),
                                    (1408, 2048)]
    with pytest.raises(KeyError):
        m.tensor("L0.attn.o_bias")


def test_olmoe_qk_norm_spans_the_whole_projection():
    m = load_workload("olmoe-1b-7b")
    assert shapes(m, "L0.attn.q_norm", "L0.attn.k_norm") == [(2048,), (2048,)]


def test_switch_tensors():
    m = load_workload("switch-base-128")
    assert shapes(m, "embed", "L1.E127.w1", "L1.E127.w2", "L1.router", "L0.ffn.w1",
                  "L12.xattn.q", "L0.attn.rel_bias", "L12.attn.rel_bias") == [
        (32128, 768), (3072, 768), (768, 3072), (128, 768), (3072, 768), (768, 768),
        (32, 12), (32, 12)]
    names = {t.name for t in m.tensors()}
    assert "lm_head" not in names and "L1.E0.w3" not in names
    assert "L1.attn.rel_bias" not in names and "L11.xattn.q" not in names
    assert not any(n.endswith("_bias") and "rel_bias" not in n for n in names)


def test_mixtral_8x22b_tensors():
    m = load_workload("mixtral-8x22b")
    assert shapes(m, "L55.E7.w1", "L0.attn.k", "L0.attn.o", "lm_head") == [
        (16384, 6144), (1024, 6144), (6144, 6144), (32000, 6144)]


# ----------------------------------------------------------------------------- per-head QK-norm

BASE = {"name": "t", "hidden_size": 256, "num_layers": 2, "vocab_size": 100,
        "attention": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 128, "qk_norm": True},
        "moe": {"num_experts": 4, "top_k": 2, "expert_ffn_size": 64}}


def test_qk_norm_per_head_is_head_dim_wide():
    full = workload_from_dict(BASE)
    per_head = workload_from_dict({**BASE, "attention": {**BASE["attention"],
                                                         "qk_norm_per_head": True}})
    assert shapes(full, "L0.attn.q_norm", "L0.attn.k_norm") == [(512,), (256,)]
    assert shapes(per_head, "L0.attn.q_norm", "L0.attn.k_norm") == [(128,), (128,)]
    diff = full.param_counts()["total_params"] - per_head.param_counts()["total_params"]
    assert diff == 2 * ((512 - 128) + (256 - 128))


def test_qk_norm_per_head_needs_qk_norm():
    bad = {**BASE, "attention": {**BASE["attention"], "qk_norm": False,
                                 "qk_norm_per_head": True}}
    with pytest.raises(ConfigError, match="qk_norm_per_head needs qk_norm"):
        workload_from_dict(bad, file="m.yaml")
