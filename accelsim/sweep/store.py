"""Results written chunk by chunk, so that an interrupted sweep resumes without losing or
repeating a point.

While a sweep runs, every finished chunk becomes one parquet file in a directory next to the
output (``results.parquet.parts/part-00000040-00000059.parquet``), written to a temporary
name and renamed, so a part is either complete or absent whatever moment the run is killed.
``manifest.json`` records the fingerprint of the spec's points; a resumed run refuses a
directory written for other points. At the end the parts are joined, sorted by
``point_id``, written atomically to the output file and the directory is removed.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> store = PartStore(d / "r.csv", fingerprint="abc", points=3)
>>> store.open(resume=False)
set()
>>> store.write([{"point_id": 1, "x": 1.0, "error": None}])
>>> store.open(resume=True)
{1}
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from .._io import LIMITS, atomic_path, check_name, check_output, exists, open_regular, \
    write_atomic
from ..errors import ConfigError

__all__ = ["PartStore", "OutputLock", "lock_path", "parts_dir", "OUT_SUFFIXES", "check_out", "write_table",
           "read_table", "canonical_table", "TEXT_COLUMNS"]

#: Columns that hold text even when every value is missing.
TEXT_COLUMNS = ("bound", "error")

OUT_SUFFIXES = (".parquet", ".pq", ".csv")
_MANIFEST = "manifest.json"


def parts_dir(out: str | os.PathLike) -> Path:
    """The directory holding the finished chunks of a run writing ``out``."""
    p = Path(out).expanduser()
    return p.with_name(p.name + ".parts")


def check_out(out: str | os.PathLike, key: str = "--out") -> Path:
    """The output path, checked before any work: a known suffix, a place where a file can be
    written (:func:`accelsim._io.check_output`) and room for the parts directory's name."""
    check_name(str(out) + ".parts", key=key)
    p = Path(out).expanduser()
    if p.suffix.lower() not in OUT_SUFFIXES:
        raise ConfigError.single("results must be a .parquet or .csv file", file=str(out),
                                 key=key)
    if exists(p) and p.is_dir():
        raise ConfigError.single("is a directory, expected a results file", file=str(out),
                                 key=key)
    how, _ = check_output(p, key=key)
    if how != "file":
        raise ConfigError.single("results are written chunk by chunk beside the file: give a "
                                 "regular file (or '-' for CSV on stdout)", file=str(out),
                                 key=key)
    return p


def write_table(df, path: str | os.PathLike) -> None:
    """Write a DataFrame as parquet or CSV (by suffix), atomically."""
    p = Path(path).expanduser()
    with atomic_path(p) as tmp:
        if p.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)


def canonical_table(df):
    """Results in one representation whatever wrote or read them: text columns (and
    :data:`TEXT_COLUMNS`) as ``object`` with None for a missing value; numbers untouched.
    Parquet and CSV readers (and pandas versions) differ in how they type text."""
    import pandas as pd
    out = df.copy(deep=False)     # columns are replaced below, never changed in place
    for col in out.columns:
        s = out[col]
        text = col in TEXT_COLUMNS or not (pd.api.types.is_numeric_dtype(s)
                                           or pd.api.types.is_bool_dtype(s))
        if text:
            obj = s.to_numpy(dtype=object, copy=True)
            obj[pd.isna(obj)] = None
            out[col] = pd.Series(obj, index=out.index, dtype=object)
    return out


def read_table(path: str | os.PathLike):
    """Read a results file (parquet or CSV) into a DataFrame (text columns as in
    :func:`canonical_table`); ConfigError if unreadable."""
    import pandas as pd
    p = Path(check_name(path)).expanduser()
    if p.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise ConfigError.single("results must be a .parquet or .csv file", file=str(path))
    try:
        with open_regular(p, what="results file", limit=LIMITS["table"]) as fh:
            if p.suffix.lower() == ".csv":
                return canonical_table(pd.read_csv(fh))
            return canonical_table(pd.read_parquet(fh))
    except ConfigError:
        raise
    except Exception as exc:  # pyarrow and the CSV parser raise many kinds
        raise ConfigError.single(f"cannot read results ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''})",
                                 file=str(path)) from None
    raise ConfigError.single("results must be a .parquet or .csv file", file=str(path))


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of a run writing ``out`` (``results.parquet.lock``)."""
    p = Path(out).expanduser()
    return p.with_name(p.name + ".lock")


class OutputLock:
    """One writer per results file: an exclusive ``flock`` on ``OUT.lock``.

    The kernel drops the lock when its holder exits, however it exits (SIGKILL included),
    so a killed run never blocks the next one; a second run on the same output while the
    first is alive gets one line naming the first (its pid, command and start time).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
    >>> with OutputLock(out):
    ...     try:
    ...         OutputLock(out).acquire()
    ...     except ConfigError as e:
    ...         print("is being written by another accelsim run" in str(e))
    True
    >>> lock_path(out).exists()
    False
    """

    def __init__(self, out: str | os.PathLike):
        self.out = str(out)
        self.path = lock_path(out)
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl
        import sys
        import time
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                             0o644)
            except OSError as exc:
                raise ConfigError.single(f"cannot create the lock file {self.path.name}: "
                                         f"{exc.strerror or exc}", file=self.out) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 300).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise ConfigError.single(
                    f"is being written by another accelsim run ({holder}); wait for it to "
                    f"finish or stop it (its lock: {self.path})", file=self.out) from None
            try:   # the previous holder may have removed the file between open and flock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        cmd = " ".join(["accelsim", *sys.argv[1:]])[:160] if sys.argv else "accelsim"
        os.write(fd, f"pid {os.getpid()}, '{cmd}', started "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class PartStore:
    """The parts directory of one run (see the module docstring)."""

    def __init__(self, out: str | os.PathLike, *, fingerprint: str, points: int):
        self.out = Path(out).expanduser()
        self.dir = parts_dir(self.out)
        self.fingerprint = fingerprint
        self.points = points

    def _manifest(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "points": self.points}

    def open(self, *, resume: bool) -> set[int]:
        """Prepare the directory; the ids of points already written (resume only)."""
        if self.dir.exists():
            if not resume:
                raise ConfigError.single(
                    "holds the results of an interrupted run: add --resume to continue it, "
                    "or delete the directory to start again", file=str(self.dir))
            return self._resume()
        self.dir.mkdir()
        self._write_manifest()
        return set()

    def _write_manifest(self) -> None:
        write_atomic(self.dir / _MANIFEST, json.dumps(self._manifest()))

    def _resume(self) -> set[int]:
        man = self.dir / _MANIFEST
        try:
            found = json.loads(man.read_text())
        except (OSError, ValueError):
            raise ConfigError.single("is not the parts directory of an accelsim sweep (no "
                                     "readable manifest.json); delete it", file=str(self.dir)
                                     ) from None
        if found != self._manifest():
            raise ConfigError.single(
                "was written for a different sweep (the spec's points changed since the "
                "interrupted run): delete it or run without --resume", file=str(self.dir))
        for tmp in self.dir.glob(".*.tmp"):
            tmp.unlink()  # a chunk that was being written when the run died
        done: set[int] = set()
        import pyarrow.parquet as pq
        for part in self._parts():
            ids = pq.read_table(part, columns=["point_id"]).column(0).to_pylist()
            done.update(int(i) for i in ids)
        return done

    def _parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet"))

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write one finished chunk as a part file, atomically."""
        import pandas as pd
        if not rows:
            return
        ids = [int(r["point_id"]) for r in rows]
        name = f"part-{min(ids):08d}-{max(ids):08d}.parquet"
        with atomic_path(self.dir / name) as tmp:
            pd.DataFrame.from_records(list(rows)).to_parquet(tmp, index=False)

    def read(self):
        """Every row written so far, one DataFrame sorted by ``point_id``."""
        import pandas as pd
        frames = [pd.read_parquet(p) for p in self._parts()]
        if not frames:
            return pd.DataFrame({"point_id": []})
        frames = [f.dropna(axis=1, how="all") for f in frames]
        df = pd.concat(frames, ignore_index=True, sort=False)
        df = df.sort_values("point_id", kind="stable")
        # a point is deterministic: one written twice (by a run from before the output lock)
        # is the same row twice, not a conflict that should block every later run
        return df.drop_duplicates("point_id", keep="first").reset_index(drop=True)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def has_parts(self) -> bool:
        """Whether any chunk has been written."""
        return self.dir.is_dir() and bool(self._parts())
