"""Certified expert-output bounds: constants, soundness (property tests), tightness."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.errors import ConfigError
from accelsim.quant import quantize_rtn
from accelsim.theory import (ACTIVATIONS, expert_output_bound, measured_output_error,
                             spectral_norm)
from accelsim.theory.bounds import ExpertPair

KINDS = ("swiglu", "relu", "gelu")


def _expert(rng, d, ffn, kind, scale=1.0):
    w = {"w1": rng.normal(0, scale / np.sqrt(d), (ffn, d)),
         "w2": rng.normal(0, scale / np.sqrt(ffn), (d, ffn))}
    if ACTIVATIONS[kind].gated:
        w["w3"] = rng.normal(0, scale / np.sqrt(d), (ffn, d))
    return w


def _quantize(w, bits, group_size=16):
    return {k: quantize_rtn(v, bits, group_size=group_size) for k, v in w.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_lipschitz_constants_cover_numerical_derivative(kind):
    # independent check: central differences on a fine grid must stay below the constant,
    # and the constant must not be loose by more than 1e-4 (it is the true supremum)
    act = ACTIVATIONS[kind]
    z = np.linspace(-12, 12, 2_400_001)
    h = 1e-6
    deriv = (act.fn(z + h) - act.fn(z - h)) / (2 * h)
    sup = np.max(np.abs(deriv))
    assert sup <= act.lipschitz + 1e-8   # finite-difference rounding
    assert act.lipschitz - sup < 1e-4
    assert np.all(np.abs(act.fn(z)) <= np.abs(z) + 1e-12)


def test_gelu_tanh_approximation_is_covered():
    z = np.linspace(-12, 12, 2_400_001)
    c = np.sqrt(2 / np.pi)
    g = 0.5 * z * (1 + np.tanh(c * (z + 0.044715 * z ** 3)))
    assert np.max(np.abs(np.gradient(g, z))) <= ACTIVATIONS["gelu"].lipschitz


@pytest.mark.parametrize("shape", [(7, 3), (40, 90), (128, 33)])
def test_spectral_norm_matches_svd_and_rounds_up(shape):
    m = np.random.default_rng(1).normal(size=shape)
    ref = np.linalg.svd(m, compute_uv=False)[0]
    got = spectral_norm(m)
    assert got >= ref
    assert got == pytest.approx(ref, rel=1e-8)
    assert spectral_norm(np.zeros(shape)) == 0.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(KINDS), bits=st.integers(1, 8),
       d=st.integers(2, 24), ffn=st.integers(2, 48), scale=st.floats(0.1, 5.0),
       xscale=st.floats(0.01, 30.0))
def test_bound_never_below_measured_error(seed, kind, bits, d, ffn, scale, xscale):
    rng = np.random.default_rng(seed)
    w = _expert(rng, d, ffn, kind, scale)
    q = _quantize(w, bits, group_size=8)
    x = rng.normal(0, xscale, (16, d))
    err = measured_output_error(w, q, x, kind)
    for method in ("analytic", "hybrid"):
        b = expert_output_bound(w, q, x, kind, method=method)
        assert np.all(b >= err), (method, (b / np.maximum(err, 1e-300)).min())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_bound_holds_on_adversarial_tokens(kind, bits):
    # tokens along the top right singular vectors of the error matrices maximise ||E x||
    rng = np.random.default_rng(bits)
    d, ffn = 32, 80
    w = _expert(rng, d, ffn, kind)
    q = _quantize(w, bits)
    dirs = []
    for name in ("w1", "w3"):
        if name in w:
            _, _, vt = np.linalg.svd(w[name] - q[name].dequantize())
            dirs += [vt[0], vt[1], -vt[0]]
    x = np.concatenate([np.outer([0.1, 1.0, 10.0, 100.0], v) for v in dirs])
    err = measured_output_error(w, q, x, kind)
    for method in ("analytic", "hybrid"):
        assert np.all(expert_output_bound(w, q, x, kind, method=method) >= err)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["analytic", "hybrid"])
def test_ball_bound_holds_for_random_and_worst_direction_perturbations(kind, method):
    rng = np.random.default_rng(7)
    d, ffn = 24, 64
    w = _expert(rng, d, ffn, kind)
    q = _quantize(w, 3)
    pair = ExpertPair.build(w, q, kind)
    x = rng.normal(size=(8, d))
    f = pair.forward(x)
    for eps in (1e-3, 0.1, 1.0, 5.0):
        bound = expert_output_bound(w, q, x, kind, eps=eps, method=method)
        # random directions, the top singular directions of Q1, and a few steps of
        # projected gradient ascent on ||f(x) - f_q(x + delta)||
        _, _, vt = np.linalg.svd(q["w1"].dequantize())
        deltas = [rng.normal(size=(8, d)) for _ in range(20)] + [
            np.broadcast_to(s * vt[0], (8, d)) for s in (1, -1)]
        for delta in deltas:
            delta = eps * delta / np.linalg.norm(delta, axis=1, keepdims=True)
            got = np.linalg.norm(f - pair.forward(x + delta, quantized=True), axis=1)
            assert np.all(got <= bound)
        delta = np.zeros_like(x)
        for _ in range(30):
            grad = np.zeros_like(x)
            base = np.linalg.norm(f - pair.forward(x + delta, quantized=True), axis=1)
            for j in range(d):
                step = np.zeros(d)
                step[j] = 1e-5
                grad[:, j] = (np.linalg.norm(
                    f - pair.forward(x + delta + step, quantized=True), axis=1) - base) / 1e-5
            delta = delta + 0.3 * eps * grad / (np.linalg.norm(grad, axis=1,
                                                                 keepdims=True) + 1e-30)
            delta *= np.minimum(1.0, eps / np.linalg.norm(delta, axis=1))[:, None]
        got = np.linalg.norm(f - pair.forward(x + delta, quantized=True), axis=1)
        assert np.all(got <= bound)


def test_hybrid_equals_measured_error_without_perturbation():
    rng = np.random.default_rng(3)
    w = _expert(rng, 16, 40, "swiglu")
    q = _quantize(w, 2)
    x = rng.normal(size=(20, 16))
    err = measured_output_error(w, q, x)
    assert expert_output_bound(w, q, x, method="hybrid") == pytest.approx(err, rel=1e-7)


def test_bound_is_zero_for_unquantized_expert_and_shape_follows_tokens():
    rng = np.random.default_rng(4)
    w = _expert(rng, 8, 12, "relu")
    x = rng.normal(size=(2, 3, 8))
    b = expert_output_bound(w, w, x, "relu")
    assert b.shape == (2, 3)
    assert np.all(b == 0.0)
    assert expert_output_bound(w, w, x[0, 0], "relu").shape == ()


def test_analytic_bound_formula_on_a_hand_example():
    # 1-d ReLU expert: f(x) = w2 relu(w1 x); E1 = 0.5, E2 = 0.25, Q2 = 1.75:
    # bound = |E2| |relu(w1 x)| + |Q2| * 1 * |E1| |x| = 0.25 * 3 + 1.75 * 0.5 * 1.5
    w = {"w1": np.array([[2.0]]), "w2": np.array([[2.0]])}
    q = {"w1": np.array([[1.5]]), "w2": np.array([[1.75]])}
    b = expert_output_bound(w, q, np.array([1.5]), "relu")
    assert float(b) == pytest.approx(0.25 * 3.0 + 1.75 * 0.5 * 1.5, rel=1e-8)


def test_tightness_is_reported_and_finite():
    # the analytic bound is a worst case over directions: it must exceed the error, and
    # for these sizes stays within two orders of magnitude of it (docs/theory.md table)
    rng = np.random.default_rng(5)
    w = _expert(rng, 64, 224, "swiglu")
    q = _quantize(w, 4, group_size=32)
    x = rng.normal(size=(200, 64))
    ratio = expert_output_bound(w, q, x) / measured_output_error(w, q, x)
    assert 1.0 <= ratio.min() and np.median(ratio) < 100.0


def test_bad_inputs_are_reported():
    rng = np.random.default_rng(6)
    w = _expert(rng, 8, 12, "swiglu")
    with pytest.raises(ConfigError, match="missing matrix 'w3'"):
        expert_output_bound({k: v for k, v in w.items() if k != "w3"}, w, np.ones(8))
    with pytest.raises(ConfigError, match="must have shape"):
        expert_output_bound(w, {**w, "w2": np.ones((8, 11))}, np.ones(8))
    with pytest.raises(ConfigError, match="unknown expert kind"):
        expert_output_bound(w, w, np.ones(8), kind="swish")
    with pytest.raises(ConfigError, match="tokens must be"):
        expert_output_bound(w, w, np.ones(7))
    with pytest.raises(ConfigError, match="eps must be"):
        expert_output_bound(w, w, np.ones(8), eps=-1.0)
    with pytest.raises(ConfigError, match="method must be"):
        expert_output_bound(w, w, np.ones(8), method="exact")
