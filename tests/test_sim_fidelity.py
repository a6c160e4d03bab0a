"""Fidelity against SCALE-Sim's weight-stationary compute model on the gemmini preset, and the
published cycle rules of each arithmetic kind (../shared/reference/hardware.md)."""

from __future__ import annotations

import math

import pytest

from accelsim.hw import hw_from_dict, load_hw
from accelsim.precision import WeightFormat
from accelsim.sim import simulate_gemm


# ----------------------------------------------------------------------------- SCALE-Sim
def scalesim_ws_cycles(R: int, C: int, M: int, K: int, N: int) -> int:
    """SCALE-Sim weight-stationary: folds = ceil(K/R) * ceil(N/C); per fold 2R + C + M - 2."""
    return math.ceil(K / R) * math.ceil(N / C) * (2 * R + C + M - 2)


@pytest.mark.parametrize("M,K,N", [(64, 256, 256), (1, 4096, 4096), (16, 4096, 14336),
                                   (100, 300, 500), (512, 1024, 1024), (7, 33, 65),
                                   (1024, 512, 512)])
def test_gemmini_compute_cycles_within_5_percent_of_scalesim(M, K, N):
    hw = load_hw("gemmini")
    R, C = hw.cores.mac_array.rows, hw.cores.mac_array.cols
    expected = scalesim_ws_cycles(R, C, M, K, N)
    r = simulate_gemm(hw, M, K, N, w_bits=8, dataflow="weight_stationary")
    assert abs(r.compute_cycles - expected) / expected <= 0.05
    if M <= 512:  # the 64 KiB accumulator holds every output row: the same folds exactly
        assert r.compute_cycles == expected


def test_cycles_are_compute_plus_stalls_and_respect_rooflines():
    hw = load_hw("gemmini")
    r = simulate_gemm(hw, 64, 4096, 4096, w_bits=8, dataflow="weight_stationary")
    assert r.cycles == pytest.approx(r.compute_cycles + r.stall_cycles)
    assert r.cycles >= 64 * 4096 * 4096 / 256
    assert r.latency_s >= r.offchip_bytes / hw.offchip_bandwidth_bytes_per_s


# ----------------------------------------------------------------------------- arithmetic
def _hw(arith: dict, wbits, abits, default_a=8, rows=16, cols=16) -> dict:
    return {
        "name": "t", "clock": "1 GHz",
        "cores": {"count": 1, "mac_array": {
            "rows": rows, "cols": cols, "arithmetic": arith, "weight_bits": wbits,
            "activation_bits": abits, "default_activation_bits": default_a,
            "dataflows": ["weight_stationary", "output_stationary"]}},
        "memory": [
            {"name": "l1", "scope": "core", "capacity": "64 MiB",
             "read_bandwidth": "1024 B/cycle", "read_energy": "1 pJ/B"},
            {"name": "dram", "scope": "offchip", "capacity": "64 GiB",
             "read_bandwidth": "64 B/cycle", "read_energy": "100 pJ/B"}],
    }


def _compute(hw, w, a, M=64, K=16 * 64, N=256):
    return simulate_gemm(hw, M, K, N, w_bits=w, a_bits=a,
                         dataflow="weight_stationary").compute_cycles


ALL = list(range(1, 17))


def test_stripes_time_scales_with_activation_bits():
    # Stripes: activations bit-serial, time ~ p_a / 16 of the 16-bit design
    hw = hw_from_dict(_hw({"kind": "bit_serial", "serial_operand": "activation",
                           "bits_per_cycle": 1, "parallel_bits": 16}, [16], ALL))
    base = _compute(hw, 16, 16)
    for pa in (1, 4, 7, 8, 12):
        assert _compute(hw, 16, pa) / base == pytest.approx(pa / 16)


@pytest.mark.parametrize("b", [1, 2])
def test_loom_time_is_product_of_serial_passes(b):
    # Loom: both operands serial, b bits per cycle: ceil(p_w / b) * ceil(p_a / b) per tile
    hw = hw_from_dict(_hw({"kind": "bit_serial", "serial_operand": "both",
                           "bits_per_cycle": b}, ALL, ALL))
    unit = _compute(hw, b, b)
    for pw, pa in ((2, 8), (3, 8), (4, 4), (8, 8), (5, 3)):
        assert _compute(hw, pw, pa) / unit == math.ceil(pw / b) * math.ceil(pa / b)


def test_bismo_cycles_scale_with_product_of_bits():
    # BISMO: cycles ~ M K N p_w p_a / (Dm Dk Dn) -> with enough rows, compute ~ MKN pw pa/(R C)
    hw = hw_from_dict(_hw({"kind": "bit_serial", "serial_operand": "both",
                           "bits_per_cycle": 1}, ALL, ALL))
    M, K, N = 4096, 256, 256
    for pw, pa in ((1, 1), (2, 3), (4, 8)):
        c = _compute(hw, pw, pa, M=M, K=K, N=N)
        assert c / (M * K * N * pw * pa / (16 * 16)) == pytest.approx(1.0, rel=0.02)


def test_unpu_weight_serial_scaling():
    # UNPU: weights bit-serial 1..16 bits; the cycle rule gives 16x from 16-bit to 1-bit (the
    # chip reports 345.6 -> 7372 GOPS, 21x, with extra gains the rule does not model)
    hw = hw_from_dict(_hw({"kind": "bit_serial", "serial_operand": "weight",
                           "bits_per_cycle": 1, "parallel_bits": 16}, ALL, ALL))
    assert _compute(hw, 16, 8) / _compute(hw, 1, 8) == 16
    assert 7372 / 345.6 >= 16


def test_bit_fusion_speedup_rule():
    # Bit Fusion: speed vs 8x8 = (8 / max(p_a, 2)) * (8 / max(p_w, 2)), widths rounded up to
    # powers of two; 16-bit operands 2x slower each
    hw = hw_from_dict(_hw({"kind": "bit_parallel", "rule": "fusion"}, ALL, ALL))
    base = _compute(hw, 8, 8)
    for pw, pa in ((2, 2), (4, 8), (2, 8), (1, 4), (3, 8), (8, 16), (16, 16)):
        rw, ra = 1 << math.ceil(math.log2(max(pw, 2))), 1 << math.ceil(math.log2(max(pa, 2)))
        speed = (8 / ra) * (8 / rw)
        assert base / _compute(hw, pw, pa) == pytest.approx(speed)


def test_halving_rule_doubles_per_halving_down_to_floor():
    # NorthPole / RaPiD: throughput doubles each time precision halves, down to min_bits
    hw = hw_from_dict(_hw({"kind": "bit_parallel", "rule": "halving", "native_bits": 8,
                           "min_bits": 2, "operands": "both"}, [2, 4, 8], [2, 4, 8]))
    base = _compute(hw, 8, 8)
    assert base / _compute(hw, 4, 4) == pytest.approx(2)
    assert base / _compute(hw, 2, 2) == pytest.approx(4)
    assert base / _compute(hw, 1, 2) == pytest.approx(4)      # floor at 2 bits
    assert base / _compute(hw, 4, 8) == pytest.approx(1)      # A8 sets the rate (both)


def test_fixed_arithmetic_gains_memory_only():
    hw = hw_from_dict(_hw({"kind": "fixed", "native_bits": 8}, [8], [8]))
    r8 = simulate_gemm(hw, 64, 1024, 256, w_bits=8, dataflow="weight_stationary")
    r4 = simulate_gemm(hw, 64, 1024, 256, w_bits=4, dataflow="weight_stationary")
    assert r4.compute_cycles == r8.compute_cycles
    assert r4.weight_bytes == WeightFormat(4).storage_bytes(256, 1024)
    assert r8.weight_bytes == WeightFormat(8).storage_bytes(256, 1024)
    assert r4.weight_bytes < 0.6 * r8.weight_bytes
