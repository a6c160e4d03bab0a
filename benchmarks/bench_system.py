"""Benchmarks of the multi-device system simulation (issue 12, item 8).

Run from the repository root::

    python benchmarks/bench_system.py            # every case
    python benchmarks/bench_system.py --quick    # fewer repeats

Prints a markdown report (machine, load average before and after, minimum and median wall
time, minimum CPU time of the process). Results are recorded by hand in
``docs/performance.md``.

Cases:

1. One DeepSeek-V3 decode step (batch 32, context 1024, 4-bit experts) on 32 H100s
   (``h100-4x8``) with expert parallelism (``pp=1,tp=1,ep=32``) through
   ``accelsim.simulate`` after JIT warm-up, with a fresh part cache each time (the placement,
   the 32 device parts and the composition are all redone). Target: <= 50 ms.
2. The same with Zipf(1.2) routing (every layer's placement different), and with random
   2/3/4-bit experts (every device's experts differ): ``simulate_parts`` over distinct units.
3. ``accelsim plan`` over every plan for <= 64 devices (``search_plans`` with
   ``max_devices=64``, what the command runs) on 8 nodes of 8 H100s (``h100-4x8``'s nodes
   and links, twice as many): DeepSeek-V3 (decode, batch 32) and Mixtral-8x7B (decode,
   batch 16). Each run includes the plan enumeration, the placements, one
   ``simulate_parts`` call over every distinct part, and the composition. Target: <= 10 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np


def timed(fn, repeats: int):
    """``(last result, min wall seconds, median wall seconds, min CPU seconds)``: the CPU
    time of the process (``time.process_time``) says more than wall time on a shared
    machine."""
    out, wall, cpu = None, [], []
    for _ in range(repeats):
        c, t = time.process_time(), time.perf_counter()
        out = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return out, min(wall), statistics.median(wall), min(cpu)


def row(case: str, tmin: float, tmed: float, cpu: float, unit: str = "ms",
        note: str = "") -> str:
    f = 1e3 if unit == "ms" else 1.0
    return f"| {case} | {tmin * f:.3g} | {tmed * f:.3g} | {cpu * f:.3g} | {unit} | {note} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    reps = 3 if args.quick else 10
    load0 = os.getloadavg()
    import accelsim
    from accelsim.system import load_system
    from accelsim.system.search import search_plans
    from accelsim.system.spec import System
    from accelsim.workload import Zipf

    ds = accelsim.load_workload("deepseek-v3")
    a4 = accelsim.BitAllocation.uniform(ds, 4)
    g = accelsim.build_graph(ds, accelsim.Scenario(phase="decode", batch=32, context=1024))
    gz = accelsim.build_graph(ds, accelsim.Scenario(phase="decode", batch=32, context=1024,
                                                    routing=Zipf(1.2)))
    sys32 = load_system("h100-4x8")
    accelsim.simulate(sys32, g, a4, plan="ep=32")      # JIT warm-up, lowering cache
    rows = []
    r, tmin, tmed, cpu = timed(lambda: accelsim.simulate(sys32, g, a4, plan="ep=32"), reps)
    rows.append(row("DeepSeek-V3 decode step, 32 x H100, pp=1,tp=1,ep=32", tmin, tmed, cpu,
                    note=f"latency {r.latency_s * 1e3:.3g} ms, bound {r.bound}"))
    accelsim.simulate(sys32, gz, a4, plan="ep=32")
    r, tmin, tmed, cpu = timed(lambda: accelsim.simulate(sys32, gz, a4, plan="ep=32"), reps)
    rows.append(row("same, Zipf(1.2) routing", tmin, tmed, cpu,
                    note=f"imbalance {r.pipeline['expert_imbalance']:.3g}"))
    # per-expert precision: every device's experts differ, so no two parts are equivalent
    bits = np.random.default_rng(0).choice([2, 3, 4], size=(ds.num_moe_layers,
                                                             ds.num_experts))
    amix = a4.with_expert_bits(bits)
    accelsim.simulate(sys32, g, amix, plan="ep=32")
    r, tmin, tmed, cpu = timed(lambda: accelsim.simulate(sys32, g, amix, plan="ep=32"), reps)
    rows.append(row("same, mixed 2/3/4-bit experts (random per expert, seed 0)", tmin, tmed,
                    cpu,
                    note=f"latency {r.latency_s * 1e3:.3g} ms"))
    sys64 = System(name="h100-8x8", hw=sys32.hw, devices_per_node=8, nodes=8,
                   links=sys32.links)
    plan_reps = 1 if args.quick else 3
    out, tmin, tmed, cpu = timed(lambda: search_plans(sys64, g, a4, max_devices=64), plan_reps)
    rows.append(row("accelsim plan: DeepSeek-V3 on <= 64 H100s", tmin, tmed, cpu, "s",
                    f"{out['evaluated']} plans (dp=1), {len(out['rows'])} rows, best "
                    f"{out['best']['plan']}"))
    mx = accelsim.load_workload("mixtral-8x7b")
    gm = accelsim.build_graph(mx, accelsim.Scenario(phase="decode", batch=16, context=512))
    am = accelsim.BitAllocation.uniform(mx, 4)
    out, tmin, tmed, cpu = timed(lambda: search_plans(sys64, gm, am, max_devices=64), plan_reps)
    rows.append(row("accelsim plan: Mixtral-8x7B on <= 64 H100s", tmin, tmed, cpu, "s",
                    f"{out['evaluated']} plans (dp=1), {len(out['rows'])} rows, best "
                    f"{out['best']['plan']}"))
    load1 = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; load average before "
          f"{load0[0]:.2f}, after {load1[0]:.2f}\n")
    print("| case | min | median | CPU min | unit | note |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
