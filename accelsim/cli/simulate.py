"""``accelsim simulate``: one inference step (or one GEMM) on an accelerator.

Examples (shell)::

    accelsim simulate --hw h100 --workload mixtral-8x7b --bits 4 --batch 16
    accelsim simulate --hw gemmini --gemm 64,4096,14336 --bits 8 --format json
    accelsim simulate --hw spyre --workload mixtral-8x7b --alloc alloc.yaml --ops --format csv
    accelsim simulate --system h100-8 --workload mixtral-8x7b --bits 4 --plan tp=2,ep=8
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import click

from ..errors import ConfigError, Problem
from ._common import check_out_path, emit, format_option, render_table, to_json

__all__ = ["command"]

_RESIDENCY = ("hot-first", "offchip", "must-fit")
_DATAFLOWS = ("weight_stationary", "output_stationary")


def _parse_gemm(text: str) -> tuple[float, int, int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 3:
            raise ValueError
        m, k, n = (int(p) for p in parts)   # whole rows, like K and N
    except ValueError:
        raise ConfigError.single("must be M,K,N (activations M x K, weights K x N), like "
                                 "'64,4096,14336'", key="--gemm", value=text) from None
    if not (1 <= m <= 2**31 and 1 <= k <= 2**31 and 1 <= n <= 2**31):
        raise ConfigError.single("M, K and N must be >= 1 (and at most 2^31)", key="--gemm",
                                 value=text)
    return m, k, n


def _parse_group_size(text: str | None) -> int | None | str:
    """``--group-size``: a positive integer, or ``none`` (one scale per output row);
    ``"default"`` when not given."""
    if text is None:
        return "default"
    t = text.strip().lower()
    if t in ("none", "null", "row"):
        return None
    try:
        g = int(t)
    except ValueError:
        g = 0
    if not 1 <= g <= 1 << 20:
        raise ConfigError.single("must be an integer in 1..1048576 (weights per scale along "
                                 "K) or 'none' (one scale per output row)",
                                 key="--group-size", value=text)
    return g


def _check_combination(hw, workload, gemm, bits, alloc, ops, fmt) -> None:
    problems = []
    if gemm is None and workload is None:
        problems.append(Problem("give --workload WL (a model step) or --gemm M,K,N",
                                key="--workload"))
    if gemm is not None and workload is not None:
        problems.append(Problem("--gemm and --workload exclude each other", key="--gemm"))
    if bits is not None and alloc is not None:
        problems.append(Problem("--bits and --alloc exclude each other", key="--alloc"))
    if gemm is not None and alloc is not None:
        problems.append(Problem("--gemm takes --bits (weight bits), not --alloc",
                                key="--alloc"))
    if problems:
        raise ConfigError(problems)


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue().rstrip("\n")


def _totals_row(res) -> dict:
    d = res.to_dict()
    row = {"hw": d["hw"], "model": d["model"] or "", "residency": d["residency"]}
    for k in ("latency_s", "cycles", "tokens", "tokens_per_s", "energy_j", "weight_bytes",
              "offchip_bytes", "onchip_bytes_moved", "macs", "mac_utilization",
              "compute_cycles", "stall_cycles", "vector_cycles", "noc_cycles", "bound"):
        row[k] = d[k]
    for name, v in d["weight_bytes_by_level"].items():
        row[f"weight_bytes[{name}]"] = v
    for name, v in d["bytes_by_level"].items():
        row[f"bytes_moved[{name}]"] = v
    return row


def _check_system(hw_name, system, gemm, plan, devices) -> None:
    if hw_name is None and system is None:
        raise click.UsageError("Missing option '--hw' (one chip) or '--system' (several)",
                               ctx=click.get_current_context(silent=True))
    problems = []
    if hw_name is not None and system is not None:
        problems.append(Problem("--hw and --system exclude each other (a chip is a system "
                                "of one device: --system HW)", key="--system"))
    if system is None and (plan is not None or devices is not None):
        problems.append(Problem("--plan and --devices need --system", key=(
            "--plan" if plan is not None else "--devices")))
    if system is not None and gemm is not None:
        problems.append(Problem("--gemm simulates one GEMM on one chip: use --hw",
                                key="--gemm"))
    if problems:
        raise ConfigError(problems)


def _system_tables(res) -> str:
    dcols = ["device", "node", "stage", "layers", "sequences", "experts", "memory_bytes",
             "expected_load", "latency_s", "busy_fraction", "utilization", "energy_j", "bound"]
    rows = [{**d, "layers": f"{d['layers'][0]}-{d['layers'][1] - 1}"} for d in res.per_device]
    lcols = ["level", "bytes", "time_s", "energy_j"]
    return ("\n\nper device:\n" + render_table(rows, dcols)
            + "\n\nper link level:\n" + render_table(list(res.per_link), lcols))


def _run_description(alloc, alloc_path, bits, packing, stored) -> dict:
    """What the run used: bits, allocation, packing (printed and in the JSON)."""
    if alloc is None:  # one GEMM
        return {"weight_bits": bits, "packing": packing, "stored_weight_bits": stored}
    d = {"allocation": alloc_path or f"uniform {bits or 16}-bit",
         "method": alloc.method,
         "average_expert_bits": _avg_bits(alloc),
         "other_bits": {k: int(v) for k, v in alloc.defaults.items()},
         "activation_bits": alloc.activation_bits, "kv_bits": alloc.kv_bits,
         "packing": packing}
    if stored is not None and stored is not alloc:
        d["stored_average_expert_bits"] = _avg_bits(stored)
        d["stored_other_bits"] = {k: int(v) for k, v in stored.defaults.items()}
    return d


def _avg_bits(alloc) -> float | None:
    """Average routed-expert bits, or None for a model without routed experts."""
    avg = alloc.average_expert_bits()
    return None if avg != avg else round(avg, 4)


def _describe(run: dict, res) -> str:
    sc = res.scenario
    phase = sc.get("phase", "")
    shape = (f"batch {sc.get('batch')}, context {sc.get('context')}" if phase == "decode"
             else f"batch {sc.get('batch')}, prompt {sc.get('seq_len')} tokens")
    routing = sc.get("routing")
    if isinstance(routing, dict):
        routing = routing.get("kind", "") + "".join(
            f" {k}={v}" for k, v in routing.items() if k != "kind")
    if "allocation" not in run:
        return (f"{res.hw}: one GEMM, weights {run['weight_bits']}-bit ({run['packing']} "
                f"packing: stored at {run['stored_weight_bits']} bits), residency "
                f"{res.residency}")
    act = run["activation_bits"] if run["activation_bits"] is not None else "chip default"
    stored = (f", stored as {run['stored_average_expert_bits']:g}"
              if run.get("stored_average_expert_bits") is not None else "")
    experts = ("no routed experts" if run["average_expert_bits"] is None else
               f"experts {run['average_expert_bits']:g} average bits{stored}")
    return (f"{res.hw}: {res.model}, {phase}, {shape}"
            + (f", routing {routing}" if routing not in (None, "uniform") else "")
            + (f", {sc['pruned_experts']} experts pruned (never routed)"
               if sc.get("pruned_experts") else "")
            + (f", {sc['rerouted_selections']} trace selections re-routed to surviving "
               f"experts" if sc.get("rerouted_selections") else "")
            + f"\nallocation {run['allocation']} (method {run['method']}): {experts} "
              f"({run['packing']} packing), attention {run['other_bits'].get('attention')}, router "
              f"{run['other_bits'].get('router')}, embeddings "
              f"{run['other_bits'].get('embeddings')} bits; activations {act}, KV cache "
              f"{run['kv_bits']} bits; residency {res.residency}")


def _render(res, fmt: str, ops: bool, run: dict | None = None) -> str:
    if fmt == "json":
        d = res.to_dict(ops=ops)
        if run is not None:
            d["run"] = run
        return to_json(d)
    if fmt == "csv":
        if ops:
            df = res.ops
            rows = df.astype(object).where(df.notna(), None).to_dict(orient="records")
            return _csv(rows, list(df.columns))
        row = _totals_row(res)
        if hasattr(res, "per_device"):
            row = {"devices": res.devices, "plan": res.plan, **row,
                   "energy_per_token_j": res.energy_per_token_j}
        return _csv([row], list(row))
    head = (_describe(run, res) if run is not None else
            f"{res.hw}: " + (f"{res.model}, " if res.model else "")
            + ", ".join(f"{k}={v}" for k, v in res.scenario.items() if k != "routing")
            + f", residency {res.residency}")
    text = head + "\n\n" + render_table(res.summary_rows(), ["quantity", "value"])
    if hasattr(res, "per_device"):
        text += _system_tables(res)
    if res.warnings:
        text += "\n\nwarnings:\n" + "\n".join(f"- {w}" for w in res.warnings)
    if ops:
        cols = ["name", "op", "w_bits", "core", "cores", "start_cycle", "end_cycle", "cycles",
                "compute_cycles", "stall_cycles", "dataflow", "energy_j"]
        df = res.ops
        text += "\n\n" + render_table(df[cols].astype(object).where(df[cols].notna(), None)
                                      .to_dict(orient="records"), cols)
    return text


@click.command("simulate")
@click.option("--hw", "hw_name", metavar="HW",
              help="Accelerator: a preset name or a YAML path.")
@click.option("--system", "system", metavar="SYS",
              help="A multi-device system (a preset name or a YAML path; 'accelsim system "
                   "list'), instead of --hw.")
@click.option("--plan", "plan", metavar="PLAN",
              help="With --system: parallelism plan like 'pp=4,tp=2,ep=8' (keys pp, tp, ep, "
                   "dp, mb, rep; docs/systems.md). Default: expert parallelism over the "
                   "devices, pipeline stages for the rest.")
@click.option("--devices", "devices", type=click.IntRange(1, 1 << 20), default=None,
              metavar="N", help="With --system: use the first N devices.")
@click.option("--workload", "workload", metavar="WL",
              help="MoE model: a preset name, a YAML path or a config.json.")
@click.option("--gemm", "gemm", metavar="M,K,N",
              help="Simulate one GEMM (activations M x K, weights K x N) instead of a step.")
@click.option("--bits", type=click.IntRange(1, 16), default=None,
              help="Uniform weight bits (experts, attention, shared; router and embeddings "
                   "stay 16). With --gemm: the weight bits (default 8). Default: 16.")
@click.option("--alloc", "alloc_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="A BitAllocation file (YAML or JSON), e.g. from 'accelsim allocate'; "
                   "FILE#N picks point N of an 'allocate --pareto' front.")
@click.option("--activation-bits", type=click.IntRange(1, 16), default=None,
              help="Activation bits (default: the allocation's, else the accelerator's).")
@click.option("--kv-bits", type=click.IntRange(1, 16), default=None,
              help="KV-cache bits (default: the allocation's, 16).")
@click.option("--batch", type=click.IntRange(1, 1 << 24), default=1, show_default=True,
              help="Sequences in the step.")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), default="decode",
              show_default=True)
@click.option("--context", type=click.IntRange(0, 1 << 24), default=0, show_default=True,
              help="Decode: tokens already in the KV cache.")
@click.option("--seq-len", type=click.IntRange(1, 1 << 24), default=1, show_default=True,
              help="Prefill: prompt length.")
@click.option("--routing", default="uniform", show_default=True,
              help="uniform, zipf:ALPHA, trace:FILE (.npz/.csv) or freq:FILE.npz.")
@click.option("--seed", type=int, default=0, show_default=True, help="Routing seed (zipf).")
@click.option("--residency", type=click.Choice(_RESIDENCY), default="hot-first",
              show_default=True, help="Where weights live (docs/simulator.md).")
@click.option("--dataflow", type=click.Choice(_DATAFLOWS), default=None,
              help="Force a dataflow (default: the fastest the array supports, per GEMM).")
@click.option("--group-size", "group_size", metavar="N|none", default=None,
              help="Weights per scale and zero point along K, or 'none' for one per output "
                   "row (default: the allocation's; 128).")
@click.option("--staging-fraction", type=click.FloatRange(0.0, 1.0, min_open=True),
              default=0.25, show_default=True,
              help="Share of each staging buffer kept for double-buffered tiles, in (0, 1] "
                   "(docs/simulator.md).")
@click.option("--packing", type=click.Choice(["native", "dense"]), default="native",
              show_default=True,
              help="native: quantized weights stored padded to the widths the chip's MAC "
                   "arrays compute on (3 -> 4 bits on a 2/4/8-bit array); dense: packed "
                   "back to back at their own width (docs/simulator.md).")
@click.option("--ideal", is_flag=True,
              help="Ideal roofline: ignore the accelerator's efficiency model (achievable "
                   "bandwidth and MAC-rate shares, kernel and step overheads; "
                   "docs/fidelity.md).")
@format_option("table", "json", "csv")
@click.option("--ops", "with_ops", is_flag=True,
              help="Add the per-op table (json: key 'ops'; csv: the op table instead of "
                   "the totals).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write here instead of stdout (atomically).")
def command(hw_name, system, plan, devices, workload, gemm, bits, alloc_path, activation_bits,
            kv_bits, batch, phase, context, seq_len, routing, seed, residency, dataflow,
            group_size, staging_fraction, packing, ideal, fmt, with_ops, out):
    """Simulate one inference step of WL (or one GEMM) on HW or on a system SYS: latency,
    throughput, energy, memory footprint per level and traffic (with --system also per
    device and per link level)."""
    from ..hw import load_hw
    _check_system(hw_name, system, gemm, plan, devices)
    _check_combination(hw_name, workload, gemm, bits, alloc_path, with_ops, fmt)
    check_out_path(out)
    gs = _parse_group_size(group_size)
    if system is not None:
        from ..system import load_system, parse_plan
        sys_ = load_system(system)
        if devices is not None:
            sys_ = sys_.first(devices)
        plan = parse_plan(plan) if plan is not None else None
        if ideal:
            sys_ = replace(sys_, hw=sys_.hw.ideal())
        hw = sys_.hw
    else:
        hw = load_hw(hw_name)
        if ideal:
            hw = hw.ideal()
    if gemm is not None:
        from ..sim import simulate_gemm
        from ..packing import padded_width
        m, k, n = _parse_gemm(gemm)
        w = bits or 8
        stored_w = padded_width(w, hw.cores.mac_array.weight_bits) if packing == "native" else w
        res = simulate_gemm(hw, m, k, n, w_bits=stored_w, a_bits=activation_bits,
                            dataflow=dataflow, residency=residency,
                            group_size=128 if gs == "default" else gs,
                            staging_fraction=float(staging_fraction))
        run = _run_description(None, None, w, packing, stored_w)
    else:
        from ..precision import BitAllocation
        from ..sim import simulate
        from ..workload import Scenario, build_graph, load_workload, parse_routing
        model = load_workload(workload)
        scenario = Scenario(phase=phase, batch=batch, seq_len=seq_len, context=context,
                            routing=parse_routing(routing), seed=seed)
        if alloc_path is not None:
            alloc = BitAllocation.load(alloc_path, model)
        else:
            alloc = BitAllocation.uniform(model, bits or 16)
        changes = {}
        if activation_bits is not None:
            changes["activation_bits"] = activation_bits
        if kv_bits is not None:
            changes["kv_bits"] = kv_bits
        if gs != "default":
            changes["group_size"] = gs
        if changes:
            alloc = replace(alloc, **changes)
        scenario.expert_load(model)  # routing problems surface before any work
        from ..packing import packed, packing_warning
        widths = hw.cores.mac_array.weight_bits
        warn = packing_warning(alloc, widths, hw.name, packing)
        stored = packed(alloc, widths, packing)
        graph = build_graph(model, scenario)
        if system is not None:
            from ..system import check_plan
            from ..system.simulate import simulate_system
            if plan is not None:
                check_plan(plan, model, sys_.num_devices, sys_.name)
            res = simulate_system(sys_, graph, stored, plan, residency=residency,
                                  dataflow=dataflow, staging_fraction=float(staging_fraction))
        else:
            res = simulate(hw, graph, stored, residency=residency, dataflow=dataflow,
                           staging_fraction=float(staging_fraction))
        if warn:
            res = replace(res, warnings=tuple(res.warnings) + (warn,))
        run = _run_description(alloc, alloc_path, bits, packing, stored)
    emit(_render(res, fmt, with_ops, run), out)
