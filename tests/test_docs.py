"""The documentation stays true to the code.

* ``docs/hwconfig-reference.md`` is the current output of its generator, lists every key of
  the schema with the schema's bounds, and states quantity bounds the loader really enforces;
* every ``accelsim`` command shown in ``docs/user-guide.md`` parses (``--help`` appended),
  and the cheap ones run; its YAML and Python examples load and run;
* relative links and anchors between ``README.md`` and ``docs/`` resolve.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml

from accelsim.cli import main
from accelsim.errors import ConfigError
from accelsim.hw import hw_from_dict, hw_schema
from accelsim.hw.docgen import MEANINGS, REGENERATE, schema_markdown
from accelsim.units import parse_quantity

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GUIDE = DOCS / "user-guide.md"
REFERENCE = DOCS / "hwconfig-reference.md"


# ----------------------------------------------------------------------------- helpers


def _fenced(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)


def _prose(text: str) -> str:
    """The text without fenced blocks and inline code (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: markdown stripped, lower case, punctuation other than
    '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # [text](link) -> text
    text = text.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {_github_anchor(h) for h in re.findall(r"^#{1,6}\s+(.*?)\s*#*$", text, re.M)}


def _guide_commands() -> list[str]:
    return [line.strip() for lang, body in _fenced(GUIDE.read_text())
            if lang in ("bash", "console", "sh", "")
            for line in body.splitlines() if line.strip().startswith("accelsim ")]


def _reference_rows() -> dict[str, dict[str, list[str]]]:
    """Section heading -> key -> the row's cells (type, default, bounds, meaning)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:], {})
        elif current is not None and line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            current[cells[0].strip("`")] = cells[1:]
    return sections


# ----------------------------------------------------------------------------- (a) reference


def test_hwconfig_reference_is_current():
    assert REFERENCE.read_text() == schema_markdown(), (
        "docs/hwconfig-reference.md is out of date with the accelerator schema; regenerate it "
        f"from the repository root:\n    {REGENERATE}")


def _schema_objects():
    """(class name, object schema) of every mapping in the accelerator schema."""
    schema = hw_schema()
    return [("Accelerator", schema), *schema["$defs"].items()]


def test_reference_lists_every_key_of_the_schema_with_its_bounds():
    sections = _reference_rows()
    by_class = {heading.rsplit(": ", 1)[-1] if ": " in heading else "Accelerator": rows
                for heading, rows in sections.items()}
    for name, obj in _schema_objects():
        assert name in by_class, f"no section for {name}"
        rows = by_class[name]
        assert list(rows) == list(obj["properties"]), name
        for key, prop in obj["properties"].items():
            _, default, bounds, _ = rows[key]
            lo, hi = prop.get("minimum"), prop.get("maximum")
            if lo is not None and hi is not None:
                assert f"{_number(lo)} to {_number(hi)}" in bounds, (name, key, bounds)
            if key in obj.get("required", []):
                assert default == "required", (name, key)
            elif "pattern" in prop and isinstance(prop.get("default"), float):
                assert default.startswith(f"`{prop['default']:g} "), (name, key, default)
            elif isinstance(prop.get("default"), (str, int, float)) and prop["default"] != "":
                assert default == f"`{_number(prop['default'])}`", (name, key, default)


def _number(v) -> str:
    if isinstance(v, str):
        return v
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


def test_every_documented_meaning_names_a_key_of_the_schema():
    keys = {(name, key) for name, obj in _schema_objects() for key in obj["properties"]}
    stale = sorted(set(MEANINGS) - keys)
    assert not stale, f"accelsim.hw.docgen.MEANINGS names keys the schema lacks: {stale}"


# Sections a minimal chip file has, where a quantity key can be set and loaded.
_CHIP = {
    "name": "doc-check", "clock": "1 GHz",
    "cores": {"count": 2, "mac_array": {"rows": 4, "cols": 4, "arithmetic": {"kind": "fixed"}}},
    "memory": [{"name": "sram", "scope": "core", "capacity": "64 KiB",
                "read_bandwidth": "64 GB/s", "read_energy": "1 pJ/B"},
               {"name": "dram", "scope": "offchip", "capacity": "1 GiB",
                "read_bandwidth": "10 GB/s", "read_energy": "20 pJ/B"}],
    "noc": {"topology": "ring", "dims": [2], "link_bandwidth": "16 GB/s"},
}
_PATHS = {"Accelerator": (), "MemoryLevel": ("memory", 0), "Dma": ("dma",), "Noc": ("noc",),
          "EnergyModel": ("energy",)}


def _loads(path: tuple, key: str, value: str) -> bool:
    data = copy.deepcopy(_CHIP)
    node = data
    for part in path:
        if isinstance(part, str):
            node = node.setdefault(part, {})
        else:
            node = node[part]
    node[key] = value
    try:
        hw_from_dict(data)
    except ConfigError:
        return False
    return True


def test_quantity_bounds_in_the_reference_are_what_the_loader_enforces():
    assert _loads((), "clock", "1 GHz")
    checked = 0
    for heading, rows in _reference_rows().items():
        name = heading.rsplit(": ", 1)[-1] if ": " in heading else "Accelerator"
        if name not in _PATHS:
            continue
        for key, (typ, _default, bounds, _meaning) in rows.items():
            m = re.match(r"([a-z ]+) \(e\.g\.", typ)
            if not m:
                continue
            kind = m.group(1).replace(" ", "_")
            low, _, high = bounds.partition(", <= ")
            unit = {"size": "B", "bandwidth": "B/s", "frequency": "Hz", "time": "s",
                    "energy": "J", "energy_per_byte": "J/B", "power": "W"}[kind]
            assert _loads(_PATHS[name], key, f"0 {unit}") == (low == ">= 0"), (name, key)
            limit = parse_quantity(high, kind)
            assert _loads(_PATHS[name], key, high), (name, key, high)
            assert not _loads(_PATHS[name], key, f"{2 * limit:g} {unit}"), (name, key, high)
            checked += 1
    quantities = sum(1 for name, obj in _schema_objects() if name in _PATHS
                     for prop in obj["properties"].values()
                     if "pattern" in prop or any("pattern" in a for a in prop.get("anyOf", [])))
    assert checked == quantities > 10


# ----------------------------------------------------------------------------- (b) user guide


def test_the_guide_shows_every_command():
    shown = {shlex.split(c)[1] for c in _guide_commands()}
    assert {"hw", "workload", "simulate", "allocate", "sweep", "plot", "theory",
            "validate"} <= shown


@pytest.mark.parametrize("command", _guide_commands())
def test_guide_command_parses(command, capsys):
    args = shlex.split(command)[1:]
    assert main(args + ["--help"]) == 0, capsys.readouterr().err


def _cheap(command: str) -> bool:
    """Presets only (no files read or written) and quick: hw, workload, simulate."""
    args = shlex.split(command)[1:]
    return (args[0] in ("hw", "workload", "simulate", "--version")
            and not any("/" in a or re.search(r"\.(ya?ml|json|npz|csv|parquet)$", a)
                        for a in args) and "--out" not in args)


@pytest.mark.parametrize("command", [c for c in _guide_commands() if _cheap(c)])
def test_cheap_guide_commands_run(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(shlex.split(command)[1:])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert out.out.strip()
    assert list(tmp_path.iterdir()) == []


def test_guide_yaml_examples_load():
    from accelsim.sweep import load_sweep
    blocks = [yaml.safe_load(body) for lang, body in _fenced(GUIDE.read_text())
              if lang == "yaml"]
    assert blocks
    for data in blocks:
        if "memory" in data:
            hw = hw_from_dict(data)
            assert hw.peak_macs_per_s(8) == (hw.cores.count * hw.cores.mac_array.rows
                                             * hw.cores.mac_array.cols * hw.clock_hz)
        else:
            spec = load_sweep(data)
            grids = [list(block["grid"].values()) for block in data["axes"]]
            expected = 1
            for lists in grids:
                for values in lists:
                    expected *= len(values)
            assert len(spec.points) == expected


def test_guide_python_example_runs(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    blocks = [body for lang, body in _fenced(GUIDE.read_text()) if lang == "python"]
    assert blocks
    for body in blocks:
        namespace: dict = {}
        exec(compile(body, str(GUIDE), "exec"), namespace)
    assert namespace["result"].latency_s > 0


# ----------------------------------------------------------------------------- (c) links


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _links():
    pattern = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
    for path in _doc_files():
        for target in pattern.findall(_prose(path.read_text())):
            if re.match(r"[a-zA-Z][\w+.-]*:", target):   # http:, mailto: ...
                continue
            yield path, target


@pytest.mark.parametrize("path", _doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for src, target in _links():
        if src != path:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (src.parent / file_part).resolve() if file_part else src
        if not dest.exists():
            broken.append(f"{target} (no file {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading with anchor #{anchor})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"


def test_the_guide_links_every_reference_page():
    linked = {t.partition("#")[0] for p, t in _links() if p == GUIDE}
    for page in ("hwconfig.md", "hwconfig-reference.md", "workloads.md", "allocation.md",
                 "simulator.md", "sweeps.md", "theory.md", "performance.md", "fidelity.md",
                 "quantization.md"):
        assert page in linked, page
