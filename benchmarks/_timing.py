"""The timing loop shared by the benchmark scripts (run them from the repository root:
``python benchmarks/NAME.py``; this directory is then first on ``sys.path``)."""

from __future__ import annotations

import statistics
import time


def timed(fn, repeats: int):
    """``(last result, min seconds, median seconds)`` of ``repeats`` calls of ``fn()``."""
    out, times = None, []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, min(times), statistics.median(times)
