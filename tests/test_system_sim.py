"""System simulation with the real per-device simulator: the one-device system is the chip,
invariants (property tests with few examples), and the part equivalence the system layer
relies on to simulate each distinct part once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import accelsim
from accelsim.sim import DevicePart, simulate_parts
from accelsim.system import load_system
from accelsim.system.result import SYSTEM_KEYS
from accelsim.system.simulate import simulate_system, weight_capacity_bytes
from accelsim.system.spec import Link


@pytest.fixture(scope="module")
def mixtral():
    m = accelsim.load_workload("mixtral-8x7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=8, context=256))
    return m, g, accelsim.BitAllocation.uniform(m, 4)


@pytest.mark.parametrize("hw", ["h100", "spyre"])
def test_one_device_system_is_exactly_the_chip(mixtral, hw):
    from dataclasses import replace
    m, g, a = mixtral
    chip = accelsim.sim.simulate(hw, g, a).to_dict()
    from accelsim.system import System
    node = load_system("h100-8" if hw == "h100" else "spyre-8").first(1)
    for system in (load_system(hw), System.single(accelsim.load_hw(hw)),
                   replace(node, host_power_w=0.0)):
        d = accelsim.simulate(system, g, a).to_dict()
        assert {k: v for k, v in d.items() if k not in SYSTEM_KEYS} == chip
        assert d["devices"] == 1
    # with host power, the device's share of its node's host (1 / devices per node) is
    # drawn for the step on top of the chip's energy
    d = accelsim.simulate(replace(node, host_power_w=800.0), g, a).to_dict()
    host = 800.0 / node.devices_per_node * chip["latency_s"]
    assert d["energy_j"] == pytest.approx(chip["energy_j"] + host, rel=1e-12)
    assert d["energy_breakdown_j"]["host"] == pytest.approx(host, rel=1e-12)


def test_data_parallel_replicas_keep_the_chip_latency(mixtral):
    from dataclasses import replace
    m, g, a = mixtral
    chip = accelsim.sim.simulate("h100", g, a)
    node = load_system("h100-8")
    r = accelsim.simulate(replace(node, host_power_w=0.0), g, a, plan="dp=2")
    # one stage, one micro-batch: the period is the chip's step (the per-layer latencies
    # of the part sum to its latency_s)
    assert r.latency_s == pytest.approx(chip.latency_s, rel=1e-9)
    assert r.tokens == 2 * chip.tokens
    assert r.tokens_per_s == pytest.approx(2 * chip.tokens_per_s, rel=1e-9)
    assert r.energy_j == pytest.approx(2 * chip.energy_j, rel=1e-9)
    # the preset's host power: 2 of the node's 8 GPUs draw 2/8 of it over the period
    h = accelsim.simulate(node, g, a, plan="dp=2")
    assert node.host_power_w == 4600.0
    assert h.energy_j == pytest.approx(2 * chip.energy_j + 4600.0 * 2 / 8 * chip.latency_s,
                                       rel=1e-9)


_CACHE: dict = {}


def _sys(m, g, a, plan, system):
    return simulate_system(system, g, a, plan, cache=_CACHE)


@pytest.mark.parametrize("plan", ["ep=8", "tp=2,ep=8", "pp=2,tp=2,ep=2", "pp=4,tp=2",
                                  "tp=2,ep=8,tbo=1"])
def test_never_faster_than_a_device_roofline(mixtral, plan):
    m, g, a = mixtral
    hw = load_system("h100-8").hw
    r = _sys(m, g, a, plan, load_system("h100-8"))
    peak = max(hw.peak_macs_per_s(b) for b in range(1, 17))
    bw = hw.offchip_bandwidth_bytes_per_s
    busy = r.pipeline["microbatches"] * max(x["latency_s"] for x in r.per_device)
    assert r.pipeline["period_s"] >= busy * (1 - 1e-12)
    for _, part in r.parts:
        # each device's own roofline: its MACs at the peak rate, its off-chip bytes at the
        # off-chip bandwidth
        assert part.latency_s >= part.macs / peak * (1 - 1e-9)
        assert part.latency_s >= part.offchip_bytes / bw * (1 - 1e-9)
    # the whole system: a period's MACs over every device at the peak rate
    assert r.pipeline["period_s"] >= r.macs / (r.devices * peak) * (1 - 1e-9)


@settings(max_examples=6, deadline=None)
@given(st.floats(1.0, 100.0), st.floats(0.0, 1.0), st.sampled_from(["ep=8", "tp=4,ep=8",
                                                                      "pp=2,tp=2,ep=4",
                                                                      "tp=2,ep=8,tbo=1"]))
def test_more_bandwidth_or_less_latency_is_never_slower(mixtral, bw_x, lat_x, plan):
    m, g, a = mixtral
    s = load_system("h100-8")
    link = s.links.intra_node
    better = s.with_links(intra_node=Link.make(link.bandwidth_bytes_per_s * bw_x,
                                               link.latency_s * lat_x,
                                               link.energy_per_byte_j, link.topology))
    assert (_sys(m, g, a, plan, better).latency_s
            <= _sys(m, g, a, plan, s).latency_s * (1 + 1e-12))


def test_deterministic_and_placement_within_memory(mixtral):
    m, g, a = mixtral
    r1 = accelsim.simulate("h100-8", g, a, plan="tp=2,ep=8").to_dict()
    r2 = accelsim.simulate("h100-8", g, a, plan="tp=2,ep=8").to_dict()
    assert r1 == r2
    cap = weight_capacity_bytes(load_system("h100-8").hw)
    assert all(d["expert_bytes"] <= cap for d in r1["per_device"])
    assert sum(d["experts"] for d in r1["per_device"]) == 8 * 32   # every expert once


def test_equivalent_parts_simulate_alike(mixtral):
    # the system layer simulates one part per class of parts whose layers hold experts with
    # the same bits, tokens and share (only names differ): check that assumption
    m, g, a = mixtral
    R, E = m.num_moe_layers, m.moe.num_experts
    s1, s2 = np.zeros((R, E)), np.zeros((R, E))
    s1[:, :2] = 1.0
    s2[:, 5:7] = 1.0
    parts = [DevicePart((4, 8), 2, s1), DevicePart((4, 8), 2, s2), DevicePart((12, 16), 2, s1)]
    r = simulate_parts("h100", g, a, parts)
    assert r[0].latency_s == pytest.approx(r[1].latency_s, rel=1e-9)
    assert r[0].latency_s == pytest.approx(r[2].latency_s, rel=1e-9)
    assert r[0].energy_j == pytest.approx(r[2].energy_j, rel=1e-9)


def test_bits_for_a_latency_target_on_n_devices():
    import yaml

    from _toys import TINY_HW, TOY_WL
    from accelsim.alloc.budget import bits_for_latency
    from accelsim.errors import InfeasibleError
    from accelsim.hw import hw_from_dict
    from accelsim.system import System
    from accelsim.system.search import search_plans
    from accelsim.system.spec import Links
    from accelsim.workload.model import MoEModel
    m = MoEModel.model_validate(yaml.safe_load(TOY_WL))
    s = System(name="tiny2", hw=hw_from_dict(yaml.safe_load(TINY_HW)), devices_per_node=2,
               links=Links(intra_node=Link.make(1e9, 1e-6)))
    sc = accelsim.Scenario(batch=4)
    g = accelsim.build_graph(m, sc)
    lat = {b: search_plans(s, g, accelsim.BitAllocation.uniform(m, b), devices=2)["best"][
        "latency_s"] for b in (8, 4)}
    assert lat[4] < lat[8]          # decode on the tiny chip reads its weights from DRAM
    alloc, row = bits_for_latency(s, m, sc, (lat[4] + lat[8]) / 2, devices=2, levels=(8, 4))
    assert int(alloc.expert_bits.max()) == 4 and row["latency_s"] == pytest.approx(lat[4])
    alloc, row = bits_for_latency(s, m, sc, lat[8] * 1.001, devices=2, levels=(8, 4))
    assert int(alloc.expert_bits.max()) == 8
    with pytest.raises(InfeasibleError):
        bits_for_latency(s, m, sc, lat[4] / 2, devices=2, levels=(8, 4))


@pytest.fixture(scope="module")
def llama():
    m = accelsim.load_workload("llama-2-7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=4, context=128))
    return m, g, accelsim.BitAllocation.uniform(m, 8)


def test_dense_model_on_one_device_is_exactly_the_chip(llama):
    m, g, a = llama
    chip = accelsim.sim.simulate("h100", g, a).to_dict()
    from dataclasses import replace
    node = replace(load_system("h100-8").first(1), host_power_w=0.0)   # no host power
    d = accelsim.simulate(node, g, a).to_dict()
    assert {k: v for k, v in d.items() if k not in SYSTEM_KEYS} == chip


@pytest.mark.parametrize("plan, devices", [("tp=2", 2), ("pp=2", 2), ("pp=2,tp=4", 8),
                                           ("pp=4,dp=2", 8)])
def test_dense_model_runs_every_plan_without_experts(llama, plan, devices):
    m, g, a = llama
    r = accelsim.simulate(load_system("h100-8"), g, a, plan=plan)
    assert r.devices == devices
    assert np.isfinite(r.latency_s) and r.latency_s > 0
    assert all(d["expert_bytes"] == 0 for d in r.per_device)


def test_dense_model_default_plan_is_pipeline_stages(llama):
    from accelsim.system.simulate import default_plan
    m, _, _ = llama
    p = default_plan(load_system("h100-8"), m)
    assert (p.pp, p.tp, p.experts) == (8, 1, 1)


def test_dense_model_refuses_expert_parallelism(llama):
    m, g, a = llama
    with pytest.raises(accelsim.ConfigError, match="dense model has no routed experts"):
        accelsim.simulate(load_system("h100-8"), g, a, plan="ep=2")


def test_vocabulary_parallel_embedding_lets_mixtral_fit_northpole_cards():
    # Mixtral's 16-bit embedding table (32000 x 4096 x 2 B = 262 MB) is larger than a
    # NorthPole card's weight memory; split 8 ways by vocabulary it is 32.8 MB a card
    m = accelsim.load_workload("mixtral-8x7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=1, context=128))
    a = accelsim.BitAllocation.uniform(m, 3)
    system = load_system("northpole-rack")
    cap = weight_capacity_bytes(system.hw)
    assert 32000 * 4096 * 2 > cap
    r = accelsim.simulate(system, g, a, plan="pp=32,tp=8,ep=8")
    assert r.devices == 256
    assert all(d["memory_bytes"] <= cap for d in r.per_device)


# ------------------------------------------------------------ attention groups (ep > tp)


def test_a_dense_part_with_a_batch_share_is_the_chip_at_that_batch():
    # batch_share n / B of a step of B sequences runs exactly the ops of a step of n
    m = accelsim.load_workload("llama-2-7b")
    a = accelsim.BitAllocation.uniform(m, 8)
    for kw in (dict(phase="decode", context=128), dict(phase="prefill", seq_len=32)):
        g8 = accelsim.build_graph(m, accelsim.Scenario(batch=8, **kw))
        g3 = accelsim.build_graph(m, accelsim.Scenario(batch=3, **kw))
        part, whole = simulate_parts("h100", g8, a, [DevicePart((0, 32), 2, batch_share=3 / 8)]
                                     )[0], simulate_parts("h100", g3, a, [DevicePart((0, 32), 2)])[0]
        assert part.latency_s == whole.latency_s and part.energy_j == whole.energy_j
        assert part.kv_bytes_by_level == whole.kv_bytes_by_level


def test_batch_share_is_checked():
    m = accelsim.load_workload("llama-2-7b")
    g = accelsim.build_graph(m, accelsim.Scenario(batch=2))
    with pytest.raises(accelsim.ConfigError, match=r"parts\[0\].batch_share: must be a number"):
        simulate_parts("h100", g, None, [DevicePart((0, 2), batch_share=1.5)])


@pytest.fixture(scope="module")
def mixtral_prefill():
    m = accelsim.load_workload("mixtral-8x7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="prefill", batch=8, seq_len=64))
    return m, g, accelsim.BitAllocation.uniform(m, 4)


def test_expert_parallel_attention_does_no_redundant_work(mixtral_prefill):
    # ep=8 > tp: 8 / tp attention groups of 8 / (8 / tp) sequences each; every MAC of the
    # step is done once over the 8 devices (attention by sequences and heads, experts by
    # their tokens) but the router's, which each of a group's tp devices repeats:
    # 512 tokens x 4096 x 8 experts x 32 layers per copy
    m, g, a = mixtral_prefill
    chip = accelsim.sim.simulate("h100", g, a)
    router = 512 * 4096 * 8 * 32
    for tp in (1, 2, 4):
        r = _sys(m, g, a, f"tp={tp},ep=8", load_system("h100-8"))
        assert r.macs == pytest.approx(chip.macs + (tp - 1) * router, rel=1e-12)


def test_expert_parallel_attention_kv_cache_per_device(mixtral_prefill):
    # each device of ep=8, tp=1 holds the KV cache of its one sequence of 64 tokens:
    # 32 layers x (K and V) x 8 KV heads x 128 x 2 bytes x 64 tokens
    m, g, a = mixtral_prefill
    r = _sys(m, g, a, "ep=8", load_system("h100-8"))
    kv = 32 * 2 * 8 * 128 * 2 * 64
    assert [sum(p.kv_bytes_by_level.values()) for _, p in r.parts] == [kv] * 8
    # tp=2, ep=8: 4 groups of 2 sequences, KV heads split 2 ways
    r2 = _sys(m, g, a, "tp=2,ep=8", load_system("h100-8"))
    assert [sum(p.kv_bytes_by_level.values()) for _, p in r2.parts] == [kv] * 8
    # ep <= tp: one group, every device the whole batch's KV cache over its 8 / tp heads
    r8 = _sys(m, g, a, "tp=8,ep=8", load_system("h100-8"))
    assert [sum(p.kv_bytes_by_level.values()) for _, p in r8.parts] == [kv] * 8
    r4 = _sys(m, g, a, "tp=4,ep=4", load_system("h100-8").first(4))
    assert [sum(p.kv_bytes_by_level.values()) for _, p in r4.parts] == [2 * kv] * 4


# ------------------------------------------------------------ two-batch overlap (tbo=1)


@settings(max_examples=4, deadline=None)
@given(st.sampled_from(["ep=8", "tp=2,ep=8", "tp=4", "ep=4"]), st.sampled_from([1.0, 0.01]),
       st.sampled_from(["decode", "prefill"]))
def test_overlap_is_never_slower_nor_faster_than_its_parts(mixtral, plan, bw_x, phase):
    m, _, a = mixtral
    g = accelsim.build_graph(m, accelsim.Scenario(phase=phase, batch=8, seq_len=64,
                                                  context=0 if phase == "prefill" else 256))
    s = load_system("h100-8")
    link = s.links.intra_node
    s = s.with_links(intra_node=Link.make(link.bandwidth_bytes_per_s * bw_x, link.latency_s,
                                          link.energy_per_byte_j, link.topology))
    plain = _sys(m, g, a, plan, s)
    ov = _sys(m, g, a, plan + ",tbo=1", s)
    comp = plain.pipeline["compute_s"][0]
    comm = plain.pipeline["stage_s"][0] - comp
    assert ov.latency_s <= plain.latency_s * (1 + 1e-12)
    assert ov.latency_s >= max(comp, comm) * (1 - 1e-12)
    # the energy breakdown still adds up to the energy
    assert sum(ov.energy_breakdown_j.values()) == pytest.approx(ov.energy_j, rel=1e-9)


def test_overlap_pays_when_links_are_slow(mixtral):
    # links 100 times slower: the expert all-to-all is most of the step, and the two halves
    # hide a part of it (the halves' computation is at least the whole's)
    m, _, a = mixtral
    g = accelsim.build_graph(m, accelsim.Scenario(phase="prefill", batch=8, seq_len=64))
    s = load_system("h100-8")
    link = s.links.intra_node
    s = s.with_links(intra_node=Link.make(link.bandwidth_bytes_per_s / 100, link.latency_s,
                                          link.energy_per_byte_j, link.topology))
    plain, ov = _sys(m, g, a, "ep=8", s), _sys(m, g, a, "ep=8,tbo=1", s)
    assert ov.pipeline["overlap"] == [True] and ov.latency_s < plain.latency_s
    assert ov.latency_s >= plain.pipeline["stage_s"][0] - plain.pipeline["compute_s"][0]


def test_kv_cache_that_cannot_fit_is_refused_before_simulating():
    from accelsim.errors import DoesNotFitError, InfeasibleError
    from accelsim.system.search import search_plans
    from accelsim.system.simulate import kv_bytes_per_layer
    m = accelsim.load_workload("mixtral-8x7b")
    a = accelsim.BitAllocation.uniform(m, 4)
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=64, context=32768))
    # a layer's cache after the step: 64 sequences x 32,769 tokens x (K and V) x 8 KV heads
    # x 128 x 2 bytes (16-bit KV cache) = 8.59 GB; 275 GB over the 32 layers
    kv = kv_bytes_per_layer(g, m, a)
    assert kv.tolist() == [64 * 32769 * 2 * 8 * 128 * 2] * 32
    s = load_system("h100-8")
    # ep=2: two attention groups of 32 sequences, 137 GB of cache each: over an 80 GB H100
    with pytest.raises(DoesNotFitError, match="KV cache of 0.5 of the micro-batch"):
        accelsim.simulate(s, g, a, plan="ep=2")
    # on 2 devices no plan holds it (tp=2 halves the heads: 137 GB; pp=2 halves the layers)
    with pytest.raises(InfeasibleError, match="no plan of mixtral-8x7b fits 2 devices"):
        search_plans(s, g, a, devices=2)
    assert _sys(m, g, a, "ep=8", s).devices == 8        # 8 sequences a device: 34 GB
