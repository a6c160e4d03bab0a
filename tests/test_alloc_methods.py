"""The method registry: each method against hand-computed or brute-force answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from accelsim.alloc import METHODS, AllocRequest, ExpertSignals, allocate
from accelsim.alloc.methods import DEFAULT_ROLE_BITS, pmq_layer, pmq_layers
from accelsim.errors import ConfigError, InfeasibleError
from accelsim.workload import load_workload


@pytest.fixture(scope="module")
def mixtral():
    return load_workload("mixtral-8x7b")


def req(model, **kw):
    kw.setdefault("signals", ExpertSignals())
    return AllocRequest(model, **kw)


def test_registry_has_every_method():
    assert set(METHODS) >= {"uniform", "router-norm", "reverse", "frequency", "random", "pmq",
                            "hessian", "budget"}


def test_uniform(mixtral):
    a = allocate("uniform", req(mixtral, avg_bits=3))
    assert (a.expert_bits == 3).all() and a.method == "uniform"
    assert a.defaults["attention"] == 4 == DEFAULT_ROLE_BITS["attention"]
    with pytest.raises(ConfigError, match="integer"):
        allocate("uniform", req(mixtral, avg_bits=2.5))
    with pytest.raises(ConfigError, match="--avg-bits"):
        allocate("uniform", req(mixtral))


def test_router_norm_prefers_the_change_and_small_scores_get_bits(mixtral):
    norm = np.tile(np.arange(8.0), (32, 1))
    change = norm[:, ::-1].copy()           # expert 7 changed least
    s = ExpertSignals(router_norm=norm, router_norm_change=change)
    a = allocate("router-norm", req(mixtral, signals=s, avg_bits=2.5, levels=(3, 1)))
    # kappa = 0.75 -> 6 high experts: the 6 smallest changes are experts 7..2
    assert a.expert_bits[0].tolist() == [1, 1, 3, 3, 3, 3, 3, 3]
    assert a.meta["score"] == "router_norm_change" and a.meta["order"] == "router"
    r = allocate("reverse", req(mixtral, signals=s, avg_bits=2.5, levels=(3, 1)))
    assert r.expert_bits[0].tolist() == [3, 3, 3, 3, 3, 3, 1, 1]


def test_router_norm_orders(mixtral):
    norm = np.tile(np.arange(8.0), (32, 1))
    var = np.ones((32, 8))
    var[:, 7] = 10.0                        # 3 * 1 < 10: expert 7 promoted to the front
    s = ExpertSignals(router_norm=norm, max_variance=var)
    comb = allocate("router-norm", req(mixtral, signals=s, avg_bits=1.5, levels=(3, 1)))
    assert comb.meta["order"] == "combined"  # auto picks combined when variance is known
    # 2 high experts (kappa 1/4 of 8): expert 7 (promoted) and expert 0
    assert sorted(np.flatnonzero(comb.expert_bits[0] == 3).tolist()) == [0, 7]
    mv = allocate("router-norm", req(mixtral, signals=s, avg_bits=1.5, levels=(3, 1),
                                     order="maxvar"))
    assert mv.expert_bits[0, 7] == 3
    router = allocate("router-norm", req(mixtral, signals=s, avg_bits=1.5, levels=(3, 1),
                                         order="router"))
    assert np.flatnonzero(router.expert_bits[0] == 3).tolist() == [0, 1]
    with pytest.raises(ConfigError, match="max_variance"):
        allocate("router-norm", req(mixtral, signals=ExpertSignals(router_norm=norm),
                                    avg_bits=2, order="combined"))


def test_frequency_gives_bits_to_frequent_experts(mixtral):
    f = np.tile(np.array([1, 8, 2, 7, 3, 6, 4, 5.0]) / 36, (32, 1))
    a = allocate("frequency", req(mixtral, signals=ExpertSignals(frequency=f), avg_bits=2,
                                  levels=(3, 1)))
    assert np.flatnonzero(a.expert_bits[0] == 3).tolist() == [1, 3, 5, 7]
    with pytest.raises(ConfigError, match="--trace"):
        allocate("frequency", req(mixtral, avg_bits=2))


def test_random_is_seeded(mixtral):
    a = allocate("random", req(mixtral, avg_bits=2, seed=1))
    b = allocate("random", req(mixtral, avg_bits=2, seed=1))
    c = allocate("random", req(mixtral, avg_bits=2, seed=2))
    assert np.array_equal(a.expert_bits, b.expert_bits)
    assert not np.array_equal(a.expert_bits, c.expert_bits)
    assert a.average_expert_bits() == pytest.approx(2.0)


def brute_pmq(weight, eps, levels, budget):
    best, arg = np.inf, None
    lv = np.array(levels)
    for x in itertools.product(range(len(lv)), repeat=len(weight)):
        bits = lv[list(x)]
        if bits.sum() > budget or not all((bits == b).any() for b in sorted(lv)[-2:]):
            continue
        v = sum(weight[i] * eps[i, x[i]] for i in range(len(weight)))
        if v < best - 1e-12:
            best, arg = v, bits
    return best, arg


def test_pmq_layer_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(30):
        E = int(rng.integers(2, 6))
        w = rng.random(E)
        eps = np.sort(rng.random((E, 3)), axis=1)      # more bits (first column) = less error
        budget = float(rng.integers(3 + 2 + (E - 2), 3 * E + 1))
        best, _ = brute_pmq(w, eps, (3, 2, 1), budget)
        got = pmq_layer(w, eps, (3, 2, 1), budget)
        col = {3: 0, 2: 1, 1: 2}
        assert got.sum() <= budget and (got == 3).any() and (got == 2).any()
        assert sum(w[i] * eps[i, col[b]] for i, b in enumerate(got)) == pytest.approx(best)


def test_pmq_layers_solves_every_layer_as_brute_force():
    # one integer program for all layers: each layer must still reach its own optimum, even
    # with objectives of very different sizes (HiGHS stops within an absolute gap)
    rng = np.random.default_rng(1)
    L, E = 40, 6
    w = rng.random((L, E)) * 1e-7        # unscaled, HiGHS leaves every layer off optimum
    eps = np.sort(rng.random((L, E, 3)), axis=2)
    budget = 2.2 * E
    got = pmq_layers(w, eps, (3, 2, 1), budget)
    col = {3: 0, 2: 1, 1: 2}
    for r in range(L):
        best, _ = brute_pmq(w[r], eps[r], (3, 2, 1), budget)
        assert got[r].sum() <= budget and (got[r] == 3).any() and (got[r] == 2).any()
        assert sum(w[r, i] * eps[r, i, col[b]] for i, b in enumerate(got[r])) == \
            pytest.approx(best, rel=1e-9)


def test_pmq_objective_weights(mixtral):
    # with the 4^-b proxy and no sensitivity, PMQ ranks by phi * w^1.5
    f = np.tile(np.array([8, 1, 1, 1, 1, 1, 1, 2.0]) / 16, (32, 1))
    w = np.tile(np.array([0.1, 1, 1, 1, 1, 1, 1, 0.9]), (32, 1))
    # phi*w^1.5: expert 0: .5 * .0316 = .016; expert 7: .125 * .854 = .107; others .0625
    s = ExpertSignals(frequency=f, mean_weight=w)
    a = allocate("pmq", req(mixtral, signals=s, avg_bits=1.375, levels=(3, 2, 1)))
    # budget 11 bits: 3 + 2 + 6*1 = 11 -> one 3-bit, one 2-bit, rest 1
    row = a.expert_bits[0]
    assert row[7] == 3 and row.sum() == 11 and (row == 2).sum() == 1 and row[0] == 1
    with pytest.raises(InfeasibleError, match="at least 1.375"):
        allocate("pmq", req(mixtral, signals=s, avg_bits=1.25, levels=(3, 2, 1)))


def test_hessian_minimises_sensitivity_per_layer(mixtral):
    rng = np.random.default_rng(2)
    sens = np.sort(rng.random((32, 8, 3)), axis=2)[:, :, ::-1]   # columns for bits 1, 2, 3
    s = ExpertSignals(sensitivity=sens, sensitivity_bits=(1, 2, 3))
    a = allocate("hessian", req(mixtral, signals=s, avg_bits=2, levels=(3, 2, 1)))
    for r in (0, 17):
        e = sens[r]
        best = min(sum(e[i, b - 1] for i, b in enumerate(x))
                   for x in itertools.product((1, 2, 3), repeat=8) if sum(x) <= 16)
        got = sum(e[i, b - 1] for i, b in enumerate(a.expert_bits[r]))
        assert got == pytest.approx(best)
        assert a.expert_bits[r].sum() <= 16
    with pytest.raises(ConfigError, match="sensitivity"):
        allocate("hessian", req(mixtral, avg_bits=2))


def test_signals_checked_against_model(mixtral):
    s = ExpertSignals(router_norm=np.ones((31, 8)))
    with pytest.raises(ConfigError, match=r"shape \(32, 8\)"):
        allocate("router-norm", req(mixtral, signals=s, avg_bits=2))


def test_unknown_method_and_order(mixtral):
    with pytest.raises(ConfigError, match="did you mean 'router-norm'"):
        allocate("router_norm", req(mixtral))
    with pytest.raises(ConfigError, match="order"):
        req(mixtral, order="routr")
