"""Storage bytes per tensor and the residency policies."""

from __future__ import annotations

import numpy as np
import pytest

from accelsim.errors import ConfigError, DoesNotFitError
from accelsim.hw import hw_from_dict, load_hw
from accelsim.precision import BitAllocation
from accelsim.sim import simulate
from accelsim.sim.lower import tensor_storage_bytes, tensor_table
from accelsim.workload import Scenario, Zipf, build_graph, load_workload, workload_from_dict


@pytest.fixture(scope="module")
def mixtral():
    return load_workload("mixtral-8x7b")


@pytest.fixture(scope="module")
def small():
    return workload_from_dict(dict(
        name="small", hidden_size=256, num_layers=3, vocab_size=1024,
        attention=dict(num_heads=4, num_kv_heads=2),
        moe=dict(num_experts=8, top_k=2, expert_ffn_size=512)))


def _hw(l1="1 MiB", l2=None, offchip=True, cores=1) -> dict:
    mem = [{"name": "l1", "scope": "core", "capacity": l1, "read_bandwidth": "64 B/cycle",
            "latency": "1 cycles", "read_energy": "1 pJ/B"}]
    if l2:
        mem.append({"name": "l2", "scope": "chip", "capacity": l2,
                    "read_bandwidth": "32 B/cycle", "latency": "10 cycles",
                    "read_energy": "2 pJ/B"})
    if offchip:
        mem.append({"name": "dram", "scope": "offchip", "capacity": "64 GiB",
                    "read_bandwidth": "16 B/cycle", "latency": "100 cycles",
                    "read_energy": "100 pJ/B"})
    d = {"name": "t", "clock": "1 GHz",
         "cores": {"count": cores, "mac_array": {"rows": 16, "cols": 16,
                                                 "arithmetic": {"kind": "fixed"}}},
         "memory": mem, "dma": {"setup": "10 cycles"}}
    if cores > 1:
        d["noc"] = {"topology": "mesh", "link_bandwidth": "32 B/cycle"}
    return d


@pytest.mark.parametrize("kw", [{}, {"packing": "pow2"}, {"symmetric": True},
                                {"group_size": None}, {"group_size": 64, "zero_bits": 4}])
def test_vectorised_storage_equals_weightformat(mixtral, kw):
    rng = np.random.default_rng(0)
    bits = rng.choice([1, 2, 3, 4, 5, 8, 16], size=(32, 8))
    alloc = BitAllocation("mixtral-8x7b", bits, defaults={"attention": 6, "router": 8},
                          **kw)
    tt = tensor_table(mixtral)
    got = tensor_storage_bytes(tt, alloc)
    want = [alloc.tensor_bytes(mixtral, t) for t in mixtral.tensors()]
    assert got.tolist() == want
    assert got.sum() == alloc.weight_bytes(mixtral)


def test_bytes_by_level_add_up(small):
    g = build_graph(small, Scenario(phase="decode", batch=4, context=64))
    alloc = BitAllocation.uniform(small, 4, kv_bits=8)
    r = simulate(hw_from_dict(_hw(l1="256 KiB", l2="512 KiB")), g, alloc)
    assert sum(r.weight_bytes_by_level.values()) == pytest.approx(alloc.weight_bytes(small))
    kv_total = small.kv_bytes_per_token_per_layer(8) * 4 * 65 * small.total_layers
    assert sum(r.kv_bytes_by_level.values()) == pytest.approx(kv_total)


def test_offchip_policy_puts_everything_off_chip(small):
    g = build_graph(small, Scenario(phase="decode", batch=2))
    alloc = BitAllocation.uniform(small, 4)
    r = simulate(hw_from_dict(_hw(l1="64 MiB")), g, alloc, residency="offchip")
    assert r.weight_bytes_by_level["dram"] == alloc.weight_bytes(small)
    assert r.weight_bytes_by_level["l1"] == 0
    # every expected weight byte the step touches crosses the off-chip interface
    touched = 0.0
    model_t = {t.name: t for t in small.tensors()}
    for _, a in g.nodes(data=True):
        if a["weight"]:
            touched += a["p_active"] * a["weight_fraction"] * alloc.tensor_bytes(
                small, model_t[a["weight"]])
    assert r.offchip_bytes >= touched


def test_must_fit_error_names_the_shortfall(small):
    g = build_graph(small, Scenario())
    alloc = BitAllocation.uniform(small, 8)
    with pytest.raises(DoesNotFitError, match=r"must-fit: the weights need .* short"):
        simulate(hw_from_dict(_hw(l1="256 KiB")), g, alloc, residency="must-fit")
    r = simulate(hw_from_dict(_hw(l1="64 MiB")), g, alloc, residency="must-fit")
    assert r.weight_bytes_by_level["dram"] == 0


def test_no_offchip_memory_and_too_big(mixtral):
    with pytest.raises(DoesNotFitError, match="no off-chip memory"):
        simulate(load_hw("northpole"), build_graph(mixtral, Scenario()),
                 BitAllocation.uniform(mixtral, 4))


def test_unknown_policy_suggests(small):
    with pytest.raises(ConfigError, match="did you mean 'hot-first'"):
        simulate(hw_from_dict(_hw()), build_graph(small, Scenario()),
                 BitAllocation.uniform(small, 4), residency="hot-frist")


def test_hot_first_keeps_the_hottest_experts_on_chip(small):
    # zipf routing at batch 2: expert probabilities differ a lot; a 1 MiB L1 holds some experts
    g = build_graph(small, Scenario(phase="decode", batch=2, routing=Zipf(1.5), seed=3))
    alloc = BitAllocation.uniform(small, 4)
    r = simulate(hw_from_dict(_hw(l1="1 MiB")), g, alloc)
    ops = r.ops
    ex = ops[(ops["role"] == "expert") & ops["weight"].str.endswith(".w1")].copy()
    on = ex["bytes_dram"] == 0
    assert on.any() and (~on).any()
    assert ex.loc[on, "p_active"].min() >= ex.loc[~on, "p_active"].max() - 1e-12


def test_unusual_holds(small):
    g = build_graph(small, Scenario(batch=4))
    alloc = BitAllocation.uniform(small, 4)
    d = _hw(l1="4 MiB")
    d["memory"][0]["holds"] = ["weights"]            # no level holds activations
    d["memory"][1]["holds"] = ["weights", "kv"]
    r = simulate(hw_from_dict(d), g, alloc)
    assert r.latency_s > 0 and sum(r.weight_bytes_by_level.values()) == alloc.weight_bytes(
        small)
    d = _hw(l1="64 KiB")
    d["memory"][1]["holds"] = ["activations", "kv"]  # DRAM may not hold weights
    with pytest.raises(DoesNotFitError, match="off-chip memory does not hold weights.*l1"):
        simulate(hw_from_dict(d), g, alloc)


@pytest.mark.parametrize("offchip,policy", [(False, "hot-first"), (True, "must-fit")])
def test_memory_plan_fails_exactly_when_simulate_does(small, offchip, policy):
    """memory_plan/fits, the cheap feasibility check, agree with simulate across the point
    where the model (4-bit weights, 6,165 KiB, plus KV cache, activations and staging) stops
    fitting a scanned on-chip capacity: same error message, same placement when it fits."""
    from accelsim.sim import fits, memory_plan
    g = build_graph(small, Scenario(phase="decode", batch=4, context=256))
    alloc = BitAllocation.uniform(small, 4)
    outcomes = set()
    for kib in range(6144, 12289, 512):
        hw = hw_from_dict(_hw(l1=f"{kib} KiB", offchip=offchip))
        try:
            r = simulate(hw, g, alloc, residency=policy)
        except DoesNotFitError as e:
            with pytest.raises(DoesNotFitError) as got:
                memory_plan(hw, g, alloc, residency=policy)
            assert str(got.value) == str(e)
            assert not fits(hw, g, alloc, residency=policy)
            outcomes.add(False)
            continue
        plan = memory_plan(hw, g, alloc, residency=policy)
        assert fits(hw, g, alloc, residency=policy)
        names = plan.level_names
        assert dict(zip(names, plan.weight_bytes_by_level.tolist())) == r.weight_bytes_by_level
        assert dict(zip(names, plan.kv_bytes_by_level.tolist())) == r.kv_bytes_by_level
        assert dict(zip(names, plan.act_reserve.tolist())) == r.activation_bytes_by_level
        outcomes.add(True)
    assert outcomes == {True, False}


def test_memory_plan_rejects_bad_options_like_simulate(small):
    from accelsim.sim import fits, memory_plan
    g = build_graph(small, Scenario(phase="decode", batch=1))
    hw = hw_from_dict(_hw(offchip=False))
    for kw in ({"residency": "offchip"}, {"residency": "hotfirst"}, {"staging_fraction": 0}):
        with pytest.raises(ConfigError):
            simulate(hw, g, **kw)
        with pytest.raises(ConfigError):
            memory_plan(hw, g, **kw)
        with pytest.raises(ConfigError):
            fits(hw, g, **kw)
