"""build_graph caches its graphs by model object and scenario value (frozen, so a cached
graph cannot be changed under another caller), and the simulator's lowering follows."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from accelsim.sim.lower import lower
from accelsim.workload import Explicit, Scenario, Zipf, build_graph, load_workload


def test_equal_scenarios_share_one_frozen_graph_and_its_lowering():
    m = load_workload("mixtral-8x7b")
    g = build_graph(m, Scenario(phase="decode", batch=16, context=512))
    again = build_graph(m, Scenario(phase="decode", batch=16, context=512))
    assert again is g and nx.is_frozen(g)
    assert lower(again) is lower(g)
    with pytest.raises(nx.NetworkXError):
        g.add_node("extra")
    copy = nx.DiGraph(g)
    copy.add_node("extra")                       # an editable copy
    assert "extra" not in g
    other = build_graph(m, Scenario(phase="decode", batch=16, context=513))
    assert other is not g
    assert other.nodes["L0.attention"]["kv_elems"] > g.nodes["L0.attention"]["kv_elems"]
    z1, z2 = (build_graph(m, Scenario(batch=4, routing=Zipf(1.2), seed=s)) for s in (1, 2))
    assert z1 is not z2 and build_graph(m, Scenario(batch=4, routing=Zipf(1.2), seed=1)) is z1


def test_array_routing_is_built_every_time():
    m = load_workload("mixtral-8x7b")
    f = np.ones(8)
    s = Scenario(batch=4, routing=Explicit(f))
    a, b = build_graph(m, s), build_graph(m, s)
    assert a is not b and a.number_of_nodes() == b.number_of_nodes()
