"""A stand-in for ``accelsim.sim.simulate_parts`` whose per-layer latencies are known, so that
the system composition can be checked against values derived by hand."""

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np


@dataclass(frozen=True)
class _Part:
    layers: tuple
    tp: int = 1
    expert_share: object = None
    embed: object = None
    lm_head: object = None
    expert_tp: int = 1
    batch_share: float = 1.0


def _stub_parts(hw, graph, alloc, parts, **kw):
    """Per layer: 1 ms x batch share / tp plus 0.1 ms per (share of an) expert; embedding
    0.1 ms and tail 0.2 ms, both x batch share; dynamic energy 1 J per second of latency."""
    model = graph.graph["model_spec"]
    n = model.total_layers
    row = {L: r for r, L in enumerate(model.moe_layers)}
    out = []
    for p in parts:
        a, b = p.layers
        b_share = getattr(p, "batch_share", 1.0)
        lat = np.zeros(n + 2)
        for L in range(a, b):
            sh = (np.ones(model.moe.num_experts) if p.expert_share is None
                  else p.expert_share[row[L]])
            lat[L + 1] = 1e-3 * b_share / p.tp + 1e-4 * sh.sum()
        lat[0] = 1e-4 * b_share if a == 0 else 0.0
        lat[-1] = 2e-4 * b_share if b == n else 0.0
        t = float(lat.sum())
        out.append(SimpleNamespace(
            latency_s=t, layer_latency_s=lat, energy_j=t, energy_breakdown_j={"mac": t,
                                                                              "static": 0.0},
            weight_bytes=1.0, weight_bytes_by_level={"dram": 1.0}, kv_bytes_by_level={},
            activation_bytes_by_level={}, staging_bytes_by_level={}, bytes_by_level={},
            offchip_bytes=0.0, onchip_bytes_moved=0.0, macs=0.0, mac_utilization=0.0,
            compute_cycles=0.0, stall_cycles=0.0, vector_cycles=0.0, noc_cycles=0.0,
            busy_cycles={}, bound="compute", warnings=(), model=model.name,
            scenario=graph.graph["scenario"], residency="hot-first"))
    return out


def install_stub(monkeypatch):
    """Replace ``accelsim.sim.simulate_parts`` by the stub (and provide ``DevicePart``)."""
    import accelsim.sim as S
    monkeypatch.setattr(S, "simulate_parts", _stub_parts, raising=False)
    if not hasattr(S, "DevicePart"):
        monkeypatch.setattr(S, "DevicePart", _Part, raising=False)
