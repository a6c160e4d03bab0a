"""Sweep throughput: points per second with 1 and 2 workers, local processes and Dask.

Every configuration runs in a fresh Python process, as ``accelsim sweep`` would, so caches
start cold and executor start-up (process pool and its warm fork server, Dask LocalCluster)
is included. Three rates are printed, medians of ``--repeat`` runs:

``run``     points / seconds inside ``run_sweep`` (what ``accelsim sweep`` reports);
``wall``    points / the whole process (Python start-up and spec validation included);
``steady``  points after the first finished chunk / the time after it: the rate once the
            workers are up, which is what a long sweep converges to.

Then, in this process, the CPU time per point of a serial run, cold (first run: imports,
numba loading, graphs, allocations) and warm (the same points again, caches full): CPU time
does not depend on what else the machine runs, wall time does.

    python benchmarks/bench_sweep.py                 # both specs below, 3 repeats
    python benchmarks/bench_sweep.py --spec my.yaml --repeat 5

Specs: ``examples/sweep.yaml`` (135 Mixtral-8x7B points, PMQ allocations included) and
``large``, generated here: 336 Mixtral-8x7B decode points on Spyre and H100 with the cheap
methods (uniform, router-norm, frequency, random) at 2, 3, 4 bits, batches 1..64 and two
contexts, where simulation rather than allocation dominates.

Results are recorded in docs/performance.md (## Sweeps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {
    "serial, 1 worker": ("serial", 1, {}),
    "processes, 2 workers": ("processes", 2, {}),
    "dask local, 1 worker": ("dask", 1, {"local": True}),
    "dask local, 2 workers": ("dask", 2, {"local": True}),
}

LARGE = """\
name: bench-large
fixed: {workload: mixtral-8x7b, phase: decode, routing: "zipf:1.2"}
axes:
  - grid:
      hw: [spyre, h100]
      method: [uniform, router-norm, frequency, random]
      avg_bits: [2, 3, 4]
      batch: [1, 2, 4, 8, 16, 32, 64]
      context: [512, 2048]
"""

_RUN = """\
import json, sys, time
def main():
    from accelsim.sweep import load_sweep, run_sweep
    spec = load_sweep(sys.argv[1])
    marks = []
    t0 = time.perf_counter()
    res = run_sweep(spec, executor=sys.argv[2], workers=int(sys.argv[3]),
                    progress=lambda d, n: marks.append((d, time.perf_counter() - t0)),
                    **json.loads(sys.argv[4]))
    first = next(m for m in marks if m[0] > 0)
    print(json.dumps({"points": res.points, "run_s": res.elapsed_s, "first": first,
                      "end": marks[-1]}))
if __name__ == "__main__":
    main()
"""


def run_once(spec: Path, executor: str, workers: int, opts: dict) -> dict:
    """One sweep in a fresh process: points, run and wall seconds, steady rate."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _RUN, str(spec), executor, str(workers),
                           json.dumps(opts)], capture_output=True, text=True, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    (d0, t_first), (d1, t_end) = r["first"], r["end"]
    steady = (d1 - d0) / (t_end - t_first) if d1 > d0 and t_end > t_first else float("nan")
    return {"points": r["points"], "run_s": r["run_s"], "wall_s": wall, "steady": steady}


def cpu_per_point(spec: Path) -> tuple[int, float, float]:
    """(points, cold CPU ms per point, warm CPU ms per point) of a serial run here."""
    from accelsim.sweep import load_sweep, run_sweep
    sw = load_sweep(spec)
    t0 = time.process_time()
    run_sweep(sw)
    cold = time.process_time() - t0
    t0 = time.process_time()
    run_sweep(sw)
    warm = time.process_time() - t0
    return len(sw), 1e3 * cold / len(sw), 1e3 * warm / len(sw)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def bench(spec: Path, repeat: int, only) -> None:
    print(f"\nspec: {spec.name}  cpus: {os.cpu_count()}  load average before: {_load()}")
    print(f"{'configuration':<24} {'points':>6} {'run s':>7} {'run pt/s':>9} "
          f"{'wall s':>7} {'wall pt/s':>9} {'steady pt/s':>11}")
    for name, (executor, workers, opts) in CONFIGS.items():
        if only and name not in only:
            continue
        runs = [run_once(spec, executor, workers, opts) for _ in range(repeat)]
        n = runs[0]["points"]
        run_s = statistics.median(r["run_s"] for r in runs)
        wall_s = statistics.median(r["wall_s"] for r in runs)
        steady = statistics.median(r["steady"] for r in runs)
        print(f"{name:<24} {n:>6} {run_s:>7.2f} {n / run_s:>9.1f} {wall_s:>7.2f} "
              f"{n / wall_s:>9.1f} {steady:>11.1f}", flush=True)
    if not only:
        n, cold, warm = cpu_per_point(spec)
        print(f"serial CPU time per point: {cold:.1f} ms cold, {warm:.1f} ms warm "
              f"({1e3 / warm:.0f} points per CPU-second warm)")
    print(f"load average after: {_load()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, action="append", default=None,
                    help="spec file (repeatable; default: examples/sweep.yaml and 'large')")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="configuration names to run")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        specs = a.spec
        if specs is None:
            large = Path(d) / "large.yaml"
            large.write_text(LARGE)
            specs = [ROOT / "examples" / "sweep.yaml", large]
        for spec in specs:
            bench(spec, a.repeat, a.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
