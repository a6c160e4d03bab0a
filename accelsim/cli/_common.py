"""Helpers shared by the subcommands: output formats and atomic file writing."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Mapping, Sequence

import click

from .._io import check_output, jsonable
from .._io import write_atomic as _write_atomic

__all__ = ["format_option", "emit", "write_atomic", "to_json", "render_table",
           "check_out_path"]


def format_option(*choices: str, default: str = "table"):
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=default,
                        show_default=True, help="Output format.")


def to_json(data: Any) -> str:
    return json.dumps(jsonable(data), indent=2)


#: ``--out -``: standard output.
STDOUT = "-"


def check_out_path(out: str | None, key: str = "--out") -> None:
    """Fail early (before any work) when ``--out`` cannot be written: a missing, read-only
    or pseudo-file-system directory, a directory, a block device ... (``-`` is stdout)."""
    if out is None or str(out) == STDOUT:
        return
    check_output(out, key=key)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write to a temporary file beside ``path`` and rename: nothing is half-written. A
    symbolic link is written through, a device or FIFO written into, never replaced
    (:func:`accelsim._io.atomic_path`); ``-`` writes to stdout."""
    if str(path) == STDOUT:
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            click.echo(data, nl=False)
        return
    check_out_path(str(path))
    _write_atomic(path, data)


def render_table(rows: Sequence[Mapping[str, Any]], columns: Iterable[str] | None = None) -> str:
    """A plain fixed-width text table."""
    rows = list(rows)
    if not rows:
        return "(no rows)"
    cols = list(columns) if columns is not None else list(rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.6g}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join([line, sep, *body])


def emit(text: str, out: str | None = None) -> None:
    """Print ``text`` or write it atomically to ``out``."""
    if out:
        write_atomic(out, text if text.endswith("\n") else text + "\n")
    else:
        click.echo(text)
