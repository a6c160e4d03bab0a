"""Off-chip ports (``memory[].ports``): per kind of data its own bandwidth; transfers on
different ports overlap, on one port they queue. Without ports, and with one port serving
everything at the level's bandwidth, results are today's single stream exactly; the cycle
counts of a DRAM-bound GEMM are derived by hand from its transfers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from accelsim.config import read_mapping
from accelsim.errors import ConfigError
from accelsim.hw import hw_from_dict, load_hw
from accelsim.precision import BitAllocation
from accelsim.sim import simulate, simulate_gemm
from accelsim.workload import Scenario, build_graph, load_workload

ROOT = Path(__file__).resolve().parents[1]
ALL = ["weights", "activations", "outputs", "kv"]


def _hw(preset, ports=None, scratchpad_kib=None, dram_bpc=None):
    d = copy.deepcopy(dict(read_mapping(ROOT / "hwconfigs" / f"{preset}.yaml")))
    off = next(m for m in d["memory"] if m["scope"] == "offchip")
    if dram_bpc is not None:
        off["read_bandwidth"] = f"{dram_bpc} B/cycle"
    if scratchpad_kib is not None:
        next(m for m in d["memory"] if m["name"] == "scratchpad")["capacity"] = (
            f"{scratchpad_kib} KiB")
    if ports is not None:
        off["ports"] = ports
    return hw_from_dict(d)


def _same(a, b):
    assert a.cycles == b.cycles
    assert a.offchip_bytes == b.offchip_bytes
    assert a.bytes_by_level == b.bytes_by_level
    assert a.energy_j == b.energy_j
    assert a.busy_cycles == b.busy_cycles


def test_one_port_for_everything_is_the_single_stream():
    one = [{"name": "all", "read_bandwidth": "16 B/cycle", "serves": ALL}]
    for m, k, n in ((16, 4096, 14336), (64, 256, 256), (1024, 128, 128)):
        _same(simulate_gemm(_hw("gemmini", one), m, k, n, residency="offchip"),
              simulate_gemm(load_hw("gemmini"), m, k, n, residency="offchip"))
    h100 = load_hw("h100")
    bw = h100.offchip.read_bandwidth_bytes_per_s
    ported = _hw("h100", [{"name": "all", "read_bandwidth": f"{bw} B/s", "serves": ALL}])
    model = load_workload("mixtral-8x7b")
    g = build_graph(model, Scenario(phase="decode", batch=16, context=512))
    a = BitAllocation.uniform(model, 4)
    _same(simulate(ported, g, a), simulate(h100, g, a))


# 16 x 4096 x 256 on gemmini with 16 KiB of scratchpad, all of it for tiles: K splits (no
# 4096-deep tile fits, tests/test_sim_reuse.py), so for every one of the N / Nt n
# blocks the weights and the activations stream tile by tile. At 2 B/cycle each transfer (120
# cycles of setup and latency + bytes / 2) outlasts the tile's compute, so the DMA decides.
M, K, N = 16, 4096, 256
WB = 1 + 3 / 128          # int8 weights + 3 B of scale and zero point per 128


def _run(ports):
    hw = _hw("gemmini", ports, scratchpad_kib=16, dram_bpc=2)
    r = simulate_gemm(hw, M, K, N, w_bits=8, residency="offchip", staging_fraction=1.0)
    mt, kt, nt = r.op_data["tiles"][0]
    assert mt == M and kt < K and nt <= N
    return r, kt, nt


def _tail(kt, nt):
    """The last tile's compute: the longer of the scratchpad feed (16 B/cycle: its weights
    once, its activations once per 16-column fold) and the 16 x 16 array's folds
    (ceil(Kt/16) ceil(Nt/16) folds of 2R + C + M - 2 cycles, SCALE-Sim's model)."""
    folds = -(-int(kt) // 16) * -(-int(nt) // 16) * (2 * 16 + 16 + M - 2)
    return max((kt * nt * WB + M * kt * -(-int(nt) // 16)) / 16, folds)


def _terms(kt, nt):
    """(k tiles, n blocks, one weight tile, one activation tile, one output block) at 2
    B/cycle, each transfer 120 cycles of setup and latency + bytes / 2."""
    return (-(-K // int(kt)), N // int(nt), 120 + kt * nt * WB / 2, 120 + M * kt / 2,
            120 + M * nt / 2)


def test_weights_and_activations_on_two_ports_overlap():
    r1, kt, nt = _run(None)
    nk, nn, tw, ta, ts = _terms(kt, nt)
    # one stream: every transfer queues; the loads of a tile add up
    one = nn * nk * (tw + ta) + nn * ts
    assert one <= r1.cycles <= one + _tail(kt, nt)
    # weights on one 2 B/cycle port, activations and outputs on another: a tile's loads
    # overlap (the longer counts); stores share the load stream. The menu may pick another
    # tile for it: the formula takes the tile it picked
    two = [{"name": "w", "read_bandwidth": "2 B/cycle", "serves": ["weights"]},
           {"name": "x", "read_bandwidth": "2 B/cycle",
            "serves": ["activations", "outputs", "kv"]}]
    r2, kt2, nt2 = _run(two)
    nk2, nn2, tw2, ta2, ts2 = _terms(kt2, nt2)
    both = nn2 * nk2 * max(tw2, ta2) + nn2 * ts2
    assert both <= r2.cycles <= both + _tail(kt2, nt2)
    assert r2.cycles < r1.cycles
    # bytes: weights once, activations once per n block; the off-chip level is busy for
    # the busier port only
    w_bytes = K * N * WB
    x1, x2 = nn * M * K + M * N, nn2 * M * K + M * N
    assert r1.offchip_bytes == pytest.approx(w_bytes + x1)
    assert r2.offchip_bytes == pytest.approx(w_bytes + x2)
    assert r2.busy_cycles["offchip_bandwidth"] == pytest.approx(max(w_bytes, x2) / 2)
    assert r1.busy_cycles["offchip_bandwidth"] == pytest.approx((w_bytes + x1) / 2)


def test_three_ports_and_a_slow_activation_port():
    # activations on a 1 B/cycle port of their own, outputs on a third: the activation
    # port is slow, and stores run beside the loads: a tile's loads overlap (the longer
    # counts; the menu may pick a tile whose weights are the longer)
    three = [{"name": "w", "read_bandwidth": "2 B/cycle", "serves": ["weights", "kv"]},
             {"name": "a", "read_bandwidth": "1 B/cycle", "serves": ["activations"]},
             {"name": "o", "read_bandwidth": "2 B/cycle", "serves": ["outputs"]}]
    r, kt, nt = _run(three)
    nk, nn = -(-K // int(kt)), N // int(nt)
    tw = 120 + kt * nt * WB / 2
    ta = 120 + M * kt / 1
    tail = _tail(kt, nt) + 120 + M * nt / 2     # + the last store
    loads = nn * nk * max(tw, ta)
    assert loads <= r.cycles <= loads + tail


@pytest.mark.parametrize("ports,reason", [
    ([{"name": "w", "read_bandwidth": "2 B/cycle", "serves": ["weights"]}],
     "none serves: activations, outputs, kv"),
    ([{"name": "a", "read_bandwidth": "2 B/cycle", "serves": ALL},
      {"name": "b", "read_bandwidth": "2 B/cycle", "serves": ["kv"]}], "served twice: kv"),
    ([{"name": "a", "read_bandwidth": "2 B/cycle", "serves": ALL},
      {"name": "a", "read_bandwidth": "2 B/cycle", "serves": ["kv"]}], "repeated: a"),
    ([{"name": "a", "read_bandwidth": "fast", "serves": ALL}], "bandwidth"),
    ([{"name": "a", "read_bandwidth": "2 B/cycle", "serves": ["weights", "acts"]}], "acts"),
])
def test_bad_ports_are_config_errors(ports, reason):
    with pytest.raises(ConfigError) as ei:
        _hw("gemmini", ports)
    assert reason in str(ei.value) and "ports" in str(ei.value)


def test_ports_only_off_chip():
    d = copy.deepcopy(dict(read_mapping(ROOT / "hwconfigs" / "gemmini.yaml")))
    d["memory"][1]["ports"] = [{"name": "a", "read_bandwidth": "2 B/cycle",
                                "serves": ["weights", "activations"]}]
    with pytest.raises(ConfigError, match="only an offchip level has ports"):
        hw_from_dict(d, file="x.yaml")
