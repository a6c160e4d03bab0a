"""Executors: where the chunks of a sweep run.

One small protocol, :class:`Executor`, with implementations registered by name in
:data:`EXECUTORS`:

``serial``
    in this process, chunk after chunk;
``processes``
    a :class:`concurrent.futures.ProcessPoolExecutor` of ``workers`` processes started with
    ``forkserver`` (``spawn`` where that does not exist): a worker never inherits a forked
    copy of a parent that has numba threads running;
``dask``
    a ``dask.distributed`` cluster: an existing one (``address='tcp://host:port'``) or a
    ``LocalCluster`` of ``workers`` processes started and stopped with the run
    (``local=True``; ``processes=False`` runs the workers as threads of this process).

Each chunk runs :func:`run_chunk`, which evaluates its points one by one and records a
point's exception as its ``error`` instead of stopping. Every executor yields finished
chunks as they complete; only the caller writes them, so no two processes ever write the
same file. Workers keep their per-process caches (accelerators, models, graphs) between
chunks.

Examples
--------
>>> ex = make_executor("serial")
>>> list(ex.map(_double, [[1, 2], [3]]))
[[2, 4], [6]]
>>> ex.close()
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from ..errors import AccelsimError, ConfigError

__all__ = ["Executor", "EXECUTORS", "make_executor", "run_chunk", "SerialExecutor",
           "ProcessExecutor", "DaskExecutor", "error_text"]


class Executor(Protocol):
    """Runs ``fn`` on chunks and yields each chunk's result as it finishes (any order)."""

    name: str
    workers: int

    def map(self, fn: Callable[[Any], Any], chunks: Iterable[Any]) -> Iterator[Any]: ...

    def close(self) -> None: ...


def error_text(exc: BaseException) -> str:
    """One line naming the exception: ``ConfigError: avg_bits: uniform needs ...``."""
    msg = str(exc).strip().replace("\n", "; ")
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def run_chunk(evaluate: Callable[[Any], dict], points: Sequence[Any]) -> list[dict]:
    """Evaluate ``points`` in order; a point that raises is recorded with its error.

    Returns one dict per point: ``point_id``, the evaluation's values and ``error`` (None on
    success). Only :class:`Exception` is caught: an interrupt still stops the run.
    """
    rows = []
    for p in points:
        try:
            out = dict(evaluate(p))
            err = None
        except Exception as exc:  # recorded, the sweep goes on (issue 7)
            out, err = {}, error_text(exc)
        rows.append({"point_id": p.id, **out, "error": err})
    return rows


def _double(xs):  # for the module's doctest
    return [2 * x for x in xs]


class SerialExecutor:
    """Chunks run one after the other in this process."""

    name = "serial"

    def __init__(self, workers: int = 1):
        self.workers = 1

    def map(self, fn, chunks):
        for c in chunks:
            yield fn(c)

    def close(self) -> None:
        pass


PR_SET_PDEATHSIG = 1      # linux/prctl.h


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; elsewhere a
    no-op): a killed sweep leaves no worker behind even when it had no time to clean up."""
    import signal
    import sys
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no libc symbol: the watchdog still works
        pass


def _watchdog(parent: int, period_s: float) -> None:
    import os
    import time
    while True:
        time.sleep(period_s)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)          # the sweep is gone: its results can never be written
        except PermissionError:  # pid reused by another user's process: gone too
            os._exit(1)


def _worker_init(parent: int) -> None:
    """Initializer of every pool worker: die with the sweep (the kernel's parent-death
    signal for the fork server's child, and a watchdog thread polling the sweep's own pid,
    which is not this worker's parent under forkserver), leave Ctrl-C to the sweep (which
    stops the workers itself), and import the evaluation stack before the first chunk."""
    import signal
    import threading
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watchdog, args=(parent, 1.0), daemon=True,
                     name="accelsim-watchdog").start()
    import accelsim.sweep.evaluate  # noqa: F401




#: Modules the fork server imports once, so that every worker forks with them loaded
#: (``_warm`` also loads the simulator's compiled numba functions).
PRELOAD = ["accelsim.sweep._warm"]


def _mp_context():
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    # takes effect only when the fork server starts; a module that fails to import there is
    # skipped by multiprocessing and imported by each worker instead
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class ProcessExecutor:
    """A pool of ``workers`` processes on this machine."""

    name = "processes"

    def __init__(self, workers: int = 2):
        if workers < 1:
            raise ConfigError.single("needs at least one worker", key="--workers",
                                     value=workers)
        self.workers = workers
        import os
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(),
                                         initializer=_worker_init, initargs=(os.getpid(),))

    def map(self, fn, chunks):
        # a bounded number of chunks in flight: memory stays flat for huge sweeps and an
        # interrupted run has little work queued
        it = iter(chunks)
        pending = set()
        try:
            for c in it:
                pending.add(self._submit(fn, c))
                if len(pending) >= 2 * self.workers:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.add(self._submit(fn, nxt))
                    yield _result(f)
        finally:
            for f in pending:
                f.cancel()

    def _submit(self, fn, chunk):
        try:
            return self._pool.submit(fn, chunk)
        except BrokenProcessPool as exc:
            raise AccelsimError(f"a sweep worker died ({exc}); finished chunks are kept, "
                                "rerun with --resume") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Stop at once (an interrupt): kill the workers, drop queued chunks."""
        for proc in list(getattr(self._pool, "_processes", {}).values()):
            try:
                proc.kill()
            except (OSError, AttributeError):
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)


def _result(future) -> Any:
    try:
        return future.result()
    except AccelsimError:
        raise
    except Exception as exc:  # a worker died, or a result could not be pickled
        raise AccelsimError(f"a sweep worker failed: {error_text(exc)}; finished chunks "
                            "are kept, rerun with --resume") from exc


class DaskExecutor:
    """Chunks as tasks of a ``dask.distributed`` cluster."""

    name = "dask"

    def __init__(self, workers: int = 1, *, address: str | None = None, local: bool = False,
                 processes: bool = True, threads_per_worker: int = 1,
                 timeout: str = "10s"):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError.single("Dask is not installed: pip install 'accelsim[dask]'",
                                     key="--dask") from None
        self._cluster = None
        if address is None and not local:
            raise ConfigError.single("give a scheduler address or local=True", key="--dask")
        try:
            if address is None:
                # tcp on loopback also for thread workers: nothing listens beyond this host
                self._cluster = LocalCluster(n_workers=workers, processes=processes,
                                             threads_per_worker=threads_per_worker,
                                             protocol="tcp://", host="127.0.0.1",
                                             dashboard_address=None)
                self._client = Client(self._cluster)
            else:
                self._client = Client(address, timeout=timeout)
        except Exception as exc:  # OSError, TimeoutError, ValueError (unknown protocol) ...
            self.close()
            raise ConfigError.single(f"cannot reach the Dask scheduler ({error_text(exc)})",
                                     key="--dask", value=address) from None
        self.workers = workers if address is None else max(
            1, len(self._client.scheduler_info().get("workers", {})))

    def map(self, fn, chunks):
        from distributed import as_completed
        it = iter(chunks)
        ac = as_completed()
        in_flight = 0
        for c in it:
            ac.add(self._client.submit(fn, c, pure=False))
            in_flight += 1
            if in_flight >= 2 * self.workers:
                break
        for fut in ac:
            nxt = next(it, None)
            if nxt is not None:
                ac.add(self._client.submit(fn, nxt, pure=False))
            yield _result(fut)

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()


#: Executor name -> class; ``make_executor(name, ...)`` builds one.
EXECUTORS: dict[str, type] = {"serial": SerialExecutor, "processes": ProcessExecutor,
                              "dask": DaskExecutor}


def make_executor(name: str, **options: Any) -> Executor:
    """Build a registered executor by name."""
    try:
        cls = EXECUTORS[name]
    except KeyError:
        from ..errors import did_you_mean
        raise ConfigError.single(f"unknown executor; executors: {', '.join(EXECUTORS)}"
                                 + did_you_mean(name, EXECUTORS), key="executor",
                                 value=name) from None
    return cls(**options)

