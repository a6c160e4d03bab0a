"""The measured set, the efficiency model and ``accelsim fidelity`` (issue 13)."""

import csv
import json

import pytest

import accelsim
from accelsim.config import read_mapping
from accelsim.errors import ConfigError, DoesNotFitError
from accelsim.fidelity import (CSV_COLUMNS, ErrorRow, load_measured, run_fidelity,
                               summarize, write_report)
from accelsim.fidelity.measured import METRICS
from accelsim.hw import hw_from_dict, load_hw
from accelsim.presets import list_presets
from accelsim.sim.result import TOTAL_KEYS

CONTRACT = ("row", "hardware", "model", "metric", "measured", "predicted", "rel_error",
            "split")
#: presets whose efficiency section is calibrated on the measured set
CALIBRATED = ("h100", "a100", "l40s", "northpole")


@pytest.fixture(scope="module")
def measured():
    return load_measured()


@pytest.fixture(scope="module")
def report(measured):
    return run_fidelity(measured)


# ----------------------------------------------------------------------------- the set
def test_measured_set_has_enough_rows_sources_and_both_splits(measured):
    rows = measured.rows
    assert len(rows) >= 12
    assert len({r.hardware for r in rows}) >= 4
    assert {r.split for r in rows} == {"calibration", "held-out"}
    for r in rows:
        assert r.source.title and r.source.venue and r.source.where, r.id
        assert any(k in METRICS for k in r.measured), r.id
        load_hw(r.hardware)
        accelsim.load_workload(r.model)


def test_every_calibrated_preset_names_calibration_rows_of_its_own(measured):
    for name in CALIBRATED:
        eff = load_hw(name).efficiency
        assert eff is not None and eff.calibrated_on, name
        for rid in eff.calibrated_on:
            row = measured.row(rid)
            assert row.hardware == name and row.split == "calibration", rid
        # and every calibration row of that hardware is listed
        assert {r.id for r in measured.rows if r.hardware == name
                and r.split == "calibration"} == set(eff.calibrated_on)


def test_bad_measured_file_names_file_and_key(tmp_path):
    data = read_mapping(list_presets("measured")["measured"])
    data["rows"][0]["batch"] = -3
    data["rows"][1]["split"] = "train"
    p = tmp_path / "m.yaml"
    import yaml
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_measured(p)
    keys = {pr.key for pr in info.value.problems}
    assert "rows[0].batch" in keys and "rows[1].split" in keys
    assert all(pr.file == str(p) for pr in info.value.problems)


# ----------------------------------------------------------------------------- the report
def test_every_row_runs_and_gives_finite_positive_predictions(report, measured):
    assert {r.row for r in report.rows} | {b.row for b in report.bounds} <= {
        r.id for r in measured.rows}
    assert report.rows
    for r in report.rows:
        assert r.predicted > 0 and r.measured > 0


def test_rel_error_formula_on_a_constructed_row():
    r = ErrorRow("x", "h100", "m", "tokens_per_s", measured=200.0, predicted=150.0,
                 split="held-out")
    assert r.rel_error == pytest.approx((150.0 - 200.0) / 200.0) == -0.25
    s = summarize([r, ErrorRow("y", "h100", "m", "ttft_s", 0.01, 0.011, "calibration")])
    assert s["h100"]["held-out"]["median_abs_error"] == pytest.approx(0.25)
    assert s["overall"]["all"]["max_abs_error"] == pytest.approx(0.25)
    assert s["overall"]["calibration"]["n"] == 1


def test_report_files_and_csv_contract(report, tmp_path):
    paths = write_report(report, tmp_path / "out")
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert set(CONTRACT) <= set(rows[0]) and tuple(CSV_COLUMNS[:8]) == CONTRACT
    assert len(rows) == len(report.rows)
    for row, er in zip(rows, report.rows):
        m, p = float(row["measured"]), float(row["predicted"])
        assert float(row["rel_error"]) == pytest.approx((p - m) / m)
        assert row["split"] in ("calibration", "held-out")
    assert paths["png"].stat().st_size > 1000
    assert "| row | hardware |" in paths["md"].read_text()


def test_cli_json_and_bad_input(run_cli, tmp_path):
    rc, out, err = run_cli("fidelity", "--row", "trtllm-h100-llama7b-ttft-128",
                           "--format", "json")
    assert rc == 0, err
    d = json.loads(out)
    assert [r["row"] for r in d["rows"]] == ["trtllm-h100-llama7b-ttft-128"]
    assert d["summary"]["h100"]["calibration"]["n"] == 1
    rc, out, err = run_cli("fidelity", "--measured", str(tmp_path / "nope.yaml"))
    assert rc == 2 and out == "" and err.count("\n") == 1 and "nope.yaml" in err
    rc, out, err = run_cli("fidelity", "--row", "no-such-row")
    assert rc == 2 and out == "" and err.count("\n") == 1 and "no-such-row" in err


# ----------------------------------------------------------------------------- ideal
def _without_efficiency(name):
    d = read_mapping(list_presets("hw")[name])
    d.pop("efficiency")
    return hw_from_dict(d)


def _steps():
    m = accelsim.load_workload("llama-2-7b")
    a = accelsim.BitAllocation.uniform(m, 8, activation_bits=8, kv_bits=8)
    return [(accelsim.build_graph(m, accelsim.Scenario(phase=ph, batch=b, seq_len=s,
                                                        context=c)), a)
            for ph, b, s, c in (("decode", 1, 1, 300), ("prefill", 2, 64, 0),
                                ("decode", 32, 1, 1000))]


@pytest.mark.parametrize("name", CALIBRATED)
def test_ideal_is_exactly_the_model_without_efficiency(name):
    hw, bare = load_hw(name), _without_efficiency(name)
    for g, a in _steps():
        try:
            ideal = accelsim.simulate(hw, g, a, ideal=True)
        except DoesNotFitError:
            continue
        ref = accelsim.simulate(bare, g, a)
        for k in TOTAL_KEYS:
            assert getattr(ideal, k) == getattr(ref, k), (name, k)
        assert ideal.energy_breakdown_j == ref.energy_breakdown_j


def test_ideal_h100_mixtral_int8_batch1_is_the_issue_number():
    """Issue 13 quotes the ideal roofline: Mixtral-8x7B INT8 at batch 1 on one H100 comes out
    at 3.96 ms per token (252 tokens/s)."""
    m = accelsim.load_workload("mixtral-8x7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=1, context=512))
    r = accelsim.simulate("h100", g, accelsim.BitAllocation.uniform(m, 8), ideal=True)
    assert r.latency_s == pytest.approx(3.96e-3, abs=0.005e-3)
    assert accelsim.sim.simulate_gemm("h100", 1, 4096, 4096, ideal=True).latency_s < (
        accelsim.sim.simulate_gemm("h100", 1, 4096, 4096).latency_s)


@pytest.mark.parametrize("name", CALIBRATED)
def test_calibration_never_beats_the_roofline(name):
    hw = load_hw(name)
    eff = hw.efficiency
    assert eff.offchip_bandwidth <= 1.0 and eff.mac_rate <= 1.0
    assert eff.kernel_overhead_s >= 0.0 and eff.step_overhead_s >= 0.0
    for g, a in _steps():
        try:
            ideal = accelsim.simulate(hw, g, a, ideal=True)
        except DoesNotFitError:
            continue
        real = accelsim.simulate(hw, g, a)
        assert real.latency_s >= ideal.latency_s * (1 - 1e-12)
        assert real.layer_latency_s.sum() == pytest.approx(real.latency_s, rel=1e-9)
    for m, k, n in ((1, 4096, 4096), (512, 4096, 11008)):
        assert accelsim.sim.simulate_gemm(hw, m, k, n).latency_s >= (
            accelsim.sim.simulate_gemm(hw, m, k, n, ideal=True).latency_s * (1 - 1e-12))


@pytest.mark.parametrize("key,value", [("offchip_bandwidth", 1.2), ("mac_rate", 0.0),
                                       ("kernel_overhead", "-1 us")])
def test_efficiency_cannot_speed_a_chip_up(key, value):
    d = read_mapping(list_presets("hw")["h100"])
    d["efficiency"] = dict(d["efficiency"], **{key: value})
    with pytest.raises(ConfigError) as info:
        hw_from_dict(d, file="h100.yaml")
    assert info.value.problems[0].key == f"efficiency.{key}"


def test_overheads_add_exactly_kernel_and_step_time():
    """A one-GEMM step pays one kernel and one step overhead on top of the ideal time."""
    d = read_mapping(list_presets("hw")["gemmini"])
    d["efficiency"] = {"kernel_overhead": "3 us", "step_overhead": "10 us"}
    hw = hw_from_dict(d)
    base = accelsim.sim.simulate_gemm(hw, 64, 256, 256, ideal=True)
    r = accelsim.sim.simulate_gemm(hw, 64, 256, 256)
    assert r.latency_s == pytest.approx(base.latency_s + 13e-6, rel=1e-9)
    assert r.energy_j == pytest.approx(base.energy_j + hw.energy.static_power_w * 13e-6)


# ----------------------------------------------------------------------------- validate
def test_error_by_kind_matches_the_report_and_feeds_the_latency_claims(report):
    from accelsim.fidelity import error_by_kind
    from accelsim.report.claims import _fidelity_note
    by = error_by_kind()
    s = report.summary()
    assert set(by) == {r.hardware for r in report.rows}
    for kind, e in by.items():
        assert e == s[kind]["all"]
    note = _fidelity_note("h100")
    assert f"median {100 * by['h100']['median_abs_error']:.0f}%" in note
    assert "unknown" in _fidelity_note("gemmini")


def test_simulate_cli_ideal_flag(run_cli):
    args = ("simulate", "--hw", "h100", "--workload", "llama-2-7b", "--bits", "8",
            "--format", "json")
    rc, out, err = run_cli(*args, "--ideal")
    assert rc == 0, err
    ideal = json.loads(out)
    m = accelsim.load_workload("llama-2-7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=1))
    ref = accelsim.simulate("h100", g, accelsim.BitAllocation.uniform(m, 8), ideal=True)
    assert ideal["latency_s"] == ref.latency_s
    rc, out, _ = run_cli(*args)
    assert json.loads(out)["latency_s"] > ideal["latency_s"]
