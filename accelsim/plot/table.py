"""One plot from a results table: ``x`` against ``y``, one series per ``hue`` value
(``accelsim plot``).

Kinds (a registry, :data:`KINDS`):

``line``
    the mean of ``y`` at each ``x``, per series, joined in ``x`` order (points of a sweep
    that differ in other parameters are averaged: filter the table first to avoid that);
``scatter``
    every row;
``pareto``
    every row, and per series the rows no other row of the series beats in both ``x`` and
    ``y`` joined as a step line (less is better but for the columns in
    :data:`~accelsim.plot._base.MAXIMIZE`, such as ``tokens_per_s``);
``bar``
    the mean of ``y`` per ``x`` value (categories), bars grouped by series.

Rows whose ``x`` or ``y`` is missing (failed points) are left out and counted in
``meta["dropped"]``.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"avg_bits": [2, 2, 4, 4], "latency_s": [1.0, 3.0, 5.0, 7.0],
...                    "method": ["a", "a", "a", "b"]})
>>> plot_table(df, "avg_bits", "latency_s", kind="line").data.to_dict("list")
{'avg_bits': [2, 4], 'latency_s': [2.0, 6.0], 'n': [2, 2]}
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, did_you_mean
from ._base import MAXIMIZE, PlotResult, check_columns, label_of, new_figure, pareto_mask

__all__ = ["plot_table", "KINDS"]


def _series(df, hue):
    if hue is None:
        return [(None, df)]
    return [(h, g) for h, g in df.groupby(hue, sort=True, dropna=False)]


def _line(ax, df, x, y, hue):
    keys = ([hue] if hue else []) + [x]
    data = (df.groupby(keys, sort=True, dropna=False)[y].agg(["mean", "size"]).reset_index()
            .rename(columns={"mean": y, "size": "n"}))
    for h, g in _series(data, hue):
        ax.plot(g[x], g[y], marker="o", label=None if h is None else str(h))
    return data


def _scatter(ax, df, x, y, hue):
    cols = ([hue] if hue else []) + [x, y]
    data = df[cols].reset_index(drop=True)
    for h, g in _series(data, hue):
        ax.scatter(g[x], g[y], s=18, label=None if h is None else str(h))
    return data


def _pareto(ax, df, x, y, hue):
    cols = ([hue] if hue else []) + [x, y]
    data = df[cols].reset_index(drop=True).copy()
    data["pareto"] = False
    flags = [x in MAXIMIZE, y in MAXIMIZE]
    for h, g in _series(data, hue):
        mask = pareto_mask(g[[x, y]].to_numpy(dtype=float), flags)
        data.loc[g.index[mask], "pareto"] = True
        sc = ax.scatter(g[x], g[y], s=14, alpha=0.35)
        front = g[mask].sort_values([x, y])
        ax.plot(front[x], front[y], marker="o", drawstyle="steps-post",
                color=sc.get_facecolor()[0][:3] if len(g) else None,
                label=None if h is None else str(h))
    return data


def _bar(ax, df, x, y, hue):
    import numpy as np
    keys = [x] + ([hue] if hue else [])
    data = df.groupby(keys, sort=True, dropna=False)[y].mean().reset_index()
    cats = list(dict.fromkeys(data[x].tolist()))
    series = _series(data, hue)
    width = 0.8 / max(1, len(series))
    pos = np.arange(len(cats))
    for i, (h, g) in enumerate(series):
        where = [cats.index(v) for v in g[x]]
        ax.bar(pos[where] + (i - (len(series) - 1) / 2) * width, g[y], width=width,
               label=None if h is None else str(h))
    ax.set_xticks(pos, [_plain(c) for c in cats])
    return data


#: kind -> function(ax, table, x, y, hue) drawing on ``ax`` and returning the data drawn.
KINDS: dict[str, Callable[..., Any]] = {"line": _line, "scatter": _scatter, "pareto": _pareto,
                                        "bar": _bar}


def plot_table(df, x: str, y: str, hue: str | None = None, *, kind: str = "line",
               logx: bool = False, logy: bool = False, title: str | None = None,
               file: str | None = None) -> PlotResult:
    """Plot column ``y`` against column ``x`` of a results table.

    Raises :class:`ConfigError` for a missing column (with a did-you-mean) or an unknown
    ``kind``; ``file`` names the table in those messages.
    """
    if kind not in KINDS:
        raise ConfigError.single(f"kind must be one of {', '.join(KINDS)}"
                                 + did_you_mean(kind, KINDS), key="--kind", value=kind)
    check_columns(df, [x, y, hue], file=file, keys={x: "--x", y: "--y", hue or "": "--hue"})
    if x == y:
        raise ConfigError.single(f"must differ from --x ('{x}')", key="--y", value=y)
    if hue is not None and hue in (x, y):
        raise ConfigError.single(f"must differ from --{'x' if hue == x else 'y'} ('{hue}')",
                                 key="--hue", value=hue)
    if not _numeric(df[y]):
        raise ConfigError.single(f"column '{y}' is not numeric", file=file, key="--y")
    keep = df[[x, y]].notna().all(axis=1)
    for col in (x, y):   # an infinite value is as missing as NaN (and breaks log axes)
        if _numeric(df[col]):
            keep &= np.isfinite(df[col].to_numpy(dtype=float))
    if logx and _numeric(df[x]):
        keep &= df[x].to_numpy(dtype=float) > 0
    if logy:
        keep &= df[y].to_numpy(dtype=float) > 0
    rows = df[keep]
    if rows.empty:
        raise ConfigError.single("no finite values to plot" + (" on a log axis" if logx or logy
                                                                else ""), file=file, key="--y")
    fig, axes = new_figure()
    ax = axes[0, 0]
    data = KINDS[kind](ax, rows, x, y, hue)
    ax.set_xlabel(_plain(label_of(x)))
    ax.set_ylabel(_plain(label_of(y)))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if hue is not None:
        for h in ax.get_legend_handles_labels()[0]:
            h.set_label(_plain(h.get_label()))
        ax.legend(title=_plain(hue), fontsize="small")
    if title:
        ax.set_title(_plain(title))
    ax.grid(True, alpha=0.3)
    return PlotResult(fig, data, {"kind": kind, "x": x, "y": y, "hue": hue,
                                  "dropped": int((~keep).sum())})


def _plain(text: str) -> str:
    """``text`` shown as written: a ``$`` would start matplotlib's mathtext (and a lone one
    fails when the figure is drawn)."""
    return str(text).replace("$", r"\$")


def _numeric(series) -> bool:
    import pandas as pd
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
