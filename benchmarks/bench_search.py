"""Benchmarks of the two plan searches of ``accelsim/system/search.py`` that are not
``accelsim plan``'s default run (that one is in ``bench_system.py``).

Run from the repository root::

    python benchmarks/bench_search.py            # both cases
    python benchmarks/bench_search.py --quick    # one repeat

Prints a markdown report (load average before and after, CPU time of the process,
``time.process_time``, minimum and median over the repeats). Results are recorded by hand
in ``docs/performance.md``.

Cases:

1. ``accelsim validate``'s NorthPole systems: ``report.claims.northpole_smallest`` for
   every allocation of the full report (Mixtral-8x7B, 8 allocations, batches 1, 8 and 64,
   context 512, native packing) on ``northpole-rack``, with the report's ``known`` counts
   carried from batch to batch as the latency section does. One warm-up search first (JIT).
2. ``search_plans(..., tbo=True)`` (``accelsim plan --tbo``), screened: Mixtral-8x7B 4-bit,
   decode batch 8 context 256, on ``h100-8`` and on ``spyre-8``, and prefill batch 8 of 64
   tokens on ``h100-4x8`` (<= 32 GPUs).
"""

from __future__ import annotations

import argparse
import os

from _timing import cpu_timed


def northpole_case():
    from accelsim.errors import DoesNotFitError
    from accelsim.report.claims import ValidateConfig, _stored, allocations, northpole_smallest
    from accelsim.workload import Scenario, build_graph, load_workload
    cfg = ValidateConfig()
    m = load_workload(cfg.model)
    allocs = {k: _stored(a, "northpole", cfg.packing) for k, a in allocations(m, cfg).items()}
    graphs = {b: build_graph(m, Scenario(phase="decode", batch=b, context=cfg.context))
              for b in cfg.batches}
    northpole_smallest(m, graphs[1], allocs["uniform-2"], {})      # warm-up (JIT)

    def run():
        known, cards = {}, {}
        for b, g in graphs.items():
            for label, a in allocs.items():
                try:
                    cards[(b, label)] = northpole_smallest(m, g, a, known)[0].devices
                except DoesNotFitError:
                    cards[(b, label)] = None
        return cards
    return run


def tbo_case():
    import accelsim
    from accelsim.system.search import search_plans
    m = accelsim.load_workload("mixtral-8x7b")
    a = accelsim.BitAllocation.uniform(m, 4)
    dec = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=8, context=256))
    pre = accelsim.build_graph(m, accelsim.Scenario(phase="prefill", batch=8, seq_len=64))
    cases = [("h100-8", dec, None), ("spyre-8", dec, None), ("h100-4x8", pre, 32)]
    search_plans("h100-8", dec, a, devices=2, tbo=True)                # warm-up (JIT)

    def run():
        return {name: search_plans(name, g, a, max_devices=top, tbo=True)["simulated"]
                for name, g, top in cases}
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repeat")
    args = ap.parse_args()
    reps = 1 if args.quick else 3
    load0 = os.getloadavg()
    rows = []
    for name, make in (("northpole_smallest, every allocation and batch of validate",
                        northpole_case), ("search_plans(tbo=True), 3 cases", tbo_case)):
        out, tmin, tmed = cpu_timed(make(), reps)
        rows.append((name, tmin, tmed, out))
    load1 = os.getloadavg()
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f}\n")
    print("| case | min CPU s | median CPU s | result |\n|---|---|---|---|")
    for name, tmin, tmed, out in rows:
        print(f"| {name} | {tmin:.2f} | {tmed:.2f} | {out} |")


if __name__ == "__main__":
    main()
