"""Packaged presets: accelerator YAMLs (``hwconfigs/``), system YAMLs (``hwconfigs/systems/``),
model YAMLs (``workloads/``) and the measured set (``measured/``, read by
:mod:`accelsim.fidelity`).

The directories live at the top of the repository; ``hwconfigs``, ``workloads`` and
``measured`` here are symbolic links to them, so that a wheel built from the checkout carries
the files inside the package and ``--hw northpole`` works from a non-editable install.
"""

from __future__ import annotations

from pathlib import Path

from .._io import check_name, exists
from ..errors import ConfigError, did_you_mean

__all__ = ["preset_dir", "list_presets", "describe_presets", "resolve"]

_KINDS = {"hw": "hwconfigs", "workload": "workloads", "system": "hwconfigs/systems",
          "measured": "measured"}


def preset_dir(kind: str) -> Path:
    """Directory of the packaged presets of ``kind`` ('hw', 'workload' or 'system')."""
    return Path(__file__).resolve().parent / _KINDS[kind]


def list_presets(kind: str) -> dict[str, Path]:
    """Preset name -> file, sorted by name."""
    d = preset_dir(kind)
    return {p.stem: p for p in sorted(d.glob("*.yaml"))}


def resolve(source: str | Path, kind: str) -> Path:
    """A preset name (``northpole``) or a path to a file, as a path that exists.

    An existing file wins; then a preset name (names may contain dots, e.g.
    ``qwen1.5-moe-a2.7b``); then a string with a path separator or a file suffix
    (``.yaml``, ``.yml``, ``.json``) is a missing file; anything else an unknown preset.
    """
    text = str(source)
    p = Path(text)
    if exists(p):
        return p
    presets = list_presets(kind)
    if text in presets:
        return presets[text]
    if "/" in text or "\\" in text or p.suffix.lower() in (".yaml", ".yml", ".json"):
        check_name(text)      # a name no file system can hold says so
        raise ConfigError.single("no such file", file=text)
    what = {"hw": "accelerator", "system": "system"}.get(kind, "workload")
    raise ConfigError.single(
        f"unknown {what} preset '{text}'{did_you_mean(text, presets)}; presets: "
        f"{', '.join(presets) or '(none)'}, or give a path to a YAML file")


def describe_presets(kind: str) -> list[dict[str, str]]:
    """Packaged presets of ``kind``: ``[{"name", "path", "description"}]``; a broken preset
    is listed with the reason it is invalid, not hidden."""
    from ..config import read_mapping
    out = []
    for name, path in list_presets(kind).items():
        try:
            desc = str(read_mapping(path).get("description", ""))
        except ConfigError as exc:
            desc = f"(invalid: {exc.problems[0].reason})"
        out.append({"name": name, "path": str(path), "description": desc.strip()})
    return out
