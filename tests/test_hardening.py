"""Issue 16: each class of bad input that got past the one-line-error promise, one test (or a
few) per class; each fails without its fix (the reproducers are the issue's)."""

from __future__ import annotations

import json

import pytest

from _toys import TINY_HW, TOY_WL


def _one_error(rc, out, err, path, reason, *, max_lines=1):
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= max_lines, err
    assert all(line.startswith("accelsim: error: ") for line in lines), err
    assert any(str(path) in line and reason in line for line in lines), err
    return lines


# ----------------------------------------------------------------------------- 1: structure

def _bomb(levels: int = 9, fan: int = 9) -> str:
    """The issue's alias bomb: ~fan^levels nodes from a few hundred bytes."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * fan) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


STRUCTURE = [
    ("complex-key", "hw.yaml", "? [a]\n: 1\n", "a key must be a plain value"),
    ("deep-yaml", "hw.yaml", "name: " + "[" * 500 + "]" * 500 + "\n", "nested deeper than 64"),
    ("deep-json", "config.json", '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
     "nested deeper than 64"),
    ("alias-bomb", "hw.yaml", _bomb(), "aliases expand to more than 100,000 nodes"),
    ("recursive-alias", "hw.yaml", "a: &a [*a]\n", "an alias refers to the list or mapping"),
    ("huge-int-yaml", "hw.yaml", "name: " + "9" * 5000 + "\n", "more than 4,300 digits"),
    ("huge-int-json", "config.json", '{"a": ' + "9" * 5000 + "}", "more than 4,300 digits"),
    ("duplicate-json", "config.json", '{"a": 1, "a": 2}', "duplicate key 'a'"),
]


@pytest.mark.parametrize("case", STRUCTURE, ids=[c[0] for c in STRUCTURE])
def test_document_structure_limits(case, tmp_path, run_cli):
    _, name, content, reason = case
    path = tmp_path / name
    path.write_text(content)
    cmd = ("workload", "show") if name.endswith(".json") else ("hw", "show")
    _one_error(*run_cli(*cmd, path), path, reason)


def test_error_repr_is_bounded():
    """An error about a value with 10^10 shared nodes (or an int of 5,000 digits) is built
    without walking the value: a short line."""
    from accelsim.errors import ConfigError
    bomb: list = [0] * 10
    for _ in range(9):
        bomb = [bomb] * 10
    for value in (bomb, 10**5000, "x" * 10**7):
        text = str(ConfigError.single("bad", file="f.yaml", key="k", value=value))
        assert len(text) < 120 and "\n" not in text


def test_newline_in_a_name_stays_one_line(tmp_path, run_cli):
    path = tmp_path / "a\nb.yaml"
    rc, out, err = run_cli("hw", "show", path)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "a\\nb.yaml" in err


# ----------------------------------------------------------------------------- 2: types

@pytest.mark.parametrize("value", ["5", "'memory'"])
def test_unchecked_type_is_one_line(value, tmp_path, run_cli):
    path = tmp_path / "hw.yaml"
    path.write_text(TINY_HW + f"uncertain: {value}\n")
    _one_error(*run_cli("hw", "show", path), path, "uncertain: must be a list")


def test_repeated_errors_are_grouped(tmp_path, run_cli):
    """expert_bits one level too deep: 2 rows x 4 experts = 8 identical problems are 3 lines
    and one '... and 5 more like it'."""
    path = tmp_path / "alloc.yaml"
    path.write_text(json.dumps({"model": "toy-moe", "expert_bits": [[[4, 4]] * 4] * 2}))
    wl = tmp_path / "wl.yaml"
    wl.write_text(TOY_WL)
    hw = tmp_path / "hw.yaml"
    hw.write_text(TINY_HW)
    rc, out, err = run_cli("simulate", "--hw", hw, "--workload", wl, "--alloc", path)
    lines = _one_error(rc, out, err, path, "... and 5 more like it", max_lines=4)
    assert len(lines) == 4 and "expert_bits[*][*]" in lines[-1]


def test_problem_count_is_capped():
    from accelsim.errors import MAX_PROBLEMS, ConfigError, Problem
    e = ConfigError([Problem(f"reason {i}", file="f", key=f"k{i}") for i in range(500)])
    assert len(e.problems) == MAX_PROBLEMS
    assert str(e.problems[-1]) == f"f: ... and {500 - MAX_PROBLEMS + 1} more problems"


# ----------------------------------------------------------------------------- 3: quantities

ABSURD = [
    ("tiny-bandwidth", ("4 GB/s", "5e-324 GB/s"), "memory[1].read_bandwidth",
     "absurdly small for bandwidth (at least 1 kB/s)"),
    ("tiny-capacity", ("1 GiB", "1e-300 MiB"), "memory[1].capacity",
     "absurdly small for size (at least 1 B)"),
    ("tiny-clock", ("500 MHz", "1e-9 Hz"), "clock", "absurdly small"),
    ("tiny-energy", ("160 pJ/B", "1e-30 pJ/B"), "memory[1].read_energy", "absurdly small"),
    ("million-cores", ("count: 1", "count: 1000000"), "cores.count", "must be <= 262144"),
    ("noc-dims", ("count: 1", "count: 4"), "",
     "noc.dims [3] give 3 cores, but cores.count is 4"),
]


@pytest.mark.parametrize("case", ABSURD, ids=[c[0] for c in ABSURD])
def test_absurd_quantities(case, tmp_path, run_cli):
    _, (old, new), key, reason = case
    path = tmp_path / "hw.yaml"
    assert old in TINY_HW
    extra = "noc: {link_bandwidth: 1 GB/s, dims: [3]}\n" if case[0] == "noc-dims" else ""
    path.write_text(TINY_HW.replace(old, new, 1) + extra)
    lines = _one_error(*run_cli("hw", "show", path), path, reason)
    assert key in lines[0]


def test_zero_stays_allowed_where_it_was(tmp_path, run_cli):
    path = tmp_path / "hw.yaml"
    path.write_text(TINY_HW.replace("read_energy: 1 pJ/B", "read_energy: 0 pJ/B"))
    rc, out, err = run_cli("hw", "show", path)
    assert rc == 0, err
