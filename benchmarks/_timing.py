"""The timing loop shared by the benchmark scripts (run them from the repository root:
``python benchmarks/NAME.py``; this directory is then first on ``sys.path``)."""

from __future__ import annotations

import statistics
import time


def timed(fn, repeats: int, clock=time.perf_counter):
    """``(last result, min seconds, median seconds)`` of ``repeats`` calls of ``fn()`` by
    ``clock`` (wall time by default)."""
    out, times = None, []
    for _ in range(repeats):
        t = clock()
        out = fn()
        times.append(clock() - t)
    return out, min(times), statistics.median(times)


def cpu_timed(fn, repeats: int):
    """:func:`timed` in CPU time of the process (``time.process_time``): what a shared
    machine's load disturbs least."""
    return timed(fn, repeats, time.process_time)
