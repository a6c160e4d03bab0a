"""``accelsim plan``: search parallelism plans and device counts of a system for a model.

Examples (shell)::

    accelsim plan --system h100-8 --workload mixtral-8x7b --bits 4
    accelsim plan --system northpole-rack --workload mixtral-8x7b --bits 4 --objective devices
    accelsim plan --system h100-4x8 --workload deepseek-v3 --bits 4 --max-devices 32 \\
        --latency-budget '50 ms' --format json
"""

from __future__ import annotations


import click

from ..errors import ConfigError
from ._common import check_out_path, emit, format_option, render_table, to_json

__all__ = ["command"]


@click.command("plan")
@click.option("--system", "system", required=True, metavar="SYS",
              help="A system preset or YAML ('accelsim system list'), or a chip preset.")
@click.option("--workload", required=True, metavar="WL",
              help="MoE model: a preset name, a YAML path or a config.json.")
@click.option("--bits", type=click.IntRange(1, 16), default=None,
              help="Uniform weight bits (default 16).")
@click.option("--alloc", "alloc_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="A BitAllocation file; FILE#N picks point N of a Pareto front.")
@click.option("--devices", type=click.IntRange(1, 1 << 20), default=None, metavar="N",
              help="Exactly N devices.")
@click.option("--max-devices", type=click.IntRange(1, 1 << 20), default=None, metavar="N",
              help="At most N devices (default: all of the system).")
@click.option("--latency-budget", default=None, metavar="T",
              help="Keep plans whose per-token latency is at most T, like '20 ms'.")
@click.option("--objective", type=click.Choice(["latency", "throughput", "devices",
                                                "energy"]), default="latency",
              show_default=True, help="What the best plan minimizes (throughput: maximizes).")
@click.option("--tbo", is_flag=True, default=False,
              help="Two-batch overlap on every plan: each micro-batch in two halves, one "
                   "half's communication overlapping the other's computation where it pays "
                   "(plan key tbo=1; docs/systems.md).")
@click.option("--microbatches", type=click.IntRange(1, 1 << 16), default=None, metavar="M",
              help="Micro-batches in flight (default: the number of pipeline stages).")
@click.option("--batch", type=click.IntRange(1, 1 << 24), default=1, show_default=True,
              help="Sequences per micro-batch.")
@click.option("--packing", type=click.Choice(["native", "dense"]), default="native",
              show_default=True,
              help="How weights of widths the chip does not compute on are stored (as for "
                   "'accelsim simulate').")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), default="decode",
              show_default=True)
@click.option("--context", type=click.IntRange(0, 1 << 24), default=0, show_default=True)
@click.option("--seq-len", type=click.IntRange(1, 1 << 24), default=1, show_default=True)
@click.option("--routing", default="uniform", show_default=True,
              help="uniform, zipf:ALPHA, trace:FILE or freq:FILE.npz.")
@click.option("--seed", type=int, default=0, show_default=True)
@format_option("table", "json")
@click.option("--out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write here instead of stdout (atomically).")
def command(system, workload, bits, alloc_path, devices, max_devices, latency_budget,
            objective, tbo, microbatches, batch, packing, phase, context, seq_len, routing, seed,
            fmt, out):
    """Search the parallelism plans (pp, tp, ep, dp) and device counts of SYS for WL: the
    best plan and the Pareto table of devices, per-token latency, tokens/s and energy per
    token."""
    from ..precision import BitAllocation
    from ..system import load_system
    from ..system.search import ROW_KEYS, search_plans
    from ..units import parse_quantity
    from ..workload import Scenario, build_graph, load_workload, parse_routing
    if bits is not None and alloc_path is not None:
        raise ConfigError.single("--bits and --alloc exclude each other", key="--alloc")
    if devices is not None and max_devices is not None:
        raise ConfigError.single("--devices and --max-devices exclude each other",
                                 key="--max-devices")
    check_out_path(out)
    budget = None
    if latency_budget is not None:
        try:
            budget = parse_quantity(latency_budget, "time")
        except ConfigError as exc:
            raise ConfigError.single(exc.problems[0].reason, key="--latency-budget",
                                     value=latency_budget) from None
        if not budget > 0:
            raise ConfigError.single("must be > 0", key="--latency-budget",
                                     value=latency_budget)
    sys_ = load_system(system)
    model = load_workload(workload)
    scenario = Scenario(phase=phase, batch=batch, seq_len=seq_len, context=context,
                        routing=parse_routing(routing), seed=seed)
    alloc = (BitAllocation.load(alloc_path, model) if alloc_path is not None
             else BitAllocation.uniform(model, bits or 16))
    scenario.expert_load(model)
    from ..packing import packed
    alloc = packed(alloc, sys_.hw.cores.mac_array.weight_bits, packing)
    res = search_plans(sys_, build_graph(model, scenario), alloc, devices=devices,
                       max_devices=max_devices, latency_budget_s=budget, objective=objective,
                       microbatches=microbatches, tbo=tbo)
    if fmt == "json":
        emit(to_json({"best": res["best"], "pareto": res["pareto"]}), out)
        return
    best = res["best"]
    head = (f"{sys_.name}: {model.name}, {phase}, batch {batch} per micro-batch; "
            f"{res['evaluated']} plans ({res['infeasible']} do not fit; "
            f"{res['simulated']} simulated exactly after screening)\n\n"
            f"best ({objective}): {best['plan']} on {best['devices']} device(s): "
            f"{best['latency_s']:.6g} s per token, {best['tokens_per_s']:.6g} tokens/s, "
            f"{best['energy_per_token_j']:.6g} J per token, bound {best['bound']}")
    emit(head + "\n\nPareto (devices, latency, tokens/s, energy per token):\n"
         + render_table(res["pareto"], list(ROW_KEYS)), out)
