"""Invariants of the simulator, as properties over random accelerators, MoE models and
allocations (hypothesis).

Rooflines are computed here, independently of the simulator: MACs from the graph over the
peak MAC rate of the hardware spec at the bits used, and off-chip bytes over the off-chip
bandwidth. The random accelerators are hierarchies in which an inner level is at least as fast
as an outer one (bandwidth not lower, latency not higher) and every core has an L1 that holds
all kinds of data: the setting in which "more memory never hurts" is a claim about the model
and not about a perverse hierarchy (docs/simulator.md, limits).
"""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.hw import hw_from_dict
from accelsim.precision import BitAllocation
from accelsim.sim import simulate
from accelsim.workload import Scenario, Zipf, build_graph, workload_from_dict

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
REL = 1e-9


@st.composite
def accelerators(draw) -> dict:
    cores = draw(st.sampled_from([1, 2, 3, 4]))
    kind = draw(st.sampled_from(["fixed", "serial", "halving", "fusion"]))
    arith, wbits, abits = {
        "fixed": ({"kind": "fixed", "native_bits": 8}, [8], [8]),
        "serial": ({"kind": "bit_serial", "serial_operand": "weight",
                    "bits_per_cycle": draw(st.sampled_from([1, 2]))}, list(range(1, 17)),
                   [8, 16]),
        "halving": ({"kind": "bit_parallel", "rule": "halving", "operands": "weight"},
                    [2, 4, 8], [8]),
        "fusion": ({"kind": "bit_parallel", "rule": "fusion"}, [1, 2, 4, 8, 16], [4, 8, 16]),
    }[kind]
    dram_bw = draw(st.sampled_from([4, 8, 16, 32]))
    dram_lat = draw(st.sampled_from([50, 100, 400]))
    l2 = draw(st.booleans())
    l2_bw = dram_bw * draw(st.sampled_from([1, 2, 4]))
    l2_lat = draw(st.sampled_from([4, 20, 50]))
    l1_bw = max(l2_bw if l2 else dram_bw, draw(st.sampled_from([16, 64, 256])))
    mem = [{"name": "l1", "scope": "core",
            "capacity": f"{draw(st.sampled_from([8, 32, 128, 512]))} KiB",
            "read_bandwidth": f"{l1_bw} B/cycle", "latency": "1 cycles",
            "read_energy": "1 pJ/B"}]
    if l2:
        mem.append({"name": "l2", "scope": "chip",
                    "capacity": f"{draw(st.sampled_from([64, 512, 4096]))} KiB",
                    "read_bandwidth": f"{l2_bw} B/cycle", "latency": f"{l2_lat} cycles",
                    "read_energy": "2 pJ/B",
                    # a cache serves GEMM re-reads (chip tiles), a scratchpad holds data
                    "reuse": draw(st.sampled_from(["scratchpad", "cache"]))})
    mem.append({"name": "dram", "scope": "offchip", "capacity": "64 GiB",
                "read_bandwidth": f"{dram_bw} B/cycle", "latency": f"{dram_lat} cycles",
                "read_energy": "100 pJ/B"})
    rows = draw(st.sampled_from([4, 8, 16]))
    return {
        "name": "rand", "clock": "1 GHz",
        "cores": {"count": cores, "mac_array": {
            "rows": rows, "cols": draw(st.sampled_from([4, 8, 16])), "arithmetic": arith,
            "weight_bits": wbits, "activation_bits": abits, "default_activation_bits": 8,
            "dataflows": draw(st.sampled_from([["weight_stationary"], ["output_stationary"],
                                               ["weight_stationary", "output_stationary"]]))},
            "vector_unit": {"lanes": draw(st.sampled_from([4, 16]))}},
        "memory": mem,
        "dma": {"setup": f"{draw(st.sampled_from([0, 10, 40]))} cycles",
                "channels": draw(st.sampled_from([1, 2]))},
        "noc": {"topology": draw(st.sampled_from(["mesh", "ring", "crossbar", "bus"])),
                "link_bandwidth": f"{draw(st.sampled_from([8, 32]))} B/cycle",
                "hop_latency": f"{draw(st.sampled_from([0, 2]))} cycles"},
        "energy": {"static_power": "0.1 W"},
    }


@st.composite
def models(draw) -> dict:
    hidden = draw(st.sampled_from([64, 128, 256]))
    heads = draw(st.sampled_from([2, 4]))
    d = dict(name="m", hidden_size=hidden, num_layers=draw(st.integers(2, 3)),
             vocab_size=draw(st.sampled_from([256, 512])),
             ffn_kind=draw(st.sampled_from(["swiglu", "gelu"])),
             attention=dict(num_heads=heads, num_kv_heads=draw(st.sampled_from([1, heads]))),
             moe=dict(num_experts=draw(st.sampled_from([4, 8, 16])),
                      top_k=draw(st.sampled_from([1, 2])),
                      expert_ffn_size=draw(st.sampled_from([64, 128, 512])),
                      num_shared_experts=draw(st.sampled_from([0, 0, 1]))))
    if draw(st.booleans()):
        d["moe"]["first_dense_layers"] = 1
        d["dense_ffn_size"] = 2 * hidden
    return d


@st.composite
def cases(draw):
    hw = draw(accelerators())
    model = workload_from_dict(draw(models()))
    if draw(st.booleans()):
        scen = Scenario(phase="decode", batch=draw(st.sampled_from([1, 4, 16])),
                        context=draw(st.sampled_from([0, 32])),
                        routing=draw(st.sampled_from([Zipf(0.0), Zipf(1.2)])),
                        seed=draw(st.integers(0, 3)))
    else:
        scen = Scenario(phase="prefill", batch=draw(st.sampled_from([1, 2])),
                        seq_len=draw(st.sampled_from([4, 16])))
    bits = np.array(draw(st.lists(st.sampled_from([1, 2, 3, 4, 8, 16]),
                                  min_size=model.num_moe_layers * model.moe.num_experts,
                                  max_size=model.num_moe_layers * model.moe.num_experts)))
    alloc = BitAllocation(model.name, bits.reshape(model.num_moe_layers, -1),
                          defaults={"attention": draw(st.sampled_from([4, 8, 16]))},
                          kv_bits=draw(st.sampled_from([8, 16])))
    residency = draw(st.sampled_from(["hot-first", "hot-first", "offchip"]))
    return hw, model, scen, alloc, residency


def run(hw_d, model, scen, alloc, residency="hot-first"):
    return simulate(hw_from_dict(hw_d), build_graph(model, scen), alloc, residency=residency)


def _le(a, b):
    return a <= b * (1 + REL) + 1e-12


# ----------------------------------------------------------------------------- rooflines
@SETTINGS
@given(cases())
def test_never_faster_than_rooflines(case):
    hw_d, model, scen, alloc, residency = case
    hw = hw_from_dict(hw_d)
    g = build_graph(model, scen)
    r = simulate(hw, g, alloc, residency=residency)
    a_bits = hw.cores.mac_array.default_activation_bits
    tensors = {t.name: t for t in model.tensors()}
    compute_s = 0.0
    for _, a in g.nodes(data=True):
        if a["macs"] <= 0:
            continue
        w = alloc.kv_bits if a["op"] == "attention" else alloc.bits_for(
            model, tensors[a["weight"]])
        compute_s += a["macs"] / hw.peak_macs_per_s(w, a_bits)
    assert r.latency_s >= compute_s * (1 - REL)
    off = hw.offchip
    assert r.latency_s >= r.offchip_bytes / max(off.read_bandwidth_bytes_per_s, off.write_bw) * (
        1 - REL)
    # bytes moved >= unique bytes: every weight byte the step may touch is read at least once
    touched = sum(a["p_active"] * a["weight_fraction"] * alloc.tensor_bytes(
        model, tensors[a["weight"]]) for _, a in g.nodes(data=True) if a["weight"])
    assert r.onchip_bytes_moved + r.offchip_bytes >= touched * (1 - REL)
    if residency == "offchip":
        assert r.offchip_bytes >= touched * (1 - REL)
    assert 0.0 <= r.mac_utilization <= 1.0 + REL
    assert abs(r.cycles - float(np.sum(r.phase_data["T"]))) <= REL * r.cycles


# ----------------------------------------------------------------------------- monotone
def _scale_bw(hw_d: dict, level: int, f: int) -> dict:
    d = copy.deepcopy(hw_d)
    m = d["memory"][level]
    num, unit = m["read_bandwidth"].split(" ", 1)
    m["read_bandwidth"] = f"{int(num) * f} {unit}"
    return d


def _scale_cap(hw_d: dict, level: int, f: int) -> dict:
    d = copy.deepcopy(hw_d)
    m = d["memory"][level]
    num, unit = m["capacity"].split(" ", 1)
    m["capacity"] = f"{int(num) * f} {unit}"
    return d


@SETTINGS
@given(cases(), st.data())
def test_more_bandwidth_is_never_slower(case, data):
    hw_d, model, scen, alloc, residency = case
    base = run(hw_d, model, scen, alloc, residency)
    level = data.draw(st.integers(0, len(hw_d["memory"]) - 1))
    faster = _scale_bw(hw_d, level, 2)
    if level > 0:  # keep the hierarchy ordered: the inner levels stay at least as fast
        for i in range(level):
            faster = _scale_bw(faster, i, 2)
    assert _le(run(faster, model, scen, alloc, residency).latency_s, base.latency_s)
    noc = copy.deepcopy(hw_d)
    noc["noc"]["link_bandwidth"] = noc["noc"]["link_bandwidth"].replace(" B", "0 B")
    assert _le(run(noc, model, scen, alloc, residency).latency_s, base.latency_s)


@SETTINGS
@given(cases(), st.data())
def test_more_sram_is_never_slower(case, data):
    hw_d, model, scen, alloc, residency = case
    base = run(hw_d, model, scen, alloc, residency)
    level = data.draw(st.integers(0, len(hw_d["memory"]) - 2))   # an on-chip level
    bigger = _scale_cap(hw_d, level, data.draw(st.sampled_from([2, 4, 64])))
    assert _le(run(bigger, model, scen, alloc, residency).latency_s, base.latency_s)


@SETTINGS
@given(cases(), st.sampled_from([1, 2, 4]))
def test_more_cores_is_never_slower(case, extra):
    hw_d, model, scen, alloc, residency = case
    base = run(hw_d, model, scen, alloc, residency)
    more = copy.deepcopy(hw_d)
    more["cores"]["count"] += extra
    assert _le(run(more, model, scen, alloc, residency).latency_s, base.latency_s)


@SETTINGS
@given(cases(), st.data())
def test_more_weight_bits_is_never_faster(case, data):
    hw_d, model, scen, alloc, residency = case
    base = run(hw_d, model, scen, alloc, residency)
    bits = alloc.expert_bits.copy()
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=bits.size,
                                       max_size=bits.size))).reshape(bits.shape)
    bits[mask] = np.minimum(bits[mask] * 2, 16)
    more = alloc.with_expert_bits(bits, defaults=dict(
        alloc.defaults, attention=min(16, alloc.defaults["attention"] * data.draw(
            st.sampled_from([1, 2])))))
    r = run(hw_d, model, scen, more, residency)
    assert _le(base.latency_s, r.latency_s)
    assert r.weight_bytes >= base.weight_bytes


@SETTINGS
@given(cases())
def test_deterministic(case):
    hw_d, model, scen, alloc, residency = case
    a = run(hw_d, model, scen, alloc, residency)
    b = run(hw_d, model, scen, alloc, residency)
    assert a.to_dict() == b.to_dict()
    assert a.ops.equals(b.ops)
