"""The figures architects look at: precision trade-offs, Pareto fronts, rooflines, where the
time goes per op, and what each core does when.

Every function returns a :class:`~accelsim.plot.PlotResult`: the figure and the data it
draws, so that tests (and users) check numbers rather than pixels.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"hw": ["a"] * 4, "method": ["u", "u", "r", "r"],
...                    "avg_bits": [2.0, 4.0, 2.0, 4.0], "latency_s": [1.0, 2.0, 1.5, 2.5],
...                    "weight_bytes": [10, 20, 10, 20]})
>>> r = bits_tradeoff(df)
>>> r.data[r.data.metric == "latency_s"][["method", "avg_bits", "value"]].values.tolist()
[['r', 2.0, 1.5], ['r', 4.0, 2.5], ['u', 2.0, 1.0], ['u', 4.0, 2.0]]
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ._base import PlotResult, check_columns, label_of, new_figure, pareto_mask

__all__ = ["bits_tradeoff", "pareto_front", "roofline", "op_breakdown", "core_timeline"]


def _ok_rows(df, cols: Sequence[str]):
    keep = df[list(cols)].notna().all(axis=1)
    if "error" in df.columns:
        keep &= df["error"].isna()
    return df[keep]


def bits_tradeoff(df, metrics: Sequence[str] = ("latency_s", "weight_bytes"), *,
                  x: str = "avg_bits", hue: str = "method", col: str = "hw",
                  logy: bool = False) -> PlotResult:
    """Latency and memory (or any ``metrics``) against average bits, one line per method
    and one column of panels per chip.

    Values are means over the rows that share ``col``, ``hue`` and ``x`` (filter the table
    first when other swept parameters should not be averaged). ``data`` is the long table
    drawn: ``col, hue, x, metric, value, n``. Failed points are left out.
    """
    import pandas as pd
    check_columns(df, [x, hue, col, *metrics])
    if not metrics:
        raise ConfigError.single("give at least one metric", key="metrics")
    frames = []
    for m in metrics:
        rows = _ok_rows(df, [x, m])
        g = (rows.groupby([col, hue, x], sort=True)[m].agg(["mean", "size"]).reset_index()
             .rename(columns={"mean": "value", "size": "n"}))
        g.insert(3, "metric", m)
        frames.append(g)
    data = pd.concat(frames, ignore_index=True)
    chips = sorted(df[col].dropna().unique().tolist(), key=str)
    fig, axes = new_figure(len(metrics), max(1, len(chips)), width=4.2, height=3.2,
                           sharex=True)
    for i, m in enumerate(metrics):
        for j, chip in enumerate(chips):
            ax = axes[i, j]
            sub = data[(data.metric == m) & (data[col] == chip)]
            for h, g in sub.groupby(hue, sort=True):
                ax.plot(g[x], g["value"], marker="o", label=str(h))
            if i == 0:
                ax.set_title(str(chip))
            if j == 0:
                ax.set_ylabel(label_of(m))
            if i == len(metrics) - 1:
                ax.set_xlabel(label_of(x))
            if logy:
                ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
    if len(data):
        axes[0, -1].legend(title=hue, fontsize="small")
    return PlotResult(fig, data, {"metrics": tuple(metrics), "x": x, "hue": hue, "col": col})


def pareto_front(df, objectives: Mapping[str, str] | None = None, *,
                 color: str | None = None) -> PlotResult:
    """The Pareto front over several objectives (default: latency and weight memory, less
    is better; the accuracy proxy ``noise_equiv_bits``, more is better).

    The figure shows the first two objectives; the third (if any) colours the front.
    ``data`` is the table of successful points with a boolean column ``pareto``.
    """
    if objectives is None:
        objectives = {"latency_s": "min", "weight_bytes": "min", "noise_equiv_bits": "max"}
    bad = {k: v for k, v in objectives.items() if v not in ("min", "max")}
    if bad:
        raise ConfigError.single("each objective must be 'min' or 'max'", key="objectives",
                                 value=bad)
    names = list(objectives)
    if len(names) < 2:
        raise ConfigError.single("give at least two objectives", key="objectives",
                                 value=names)
    check_columns(df, names)
    rows = _ok_rows(df, names).copy()
    rows["pareto"] = pareto_mask(rows[names].to_numpy(dtype=float),
                                 [objectives[n] == "max" for n in names])
    x, y = names[0], names[1]
    shade = color or (names[2] if len(names) > 2 else None)
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.scatter(rows[x], rows[y], s=12, color="0.75", label="all points")
    front = rows[rows["pareto"]]
    if shade is not None:
        sc = ax.scatter(front[x], front[y], s=36, c=front[shade], cmap="viridis",
                        edgecolors="black", linewidths=0.5, label="Pareto front")
        fig.colorbar(sc, ax=ax, label=label_of(shade))
    else:
        ax.scatter(front[x], front[y], s=36, color="C3", label="Pareto front")
    ax.set_xlabel(label_of(x))
    ax.set_ylabel(label_of(y))
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return PlotResult(fig, rows.reset_index(drop=True), {"objectives": dict(objectives)})


def _sim_dict(result: Any) -> dict:
    return result.to_dict() if hasattr(result, "to_dict") and not hasattr(
        result, "columns") else dict(result)


def roofline(hw, points: Any = None, *, bits: Sequence[int] | None = None,
             activation_bits: int | None = None, label: str | None = None) -> PlotResult:
    """A roofline of ``hw`` (one compute roof per weight precision at ``activation_bits``,
    default the chip's, and the off-chip bandwidth slope) with operating points.

    Performance is MACs per second; operational intensity is MACs per byte of off-chip
    traffic. ``points``: a results table (columns ``macs``, ``latency_s``,
    ``offchip_bytes``; ``label`` names a column for the legend), a ``SimResult`` or a list
    of them. Points without off-chip traffic have infinite intensity and are listed in
    ``data["points"]`` but not drawn.

    ``data``: ``{"roofs": [bits, peak_macs_per_s, ridge_macs_per_byte],
    "points": [intensity_macs_per_byte, macs_per_s, label]}`` and ``meta["bandwidth"]``.
    """
    import pandas as pd
    wbits = sorted(set(bits if bits is not None else hw.cores.mac_array.weight_bits))
    bw = hw.offchip_bandwidth_bytes_per_s
    if bw is None:  # everything on chip: the outermost level that holds weights feeds it
        lv = [m for m in hw.memory if "weights" in m.holds][-1]
        bw = hw.level_bandwidth(lv)
    roofs = pd.DataFrame({"bits": wbits,
                          "peak_macs_per_s": [hw.peak_macs_per_s(b, activation_bits)
                                              for b in wbits]})
    roofs["ridge_macs_per_byte"] = roofs["peak_macs_per_s"] / bw
    pts = _roofline_points(points, label)
    act = activation_bits or hw.cores.mac_array.default_activation_bits
    fig, axes = new_figure()
    ax = axes[0, 0]
    finite = pts[np.isfinite(pts["intensity_macs_per_byte"])] if len(pts) else pts
    lo = min([1e-2] + ([float(finite["intensity_macs_per_byte"].min()) / 2] if len(finite)
                       else []))
    hi = max([float(roofs["ridge_macs_per_byte"].max()) * 8]
             + ([float(finite["intensity_macs_per_byte"].max()) * 2] if len(finite) else []))
    xs = np.geomspace(lo, hi, 256)
    for _, r in roofs.iterrows():
        ax.plot(xs, np.minimum(r["peak_macs_per_s"], bw * xs),
                label=f"W{int(r['bits'])}A{act} roof ({r['peak_macs_per_s']:.3g} MAC/s)")
    for lab, g in (finite.groupby("label", sort=True) if len(finite) else []):
        ax.scatter(g["intensity_macs_per_byte"], g["macs_per_s"], s=24, zorder=3,
                   label=str(lab) if lab != "" else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("operational intensity (MACs per off-chip byte)")
    ax.set_ylabel("performance (MAC/s)")
    ax.set_title(f"{hw.name}: off-chip {bw / 1e9:.3g} GB/s")
    ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    return PlotResult(fig, {"roofs": roofs, "points": pts}, {"bandwidth": bw})


def _roofline_points(points: Any, label: str | None):
    import pandas as pd
    cols = ["intensity_macs_per_byte", "macs_per_s", "label"]
    if points is None:
        return pd.DataFrame(columns=cols)
    if hasattr(points, "columns"):
        check_columns(points, ["macs", "latency_s", "offchip_bytes", label])
        rows = _ok_rows(points, ["macs", "latency_s", "offchip_bytes"])
        labels = rows[label].astype(str) if label else pd.Series([""] * len(rows),
                                                                  index=rows.index)
        macs, lat, off = (rows[c].to_numpy(dtype=float) for c in
                          ("macs", "latency_s", "offchip_bytes"))
    else:
        items = points if isinstance(points, (list, tuple)) else [points]
        ds = [_sim_dict(p) for p in items]
        macs = np.array([d.get("macs", d.get("total_macs", np.nan)) for d in ds], float)
        lat = np.array([d["latency_s"] for d in ds], float)
        off = np.array([d["offchip_bytes"] for d in ds], float)
        labels = pd.Series([str(d.get(label, "")) if label else "" for d in ds])
    with np.errstate(divide="ignore", invalid="ignore"):
        inten = np.where(off > 0, macs / np.where(off > 0, off, 1.0), np.inf)
    return pd.DataFrame({"intensity_macs_per_byte": inten, "macs_per_s": macs / lat,
                         "label": labels.to_numpy()})


def op_breakdown(ops, *, by: str = "op", value: str | None = None) -> PlotResult:
    """Where the time goes: compute and stall cycles summed per ``by`` (op, role, layer,
    core ...), as stacked horizontal bars, largest first.

    ``ops``: the simulator's per-op table (``SimResult.ops``) or a ``SimResult``.
    ``data``: ``[by, compute_cycles, stall_cycles, total_cycles, share]``.
    """
    table = getattr(ops, "ops", ops)
    comp, stall = "compute_cycles", "stall_cycles"
    check_columns(table, [by, comp, stall])
    g = table.groupby(by, sort=False, dropna=False)[[comp, stall]].sum()
    g["total_cycles"] = g[comp] + g[stall]
    tot = float(g["total_cycles"].sum())
    g["share"] = g["total_cycles"] / tot if tot > 0 else 0.0
    data = g.sort_values("total_cycles", ascending=False, kind="stable").reset_index()
    fig, axes = new_figure(height=max(2.5, 0.3 * len(data) + 1))
    ax = axes[0, 0]
    names = [str(v) for v in data[by]][::-1]
    ax.barh(names, data[comp][::-1], label="compute")
    ax.barh(names, data[stall][::-1], left=data[comp][::-1], label="stall")
    ax.set_xlabel("cycles (summed over ops)")
    ax.set_ylabel(by)
    ax.legend(fontsize="small")
    ax.grid(True, axis="x", alpha=0.3)
    return PlotResult(fig, data, {"by": by})


def core_timeline(timeline, *, max_ops: int = 20000, color_by: str = "op") -> PlotResult:
    """What each core does when: one row per core, one bar per op from its start to its end
    cycle, coloured by ``color_by``.

    ``timeline``: a ``SimResult`` (its per-core ``timeline``, with each piece's op kind taken
    from ``ops``) or a table with ``core``, ``start_cycle``, ``end_cycle`` (and ``color_by``
    if it is to colour). At most ``max_ops`` bars are drawn (the longest); ``data`` holds
    every bar drawn, with its ``duration``.
    """
    import pandas as pd
    table = timeline
    if not hasattr(table, "columns"):  # a SimResult: timeline pieces named by op
        kinds = timeline.ops[["name", "op"]].rename(columns={"op": "kind"})
        table = (timeline.timeline.rename(columns={"op": "name"})
                 .merge(kinds, on="name", how="left").rename(columns={"kind": "op"}))
    check_columns(table, ["core", "start_cycle", "end_cycle"])
    t = table[table["end_cycle"] > table["start_cycle"]]
    t = t.assign(duration=t["end_cycle"] - t["start_cycle"])
    if len(t) > max_ops:
        t = t.nlargest(max_ops, "duration")
    t = t.sort_values(["core", "start_cycle"], kind="stable").reset_index(drop=True)
    cores = sorted(t["core"].unique().tolist())
    row = {c: i for i, c in enumerate(cores)}
    fig, axes = new_figure(width=9.0, height=max(2.5, 0.2 * len(cores) + 1.2))
    ax = axes[0, 0]
    groups = t.groupby(t[color_by].astype(str), sort=False) if color_by in t else [("", t)]
    n = 0
    for n, (kind, g) in enumerate(groups):
        ax.barh(g["core"].map(row), g["duration"], left=g["start_cycle"], height=0.8,
                color=f"C{n % 10}", label=kind or None)
    ax.set_yticks(range(len(cores)), [str(c) for c in cores])
    ax.set_xlabel("cycle")
    ax.set_ylabel("core")
    if color_by in t and n < 12:
        ax.legend(fontsize="small", ncols=4)
    return PlotResult(fig, pd.DataFrame(t), {"cores": cores})
