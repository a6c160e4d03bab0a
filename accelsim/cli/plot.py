"""``accelsim plot``: one figure from a sweep results table."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError, Problem
from ._common import check_out_path

__all__ = ["command"]


def _filter(df, where: tuple[str, ...], file: str):
    """Keep the rows where every ``COL=VALUE`` holds (numbers compared as numbers)."""
    import pandas as pd

    from ..plot._base import check_columns
    conds = []
    problems = []
    for w in where:
        col, sep, val = w.rpartition("=")   # keys like hw.memory[name=x].y hold '='
        if not sep:
            col = ""
        if not sep or not col:
            problems.append(Problem("must be COL=VALUE", key="--where", value=w))
            continue
        conds.append((col, val))
    if problems:
        raise ConfigError(problems)
    check_columns(df, [c for c, _ in conds], file=file, keys={c: "--where" for c, _ in conds})
    keep = pd.Series(True, index=df.index)
    for col, val in conds:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            try:
                num = float(val)
            except ValueError:
                from ..units import parse_any
                q = parse_any(val)
                if q is None:
                    raise ConfigError.single(f"column '{col}' is numeric (a number, or a "
                                             f"quantity like '200 GB/s')", key="--where",
                                             value=val) from None
                num = q[0]
            keep &= s == num
        else:
            keep &= s.astype(str) == val
    return df[keep]


@click.command("plot")
@click.argument("results", metavar="RESULTS")
@click.option("--x", "x", required=True, metavar="COL", help="Column on the x axis.")
@click.option("--y", "y", required=True, metavar="COL", help="Column on the y axis.")
@click.option("--hue", default=None, metavar="COL", help="One series per value of COL.")
@click.option("--kind", type=click.Choice(["line", "scatter", "pareto", "bar"]),
              default="line", show_default=True, help="Kind of plot.")
@click.option("--out", required=True, metavar="FILE", help="FILE.png, FILE.svg or FILE.pdf.")
@click.option("--where", multiple=True, metavar="COL=VALUE",
              help="Keep only rows where COL equals VALUE (repeatable).")
@click.option("--logx", is_flag=True, help="Logarithmic x axis.")
@click.option("--logy", is_flag=True, help="Logarithmic y axis.")
@click.option("--title", default=None, help="Figure title.")
@click.option("--average", is_flag=True,
              help="line/bar: average rows that differ in other swept parameters, or where "
                   "some points failed (refused otherwise), with a warning.")
def command(results, x, y, hue, kind, out, where, logx, logy, title, average):
    """Plot column --y against column --x of a sweep's RESULTS (.parquet or .csv).

    line: mean of y per x and series; scatter: every point; pareto: every point and the
    front (less is better, but more for tokens_per_s, noise_equiv_bits, mac_utilization);
    bar: mean of y per x category. Failed points (the 'error' column) are left out."""
    from ..plot import plot_table
    from ..plot._base import FIGURE_SUFFIXES, check_columns
    from ..sweep.store import read_table

    p = Path(out).expanduser()
    if p.suffix.lower() not in FIGURE_SUFFIXES:
        raise ConfigError.single("figure must be a .png, .svg or .pdf file", file=out,
                                 key="--out")
    check_out_path(out)
    df = read_table(results)
    check_columns(df, [x, y, hue], file=results, keys={x: "--x", y: "--y", hue or "": "--hue"})
    df = _filter(df, where, results)
    ok = df[df["error"].isna()] if "error" in df.columns else df
    if ok.empty:
        raise ConfigError.single("no successful points to plot" + (" after --where" if where
                                                                   else ""), file=results)
    res = plot_table(df, x, y, hue, kind=kind, logx=logx, logy=logy, title=title,
                     file=results, strict=not average)
    for w in res.meta.get("warnings", []):
        click.echo(f"accelsim: warning: {w}", err=True)
    res.save(p)
    what = "points" if kind in ("scatter", "pareto") else "means"
    click.echo(f"wrote {out} ({kind}: {len(res.data)} {what} of {y} against {x}"
               + (f" per {hue}" if hue else "") + ")")
    return 0
