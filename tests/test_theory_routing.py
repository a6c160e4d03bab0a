"""Routing certificates: exactness on hand examples, soundness under random and adversarial
perturbations, non-vacuity (a perturbation just past the radius changes the set)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.errors import ConfigError
from accelsim.quant import quantize_rtn
from accelsim.theory import certified_radius, certify_routing
from accelsim.theory.routing import topk_indices


def _topk_set(logits, k):
    return np.sort(topk_indices(logits, k)[0], axis=-1)


def test_hand_example_radius_is_gap_over_row_distance():
    # logits (3, 1, -3): top-2 = {0, 1}; pair (1, 2): gap 4 over ||r1 - r2|| = ||(1, 1)||
    # = sqrt 2 -> 2.828; pair (0, 2): gap 6 over ||(2, 0)|| = 2 -> 3; radius = 2 sqrt 2
    R = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    x = np.array([3.0, 1.0])
    assert float(certified_radius(R, x, 2)) == pytest.approx(2 * np.sqrt(2), rel=1e-8)
    assert certify_routing(R, x, 2.82, 2) and not certify_routing(R, x, 2.83, 2)


def test_all_experts_selected_is_always_certified():
    R = np.random.default_rng(0).normal(size=(4, 3))
    assert np.all(certify_routing(R, np.ones((5, 3)), 1e6, 4))


def test_ties_are_never_certified():
    R = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert not certify_routing(R, np.array([1.0, 0.0]), 0.0, 1)


def _pair_attack(Q, x, sel, rest, scale):
    """The exact worst perturbation: for every (in, out) pair, push along -(q_i - q_j)."""
    out = []
    for i in sel:
        for j in rest:
            v = Q[i] - Q[j]
            n = np.linalg.norm(v)
            if n > 0:
                out.append(-scale * v / n)
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 100_000), E=st.integers(2, 12), d=st.integers(2, 16),
       k=st.integers(1, 4), quant=st.sampled_from([None, 2, 3, 4, 8]),
       eps_scale=st.floats(0.01, 2.0))
def test_certified_tokens_survive_random_and_adversarial_perturbations(
        seed, E, d, k, quant, eps_scale):
    k = min(k, E)
    rng = np.random.default_rng(seed)
    R = rng.normal(size=(E, d))
    Rq = None if quant is None else quantize_rtn(R, quant, group_size=None)
    Q = R if Rq is None else Rq.dequantize().astype(np.float64)
    X = rng.normal(size=(12, d))
    radius = certified_radius(R, X, k, Rq)
    eps = eps_scale * np.median(np.where(np.isfinite(radius), radius, 1.0)) + 1e-9
    cert = certify_routing(R, X, eps, k, Rq)
    ref = _topk_set(X @ R.T, k)
    for t in np.flatnonzero(cert):
        sel, rest = topk_indices(X[t] @ R.T, k)
        deltas = [rng.normal(size=d) for _ in range(30)]
        deltas = [eps * v / np.linalg.norm(v) for v in deltas]
        deltas += _pair_attack(Q, X[t], sel, rest, eps)
        for delta in deltas:
            got = _topk_set((X[t] + delta) @ Q.T, k)
            assert np.array_equal(got, ref[t])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 100_000), E=st.integers(3, 10), d=st.integers(2, 12),
       k=st.integers(1, 3))
def test_radius_is_exact_a_slightly_larger_perturbation_changes_the_set(seed, E, d, k):
    rng = np.random.default_rng(seed)
    R = rng.normal(size=(E, d))
    X = rng.normal(size=(10, d))
    radius = certified_radius(R, X, k)
    ref = _topk_set(X @ R.T, k)
    for t in range(10):
        r = radius[t]
        if not np.isfinite(r) or r == 0:
            continue
        sel, rest = topk_indices(X[t] @ R.T, k)
        # past the radius by more than its rounding allowance (1e-9 of the logit scale)
        attacks = _pair_attack(R, X[t], sel, rest, r * (1 + 1e-6) + 1e-7)
        changed = [not np.array_equal(_topk_set((X[t] + a) @ R.T, k), ref[t])
                   for a in attacks]
        assert any(changed)


def test_gradient_attack_on_the_margin_never_breaks_a_certificate():
    # projected gradient descent on the smallest in-set minus out-of-set logit difference
    rng = np.random.default_rng(11)
    E, d, k = 8, 32, 2
    R = rng.normal(0, 1 / np.sqrt(d), (E, d))
    Rq = quantize_rtn(R, 4, group_size=16)
    Q = Rq.dequantize().astype(np.float64)
    X = rng.normal(size=(64, d))
    radius = certified_radius(R, X, k, Rq)
    eps = 0.9 * np.median(radius[radius > 0])
    cert = certify_routing(R, X, eps, k, Rq)
    assert 0 < cert.sum() < 64          # neither vacuous nor trivially everything
    for t in np.flatnonzero(cert):
        sel, rest = topk_indices(X[t] @ R.T, k)
        delta = np.zeros(d)
        for _ in range(50):
            z = (X[t] + delta) @ Q.T
            i = sel[np.argmin(z[sel])]
            j = rest[np.argmax(z[rest])]
            delta = delta - 0.2 * eps * (Q[i] - Q[j]) / np.linalg.norm(Q[i] - Q[j])
            delta *= min(1.0, eps / np.linalg.norm(delta))
            got = _topk_set((X[t] + delta) @ Q.T, k)
            assert np.array_equal(got, np.sort(sel))


def test_router_quantization_enters_exactly():
    # with eps = 0 the deployed quantized router must reproduce the float top-k set for
    # exactly the certified tokens
    rng = np.random.default_rng(2)
    R = rng.normal(size=(6, 10))
    Rq = quantize_rtn(R, 2, group_size=None)
    X = rng.normal(size=(400, 10))
    cert = certify_routing(R, X, 0.0, 2, Rq)
    same = np.all(_topk_set(X @ R.T, 2) == _topk_set(X @ Rq.dequantize().T, 2), axis=1)
    assert np.all(same[cert])
    assert cert.sum() > 0.5 * same.sum()   # gaps > 0 almost surely where sets agree


def test_bad_arguments():
    R = np.ones((4, 3))
    with pytest.raises(ConfigError, match="top_k"):
        certify_routing(R, np.ones(3), 0.1, 5)
    with pytest.raises(ConfigError, match="x must be"):
        certify_routing(R, np.ones(4), 0.1, 1)
    with pytest.raises(ConfigError, match="eps"):
        certify_routing(R, np.ones(3), -0.1, 1)
    with pytest.raises(ConfigError, match="router_quantized"):
        certify_routing(R, np.ones(3), 0.1, 1, np.ones((4, 2)))
