"""What one warm sweep point and one decode step cost, split into their parts.

1. **GEMM sweep points.** ``run_sweep`` (serial executor, in this process) over GEMM specs
   of several sizes, run twice so caches are warm; per point: the whole run, the
   ``evaluate_point`` calls alone, and the rest (chunking and the results table).
2. **Decode steps.** ``simulate`` of one Mixtral-8x7B decode step (batch 16, context 512)
   with the graph object reused, with a new ``build_graph`` of the same scenario every step,
   and with a new context every step (a real decode loop: the graph changes); ``build_graph``
   and ``lower`` alone.

CPU seconds (``time.process_time``, the best of ``--repeat`` runs), which other processes on
the machine disturb less than wall time. Results are recorded in docs/performance.md and
docs/sweeps.md::

    python benchmarks/bench_costs.py
    python benchmarks/bench_costs.py --repeat 5 --only sweep
"""

from __future__ import annotations

import argparse
import time


def _best(fn, repeat: int, n: int = 1) -> float:
    """Best CPU seconds of ``n`` calls of ``fn`` over ``repeat`` runs, per call."""
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t) / n)
    return best


def _gemm_spec(points: int):
    from accelsim.sweep import load_sweep
    rows = [8, 16, 32, 64, 128]
    shapes = ["1,4096,14336", "16,4096,14336", "64,1024,1024", "256,4096,14336"]
    grid = {"gemm": shapes, "avg_bits": [2, 4, 8], "hw.cores.mac_array.rows": rows,
            "residency": ["hot-first", "offchip"]}
    if points <= 30:
        grid = {"gemm": shapes[:3], "avg_bits": [2, 4, 8], "hw": ["gemmini", "bitfusion",
                                                                  "loom"]}
        return load_sweep({"name": "bench-gemm-small", "axes": [{"grid": grid}]})
    if points > 200:
        grid["hw.dma.channels"] = [1, 2, 4, 8, 16]
    return load_sweep({"name": "bench-gemm", "fixed": {"hw": "gemmini"},
                       "axes": [{"grid": grid}]})


def bench_sweep(repeat: int) -> None:
    from accelsim.sweep import run_sweep
    from accelsim.sweep.evaluate import evaluate_point
    from accelsim.sweep.run import results_table
    print("| GEMM sweep | points | whole run, ms/point | evaluate_point, ms/point | "
          "results table, ms |")
    print("|---|---|---|---|---|")
    for size in (27, 120, 600):
        spec = _gemm_spec(size)
        n = len(spec.points)
        run_sweep(spec)                                   # warm every cache
        whole = _best(lambda: run_sweep(spec), repeat)
        ev = _best(lambda: [evaluate_point(p) for p in spec.points], repeat)
        rows = [{"point_id": p.id, **evaluate_point(p)} for p in spec.points]
        table = _best(lambda: results_table(spec, rows), repeat)
        print(f"| {spec.name} | {n} | {whole / n * 1e3:.3f} | {ev / n * 1e3:.3f} | "
              f"{table * 1e3:.1f} |")


def bench_step(repeat: int) -> None:
    from accelsim import BitAllocation, Scenario, build_graph, load_workload, simulate
    from accelsim.sim.lower import lower
    m = load_workload("mixtral-8x7b")
    sc = Scenario(phase="decode", batch=16, context=512)
    a = BitAllocation.uniform(m, 4)
    g = build_graph(m, sc)
    simulate("h100", g, a)
    ctx = iter(range(10**9))
    rows = [
        ("simulate, graph object reused", lambda: simulate("h100", g, a)),
        ("simulate(build_graph(same scenario))",
         lambda: simulate("h100", build_graph(m, Scenario(phase="decode", batch=16,
                                                          context=512)), a)),
        ("simulate(build_graph(new context each step))",
         lambda: simulate("h100", build_graph(m, Scenario(phase="decode", batch=16,
                                                          context=513 + next(ctx))), a)),
        ("build_graph, new context", lambda: build_graph(
            m, Scenario(phase="decode", batch=16, context=513 + next(ctx)))),
        ("build_graph + lower, new context", lambda: lower(build_graph(
            m, Scenario(phase="decode", batch=16, context=513 + next(ctx))))),
    ]
    print("| Mixtral-8x7B decode step, batch 16, context 512, h100, 4-bit | ms (CPU) |")
    print("|---|---|")
    for name, fn in rows:
        print(f"| {name} | {_best(fn, repeat, 10) * 1e3:.1f} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=["sweep", "step"], default=None)
    args = ap.parse_args(argv)
    if args.only in (None, "sweep"):
        bench_sweep(args.repeat)
    if args.only in (None, "step"):
        bench_step(args.repeat)


if __name__ == "__main__":
    main()
