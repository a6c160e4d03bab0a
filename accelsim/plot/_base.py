"""Shared plumbing of the figure functions: Agg figures without pyplot, the result record,
Pareto fronts and column checks.

Figures are :class:`matplotlib.figure.Figure` objects with an Agg canvas attached directly,
so plotting never selects a global backend or touches pyplot's figure registry: a library
that plots does not change how the caller's own plots behave.

Examples
--------
>>> import numpy as np
>>> pareto_mask(np.array([[1, 3], [2, 2], [3, 1], [3, 3], [2, 2]]), [False, False]).tolist()
[True, True, True, False, True]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._io import atomic_path
from ..errors import ConfigError, Problem, did_you_mean

__all__ = ["PlotResult", "new_figure", "pareto_mask", "check_columns", "save_figure",
           "FIGURE_SUFFIXES", "MAXIMIZE", "label_of"]

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")

#: Result columns where more is better (everything else: less is better) for Pareto fronts.
MAXIMIZE = frozenset({"tokens_per_s", "noise_equiv_bits", "mac_utilization", "accuracy"})

_LABELS = {
    "latency_s": "latency (s)", "tokens_per_s": "throughput (tokens/s)",
    "energy_j": "energy per step (J)", "weight_bytes": "weight memory (bytes)",
    "offchip_bytes": "off-chip traffic (bytes)", "avg_bits": "average expert bits",
    "expert_avg_bits": "average expert bits", "noise_equiv_bits":
    "noise-equivalent bits (accuracy proxy)", "mac_utilization": "MAC utilisation",
    "cycles": "cycles", "batch": "batch", "context": "context (tokens)",
}


def label_of(column: str) -> str:
    """Axis label of a results column (the column name itself when not known)."""
    return _LABELS.get(column, column)


@dataclass(frozen=True)
class PlotResult:
    """A figure and the data it shows (what tests check instead of pixels)."""

    figure: Any                        # matplotlib.figure.Figure
    data: Any                          # pandas.DataFrame drawn (or a mapping of them)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike, **kwargs: Any) -> None:
        """Write the figure (format from the suffix: .png, .svg, .pdf)."""
        save_figure(self.figure, path, **kwargs)


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.4, height: float = 4.4,
               **kwargs: Any):
    """A Figure with an Agg canvas and a grid of axes (always a 2-D array)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def save_figure(fig, path: str | os.PathLike, **kwargs: Any) -> None:
    """Save atomically: a temporary file beside ``path``, then a rename."""
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix not in FIGURE_SUFFIXES:
        raise ConfigError.single("figure must be a .png, .svg or .pdf file", file=str(path))
    with atomic_path(p, suffix=suffix) as tmp:
        fig.savefig(tmp, format=suffix[1:], **kwargs)


def pareto_mask(values: Any, maximize: Sequence[bool]) -> np.ndarray:
    """Which rows are not dominated.

    Row ``a`` dominates ``b`` when it is at least as good in every column and better in one
    (``maximize[j]`` says which way column ``j`` is better). Rows with a NaN are never on
    the front; identical rows do not dominate each other.

    Parameters
    ----------
    values : array-like [n, k]
    maximize : sequence of k bools

    Returns
    -------
    numpy.ndarray of bool, shape [n]
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != len(maximize):
        raise ValueError("values must be [n, k] with one maximize flag per column")
    sign = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    v = v * sign  # now every column: less is better
    ok = ~np.isnan(v).any(axis=1)
    mask = np.zeros(len(v), dtype=bool)
    cand = v[ok]
    idx = np.flatnonzero(ok)
    if len(cand) == 0:
        return mask
    # a row survives unless some row is <= everywhere and < somewhere; blocks keep memory
    # at O(block * n)
    keep = np.ones(len(cand), dtype=bool)
    for start in range(0, len(cand), 512):
        blk = cand[start:start + 512]
        le = (cand[None, :, :] <= blk[:, None, :]).all(axis=2)
        lt = (cand[None, :, :] < blk[:, None, :]).any(axis=2)
        keep[start:start + 512] = ~(le & lt).any(axis=1)
    mask[idx[keep]] = True
    return mask


def check_columns(df, columns: Iterable[str | None], *, file: str | None = None,
                  keys: Mapping[str, str] | None = None) -> None:
    """ConfigError (with did-you-mean) for each named column the table lacks."""
    have = [str(c) for c in df.columns]
    problems = []
    for col in columns:
        if col is None or col in have:
            continue
        key = (keys or {}).get(col, "")
        problems.append(Problem(f"no column '{col}' in the results"
                                + (did_you_mean(col, have) or
                                   f"; columns: {', '.join(have)}"), file=file, key=key))
    if problems:
        raise ConfigError(problems)
