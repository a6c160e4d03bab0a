"""docs/fidelity.csv, the side-by-side with SCALE-Sim written by
benchmarks/fidelity_scalesim.py, stays current with the simulator, and its SCALE-Sim columns
agree with SCALE-Sim's weight-stationary compute model (an independent check of the script's
report parsing). SCALE-Sim itself is not needed here."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest

from accelsim.config import read_mapping
from accelsim.hw import hw_from_dict, load_hw
from accelsim.sim import simulate_gemm

ROOT = Path(__file__).resolve().parents[1]
CSV_PATH = ROOT / "docs" / "fidelity.csv"
REFRESH = "rerun: python benchmarks/fidelity_scalesim.py --accelsim-only"


def _rows() -> list[dict]:
    with open(CSV_PATH, newline="") as f:
        return list(csv.DictReader(f))


ROWS = _rows() if CSV_PATH.exists() else []
IDS = [f"{r['config']}-{r['m']}x{r['k']}x{r['n']}" for r in ROWS]


def _shape(r: dict) -> tuple[int, int, int]:
    return int(r["m"]), int(r["k"]), int(r["n"])


def _hw(bytes_per_cycle: float):
    """gemmini with the recorded DRAM read bandwidth (the preset's own, or narrower)."""
    base = load_hw("gemmini")
    if bytes_per_cycle == base.offchip.read_bandwidth_bytes_per_s / base.clock_hz:
        return base
    d = copy.deepcopy(dict(read_mapping(ROOT / "hwconfigs" / "gemmini.yaml")))
    d["name"] = f"gemmini-dram{bytes_per_cycle:g}"
    next(lv for lv in d["memory"] if lv["scope"] == "offchip")["read_bandwidth"] = (
        f"{bytes_per_cycle:g} B/cycle")
    return hw_from_dict(d)


def _ws_folds_cycles(R: int, C: int, M: int, K: int, N: int) -> int:
    """SCALE-Sim weight-stationary: ceil(K/R) ceil(N/C) folds of 2R + C + M - 2 cycles."""
    return math.ceil(K / R) * math.ceil(N / C) * (2 * R + C + M - 2)


def test_table_exists_with_ten_shapes_and_memory_bound_points():
    assert CSV_PATH.exists(), "docs/fidelity.csv is missing: run benchmarks/fidelity_scalesim.py"
    shapes = {(r["config"],) + _shape(r) for r in ROWS}
    assert len(shapes) >= 10
    # some points must be limited by memory in both tools, not only by the array
    bound = [r for r in ROWS if float(r["as_stall_cycles"]) > 0.5 * float(r["as_compute_cycles"])
             and float(r["ss_end_to_end_cycles"]) > 1.5 * float(r["ss_compute_cycles"])]
    assert len(bound) >= 2
    assert {r["scalesim_version"] for r in ROWS} == {"2.0.2"}


@pytest.mark.parametrize("r", ROWS, ids=IDS)
def test_recorded_scalesim_compute_is_the_fold_formula(r):
    ma = load_hw("gemmini").cores.mac_array
    M, K, N = _shape(r)
    assert float(r["ss_compute_cycles"]) == _ws_folds_cycles(ma.rows, ma.cols, M, K, N)


@pytest.mark.parametrize("r", ROWS, ids=IDS)
def test_recorded_scalesim_reports_are_consistent(r):
    """Overall utilisation is MACs / (PEs x reported total cycles), and every operand crosses
    the DRAM interface at least once (SCALE-Sim pads to whole folds and may re-read)."""
    ma = load_hw("gemmini").cores.mac_array
    M, K, N = _shape(r)
    reported_total = float(r["ss_cycles"]) - 1          # SCALE-Sim counts cycles from 0
    assert float(r["ss_util"]) == pytest.approx(M * K * N / (ma.pes * reported_total),
                                                rel=1e-9)
    assert float(r["ss_dram_ifmap_read_bytes"]) >= M * K
    assert float(r["ss_dram_filter_read_bytes"]) >= K * N
    assert float(r["ss_dram_write_bytes"]) >= M * N
    assert float(r["ss_end_to_end_cycles"]) >= float(r["ss_compute_cycles"]) - 1


def _blocks(total: int, t: int) -> list[int]:
    n = math.ceil(total / t)
    return [t] * (n - 1) + [total - (n - 1) * t]


@pytest.mark.parametrize("r", ROWS, ids=IDS)
def test_accelsim_compute_matches_recorded_scalesim(r):
    """The side-by-side itself: the same fold count as SCALE-Sim while the M x 16 partial sums
    fit the 64 KiB accumulator double-buffered (M <= 512). Beyond, accelsim tiles M (its
    Mt x Nt 32-bit partial sums, double-buffered, must fit the accumulator) and every M block
    is one pass of SCALE-Sim's fold model, so compute is the fold formula summed over the
    blocks of the recorded tile: SCALE-Sim's count plus one fold fill (2R + C - 2) per extra
    block and fold."""
    ma = load_hw("gemmini").cores.mac_array
    R, C = ma.rows, ma.cols
    M, K, N = _shape(r)
    ss, acc = float(r["ss_compute_cycles"]), float(r["as_compute_cycles"])
    if M <= 512:
        assert acc == ss
        return
    mt, kt, nt = (int(x) for x in r["as_tile"].split("x"))
    assert 2 * mt * nt * ma.accumulator_bits // 8 <= 64 * 1024
    assert acc == sum(_ws_folds_cycles(R, C, mb, K, N) for mb in _blocks(M, mt))
    extra = (len(_blocks(M, mt)) - 1) * math.ceil(K / R) * math.ceil(N / C) * (2 * R + C - 2)
    assert acc == ss + extra


@pytest.mark.parametrize("r", ROWS, ids=IDS)
def test_recorded_accelsim_columns_are_current(r):
    M, K, N = _shape(r)
    hw = _hw(float(r["dram_bytes_per_cycle"]))
    res = simulate_gemm(hw, M, K, N, w_bits=8, a_bits=8, dataflow="weight_stationary",
                        residency="offchip", group_size=None)
    assert res.compute_cycles == float(r["as_compute_cycles"]), REFRESH
    assert res.cycles == pytest.approx(float(r["as_cycles"]), rel=1e-9), REFRESH
    reads = float(r["as_dram_read_bytes"]) + float(r["as_dram_write_bytes"])
    assert res.offchip_bytes == pytest.approx(reads, rel=1e-9), REFRESH
