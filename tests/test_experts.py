"""Experts and MoE layers: float forward against per-token float64 formulas, quantized
forward against the float forward of the dequantized weights, routing, validation."""

import math

import numpy as np
import pytest

from accelsim.errors import ConfigError
from accelsim.quant import (Expert, MoELayer, QuantizedTensor, expert_forward, linear,
                            moe_forward, quantize_expert, quantize_moe, quantize_rtn, route)

D, F = 24, 40


def _expert(kind, rng, d=D, f=F):
    names = ("w1", "w3", "w2") if kind == "swiglu" else ("wi", "wo")
    return Expert(kind, {n: rng.standard_normal((d, f) if n in ("w2", "wo") else (f, d))
                         / math.sqrt(d) for n in names})


def _ref_expert(kind, weights, xt):
    """One token, float64, textbook formulas."""
    W = {n: (m.dequantize() if isinstance(m, QuantizedTensor) else m).astype(np.float64)
         for n, m in weights.items()}
    if kind == "swiglu":
        g = W["w1"] @ xt
        return W["w2"] @ ((g / (1.0 + np.exp(-g))) * (W["w3"] @ xt))
    h = W["wi"] @ xt
    if kind == "relu":
        h = np.maximum(h, 0.0)
    else:
        h = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in h])
    return W["wo"] @ h


@pytest.mark.parametrize("kind", ["swiglu", "relu", "gelu"])
def test_float_expert_matches_per_token_formula(kind):
    rng = np.random.default_rng(0)
    e = _expert(kind, rng)
    x = rng.standard_normal((5, D))
    y = expert_forward(e, x)
    assert y.dtype == np.float32 and y.shape == (5, D)
    ref = np.stack([_ref_expert(kind, e.weights, xt) for xt in x])
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["swiglu", "relu", "gelu"])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantized_expert_weight_only_equals_dequantized_float(kind, bits):
    rng = np.random.default_rng(bits)
    e = _expert(kind, rng)
    q = quantize_expert(e, bits, group_size=8)
    assert all(isinstance(m, QuantizedTensor) and m.bits == bits for m in q.weights.values())
    x = rng.standard_normal((6, D))
    ref = np.stack([_ref_expert(kind, q.weights, xt) for xt in x])
    np.testing.assert_allclose(expert_forward(q, x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["swiglu", "relu"])
def test_integer_path_close_to_weight_only_path(kind):
    rng = np.random.default_rng(1)
    q = quantize_expert(_expert(kind, rng), 4, group_size=8)
    x = rng.standard_normal((7, D))
    w_only = expert_forward(q, x)
    a8 = expert_forward(q, x, act_bits=8)
    a4 = expert_forward(q, x, act_bits=4)
    err8 = np.linalg.norm(a8 - w_only) / np.linalg.norm(w_only)
    err4 = np.linalg.norm(a4 - w_only) / np.linalg.norm(w_only)
    assert err8 < 0.03          # 8-bit per-token activations: ~1% relative error
    assert err8 < err4 < 0.5


def test_linear_integer_path_is_int_gemm_of_quantized_activations():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 16))
    qt = quantize_rtn(w, 3, 8)
    x = rng.standard_normal((4, 16)).astype(np.float32)
    y = linear(x, qt, act_bits=8)
    amax = np.abs(x).max(axis=1, keepdims=True)
    s = (amax / 127).astype(np.float32)
    xq = np.clip(np.rint(x / s), -127, 127)
    np.testing.assert_allclose(y, (xq * s) @ qt.dequantize().T, rtol=1e-5, atol=1e-6)


def test_more_bits_less_error():
    rng = np.random.default_rng(3)
    e = _expert("swiglu", rng)
    x = rng.standard_normal((32, D))
    y = expert_forward(e, x)
    errs = [np.linalg.norm(expert_forward(quantize_expert(e, b, 8), x) - y) for b in (2, 3, 4, 8)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.01 * np.linalg.norm(y)


def test_gptq_expert_beats_rtn_on_its_calibration_data():
    rng = np.random.default_rng(4)
    e = _expert("swiglu", rng)
    mix = rng.standard_normal((D, D)) / math.sqrt(D) + 0.3 * np.eye(D)
    calib = rng.standard_normal((400, D)) @ mix
    y = expert_forward(e, calib)
    err = {m: np.linalg.norm(expert_forward(quantize_expert(e, 3, 8, method=m, calib=calib),
                                            calib) - y) for m in ("rtn", "gptq")}
    assert err["gptq"] < err["rtn"]


def test_expert_nbytes_and_bits():
    rng = np.random.default_rng(5)
    e = _expert("swiglu", rng)
    assert e.nbytes == 3 * D * F * 4 and e.bits() == {"w1": None, "w3": None, "w2": None}
    q = quantize_expert(e, 3, group_size=8, symmetric=True)
    # w1, w3: (40, 24) -> 3 groups/row; w2: (24, 40) -> 5 groups/row; fp16 scales, no zeros
    expected = (2 * (math.ceil(40 * 24 * 3 / 8) + 40 * 3 * 2)
                + math.ceil(24 * 40 * 3 / 8) + 24 * 5 * 2)
    assert q.nbytes == expected
    assert quantize_expert(e, None) is e


# ----------------------------------------------------------------------------- MoE

def _layer(rng, E=5, k=2, kind="swiglu", normalize=True, shared=0):
    return MoELayer(rng.standard_normal((E, D)), tuple(_expert(kind, rng) for _ in range(E)),
                    top_k=k, normalize_topk=normalize,
                    shared_experts=tuple(_expert(kind, rng) for _ in range(shared)))


def _ref_moe(layer, x):
    """Token by token: float64 softmax, top-k by sorting, weighted sum of expert outputs."""
    out = []
    for xt in np.asarray(x, np.float64):
        logits = layer.router.astype(np.float64) @ xt
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = sorted(range(len(p)), key=lambda i: (-p[i], i))[: layer.top_k]
        w = p[top] / (p[top].sum() if layer.normalize_topk else 1.0)
        yt = sum(wi * _ref_expert(layer.experts[i].kind, layer.experts[i].weights, xt)
                 for wi, i in zip(w, top))
        yt = yt + sum(_ref_expert(s.kind, s.weights, xt) for s in layer.shared_experts)
        out.append(yt)
    return np.array(out)


@pytest.mark.parametrize("E,k,normalize,shared,kind", [
    (5, 2, True, 0, "swiglu"), (8, 1, False, 0, "relu"), (6, 3, False, 1, "swiglu"),
    (4, 4, True, 2, "gelu"),
])
def test_moe_forward_matches_per_token_reference(E, k, normalize, shared, kind):
    rng = np.random.default_rng(E * 10 + k)
    layer = _layer(rng, E, k, kind, normalize, shared)
    x = rng.standard_normal((17, D))
    out = moe_forward(layer, x)
    np.testing.assert_allclose(out.y, _ref_moe(layer, x), rtol=1e-4, atol=1e-5)
    assert out.routing.indices.shape == (17, k)
    if normalize:
        np.testing.assert_allclose(out.routing.weights.sum(axis=1), 1.0, rtol=1e-6)


def test_quantized_moe_matches_reference_with_dequantized_weights():
    rng = np.random.default_rng(11)
    layer = _layer(rng, E=4, k=2, shared=1)
    bits = [2, None, 4, 8]                     # mixed precision; expert 1 stays float
    q = quantize_moe(layer, bits, group_size=8, shared_bits=4)
    assert [e.bits()["w1"] for e in q.experts] == bits
    assert q.shared_experts[0].bits()["w2"] == 4
    x = rng.standard_normal((12, D))
    np.testing.assert_allclose(moe_forward(q, x).y, _ref_moe(q, x), rtol=1e-4, atol=1e-5)
    # routing is unchanged: the router stays float
    np.testing.assert_array_equal(moe_forward(q, x).routing.indices,
                                  moe_forward(layer, x).routing.indices)
    assert q.nbytes < layer.nbytes


def test_quantized_moe_integer_path_close_to_float():
    rng = np.random.default_rng(12)
    layer = _layer(rng, E=4, k=2)
    q = quantize_moe(layer, 8, group_size=8)
    x = rng.standard_normal((9, D))
    y = moe_forward(layer, x).y
    yq = moe_forward(q, x, act_bits=8).y
    assert np.linalg.norm(yq - y) < 0.03 * np.linalg.norm(y)


def test_gptq_moe_uses_routed_tokens_and_falls_back_to_rtn():
    rng = np.random.default_rng(13)
    layer = _layer(rng, E=3, k=1)
    # steer every calibration token to expert 0: experts 1 and 2 get none -> RTN
    router = np.zeros((3, D))
    router[0, 0] = 10.0
    layer = MoELayer(router, layer.experts, top_k=1)
    calib = np.abs(rng.standard_normal((200, D)))
    q = quantize_moe(layer, 3, group_size=8, method="gptq", calib=calib)
    for e in (1, 2):
        r = quantize_expert(layer.experts[e], 3, group_size=8)
        np.testing.assert_array_equal(q.experts[e].weights["w1"].packed, r.weights["w1"].packed)
    r0 = quantize_expert(layer.experts[0], 3, group_size=8)
    assert not np.array_equal(q.experts[0].weights["w1"].packed, r0.weights["w1"].packed)


def test_route_ties_and_probs():
    r = route(np.ones((1, 2)), np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]), 2)
    np.testing.assert_array_equal(r.indices, [[2, 0]])      # p(0) == p(1): lower index
    np.testing.assert_allclose(r.probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(r.weights, [[math.e / (math.e + 1), 1 / (math.e + 1)]], rtol=1e-6)


def test_validation():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="kind"):
        Expert("swish", {})
    with pytest.raises(ConfigError) as exc:
        Expert("swiglu", {"w1": np.ones((4, 2)), "w2": np.ones((2, 4)), "wo": np.ones((2, 4))})
    assert {p.key for p in exc.value.problems} == {"weights.w3", "weights.wo"}
    with pytest.raises(ConfigError, match=r"shape must be \(2, 4\)"):
        Expert("relu", {"wi": np.ones((4, 2)), "wo": np.ones((4, 2))})
    e = _expert("relu", rng)
    with pytest.raises(ConfigError, match="x"):
        expert_forward(e, np.ones((3, D + 1)))
    with pytest.raises(ConfigError, match="act_bits"):
        expert_forward(e, np.ones((3, D)), act_bits=16)
    with pytest.raises(ConfigError) as exc:
        MoELayer(np.ones((3, D)), (e, e), top_k=4)
    assert {p.key for p in exc.value.problems} == {"experts", "top_k"}
    with pytest.raises(ConfigError, match="hidden size"):
        MoELayer(np.ones((1, D + 1)), (e,), top_k=1)
    layer = MoELayer(np.ones((2, D)), (e, e), top_k=1)
    with pytest.raises(ConfigError, match="one precision per expert"):
        quantize_moe(layer, [4])
    with pytest.raises(ConfigError, match="method"):
        quantize_expert(e, 4, method="awq")
    with pytest.raises(ConfigError, match="calibration"):
        quantize_expert(e, 4, method="gptq")
