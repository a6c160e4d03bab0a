"""End-to-end behaviour of simulate() and simulate_gemm(): result contract, per-op table and
timeline, expected-value routing, KV cache, energy, multi-core, bad input."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from accelsim.errors import ConfigError
from accelsim.hw import hw_from_dict, load_hw
from accelsim.precision import BitAllocation
from accelsim.sim import BOUNDS, simulate, simulate_gemm
from accelsim.sim.core import SimOptions, _gemm_general
from accelsim.sim.energy import mac_energy
from accelsim.sim.lower import lower
from accelsim.sim.schedule import noc_cost
from accelsim.workload import Scenario, build_graph, load_workload, workload_from_dict

JSON_KEYS = ("latency_s", "cycles", "tokens_per_s", "energy_j", "weight_bytes",
             "weight_bytes_by_level", "offchip_bytes", "onchip_bytes_moved",
             "mac_utilization", "compute_cycles", "stall_cycles", "bound")


@pytest.fixture(scope="module")
def mixtral():
    return load_workload("mixtral-8x7b")


@pytest.fixture(scope="module")
def decode16(mixtral):
    g = build_graph(mixtral, Scenario(phase="decode", batch=16, context=256))
    # the ideal roofline: the bound below is a property of the peaks, not of the calibrated
    # efficiency model (whose kernel overheads dominate this step)
    return g, simulate(load_hw("h100"), g, BitAllocation.uniform(mixtral, 4), ideal=True)


def small_model(**moe):
    return workload_from_dict(dict(
        name="small", hidden_size=256, num_layers=2, vocab_size=512,
        attention=dict(num_heads=4, num_kv_heads=2),
        moe=dict(dict(num_experts=8, top_k=2, expert_ffn_size=512), **moe)))


def hw_dict(cores=1, dataflows=("weight_stationary",), l1="256 KiB", static="0 W") -> dict:
    d = {"name": "t", "clock": "1 GHz",
         "cores": {"count": cores, "mac_array": {
             "rows": 16, "cols": 16, "arithmetic": {"kind": "fixed"},
             "dataflows": list(dataflows)}},
         "memory": [
             {"name": "l1", "scope": "core", "capacity": l1, "read_bandwidth": "64 B/cycle",
              "latency": "1 cycles", "read_energy": "1 pJ/B"},
             {"name": "dram", "scope": "offchip", "capacity": "64 GiB",
              "read_bandwidth": "16 B/cycle", "latency": "100 cycles",
              "read_energy": "100 pJ/B"}],
         "dma": {"setup": "20 cycles"}, "energy": {"static_power": static}}
    if cores > 1:
        d["noc"] = {"topology": "mesh", "link_bandwidth": "32 B/cycle",
                    "hop_latency": "1 cycles", "energy_per_byte_per_hop": "0.1 pJ/B"}
    return d


# ----------------------------------------------------------------------------- contract
def test_result_contract(decode16, mixtral):
    g, r = decode16
    d = r.to_dict()
    for k in JSON_KEYS:
        assert k in d
    assert set(d["weight_bytes_by_level"]) == {m.name for m in load_hw("h100").memory}
    assert r.bound in BOUNDS
    assert r.cycles == pytest.approx(r.latency_s * 1.83e9)
    assert r.tokens == 16 and r.tokens_per_s == pytest.approx(16 / r.latency_s)
    assert r.weight_bytes == BitAllocation.uniform(mixtral, 4).weight_bytes(mixtral)
    assert r.offchip_bytes == d["bytes_by_level"]["hbm3"]
    assert r.onchip_bytes_moved == pytest.approx(d["bytes_by_level"]["rf"]
                                                 + d["bytes_by_level"]["smem"]
                                                 + d["bytes_by_level"]["l2"])
    # decode at batch 16 on a GPU streams the weights: HBM bandwidth bound
    assert r.bound == "offchip_bandwidth"
    assert r.latency_s >= 0.9 * r.weight_bytes_by_level["hbm3"] / 3.35e12


def test_ops_table_and_timeline(decode16):
    g, r = decode16
    ops = r.ops
    assert len(ops) == g.number_of_nodes()
    for c in ("name", "op", "layer", "expert", "core", "cores", "start_cycle", "end_cycle",
              "cycles", "compute_cycles", "stall_cycles", "energy_j", "bytes_hbm3"):
        assert c in ops.columns
    assert (ops["start_cycle"] <= ops["end_cycle"]).all()
    assert (ops["end_cycle"] <= r.cycles * (1 + 1e-9)).all()
    assert ((ops["core"] >= 0) & (ops["core"] + ops["cores"] <= r.cores)).all()
    assert ops["compute_cycles"].sum() == pytest.approx(r.compute_cycles)
    levels = [c for c in ops.columns if c.startswith("bytes_")]
    for c in levels:
        assert ops[c].sum() == pytest.approx(r.bytes_by_level[c[len("bytes_"):]])
    e = r.energy_breakdown_j
    assert sum(e.values()) == pytest.approx(r.energy_j)
    assert ops["energy_j"].sum() + e["static"] == pytest.approx(r.energy_j)
    tl = r.timeline
    assert set(tl.columns) == {"core", "op", "start_cycle", "end_cycle"}
    for _, rows in tl.groupby("core"):
        s = rows.sort_values("start_cycle")
        assert (s["start_cycle"].to_numpy()[1:] >= s["end_cycle"].to_numpy()[:-1] - 1e-6).all()
    assert tl["end_cycle"].max() <= r.cycles * (1 + 1e-9)


def test_lowering_is_cached_per_graph(mixtral):
    g = build_graph(mixtral, Scenario(batch=2))
    assert lower(g) is lower(g)
    a4, a8 = BitAllocation.uniform(mixtral, 4), BitAllocation.uniform(mixtral, 8)
    hw = load_hw("h100")
    assert simulate(hw, g, a8).latency_s > simulate(hw, g, a4).latency_s


# ----------------------------------------------------------------------------- routing, KV
def test_decode_batch1_reads_topk_experts_worth_of_weights(mixtral):
    g = build_graph(mixtral, Scenario(phase="decode", batch=1))
    alloc = BitAllocation.uniform(mixtral, 4)
    r = simulate(load_hw("h100"), g, alloc, residency="offchip")
    tensors = {t.name: t for t in mixtral.tensors()}
    expected = sum(a["p_active"] * a["weight_fraction"] * alloc.tensor_bytes(
        mixtral, tensors[a["weight"]]) for _, a in g.nodes(data=True) if a["weight"])
    per_expert = alloc.tensor_bytes(mixtral, tensors["L0.E0.w1"]) * 3
    # two of eight experts per layer, not eight
    assert expected == pytest.approx(
        expected - 32 * 8 * 0.25 * per_expert + 32 * 2 * per_expert)
    assert 1.0 <= r.offchip_bytes / expected <= 1.02


def test_kv_cache_is_read_at_kv_bits(mixtral):
    hw = load_hw("h100")
    out = {}
    for ctx in (0, 2048):
        g = build_graph(mixtral, Scenario(phase="decode", batch=4, context=ctx))
        for kv in (16, 8):
            alloc = BitAllocation.uniform(mixtral, 4, kv_bits=kv)
            out[ctx, kv] = simulate(hw, g, alloc, residency="offchip").offchip_bytes
    for kv in (16, 8):
        kv_read = 32 * 4 * 2048 * mixtral.kv_bytes_per_token_per_layer(kv)
        assert out[2048, kv] - out[0, kv] == pytest.approx(kv_read, rel=0.01)


def test_mla_caches_the_latent():
    m = load_workload("deepseek-v2-lite")
    alloc = BitAllocation.uniform(m, 4, kv_bits=8)
    r = simulate(load_hw("h100"), build_graph(m, Scenario(batch=2, context=100)), alloc)
    a = m.attention
    per_token = (a.kv_lora_rank + a.qk_rope_head_dim) * 8 / 8
    assert sum(r.kv_bytes_by_level.values()) == pytest.approx(
        m.total_layers * 2 * 101 * per_token)


def test_rarely_active_expert_pays_one_token_pass():
    # batch 1, top-1 of 8: each expert runs with p = 1/8 on its one token; compute is
    # p * (one-token pass), SCALE-Sim weight-stationary folds with M = 1
    m = small_model(top_k=1)
    r = simulate(hw_from_dict(hw_dict(l1="8 MiB")), build_graph(m, Scenario(batch=1)),
                 BitAllocation.uniform(m, 8))
    ops = r.ops.set_index("name")
    R = C = 16
    K, N = 256, 512
    assert ops.loc["L0.E3.w1", "p_active"] == pytest.approx(1 / 8)
    one_pass = math.ceil(K / R) * math.ceil(N / C) * (2 * R + C + 1 - 2)
    assert ops.loc["L0.E3.w1", "compute_cycles"] == pytest.approx(one_pass / 8)


def test_prefill(mixtral):
    r = simulate(load_hw("h100"), build_graph(mixtral, Scenario(phase="prefill", batch=1,
                                                                 seq_len=512)),
                 BitAllocation.uniform(mixtral, 4))
    assert r.tokens == 512
    assert r.mac_utilization > 0.2   # long prompts fill the arrays


# ----------------------------------------------------------------------------- energy
def test_energy_breakdown_on_one_gemm():
    hw = load_hw("gemmini")
    r = simulate_gemm(hw, 64, 512, 512, w_bits=8)
    e = r.energy_breakdown_j
    assert e["mac"] == pytest.approx(64 * 512 * 512 * hw.energy.mac_8b)
    assert e["static"] == pytest.approx(hw.energy.static_power_w * r.latency_s)
    mem = sum(r.bytes_by_level[m.name] * m.read_energy_per_byte_j for m in hw.memory)
    assert sum(v for k, v in e.items() if k.startswith("memory:")) == pytest.approx(mem)


def test_mac_energy_rules():
    # Horowitz 45 nm: int8 mult 0.2 pJ, int32 add 0.1 pJ; multiplier ~ w*a, adder ~ w + a
    mult, add = 0.2e-12, 0.1e-12

    def hw(arith, wb, ab):
        d = hw_dict()
        d["cores"]["mac_array"].update(arithmetic=arith, weight_bits=wb, activation_bits=ab,
                                       default_activation_bits=8)
        return hw_from_dict(d)

    serial = hw({"kind": "bit_serial", "serial_operand": "weight"}, list(range(1, 17)), [8])
    for w in (1, 4, 8):
        assert mac_energy(serial, w, 8) == pytest.approx(mult * w * 8 / 64
                                                         + add * (w + 8) / 16 * w)
    fusion = hw({"kind": "bit_parallel", "rule": "fusion"}, [2, 4, 8], [8])
    assert mac_energy(fusion, 3, 8) == pytest.approx(mult * 4 * 8 / 64 + add * 12 / 16)
    fixed = hw({"kind": "fixed"}, [8], [8])
    assert mac_energy(fixed, 2, 8) == pytest.approx(mult + add)


# ----------------------------------------------------------------------------- fast path
@pytest.mark.parametrize("name", ["gemmini", "h100", "bitfusion", "ethos-u65", "spyre", "northpole"])
def test_gemm_fast_path_equals_general_path(name):
    hw = load_hw(name)
    rng = np.random.default_rng(1)
    for _ in range(6):
        m, k, n = float(rng.integers(1, 600)), int(rng.integers(1, 5000)), int(
            rng.integers(1, 5000))
        wb = int(rng.choice(hw.cores.mac_array.weight_bits))
        fast = simulate_gemm(hw, m, k, n, w_bits=wb)
        from accelsim.precision import WeightFormat
        ref = _gemm_general(hw, m, k, n, wb, hw.cores.mac_array.default_activation_bits,
                            float(WeightFormat(wb).storage_bytes(n, k)), SimOptions(),
                            SimOptions().check(hw))
        a, b = fast.to_dict(ops=True), ref.to_dict(ops=True)
        for key in ("cycles", "compute_cycles", "stall_cycles", "energy_j", "offchip_bytes",
                    "onchip_bytes_moved", "mac_utilization", "noc_cycles"):
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-15), (key, m, k, n)
        assert a["bound"] == b["bound"]
        assert fast.energy_breakdown_j == pytest.approx(ref.energy_breakdown_j, rel=1e-9,
                                                        abs=1e-18)
        assert a["weight_bytes_by_level"] == pytest.approx(b["weight_bytes_by_level"])
        assert a["bytes_by_level"] == pytest.approx(b["bytes_by_level"])
        for col in ("tile_m", "tile_k", "tile_n", "dataflow", "core", "cores", "end_cycle",
                    "k_slices"):
            assert a["ops"][0][col] == pytest.approx(b["ops"][0][col]) if isinstance(
                a["ops"][0][col], float) else a["ops"][0][col] == b["ops"][0][col]


def test_tiles_use_the_activation_reserve_the_op_leaves_free():
    """An op whose activations stream from DRAM (working set 128 KiB in + 128 KiB out, more
    than the 192 KiB of scratchpad left after the 64 KiB staging share) stages its tiles in the
    activation reserve it does not use: the whole scratchpad is its staging buffer, exactly as
    with ``staging_fraction=1`` (no reserve at all). Fast and general path alike."""
    hw = load_hw("gemmini")
    kw = dict(w_bits=8, a_bits=8, dataflow="weight_stationary", residency="offchip",
              group_size=None)
    r = simulate_gemm(hw, 1024, 128, 128, **kw)
    whole = simulate_gemm(hw, 1024, 128, 128, staging_fraction=1.0, **kw)
    assert "1 op(s) keep activations off chip" in r.warnings
    assert r.activation_bytes_by_level["scratchpad"] == 192 * 1024
    assert whole.activation_bytes_by_level["scratchpad"] == 0
    tile = [r.ops.loc[0, c] for c in ("tile_m", "tile_k", "tile_n")]
    assert tile == [whole.ops.loc[0, c] for c in ("tile_m", "tile_k", "tile_n")]
    assert r.cycles == whole.cycles and r.compute_cycles == whole.compute_cycles
    mt, kt, nt = tile
    assert 2 * mt * kt + 2 * kt * nt > 64 * 1024     # more than the staging share alone
    from accelsim.precision import WeightFormat
    nbytes = float(WeightFormat(8, None).storage_bytes(128, 128))
    ref = _gemm_general(hw, 1024.0, 128, 128, 8, 8, nbytes, SimOptions(
        "offchip", "weight_stationary"), 1)
    assert ref.cycles == pytest.approx(r.cycles, rel=1e-9)
    assert ref.compute_cycles == r.compute_cycles


def test_more_scratchpad_across_the_activation_fit_boundary_is_never_slower():
    """Growing gemmini's scratchpad moves these GEMMs' activations (256-384 KiB working sets)
    from DRAM onto the chip. Each op keeps the option of streaming them with the reserve as
    tile space, so no size is slower than a smaller one (the reverted c469e28 lost that
    option when the activations moved on chip); fast and general path agree at every size."""
    import copy
    from pathlib import Path
    from accelsim.config import read_mapping
    from accelsim.precision import WeightFormat
    d = copy.deepcopy(dict(read_mapping(Path(__file__).resolve().parents[1] / "hwconfigs"
                                        / "gemmini.yaml")))
    sp = next(m for m in d["memory"] if m["name"] == "scratchpad")
    kw = dict(w_bits=8, a_bits=8, dataflow="weight_stationary", residency="offchip",
              group_size=None)
    for m, k, n in ((1024, 128, 128), (512, 256, 128), (768, 128, 256)):
        prev = math.inf
        nbytes = float(WeightFormat(8, None).storage_bytes(n, k))
        for kib in (192, 256, 320, 352, 384, 448, 512, 1024):
            sp["capacity"] = f"{kib} KiB"
            hw = hw_from_dict(d)
            r = simulate_gemm(hw, m, k, n, **kw)
            ref = _gemm_general(hw, float(m), k, n, 8, 8, nbytes, SimOptions(
                "offchip", "weight_stationary"), 1)
            assert ref.cycles == pytest.approx(r.cycles, rel=1e-9)
            assert r.cycles <= prev * (1 + 1e-9), (m, k, n, kib)
            prev = r.cycles


# ----------------------------------------------------------------------------- multi-core
def test_experts_spread_over_cores():
    m = small_model(num_experts=8, top_k=2)
    g = build_graph(m, Scenario(phase="decode", batch=64))
    alloc = BitAllocation.uniform(m, 8)
    one = simulate(hw_from_dict(hw_dict(cores=1, l1="8 MiB")), g, alloc)
    eight = simulate(hw_from_dict(hw_dict(cores=8, l1="1 MiB")), g, alloc)
    assert eight.latency_s < one.latency_s / 3
    ex = eight.ops[eight.ops["role"] == "expert"]
    assert ex["core"].nunique() > 1
    assert eight.noc_cycles > 0 and eight.energy_breakdown_j["noc"] > 0


def test_split_k_on_many_cores_by_hand():
    # 1 x 4096 x 64 on 16 x 16 arrays: 4 column tiles, 256 K tiles of 16 rows. Weights and
    # activations stay in the per-core L1, so the shared levels are idle (F = 0) and the op's
    # one-core time t (its own tile pipeline) is the same on 1 and on 1,024 cores.
    k, n, cores = 4096, 64, 1024
    one = simulate_gemm(hw_from_dict(hw_dict(cores=1, l1="2 MiB")), 1, k, n, w_bits=8)
    hw = hw_from_dict(hw_dict(cores=cores, l1="2 MiB"))
    many = simulate_gemm(hw, 1, k, n, w_bits=8)
    t = one.cycles
    assert one.weight_bytes_by_level["l1"] == one.weight_bytes
    cols, kt = n // 16, k // 16
    n_only = t / cols                          # today's rule: 4 column pieces, K whole
    # ks K-slices x 4 column pieces of 16 columns; a binary tree over a path of the mesh:
    # log2(ks) rounds, each moving 1 x 16 partial sums x 4 B over a 32 B/cycle link (2
    # cycles) and adding them on 16 lanes (1 cycle), ks - 1 hops of 1 cycle in all
    times = {1: n_only}
    for r in range(1, 9):
        ks = 2 ** r
        times[ks] = t / cols / ks + r * (16 * 4 / 32 + 16 / 16) + (ks - 1) * 1.0
    best = min(times, key=times.get)
    assert 1 < best < kt
    assert many.cycles == pytest.approx(times[best], rel=1e-12)
    assert many.cycles < n_only / 10
    assert int(many.ops["k_slices"].iloc[0]) == best
    assert many.energy_breakdown_j["noc"] == pytest.approx(
        math.log2(best) * best / 2 * 16 * 4 * cols * 0.1e-12, rel=1e-9)
    # the tree adds best - 1 partial outputs of 1 x 64 sums on the vector units, at the
    # Horowitz fp16 add-and-multiply mean (0.4 + 1.1) / 2 pJ per operation
    assert many.energy_breakdown_j["vector"] == pytest.approx(
        (best - 1) * 64 * 0.75e-12, rel=1e-9)
    # its NoC time, without the adds: 2 cycles per round, ks - 1 hops of 1 cycle
    assert many.noc_cycles == pytest.approx(math.log2(best) * 2 + (best - 1) * 1.0, rel=1e-12)
    assert many.energy_j == pytest.approx(sum(many.energy_breakdown_j.values()), rel=1e-12)
    # the general path (any workload) charges the same
    ref = _gemm_general(hw, 1.0, k, n, 8, 8, many.weight_bytes, SimOptions(), 1)
    assert ref.noc_cycles == pytest.approx(many.noc_cycles, rel=1e-12)
    assert ref.energy_breakdown_j["vector"] == pytest.approx(
        many.energy_breakdown_j["vector"], rel=1e-12)
    # on two cores a K split (2 slices x 1 column piece = t / 2 plus a reduction) loses to
    # the N-only split (2 column pieces of 2 tiles = t / 2): today's rule, unchanged
    two = simulate_gemm(hw_from_dict(hw_dict(cores=2, l1="2 MiB")), 1, k, n, w_bits=8)
    assert two.cycles == pytest.approx(t / 2, rel=1e-12)
    assert int(two.ops["k_slices"].iloc[0]) == 1


def test_noc_cost_formulas():
    # mesh 2x2: mean Manhattan distance over distinct pairs = 4/3; a quarter stays home
    cyc, hops, moved = noc_cost(1200.0, 4, 0, 10.0, 2.0)
    assert hops == pytest.approx(4 / 3) and moved == pytest.approx(900.0)
    links, bisection = 8.0, 4.0
    assert cyc == pytest.approx(max(900 * hops / (links * 10), 450 / (bisection * 10))
                                + 2 * hops)
    # bus: one link carries everything
    assert noc_cost(1200.0, 4, 3, 10.0, 0.0)[0] == pytest.approx(90.0)
    assert noc_cost(1200.0, 1, 0, 10.0, 2.0) == (0.0, 0.0, 0.0)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_is_reported():
    m = small_model()
    g = build_graph(m, Scenario())
    hw = hw_from_dict(hw_dict())
    with pytest.raises(ConfigError, match="model_spec"):
        simulate(hw, nx.DiGraph(), BitAllocation.uniform(m, 4))
    with pytest.raises(ConfigError, match="expert_bits"):
        simulate(hw, g, BitAllocation("small", np.full((3, 8), 4)))
    with pytest.raises(ConfigError, match="dataflow.*supports weight_stationary"):
        simulate(hw, g, BitAllocation.uniform(m, 4), dataflow="output_stationary")
    with pytest.raises(ConfigError, match="staging_fraction"):
        simulate(hw, g, BitAllocation.uniform(m, 4), staging_fraction=0)
    with pytest.raises(ConfigError) as ei:
        simulate_gemm(hw, 0, 16.5, 8, w_bits=17)
    assert {p.key for p in ei.value.problems} == {"m", "k", "w_bits"}
