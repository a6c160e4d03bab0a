"""``accelsim validate``: reproduce the paper's efficiency claims on packaged defaults."""

from __future__ import annotations

import sys
import time

import click

from ..report import run_validate

__all__ = ["command"]


@click.command("validate")
@click.option("--out", "out", default="report", show_default=True,
              type=click.Path(file_okay=False), help="Directory for the report.")
@click.option("--quick", is_flag=True, help="Smaller accuracy and certification runs.")
def command(out: str, quick: bool):
    """Check model size, latency, bandwidth, fitting, allocation overhead, accuracy and
    routing guarantees; write report.md, claims.json, CSV tables and PNG figures."""
    t0 = time.perf_counter()
    tty = sys.stderr.isatty()

    def progress(msg: str) -> None:
        if tty:
            click.echo(f"[{time.perf_counter() - t0:6.1f} s] {msg}", err=True)

    res = run_validate(out, quick=quick, progress=progress)
    counts: dict[str, int] = {}
    for c in res.claims:
        counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    click.echo(f"{len(res.claims)} claims checked in {res.seconds:.1f} s: "
               + ", ".join(f"{n} {v}" for v, n in counts.items()))
    for c in res.claims:
        click.echo(f"  [{c['verdict']}] {c['claim']}")
    click.echo(f"report: {res.out_dir / 'report.md'}")
