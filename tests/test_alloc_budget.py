"""The budget method: memory budgets against a closed form, latency budgets with an injected
simulator whose latency is not additive (so the re-simulate-and-repair loop must act)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from accelsim.alloc import AllocRequest, ExpertSignals, allocate, budget_allocation, pareto_front
from accelsim.alloc.budget import in_unit_of
from accelsim.errors import ConfigError, InfeasibleError
from accelsim.hw import load_hw
from accelsim.precision import WeightFormat
from accelsim.workload import load_workload


@pytest.fixture(scope="module")
def mixtral():
    return load_workload("mixtral-8x7b")


def expert_bytes(bits, ffn=14336, d=4096):
    return 3 * WeightFormat(bits, 128).storage_bytes(ffn, d)


def fixed_bytes(model, role_bits):
    from accelsim.precision import BitAllocation
    a = BitAllocation(model.name, np.full((model.num_moe_layers, model.moe.num_experts), 16),
                      defaults=role_bits)
    return sum(a.tensor_bytes(model, t) for t in model.tensors() if t.role != "expert")


@pytest.mark.parametrize("k", [0, 1, 100, 255, 256])
def test_memory_budget_closed_form(mixtral, k):
    # every 2->3 upgrade costs the same bytes and saves more (1/16 - 1/64) than any 3->4
    # (1/64 - 1/256): with room for k upgrades (k <= 256) exactly k experts get 3 bits
    req0 = AllocRequest(mixtral, levels=(4, 3, 2))
    fixed = fixed_bytes(mixtral, req0.role_bits)
    budget = fixed + 256 * expert_bytes(2) + k * (expert_bytes(3) - expert_bytes(2)) + 1000
    r = budget_allocation(AllocRequest(mixtral, levels=(4, 3, 2), memory_budget_bytes=budget))
    bits = r.allocation.expert_bits
    assert (bits == 3).sum() == k and (bits == 2).sum() == 256 - k
    assert r.weight_bytes == r.allocation.weight_bytes(mixtral) <= budget
    assert r.distortion == pytest.approx((k / 64 + (256 - k) / 16) / 8)
    assert r.lower_bound <= r.distortion + 1e-12


def test_memory_budget_infeasible_states_minimum_in_user_unit(mixtral):
    req = AllocRequest(mixtral, levels=(4, 3, 2), memory_budget_bytes=10e9,
                       memory_budget_text="10 GB")
    need = fixed_bytes(mixtral, req.role_bits) + 256 * expert_bytes(2)
    with pytest.raises(InfeasibleError) as e:
        budget_allocation(req)
    assert f"smallest feasible {need / 1e9:.4g} GB" in str(e.value)
    assert e.value.minimum == need


def test_per_layer_scope(mixtral):
    req = AllocRequest(mixtral, levels=(4, 3, 2), memory_budget_bytes=22e9,
                       memory_scope="layer",
                       signals=ExpertSignals(frequency=np.random.default_rng(0).dirichlet(
                           np.ones(8), 32)))
    r = budget_allocation(req)
    share = (22e9 - fixed_bytes(mixtral, req.role_bits)) / 32
    per_layer = [sum(expert_bytes(b) for b in row) for row in r.allocation.expert_bits]
    assert max(per_layer) <= share


def test_importance_and_sensitivity_steer_bits(mixtral):
    freq = np.full((32, 8), 0.01)
    freq[:, 3] = 0.93
    sens = np.ones((32, 8, 3)) * np.array([1.0, 0.1, 0.01])   # bits 2, 3, 4
    s = ExpertSignals(frequency=freq, sensitivity=sens, sensitivity_bits=(2, 3, 4))
    budget = fixed_bytes(mixtral, AllocRequest(mixtral).role_bits) + 224 * expert_bytes(2) \
        + 32 * expert_bytes(4) + 1000
    r = budget_allocation(AllocRequest(mixtral, s, levels=(4, 3, 2),
                                       memory_budget_bytes=budget))
    assert (r.allocation.expert_bits[:, 3] == 4).all()
    assert r.allocation.meta["distortion"] == "sensitivity"


def test_avg_bits_cap(mixtral):
    r = budget_allocation(AllocRequest(mixtral, levels=(4, 3, 2), avg_bits=2.5,
                                       memory_budget_bytes=1e12))
    assert r.allocation.average_expert_bits() == pytest.approx(2.5)


def test_budget_needs_a_budget(mixtral):
    with pytest.raises(ConfigError, match="--memory-budget"):
        allocate("budget", AllocRequest(mixtral))


# ----------------------------------------------------------------------------- latency
class FakeSim:
    """Step latency: 1 ms + 1 us per expert bit (additive part, spread as cycles on one
    1 Hz core) + 0.5 ms whenever some layer has more than 4 experts above 2 bits (the
    non-additive part an expert-sum cannot see)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, hw, graph, alloc):
        self.calls += 1
        model = graph.graph["model_spec"]
        rows = []
        for r, layer in enumerate(model.moe_layers):
            for e, b in enumerate(alloc.expert_bits[r]):
                rows.append({"layer": layer, "expert": e, "role": "expert",
                             "cycles": 1e-6 * b})
        ops = pd.DataFrame(rows)
        penalty = 5e-4 if ((alloc.expert_bits > 2).sum(axis=1) > 4).any() else 0.0
        return SimpleNamespace(latency_s=1e-3 + ops["cycles"].sum() + penalty, ops=ops,
                               cores=1, clock_hz=1.0)


@pytest.fixture(scope="module")
def olmoe():
    return load_workload("olmoe-1b-7b")           # 16 layers x 64 experts


def test_latency_budget_with_repair(olmoe):
    sim = FakeSim()
    hw = load_hw("gemmini")
    # all at 2 bits: 1 ms + 2048 us = 3.048 ms; the additive model allows ~ (3.3-3.048)/1us
    # upgrades of one bit, but more than 4 per layer in any layer costs 0.5 ms more
    req = AllocRequest(olmoe, levels=(4, 3, 2), hw=hw, latency_budget_s=3.3e-3)
    r = budget_allocation(req, simulate=sim)
    assert r.latency_s <= 3.3e-3
    assert r.repairs >= 1
    assert r.distortion < 1.0          # some experts did get more than 2 bits
    assert ((r.allocation.expert_bits > 2).sum(axis=1) <= 4).all()
    assert r.latency_s == pytest.approx(sim(hw, _graph(olmoe), r.allocation).latency_s)


def _graph(model):
    return SimpleNamespace(graph={"model_spec": model})


def test_latency_budget_infeasible_states_minimum(olmoe):
    req = AllocRequest(olmoe, levels=(4, 3, 2), hw=load_hw("gemmini"),
                       latency_budget_s=2e-3, latency_budget_text="2 ms")
    with pytest.raises(InfeasibleError, match=r"smallest feasible 3\.048 ms") as e:
        budget_allocation(req, simulate=FakeSim())
    assert e.value.minimum == pytest.approx(3.048e-3)


def test_in_unit_of():
    assert in_unit_of(1.5e9, "1 GiB", "size") == f"{1.5e9 / 2**30:.4g} GiB"
    assert in_unit_of(0.25, None, "time").endswith("ms") or "s" in in_unit_of(0.25, None,
                                                                               "time")


def test_pareto_front_is_monotone(mixtral):
    front = pareto_front(AllocRequest(mixtral, levels=(4, 3, 2), memory_budget_bytes=30e9),
                         points=6)
    assert 2 <= len(front) <= 6
    b = [r.weight_bytes for r in front]
    d = [r.distortion for r in front]
    assert b == sorted(b) and d == sorted(d, reverse=True) and len(set(d)) == len(d)
    assert math.isclose(front[0].allocation.average_expert_bits(), 2.0)
    assert math.isclose(front[-1].allocation.average_expert_bits(), 4.0)
