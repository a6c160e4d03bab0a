"""``accelsim fidelity``: the simulator against published measurements (the measured set)."""

from __future__ import annotations

import click

from ..fidelity import load_measured, run_fidelity, write_report

from ._common import emit, format_option, render_table, to_json

__all__ = ["command"]


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


@click.command("fidelity")
@click.option("--measured", "measured", default=None, type=click.Path(dir_okay=False),
              help="A measured-set YAML (default: the packaged measured/measured.yaml).")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="Write DIR/fidelity.csv, DIR/fidelity.md and DIR/fidelity.png.")
@click.option("--ideal", is_flag=True,
              help="Ideal rooflines: ignore the presets' efficiency models.")
@click.option("--row", "rows", multiple=True, help="Only this row id (repeatable).")
@format_option("table", "json")
def command(measured, out, ideal, rows, fmt):
    """Run every row of the measured set through the simulator and report predicted,
    measured and relative error ((predicted - measured) / measured), with the median and
    maximum absolute error per hardware kind, for calibration and held-out rows."""
    ms = load_measured(measured)
    rep = run_fidelity(ms, ideal=ideal, rows=rows or None)
    if out is not None:
        write_report(rep, out, command="accelsim fidelity" + (" --ideal" if ideal else ""))
    if fmt == "json":
        emit(to_json(rep.to_dict()))
        return
    table = render_table([{"row": r.row, "hardware": r.hardware, "metric": r.metric,
                           "measured": f"{r.measured:.4g}", "predicted": f"{r.predicted:.4g}",
                           "rel_error": f"{100 * r.rel_error:+.1f}%", "split": r.split}
                          for r in rep.rows])
    summary = render_table([{"hardware": k, "split": s, "n": v[s]["n"],
                             "median_abs": _pct(v[s]["median_abs_error"]),
                             "max_abs": _pct(v[s]["max_abs_error"])}
                            for k, v in rep.summary().items()
                            for s in ("calibration", "held-out", "all")])
    lines = [table, "", summary]
    for b in rep.bounds:
        lines.append(f"bound {b.row}: {b.metric} <= {b.bound:.4g}, predicted "
                     f"{b.predicted:.4g} ({'holds' if b.holds else 'VIOLATED'})")
    if out is not None:
        lines.append(f"report: {out}/fidelity.md")
    emit("\n".join(lines))



