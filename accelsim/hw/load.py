"""Loading accelerator YAMLs: safe read, every problem collected, frozen :class:`Accelerator`."""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from ..config import QUANTITY_BOUNDS, read_mapping, validate
from ..errors import ConfigError, Problem
from ..presets import describe_presets, resolve
from ..units import parse_quantity
from .meanings import MEANINGS
from .spec import Accelerator

__all__ = ["load_hw", "hw_from_dict", "list_hw", "hw_schema"]


def _key_exists(data: Any, path: str) -> bool:
    """Does ``memory[1].read_bandwidth`` name a key present in ``data``?"""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    node = data
    for part in parts:
        if part.startswith("["):
            i = int(part[1:-1])
            if not isinstance(node, list) or i >= len(node):
                return False
            node = node[i]
        else:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
    return bool(parts)


def hw_from_dict(data: Mapping[str, Any], *, file: str | None = None) -> Accelerator:
    """Validate a mapping (as read from YAML) into an :class:`Accelerator`.

    Per-cycle units (``'128 B/cycle'``, ``'100 cycles'``) are converted with the ``clock``
    of the same document.
    """
    clock: float | None = None
    try:
        clock = parse_quantity(data.get("clock"), "frequency") if "clock" in data else None
    except ConfigError:
        clock = None  # reported by validation below
    lo, hi = QUANTITY_BOUNDS["frequency"]
    if clock is None or not lo <= clock <= hi:
        # an invalid clock is reported once, on 'clock'; a stand-in keeps per-cycle values of
        # other keys from repeating the same problem
        clock = 1e9
    problems: list[Problem] = []
    try:
        hw = validate(Accelerator, data, file=file, context={"clock_hz": clock})
    except ConfigError as exc:
        problems.extend(exc.problems)
        hw = None
    uncertain = data.get("uncertain")
    for i, path in enumerate(uncertain if isinstance(uncertain, list) else []):
        if isinstance(path, str) and not _key_exists(data, path):
            problems.append(Problem("names no key of this file", file=file,
                                    key=f"uncertain[{i}]", value=path))
    if problems:
        raise ConfigError(problems)
    assert hw is not None
    return hw


def load_hw(source: str | os.PathLike | Mapping[str, Any]) -> Accelerator:
    """Load an accelerator from a preset name, a YAML path or a mapping.

    Examples
    --------
    >>> hw = load_hw("northpole")
    >>> hw.cores.count
    256
    """
    if isinstance(source, Mapping):
        return hw_from_dict(source)
    path = resolve(source, "hw")
    return hw_from_dict(read_mapping(path, what="accelerator file"), file=str(path))


def list_hw() -> list[dict[str, str]]:
    """Packaged accelerator presets: ``[{"name", "path", "description"}]``."""
    return describe_presets("hw")


def hw_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the accelerator YAML, keys as written in YAML.

    Every key carries a ``description`` (from the field, else from
    :data:`accelsim.hw.meanings.MEANINGS`) and list defaults built by a factory are spelled out,
    so editors show both.
    """
    from . import spec

    schema = Accelerator.model_json_schema(by_alias=True, mode="validation")
    nodes = [("Accelerator", schema)] + list(schema.get("$defs", {}).items())
    for name, node in nodes:
        model = getattr(spec, name, None)
        fields = {(f.alias or n): f for n, f in model.model_fields.items()} if (
            isinstance(model, type) and hasattr(model, "model_fields")) else {}
        for key, prop in node.get("properties", {}).items():
            if "description" not in prop and (name, key) in MEANINGS:
                prop["description"] = MEANINGS[(name, key)]
            f = fields.get(key)
            if f is not None and "default" not in prop and f.default_factory is not None:
                value = f.default_factory()
                if isinstance(value, list):
                    prop["default"] = value
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "accelsim accelerator"
    return schema
