"""Propagation through stacks of quantized MoE layers: the bound must cover the measured
perturbation of every token at every layer, and certified routing must be unchanged."""

import numpy as np
import pytest

from accelsim.errors import ConfigError
from accelsim.precision import BitAllocation
from accelsim.theory import certify_stack, quantize_stack, synthetic_stack
from accelsim.theory.certify import auto_scale, certify_model
from accelsim.theory.stack import norm_perturbation, _normalize
from accelsim.workload import load_workload


@pytest.fixture(scope="module")
def mixtral():
    return load_workload("mixtral-8x7b")


def _check(cert):
    for lc in cert.layers:
        assert np.all(lc.bound >= lc.measured), lc.index
        assert np.all(lc.unchanged[lc.certified]), lc.index


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("method", ["hybrid", "analytic"])
def test_bound_covers_measured_perturbation_mixtral_like(mixtral, bits, method):
    st = synthetic_stack(mixtral, layers=3, scale=128, seed=bits)
    qs = quantize_stack(st, np.full((3, 8), bits), group_size=16)
    h0 = np.random.default_rng(0).normal(size=(64, st.d))
    cert = certify_stack(qs, h0, method=method, attn_lipschitz=0.5)
    _check(cert)
    # layer 0 sees no perturbation and a float router: every token certified
    assert cert.layers[0].certified.all()


def test_mixed_bits_router_quantized_and_8_bits_certifies_beyond_the_first_layer(mixtral):
    st = synthetic_stack(mixtral, layers=2, scale=64, seed=1)
    rng = np.random.default_rng(1)
    bits = rng.choice([2, 3, 4], size=(2, 8))
    qs = quantize_stack(st, bits, router_bits=4, group_size=32)
    cert = certify_stack(qs, rng.normal(size=(64, st.d)))
    _check(cert)
    hi = certify_stack(quantize_stack(st, np.full((2, 8), 8), group_size=32),
                       rng.normal(size=(64, st.d)))
    assert hi.layers[1].certified.mean() > 0.2      # not vacuous at 8 bits


@pytest.mark.parametrize("name", ["switch-base-64", "qwen1.5-moe-a2.7b", "olmoe-1b-7b"])
def test_other_families_relu_softmax_gate_and_shared_experts(name):
    m = load_workload(name)
    st = synthetic_stack(m, layers=2, scale=auto_scale(m, 64), seed=0)
    assert len(st.layers[0].shared) == m.moe.num_shared_experts
    qs = quantize_stack(st, np.full((2, m.moe.num_experts), 3), shared_bits=4,
                        group_size=32)
    _check(certify_stack(qs, np.random.default_rng(2).normal(size=(32, st.d))))


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
def test_norm_perturbation_bound_is_sound_and_tight_for_small_eps(kind):
    rng = np.random.default_rng(3)
    d = 24
    gamma = rng.uniform(0.5, 2.0, d)
    v = rng.normal(size=(1, d))
    nv, rms = _normalize(v, gamma, kind, 1e-5)
    for eps in (1e-4, 0.1, 1.0, 3.0, 10.0, 100.0):
        bound = norm_perturbation(np.array([eps]), rms, d, gamma)[0]
        worst = 0.0
        for _ in range(300):
            u = rng.normal(size=d)
            u = v + eps * u / np.linalg.norm(u)
            worst = max(worst, np.linalg.norm(_normalize(u, gamma, kind, 1e-5)[0] - nv))
        assert worst <= bound
    # small eps: the bound is max|gamma| eps / rms to first order
    b = norm_perturbation(np.array([1e-6]), rms, d, gamma)[0]
    assert b == pytest.approx(gamma.max() * 1e-6 / rms[0], rel=1e-6)


def test_certify_model_synthetic_rows_and_setup(mixtral):
    rep = certify_model(mixtral, BitAllocation.uniform(mixtral, 4), tokens=32, layers=2,
                        scale=64)
    assert [r["layer"] for r in rep.rows] == [0, 1]
    assert "N(0, 1/d)" in rep.setup["weights"] and "1/64 scale: d=64" in rep.setup["weights"]
    for r in rep.rows:
        assert r["bound_mean"] >= r["measured_mean"] and 0 <= r["certified"] <= 1


def test_auto_scale_is_the_smallest_power_of_two(mixtral):
    assert auto_scale(mixtral) == 32          # 14336 / 32 = 448 <= 512 < 896
    assert auto_scale(mixtral, 1 << 20, 1 << 40) == 1
    # DeepSeek-V3: 256 x 3 x 7168 x 2048 weights / s^2 <= 4e6 needs s >= 54 -> 64
    assert auto_scale(load_workload("deepseek-v3")) == 64


def test_certify_model_from_a_checkpoint(tmp_path, mixtral):
    from safetensors.numpy import save_file
    rng = np.random.default_rng(4)
    d, ffn, t = 16, 24, {}
    for i in range(2):
        p = f"model.layers.{i}"
        t[f"{p}.block_sparse_moe.gate.weight"] = rng.normal(size=(8, d)).astype(np.float32)
        t[f"{p}.post_attention_layernorm.weight"] = rng.uniform(0.5, 1.5, d).astype(np.float32)
        for e in range(8):
            for n, s in (("w1", (ffn, d)), ("w3", (ffn, d)), ("w2", (d, ffn))):
                t[f"{p}.block_sparse_moe.experts.{e}.{n}.weight"] = (
                    rng.normal(size=s) / np.sqrt(s[1])).astype(np.float32)
    path = tmp_path / "model.safetensors"
    save_file(t, str(path))
    rep = certify_model(mixtral, BitAllocation.uniform(mixtral, 3), checkpoint=str(path),
                        tokens=32, layers=2)
    assert "checkpoint" in rep.setup["weights"] and "from the checkpoint" in rep.setup["weights"]
    assert len(rep.rows) == 2
    assert all(r["bound_mean"] >= r["measured_mean"] for r in rep.rows)
    with pytest.raises(ConfigError, match="2 MoE layers"):
        certify_model(mixtral, BitAllocation.uniform(mixtral, 3), checkpoint=str(path),
                      layers=3)
    with pytest.raises(ConfigError, match="drop --scale"):
        certify_model(mixtral, BitAllocation.uniform(mixtral, 3), checkpoint=str(path),
                      scale=4)


def test_bad_stack_inputs(mixtral):
    st = synthetic_stack(mixtral, layers=1, scale=128)
    with pytest.raises(ConfigError, match="expert bits must have shape"):
        quantize_stack(st, np.full((2, 8), 4))
    with pytest.raises(ConfigError, match="1..8 bits"):
        quantize_stack(st, np.full((1, 8), 12))
    qs = quantize_stack(st, np.full((1, 8), 4))
    with pytest.raises(ConfigError, match="tokens must be"):
        certify_stack(qs, np.ones((3, st.d + 1)))
    with pytest.raises(ConfigError, match="layers must be"):
        synthetic_stack(mixtral, layers=33)
