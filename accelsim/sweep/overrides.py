"""Hardware overrides by key path, applied to the raw YAML mapping before validation.

A key path names one value of an accelerator YAML the way users read it:
``cores.mac_array.rows``, ``memory[1].capacity`` (a list index) or
``memory[name=dram].read_bandwidth`` (the list item whose ``name`` is ``dram``). Every part
but the last must exist in the file; the last may be a key the file leaves at its default
(``energy.mac_energy_8b``), and validation of the overridden mapping then decides whether it
is a key of the schema.

Examples
--------
>>> parse_key_path("memory[name=dram].read_bandwidth")
('memory', ('name', 'dram'), 'read_bandwidth')
>>> raw = {"cores": {"mac_array": {"rows": 16}},
...        "memory": [{"name": "dram", "capacity": "1 GiB"}]}
>>> new = apply_overrides(raw, {"cores.mac_array.rows": 32,
...                             "memory[name=dram].capacity": "2 GiB"})
>>> new["cores"]["mac_array"]["rows"], new["memory"][0]["capacity"]
(32, '2 GiB')
>>> raw["cores"]["mac_array"]["rows"]   # the input is left alone
16
"""

from __future__ import annotations

import copy
import re
from typing import Any, Mapping

from ..errors import did_you_mean

__all__ = ["parse_key_path", "apply_overrides", "OverrideError"]

_PART = re.compile(r"\[(\d+)\]|\[([A-Za-z_][\w-]*)=([^\]]+)\]|([A-Za-z_][\w-]*)")

Part = str | int | tuple[str, str]


class OverrideError(ValueError):
    """A key path is malformed or names nothing in the file (message is the reason)."""


def parse_key_path(path: str) -> tuple[Part, ...]:
    """Split ``a.b[2].c[name=x]`` into ``('a', 'b', 2, 'c', ('name', 'x'))``.

    Raises :class:`OverrideError` for a malformed path.

    >>> parse_key_path("cores.count")
    ('cores', 'count')
    >>> parse_key_path("memory[1].capacity")
    ('memory', 1, 'capacity')
    """
    if not isinstance(path, str) or not path:
        raise OverrideError("a key path must be a non-empty string like 'cores.mac_array.rows'")
    parts: list[Part] = []
    pos, expect_name = 0, True
    while pos < len(path):
        if path[pos] == "." and not expect_name and parts:
            pos += 1
            expect_name = True
            continue
        m = _PART.match(path, pos)
        if m is None or (m.group(4) and not expect_name) or (not m.group(4) and not parts):
            raise OverrideError(f"malformed key path at character {pos + 1}; write keys "
                                "like 'cores.mac_array.rows', 'memory[1].capacity' or "
                                "'memory[name=dram].read_bandwidth'")
        if m.group(1) is not None:
            parts.append(int(m.group(1)))
        elif m.group(2) is not None:
            parts.append((m.group(2), m.group(3).strip()))
        else:
            parts.append(m.group(4))
        expect_name = False
        pos = m.end()
    if expect_name:
        raise OverrideError("a key path must not end with '.'")
    return tuple(parts)


def _show(parts: tuple[Part, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, tuple):
            out += f"[{p[0]}={p[1]}]"
        else:
            out += ("." if out else "") + p
    return out or "(top level)"


def _step(node: Any, part: Part, seen: tuple[Part, ...], last: bool) -> tuple[Any, Any]:
    """The container and key/index that ``part`` names inside ``node``."""
    where = _show(seen)
    if isinstance(part, str):
        if not isinstance(node, dict):
            raise OverrideError(f"'{where}' is not a mapping, it has no key '{part}'")
        if part not in node and not last:
            raise OverrideError(f"no key '{part}' in '{where}'" + did_you_mean(part, node))
        return node, part
    if not isinstance(node, list):
        raise OverrideError(f"'{where}' is not a list, it cannot be indexed")
    if isinstance(part, int):
        if part >= len(node):
            raise OverrideError(f"'{where}' has {len(node)} item(s), no index {part}")
        return node, part
    key, value = part
    hits = [i for i, item in enumerate(node)
            if isinstance(item, dict) and str(item.get(key)) == value]
    if not hits:
        have = [str(item.get(key)) for item in node if isinstance(item, dict) and key in item]
        raise OverrideError(f"no item of '{where}' has {key}={value}"
                            + did_you_mean(value, have))
    if len(hits) > 1:
        raise OverrideError(f"several items of '{where}' have {key}={value}")
    return node, hits[0]


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``raw`` with each key path of ``overrides`` set to its value.

    Raises :class:`OverrideError` (message: the reason, without the path) when a path is
    malformed or names nothing in ``raw``; the caller knows which override it was.
    """
    out = copy.deepcopy(dict(raw))
    for path, value in overrides.items():
        parts = parse_key_path(path)
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            container, key = _step(node, part, parts[:i], last)
            if last:
                container[key] = copy.deepcopy(value)
            else:
                node = container[key]
    return out
