"""``accelsim system``: list, show and describe multi-device systems."""

from __future__ import annotations

import click

from ..system import list_systems, load_system, system_schema
from ..system.spec import LEVELS
from ..units import format_quantity
from ._common import emit, format_option, render_table, to_json

__all__ = ["command"]


@click.group("system")
def command():
    """Multi-device systems (presets in hwconfigs/systems/ or your own YAML); a chip
    preset is a system of one device."""


@command.command("list")
@format_option("table", "json")
def list_cmd(fmt: str):
    """List the packaged system presets."""
    rows = list_systems()
    emit(to_json(rows) if fmt == "json" else render_table(rows, ["name", "description"]))


def _show_table(s) -> str:
    lines = [f"{s.name}: {s.description}",
             f"{s.num_devices} x {s.hw.name} ({s.nodes} node(s) of {s.devices_per_node})", ""]
    rows = []
    for lv in LEVELS:
        link = s.link(lv)
        if link is None:
            continue
        rows.append({"level": lv, "name": link.name,
                     "bandwidth/dir": format_quantity(link.bandwidth_bytes_per_s, "bandwidth"),
                     "per": link.per,
                     "latency": format_quantity(link.latency_s, "time") if link.latency_s
                     else "0",
                     "energy/B": format_quantity(link.energy_per_byte_j, "energy_per_byte")
                     if link.energy_per_byte_j else "0",
                     "topology": link.topology})
    lines.append(render_table(rows) if rows else "(no links: one device)")
    if s.host_power_w:
        lines += ["", f"host power: {format_quantity(s.host_power_w, 'power')} per node "
                  "(host CPUs, NICs, switches, fans; charged per device used)"]
    if s.uncertain:
        lines += ["", "uncertain: " + ", ".join(s.uncertain)]
    if s.sources:
        lines += ["", "sources:"]
        for src in s.sources:
            d = src.model_dump(mode="json")
            ident = d.get("id")
            text = d.get("cite") or ""
            url = d.get("url")
            lines.append("- " + (f"[{ident}] " if ident else "") + text
                         + (f" ({url})" if url and url not in text else ""))
    return "\n".join(lines)


@command.command("show")
@click.argument("system")
@format_option("table", "json")
def show_cmd(system: str, fmt: str):
    """Show SYSTEM (a preset name, a YAML path, or a chip preset), in base units."""
    spec = load_system(system)
    emit(to_json(spec.to_dict()) if fmt == "json" else _show_table(spec))


@command.command("schema")
def schema_cmd():
    """Print the JSON Schema of the system YAML (for editors)."""
    emit(to_json(system_schema()))
