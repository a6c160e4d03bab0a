"""System specification: the schema of ``hwconfigs/systems/*.yaml`` and :class:`System`.

A system is ``nodes`` x ``devices_per_node`` identical devices (one accelerator each) and two
levels of links: ``intra_node`` between the devices of a node, ``inter_node`` between nodes.
Every link level has a bandwidth per direction per device port, a latency per message, an
energy per byte and a topology (``switch`` / ``fully_connected``, ``ring``, ``chain``) that
decides the collective cost formulas (:mod:`accelsim.system.collectives`, docs/systems.md).

Devices are numbered node by node: device ``i`` sits in node ``i // devices_per_node``.

Examples
--------
>>> from accelsim.system import load_system
>>> s = load_system("h100-8")
>>> s.num_devices, s.links.intra_node.topology
(8, 'switch')
>>> s.links.intra_node.bandwidth_bytes_per_s
450000000000.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator

from ..config import Bounded, Quantity, Spec
from ..hw.spec import Accelerator, Source

__all__ = ["Link", "Links", "SystemFile", "System", "TOPOLOGIES", "LEVELS"]

#: Link topologies (``fully_connected`` costs the same as ``switch``: every pair talks at
#: the full port bandwidth).
TOPOLOGIES = ("switch", "fully_connected", "ring", "chain")
#: Link levels, innermost first.
LEVELS = ("intra_node", "inter_node")


class Link(Spec):
    """One level of links. ``bandwidth`` is per direction of one port: each device's own
    (``per: device``, e.g. one InfiniBand NIC per GPU) or one port per node shared by the
    node's devices (``per: node``, e.g. one 200 GbE NIC per server); ``latency`` is charged
    once per message (per step of a collective)."""

    bandwidth_bytes_per_s: Quantity("bandwidth") = Field(alias="bandwidth")
    latency_s: Quantity("time", allow_zero=True) = Field(alias="latency")
    energy_per_byte_j: Quantity("energy_per_byte", allow_zero=True) = Field(
        default=0.0, alias="energy_per_byte")
    topology: Literal["switch", "fully_connected", "ring", "chain"] = "switch"
    per: Literal["device", "node"] = "device"
    name: str = Field(default="", max_length=64)

    @classmethod
    def make(cls, bandwidth_bytes_per_s: float, latency_s: float, energy_per_byte_j: float = 0.0,
             topology: str = "switch", per: str = "device", name: str = "") -> "Link":
        """A link from numbers in base units (code and tests; files use strings with units).

        >>> Link.make(50e9, 3e-6).bandwidth_bytes_per_s
        50000000000.0
        """
        if not (bandwidth_bytes_per_s > 0 and latency_s >= 0 and energy_per_byte_j >= 0):
            raise ValueError("bandwidth must be > 0, latency and energy >= 0")
        if topology not in TOPOLOGIES or per not in ("device", "node"):
            raise ValueError(f"topology must be one of {TOPOLOGIES}, per device or node")
        return cls.model_construct(bandwidth_bytes_per_s=float(bandwidth_bytes_per_s),
                                   latency_s=float(latency_s),
                                   energy_per_byte_j=float(energy_per_byte_j),
                                   topology=topology, per=per, name=name)


class Links(Spec):
    intra_node: Link | None = None
    inter_node: Link | None = None


class SystemFile(Spec):
    """The YAML as written (``device`` unresolved: a preset name, a path or a mapping)."""

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    device: str | dict[str, Any]
    devices_per_node: Bounded(int, 1, 1 << 16) = 1
    nodes: Bounded(int, 1, 1 << 16) = 1
    links: Links = Field(default_factory=Links)
    host_power_w: Quantity("power", allow_zero=True) = Field(default=0.0, alias="host_power")
    sources: list[Source] = Field(default_factory=list)
    uncertain: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @field_validator("device", mode="before")
    @classmethod
    def _device_kind(cls, v):
        # one line at ``device`` (not one per member of the union: device.str, device.dict)
        if not isinstance(v, (str, dict)):
            raise ValueError("must be an accelerator preset name, a path to an accelerator "
                             "YAML, or an inline accelerator mapping")
        return v

    def problems(self, file: str | None = None) -> list:
        """Checks across keys, each a :class:`~accelsim.errors.Problem` at its key."""
        from ..errors import Problem
        out = []
        if isinstance(self.device, str) and not self.device.strip():
            out.append(Problem("must be a preset name, a path or a mapping", file=file,
                               key="device"))
        if self.devices_per_node > 1 and self.links.intra_node is None:
            out.append(Problem(f"devices_per_node: {self.devices_per_node} needs this link "
                               "level", file=file, key="links.intra_node"))
        if self.nodes > 1 and self.links.inter_node is None:
            out.append(Problem(f"nodes: {self.nodes} needs this link level", file=file,
                               key="links.inter_node"))
        return out


@dataclass(frozen=True)
class System:
    """A validated system: the device (an :class:`~accelsim.hw.Accelerator`), how many, how
    grouped, and the links.

    ``num_devices`` may be less than ``nodes * devices_per_node`` after :meth:`first`: the
    last node is then partly used.
    """

    name: str
    hw: Accelerator
    devices_per_node: int = 1
    nodes: int = 1
    links: Links = field(default_factory=Links)
    description: str = ""
    num_devices: int = 0
    host_power_w: float = 0.0
    sources: tuple = ()
    uncertain: tuple = ()
    notes: tuple = ()

    def __repr__(self) -> str:
        return (f"System({self.name!r}: {self.num_devices} x {self.hw.name}, {self.nodes} "
                f"node(s) of {self.devices_per_node})")

    def __post_init__(self):
        if self.num_devices == 0:
            object.__setattr__(self, "num_devices", self.devices_per_node * self.nodes)

    @classmethod
    def single(cls, hw: Accelerator) -> "System":
        """A system of one device: ``simulate`` on it equals the chip simulation."""
        return cls(name=hw.name, hw=hw, description=f"one {hw.name}")

    def node_of(self, device: int) -> int:
        return device // self.devices_per_node

    def link(self, level: str) -> Link | None:
        return getattr(self.links, level)

    def first(self, n: int) -> "System":
        """The system restricted to its first ``n`` devices (whole nodes first)."""
        from ..errors import ConfigError
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.num_devices:
            raise ConfigError.single(f"must be an integer in 1..{self.num_devices} (the "
                                     f"devices of {self.name})", key="devices", value=n)
        if n == self.num_devices:
            return self
        nodes = math.ceil(n / self.devices_per_node)
        return System(name=f"{self.name}[:{n}]", hw=self.hw,
                      devices_per_node=self.devices_per_node, nodes=nodes, links=self.links,
                      description=self.description, num_devices=n, sources=self.sources,
                      uncertain=self.uncertain, notes=self.notes,
                      host_power_w=self.host_power_w)

    def with_links(self, **levels: Link | None) -> "System":
        """A copy with some link levels replaced (sweeps, invariant tests)."""
        from dataclasses import replace
        return replace(self, links=self.links.model_copy(update=levels))

    def to_dict(self) -> dict:
        """The normalized system in base units (``accelsim system show --format json``)."""
        return {
            "name": self.name, "description": self.description,
            "device": self.hw.name, "num_devices": self.num_devices,
            "devices_per_node": self.devices_per_node, "nodes": self.nodes,
            "host_power_w": self.host_power_w,
            "links": {lv: (None if self.link(lv) is None else
                           self.link(lv).model_dump(mode="json", by_alias=False))
                      for lv in LEVELS},
            "device_spec": self.hw.to_dict(),
            "sources": [s.model_dump(mode="json") for s in self.sources],
            "uncertain": list(self.uncertain), "notes": list(self.notes),
        }
