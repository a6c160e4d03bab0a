"""The plan searches of accelsim/system/search.py: the smallest system over every plan shape
(``smallest_plan``, which ``accelsim validate`` uses for NorthPole) and the screened search
with two-batch overlap (``search_plans(..., tbo=True)``)."""

from __future__ import annotations

import math

import pytest
import yaml
from _sysstub import install_stub
from _toys import TINY_HW, TOY_WL

import accelsim
from accelsim.errors import ConfigError, DoesNotFitError
from accelsim.hw import hw_from_dict
from accelsim.system import Plan, System, check_plan, enumerate_plans
from accelsim.system.search import _stage_plans, search_plans, smallest_plan
from accelsim.system.simulate import simulate_system
from accelsim.system.spec import Link, Links
from accelsim.workload import Scenario, build_graph

KIB = 1024


def _device(capacity_kib: int):
    """TINY_HW with its SRAM the only memory (every weight on chip, like NorthPole)."""
    raw = yaml.safe_load(TINY_HW)
    raw["memory"] = [dict(raw["memory"][0], capacity=f"{capacity_kib} KiB",
                          holds=["weights", "activations", "outputs", "kv"])]
    return hw_from_dict(raw)


def _toy6():
    """TOY_WL with six experts: 2 layers, hidden 64, 4 heads, expert FFN 128, vocab 100."""
    from accelsim.workload.model import MoEModel
    raw = yaml.safe_load(TOY_WL)
    raw["moe"]["num_experts"] = 6
    return MoEModel.model_validate(raw)


@pytest.fixture
def stub(monkeypatch):
    install_stub(monkeypatch)


def _old_pow2_smallest(system, graph, alloc):
    """The search ``accelsim validate`` used before (a reference): stage groups of powers of
    two only, tp in 1..16 and ep in 1..64 (ep at most the experts, tp inside a node), etp 1
    (no expert is larger than a device here), the fewest stages of each shape that fit
    (tried upwards), the fewest devices over the shapes."""
    model = graph.graph["model_spec"]
    best = None
    for tp in (1, 2, 4, 8, 16):
        for ep in (1, 2, 4, 8, 16, 32, 64):
            if tp > system.devices_per_node or ep > model.num_experts or max(tp, ep) % min(
                    tp, ep):
                continue
            w = max(tp, ep)
            for pp in range(1, min(model.total_layers, system.num_devices // w) + 1):
                p = Plan(pp=pp, tp=tp, ep=ep)
                try:
                    check_plan(p, model, system.num_devices)
                    r = simulate_system(system, graph, alloc, p)
                except (ConfigError, DoesNotFitError):
                    continue
                if best is None or r.devices < best.devices:
                    best = r
                break
    return best


def test_smallest_system_is_not_a_power_of_two_by_hand(stub):
    # 16-bit weights, bytes = 2 x parameters. One expert: 3 x 64 x 128 x 2 = 48 KiB; per
    # layer attention 4 x 64 x 64 x 2 = 32 KiB, router 6 x 64 x 2 = 768 B, two norms 256 B;
    # embedding and lm_head 100 x 64 x 2 = 12,800 B each, final norm 128 B. A device holds
    # 160 KiB = 163,840 B (the stub never refuses a part: fitting is the placement's).
    m = _toy6()
    a = accelsim.BitAllocation.uniform(m, 16)
    E, attn, rest, emb = 49152, 32768, 768 + 256, 12800
    cap = 160 * KIB
    assert E == 3 * 64 * 128 * 2 and attn == 4 * 64 * 64 * 2 and emb == 100 * 64 * 2
    system = System(name="toy8", hw=_device(160), devices_per_node=8,
                    links=Links(intra_node=Link.make(1e9, 1e-6, 1e-11, "switch")))
    g = build_graph(m, Scenario(phase="decode", batch=1))
    last = attn + rest + emb + 128          # stage 1 of two: layer 1, lm_head, final norm
    # two stages (one layer each) of ep=3, tp=1: two of the six experts per device
    assert last + 2 * E <= cap
    # ... but ep=2 holds three experts (tp=2 halves only attention and lm_head)
    assert last + 3 * E > cap and attn / 2 + rest + (emb + 128) / 2 + 3 * E > cap
    # one stage of six devices: tp=2, ep=6, one expert of each layer per device
    one = 2 * attn / 2 + 2 * rest + 2 * emb / 2 + 128
    assert one + 2 * E <= cap and 2 * attn + 2 * rest + 2 * emb + 128 + 2 * E > cap
    # fewer than 6 devices: one stage with ep <= 3 holds >= 4 experts (>= 192 KiB); two stages
    # of <= 2 devices hold >= 3 experts each; ep=4 or 5 puts 2 experts on the fullest device
    # as ep=3 does (not a useful ep), so 4 or 5 devices have no plan of their own.
    r, p = smallest_plan(system, g, a)
    assert r.devices == 6
    assert str(p) in ("pp=2,tp=1,ep=3,dp=1,mb=2", "pp=1,tp=2,ep=6,dp=1,mb=1")
    both = [simulate_system(system, g, a, q).latency_s
            for q in ("pp=2,tp=1,ep=3", "pp=1,tp=2,ep=6")]
    assert r.latency_s == pytest.approx(min(both), rel=1e-12)
    # powers of two: two stages of ep=4 (2 experts on the fullest device), 8 devices
    old = _old_pow2_smallest(system, g, a)
    assert old.devices == 8 and r.devices < old.devices
    # capped at 5 devices nothing fits: the message names the last plan tried
    with pytest.raises(DoesNotFitError, match="no plan on up to 5 devices of toy8 holds it"):
        smallest_plan(system, g, a, max_devices=5)


def test_stage_plans_are_enumerate_plans_with_one_replica():
    m = accelsim.load_workload("mixtral-8x7b")
    for top, node, etp in ((48, 16, 1), (40, 8, 2)):
        want = [p for p in enumerate_plans(m, top, devices_per_node=node, exact=False,
                                           min_etp=etp) if p.dp == 1 and p.devices >= 5]
        got = _stage_plans(m, 5, top, node, etp)
        assert sorted(map(str, got)) == sorted(map(str, want))
        assert [p.devices for p in got] == sorted(p.devices for p in got)


@pytest.mark.parametrize("label", ["uniform-2", "router-norm-2.125"])
def test_northpole_smallest_is_never_larger_than_powers_of_two(label):
    from accelsim.report.claims import (
        ValidateConfig,
        _northpole_system,
        _stored,
        allocations,
        northpole_smallest,
    )
    cfg = ValidateConfig()
    m = accelsim.load_workload(cfg.model)
    a = _stored(allocations(m, cfg)[label], "northpole", cfg.packing)
    g = build_graph(m, Scenario(phase="decode", batch=1, context=cfg.context))
    r, p = northpole_smallest(m, g, a, {})
    system = _northpole_system()
    # the reference: the old search (powers of two) on the same system
    old = _old_pow2_smallest(system, g, a)
    assert r.devices <= old.devices
    # the plan found runs as the system simulation says, and holds the weights
    assert simulate_system(system, g, a, p).latency_s == pytest.approx(r.latency_s,
                                                                       rel=1e-12)
    assert r.devices >= math.ceil(a.weight_bytes(m) / (192 * 2**20))


# ------------------------------------------------------ screened search with overlap


def _slow(system, factor):
    link = system.links.intra_node
    return system.with_links(intra_node=Link.make(link.bandwidth_bytes_per_s * factor,
                                                  link.latency_s, link.energy_per_byte_j,
                                                  link.topology))


def test_screen_with_overlap_is_exact_on_the_stub(stub):
    # with the stub a part's latency is the sum of its layers' and a half micro-batch's
    # part is linear in its shares, so the screen is exact with and without overlap; slow
    # links make the all-to-all worth hiding, so overlap reorders the table
    m = _toy6()
    a = accelsim.BitAllocation.uniform(m, 8)
    hw = hw_from_dict(yaml.safe_load(TINY_HW))
    system = System(name="toy6", hw=hw, devices_per_node=6,
                    links=Links(intra_node=Link.make(2e5, 1e-6, 1e-11, "chain")))
    g = build_graph(m, Scenario(phase="decode", batch=4))
    plain = search_plans(system, g, a, screen=False)
    full = search_plans(system, g, a, screen=False, tbo=True)
    fast = search_plans(system, g, a, screen=True, tbo=True)
    assert full["best"]["latency_s"] < plain["best"]["latency_s"]    # overlap pays
    assert fast["best"] == full["best"] and fast["pareto"] == full["pareto"]


@pytest.mark.parametrize("workload, sys_name, phase, factor", [
    ("mixtral-8x7b", "spyre-8", "prefill", 0.01),
    ("mixtral-8x7b", "h100-8", "prefill", 0.01),
    ("olmoe-1b-7b", "spyre-8", "decode", 0.01),
])
def test_screen_with_overlap_keeps_the_exhaustive_answer(workload, sys_name, phase, factor):
    m = accelsim.load_workload(workload)
    a = accelsim.BitAllocation.uniform(m, 4)
    g = build_graph(m, Scenario(phase=phase, batch=8, seq_len=64,
                                context=0 if phase == "prefill" else 256))
    s = _slow(accelsim.load_system(sys_name), factor)
    full = search_plans(s, g, a, screen=False, tbo=True)
    fast = search_plans(s, g, a, screen=True, tbo=True)
    assert fast["best"] == full["best"] and fast["pareto"] == full["pareto"]
    assert fast["simulated"] < full["simulated"]


def test_equal_device_count_reuses_the_whole_plan_of_the_baseline(monkeypatch):
    # the baseline's note carries its plan, etp included; the mixed allocation runs on it
    import pandas as pd

    from accelsim.report import claims
    seen = []

    def fake(model, graph, alloc, known, *, plan=None):
        seen.append(plan)
        raise DoesNotFitError("stop")
    monkeypatch.setattr(claims, "northpole_smallest", fake)
    cfg = claims.ValidateConfig(chips=("northpole",), batches=(1,))
    plan = "pp=6,tp=16,ep=8,dp=1,mb=6,etp=4"
    df = pd.DataFrame([{"chip": "northpole", "batch": 1, "allocation": "int8", "fits": True,
                        "chips": 192, "latency_s": 1e-3,
                        "note": f"northpole-rack: plan {plan}, links charged"}])
    m = accelsim.load_workload(cfg.model)
    out = claims._northpole_equal_devices(df, cfg, m, claims.allocations(m, cfg))
    assert seen == [plan] and out[("int8", 1)]["plan"] == plan
