"""``accelsim sweep``: run a design-space sweep into a parquet or CSV table."""

from __future__ import annotations

import sys

import click

from ..errors import ConfigError
from ._common import STDOUT

__all__ = ["command"]


def _progress_bar(enabled: bool | None):
    """A ``progress(done, total)`` callback drawing tqdm on stderr (only on a terminal unless
    forced), and a function closing it."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm
    state: dict = {}

    def progress(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, initial=done, unit="pt", file=sys.stderr,
                                      dynamic_ncols=True, desc="sweep")
        else:
            bar.update(done - bar.n)

    def close() -> None:
        if "bar" in state:
            state["bar"].close()

    return progress, close


@click.command("sweep")
@click.argument("spec", metavar="SPEC")
@click.option("--out", required=True, metavar="FILE",
              help="Results table: FILE.parquet or FILE.csv (one row per point); '-': CSV on "
                   "stdout (not resumable).")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Local worker processes (default 1: run in this process).")
@click.option("--dask-local", "dask_local", type=click.IntRange(min=1), default=None,
              metavar="N", help="Start a Dask LocalCluster of N worker processes.")
@click.option("--dask", "dask_address", default=None, metavar="tcp://HOST:PORT",
              help="Use an existing Dask cluster.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run writing the same FILE.")
@click.option("--chunk", type=click.IntRange(min=1), default=None, metavar="N",
              help="Points per chunk (written to disk as each chunk finishes).")
@click.option("--progress/--no-progress", "show_progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
def command(spec, out, workers, dask_local, dask_address, resume, chunk, show_progress):
    """Run the sweep SPEC (YAML): every point is simulated and written as one row of
    --out, with every swept parameter as a column. A point that fails is recorded in the
    'error' column. See docs/sweeps.md."""
    from ..sweep import load_sweep, run_sweep
    from ..sweep.store import check_out, parts_dir

    given = [n for n, v in (("--workers", workers), ("--dask-local", dask_local),
                            ("--dask", dask_address)) if v is not None]
    if len(given) > 1:
        raise ConfigError.single(f"{' and '.join(given)} are alternatives: give one",
                                 key=given[1])
    to_file = out != STDOUT
    if to_file:
        check_out(out)
    elif resume:
        raise ConfigError.single("--resume needs a results file, not stdout", key="--resume")
    sweep = load_sweep(spec)
    if dask_address is not None:
        kind, opts, n = "dask", {"address": dask_address}, 1
    elif dask_local is not None:
        kind, opts, n = "dask", {"local": True}, dask_local
    else:
        n = workers or 1
        kind, opts = ("processes" if n > 1 else "serial"), {}
    progress, close = _progress_bar(show_progress)
    try:
        res = run_sweep(sweep, out if to_file else None, executor=kind, workers=n,
                        chunk=chunk, resume=resume, progress=progress, **opts)
    except BaseException as exc:   # Ctrl-C or SIGTERM (accelsim.cli.Interrupted)
        close()
        if isinstance(exc, Exception):
            raise
        if to_file and parts_dir(out).is_dir():
            exc.accelsim_note = (f"finished chunks are kept in {parts_dir(out)}; run the "
                                 "same command with --resume to continue")
        raise
    finally:
        close()
    ran = res.points - res.reused
    rate = ran / res.elapsed_s if res.elapsed_s > 0 else float("inf")
    if not to_file:
        click.echo(res.table.to_csv(index=False), nl=False)
    where = out if to_file else "stdout"
    click.echo(f"wrote {res.points} points to {where} ({res.failed} failed; {ran} run in "
               f"{res.elapsed_s:.1f} s, {rate:.1f} points/s on {res.executor} x{res.workers}"
               + (f"; {res.reused} from the interrupted run" if res.reused else "") + ")",
               err=not to_file)
    if res.failed:
        first = res.table.loc[res.table["error"].notna()].iloc[0]
        click.echo(f"accelsim: note: {res.failed} point(s) failed; see the 'error' column "
                   f"(first: point {int(first['point_id'])}: {first['error']})", err=True)
        if res.failed == res.points:
            return 1
    return 0
