"""Run the measured set, compare with the simulator, summarise and write the report.

One :class:`ErrorRow` per measured value: ``rel_error = (predicted - measured) / measured``.
The summary gives the median and maximum absolute relative error per hardware kind (the
hardware preset's name) and overall, for the calibration rows, the held-out rows and all.
Bounds (``tpot_s_max``: "under 1 ms per token") are checked, not scored.

Examples
--------
>>> r = ErrorRow("x", "h100", "llama-2-7b", "ttft_s", 0.010, 0.012, "held-out")
>>> round(r.rel_error, 6)
0.2
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_path, write_atomic
from .measured import BOUND_METRICS, METRICS, MeasuredSet, load_measured
from .predict import predict_row

__all__ = ["ErrorRow", "BoundCheck", "FidelityReport", "run_fidelity", "summarize",
           "error_by_kind", "write_report", "measured_table", "CSV_COLUMNS"]

#: Columns of ``fidelity.csv`` (the first eight are the contract of issue 13).
CSV_COLUMNS = ("row", "hardware", "model", "metric", "measured", "predicted", "rel_error",
               "split", "mode", "approximate", "source")


@dataclass(frozen=True)
class ErrorRow:
    """One measured value next to its prediction."""

    row: str
    hardware: str
    model: str
    metric: str
    measured: float
    predicted: float
    split: str
    mode: str = ""
    approximate: bool = False
    source: str = ""

    @property
    def rel_error(self) -> float:
        """``(predicted - measured) / measured``."""
        return (self.predicted - self.measured) / self.measured

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rel_error"] = self.rel_error
        return {k: d[k] for k in CSV_COLUMNS}


@dataclass(frozen=True)
class BoundCheck:
    """A published bound ("under 1 ms per token") and whether the prediction respects it."""

    row: str
    hardware: str
    metric: str
    bound: float
    predicted: float

    @property
    def holds(self) -> bool:
        return self.predicted <= self.bound


@dataclass(frozen=True)
class FidelityReport:
    rows: tuple[ErrorRow, ...]
    bounds: tuple[BoundCheck, ...] = ()
    ideal: bool = False
    notes: dict = field(default_factory=dict)
    #: every predicted metric of every row run (also those the row did not measure)
    predictions: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return summarize(self.rows)

    def to_dict(self) -> dict:
        return {"ideal": self.ideal, "rows": [r.to_dict() for r in self.rows],
                "bounds": [{**asdict(b), "holds": b.holds} for b in self.bounds],
                "summary": self.summary(), "notes": dict(self.notes)}


def _stats(errs: list[float]) -> dict:
    if not errs:
        return {"n": 0, "median_abs_error": None, "max_abs_error": None}
    a = np.abs(np.asarray(errs, dtype=float))
    return {"n": int(len(a)), "median_abs_error": float(np.median(a)),
            "max_abs_error": float(a.max())}


def summarize(rows) -> dict:
    """Median and maximum absolute relative error per hardware kind and overall, for the
    calibration rows, the held-out rows and all rows:
    ``{kind or 'overall': {'calibration'|'held-out'|'all': {n, median_abs_error,
    max_abs_error}}}``."""
    kinds = sorted({r.hardware for r in rows})
    out = {}
    for kind in kinds + ["overall"]:
        sel = [r for r in rows if kind == "overall" or r.hardware == kind]
        out[kind] = {s: _stats([r.rel_error for r in sel if s == "all" or r.split == s])
                     for s in ("calibration", "held-out", "all")}
    return out


def run_fidelity(measured: MeasuredSet | str | os.PathLike | None = None, *,
                 ideal: bool = False, rows=None) -> FidelityReport:
    """Predict every row of the measured set (default: the packaged one).

    Parameters
    ----------
    measured : MeasuredSet or path, optional
    ideal : bool
        Ignore the presets' efficiency models (the ideal roofline).
    rows : iterable of str, optional
        Only these row ids.
    """
    ms = measured if isinstance(measured, MeasuredSet) else load_measured(measured)
    want = None if rows is None else set(rows)
    unknown = sorted((want or set()) - {r.id for r in ms.rows})
    if unknown:
        from ..errors import ConfigError
        raise ConfigError.single(f"unknown measured-set row(s) {', '.join(unknown)}",
                                 key="row")
    out, bounds, notes, cache, predictions = [], [], {}, {}, {}
    for i, r in enumerate(ms.rows):
        if want is not None and r.id not in want:
            continue
        p = _predict(ms, i, r, ideal, cache)
        predictions[r.id] = dict(p.values)
        if p.note:
            notes[r.id] = p.note
        src = f"{r.source.title} ({r.source.venue}): {r.source.where}"
        kind = ms.target(r.id).kind
        for metric, value in r.measured.items():
            if metric not in p.values:
                continue
            if metric in BOUND_METRICS:
                bounds.append(BoundCheck(r.id, kind, metric, float(value),
                                         float(p.values[metric])))
            elif metric in METRICS:
                out.append(ErrorRow(r.id, kind, r.model, metric, float(value),
                                    float(p.values[metric]), r.split_of(metric), r.mode,
                                    r.approximate, src))
    return FidelityReport(tuple(out), tuple(bounds), ideal, notes, predictions)


def _predict(ms: MeasuredSet, index: int, row, ideal: bool, cache: dict):
    """:func:`predict_row` with a row that cannot run (a model that does not fit its
    devices, a configuration the simulator refuses) reported as one problem naming the
    measured file, the row and the key."""
    from ..errors import ConfigError, InfeasibleError, Problem
    target = ms.target(row.id)
    try:
        return predict_row(row, ideal=ideal, cache=cache, target=target)
    except (ConfigError, InfeasibleError) as exc:
        key = "plan" if target.plan is not None else "hardware"
        what = "; ".join(str(p) for p in exc.problems[:3]) if isinstance(
            exc, ConfigError) else str(exc)
        raise ConfigError([Problem(f"row '{row.id}' does not run: {what}",
                                   file=ms.file, key=f"rows[{index}].{key}")]) from None


_BY_KIND: dict = {}


def error_by_kind(*, split: str = "all") -> dict:
    """Median and maximum absolute relative error of the packaged measured set per hardware
    kind (preset name), computed by running it once per process (a few seconds the first
    time, then cached): ``{kind: {'n', 'median_abs_error', 'max_abs_error'}}``; the
    ``validate`` report prints it next to every latency claim."""
    if "report" not in _BY_KIND:
        _BY_KIND["report"] = run_fidelity()
    s = _BY_KIND["report"].summary()
    return {k: v[split] for k, v in s.items() if k != "overall"}


# ----------------------------------------------------------------------------- writing

def _csv_text(rep: FidelityReport) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rep.rows:
        w.writerow(r.to_dict())
    return buf.getvalue()


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(rep: FidelityReport, command: str = "accelsim fidelity") -> str:
    """The report as markdown: every measured value, then the summary."""
    lines = [f"# accelsim fidelity{' (ideal rooflines)' if rep.ideal else ''}", "",
             f"Made by `{command}`. rel_error = (predicted - measured) / measured.", "",
             "| row | hardware | model | metric | measured | predicted | rel_error | split |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rep.rows:
        lines.append(f"| {r.row}{' (approx.)' if r.approximate else ''} | {r.hardware} | "
                     f"{r.model} | {r.metric} | {r.measured:.4g} | {r.predicted:.4g} | "
                     f"{100 * r.rel_error:+.1f}% | {r.split} |")
    lines += ["", "## Summary (absolute relative error)", "",
              "| hardware | split | n | median | max |", "|---|---|---|---|---|"]
    for kind, by in rep.summary().items():
        for s in ("calibration", "held-out", "all"):
            st = by[s]
            lines.append(f"| {kind} | {s} | {st['n']} | {_pct(st['median_abs_error'])} | "
                         f"{_pct(st['max_abs_error'])} |")
    if rep.bounds:
        lines += ["", "## Published bounds (checked, not scored)", ""]
        for b in rep.bounds:
            lines.append(f"- {b.row}: {b.metric} <= {b.bound:.4g}; predicted "
                         f"{b.predicted:.4g}: {'holds' if b.holds else 'VIOLATED'}")
    if rep.notes:
        lines += ["", "## Approximations", ""]
        lines += [f"- {k}: {v}" for k, v in rep.notes.items()]
    return "\n".join(lines) + "\n"


_UNITS = {"tokens_per_s": ("tok/s", 1.0), "tokens_per_s_per_device": ("tok/s per device", 1.0),
          "ttft_s": ("ms TTFT", 1e3), "tpot_s": ("ms/token", 1e3), "power_w": ("W", 1.0),
          "tokens_per_s_per_w": ("tok/s/W", 1.0), "tpot_s_max": ("ms/token at most", 1e3)}


def measured_table(ms: MeasuredSet) -> str:
    """The measured set as a markdown table, one line per row (docs/fidelity.md holds it;
    a test keeps it current)."""
    lines = ["| row | hardware | devices, plan | model | precision | batch | in / out | "
             "measured | source | split |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in ms.rows:
        t = ms.target(r.id)
        where = "1" if t.system is None else f"{t.devices} ({t.system.name}), {r.plan or 'default plan'}"
        vals = []
        for k, v in r.measured.items():
            unit, f = _UNITS[k]
            vals.append(f"{v * f:,.6g} {unit}")
        split = r.split + (f" ({', '.join(r.calibration_metrics)}: calibration)"
                           if r.calibration_metrics else "")
        lines.append(f"| {r.id}{' (approx.)' if r.approximate else ''} | {t.kind} | {where} | "
                     f"{r.model} | {r.precision.label} | {r.batch} | {r.input_len} / "
                     f"{r.output_len} | {'; '.join(vals)} | {r.source.title}: {r.source.where} | "
                     f"{split} |")
    return "\n".join(lines) + "\n"


def _figure(rep: FidelityReport, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.0, 6.0))
    metrics = sorted({r.metric for r in rep.rows})
    marks = dict(zip(metrics, "os^vDP*X"))
    kinds = sorted({r.hardware for r in rep.rows})
    colors = dict(zip(kinds, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    # every metric in its own unit (s, tokens/s, W): on log axes they share the y = x line
    for r in rep.rows:
        ax.scatter(r.measured, r.predicted, marker=marks[r.metric], color=colors[r.hardware],
                   facecolors="none" if r.split == "held-out" else colors[r.hardware], s=40)
    vals = [v for r in rep.rows for v in (r.measured, r.predicted) if v > 0]
    lo, hi = (min(vals) / 2, max(vals) * 2) if vals else (1e-3, 1e3)
    ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
    ax.plot([lo, hi], [1.35 * lo, 1.35 * hi], "k:", lw=0.8, label="+-35%")
    ax.plot([lo, hi], [0.65 * lo, 0.65 * hi], "k:", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured (s, tokens/s, W as the metric)")
    ax.set_ylabel("predicted")
    for k in kinds:
        ax.scatter([], [], color=colors[k], label=k)
    for m in metrics:
        ax.scatter([], [], marker=marks[m], color="gray", label=m)
    ax.scatter([], [], color="gray", facecolors="none", label="held-out (hollow)")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("accelsim against published measurements")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def write_report(rep: FidelityReport, out_dir: str | os.PathLike,
                 command: str = "accelsim fidelity") -> dict[str, Path]:
    """Write ``fidelity.csv``, ``fidelity.md`` and ``fidelity.png`` into ``out_dir`` (each
    atomically); returns their paths."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"csv": d / "fidelity.csv", "md": d / "fidelity.md", "png": d / "fidelity.png"}
    write_atomic(paths["csv"], _csv_text(rep))
    write_atomic(paths["md"], markdown(rep, command))
    _figure(rep, paths["png"])
    return paths
