"""Accelerators and workloads of sweep points, loaded once per process.

Shared by :mod:`accelsim.sweep.spec` (which checks every point before any runs) and
:mod:`accelsim.sweep.evaluate` (which runs them), so neither imports the other's internals.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..config import read_mapping
from ..presets import resolve
from .overrides import OverrideError, apply_overrides

__all__ = ["raw_hw", "build_hw", "load_model_cached", "raw_system", "build_system"]


@lru_cache(maxsize=32)
def raw_hw(source: str) -> tuple[dict, str]:
    path = resolve(source, "hw")
    return read_mapping(path, what="accelerator file"), str(path)


@lru_cache(maxsize=128)
def build_hw(source: str, overrides: tuple[tuple[str, Any], ...] = ()):
    """The :class:`~accelsim.hw.Accelerator` of a preset or file with key-path overrides
    applied to its YAML mapping before validation (cached per process).

    Raises :class:`~accelsim.sweep.overrides.OverrideError` with ``args = (reason, key
    path)`` for a path that names nothing, :class:`ConfigError` for an invalid result.
    """
    from ..hw import hw_from_dict
    raw, path = raw_hw(source)
    return hw_from_dict(_overridden(raw, overrides), file=path)


@lru_cache(maxsize=16)
def load_model_cached(source: str):
    """:func:`accelsim.workload.load_workload`, cached per process."""
    from ..workload import load_workload
    return load_workload(source)


@lru_cache(maxsize=32)
def raw_system(source: str) -> tuple[dict, str]:
    """The mapping of a system preset or file (a chip preset: ``{"device": name}``)."""
    from ..presets import list_presets
    if source not in list_presets("system") and source in list_presets("hw"):
        return {"name": source, "device": source}, source
    path = resolve(source, "system")
    return read_mapping(path, what="system file"), str(path)


@lru_cache(maxsize=64)
def build_system(source: str, overrides: tuple[tuple[str, Any], ...] = ()):
    """The :class:`~accelsim.system.System` of a preset or file with key-path overrides
    (``links.inter_node.bandwidth``, ``nodes``) applied before validation (cached)."""
    from ..system import system_from_dict
    raw, path = raw_system(source)
    return system_from_dict(_overridden(raw, overrides), file=path if path != source or "/" in path else None)


def _overridden(raw: dict, overrides: tuple[tuple[str, Any], ...]) -> dict:
    """``raw`` with the key-path ``overrides`` applied one by one (an
    :class:`OverrideError` carries the key path that names nothing)."""
    data = raw
    for key, value in overrides:
        try:
            data = apply_overrides(data, {key: value})
        except OverrideError as exc:
            raise OverrideError(str(exc), key) from None
    return data
