"""Bad input: one line naming the file, the key path and the reason; exit 2; no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _toys import TINY_HW, TOY_WL

GOOD_HW, GOOD_WL = TINY_HW, TOY_WL


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


def _check(rc, out, err, path, key, reason):
    assert rc == 2, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines, "no error message"
    assert all(line.startswith("accelsim: error: ") for line in lines)
    hit = [line for line in lines if str(path) in line and key in line and reason in line]
    assert hit, f"expected a line with {path!s}, {key!r} and {reason!r} in:\n{err}"


HW_CASES = [
    # id, content, key, reason
    ("empty", "", "", "file is empty"),
    ("blank", "   \n\n", "", "file is empty"),
    ("list-top", "- a\n- b\n", "", "top level must be a mapping"),
    ("scalar-top", "42\n", "", "top level must be a mapping"),
    ("yaml-syntax", "name: [unclosed\n", "", "invalid YAML at line"),
    ("binary", b"\x00\x01\x02\xff\xfe" * 20, "", "binary"),
    ("not-utf8", b"name: \xe9t\xe9\n", "", "not UTF-8"),
    ("duplicate-key", GOOD_HW.replace("name: tiny", "name: tiny\nname: other"), "",
     "duplicate key 'name'"),
    ("missing-key", GOOD_HW.replace("name: tiny\n", ""), "name", "field required"),
    ("unknown-key", GOOD_HW.replace("capacity: 64 KiB", "capacty: 64 KiB"),
     "memory[0].capacty", "did you mean 'capacity'"),
    ("wrong-type", GOOD_HW.replace("rows: 8", "rows: eight"), "cores.mac_array.rows",
     "must be an integer"),
    ("bool-for-int", GOOD_HW.replace("count: 1", "count: true"), "cores.count",
     "must be an integer"),
    ("negative", GOOD_HW.replace("count: 1", "count: -4"), "cores.count", "must be >= 1"),
    ("zero-capacity", GOOD_HW.replace("capacity: 64 KiB", "capacity: 0 KiB"),
     "memory[0].capacity", "must be > 0"),
    ("negative-bandwidth", GOOD_HW.replace("4 GB/s", "-3 GB/s"),
     "memory[1].read_bandwidth", "must be > 0"),
    ("nan", GOOD_HW.replace("500 MHz", "nan MHz"), "clock", "must be finite"),
    ("inf", GOOD_HW.replace("rows: 8", "rows: .inf"), "cores.mac_array.rows", "must be finite"),
    ("absurd", GOOD_HW.replace("500 MHz", "5 THz"), "clock", "absurdly large"),
    ("unknown-unit", GOOD_HW.replace("500 MHz", "3 furlongs"), "clock", "unknown unit"),
    ("wrong-dimension", GOOD_HW.replace("500 MHz", "500 MB"), "clock", "is a size, not a frequency"),
    ("missing-unit", GOOD_HW.replace("500 MHz", "500"), "clock", "write the unit too"),
    ("unknown-kind", GOOD_HW.replace("kind: fixed", "kind: fixd"),
     "cores.mac_array.arithmetic.kind", "must be one of"),
    ("levels-out-of-order", GOOD_HW.replace("scope: core", "scope: offchip_").replace(
        "scope: offchip\n", "scope: core\n").replace("offchip_", "offchip"), "",
     "innermost to outermost"),
    ("uncertain-path", GOOD_HW + "uncertain: ['memory[5].capacity']\n", "uncertain[0]",
     "names no key"),
]


@pytest.mark.parametrize("case", HW_CASES, ids=[c[0] for c in HW_CASES])
def test_hw_bad_input(case, tmp_path, run_cli):
    name, content, key, reason = case
    path = _write(tmp_path, "hw.yaml", content)
    rc, out, err = run_cli("hw", "show", str(path))
    _check(rc, out, err, path, key, reason)


def test_good_hw_loads(tmp_path, run_cli):
    path = _write(tmp_path, "hw.yaml", GOOD_HW)
    rc, out, err = run_cli("hw", "show", str(path), "--format", "json")
    assert rc == 0, err
    assert '"clock_hz": 500000000.0' in out


def test_python_tag_is_never_executed(tmp_path, run_cli):
    sentinel = tmp_path / "pwned"
    content = f"name: !!python/object/apply:os.system ['touch {sentinel}']\n"
    path = _write(tmp_path, "hw.yaml", content)
    rc, out, err = run_cli("hw", "show", str(path))
    _check(rc, out, err, path, "", "unsupported YAML tag")
    assert not sentinel.exists()


def test_all_problems_are_collected(tmp_path, run_cli):
    bad = GOOD_HW.replace("500 MHz", "3 furlongs").replace("rows: 8", "rows: -8")
    path = _write(tmp_path, "hw.yaml", bad + "bogus: 1\n")
    rc, out, err = run_cli("hw", "show", str(path))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert any("clock" in x for x in lines) and any("rows" in x for x in lines)
    assert any("bogus: unknown key" in x for x in lines)


def test_missing_file(tmp_path, run_cli):
    path = tmp_path / "nope.yaml"
    rc, out, err = run_cli("hw", "show", str(path))
    _check(rc, out, err, path, "", "no such file")


def test_directory_instead_of_file(tmp_path, run_cli):
    d = tmp_path / "dir.yaml"
    d.mkdir()
    rc, out, err = run_cli("hw", "show", str(d))
    _check(rc, out, err, d, "", "is a directory")


def test_unknown_preset_did_you_mean(run_cli):
    rc, out, err = run_cli("hw", "show", "gemini")
    assert rc == 2 and "did you mean 'gemmini'" in err and "Traceback" not in err


WL_CASES = [
    ("top-k", GOOD_WL.replace("top_k: 2", "top_k: 9"), "moe", "top_k (9) must be <= "),
    ("unknown-key", GOOD_WL.replace("hidden_size", "hiden_size"), "hiden_size",
     "did you mean 'hidden_size'"),
    ("zero-layers", GOOD_WL.replace("num_layers: 2", "num_layers: 0"), "num_layers",
     "must be >= 1"),
    ("float-layers", GOOD_WL.replace("num_layers: 2", "num_layers: 2.5"), "num_layers",
     "whole number"),
    ("heads", GOOD_WL.replace("num_heads: 4", "num_heads: 5"), "",
     "not a multiple of num_heads"),
]


@pytest.mark.parametrize("case", WL_CASES, ids=[c[0] for c in WL_CASES])
def test_workload_bad_input(case, tmp_path, run_cli):
    name, content, key, reason = case
    path = _write(tmp_path, "model.yaml", content)
    rc, out, err = run_cli("workload", "show", str(path))
    _check(rc, out, err, path, key, reason)


def test_malformed_config_json(tmp_path, run_cli):
    path = _write(tmp_path, "config.json", '{"architectures": ["MixtralForCausalLM"], ')
    rc, out, err = run_cli("workload", "show", str(path))
    _check(rc, out, err, path, "", "invalid JSON at line 1")


def test_subprocess_exit_status_and_no_traceback(tmp_path):
    path = _write(tmp_path, "hw.yaml", GOOD_HW.replace("500 MHz", "-1 MHz"))
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "accelsim.cli", "hw", "show", str(path)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"accelsim: error: {path}: clock: must be > 0 (got '-1 MHz')"
