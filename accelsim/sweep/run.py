"""Running a sweep: chunks to an executor, finished chunks to disk, one tidy table out.

Examples
--------
>>> from accelsim.sweep import load_sweep
>>> spec = load_sweep({"fixed": {"workload": "mixtral-8x7b", "hw": "gemmini"},
...                    "axes": [{"grid": {"avg_bits": [4, 8]}}]})
>>> res = run_sweep(spec, evaluate=_bits_only)
>>> res.table[["point_id", "avg_bits", "twice", "error"]].values.tolist()
[[0, 4.0, 8.0, None], [1, 8.0, 16.0, None]]
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

from ..errors import ConfigError
from .evaluate import METRICS, evaluate_point
from .executors import Executor, make_executor, run_chunk
from .spec import Point, SweepSpec
from .store import OutputLock, PartStore, canonical_table, check_out, write_table

__all__ = ["run_sweep", "SweepResult", "default_chunk", "results_table"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SweepResult:
    """What a run produced: the table (one row per point) and how the run went."""

    table: Any                 # pandas.DataFrame
    points: int
    failed: int
    reused: int                # points read back from an interrupted run (--resume)
    elapsed_s: float
    executor: str
    workers: int


def _bits_only(point: Point) -> dict:  # for the module's doctest
    return {"twice": 2 * point.params["avg_bits"]}


def default_chunk(points: int, workers: int) -> int:
    """Points per chunk: about four chunks per worker, at most 64 points (a killed run loses
    at most one chunk per worker), at least 1.

    >>> default_chunk(100, 2), default_chunk(10_000, 2), default_chunk(3, 4)
    (13, 64, 1)
    """
    return max(1, min(64, math.ceil(points / (4 * max(1, workers)))))


def results_table(spec: SweepSpec, rows) -> Any:
    """Join the spec's parameter columns with evaluated rows (a DataFrame or a list of
    dicts with ``point_id``): one row per point, sorted by ``point_id``; parameter columns
    first, then the :data:`METRICS` columns present, other columns alphabetically, and
    ``error`` last. Missing values are None in text columns and NaN in numeric ones."""
    import pandas as pd
    params = _overrides_in_base_units(pd.DataFrame.from_records(
        [{"point_id": p.id, **p.columns} for p in spec.points], columns=list(spec.columns)))
    evald = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    if "point_id" not in evald:
        evald = pd.DataFrame({"point_id": pd.Series([], dtype="int64")})
    if evald["point_id"].duplicated().any():
        dup = sorted(set(evald.loc[evald["point_id"].duplicated(), "point_id"].tolist()))
        raise ConfigError.single(f"points written twice: {dup[:10]}", key="point_id")
    extra = [c for c in evald.columns if c not in ("point_id", "error")]
    known = [c for c in METRICS if c in extra]
    rest = sorted(c for c in extra if c not in METRICS and c not in spec.columns)
    evald = evald.reindex(columns=["point_id", *known, *rest, "error"])
    # one row per point (duplicates refused above): align the results on the parameters'
    # point ids instead of a merge (a merge's fixed cost dominated small GEMM sweeps)
    ids = params["point_id"]
    if not ids.is_monotonic_increasing:
        params = params.sort_values("point_id", kind="stable")
        ids = params["point_id"]
    right = evald.set_index("point_id").reindex(ids.to_numpy())
    table = pd.concat([params.reset_index(drop=True), right.reset_index(drop=True)], axis=1)
    return canonical_table(table)


def _overrides_in_base_units(params):
    """Hardware-override columns (``hw.*``) whose values are all quantities of one kind
    (``'100 GB/s'``) become numbers in base units (bytes/s), so they plot and filter as
    numbers; anything else (per-cycle units, names) stays as written."""
    from ..units import parse_any
    from .spec import OVERRIDE_PREFIX
    for col in params.columns:
        if not str(col).startswith(OVERRIDE_PREFIX):
            continue
        vals = params[col]
        text = [v for v in vals if isinstance(v, str)]
        if not text:
            continue
        parsed = [parse_any(v) for v in text]
        if any(q is None for q in parsed) or len({q[1] for q in parsed}) != 1:
            continue
        params[col] = [parse_any(v)[0] if isinstance(v, str) else v for v in vals]
        params[col] = params[col].astype(float)
    return params


#: Chunks gather points that share these values (in this order), so that a worker reuses its
#: cached allocation and graph across a chunk; the table is sorted by ``point_id`` anyway.
LOCALITY = ("workload", "method", "avg_bits", "levels", "signals", "routing", "seed",
            "phase", "batch", "seq_len", "context")


def _chunks(points: Sequence[Point], size: int) -> list[list[Point]]:
    ordered = sorted(points, key=lambda p: (tuple(str(p.params.get(k)) for k in LOCALITY),
                                            p.id))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def run_sweep(spec: SweepSpec, out: str | os.PathLike | None = None, *,
              executor: str | Executor = "serial", workers: int = 1, chunk: int | None = None,
              resume: bool = False, evaluate: Callable[[Point], dict] = evaluate_point,
              progress: Progress | None = None, **executor_options: Any) -> SweepResult:
    """Evaluate every point of ``spec``; write the table to ``out`` if given.

    Parameters
    ----------
    spec : SweepSpec
        From :func:`~accelsim.sweep.load_sweep`.
    out : path, optional
        ``.parquet`` or ``.csv``. Finished chunks go to ``OUT.parts/`` first (see
        :mod:`accelsim.sweep.store`); the file is written atomically at the end.
    executor : str or Executor
        ``serial``, ``processes`` or ``dask`` (with ``executor_options`` such as
        ``address=`` or ``local=True``), or an executor object (not closed here).
    workers : int
        Processes (or Dask workers of a local cluster).
    chunk : int, optional
        Points per chunk (default :func:`default_chunk`).
    resume : bool
        Continue an interrupted run writing ``out``: points already written are skipped.
    evaluate : callable
        ``Point -> dict`` of result columns; must be picklable for other processes (a
        module-level function). Default :func:`~accelsim.sweep.evaluate_point`.
    progress : callable, optional
        ``progress(done, total)`` after every chunk (and once at the start).
    """
    if chunk is not None and (isinstance(chunk, bool) or int(chunk) < 1):
        raise ConfigError.single("must be >= 1", key="--chunk", value=chunk)
    t0 = time.perf_counter()
    lock = None
    if out is not None:
        check_out(out)
        lock = OutputLock(out)
        lock.acquire()          # one writer per output: a second run gets one line
    try:
        return _run_locked(spec, out, executor, workers, chunk, resume, evaluate, progress,
                           executor_options, t0)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(spec, out, executor, workers, chunk, resume, evaluate, progress,
                executor_options, t0) -> SweepResult:
    total = len(spec.points)
    store = None
    done: set[int] = set()
    fresh = False
    if out is not None:
        store = PartStore(out, fingerprint=spec.fingerprint, points=total)
        fresh = not store.dir.exists()
        done = store.open(resume=resume)
    try:
        return _run_points(spec, out, store, done, executor, workers, chunk, evaluate,
                           progress, executor_options, t0)
    except BaseException:
        # a run that wrote nothing (an executor that failed to start, an interrupt during
        # start-up) leaves nothing that would make the next run ask for --resume
        if store is not None and fresh and not store.has_parts():
            store.remove()
        raise


def _run_points(spec, out, store, done, executor, workers, chunk, evaluate, progress,
                executor_options, t0) -> SweepResult:
    total = len(spec.points)
    todo = [p for p in spec.points if p.id not in done]
    n_workers = executor.workers if not isinstance(executor, str) else max(1, int(workers))
    size = int(chunk) if chunk is not None else default_chunk(len(todo), n_workers)
    collected: list[dict] = []
    if progress is not None:
        progress(len(done), total)
    ex = name = None
    if todo:
        ex = make_executor(executor, workers=n_workers, **executor_options) if isinstance(
            executor, str) else executor
    name = ex.name if ex is not None else (executor if isinstance(executor, str)
                                           else executor.name)
    try:
        count = len(done)
        if ex is not None:
            for rows in ex.map(partial(run_chunk, evaluate), _chunks(todo, size)):
                if store is not None:
                    store.write(rows)
                else:
                    collected.extend(rows)
                count += len(rows)
                if progress is not None:
                    progress(count, total)
    except BaseException:
        if ex is not None and isinstance(executor, str):
            # interrupted or failed: stop the workers now rather than finish their chunks
            getattr(ex, "abort", ex.close)()
            ex = None
        raise
    finally:
        if ex is not None and isinstance(executor, str):
            ex.close()
    table = results_table(spec, store.read() if store is not None else collected)
    if out is not None:
        write_table(table, out)
        store.remove()
    failed = int(table["error"].notna().sum())
    return SweepResult(table, total, failed, len(done), time.perf_counter() - t0, name,
                       n_workers)
