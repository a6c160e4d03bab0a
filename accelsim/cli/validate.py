"""``accelsim validate``: reproduce the paper's efficiency claims on packaged defaults."""

from __future__ import annotations

import sys
import time

import click

from ..packing import PACKINGS

__all__ = ["command", "pin_threads"]


def pin_threads(n: int) -> None:
    """Limit BLAS/OpenMP (threadpoolctl) and numba to ``n`` threads for this process.

    validate's work is many small matrix products and numba calls: on a loaded 2-core
    machine extra threads only contend (measured in issue 14: full validate 158 s with the
    default threads, 42 s with one)."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:  # threadpoolctl is a scikit-learn dependency; be safe anyway
        pass
    try:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):
        pass


@click.command("validate")
@click.option("--out", "out", default="report", show_default=True,
              type=click.Path(file_okay=False), help="Directory for the report.")
@click.option("--quick", is_flag=True, help="Smaller accuracy and certification runs.")
@click.option("--packing", type=click.Choice(PACKINGS), default="native", show_default=True,
              help="native: weights stored padded to the widths each chip's MAC arrays "
                   "compute on (3 -> 4 bits on a 2/4/8-bit array); dense: packed back to "
                   "back at their own width.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="BLAS and numba threads (1 is fastest on a shared or small machine).")
def command(out: str, quick: bool, packing: str, threads: int):
    """Check model size, latency, bandwidth, fitting, allocation overhead, accuracy and
    routing guarantees; write report.md, claims.json, CSV tables and PNG figures."""
    from ..report import run_validate
    pin_threads(threads)
    t0 = time.perf_counter()
    tty = sys.stderr.isatty()

    def progress(msg: str) -> None:
        if tty:
            click.echo(f"[{time.perf_counter() - t0:6.1f} s] {msg}", err=True)

    res = run_validate(out, quick=quick, progress=progress, packing=packing)
    counts: dict[str, int] = {}
    for c in res.claims:
        counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    click.echo(f"{len(res.claims)} claims checked in {res.seconds:.1f} s: "
               + ", ".join(f"{n} {v}" for v, n in counts.items()))
    for c in res.claims:
        click.echo(f"  [{c['verdict']}] {c['claim']}")
    click.echo(f"report: {res.out_dir / 'report.md'}")
