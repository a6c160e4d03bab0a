"""A chip-scope cache (a GPU's L2, ``reuse: cache``) as the GEMM model's second tiling level.

Expected values are hand derivations: the bytes of each operand, how often the loop nest
re-reads it (``ceil(M / Mt)`` weight passes, output-stationary) and how often a chip tile
that fits the cache needs it (docs/simulator.md, "Chip tiles in a cache").
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from accelsim.errors import ConfigError
from accelsim.hw import hw_from_dict, list_hw, load_hw
from accelsim.sim import simulate_gemm
from accelsim.sim import engine as E
from accelsim.sim.core import SimOptions, _gemm_general

# 16 cores with a 64 KiB scratchpad each (16 KiB of tile staging), a chip-scope L2 and DRAM
# that holds no activations (so they stay in the scratchpads and only weights cross the
# off-chip interface); output-stationary, so weights are re-read once per m block.
CHIP = textwrap.dedent("""\
    name: cachetoy
    clock: 1 GHz
    cores:
      count: 16
      mac_array:
        rows: 16
        cols: 16
        arithmetic: {kind: fixed, native_bits: 8}
        dataflows: [output_stationary]
    memory:
      - name: l1
        scope: core
        capacity: 64 KiB
        read_bandwidth: 64 B/cycle
        read_energy: 0.1 pJ/B
      - name: l2
        scope: chip
        capacity: 4 MiB
        read_bandwidth: 256 B/cycle
        latency: 20 cycles
        read_energy: 0.5 pJ/B
        reuse: REUSE
      - name: dram
        scope: offchip
        capacity: 1 GiB
        read_bandwidth: 32 B/cycle
        latency: 200 cycles
        read_energy: 20 pJ/B
        holds: [weights, kv]
    noc: {topology: crossbar, link_bandwidth: 32 B/cycle}
    """)


def _chip(reuse: str, capacity: str = "4 MiB"):
    d = yaml.safe_load(CHIP.replace("REUSE", reuse))
    d["memory"][1]["capacity"] = capacity
    return hw_from_dict(d)


M, K, N = 256, 1024, 1024        # int8 weights: 1 MiB plus scales, > 16 KiB of staging


def test_weights_beyond_the_staging_are_read_from_dram_once_through_the_cache():
    cache, pad = _chip("cache"), _chip("scratchpad")
    assert cache.cache_level == 1 and pad.cache_level == -1
    wbytes = None
    for hw in (cache, pad):
        r = simulate_gemm(hw, M, K, N, w_bits=8, residency="offchip")
        wbytes = r.weight_bytes
        tm = float(r.ops.tile_m.iloc[0])
        passes = math.ceil(M / tm)
        assert tm < M            # the per-core tiles alone would re-read the weights
        if hw is pad:
            # no cache: every m block fetches the weights from DRAM again (today's model)
            assert r.offchip_bytes == pytest.approx(wbytes * passes, rel=1e-12)
            assert r.bytes_by_level["l2"] == 0.0
        else:
            # the chip tile M x N x K fits 4 MiB (1 MiB of weights beyond the cache): DRAM
            # once, the other passes - 1 re-reads from L2
            assert r.offchip_bytes == pytest.approx(wbytes, rel=1e-12)
            assert r.bytes_by_level["l2"] == pytest.approx(wbytes * (passes - 1), rel=1e-12)
    # a cache too small for whole panels (8 KiB < 1024 rows x 16 columns) still serves
    # some re-reads (a wave of tiles stepping through K), never more DRAM bytes than none
    small = simulate_gemm(_chip("cache", "8 KiB"), M, K, N, w_bits=8, residency="offchip")
    assert wbytes <= small.offchip_bytes <= simulate_gemm(
        pad, M, K, N, w_bits=8, residency="offchip").offchip_bytes


def test_chip_fetch_by_hand():
    # whole panels: room for both operands of the whole GEMM -> each once
    wc, ac = E.chip_fetch(1, 512.0, 1024.0, 2048.0, 64.0, 64.0, 128.0, 2.0, 2.0,
                          8 * 1024 * 2048 * 2.0, 16 * 512 * 1024 * 2.0,
                          (512 + 2048) * 1024 * 2.0, 1.0, 1.0, 4.0)
    assert (wc, ac) == (1024 * 2048 * 2.0, 512 * 1024 * 2.0)
    # room for Mc = 512 rows and 1024 of the 2048 columns: activations twice, weights once
    wc, ac = E.chip_fetch(1, 512.0, 1024.0, 2048.0, 64.0, 64.0, 128.0, 2.0, 2.0,
                          8 * 1024 * 2048 * 2.0, 16 * 512 * 1024 * 2.0,
                          (512 + 1024) * 1024 * 2.0, 1.0, 1.0, 1.0)
    assert (wc, ac) == (1024 * 2048 * 2.0, 2 * 512 * 1024 * 2.0)
    # nothing beyond the cache, or no room: the per-core fetches
    assert E.chip_fetch(1, 512.0, 1024.0, 2048.0, 64.0, 64.0, 128.0, 2.0, 2.0, 5.0, 7.0,
                        1e9, 0.0, 0.0, 4.0) == (5.0, 7.0)
    assert E.chip_fetch(1, 512.0, 1024.0, 2048.0, 64.0, 64.0, 128.0, 2.0, 2.0, 5.0, 7.0,
                        0.0, 1.0, 1.0, 4.0) == (5.0, 7.0)
    # one wave: 4 cores' tiles (2 m tiles x 2 n tiles) stepping through K, two Kt slabs of
    # (128 + 256) x 64 x 2 B = 96 KiB fit 100 KiB; whole panels (>= 64 rows + 128 columns
    # of K = 1024 at 2 B = 384 KiB) do not: weights once per 128 rows, activations once per
    # 256 columns
    wf, af = 8 * 1024 * 2048 * 2.0, 16 * 512 * 1024 * 2.0
    wc, ac = E.chip_fetch(1, 512.0, 1024.0, 2048.0, 64.0, 64.0, 128.0, 2.0, 2.0, wf, af,
                          100 * 1024.0, 1.0, 1.0, 4.0)
    assert (wc, ac) == (4 * 1024 * 2048 * 2.0, 8 * 512 * 1024 * 2.0)


def test_a100_batch60_decode_gemm_reads_its_weights_once():
    # issue 13 cause 2: 65.5 MB for 33.6 MB of weights; the extra was the activations
    # (60 x 4096 x 2 B = 491,520 B) re-read from HBM for each of the 64 column blocks
    w, a = 4096 * 4096 * 2.0, 60 * 4096 * 2.0
    for name in ("a100", "h100"):
        for m in (32, 60):
            r = simulate_gemm(name, m, 4096, 4096, w_bits=16, a_bits=16, residency="offchip",
                              ideal=True)
            act = m * 4096 * 2.0
            assert w <= r.offchip_bytes <= w + 2 * act, (name, m)
    assert a == 491520.0


def test_prefill_gemm_moves_each_operand_once():
    # 2048 x 4096 x 4096 FP16 on H100: the 67 MB working set exceeds the SMs' activation
    # reserve, so activations stream from HBM; a chip tile of all 2048 rows and all 4096
    # columns fits the 50 MiB L2 (2048 + 4096 panels of 8 KiB = 48 MiB): weights, activations
    # in and outputs out, each once
    r = simulate_gemm("h100", 2048, 4096, 4096, w_bits=16, a_bits=16, residency="offchip",
                      ideal=True)
    assert r.offchip_bytes == pytest.approx(4096 * 4096 * 2 + 2 * 2048 * 4096 * 2, rel=1e-12)


@pytest.mark.parametrize("name", ["a100", "h100", "l40s"])
@pytest.mark.parametrize("residency", ["offchip", "hot-first"])
def test_fast_path_equals_general_path_with_a_cache(name, residency):
    hw = load_hw(name)
    rng = np.random.default_rng(7)
    for _ in range(3):
        m, k, n = float(rng.integers(1, 3000)), int(rng.integers(16, 6000)), int(
            rng.integers(16, 6000))
        fast = simulate_gemm(hw, m, k, n, w_bits=16, residency=residency)
        from accelsim.precision import WeightFormat
        ref = _gemm_general(hw, m, k, n, 16, 16, float(WeightFormat(16).storage_bytes(n, k)),
                            SimOptions(residency=residency), SimOptions().check(hw))
        a, b = fast.to_dict(ops=True), ref.to_dict(ops=True)
        for key in ("cycles", "compute_cycles", "energy_j", "offchip_bytes",
                    "onchip_bytes_moved"):
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-15), (key, m, k, n)
        assert a["bytes_by_level"] == pytest.approx(b["bytes_by_level"])


def test_only_gpu_presets_have_a_cache_by_default():
    for entry in list_hw():
        name = entry["name"]
        hw = load_hw(name)
        if hw.kind == "gpu":
            assert hw.memory[hw.cache_level].name == "l2", name
        else:
            assert hw.cache_level == -1, name


def test_the_planner_places_nothing_in_a_cache():
    from accelsim.sim import memory_plan
    from accelsim.workload import Scenario, build_graph, load_workload
    g = build_graph(load_workload("olmoe-1b-7b"), Scenario(phase="decode", batch=1,
                                                            context=128))
    h100 = load_hw("h100")
    x = [m.name for m in h100.memory].index("l2")
    assert h100.cache_level == x
    plan = memory_plan(h100, g)
    assert plan.weight_bytes_by_level[x] == 0.0 and plan.kv_bytes_by_level[x] == 0.0
    assert plan.act_reserve[x] == 0.0
    assert plan.cache_room == h100.memory[x].capacity_bytes
    d = yaml.safe_load((Path(__file__).resolve().parents[1] / "hwconfigs" /
                        "h100.yaml").read_text())
    d["memory"][x]["reuse"] = "scratchpad"
    pad = memory_plan(hw_from_dict(d), g)
    # a scratchpad L2 is a placement target again: hot weights fill it
    assert pad.weight_bytes_by_level[x] > 0.0 and pad.cache_room == 0.0


def test_cache_only_at_chip_scope():
    d = yaml.safe_load(CHIP.replace("REUSE", "cache"))
    d["memory"][0]["reuse"] = "cache"
    with pytest.raises(ConfigError, match="reuse"):
        hw_from_dict(d)
    d = yaml.safe_load(CHIP.replace("REUSE", "lru"))
    with pytest.raises(ConfigError, match="reuse"):
        hw_from_dict(d)
