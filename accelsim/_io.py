"""Small I/O helpers shared by every stage: atomic file writing and JSON-safe values.

Everything accelsim writes (CLI outputs, figures, sweep parts, reports) goes through
:func:`atomic_path`: the data is written to a temporary file beside the target and renamed
over it only when complete, so an error or an interrupt never leaves half a file.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_atomic(d / "a.txt", "hello")
>>> (d / "a.txt").read_text()
'hello'
>>> jsonable({"x": (1, float("nan")), 2: [3]})
{'x': [1, None], '2': [3]}
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

from .errors import ConfigError

__all__ = ["atomic_path", "write_atomic", "jsonable", "read_regular", "open_regular",
           "check_name", "exists", "check_output", "check_output_dir", "LIMITS", "MAX_NAME_BYTES",
           "MAX_PATH_BYTES", "load_arrays", "check_array", "MAX_ARRAY_ELEMENTS"]

#: Longest file name (one path component) and whole path accepted, in bytes (Linux's
#: NAME_MAX and PATH_MAX - 1).
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4095
_MiB = 2**20
#: The largest file of each kind accelsim reads (docs/bad-input.md); a larger one is
#: refused before it is read.
LIMITS = {
    "document": 16 * _MiB,        # YAML/JSON: accelerators, models, allocations, sweeps
    "arrays": 512 * _MiB,         # NPZ/NPY signals, traces, calibration (also uncompressed)
    "trace_csv": 256 * _MiB,      # CSV routing traces
    "table": 1024 * _MiB,         # results tables (parquet, CSV) for plot
}
#: Kernel pseudo file systems: never a place for results.
_PSEUDO = ("/proc", "/sys")
#: Names of this process's open descriptors: written through even when they are files.
_OPEN_FD = re.compile(r"^/(dev/(stdout|stderr|fd/\d+)|proc/(self|\d+)/fd/\d+)$")


def check_name(path: str | os.PathLike, *, key: str = "") -> str:
    """``str(path)``, or a ConfigError when no file system could hold such a name (a NUL
    byte, a component over :data:`MAX_NAME_BYTES` or a path over :data:`MAX_PATH_BYTES`);
    ``os.stat`` would raise instead of answering."""
    name = os.fspath(path)
    name = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name
    if "\x00" in name:
        raise ConfigError.single("a file name cannot contain a NUL character", file=name,
                                 key=key)
    enc = name.encode("utf-8", "surrogateescape")
    if len(enc) > MAX_PATH_BYTES:
        raise ConfigError.single(f"path is longer than {MAX_PATH_BYTES:,} bytes",
                                 file=name[:80] + "...", key=key)
    if any(len(part) > MAX_NAME_BYTES for part in enc.split(b"/")):
        raise ConfigError.single(f"a file name is longer than {MAX_NAME_BYTES} bytes",
                                 file=name[:80] + "...", key=key)
    return name


def exists(path: str | os.PathLike) -> bool:
    """``Path.exists`` that answers False for a name no file system can hold instead of
    raising (too long, NUL byte) and for a path it may not look into."""
    try:
        check_name(path)
        return os.path.exists(os.path.expanduser(os.fspath(path)))
    except (ConfigError, OSError, ValueError):
        return False


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a regular file"


def _size(n: float) -> str:
    return f"{n / _MiB:,.0f} MiB" if n >= _MiB else f"{n:,.0f} bytes"


@contextmanager
def open_regular(path: str | os.PathLike, *, what: str = "file",
                 limit: int = LIMITS["document"]) -> Iterator[BinaryIO]:
    """Open ``path`` for binary reading if it is a regular file of at most ``limit`` bytes.

    A FIFO, a device (``/dev/zero``), a socket or a directory is refused before it is opened,
    so reading can neither block forever nor run until memory is exhausted; every refusal is
    a ConfigError naming the file."""
    name = check_name(path)
    p = os.path.expanduser(name)
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError.single(f"no such {what}", file=name) from None
    except OSError as exc:
        raise ConfigError.single(f"cannot read: {exc.strerror or exc}", file=name) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError.single(f"is a directory, expected a {what}", file=name)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError.single(f"is {_kind(st.st_mode)}, not a regular file (accelsim reads "
                                 f"only regular files)", file=name)
    if st.st_size > limit:
        raise ConfigError.single(f"is {_size(st.st_size)}, over the {_size(limit)} limit of "
                                 f"a {what}", file=name)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError.single(f"cannot read: {exc.strerror or exc}", file=name) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):   # replaced since the stat above
            raise ConfigError.single("is not a regular file", file=name)
        yield fh


def read_regular(path: str | os.PathLike, *, what: str = "file",
                 limit: int = LIMITS["document"]) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`open_regular`)."""
    with open_regular(path, what=what, limit=limit) as fh:
        try:
            raw = fh.read(limit + 1)
        except OSError as exc:
            raise ConfigError.single(f"cannot read: {exc.strerror or exc}",
                                     file=str(path)) from None
    if len(raw) > limit:      # a file that grows, or reports no size (/proc)
        raise ConfigError.single(f"is over the {_size(limit)} limit of a {what}",
                                 file=str(path))
    return raw


# ----------------------------------------------------------------------------- writing


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r + "/") for r in roots)


def check_output_dir(path: str | os.PathLike, *, key: str = "--out") -> Path:
    """A directory of results (``validate --out DIR``), checked before any work: an
    existing path must be a directory; its parent must exist, be writable and not be on a
    kernel pseudo file system (``/proc``, ``/sys``). Returns the path, ``~`` expanded."""
    name = check_name(path, key=key)
    out = Path(os.path.expanduser(name))
    real = os.path.realpath(out)
    if _under(real, _PSEUDO):
        raise ConfigError.single(f"is on a kernel pseudo file system ({', '.join(_PSEUDO)}), "
                                 "not a place for results", file=name, key=key)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError.single("exists and is not a directory", file=name, key=key)
    parent = os.path.dirname(real)
    if not os.path.isdir(parent):
        raise ConfigError.single("parent directory does not exist", file=name, key=key)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError.single("cannot write in its parent directory", file=name, key=key)
    return out


def check_output(path: str | os.PathLike, *, key: str = "--out") -> tuple[str, Path]:
    """Where and how ``path`` is written, checked before any work.

    Returns ``("file", target)``: ``target`` (a symbolic link's target, so that the link
    stays a link) is replaced atomically; or ``("stream", path)``: a character device, a
    FIFO or an already open descriptor (``/dev/null``, ``/dev/stdout``) that is written
    through and never replaced. Directories, block devices, sockets, dangling links, kernel
    pseudo file systems (``/proc``, ``/sys``), missing or read-only directories are a
    ConfigError naming the path and ``key``.
    """
    name = check_name(path, key=key)
    p = Path(os.path.expanduser(name))
    absolute = os.path.abspath(p)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
        if os.path.islink(p):
            raise ConfigError.single("is a symbolic link to a missing file", file=name,
                                     key=key) from None
    except OSError as exc:
        raise ConfigError.single(f"cannot write: {exc.strerror or exc}", file=name,
                                 key=key) from None
    if st is not None:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError.single("is a directory, expected a file", file=name, key=key)
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or (
                stat.S_ISREG(mode) and _OPEN_FD.match(absolute)):
            if not os.access(p, os.W_OK):
                raise ConfigError.single("cannot write: permission denied", file=name,
                                         key=key)
            return "stream", p
        if not stat.S_ISREG(mode):
            raise ConfigError.single(f"is {_kind(mode)}: accelsim writes only regular files, "
                                     "character devices and FIFOs", file=name, key=key)
        target = Path(os.path.realpath(p))
    else:
        target = Path(os.path.realpath(p.parent)) / p.name
    parent = str(target.parent)
    if _under(parent, _PSEUDO):
        raise ConfigError.single(f"is on a kernel pseudo file system ({', '.join(_PSEUDO)}), "
                                 "not a place for results", file=name, key=key)
    if not os.path.isdir(parent):
        raise ConfigError.single("directory does not exist", file=parent, key=key)
    if not os.access(parent, os.W_OK | os.X_OK):
        try:
            ro = os.statvfs(parent).f_flag & os.ST_RDONLY
        except OSError:
            ro = False
        raise ConfigError.single("directory is on a read-only file system" if ro else
                                 "cannot write in this directory: permission denied",
                                 file=parent, key=key)
    return "file", target


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path; on normal exit its content becomes ``path``, on an exception
    it is removed.

    A regular file (or a new one) is replaced by a rename, with the usual permissions (not
    mkstemp's 0600); a symbolic link to a regular file is written through (its target is
    replaced, the link stays). A character device or FIFO (``/dev/null``, ``/dev/stdout``)
    is written into, never replaced. Other targets are refused (:func:`check_output`)."""
    how, target = check_output(path, key="")
    where = str(target.parent) if how == "file" else None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:64]}.", suffix=suffix, dir=where)
    except OSError as exc:
        raise ConfigError.single(f"cannot write: {exc.strerror or exc}",
                                 file=str(path)) from None
    os.close(fd)
    try:
        yield Path(tmp)
        if how == "stream":
            _copy_into(tmp, target)
            os.unlink(tmp)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _copy_into(tmp: str, target: Path) -> None:
    """Write the bytes of ``tmp`` into an open-able stream target without replacing it."""
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    try:
        mode = os.stat(target).st_mode
        if stat.S_ISFIFO(mode):
            flags |= os.O_NONBLOCK          # no reader: ENXIO at once instead of a hang
        elif stat.S_ISREG(mode):
            flags |= os.O_APPEND            # /dev/stdout redirected to a file
        fd = os.open(target, flags)
    except OSError as exc:
        raise ConfigError.single(f"cannot write: {exc.strerror or exc}"
                                 + (" (no process reads this FIFO)" if exc.errno == errno.ENXIO else ""),
                                 file=str(target)) from None
    if flags & os.O_NONBLOCK:
        os.set_blocking(fd, True)
    with os.fdopen(fd, "wb") as out, open(tmp, "rb") as src:
        shutil.copyfileobj(src, out)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write text or bytes to ``path`` atomically."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)


# ----------------------------------------------------------------------------- arrays

#: Elements one input array may hold (2^28: 2 GiB of float64), checked from the header
#: before the data is read.
MAX_ARRAY_ELEMENTS = 2**28


def load_arrays(path: str | os.PathLike, *, what: str = "NPZ file",
                limit: int = LIMITS["arrays"]) -> dict[str, Any]:
    """The arrays of an ``.npz`` file (or ``{"": array}`` for an ``.npy``), read only from a
    regular file of at most ``limit`` bytes whose arrays also decompress to at most
    ``limit`` bytes in all (checked from the zip directory before anything is inflated: a
    zip bomb is refused unread). Pickled (object) arrays are refused. ConfigError naming
    the file for anything unreadable."""
    import io
    import zipfile

    import numpy as np
    name = str(path)
    raw = read_regular(path, what=what, limit=limit)
    buf = io.BytesIO(raw)
    try:
        if zipfile.is_zipfile(buf):
            with zipfile.ZipFile(buf) as zf:
                total = sum(i.file_size for i in zf.infolist())
                if total > limit:
                    raise ConfigError.single(
                        f"its arrays would decompress to {_size(total)}, over the "
                        f"{_size(limit)} limit of a {what}", file=name)
            buf.seek(0)
            with np.load(buf, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        buf.seek(0)
        return {"": np.load(buf, allow_pickle=False)}
    except ConfigError:
        raise
    except Exception as exc:  # BadZipFile, ValueError (pickles, bad headers), EOFError ...
        raise ConfigError.single(f"not a readable NPZ or NPY file ({type(exc).__name__})",
                                 file=name) from None


def check_array(a: Any, *, file: str | None, key: str, ndim: int | tuple[int, ...] | None = None,
                integer: bool = False, lo: float | None = None, hi: float | None = None,
                tiny: float | None = None, dtype: Any = None,
                axes: tuple[str, ...] = ()) -> Any:
    """``a`` as a real, finite numeric array (``float64``, or ``int64`` with ``integer``),
    or a ConfigError naming ``file`` and the array ``key``: text, object, boolean and
    complex arrays, a wrong number of dimensions, NaN or infinity, values outside
    ``[lo, hi]``, non-zero magnitudes below ``tiny``, non-whole numbers where integers are
    expected, and values that overflow when cast to ``dtype`` (``float32``) are refused.
    ``axes`` names the dimensions in messages (``("layer", "expert")``)."""
    import numpy as np
    a = np.asarray(a)
    if a.dtype.kind == "c":
        raise ConfigError.single("must be real numbers, not complex", file=file, key=key,
                                 value=str(a.dtype))
    if a.dtype.kind not in "iuf":
        raise ConfigError.single("must be numbers", file=file, key=key, value=str(a.dtype))
    if a.size > MAX_ARRAY_ELEMENTS:
        raise ConfigError.single(f"has {a.size:,} elements, over the limit of "
                                 f"{MAX_ARRAY_ELEMENTS:,}", file=file, key=key)
    if ndim is not None and a.ndim not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise ConfigError.single(f"must have {ndim} dimension(s)", file=file, key=key,
                                 value=tuple(a.shape))
    with np.errstate(all="ignore"):
        f = a.astype(np.float64)
        if not np.isfinite(f).all():
            at = [int(i) for i in np.argwhere(~np.isfinite(f))[0]]
            where = (", ".join(f"{n} {i}" for n, i in zip(axes, at)) if len(axes) >= len(at)
                     else f"index {tuple(at)}")
            raise ConfigError.single("must be finite (no NaN or inf)", file=file, key=key,
                                     value=f"first at {where}")
        if integer and (f != np.round(f)).any():
            raise ConfigError.single("must be whole numbers", file=file, key=key)
        if lo is not None and f.size and f.min() < lo:
            raise ConfigError.single(f"must be >= {lo:g}", file=file, key=key,
                                     value=float(f.min()))
        if hi is not None and f.size and f.max() > hi:
            raise ConfigError.single(f"must be <= {hi:g}", file=file, key=key,
                                     value=float(f.max()))
        if tiny is not None and ((f != 0) & (np.abs(f) < tiny)).any():
            raise ConfigError.single(f"non-zero values must be at least {tiny:g} in "
                                     "magnitude", file=file, key=key)
        if dtype is not None and not np.isfinite(f.astype(dtype)).all():
            raise ConfigError.single(f"has values that overflow to infinity as "
                                     f"{np.dtype(dtype).name}", file=file, key=key)
    return a.astype(np.int64) if integer else f


def jsonable(x: Any) -> Any:
    """``x`` with numpy scalars and arrays as Python values, tuples as lists, keys as
    strings, and NaN or infinite floats as None (JSON has no such numbers)."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist") and hasattr(x, "dtype"):   # numpy arrays and scalars
        return jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
