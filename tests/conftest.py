"""Shared fixtures. Tests never depend on the working directory.

BLAS, OpenMP and numba are pinned to one thread (unless the environment says otherwise):
the suite runs many small products on shared 2-core machines, where extra threads only
contend (issue 14: validate 158 s with default threads, 42 s with one, on a loaded machine).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402

from accelsim.cli import main  # noqa: E402


def pytest_sessionstart(session):
    """Also pin thread pools a plugin may have started before the variables were set."""
    from accelsim.cli.validate import pin_threads
    pin_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: returns (exit status, stdout, stderr)."""

    def run(*args: str):
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run
