"""Scenarios, routing and the op graph, against hand-derived values."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from accelsim.errors import ConfigError
from accelsim.workload import (Explicit, Scenario, Uniform, Zipf, build_graph,
                               graph_summary, load_trace, load_workload, parse_routing)


@pytest.fixture(scope="module")
def mixtral():
    return load_workload("mixtral-8x7b")


def test_uniform_decode_load(mixtral):
    s = Scenario(phase="decode", batch=4)
    load = s.expert_load(mixtral)
    # each token picks 2 of 8: q = 1/4; expected tokens 4 * 1/4; P(active) = 1 - (3/4)^4
    assert np.allclose(load.tokens, 1.0)
    assert np.allclose(load.p_active, 1 - 0.75 ** 4)
    assert np.allclose(load.tokens.sum(axis=1), 4 * 2)


def test_zipf_is_seeded_and_normalised(mixtral):
    a = Zipf(1.2).probabilities(32, 8, seed=3)
    b = Zipf(1.2).probabilities(32, 8, seed=3)
    assert np.array_equal(a, b)
    assert np.allclose(a.sum(axis=1), 1)
    w = 1 / np.arange(1, 9) ** 1.2
    assert np.allclose(np.sort(a[0])[::-1], w / w.sum())


def test_selection_probability_capped_at_one(mixtral):
    # one expert takes 90% of selections: it can be picked at most once per token
    f = np.full(8, 0.1 / 7)
    f[0] = 0.9
    load = Scenario(batch=10, routing=Explicit(f)).expert_load(mixtral)
    assert np.allclose(load.tokens[:, 0], 10.0)        # every token picks it
    assert np.allclose(load.tokens.sum(axis=1), 20.0)   # still top-2 per token
    assert np.all(load.tokens <= 10.0 + 1e-9)


def test_capacity_factor_caps_tokens(mixtral):
    f = np.array([0.5, 0.3, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025])
    load = Scenario(batch=64, routing=Explicit(f), capacity_factor=1.0).expert_load(mixtral)
    cap = 1.0 * 64 * 2 / 8
    assert load.tokens.max() <= cap + 1e-9


def test_trace_frequencies_and_validation(tmp_path, mixtral):
    rng = np.random.default_rng(0)
    ids = np.stack([np.stack([rng.choice(8, 2, replace=False) for _ in range(32)])
                    for _ in range(50)])
    p = tmp_path / "t.npz"
    np.savez(p, expert_ids=ids)
    tr = load_trace(p)
    probs = tr.probabilities(32, 8, 0)
    assert np.allclose(probs[0], np.bincount(ids[:, 0].ravel(), minlength=8) / 100)
    bad = tmp_path / "bad.npz"
    np.savez(bad, expert_ids=np.full((5, 32, 2), 9))
    with pytest.raises(ConfigError, match="expert ids must be in 0..7"):
        Scenario(routing=load_trace(bad)).expert_load(mixtral)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, expert_ids=np.zeros((5, 3, 2), dtype=int))
    with pytest.raises(ConfigError, match="trace must be"):
        Scenario(routing=load_trace(wrong)).expert_load(mixtral)


def test_csv_trace(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("token,layer,expert\n0,0,1\n0,0,3\n1,0,2\n1,0,1\n")
    tr = load_trace(p)
    assert tr.expert_ids.shape == (2, 1, 2)
    assert sorted(tr.expert_ids[0, 0]) == [1, 3]


def test_trace_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such trace file"):
        load_trace(tmp_path / "none.npz")
    p = tmp_path / "x.npz"
    p.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="not a readable NPZ"):
        load_trace(p)


@pytest.mark.parametrize("text,cls", [("uniform", Uniform), ("zipf:0.8", Zipf)])
def test_parse_routing(text, cls):
    assert isinstance(parse_routing(text), cls)


@pytest.mark.parametrize("bad", ["zipf:x", "gauss", "trace:", "zipf:-1"])
def test_parse_routing_errors(bad):
    with pytest.raises(ConfigError):
        parse_routing(bad)


@pytest.mark.parametrize("kw", [dict(batch=0), dict(phase="train"), dict(context=-1),
                                dict(capacity_factor=float("nan")), dict(batch=2.5)])
def test_scenario_validation(kw):
    with pytest.raises(ConfigError):
        Scenario(**kw)


def test_decode_graph_macs_equal_active_params(mixtral):
    # Every weight except the embedding table is used once per token and expert choice:
    # total MACs = tokens x (active params - embedding rows) + attention MACs.
    batch = 16
    g = build_graph(mixtral, Scenario(phase="decode", batch=batch, context=0))
    counts = mixtral.param_counts()
    norms = 32 * 2 * 4096 + 4096
    linear_active = counts["active_params"] - 32000 * 4096 - norms
    # decode with an empty cache: each query attends to 1 key, QK^T + PV = 2 x heads x hd
    attn = 32 * batch * 1 * 32 * 2 * 128
    assert g.graph["total_macs"] == pytest.approx(batch * linear_active + attn, rel=1e-12)
    assert nx.is_directed_acyclic_graph(g)


def test_graph_node_attributes(mixtral):
    g = build_graph(mixtral, Scenario(phase="decode", batch=2, context=100))
    a = g.nodes["L3.E5.w1"]
    assert (a["op"], a["layer"], a["expert"], a["role"], a["weight"]) == (
        "gemm", 3, 5, "expert", "L3.E5.w1")
    assert (a["k"], a["n"]) == (4096, 14336)
    assert a["m"] == pytest.approx(2 * 2 / 8)
    assert a["p_active"] == pytest.approx(1 - 0.75 ** 2)
    att = g.nodes["L3.attention"]
    # KV cache read: batch x (context + 1) x 2 x kv_heads x head_dim elements
    assert att["kv_elems"] == 2 * 101 * 2 * 8 * 128
    assert att["macs"] == 2 * 101 * 32 * (128 + 128)
    assert g.has_edge("L3.E5.w2", "L3.combine")
    assert g.nodes["embed"]["weight_fraction"] == pytest.approx(2 / 32000)


def test_prefill_graph_tokens(mixtral):
    g = build_graph(mixtral, Scenario(phase="prefill", batch=2, seq_len=64))
    assert g.nodes["L0.attn.q"]["m"] == 128
    assert g.nodes["lm_head"]["m"] == 2  # logits of the last prompt token only
    s = graph_summary(g)
    assert s["by_op"]["gemm"]["count"] == 32 * (4 + 8 * 3)
    assert s["nodes"] == g.number_of_nodes()


def test_graphml_export_and_json(tmp_path, run_cli):
    out = tmp_path / "g.graphml"
    rc, stdout, err = run_cli("workload", "graph", "mixtral-8x7b", "--batch", "4",
                              "--format", "json", "--export", str(out))
    assert rc == 0, err
    import json
    d = json.loads(stdout)
    assert {"nodes", "edges", "total_macs", "weight_params", "by_op"} <= set(d)
    g = nx.read_graphml(out)
    assert g.number_of_nodes() == d["nodes"]
