"""`accelsim --version`, `hw list|show|schema`, `workload list|show` contracts."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from accelsim import __version__
from accelsim.hw import hw_schema, list_hw
from accelsim.presets import list_presets


def test_version(run_cli):
    rc, out, _ = run_cli("--version")
    assert rc == 0 and __version__ in out


def test_hw_list_json(run_cli):
    rc, out, err = run_cli("hw", "list", "--format", "json")
    assert rc == 0, err
    rows = json.loads(out)
    assert {"gemmini", "northpole"} <= {r["name"] for r in rows}
    assert all(set(r) == {"name", "path", "description"} for r in rows)
    assert all(r["description"] for r in rows)


def test_hw_show_json_keys(run_cli):
    rc, out, err = run_cli("hw", "show", "gemmini", "--format", "json")
    assert rc == 0, err
    d = json.loads(out)
    assert list(d["peak_macs_per_s"]) == [str(b) for b in range(1, 17)]
    # 16x16 int8 array at 1 GHz (the preset's clock): 256 MAC/cycle; 16-bit weights take
    # two passes through the 8-bit datapath
    assert d["peak_macs_per_s"]["8"] == 16 * 16 * d["clock_hz"]
    assert d["peak_macs_per_s"]["16"] == 16 * 16 * d["clock_hz"] / 2
    assert d["offchip_bandwidth_bytes_per_s"] == 16 * d["clock_hz"]  # 128-bit bus
    assert d["memory"][1]["capacity_bytes"] == 256 * 1024


def test_offchip_bandwidth_null_without_offchip_level(run_cli):
    rc, out, err = run_cli("hw", "show", "northpole", "--format", "json")
    assert rc == 0, err
    assert json.loads(out)["offchip_bandwidth_bytes_per_s"] is None


def test_schema_is_valid_and_accepts_every_preset(run_cli):
    rc, out, err = run_cli("hw", "schema")
    assert rc == 0, err
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    for name, path in list_presets("hw").items():
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_schema_rejects_unknown_key():
    schema = hw_schema()
    doc = yaml.safe_load(list_presets("hw")["gemmini"].read_text())
    doc["bogus"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_every_hw_preset_listed():
    assert {r["name"] for r in list_hw()} == set(list_presets("hw"))


def test_hw_show_table(run_cli):
    rc, out, err = run_cli("hw", "show", "gemmini")
    assert rc == 0 and "scratchpad" in out and "peak_MAC/s" in out


def test_workload_list_and_show_json(run_cli):
    rc, out, err = run_cli("workload", "list", "--format", "json")
    assert rc == 0, err
    names = {r["name"] for r in json.loads(out)}
    assert "mixtral-8x7b" in names
    rc, out, err = run_cli("workload", "show", "mixtral-8x7b", "--format", "json")
    assert rc == 0, err
    d = json.loads(out)
    for key in ("name", "num_layers", "num_moe_layers", "num_experts", "top_k",
                "total_params", "active_params", "expert_params"):
        assert key in d
    assert (d["num_layers"], d["num_moe_layers"], d["num_experts"], d["top_k"]) == (
        32, 32, 8, 2)
    # 32 layers x 8 experts x 3 matrices x 4096 x 14336
    assert d["expert_params"] == 32 * 8 * 3 * 4096 * 14336


def test_workload_graph_table(run_cli):
    rc, out, err = run_cli("workload", "graph", "mixtral-8x7b", "--phase", "prefill",
                           "--seq-len", "16")
    assert rc == 0, err
    assert "attention" in out and "gemm" in out


def test_graph_export_bad_suffix_writes_nothing(tmp_path, run_cli):
    out = tmp_path / "g.txt"
    rc, _, err = run_cli("workload", "graph", "mixtral-8x7b", "--export", str(out))
    assert rc == 2 and "--export" in err and not out.exists()


def test_usage_error_exit_2(run_cli):
    rc, _, err = run_cli("workload", "graph", "mixtral-8x7b", "--batch", "0")
    assert rc == 2 and "Traceback" not in err


@pytest.mark.parametrize("args, reason", [
    (("workload", "graph", "mixtral-8x7b", "--batch", "0"),
     "Invalid value for '--batch': 0 is not in the range"),
    (("simulate", "--hw", "h100", "--nosuch"), "No such option '--nosuch'"),
    (("simulate",), "Missing option '--hw'"),
    (("nosuchcmd",), "No such command 'nosuchcmd'"),
    (("sweep",), "Missing argument 'SPEC'"),
])
def test_usage_errors_are_one_line(run_cli, args, reason):
    # like every other bad input: one 'accelsim: error:' line, the way to the help, exit 2
    rc, out, err = run_cli(*args)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("accelsim: error: "), err
    assert reason in err and "--help')" in err


def test_schema_describes_every_key_and_spells_out_list_defaults():
    schema = hw_schema()
    nodes = [("Accelerator", schema)] + list(schema["$defs"].items())
    missing = [f"{name}.{key}" for name, node in nodes
               for key, prop in node.get("properties", {}).items()
               if not prop.get("description")]
    assert missing == []
    weight_bits = schema["$defs"]["MacArray"]["properties"]["weight_bits"]
    assert weight_bits["default"] == [8]
    holds = schema["$defs"]["MemoryLevel"]["properties"]["holds"]
    assert holds["default"] == ["weights", "activations", "outputs", "kv"]
