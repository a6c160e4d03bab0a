"""Sweep specs: expansion (grid, zip, fixed, seeds), hardware overrides, and bad input."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from accelsim.errors import ConfigError
from accelsim.sweep import apply_overrides, build_hw, load_sweep, parse_key_path, sweep_from_dict
from accelsim.sweep.overrides import OverrideError

from _toys import TINY_HW, TOY_WL

BASE = {"workload": "mixtral-8x7b", "hw": "gemmini"}


def _problems(data, **kw):
    with pytest.raises(ConfigError) as ei:
        sweep_from_dict(data, file="s.yaml", **kw)
    return [(p.key, p.reason, p.file) for p in ei.value.problems]


def _has(problems, key, reason):
    assert any(k == key and reason in r for k, r, _ in problems), problems


# ----------------------------------------------------------------------------- expansion


def test_grid_is_the_cartesian_product_last_parameter_fastest():
    spec = sweep_from_dict({"fixed": {"workload": "mixtral-8x7b"},
                            "axes": [{"grid": {"hw": ["gemmini", "spyre"],
                                               "avg_bits": [2, 4, 8]}}]})
    got = [(p.columns["hw"], p.columns["avg_bits"]) for p in spec.points]
    assert got == list(itertools.product(["gemmini", "spyre"], [2.0, 4.0, 8.0]))
    assert [p.id for p in spec.points] == list(range(6))


def test_zip_pairs_and_blocks_multiply_first_block_outermost():
    spec = sweep_from_dict({"fixed": BASE,
                            "axes": [{"zip": {"batch": [1, 8, 64], "context": [4096, 1024, 128]}},
                                     {"grid": {"avg_bits": [3, 4]}}]})
    got = [(p.columns["batch"], p.columns["context"], p.columns["avg_bits"])
           for p in spec.points]
    assert got == [(b, c, a) for b, c in [(1, 4096), (8, 1024), (64, 128)] for a in (3.0, 4.0)]


def test_fixed_only_spec_is_one_point_with_defaults():
    spec = sweep_from_dict({"fixed": {**BASE, "avg_bits": 4}})
    assert len(spec) == 1
    p = spec.points[0]
    assert p.params["method"] == "uniform" and p.params["phase"] == "decode"
    assert p.params["batch"] == 1 and p.params["kv_bits"] == 16


def test_columns_always_name_hw_workload_method_avg_bits_and_every_given_parameter():
    spec = sweep_from_dict({"fixed": {**BASE, "routing": "zipf:1.2"},
                            "axes": [{"grid": {"avg_bits": [4], "hw.cores.mac_array.rows":
                                               [16, 32]}}]})
    for col in ("point_id", "hw", "workload", "method", "avg_bits", "routing",
                "hw.cores.mac_array.rows", "seed"):
        assert col in spec.columns
    assert "kv_bits" not in spec.columns  # never mentioned, not swept
    assert [p.columns["hw.cores.mac_array.rows"] for p in spec.points] == [16, 32]


def test_seed_defaults_to_the_spec_seed_and_can_be_swept():
    spec = sweep_from_dict({"seed": 7, "fixed": {**BASE, "avg_bits": 4}})
    assert spec.points[0].seed == 7 and spec.points[0].columns["seed"] == 7
    spec = sweep_from_dict({"fixed": {**BASE, "avg_bits": 4},
                            "axes": [{"grid": {"seed": [0, 1, 2]}}]})
    assert [p.seed for p in spec.points] == [0, 1, 2]
    assert [p.params["seed"] for p in spec.points] == [0, 1, 2]


def test_levels_written_as_list_or_string_are_one_column_text():
    spec = sweep_from_dict({"fixed": {**BASE, "avg_bits": 3},
                            "axes": [{"grid": {"levels": [[2, 4, 3], "3,2"]}}]})
    assert [p.params["levels"] for p in spec.points] == [(4, 3, 2), (3, 2)]
    assert [p.columns["levels"] for p in spec.points] == ["4,3,2", "3,2"]


def test_override_column_mixing_numbers_and_text_becomes_text():
    spec = sweep_from_dict({"fixed": {**BASE, "avg_bits": 8},
                            "axes": [{"grid": {"hw.cores.mac_array.rows": [16, "32"]}}]})
    assert [p.columns["hw.cores.mac_array.rows"] for p in spec.points] == ["16", "32"]
    # the evaluation still gets the values as written
    assert spec.points[0].overrides == {"cores.mac_array.rows": 16}


def test_fingerprint_follows_the_points():
    a = sweep_from_dict({"fixed": BASE, "axes": [{"grid": {"avg_bits": [4, 8]}}]})
    b = sweep_from_dict({"fixed": BASE, "axes": [{"grid": {"avg_bits": [4, 8]}}]})
    c = sweep_from_dict({"fixed": BASE, "axes": [{"grid": {"avg_bits": [4, 6]}}]})
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_files_resolve_against_the_spec_directory(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "tiny.yaml").write_text(TINY_HW)
    (tmp_path / "cfg" / "toy.yaml").write_text(TOY_WL)
    spec_file = tmp_path / "cfg" / "s.yaml"
    spec_file.write_text("fixed: {workload: toy.yaml, hw: tiny.yaml, avg_bits: 4}\n")
    monkeypatch.chdir(tmp_path)  # not the spec's directory
    spec = load_sweep(spec_file)
    p = spec.points[0]
    assert p.columns["hw"] == "tiny.yaml"  # as written
    assert Path(p.params["hw"]) == (tmp_path / "cfg" / "tiny.yaml").resolve()
    assert build_hw(p.params["hw"]).name == "tiny"


# ----------------------------------------------------------------------------- overrides


def test_parse_key_path_forms():
    assert parse_key_path("cores.mac_array.rows") == ("cores", "mac_array", "rows")
    assert parse_key_path("memory[2].capacity") == ("memory", 2, "capacity")
    assert parse_key_path("memory[name=dram].latency") == ("memory", ("name", "dram"),
                                                             "latency")
    for bad in ("", "a..b", "a.", "[1].a", "a[x]", ".a", "a b"):
        with pytest.raises(OverrideError):
            parse_key_path(bad)


def test_overrides_change_only_their_key_and_validate():
    hw = build_hw("gemmini", (("cores.mac_array.rows", 32),
                              ("memory[name=dram].read_bandwidth", "64 GB/s"),
                              ("memory[1].capacity", "512 KiB")))
    base = build_hw("gemmini")
    assert hw.cores.mac_array.rows == 32 and base.cores.mac_array.rows == 16
    assert hw.offchip_bandwidth_bytes_per_s == 64e9
    assert hw.memory[1].capacity_bytes == 512 * 1024
    assert hw.cores.mac_array.cols == base.cores.mac_array.cols
    assert hw.memory[0] == base.memory[0]


def test_override_may_set_a_schema_key_the_file_leaves_at_default():
    hw = build_hw("gemmini", (("energy.mac_energy_8b", "0.5 pJ"),))
    assert hw.energy.mac_8b == pytest.approx(0.5e-12)


def test_apply_overrides_errors_name_what_is_missing():
    raw = {"memory": [{"name": "sram"}, {"name": "dram"}], "cores": {"count": 1}}
    for path, reason in [("memory[5].capacity", "has 2 item(s)"),
                         ("memory[name=dran].capacity", "did you mean 'dram'"),
                         ("cores.cont.x", "no key 'cont'"),
                         ("cores.count.x", "not a mapping"),
                         ("cores[0]", "not a list")]:
        with pytest.raises(OverrideError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            apply_overrides(raw, {path: 1})


# ----------------------------------------------------------------------------- bad input


def test_unknown_parameter_with_did_you_mean():
    probs = _problems({"fixed": BASE, "axes": [{"grid": {"avg_bit": [4]}}]})
    _has(probs, "axes[0].grid.avg_bit", "did you mean 'avg_bits'")
    assert all(f == "s.yaml" for _, _, f in probs)


def test_unknown_top_level_key():
    _has(_problems({"fixed": {**BASE, "avg_bits": 4}, "axis": []}), "axis",
         "did you mean 'axes'")


def test_required_parameters():
    probs = _problems({"fixed": {"workload": "mixtral-8x7b"}})
    _has(probs, "hw", "required")
    _has(probs, "avg_bits", "required")


def test_bad_values_are_all_reported_with_their_index():
    probs = _problems({"fixed": BASE, "axes": [{"grid": {
        "avg_bits": [4, 0, "x"], "batch": [1, 2.5], "phase": ["decod"],
        "levels": [[4, 3, 2], 4], "routing": ["zipf:abc"]}}]})
    _has(probs, "axes[0].grid.avg_bits[1]", "must be in 1..16")
    _has(probs, "axes[0].grid.avg_bits[2]", "must be a number")
    _has(probs, "axes[0].grid.batch[1]", "whole number")
    _has(probs, "axes[0].grid.phase[0]", "did you mean 'decode'")
    _has(probs, "axes[0].grid.levels[1]", "list of such lists")
    _has(probs, "axes[0].grid.routing[0]", "zipf needs a number")


def test_zip_lengths_duplicates_twice_set_empty_and_both_modes():
    probs = _problems({"fixed": BASE, "axes": [
        {"zip": {"batch": [1, 2], "context": [1, 2, 3]}},
        {"grid": {"avg_bits": [4, 4.0]}},
        {"grid": {"hw": ["spyre"], "method": []}},
        {"grid": {"seed": [1]}, "zip": {"kv_bits": [8]}}]})
    _has(probs, "axes[0].zip", "equal length (batch: 2, context: 3)")
    _has(probs, "axes[1].grid.avg_bits[1]", "repeats item 0")
    _has(probs, "axes[2].grid.hw", "already set at fixed.hw")
    _has(probs, "axes[2].grid.method", "at least one value")
    _has(probs, "axes[3]", "exactly one of 'grid' or 'zip'")


def test_unknown_preset_names_the_spec_key():
    probs = _problems({"fixed": {"workload": "mixtral-8x7b", "avg_bits": 4},
                       "axes": [{"grid": {"hw": ["gemmini", "gemini"]}}]})
    _has(probs, "axes[0].grid.hw[1]", "did you mean 'gemmini'")


def test_missing_override_path_names_the_sweep_file_and_the_override_key():
    probs = _problems({"fixed": {**BASE, "avg_bits": 4},
                       "axes": [{"grid": {"hw.memory[name=hbm].read_bandwidth": ["1 TB/s"],
                                          "hw.cores.mac_aray.rows": [32]}}]})
    _has(probs, "axes[0].grid.hw.memory[name=hbm].read_bandwidth[0]",
         "gemmini: no item of 'memory' has name=hbm")
    _has(probs, "axes[0].grid.hw.cores.mac_aray.rows[0]", "did you mean 'mac_array'")
    assert all(f == "s.yaml" for _, _, f in probs)


def test_invalid_override_value_names_the_override_key_and_the_hw_rule():
    probs = _problems({"fixed": {**BASE, "avg_bits": 4},
                       "axes": [{"grid": {"hw.cores.mac_array.rows": [32, 0],
                                          "hw.memory[name=dram].read_bandwidth":
                                              ["64 GB/s"]}}]})
    _has(probs, "axes[0].grid.hw.cores.mac_array.rows[1]",
         "gemmini: cores.mac_array.rows: must be >= 1")
    assert not any("read_bandwidth" in k for k, _, _ in probs), probs


def test_unknown_key_set_by_override_is_an_error():
    probs = _problems({"fixed": {**BASE, "avg_bits": 4, "hw.cores.mac_array.colums": 8}})
    _has(probs, "fixed.hw.cores.mac_array.colums", "unknown key (did you mean 'cols'?)")


def test_malformed_override_path():
    _has(_problems({"fixed": {**BASE, "avg_bits": 4, "hw.memory[x": 1}}), "fixed.hw.memory[x",
         "malformed key path")


def test_missing_spec_file_and_relative_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such sweep spec"):
        load_sweep(tmp_path / "nope.yaml")
    s = tmp_path / "s.yaml"
    s.write_text("fixed: {workload: mixtral-8x7b, hw: missing/hw.yaml, avg_bits: 4}\n")
    with pytest.raises(ConfigError) as ei:
        load_sweep(s)
    p = ei.value.problems[0]
    assert p.file == str(s) and p.key == "fixed.hw" and "no such file" in p.reason


# ----------------------------------------------------------------------------- examples, docs

ROOT = Path(__file__).resolve().parents[1]


def test_example_sweep_is_mixtral_on_three_presets_three_methods_three_bit_widths():
    from accelsim.presets import list_presets
    spec = load_sweep(ROOT / "examples" / "sweep.yaml")
    assert len(spec) >= 100
    cols = [p.columns for p in spec.points]
    assert {c["workload"] for c in cols} == {"mixtral-8x7b"}
    chips = {c["hw"] for c in cols}
    assert len(chips) >= 3 and chips <= set(list_presets("hw"))
    assert len({c["method"] for c in cols}) >= 3
    assert len({c["avg_bits"] for c in cols}) >= 3
    # every method at every width on every chip
    assert len({(c["hw"], c["method"], c["avg_bits"]) for c in cols}) == \
        len(chips) * len({c["method"] for c in cols}) * len({c["avg_bits"] for c in cols})


def test_hardware_example_validates():
    spec = load_sweep(ROOT / "examples" / "sweep-hardware.yaml")
    assert len(spec) == 24
    assert {p.overrides["cores.mac_array.rows"] for p in spec.points} == {8, 16, 32}


def test_gemm_example_validates():
    spec = load_sweep(ROOT / "examples" / "sweep-gemm.yaml")
    assert len(spec) == 27
    assert {p.params["gemm"] for p in spec.points} == {(1, 4096, 14336), (16, 4096, 14336),
                                                       (256, 4096, 14336)}


def test_docs_describe_every_parameter_and_column():
    from accelsim.sweep import METRICS, PARAMS
    text = (ROOT / "docs" / "sweeps.md").read_text()
    for name in [*PARAMS, *METRICS, "point_id", "error"]:
        assert f"`{name}`" in text, name


# ----------------------------------------------------------------------------- GEMM sweeps


def test_gemm_sweep_points_and_columns():
    spec = sweep_from_dict({"fixed": {"hw": "gemmini"},
                            "axes": [{"grid": {"gemm": ["64,256,256", [1, 4096, 14336]],
                                               "avg_bits": [4, 8]}}]})
    assert [(p.columns["gemm"], p.columns["avg_bits"]) for p in spec.points] == [
        ("64,256,256", 4.0), ("64,256,256", 8.0), ("1,4096,14336", 4.0), ("1,4096,14336", 8.0)]
    assert spec.points[2].params["gemm"] == (1, 4096, 14336)
    assert all(p.params["workload"] is None and p.columns["workload"] is None
               for p in spec.points)


def test_gemm_sweep_bad_input_names_the_key():
    probs = _problems({"fixed": {"hw": "gemmini", "workload": "mixtral-8x7b",
                                 "gemm": "64,256,256", "avg_bits": 4}})
    _has(probs, "fixed.gemm", "either a workload or one GEMM")
    probs = _problems({"fixed": {"hw": "gemmini"},
                       "axes": [{"grid": {"gemm": ["64,256,256", "1,2"], "avg_bits": [4]}}]})
    _has(probs, "axes[0].grid.gemm[1]", "must be M,K,N")
    assert not any(k == "workload" for k, _, _ in probs)     # no cascade
    probs = _problems({"fixed": {"hw": "gemmini", "gemm": "64,256,256"},
                       "axes": [{"grid": {"avg_bits": [2.5, 4],
                                          "method": ["uniform", "router-norm"]}}]})
    _has(probs, "axes[0].grid.avg_bits[0]", "a GEMM point needs a whole number of weight bits")
    _has(probs, "axes[0].grid.method[1]", "the method must be 'uniform'")
    probs = _problems({"fixed": {"hw": "gemmini", "avg_bits": 4}})
    _has(probs, "workload", "parameter 'workload' is required (or 'gemm' for one GEMM)")


def test_a_bad_override_value_blames_only_its_own_key():
    # memory[name=lpddr5] is memory[1] in spyre's file: the error on memory[1].read_bandwidth
    # belongs to that override alone, not to the rows override of the same point
    from accelsim.errors import ConfigError
    from accelsim.sweep import sweep_from_dict
    with pytest.raises(ConfigError) as e:
        sweep_from_dict({"fixed": {"workload": "mixtral-8x7b", "hw": "spyre", "avg_bits": 4},
                         "axes": [{"grid": {
                             "hw.memory[name=lpddr5].read_bandwidth": ["100 GB"],
                             "hw.cores.mac_array.rows": [8, 16]}}]})
    keys = {p.key for p in e.value.problems}
    assert all("read_bandwidth" in k for k in keys), keys
    assert "did you mean '100 GB/s'?" in str(e.value)
