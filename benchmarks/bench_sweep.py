"""Sweep throughput: points per second with 1 and 2 workers, local processes and Dask.

Every configuration runs ``accelsim sweep SPEC`` in a fresh process, as a user would, so
caches start cold and executor start-up (process pool, Dask LocalCluster) is included.
Two rates are printed: ``run`` (points / seconds inside ``run_sweep``, what the CLI reports:
executor start-up and evaluation) and ``wall`` (points / the whole command, Python start-up
and spec validation included). The median of ``--repeat`` runs is printed.

    python benchmarks/bench_sweep.py                       # examples/sweep.yaml, 3 repeats
    python benchmarks/bench_sweep.py --spec my.yaml --repeat 5

Results are recorded in docs/performance.md (## Sweeps).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {
    "serial, 1 worker": ["--workers", "1"],
    "processes, 2 workers": ["--workers", "2"],
    "dask local, 1 worker": ["--dask-local", "1"],
    "dask local, 2 workers": ["--dask-local", "2"],
}

_LINE = re.compile(r"wrote (\d+) points .* (\d+) run in ([\d.]+) s")


def run_once(spec: Path, args: list[str]) -> tuple[int, float, float]:
    """(points, run seconds, wall seconds) of one ``accelsim sweep``."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.parquet"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "accelsim.cli", "sweep", str(spec),
                               "--out", str(out), "--no-progress", *args],
                              capture_output=True, text=True, cwd=str(ROOT))
        wall = time.perf_counter() - t0
    m = _LINE.search(proc.stdout)
    if proc.returncode not in (0, 1) or m is None:
        raise SystemExit(f"sweep failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return int(m.group(1)), float(m.group(3)), wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=ROOT / "examples" / "sweep.yaml")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="configuration names to run")
    a = ap.parse_args(argv)
    print(f"spec: {a.spec}  cpus: {os.cpu_count()}  load average: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'configuration':<24} {'points':>6} {'run s':>7} {'run pt/s':>9} "
          f"{'wall s':>7} {'wall pt/s':>9}")
    for name, args in CONFIGS.items():
        if a.only and name not in a.only:
            continue
        runs = [run_once(a.spec, args) for _ in range(a.repeat)]
        n = runs[0][0]
        run_s = statistics.median(r[1] for r in runs)
        wall_s = statistics.median(r[2] for r in runs)
        print(f"{name:<24} {n:>6} {run_s:>7.2f} {n / run_s:>9.1f} {wall_s:>7.2f} "
              f"{n / wall_s:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
