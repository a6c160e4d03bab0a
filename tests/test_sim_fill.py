"""The MAC array's fill modes (``cores.mac_array.fill``, docs/hwconfig.md "Fill modes"):
fold cycles derived by hand for small shapes, the order none <= overlapped <= per_fold, the
pipeline with every mode against its plain-Python reference, and the schema."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from accelsim.config import read_mapping
from accelsim.errors import ConfigError
from accelsim.hw import load_hw
from accelsim.precision import WeightFormat
from accelsim.presets import resolve
from accelsim.sim import engine as E
from accelsim.sim import simulate_gemm
from accelsim.sim.core import SimOptions, _gemm_general

FILLS = (E.PER_FOLD, E.OVERLAPPED, E.NO_FILL)


# Hand derivations. A tile is F folds of stream length L; H = R steps to shift a fold's weights
# in (weight-stationary) or its outputs out (output-stationary); S = R + C - 2 skew fill/drain.
#   per_fold:   every fold H + S + L                       -> F (H + S + L)
#   overlapped: first H, folds start every max(L, H), the last one streams L and drains S
#                                                          -> H + S + L + (F - 1) max(L, H)
#   none:       one step per input vector and R x C block -> F L
# and every step takes s = cycles_per_mac cycles when that is >= 1.
@pytest.mark.parametrize("df,m,k,n,cpm,want", [
    # WS, 4x4 array, 2 rows, 8 x 8 weights: F = 2 * 2 = 4, L = 2, H = 4, S = 6.
    # overlapped: weights in at 4, folds start at 4, 8, 12, 16; the last streams to 18 and
    # drains 6 more: 24.
    (E.WS, 2, 8, 8, 1.0, (4 * 12, 24, 8)),
    # WS, 10 rows (L > H): F = 2 * 1 = 2; per fold 4 + 6 + 10 = 20; overlapped 20 + 10 = 30.
    (E.WS, 10, 8, 4, 1.0, (40, 30, 20)),
    # bit-serial c = 2: every step takes 2 cycles.
    (E.WS, 2, 8, 8, 2.0, (96, 48, 16)),
    # packed c = 0.5: K = 16 fills 8 array rows, F = ceil(16 * 0.5 / 4) * 2 = 4, as the first.
    (E.WS, 2, 16, 8, 0.5, (48, 24, 8)),
    # OS, 8 x 8 outputs on 4 x 4: F = 4, L = K = 10, H = 4 (outputs shift out), S = 6:
    # per fold 20; overlapped 20 + 3 * 10 = 50; none 40.
    (E.OS, 8, 10, 8, 1.0, (80, 50, 40)),
    # OS, c = 3: x3.
    (E.OS, 8, 10, 8, 3.0, (240, 150, 120)),
    # OS packed c = 0.25: L = 8 * 0.25 = 2 < H: overlapped 4 + 6 + 2 + 3 * 4 = 24; none 8.
    (E.OS, 8, 8, 8, 0.25, (4 * 12, 24, 8)),
])
def test_fold_cycles_by_hand(df, m, k, n, cpm, want):
    got = tuple(E.fold_cycles(df, 4, 4, float(m), float(k), float(n), cpm, f) for f in FILLS)
    assert got == want


def test_one_fold_costs_the_same_in_both_systolic_modes():
    # a single fold has nothing to overlap with: 2R + C + L - 2 either way
    for df, m, k, n in ((E.WS, 5.0, 16.0, 8.0), (E.OS, 16.0, 7.0, 8.0)):
        per = E.fold_cycles(df, 16, 8, m, k, n, 1.0, E.PER_FOLD)
        assert per == 2 * 16 + 8 + (m if df == E.WS else k) - 2
        assert E.fold_cycles(df, 16, 8, m, k, n, 1.0, E.OVERLAPPED) == per


def test_default_is_scalesim_per_fold():
    for df in (E.WS, E.OS):
        for cpm in (0.25, 1.0, 4.0):
            assert (E.fold_cycles(df, 16, 16, 7.0, 300.0, 65.0, cpm)
                    == E.fold_cycles(df, 16, 16, 7.0, 300.0, 65.0, cpm, E.PER_FOLD))
    assert E.fold_cycles(E.WS, 32, 32, 1.0, 4096.0, 4096.0, 1.0) == 128 * 128 * 95


def test_fold_cycles_order_of_the_modes():
    rng = np.random.default_rng(13)
    for _ in range(300):
        R, C = int(rng.integers(1, 70)), int(rng.integers(1, 70))
        m, k, n = (float(rng.integers(1, 3000)) for _ in range(3))
        cpm = float(rng.choice([0.125, 0.25, 0.5, 1.0, 2.0, 3.0, 8.0]))
        df = int(rng.integers(0, 2))
        per, ov, no = (E.fold_cycles(df, R, C, m, k, n, cpm, f) for f in FILLS)
        assert no <= ov <= per
        # never faster than the PEs' peak: MACs x cycles per MAC over R x C
        assert no >= m * k * n * cpm / (R * C) * (1 - 1e-12)


def _case(rng):
    R, C = int(rng.choice([4, 8, 16])), int(rng.choice([4, 8, 16]))
    M = float(rng.choice([rng.integers(1, 50), rng.uniform(1, 40)]))
    K, N = int(rng.integers(1, 200)), int(rng.integers(1, 200))
    ms, ks, ns = E.tile_candidates(M, K, N, R, C)
    j = int(rng.integers(0, len(ks)))
    Kt = float(min(K, math.ceil(max(ks[j], K / 8))))
    Nt = float(min(N, math.ceil(max(ns[j], N / 8))))
    z = lambda: 0.0 if rng.random() < 0.3 else float(rng.uniform(0.0, 200.0))
    w_fix, a_fix, o_fix = z(), z(), z()
    pb = lambda fix: 0.0 if fix == 0 else float(rng.uniform(0.001, 0.5))
    return (int(rng.integers(0, 2)), M, K, N, float(rng.choice(ms)), Kt, Nt, R, C,
            float(rng.choice([0.25, 0.5, 1.0, 2.0])), float(rng.uniform(0.1, 2)),
            float(rng.uniform(0.1, 2)), float(rng.uniform(0.1, 2)), w_fix, pb(w_fix), a_fix,
            pb(a_fix), o_fix, pb(o_fix), int(rng.integers(0, 4)))


def test_pipeline_with_every_fill_mode_equals_reference_and_is_ordered():
    rng = np.random.default_rng(17)
    for _ in range(60):
        args = _case(rng)
        feed = (0.0, 0.0, True) if rng.random() < 0.5 else (
            float(rng.uniform(0.01, 0.2)), float(rng.uniform(0.01, 0.2)), bool(rng.random() < .5))
        keep = bool(rng.random() < 0.5)
        times = []
        for f in FILLS:
            closed = E.pipeline(*args, False, *feed, keep, f)
            full = E.pipeline(*args, True, *feed, keep, f)
            ref = E.pipeline_reference(*args, *feed, keep, f)
            assert closed[:5] == pytest.approx(full[:5], rel=1e-9), (args, f)
            assert full[0] == pytest.approx(ref[0], rel=1e-12), (args, f)
            assert full[1] == pytest.approx(ref[1], rel=1e-12), (args, f)
            assert E._lower_bound(*args, *feed, keep, f) <= closed[0] * (1 + 1e-12)
            times.append(closed[0])
        # the same tiles with cheaper compute finish no later (the recurrence is monotone)
        assert times[2] <= times[1] * (1 + 1e-12) and times[1] <= times[0] * (1 + 1e-12)


def _with_fill(name, fill):
    d = copy.deepcopy(read_mapping(resolve(name, "hw"), what="accelerator file"))
    d["cores"]["mac_array"]["fill"] = fill
    return load_hw(d)


@pytest.mark.parametrize("name", ["gemmini", "northpole"])
def test_fast_path_equals_general_path_and_modes_are_ordered(name):
    hws = {f: _with_fill(name, f) for f in E.FILLS}
    for m, k, n in ((1.0, 2048, 1024), (48.0, 512, 3000)):
        cyc = []
        for f, hw in hws.items():
            fast = simulate_gemm(hw, m, k, n, w_bits=8)
            ref = _gemm_general(hw, m, k, n, 8, 8, float(WeightFormat(8).storage_bytes(n, k)),
                                SimOptions(), SimOptions().check(hw))
            for key in ("cycles", "compute_cycles", "offchip_bytes"):
                assert getattr(fast, key) == pytest.approx(getattr(ref, key), rel=1e-9), (f, key)
            cyc.append(fast.cycles)
        assert cyc[2] <= cyc[1] * (1 + 1e-12) and cyc[1] <= cyc[0] * (1 + 1e-12), cyc
    # the preset's own value is the per_fold default or a mode named in the file
    assert load_hw(name).cores.mac_array.fill in E.FILLS


def test_decode_gemm_on_northpole_by_hand():
    # one token, 1024 x 1024 int8, weights resident in the cores: the chosen tiling's compute
    # cycles (summed over its tiles) follow each mode's formula on the 32 x 32 array
    for f in E.FILLS:
        r = simulate_gemm(_with_fill("northpole", f), 1.0, 1024, 1024, w_bits=8)
        op = r.ops.iloc[0]
        mt, kt, nt = op.tile_m, op.tile_k, op.tile_n
        tiles = math.ceil(1024 / kt) * math.ceil(1024 / nt)
        F = math.ceil(kt / 32) * math.ceil(nt / 32)
        per_tile = {"per_fold": F * (2 * 32 + 32 + mt - 2),
                    "overlapped": 2 * 32 + 32 + mt - 2 + (F - 1) * max(mt, 32),
                    "none": F * mt}[f]
        assert mt == 1
        assert r.compute_cycles == pytest.approx(tiles * per_tile), f


@pytest.mark.parametrize("bad", ["double", "", 1, None, ["none"], "Per_Fold"])
def test_schema_rejects_bad_fill(bad):
    d = copy.deepcopy(read_mapping(resolve("gemmini", "hw"), what="accelerator file"))
    d["cores"]["mac_array"]["fill"] = bad
    with pytest.raises(ConfigError) as e:
        load_hw(d)
    msg = str(e.value)
    assert "cores.mac_array.fill" in msg and "per_fold" in msg, msg
    assert len(msg.strip().splitlines()) == 1


def test_cli_bad_fill_is_one_line_exit_2(tmp_path, run_cli):
    text = resolve("gemmini", "hw").read_text().replace(
        "accumulator_bits:", "fill: systolic\n    accumulator_bits:", 1)
    assert "fill: systolic" in text
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    rc, out, err = run_cli("hw", "show", str(p))
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "bad.yaml" in lines[0] and "cores.mac_array.fill" in lines[0]


def test_fill_is_a_sweepable_hardware_override():
    from accelsim.sweep import run_sweep, sweep_from_dict

    spec = sweep_from_dict({"fixed": {"hw": "gemmini", "dataflow": "weight_stationary",
                                      "gemm": "64,256,256", "avg_bits": 8},
                            "axes": [{"grid": {"hw.cores.mac_array.fill": list(E.FILLS)}}]})
    t = run_sweep(spec).table.set_index("hw.cores.mac_array.fill")["compute_cycles"]
    # 16 x 16 folds of the 16 x 16 array, 64 rows: SCALE-Sim 256 x (32 + 16 + 64 - 2); with no
    # fill 256 x 64 whatever the tiling (K and N are multiples of 16); overlapped in between
    assert t["per_fold"] == 256 * 110
    assert t["none"] == 256 * 64
    assert t["none"] < t["overlapped"] < t["per_fold"]
    with pytest.raises(ConfigError, match=r"hw\.cores\.mac_array\.fill"):
        sweep_from_dict({"fixed": {"hw": "gemmini", "gemm": "64,256,256", "avg_bits": 8,
                                   "hw.cores.mac_array.fill": "double"}})
