"""``simulate_parts``: one device's share of a step (DevicePart contract, docs/simulator.md).

Expected values come from the model's tensor list (``BitAllocation.tensor_bytes``), the graph's
node attributes (``m x k x n`` MACs) and the hardware spec (rooflines), never from the part
code.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sim_invariants import cases

import accelsim
from accelsim.errors import ConfigError, DoesNotFitError
from accelsim.hw import hw_from_dict
from accelsim.sim import DevicePart, simulate, simulate_parts
from accelsim.workload import Zipf, build_graph

TP_ROLES = ("attention", "dense_ffn", "shared", "lm_head")


@pytest.fixture(scope="module")
def mixtral():
    m = accelsim.load_workload("mixtral-8x7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=16, context=256,
                                                  routing=Zipf(1.2), seed=2))
    rng = np.random.default_rng(3)
    a = accelsim.BitAllocation.uniform(m, 4).with_expert_bits(
        rng.choice([2, 3, 4], size=(m.num_moe_layers, m.moe.num_experts)))
    return m, g, a


@pytest.fixture(scope="module")
def dsl():
    """DeepSeek-V2-Lite: MLA, a dense first layer, shared experts."""
    m = accelsim.load_workload("deepseek-v2-lite")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=4, context=128))
    return m, g, accelsim.BitAllocation.uniform(m, 4)


def _bytes(m, a, keep, div=lambda t: 1.0):
    return sum(a.tensor_bytes(m, t) / div(t) for t in m.tensors() if keep(t))


def _layer_nodes(g, lo, hi):
    return [n for n, d in g.nodes(data=True) if d.get("layer") is not None
            and lo <= d["layer"] < hi]


def test_full_part_is_simulate(mixtral, dsl):
    for m, g, a in (mixtral, dsl):
        r = simulate("h100", g, a)
        share = np.ones((m.num_moe_layers, m.moe.num_experts))
        for p in (DevicePart((0, m.total_layers)),
                  DevicePart((0, m.total_layers), 1, share, True, True)):
            (q,) = simulate_parts("h100", g, a, [p])
            for k in ("latency_s", "cycles", "energy_j", "weight_bytes", "offchip_bytes",
                      "macs", "bytes_by_level", "energy_breakdown_j", "busy_cycles",
                      "weight_bytes_by_level", "bound", "noc_cycles", "stall_cycles"):
                assert getattr(q, k) == getattr(r, k), k
            assert np.array_equal(q.ops["cycles"], r.ops["cycles"])
            assert list(q.ops["weight"]) == list(r.ops["weight"])


def test_half_the_layers(mixtral):
    m, g, a = mixtral
    whole = simulate("h100", g, a)
    (p,) = simulate_parts("h100", g, a, [DevicePart((8, 24))])
    layer_ops = whole.ops["layer"].notna()
    assert int(p.ops["layer"].notna().sum()) * 2 == int(layer_ops.sum())
    assert len(p.ops) == len(_layer_nodes(g, 8, 24))       # no embed, no lm_head
    assert p.weight_bytes == _bytes(m, a, lambda t: t.layer is not None and 8 <= t.layer < 24)
    # defaults: embed with layer 0, lm_head with the last layer
    first, last = simulate_parts("h100", g, a, [DevicePart((0, 16)), DevicePart((16, 32))])
    assert "embed" in set(first.ops["op"]) and "lm_head" not in set(first.ops["op"])
    assert "lm_head" in set(last.ops["op"]) and "embed" not in set(last.ops["op"])
    assert first.weight_bytes + last.weight_bytes == pytest.approx(whole.weight_bytes,
                                                                  rel=1e-12)


def test_layer_latency(mixtral):
    m, g, a = mixtral
    r = simulate("h100", g, a)
    assert r.layer_latency_s.shape == (m.total_layers + 2,)
    assert r.layer_latency_s.sum() == pytest.approx(r.latency_s, rel=1e-12)
    (p,) = simulate_parts("h100", g, a, [DevicePart((8, 24))])
    L = p.layer_latency_s
    assert L.shape == (m.total_layers + 2,)
    assert L.sum() == pytest.approx(p.latency_s, rel=1e-12)
    assert (L[9:25] > 0).all() and not L[:9].any() and not L[25:].any()


def test_tp_halves_split_work_and_bytes(mixtral, dsl):
    for m, g, a in (mixtral, dsl):
        full = DevicePart((0, m.total_layers))
        r1, r2 = simulate_parts("h100", g, a, [full, DevicePart((0, m.total_layers), tp=2)])
        nodes = g.nodes
        ops1, ops2 = r1.ops.set_index("name"), r2.ops.set_index("name")
        split = [n for n, d in nodes(data=True) if d["op"] in ("gemm", "lm_head")
                 and d.get("role") in TP_ROLES and not n.endswith((".q_a", ".kv_a"))]
        assert split
        for n in split:
            d = nodes[n]
            assert ops2.loc[n, "macs"] == d["m"] * d["k"] * d["n"] / 2, n
        for n in (n for n, d in nodes(data=True) if d["op"] == "attention"):
            assert ops2.loc[n, "macs"] == pytest.approx(nodes[n]["macs"] / 2, rel=1e-12)
        for n in (n for n, d in nodes(data=True) if d.get("role") in ("expert", "router")):
            assert ops2.loc[n, "macs"] == ops1.loc[n, "macs"]
        # kv heads: Mixtral has 8, so tp=2 splits k/v like the other heads; the embedding
        # table is split by vocabulary
        expect = _bytes(m, a, lambda t: True, lambda t: 2.0 if t.role in TP_ROLES + (
            "embed",) and len(t.shape) == 2 and t.matrix not in ("q_a", "kv_a") else 1.0)
        assert r2.weight_bytes == pytest.approx(expect, rel=1e-12)
        assert r2.weight_bytes < r1.weight_bytes


def test_zero_shares_remove_experts(mixtral):
    m, g, a = mixtral
    share = np.ones((m.num_moe_layers, m.moe.num_experts))
    share[:, :3] = 0.0
    (p,) = simulate_parts("h100", g, a, [DevicePart((0, 32), expert_share=share)])
    assert not p.ops["expert"].dropna().isin([0, 1, 2]).any()
    assert not any(".E0." in n or ".E2." in n for n in p.ops["name"])
    gone = _bytes(m, a, lambda t: t.role == "expert" and t.expert < 3)
    assert p.weight_bytes == pytest.approx(a.weight_bytes(m) - gone, rel=1e-12)


def test_shares_summing_to_one_keep_expert_macs(mixtral):
    m, g, a = mixtral
    rng = np.random.default_rng(0)
    s = rng.uniform(0.05, 0.95, size=(m.num_moe_layers, m.moe.num_experts))
    s[:, 0] = 1.0          # expert 0 only on the first device
    p, q = simulate_parts("h100", g, a, [DevicePart((0, 32), expert_share=s),
                                         DevicePart((0, 32), expert_share=1.0 - s)])
    total = sum(d["m"] * d["k"] * d["n"] for _, d in g.nodes(data=True)
                if d.get("role") == "expert")
    got = sum(float(r.ops.loc[r.ops["role"] == "expert", "macs"].sum()) for r in (p, q))
    assert got == pytest.approx(total, rel=1e-12)
    assert not (q.ops["expert"] == 0).any()


def test_expert_split_weight_bytes(mixtral):
    m, g, a = mixtral
    E = m.moe.num_experts
    s = np.zeros((m.num_moe_layers, E))
    s[:, : E // 2] = 1.0
    lo, hi = 4, 6
    p, q = simulate_parts("h100", g, a, [DevicePart((lo, hi), expert_share=s),
                                         DevicePart((lo, hi), expert_share=1.0 - s)])

    def in_layers(t):
        return t.layer is not None and lo <= t.layer < hi

    whole = _bytes(m, a, in_layers)
    replicated = _bytes(m, a, lambda t: in_layers(t) and t.role != "expert")
    assert p.weight_bytes + q.weight_bytes == pytest.approx(whole + replicated, rel=1e-12)


def test_identical_parts_once_and_bad_parts(mixtral):
    _, g, a = mixtral
    rs = simulate_parts("h100", g, a, [DevicePart((0, 4)), DevicePart((4, 8)),
                                       DevicePart((0, 4))])
    assert rs[0] is rs[2] and rs[0] is not rs[1]
    with pytest.raises(ConfigError, match="tp"):
        simulate_parts("h100", g, a, [DevicePart((0, 4), tp=3)])
    with pytest.raises(ConfigError, match="layers"):
        simulate_parts("h100", g, a, [DevicePart((0, 33))])
    with pytest.raises(ConfigError, match="holds no layer"):
        simulate_parts("h100", g, a, [DevicePart((5, 5))])
    (lm,) = simulate_parts("h100", g, a, [DevicePart((32, 32))])     # lm_head only
    assert set(lm.ops["op"]) == {"norm", "lm_head"} and lm.latency_s > 0
    with pytest.raises(ConfigError, match="expert_share"):
        simulate_parts("h100", g, a, [DevicePart((0, 4), expert_share=np.ones((2, 8)))])


def test_part_that_does_not_fit():
    m = accelsim.load_workload("mixtral-8x7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=1, context=64))
    a = accelsim.BitAllocation.uniform(m, 4)
    s = np.zeros((m.num_moe_layers, m.moe.num_experts))
    s[0, 0] = 1.0
    # NorthPole: 224 MiB on chip, no off-chip memory. One expert (3 x 14336 x 4096 at
    # ~4.1 bits ~ 91 MB) and layer 0's attention fit; all eight experts (~0.7 GB) do not.
    (r,) = simulate_parts("northpole", g, a, [DevicePart((0, 1), expert_share=s,
                                                         embed=False)])
    assert r.weight_bytes < 224 * 2**20
    with pytest.raises(DoesNotFitError):
        simulate_parts("northpole", g, a, [DevicePart((0, 1), embed=False)])


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.data())
def test_part_never_faster_than_its_roofline(case, data):
    hw_d, model, scen, alloc, residency = case
    hw = hw_from_dict(hw_d)
    g = build_graph(model, scen)
    n = model.total_layers
    lo = data.draw(st.integers(0, n - 1))
    hi = data.draw(st.integers(lo + 1, n))
    share = np.array(data.draw(st.lists(
        st.sampled_from([0.0, 0.25, 1.0]), min_size=alloc.expert_bits.size,
        max_size=alloc.expert_bits.size))).reshape(alloc.expert_bits.shape)
    tp = data.draw(st.sampled_from([t for t in (1, 2) if model.attention.num_heads % t == 0]))
    (r,) = simulate_parts(hw, g, alloc, [DevicePart((lo, hi), tp, share)],
                          residency=residency)
    a_bits = hw.cores.mac_array.default_activation_bits
    tensors = {t.name: t for t in model.tensors()}
    row = {L: i for i, L in enumerate(model.moe_layers)}
    kv_split = min(tp, model.num_kv_heads)
    compute_s = 0.0
    for name, d in g.nodes(data=True):
        L = d.get("layer")
        if L is not None:
            held = lo <= L < hi
        else:                       # embed with layer 0, final norm and lm_head with the last
            held = lo == 0 if d["op"] == "embed" else hi == n
        if d["macs"] <= 0 or not held:
            continue
        f = 1.0
        if d.get("role") == "expert":
            f = share[row[L], d["expert"]]
        elif d["op"] == "attention" or (d.get("role") in TP_ROLES and not name.endswith(
                (".k", ".v"))):
            f = 1.0 / tp
        elif d.get("role") == "attention":
            f = 1.0 / kv_split
        w = alloc.kv_bits if d["op"] == "attention" else alloc.bits_for(
            model, tensors[d["weight"]])
        compute_s += d["macs"] * f / hw.peak_macs_per_s(w, a_bits)
    assert r.latency_s >= compute_s * (1 - 1e-9)
    off = hw.offchip
    assert r.latency_s >= r.offchip_bytes / max(off.read_bandwidth_bytes_per_s, off.write_bw) * (
        1 - 1e-9)
    assert r.layer_latency_s.sum() == pytest.approx(r.latency_s, rel=1e-9)


def test_batched_parts_and_relabelled_parts():
    """Several distinct parts run as one batch: the whole part among them is still
    ``simulate`` (its phase times and cycles exactly; its sums over ops -- bytes, energy, NoC
    and busy cycles -- within 1e-12, being added per shared phase in another order);
    parts that differ only in which experts they hold (uniform bits, uniform routing) give
    equal numbers and each its own op names."""
    m = accelsim.load_workload("mixtral-8x7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=8, context=64))
    a = accelsim.BitAllocation.uniform(m, 4)
    E = m.moe.num_experts
    lo, hi = np.zeros((m.num_moe_layers, E)), np.zeros((m.num_moe_layers, E))
    lo[:, : E // 2], hi[:, E // 2:] = 1.0, 1.0
    parts = [DevicePart((0, 8)), DevicePart((0, 32)), DevicePart((8, 32), tp=2),
             DevicePart((0, 32), expert_share=lo), DevicePart((0, 32), expert_share=hi)]
    r = simulate("spyre", g, a)
    out = simulate_parts("spyre", g, a, parts)
    whole = out[1]
    for k in ("latency_s", "cycles", "weight_bytes"):
        assert getattr(whole, k) == getattr(r, k), k
    assert np.array_equal(whole.phase_data["T"], r.phase_data["T"])
    for k in ("energy_j", "noc_cycles"):
        assert getattr(whole, k) == pytest.approx(getattr(r, k), rel=1e-12, abs=0.0), k
    for k in ("bytes_by_level", "energy_breakdown_j", "busy_cycles"):
        got, want = getattr(whole, k), getattr(r, k)
        assert got.keys() == want.keys() and all(
            got[x] == pytest.approx(want[x], rel=1e-12, abs=0.0) for x in want), k
    assert whole.bound == r.bound and whole.warnings == r.warnings
    assert np.array_equal(whole.ops["start_cycle"], r.ops["start_cycle"])
    p, q = out[3], out[4]
    assert p.latency_s == q.latency_s and p.energy_j == q.energy_j
    assert set(p.ops["expert"].dropna()) == set(range(E // 2))
    assert set(q.ops["expert"].dropna()) == set(range(E // 2, E))
    assert all(".E0." not in w for w in q.ops["weight"].dropna())
    assert p.weight_bytes + q.weight_bytes == pytest.approx(
        r.weight_bytes + _bytes(m, a, lambda t: t.role != "expert"), rel=1e-12)


def test_tied_lm_head_holds_the_table():
    """Switch ties lm_head to the embedding table: the last stage holds the table too."""
    m = accelsim.load_workload("switch-base-64")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=4, context=32))
    a = accelsim.BitAllocation.uniform(m, 8)
    n = m.total_layers
    (p,) = simulate_parts("h100", g, a, [DevicePart((n - 2, n))])
    assert list(p.ops.loc[p.ops["op"] == "lm_head", "weight"]) == ["embed"]
    assert p.weight_bytes == pytest.approx(_bytes(
        m, a, lambda t: t.layer is None or n - 2 <= t.layer < n), rel=1e-12)


def test_expert_tp_splits_routed_experts_only(mixtral):
    m, g, a = mixtral
    r1, r2 = simulate_parts("h100", g, a, [DevicePart((0, 32)),
                                           DevicePart((0, 32), expert_tp=2)])
    o1, o2 = r1.ops.set_index("name"), r2.ops.set_index("name")
    for n, d in g.nodes(data=True):
        if d.get("role") == "expert" and d["op"] == "gemm":
            assert o2.loc[n, "macs"] == d["m"] * d["k"] * d["n"] / 2, n
        elif d["op"] in ("gemm", "lm_head", "router"):
            assert o2.loc[n, "macs"] == o1.loc[n, "macs"], n
    # half of every routed expert's bytes, from the allocation's own byte count
    experts = sum(a.tensor_bytes(m, t) for t in m.tensors() if t.role == "expert")
    assert r1.weight_bytes - r2.weight_bytes == pytest.approx(experts / 2, rel=1e-12)
