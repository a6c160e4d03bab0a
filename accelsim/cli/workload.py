"""``accelsim workload``: list, show and graph MoE models."""

from __future__ import annotations

import click

from ..errors import ConfigError
from ..workload import Scenario, build_graph, graph_summary, list_workloads, load_workload
from ..workload.scenario import parse_routing
from ._common import check_out_path, emit, format_option, render_table, to_json, write_atomic

__all__ = ["command"]


@click.group("workload")
def command():
    """MoE models (presets in workloads/, your own YAML, or a Hugging Face config.json)."""


@command.command("list")
@format_option("table", "json")
def list_cmd(fmt: str):
    """List the packaged model presets."""
    rows = list_workloads()
    emit(to_json(rows) if fmt == "json" else render_table(rows, ["name", "description"]))


def _show_table(s: dict) -> str:
    keys = ["name", "family", "architecture", "hidden_size", "num_layers", "num_moe_layers",
            "num_experts", "top_k", "num_shared_experts", "expert_ffn_size", "ffn_kind",
            "attention", "vocab_size"]
    lines = [f"{s['name']}: {s['description']}"] if s.get("description") else [s["name"]]
    lines += [f"  {k:<28} {s[k]}" for k in keys[1:]]
    for k in ("total_params", "active_params", "expert_params", "shared_expert_params",
              "embedding_params", "params_per_expert"):
        lines.append(f"  {k:<28} {s[k]:,} ({s[k] / 1e9:.3f} B)")
    return "\n".join(lines)


@command.command("show")
@click.argument("wl")
@format_option("table", "json")
def show_cmd(wl: str, fmt: str):
    """Show model WL (preset name, model YAML, or config.json) with its parameter counts."""
    s = load_workload(wl).summary()
    emit(to_json(s) if fmt == "json" else _show_table(s))


@command.command("graph")
@click.argument("wl")
@click.option("--batch", type=click.IntRange(1, 1 << 24), default=1, show_default=True)
@click.option("--phase", type=click.Choice(["decode", "prefill"]), default="decode",
              show_default=True)
@click.option("--context", type=click.IntRange(0, 1 << 24), default=0, show_default=True,
              help="Tokens already in the KV cache (decode).")
@click.option("--seq-len", type=click.IntRange(1, 1 << 24), default=None,
              help="Prompt tokens per sequence (prefill; default 512).")
@click.option("--routing", default="uniform", show_default=True,
              help="uniform | zipf:ALPHA | trace:FILE | freq:FILE.npz")
@click.option("--seed", type=int, default=0, show_default=True)
@format_option("table", "json")
@click.option("--export", "export", type=click.Path(dir_okay=False), default=None,
              help="Also write the graph as GraphML.")
def graph_cmd(wl, batch, phase, context, seq_len, routing, seed, fmt, export):
    """Build the op graph of one step of WL and summarise it."""
    if export is not None:
        if not export.endswith(".graphml"):
            raise ConfigError.single("must end in .graphml", key="--export", value=export)
        check_out_path(export)
    model = load_workload(wl)
    seq = seq_len if seq_len is not None else (512 if phase == "prefill" else 1)
    scen = Scenario(phase=phase, batch=batch, seq_len=seq, context=context,
                    routing=parse_routing(routing), seed=seed)
    g = build_graph(model, scen)
    s = graph_summary(g)
    if export:
        import io

        import networkx as nx
        h = g.copy()
        h.graph = {k: v for k, v in g.graph.items() if isinstance(v, (int, float, str))}
        for _, a in h.nodes(data=True):
            for key in [k for k, v in a.items() if v is None or isinstance(v, bool)]:
                a[key] = "" if a[key] is None else str(a[key])
        buf = io.BytesIO()
        nx.write_graphml(h, buf)
        write_atomic(export, buf.getvalue())
    if fmt == "json":
        emit(to_json(s))
        return
    rows = [{"op": op, "count": v["count"], "macs": v["macs"], "vector_ops": v["vector_ops"]}
            for op, v in sorted(s["by_op"].items())]
    emit(f"{s['model']}: {phase}, batch {batch}, {scen.tokens} token(s) per step\n"
         f"nodes {s['nodes']}, edges {s['edges']}, total MACs {s['total_macs']:.4g}, "
         f"weight params {s['weight_params']:,}\n\n" + render_table(rows))
