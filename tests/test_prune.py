"""Pruned experts (0 bits) end to end: the paper's rule with a 0 level (by hand and against a
brute-force enumeration), storage, renormalised routing, the graph and the simulator, the
quantized forward, the theory bounds and the exports."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import yaml

from _toys import TINY_HW, TOY_WL
from accelsim.alloc.exports import gptqmodel_config, hqq_config, llama_cpp_overrides
from accelsim.alloc.methods import AllocRequest, allocate, pmq_layers
from accelsim.alloc.paper import assign_bits, check_levels, three_level_counts
from accelsim.alloc.signals import ExpertSignals
from accelsim.errors import ConfigError
from accelsim.hw import hw_from_dict
from accelsim.precision import BitAllocation, WeightFormat
from accelsim.workload import (Scenario, Trace, Zipf, build_graph, load_workload,
                               workload_from_dict)

IDENTITY8 = [list(range(8))]


@pytest.fixture(scope="module")
def toy():
    return workload_from_dict(yaml.safe_load(TOY_WL))


@pytest.fixture(scope="module")
def tiny():
    return hw_from_dict(yaml.safe_load(TINY_HW))


@pytest.fixture(scope="module")
def mixtral():
    return load_workload("mixtral-8x7b")


# ------------------------------------------------------------------ the paper's rule
# E = 8, levels 4/2/0, (n_low, n_mid, n_high), worked by hand with the rule of
# docs/allocation.md: base split, region (D = 4: high above 8/3, mid from 4/3), moves.
@pytest.mark.parametrize("avg, counts", [
    (1.0, (4, 4, 0)),    # base n_mid = round(0.5 * 8) = 4; region low: no move
    (1.5, (4, 2, 2)),    # base (2, 6, 0); region mid: (3,4,1), (4,2,2); (5,0,3) has 0 < 3
    (2.0, (2, 4, 2)),    # base (0, 8, 0); mid: (1,6,1), (2,4,2); (3,2,3) has 2 < 3
    (2.25, (2, 3, 3)),   # base (0, 7, 1); mid: (1,5,2), (2,3,3); (3,1,4) has 1 < 3
    (2.5, (2, 2, 4)),    # base (0, 6, 2); mid: (1,4,3), (2,2,4); (3,0,5) has 0 < 3
    (3.0, (2, 0, 6)),    # base (0, 4, 4); region high: moves while n_mid >= 2
    (3.5, (1, 0, 7)),    # base (0, 2, 6) -> (1, 0, 7)
    (4.0, (0, 0, 8)),
])
def test_zero_level_worked_example(avg, counts):
    assert three_level_counts(8, avg, (4, 2, 0)) == counts
    bits = assign_bits(IDENTITY8, avg, (0, 4, 2))[0]
    n_low, n_mid, n_high = counts
    assert bits.tolist() == [4] * n_high + [2] * n_mid + [0] * n_low


def test_zero_level_is_the_reference_rule_scaled():
    # the rule only uses ratios of level differences: 4/2/0 at avg a is 3/2/1 at a/2 + 1
    for E in range(1, 9):
        for a in np.arange(0, 4.01, 0.125):
            assert three_level_counts(E, a, (4, 2, 0)) == three_level_counts(E, a / 2 + 1,
                                                                             (3, 2, 1))


def _two_level_brute(E, avg, high, low):
    """n_high whose split is nearest the target average; ties to the even count (Python's
    round); averages outside [low, high] clip."""
    best = None
    target = (Fraction(avg) - low) / (high - low) * E
    target = min(max(target, Fraction(0)), Fraction(E))
    for n in range(E + 1):
        key = (abs(n - target), n % 2)
        if best is None or key < best[0]:
            best = (key, n)
    return best[1]


def _three_level_brute(E, avg, high, mid, low):
    """Enumerate every (n_low, n_mid, n_high) with the two-level base split's bits and pick
    the one the region allows (docs/allocation.md)."""
    if avg >= mid:
        base = (0, E - _two_level_brute(E, avg, high, mid), _two_level_brute(E, avg, high, mid))
    else:
        nm = _two_level_brute(E, avg, mid, low)
        base = (E - nm, nm, 0)
    D = high - low
    region = "high" if avg > high - D / 3 else "mid" if avg >= high - 2 * D / 3 else "low"
    best = base
    for nl in range(E + 1):
        for nh in range(E + 1 - nl):
            nm = E - nl - nh
            t = nh - base[2]
            if t < 1 or nl - base[0] != t or base[1] - nm != 2 * t:
                continue
            if region == "low" or (region == "mid" and any(
                    base[1] - 2 * s < s for s in range(1, t + 1))):
                continue
            if t > best[2] - base[2]:
                best = (nl, nm, nh)
    return best


@pytest.mark.parametrize("levels", [(2, 0), (4, 2, 0), (2, 1, 0), (8, 4, 0)])
def test_zero_levels_match_brute_force(levels):
    for E in range(1, 9):
        order = [list(range(E))]
        for avg in np.arange(0.125, levels[0] + 0.01, 0.125):
            bits = assign_bits(order, float(avg), levels)[0]
            if len(levels) == 2:
                n_high = _two_level_brute(E, float(avg), *levels)
                assert bits.tolist() == [levels[0]] * n_high + [0] * (E - n_high)
            else:
                nl, nm, nh = _three_level_brute(E, float(avg), *levels)
                assert bits.tolist() == ([levels[0]] * nh + [levels[1]] * nm
                                         + [levels[2]] * nl), (E, avg)


def test_zero_level_checks():
    assert check_levels([0, 2]) == (2, 0)
    for bad in ([0], [4, 3, 0], [-1, 2]):
        with pytest.raises(ConfigError):
            check_levels(bad)


# ------------------------------------------------------------------ BitAllocation
def _expert_bytes(model, bits):
    shapes = [model.tensor(f"L{model.moe_layers[0]}.E0.{m}").shape
              for m in model.expert_matrices]
    return sum(WeightFormat(bits).storage_bytes(*s) for s in shapes)


def test_pruned_experts_store_nothing(mixtral):
    bits = np.full((32, 8), 3)
    bits[0, [6, 7]] = 0
    bits[5, 1] = 0
    a = BitAllocation(mixtral.name, bits)
    full = BitAllocation(mixtral.name, np.full((32, 8), 3))
    assert a.num_pruned == 3
    assert a.weight_bytes(mixtral) == full.weight_bytes(mixtral) - 3 * _expert_bytes(mixtral, 3)
    assert a.tensor_bytes(mixtral, mixtral.tensor("L0.E6.w2")) == 0
    from accelsim.sim.lower import tensor_storage_bytes, tensor_table
    tt = tensor_table(mixtral)
    sb = tensor_storage_bytes(tt, a)
    assert sb[tt.index["L0.E7.w1"]] == 0
    assert int(sb.sum()) == a.weight_bytes(mixtral)


def test_only_routed_experts_may_be_pruned(mixtral):
    with pytest.raises(ConfigError, match="only routed experts"):
        BitAllocation(mixtral.name, np.full((32, 8), 3), defaults={"attention": 0})
    bits = np.full((32, 8), 3)
    bits[4, 1:] = 0
    with pytest.raises(ConfigError, match="at least 2 experts per layer must survive"):
        BitAllocation(mixtral.name, bits).check(mixtral)


def test_allocation_file_with_zero_bits(mixtral, tmp_path):
    bits = np.full((32, 8), 2)
    bits[:, 0] = 0
    p = tmp_path / "a.yaml"
    BitAllocation(mixtral.name, bits).save(p, mixtral)
    assert BitAllocation.load(p, mixtral).num_pruned == 32
    d = yaml.safe_load(p.read_text())
    d["defaults"]["router"] = 0
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="defaults.router"):
        BitAllocation.load(p, mixtral)


# ------------------------------------------------------------------ routing
def test_uniform_routing_renormalised_over_survivors(mixtral):
    mask = np.zeros((32, 8), bool)
    mask[:, [1, 4, 6]] = True
    load = Scenario(phase="decode", batch=10, pruned=mask).expert_load(mixtral)
    # 10 tokens x top-2 over 5 survivors: 4 tokens each; p_active = 1 - (1 - 2/5)^10
    assert np.allclose(load.tokens[:, ~mask[0]], 4.0)
    assert np.all(load.tokens[mask] == 0) and np.all(load.p_active[mask] == 0)
    assert np.allclose(load.p_active[:, 0], 1 - 0.6 ** 10)
    assert np.allclose(load.tokens.sum(axis=1), 20.0)


def test_zipf_routing_renormalised(mixtral):
    s = Scenario(phase="prefill", batch=1, seq_len=64, routing=Zipf(0.8), seed=3)
    p = s.expert_load(mixtral).probabilities
    mask = np.zeros((32, 8), bool)
    mask[:, 2] = True
    loaded = Scenario(phase="prefill", batch=1, seq_len=64, routing=Zipf(0.8), seed=3,
                      pruned=mask).expert_load(mixtral)
    want = np.where(mask, 0, p) / (1 - p[:, 2:3])
    assert np.allclose(loaded.probabilities, want)
    assert np.allclose(loaded.tokens.sum(axis=1), 64 * 2)


def test_trace_rerouted_to_next_surviving_expert(toy):
    # 2 MoE layers, 4 experts, top-2; layer 1 prunes expert 0
    ids = np.array([[[0, 1], [0, 1]], [[1, 2], [1, 2]], [[0, 3], [0, 3]], [[2, 3], [2, 3]],
                    [[1, 3], [1, 3]]])
    mask = np.zeros((2, 4), bool)
    mask[1, 0] = True
    new, moved = Trace(ids).rerouted(mask)
    assert moved == 2
    assert np.array_equal(new[:, 0], ids[:, 0])
    # popularity in layer 1: e1 3, e3 3, e0 2, e2 2 -> survivors ranked 1, 3, 2
    assert new[:, 1].tolist() == [[3, 1], [1, 2], [1, 3], [2, 3], [1, 3]]
    load = Scenario(phase="prefill", seq_len=5, routing=Trace(ids), pruned=mask
                    ).expert_load(toy)
    assert load.rerouted == 2
    assert np.allclose(load.tokens[1], [0, 4, 2, 4])     # counts of the re-routed trace
    assert np.allclose(load.tokens.sum(axis=1), 10)


def test_too_many_pruned_for_the_router(toy):
    mask = np.zeros((2, 4), bool)
    mask[0, :3] = True
    with pytest.raises(ConfigError, match="top_k=2"):
        Scenario(pruned=mask).expert_load(toy)


# ------------------------------------------------------------------ graph and simulator
def test_graph_never_holds_pruned_experts(toy):
    bits = np.full((2, 4), 4)
    bits[0, 3] = bits[1, 0] = 0
    a = BitAllocation(toy.name, bits)
    g = build_graph(toy, Scenario(phase="prefill", seq_len=12), alloc=a)
    experts = {(a_["layer"], a_["expert"]) for _, a_ in g.nodes(data=True)
               if a_["expert"] is not None}
    rows = {layer: r for r, layer in enumerate(toy.moe_layers)}
    assert experts and not any(bits[rows[l_], e] == 0 for l_, e in experts)
    for layer in toy.moe_layers:      # expected loads sum to tokens x top_k
        m = sum(a_["m"] for n, a_ in g.nodes(data=True)
                if a_["layer"] == layer and n.endswith(".w1") and a_["expert"] is not None)
        assert m == pytest.approx(12 * 2)


def test_simulate_applies_the_allocations_pruning(toy, tiny):
    from accelsim.sim import simulate
    bits = np.full((2, 4), 4)
    bits[:, 2] = 0
    a = BitAllocation(toy.name, bits, defaults={"attention": 8})
    sc = Scenario(phase="prefill", seq_len=16)
    plain = build_graph(toy, sc)
    r = simulate(tiny, plain, a)
    ref = simulate(tiny, build_graph(toy, sc, alloc=a), a)
    ran = r.ops[r.ops["expert"].notna()]
    assert set(ran["expert"].astype(int)) == {0, 1, 3}
    assert r.latency_s == ref.latency_s and r.weight_bytes == a.weight_bytes(toy)


# ------------------------------------------------------------------ quantized forward
def test_moe_forward_with_a_pruned_expert_is_the_layer_without_it():
    from accelsim.quant.experts import Expert, MoELayer, moe_forward, quantize_moe
    rng = np.random.default_rng(1)
    mk = lambda: Expert("swiglu", {"w1": rng.standard_normal((8, 6)),  # noqa: E731
                                   "w3": rng.standard_normal((8, 6)),
                                   "w2": rng.standard_normal((6, 8))})
    experts = tuple(mk() for _ in range(4))
    router = rng.standard_normal((4, 6))
    x = rng.standard_normal((32, 6))
    for normalize in (True, False):
        layer = MoELayer(router, experts, top_k=2, normalize_topk=normalize)
        q = quantize_moe(layer, [None, 0, None, None])
        without = MoELayer(router[[0, 2, 3]], experts[:1] + experts[2:], top_k=2,
                           normalize_topk=normalize)
        out, ref = moe_forward(q, x), moe_forward(without, x)
        assert np.allclose(out.y, ref.y, atol=1e-5)
        assert not (out.routing.indices == 1).any()
        assert np.allclose(out.routing.probs[:, 1], 0)
    with pytest.raises(ConfigError, match="top_k"):
        quantize_moe(MoELayer(router, experts, top_k=2), [0, 0, 0, 4])


# ------------------------------------------------------------------ theory
@pytest.mark.parametrize("gate", ["softmax_topk", "softmax"])
def test_certified_bound_holds_with_pruned_experts(mixtral, gate):
    from dataclasses import replace

    from accelsim.theory.stack import certify_stack, quantize_stack, synthetic_stack
    st = replace(synthetic_stack(mixtral, layers=2, scale=64, seed=2), gate=gate)
    bits = np.full((2, 8), 4)
    bits[:, [5, 6]] = 0
    h0 = np.random.default_rng(0).normal(size=(64, st.d))
    cert = certify_stack(quantize_stack(st, bits), h0)
    for lc in cert.layers:
        assert np.all(lc.bound >= lc.measured)
    # a token whose float top-2 holds a pruned expert changes its set: never certified
    x = h0 / np.sqrt(np.mean(h0 ** 2, axis=1) + 1e-5)[:, None]
    top = np.argsort(-(x @ st.layers[0].router.T), axis=1, kind="stable")[:, :2]
    touches = np.isin(top, [5, 6]).any(axis=1)
    assert touches.any()
    assert not cert.layers[0].certified[touches].any()
    assert not cert.layers[0].unchanged[touches].any()


# ------------------------------------------------------------------ methods, exports
def test_pmq_keeps_top_k_survivors_brute_force(mixtral):
    import itertools
    rng = np.random.default_rng(4)
    lv = (4, 2, 0)
    for _ in range(5):
        w = rng.random(5)
        eps = np.sort(rng.random((5, 3)), axis=1)      # fewer bits, more error
        budget = float(rng.integers(8, 15))   # >= 4 + 2 + 2
        best = None
        for combo in itertools.product(range(3), repeat=5):
            b = np.array([lv[c] for c in combo])
            if b.sum() > budget or (b > 0).sum() < 3 or 4 not in b or 2 not in b:
                continue
            v = sum(w[i] * eps[i, c] for i, c in enumerate(combo))
            best = v if best is None else min(best, v)
        got = pmq_layers(w[None], eps[None], lv, budget, min_alive=3)[0]
        assert (got > 0).sum() >= 3 and got.sum() <= budget
        val = sum(w[i] * eps[i, lv.index(int(b))] for i, b in enumerate(got))
        assert val == pytest.approx(best)


def test_methods_with_a_zero_level_keep_top_k(mixtral):
    rng = np.random.default_rng(0)
    s = ExpertSignals(router_norm=rng.random((32, 8)),
                      frequency=rng.dirichlet(np.ones(8), 32))
    for method in ("router-norm", "frequency", "random", "pmq"):
        a = allocate(method, AllocRequest(mixtral, s, avg_bits=1.0, levels=(4, 2, 0)))
        assert ((a.expert_bits > 0).sum(axis=1) >= 2).all(), method
        assert a.num_pruned > 0
    with pytest.raises(ConfigError, match="must survive"):
        allocate("router-norm", AllocRequest(mixtral, s, avg_bits=0.25, levels=(4, 2, 0)))


def test_exports_refuse_pruned_experts_in_one_line(mixtral):
    bits = np.full((32, 8), 4)
    bits[3, 5] = 0
    a = BitAllocation(mixtral.name, bits)
    for fn, tool in ((gptqmodel_config, "GPTQModel"), (llama_cpp_overrides, "llama.cpp"),
                     (hqq_config, "HQQ")):
        with pytest.raises(ConfigError, match="cannot drop an expert") as e:
            fn(a, mixtral)
        assert "L3.E5" in str(e.value) and "\n" not in str(e.value) and tool in str(e.value)


def test_allocate_cli_with_a_zero_level(run_cli, tmp_path, mixtral):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "s.npz", router_norm=rng.random((32, 8)))
    out = tmp_path / "a.yaml"
    rc, text, err = run_cli("allocate", "--workload", "mixtral-8x7b", "--method",
                            "router-norm", "--levels", "4,2,0", "--avg-bits", "2",
                            "--signals", tmp_path / "s.npz", "--out", out)
    assert rc == 0, err
    a = BitAllocation.load(out, mixtral)
    assert (a.histogram()[0] == [2] * 32) and a.average_expert_bits() == 2.0
    assert "pruned" in text
    rc, _, err = run_cli("allocate", "--workload", "mixtral-8x7b", "--method", "uniform",
                         "--levels", "0", "--avg-bits", "2")
    assert rc == 2 and "prune every expert" in err and err.count("\n") == 1


def test_experiment_pruning_variants_use_matched_levels():
    from accelsim.theory.experiment import ExpertSignals as Sig, allocate as exp_allocate
    rng = np.random.default_rng(0)
    sig = Sig(norm_change=np.arange(8.0), frequency=np.full(8, 1 / 8),
              max_variance=np.ones(8))
    bits = exp_allocate("router-norm+prune", sig, 2.0, rng)
    # levels 4/2/0 at avg 2 with 8 experts: (n_low, n_mid, n_high) = (2, 4, 2), in order
    assert bits.tolist() == [4, 4, 2, 2, 2, 2, 0, 0]
    assert bits.mean() == 2.0


def test_simulate_cli_reports_pruned_and_rerouted(run_cli, tmp_path, mixtral):
    rng = np.random.default_rng(0)
    ids = np.stack([rng.permutation(8)[:2] for _ in range(4 * 32)]).reshape(4, 32, 2)
    np.savez(tmp_path / "t.npz", expert_ids=ids)
    bits = np.full((32, 8), 4)
    bits[:, [0, 5]] = 0
    BitAllocation(mixtral.name, bits).save(tmp_path / "a.yaml", mixtral)
    rc, out, err = run_cli("simulate", "--hw", "h100", "--workload", "mixtral-8x7b",
                           "--alloc", tmp_path / "a.yaml", "--batch", "4", "--routing",
                           f"trace:{tmp_path / 't.npz'}")
    assert rc == 0, err
    moved = int(np.isin(ids, [0, 5]).sum())       # selections of the pruned experts
    assert f"64 experts pruned (never routed), {moved} trace selections re-routed" in out


def test_budget_with_a_zero_level(mixtral):
    from accelsim.alloc.budget import budget_allocation
    from accelsim.errors import InfeasibleError
    r = budget_allocation(AllocRequest(mixtral, levels=(4, 2, 0), memory_budget_bytes=12e9))
    a = r.allocation
    assert a.num_pruned > 0 and r.weight_bytes <= 12e9
    assert ((a.expert_bits > 0).sum(axis=1) >= 2).all()
    with pytest.raises(InfeasibleError, match="fewer than top_k=2"):
        budget_allocation(AllocRequest(mixtral, levels=(4, 2, 0), memory_budget_bytes=4e9))


def test_scenario_pruned_pairs_checked(toy):
    with pytest.raises(ConfigError, match="out of range"):
        Scenario(pruned=[(0, 9)]).expert_load(toy)
    with pytest.raises(ConfigError, match="bool mask"):
        Scenario(pruned=[1, 2])
    assert Scenario(pruned=[(1, 2), (0, 1), (1, 2)]).pruned == ((0, 1), (1, 2))
