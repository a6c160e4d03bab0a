"""Loading system YAMLs: safe read, every problem collected, a frozen :class:`System`.

The loading and error style is the one of :mod:`accelsim.hw.load`: one ``file: key: reason``
line per problem, unknown keys refused with a did-you-mean, quantities with units.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any, Mapping

from .._io import exists
from ..config import read_mapping, validate
from ..errors import ConfigError, Problem
from ..hw.load import _key_exists, hw_from_dict, load_hw
from ..hw.spec import Accelerator
from ..presets import describe_presets, list_presets, resolve
from .spec import System, SystemFile

__all__ = ["load_system", "system_from_dict", "list_systems", "system_schema"]


def _device(spec: SystemFile, file: str | None) -> Accelerator:
    """The device of a system file: a preset name, a path (relative to the system file) or
    an inline mapping; its problems are reported under ``device``."""
    dev = spec.device
    if isinstance(dev, dict):
        try:
            return hw_from_dict(dev, file=file)
        except ConfigError as exc:
            raise ConfigError([Problem(q.reason, file=file,
                                       key="device" + ("." + q.key if q.key else ""),
                                       value=q.value) for q in exc.problems]) from None
    cand = dev
    if file is not None and not Path(dev).is_absolute():
        near = Path(file).resolve().parent / dev
        if exists(near):          # False for names no file system holds (issue 16)
            cand = str(near)
    if _names_a_system(cand):
        raise ConfigError.single("names a system, not an accelerator: give the system's "
                                 "device (a chip preset, an accelerator YAML or a mapping)",
                                 file=file, key="device", value=dev)
    try:
        return load_hw(cand)
    except ConfigError as exc:
        q = exc.problems[0]
        if q.file in (None, dev, cand) and not q.key:   # the device itself is missing or unknown
            raise ConfigError.single(q.reason, file=file, key="device", value=dev) from None
        raise


def _names_a_system(cand: str) -> bool:
    """Whether a device given by name or path is a system (a system preset that is no
    accelerator preset, or a YAML file holding a system): one line instead of the chip
    loader's complaints about every accelerator key."""
    if not exists(cand):
        return cand in list_presets("system") and cand not in list_presets("hw")
    if not Path(cand).expanduser().is_file():
        return False
    try:
        data = read_mapping(cand, what="accelerator file")
    except ConfigError:
        return False            # the chip loader reports it
    return _is_system_file(data)


def system_from_dict(data: Mapping[str, Any], *, file: str | None = None) -> System:
    """Validate a mapping (as read from YAML) into a :class:`System`."""
    problems: list[Problem] = []
    spec = None
    try:
        spec = validate(SystemFile, data, file=file)
        problems.extend(spec.problems(file))
    except ConfigError as exc:
        problems.extend(exc.problems)
    uncertain = data.get("uncertain")
    for i, path in enumerate(uncertain if isinstance(uncertain, list) else []):
        if isinstance(path, str) and not _key_exists(data, path):
            problems.append(Problem("names no key of this file", file=file,
                                    key=f"uncertain[{i}]", value=path))
    hw = None
    if spec is not None and not problems:
        try:
            hw = _device(spec, file)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    assert spec is not None and hw is not None
    return System(name=spec.name, hw=hw, devices_per_node=spec.devices_per_node,
                  nodes=spec.nodes, links=spec.links, description=spec.description,
                  sources=tuple(spec.sources), uncertain=tuple(spec.uncertain),
                  notes=tuple(spec.notes), host_power_w=spec.host_power_w)


def _is_system_file(data: Mapping[str, Any]) -> bool:
    return "device" in data or "devices_per_node" in data or "nodes" in data


def load_system(source) -> System:
    """A system from a system preset name, a system YAML, a mapping, a :class:`System`, or a
    single chip (an :class:`~accelsim.hw.Accelerator`, an accelerator preset name or YAML):
    a chip is a system of one device.

    Examples
    --------
    >>> load_system("northpole-16").num_devices
    16
    >>> s = load_system("h100")
    >>> s.num_devices, s.hw.name
    (1, 'h100')
    """
    if isinstance(source, System):
        return source
    if isinstance(source, Accelerator):
        return System.single(source)
    if isinstance(source, Mapping):
        if _is_system_file(source):
            return system_from_dict(source)
        return System.single(hw_from_dict(source))
    if not isinstance(source, (str, PathLike)):
        raise ConfigError.single("must be a system or accelerator preset name, a path to a "
                                 "YAML file, a mapping, a System or an Accelerator",
                                 key="system", value=source)
    text = str(source)
    systems = list_presets("system")
    if not exists(text) and text not in systems and text in list_presets("hw"):
        return System.single(load_hw(text))
    try:
        path = resolve(source, "system")
    except ConfigError as exc:
        if text in list_presets("hw"):
            return System.single(load_hw(text))
        q = exc.problems[0]
        hw_names = ", ".join(list_presets("hw"))
        raise ConfigError.single(q.reason + (f" (or an accelerator preset: {hw_names})"
                                             if "preset" in q.reason else ""),
                                 file=q.file, key=q.key) from None
    data = read_mapping(path, what="system file")
    if not _is_system_file(data):
        return System.single(hw_from_dict(data, file=str(path)))
    return system_from_dict(data, file=str(path))


def list_systems() -> list[dict[str, str]]:
    """Packaged system presets: ``[{"name", "path", "description"}]``."""
    return describe_presets("system")


def system_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the system YAML, keys as written in YAML; ``device``
    is a preset name, a path, or an inline accelerator (the ``accelsim hw schema``)."""
    from ..hw.load import hw_schema
    schema = SystemFile.model_json_schema(by_alias=True, mode="validation")
    hw = hw_schema()
    defs = schema.setdefault("$defs", {})
    for name, node in hw.pop("$defs", {}).items():
        defs.setdefault(name, node)
    hw.pop("$schema", None)
    hw.pop("title", None)
    defs["Accelerator"] = hw
    schema["properties"]["device"] = {
        "description": "the device: an accelerator preset name, a path to an accelerator "
                       "YAML (relative to this file), or an inline accelerator",
        "anyOf": [{"type": "string", "minLength": 1}, {"$ref": "#/$defs/Accelerator"}]}
    meanings = {
        "devices_per_node": "devices in one node (server); they talk over links.intra_node",
        "nodes": "nodes (servers); they talk over links.inter_node",
        "links": "link levels: intra_node (inside a node) and inter_node (between nodes)",
        "uncertain": "key paths of this file whose values are estimates",
    }
    for k, text in meanings.items():
        schema["properties"][k].setdefault("description", text)
    link = defs.get("Link", {}).get("properties", {})
    for k, text in {
            "bandwidth": "bandwidth per direction of one device's port, like '450 GB/s'",
            "latency": "latency per message (one step of a collective), like '2 us'",
            "energy_per_byte": "energy per byte crossing the link, like '10 pJ/B'",
            "topology": "switch / fully_connected (every pair at full bandwidth), ring, chain",
            "name": "the technology, e.g. 'NVLink 4 via NVSwitch'"}.items():
        if k in link:
            link[k]["description"] = text
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "accelsim system"
    return schema
