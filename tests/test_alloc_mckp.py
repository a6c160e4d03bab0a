"""Multiple-choice knapsack: exact against brute force, greedy against the LP bound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from accelsim.alloc.mckp import _greedy, mckp_lp_bound, solve_mckp, solve_mckp_multi
from accelsim.errors import ConfigError, InfeasibleError


def brute(costs, loss, budgets):
    """Least loss over every combination (costs [k, n, C])."""
    n, C = loss.shape
    best = np.inf
    for x in itertools.product(range(C), repeat=n):
        idx = (np.arange(n), list(x))
        if np.all(costs[:, idx[0], idx[1]].sum(axis=1) <= budgets + 1e-9):
            best = min(best, loss[idx].sum())
    return best


def instances(seed, count, max_items=5, max_choices=4):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n, C = rng.integers(1, max_items + 1), rng.integers(1, max_choices + 1)
        cost = rng.integers(0, 10, (n, C)).astype(float)
        loss = rng.integers(0, 10, (n, C)).astype(float)
        yield cost, loss, cost.min(axis=1).sum() + rng.integers(0, 15)


@pytest.mark.parametrize("method", ["exact", "auto"])
def test_exact_matches_brute_force(method):
    for cost, loss, b in instances(1, 150):
        x = solve_mckp(cost, loss, b, method=method)
        assert x.shape == (cost.shape[0],)
        assert cost[np.arange(len(x)), x].sum() <= b
        assert loss[np.arange(len(x)), x].sum() == pytest.approx(brute(cost[None], loss, b))


def test_greedy_feasible_and_within_one_step_of_lp_bound():
    for cost, loss, b in instances(2, 200):
        x, lp = _greedy(cost, loss, b)
        ar = np.arange(len(x))
        value, best = loss[ar, x].sum(), brute(cost[None], loss, b)
        assert cost[ar, x].sum() <= b + 1e-9
        assert lp <= best + 1e-9 <= value + 1e-9     # LP bound <= optimum <= greedy
        # the greedy loses at most the largest single loss difference of an item
        assert value - lp <= np.ptp(loss, axis=1).max() + 1e-9


def test_lp_bound_by_hand():
    # one item, choices (cost 0, loss 4) and (cost 2, loss 0): half the upgrade fits
    assert mckp_lp_bound([[0, 2]], [[4, 0]], 1) == pytest.approx(2.0)


def test_dominated_and_non_convex_choices():
    # choice 1 is dominated (dearer, no better); choice 2 lies above the hull of 0 and 3
    cost = np.array([[0.0, 5.0, 2.0, 4.0]])
    loss = np.array([[10.0, 10.0, 8.0, 0.0]])
    assert solve_mckp(cost, loss, 4, method="greedy").tolist() == [3]
    assert solve_mckp(cost, loss, 3, method="greedy").tolist() == [2]


def test_large_instance_near_optimal_and_feasible():
    # DeepSeek-V3 scale: 58 MoE layers x 256 experts, 4 levels
    rng = np.random.default_rng(0)
    n, bits = 14848, np.array([1.0, 2.0, 3.0, 4.0])
    cost = np.tile(bits * 1000, (n, 1)) + rng.random((n, 4))
    loss = rng.random((n, 1)) * 4.0 ** -bits
    b = cost[:, 1].sum() * 1.2
    x = solve_mckp(cost, loss, b)
    ar = np.arange(n)
    lp = mckp_lp_bound(cost, loss, b)
    assert cost[ar, x].sum() <= b
    assert loss[ar, x].sum() <= lp * (1 + 1e-3)


def test_infeasible_states_smallest_budget():
    with pytest.raises(InfeasibleError, match="smallest feasible total cost 5") as e:
        solve_mckp([[2, 3], [3, 4]], [[1, 0], [1, 0]], 4)
    assert e.value.minimum == 5


@pytest.mark.parametrize("cost, loss, match", [
    ([[1, np.nan]], [[0, 0]], "finite"), ([[1, 2]], [[0]], "shape"), ([1, 2], [1, 2], "2-D"),
])
def test_bad_input(cost, loss, match):
    with pytest.raises(ConfigError, match=match):
        solve_mckp(cost, loss, 10)


def test_multi_exact_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(80):
        n, C = rng.integers(1, 5), rng.integers(1, 4)
        costs = rng.integers(0, 10, (2, n, C)).astype(float)
        loss = rng.integers(0, 10, (n, C)).astype(float)
        budgets = costs.min(axis=2).sum(axis=1) + rng.integers(0, 12, 2)
        best = brute(costs, loss, budgets)
        if not np.isfinite(best):
            with pytest.raises(InfeasibleError):
                solve_mckp_multi(costs, loss, budgets)
            continue
        x = solve_mckp_multi(costs, loss, budgets)
        ar = np.arange(n)
        assert np.all(costs[:, ar, x].sum(axis=1) <= budgets)
        assert loss[ar, x].sum() == pytest.approx(best)


def test_multi_lagrangian_is_feasible_on_large_instances():
    rng = np.random.default_rng(4)
    n, bits = 2000, np.array([2.0, 3.0, 4.0])
    mem = np.tile(bits, (n, 1))
    lat = np.tile(bits, (n, 1)) * rng.uniform(0.5, 2.0, (n, 1))
    loss = rng.random((n, 1)) * 4.0 ** -bits
    budgets = np.array([3.5 * n, lat[:, 1].sum()])
    x = solve_mckp_multi(np.stack([mem, lat]), loss, budgets, method="greedy")
    ar = np.arange(n)
    assert mem[ar, x].sum() <= budgets[0] and lat[ar, x].sum() <= budgets[1] * (1 + 1e-9)
    # no worse than the better of the two single-budget relaxations' bound allows
    assert loss[ar, x].sum() >= max(mckp_lp_bound(mem, loss, budgets[0]),
                                    mckp_lp_bound(lat, loss, budgets[1])) - 1e-12
