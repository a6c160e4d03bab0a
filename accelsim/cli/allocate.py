"""``accelsim allocate``: per-expert bit-widths by a method, written as a BitAllocation.

Prints the average expert bits, the weight bytes and a per-layer histogram (experts per
bit-width); ``--out`` writes the allocation (YAML or JSON) that ``accelsim simulate --alloc``
reads; ``--export`` also writes a quantizer config next to it. See docs/allocation.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError, Problem, did_you_mean
from ._common import check_out_path, emit, format_option, render_table, to_json, write_atomic

__all__ = ["command"]

_METHODS = ("uniform", "router-norm", "reverse", "frequency", "random", "pmq", "hessian",
            "budget")
_EXPORTS = ("gptqmodel", "llama.cpp", "hqq")


def _levels(text: str) -> tuple[int, ...]:
    from ..alloc.paper import check_levels
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise ConfigError.single("must be comma-separated integers like 3,2,1",
                                 key="--levels", value=text) from None
    if len(set(parts)) == len(parts) and parts != sorted(parts, reverse=True):
        raise ConfigError.single("bit levels go from high to low, like 3,2,1",
                                 key="--levels", value=text)
    try:
        return check_levels(parts)
    except ConfigError as exc:
        raise ConfigError([Problem(p.reason, key="--levels", value=text)
                           for p in exc.problems]) from None


def _quantity(text: str | None, kind: str, key: str) -> float | None:
    if text is None:
        return None
    from ..units import parse_quantity
    try:
        v = parse_quantity(text, kind)
    except ConfigError as exc:
        raise ConfigError([Problem(p.reason, key=key, value=text)
                           for p in exc.problems]) from None
    if v <= 0:
        raise ConfigError.single("must be > 0", key=key, value=text)
    return v


def _export_path(out: str, fmt: str) -> str:
    from ..alloc.exports import EXPORTS
    p = Path(out)
    return str(p.with_name(p.stem + EXPORTS[fmt][1]))


def _signals(model, signals, checkpoint, pretrained, trace, variance, method, levels,
             calibration=None, synthetic=None):
    from ..alloc.signals import ExpertSignals, load_calibration, signals_from_checkpoint, \
        signals_from_npz, signals_from_trace
    if calibration and method not in ("hessian", "pmq", "budget"):
        raise ConfigError.single("is used by the sensitivity of hessian, pmq and budget",
                                 key="--calibration", value=method)
    if calibration and not checkpoint:
        raise ConfigError.single("needs --checkpoint (the sensitivity is measured on its "
                                 "experts)", key="--calibration", value=str(calibration))
    calib = load_calibration(calibration, model.hidden_size) if calibration else None
    s = ExpertSignals()
    L, E = model.num_moe_layers, model.moe.num_experts
    if synthetic is not None:
        import numpy as np

        from ..sweep.allocation import synthetic_signals
        s = synthetic_signals((L, E), synthetic, np.full((L, E), 1.0 / E))
    if signals:
        s = s.merged(signals_from_npz(signals, variance_kind=variance))
    if checkpoint:
        from ..quant import FAMILIES
        if model.family not in FAMILIES:
            raise ConfigError.single(f"reading checkpoints needs a model family among "
                                     f"{', '.join(sorted(FAMILIES))}", key="--checkpoint",
                                     value=model.family)
        sens_bits = levels if method in ("hessian", "pmq", "budget") else ()
        s = s.merged(signals_from_checkpoint(checkpoint, model.family, pretrained=pretrained,
                                             variance=variance, sensitivity_bits=sens_bits,
                                             calib=calib, calib_label=str(calibration or ""),
                                             group_size=128, progress=_stderr_progress()))
    if trace:
        s = s.merged(signals_from_trace(trace, E, num_layers=L, top_k=model.moe.top_k))
    s.check(L, E)
    return s


def _stderr_progress():
    import time
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        click.echo(f"[{time.perf_counter() - t0:6.1f} s] {msg}", err=True)
    return say


def _summary(alloc, model, extra: dict) -> dict:
    hist = alloc.histogram()
    return {"model": model.name, "method": alloc.method,
            "granularity": alloc.meta.get("granularity", "expert"),
            "average_expert_bits": alloc.average_expert_bits(),
            "pruned_experts": alloc.num_pruned,
            "weight_bytes": alloc.weight_bytes(model), **extra,
            "histogram": {str(b): counts for b, counts in hist.items()}}


def _table(summary: dict, model) -> str:
    hist = {int(b): c for b, c in summary["histogram"].items()}
    bits = sorted(hist, reverse=True)
    rows = [{"layer": layer, **{(f"{b}-bit" if b else "pruned"): hist[b][r] for b in bits}}
            for r, layer in enumerate(model.moe_layers)]
    head = [f"{summary['model']}: method {summary['method']}",
            f"average expert bits  {summary['average_expert_bits']:.4f}",
            f"granularity          {summary['granularity']}",
            f"weight bytes         {summary['weight_bytes']:,} "
            f"({summary['weight_bytes'] / 1e9:.3f} GB)"]
    if summary.get("pruned_experts"):
        head.append(f"{'pruned experts':<20} {summary['pruned_experts']} (0 bits)")
    for k in ("latency_s", "distortion", "lower_bound"):
        if summary.get(k) is not None:
            head.append(f"{k:<20} {summary[k]:.6g}")
    for k, v in summary.items():
        if k.startswith("stored_weight_bytes["):
            head.append(f"stored on {k[20:-1]} ({summary.get('packing')} packing): {v:,} "
                        f"bytes ({v / 1e9:.3f} GB)")
    for k in ("out", "export"):
        if summary.get(k):
            head.append(f"{'wrote ' + k:<20} {summary[k]}")
    return "\n".join(head) + "\n\nexperts per bit-width and MoE layer:\n" + render_table(rows)


@click.command("allocate")
@click.option("--workload", "wl", required=True, help="Model: preset name, YAML or config.json.")
@click.option("--method", required=True, help=f"One of: {', '.join(_METHODS)}.")
@click.option("--avg-bits", type=float, default=None,
              help="Target average bits per routed expert.")
@click.option("--levels", "levels_text", default="3,2,1", show_default=True,
              help="Allowed expert bit-widths, high to low (3 must be equally spaced); "
                   "0 as the lowest prunes those experts, like 4,2,0.")
@click.option("--granularity", type=click.Choice(["expert", "layer"]), default="expert",
              show_default=True,
              help="expert: bits per routed expert; layer: one bit-width for all routed "
                   "experts of a MoE layer (fused MoE kernels), chosen per layer.")
@click.option("--zeta", type=float, default=3.0, show_default=True,
              help="Max-variance promotion ratio (router-norm, combined order).")
@click.option("--order", type=click.Choice(["auto", "router", "maxvar", "combined"]),
              default="auto", show_default=True,
              help="router-norm ordering; auto = combined when max variance is known.")
@click.option("--variance", type=click.Choice(["max_row", "top_norm_row"]), default="max_row",
              show_default=True, help="Max intra-neuron variance variant.")
@click.option("--signals", type=click.Path(dir_okay=False), default=None,
              help="NPZ of signals (router_norm_change or router_norm, max_variance, ...).")
@click.option("--checkpoint", type=click.Path(), default=None,
              help="Fine-tuned safetensors checkpoint (file, shard directory or index).")
@click.option("--pretrained", type=click.Path(), default=None,
              help="Pre-trained checkpoint: the router-norm change is FT minus PT.")
@click.option("--synthetic-signals", "synthetic", type=int, default=None, metavar="SEED",
              help="Seeded stand-in signals (router-norm change, sensitivity; uniform "
                   "routing) for trying methods without a checkpoint; say nothing about a "
                   "real model. --signals, --checkpoint and --trace override them.")
@click.option("--trace", type=click.Path(dir_okay=False), default=None,
              help="Routing trace (.npz expert_ids [+ routing_weights] or .csv).")
@click.option("--calibration", type=click.Path(dir_okay=False), default=None,
              help="Expert-input activations for the sensitivity signal measured on "
                   "--checkpoint (hessian, pmq, budget): .npy [tokens, hidden] or .npz "
                   "with 'tokens'. Default: 64 seeded standard-normal tokens.")
@click.option("--hw", default=None,
              help="Accelerator for --latency-budget; also reports the weight bytes as that "
                   "chip stores them (--packing) and warns about widths it cannot compute on.")
@click.option("--system", "system", default=None, metavar="SYS",
              help="A multi-device system instead of --hw (a preset or YAML; 'accelsim "
                   "system list'): --latency-budget is then a step of the system under "
                   "--plan (default: its default plan over all of its devices), and the "
                   "memory the weights may take is that of all its devices.")
@click.option("--devices", "devices", type=click.IntRange(1, 1 << 20), default=None,
              metavar="N", help="With --system: use its first N devices.")
@click.option("--plan", "plan", default=None, metavar="PLAN",
              help="With --system: the parallelism plan, like 'pp=2,tp=2,ep=4' "
                   "(docs/systems.md).")
@click.option("--packing", type=click.Choice(["native", "dense"]), default="native",
              show_default=True,
              help="With --hw: native = widths padded to those the chip's MAC arrays compute "
                   "on (3 -> 4 bits on a 2/4/8-bit array), dense = packed at their own width.")
@click.option("--memory-budget", default=None, help="Weight memory budget, like '16 GB'.")
@click.option("--memory-scope", type=click.Choice(["global", "layer"]), default="global",
              show_default=True, help="Budget on all weights or on each MoE layer.")
@click.option("--latency-budget", default=None, help="Step latency budget, like '5 ms'.")
@click.option("--batch", type=click.IntRange(1, 1 << 20), default=1, show_default=True,
              help="Scenario for latency: decode batch.")
@click.option("--context", type=click.IntRange(0, 1 << 24), default=0, show_default=True)
@click.option("--pareto", is_flag=True, help="Sweep budgets and report the Pareto front.")
@click.option("--points", type=click.IntRange(2, 200), default=9, show_default=True,
              help="Budgets in the --pareto sweep.")
@click.option("--attention-bits", type=click.IntRange(1, 16), default=4, show_default=True)
@click.option("--group-size", type=click.IntRange(1, 1 << 20), default=128, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="For --method random.")
@click.option("--export", "export_fmt", type=click.Choice(_EXPORTS), default=None,
              help="Also write a quantizer config next to --out.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Write the allocation here (.yaml/.yml: YAML, else JSON).")
@format_option("table", "json")
def command(wl, method, avg_bits, levels_text, granularity, zeta, order, variance, signals,
            checkpoint, pretrained, synthetic, trace, calibration, hw, system, devices, plan,
            packing, memory_budget,
            memory_scope, latency_budget, batch, context, pareto, points, attention_bits,
            group_size, seed, export_fmt, out, fmt):
    """Choose a bit-width for every routed expert of WL with METHOD."""
    # ---- validate every input before any work
    if method not in _METHODS:
        raise ConfigError.single("unknown method" + did_you_mean(method, _METHODS) +
                                 f"; methods: {', '.join(_METHODS)}", key="--method",
                                 value=method)
    check_out_path(out)
    if export_fmt and not out:
        raise ConfigError.single("needs --out (the export is written next to it)",
                                 key="--export", value=export_fmt)
    if pretrained and not checkpoint:
        raise ConfigError.single("needs --checkpoint (the fine-tuned model)",
                                 key="--pretrained")
    levels = _levels(levels_text)
    mem = _quantity(memory_budget, "size", "--memory-budget")
    lat = _quantity(latency_budget, "time", "--latency-budget")
    if (mem is not None or lat is not None or pareto) and method != "budget":
        raise ConfigError.single("budgets and --pareto belong to --method budget",
                                 key="--method", value=method)
    if hw is not None and system is not None:
        raise ConfigError.single("--hw and --system exclude each other (a chip is a system "
                                 "of one device: --system HW)", key="--system")
    if system is None and (devices is not None or plan is not None):
        raise ConfigError.single("--plan and --devices need --system",
                                 key="--plan" if plan is not None else "--devices")
    if lat is not None and hw is None and system is None:
        raise ConfigError.single("a latency budget needs --hw (one chip) or --system",
                                 key="--latency-budget")
    from ..workload import Scenario, load_workload
    model = load_workload(wl)
    accel = target = simulate = None
    if hw is not None:
        from ..hw import load_hw
        accel = target = load_hw(hw)
    if system is not None:
        from ..system import check_plan, load_system, parse_plan
        target = load_system(system)
        if devices is not None:
            target = target.first(devices)
        accel = target.hw
        if plan is not None:
            plan = parse_plan(plan)
            check_plan(plan, model, target.num_devices, target.name)
        simulate = _system_simulator(target, plan)
    s = _signals(model, signals, checkpoint, pretrained, trace, variance, method, levels,
                 calibration, synthetic)

    from ..alloc.methods import AllocRequest, allocate
    req = AllocRequest(model, s, avg_bits=avg_bits, levels=levels, zeta=zeta, order=order,
                       seed=seed, role_bits={"attention": attention_bits},
                       group_size=group_size, hw=target,
                       scenario=Scenario(phase="decode", batch=batch, context=context),
                       memory_budget_bytes=mem, memory_scope=memory_scope,
                       latency_budget_s=lat, memory_budget_text=memory_budget,
                       latency_budget_text=latency_budget, granularity=granularity)
    if pareto:
        return _pareto(req, model, points, out, fmt, simulate)
    extra: dict = {}
    if method == "budget":
        from ..alloc.budget import budget_allocation
        s.check(*req.shape)
        res = budget_allocation(req, simulate=simulate)
        alloc = res.allocation
        extra = {"latency_s": res.latency_s, "distortion": res.distortion,
                 "lower_bound": res.lower_bound}
    else:
        alloc = allocate(method, req)
    texts = {}
    if export_fmt:
        from ..alloc.exports import export_text
        texts[_export_path(out, export_fmt)] = export_text(export_fmt, alloc, model)
    if out:
        _save(alloc, model, out)
        extra["out"] = out
    for path, text in texts.items():
        write_atomic(path, text)
        extra["export"] = path
    if accel is not None:
        from ..packing import packed, packing_warning
        widths = accel.cores.mac_array.weight_bits
        extra["packing"] = packing
        extra[f"stored_weight_bytes[{accel.name}]"] = packed(alloc, widths,
                                                            packing).weight_bytes(model)
        warn = packing_warning(alloc, widths, accel.name, packing)
        if warn:
            click.echo(f"accelsim: warning: {warn}", err=True)
    summary = _summary(alloc, model, extra)
    emit(to_json(summary) if fmt == "json" else _table(summary, model))
    return 0


def _save(alloc, model, out: str) -> None:
    import json

    import yaml
    d = alloc.to_dict(model)
    text = (yaml.safe_dump(_plain(d), sort_keys=False, default_flow_style=None)
            if Path(out).suffix.lower() in (".yaml", ".yml") else json.dumps(_plain(d), indent=2))
    write_atomic(out, text)


def _plain(x):
    from .._io import jsonable
    return jsonable(x)


def _system_simulator(system, plan):
    """``simulate(hw, graph, alloc)`` for the budget method: a step of ``system`` under
    ``plan`` (None: its default plan)."""
    def simulate(hw, graph, alloc):
        from ..system.simulate import simulate_system
        return simulate_system(system, graph, alloc, plan)
    return simulate


def _pareto(req, model, points, out, fmt, simulate=None):
    from ..alloc.budget import pareto_front
    front = pareto_front(req, points, simulate=simulate)
    rows = [{"point": i, "budget_bytes": r.allocation.meta.get("memory_budget_bytes"),
             "budget_s": r.allocation.meta.get("latency_budget_s"),
             "weight_bytes": r.weight_bytes, "latency_s": r.latency_s,
             "average_bits": r.allocation.average_expert_bits(),
             "distortion": r.distortion} for i, r in enumerate(front)]
    if out:
        import json

        import yaml
        doc = _plain({"model": model.name, "method": "budget", "pareto": [
            dict(row, allocation=r.allocation.to_dict(model)) for row, r in zip(rows, front)]})
        text = (yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
                if Path(out).suffix.lower() in (".yaml", ".yml") else json.dumps(doc, indent=2))
        write_atomic(out, text)
    if fmt == "json":
        emit(to_json({"model": model.name, "pareto": rows}))
    else:
        cols = [c for c in rows[0] if any(r[c] is not None for r in rows)] if rows else None
        hint = (f"\n(load point N with --alloc '{out}#N')" if out else "")
        emit(f"{model.name}: Pareto front of {len(rows)} point(s)\n" + render_table(rows, cols)
             + hint)
    return 0
