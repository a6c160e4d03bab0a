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

A ``line`` or ``bar`` averages the rows that share a series and an ``x`` value. When those
rows differ in a swept parameter (chip, batch, a hardware override ...) or when failed
points leave some of them out, the mean mixes things that should not be mixed:
:func:`averaging_problems` names them, and ``plot_table`` refuses (``strict=True``) or
records them in ``meta["warnings"]``.

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

from ..errors import ConfigError, Problem, did_you_mean
from ._base import MAXIMIZE, PlotResult, check_columns, label_of, new_figure, pareto_mask

__all__ = ["plot_table", "KINDS", "averaging_problems", "parameter_columns"]


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
               file: str | None = None, strict: bool = False) -> PlotResult:
    """Plot column ``y`` against column ``x`` of a results table.

    Raises :class:`ConfigError` for a missing column (with a did-you-mean) or an unknown
    ``kind``; ``file`` names the table in those messages. The problems
    :func:`averaging_problems` finds raise a ConfigError when ``strict``, else they are
    listed in ``meta["warnings"]``.
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
    if kind == "pareto" and not _numeric(df[x]):   # a front needs two numeric axes
        raise ConfigError.single(f"column '{x}' is not numeric (a Pareto front needs "
                                 "numbers on both axes)", file=file, key="--x")
    keep = df[[x, y]].notna().all(axis=1)
    if "error" in df.columns:
        keep &= df["error"].isna()
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
    warnings = averaging_problems(df, x, y, hue, kind)
    if warnings and strict:
        raise ConfigError([Problem(w, file=file, key=f"--kind {kind}") for w in warnings])
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
                                  "dropped": int((~keep).sum()), "warnings": warnings})


def parameter_columns(df) -> list[str]:
    """Columns of a sweep results table that are swept parameters (the sweep spec's
    parameters and ``hw.*`` hardware overrides), not results."""
    from ..sweep.spec import OVERRIDE_PREFIX, PARAMS
    return [str(c) for c in df.columns if str(c) in PARAMS or
            str(c).startswith(OVERRIDE_PREFIX)]


def _fmt_key(keys, values) -> str:
    vals = values if isinstance(values, tuple) else (values,)
    return ", ".join(f"{k}={v}" for k, v in zip(keys, vals))


def averaging_problems(df, x: str, y: str, hue: str | None, kind: str = "line") -> list[str]:
    """What a ``line`` or ``bar`` of ``df`` would average that it should not.

    ``df`` holds every row to plot, failed ones included (an ``error`` column, or a missing
    ``y``). Two problems are named: (1) rows of one point of the plot (same series and
    ``x``) that differ in a parameter column (:func:`parameter_columns`) other than ``x``
    and ``hue``; (2) points where some rows failed and others did not, so the mean is over
    a different set of rows than its neighbours'. Empty for other kinds.
    """
    if kind not in ("line", "bar") or df.empty:
        return []
    keys = ([hue] if hue else []) + [x]
    ok = df[y].notna() & df[x].notna()
    if "error" in df.columns:
        ok &= df["error"].isna()
    good = df[ok]
    out = []
    params = [c for c in parameter_columns(df) if c not in keys and c != "seed"]
    varying = []
    for c in params:
        n = good.groupby(keys, dropna=False)[c].nunique(dropna=False)
        if (n > 1).any():
            at = n[n > 1].index[0]
            vals = sorted({str(v) for v in good.set_index(keys).loc[[at], c]})
            varying.append(f"{c} ({'/'.join(vals[:4])}{'...' if len(vals) > 4 else ''} at "
                           f"{_fmt_key(keys, at)})")
    if varying:
        out.append("each point would average rows that differ in " + "; ".join(varying)
                   + ": give --hue COL or --where COL=VALUE, or --average to average them")
    total = df.groupby(keys, dropna=False).size()
    succ = good.groupby(keys, dropna=False).size().reindex(total.index, fill_value=0)
    partial = total[(succ > 0) & (succ < total)]
    if len(partial):
        at = partial.index[0]
        out.append(f"failed points change which rows are averaged: {len(partial)} point(s) "
                   f"average only the rows that succeeded (at {_fmt_key(keys, at)}: "
                   f"{int(succ[at])} of {int(total[at])}); filter with --where, or --average "
                   f"to plot them anyway")
    return out


def _plain(text: str) -> str:
    """``text`` shown as written: a ``$`` would start matplotlib's mathtext (and a lone one
    fails when the figure is drawn)."""
    return str(text).replace("$", r"\$")


def _numeric(series) -> bool:
    import pandas as pd
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
