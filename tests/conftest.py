"""Shared fixtures. Tests never depend on the working directory."""

from __future__ import annotations

import pytest

from accelsim.cli import main


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: returns (exit status, stdout, stderr)."""

    def run(*args: str):
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run
