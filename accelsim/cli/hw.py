"""``accelsim hw``: list, show and describe accelerator descriptions."""

from __future__ import annotations

import click

from ..hw import hw_schema, list_hw, load_hw
from ..units import format_quantity
from ._common import emit, format_option, render_table, to_json

__all__ = ["command"]


@click.group("hw")
def command():
    """Accelerator descriptions (presets in hwconfigs/ or your own YAML)."""


@command.command("list")
@format_option("table", "json")
def list_cmd(fmt: str):
    """List the packaged accelerator presets."""
    rows = list_hw()
    emit(to_json(rows) if fmt == "json" else render_table(rows, ["name", "description"]))


def _show_table(hw) -> str:
    ma = hw.cores.mac_array
    lines = [
        f"{hw.name}: {hw.description}",
        f"clock {format_quantity(hw.clock_hz, 'frequency')}, {hw.cores.count} core(s), "
        f"MAC array {ma.rows}x{ma.cols} {ma.arithmetic.kind}, fill {ma.fill}, "
        f"weight bits {ma.weight_bits}, "
        f"activation bits {ma.activation_bits} (default {ma.default_activation_bits})",
        f"on-chip memory {format_quantity(hw.onchip_capacity_bytes, 'size')}, off-chip "
        f"bandwidth " + (format_quantity(hw.offchip_bandwidth_bytes_per_s, 'bandwidth')
                         if hw.offchip_bandwidth_bytes_per_s else "none (weights on chip only)"),
        "",
        render_table([{"level": m.name, "scope": m.scope,
                       "capacity": format_quantity(m.capacity_bytes, "size"),
                       "read_bw": format_quantity(m.read_bandwidth_bytes_per_s, "bandwidth"),
                       "latency": format_quantity(m.latency_s, "time") if m.latency_s else "0",
                       "energy/B": format_quantity(m.read_energy_per_byte_j, "energy_per_byte"),
                       "holds": ",".join(m.holds),
                       "reuse": hw.level_reuse(m) if m.scope == "chip" else ""}
                      for m in hw.memory]),
        "",
        render_table([{"weight_bits": b, "peak_MAC/s": hw.peak_macs_per_s(b)}
                      for b in (1, 2, 3, 4, 8, 16)]),
    ]
    e = hw.efficiency
    if e is not None:
        lines += ["", f"efficiency (calibrated; --ideal ignores it): off-chip bandwidth x"
                      f"{e.offchip_bandwidth:g}, MAC rate x{e.mac_rate:g}"
                      + (f" (attention x{e.attention_mac_rate:g})"
                         if e.attention_mac_rate is not None else "")
                      + (f" (routed experts x{e.expert_mac_rate:g})"
                         if e.expert_mac_rate is not None else "") + ", "
                      f"{format_quantity(e.kernel_overhead_s, 'time')} per kernel, "
                      f"{format_quantity(e.step_overhead_s, 'time')} per step"]
    if hw.energy.rated_power_w is not None:
        lines += [f"static power {format_quantity(hw.energy.static_power_w, 'power')}, rated "
                  f"power {format_quantity(hw.energy.rated_power_w, 'power')}"]
    if hw.uncertain:
        lines += ["", "uncertain: " + ", ".join(hw.uncertain)]
    return "\n".join(lines)


@command.command("show")
@click.argument("hw")
@format_option("table", "json")
def show_cmd(hw: str, fmt: str):
    """Show accelerator HW (a preset name or a YAML path), normalized to base units."""
    spec = load_hw(hw)
    emit(to_json(spec.to_dict()) if fmt == "json" else _show_table(spec))


@command.command("schema")
def schema_cmd():
    """Print the JSON Schema of the accelerator YAML (for editors)."""
    emit(to_json(hw_schema()))
