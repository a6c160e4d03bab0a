"""The ``accelsim`` command: the only place that prints or sets exit codes.

Subcommands live in modules of this package (``hw.py``, ``workload.py``, ``simulate.py``,
...); each defines a click command or group named ``command``. Every accelsim error becomes
one line per problem on stderr, prefixed ``accelsim: error:``, and exit status 2 for bad
input (:class:`~accelsim.errors.ConfigError`, :class:`~accelsim.errors.InfeasibleError`), 1
for other failures; never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import signal
import sys
import threading

import click

from .._version import __version__
from ..errors import AccelsimError, ConfigError, InfeasibleError, one_line

__all__ = ["main", "cli"]

#: command name -> module in this package that defines ``command``.
COMMANDS = {
    "hw": "hw", "workload": "workload", "simulate": "simulate", "allocate": "allocate",
    "theory": "theory", "sweep": "sweep", "plot": "plot", "validate": "validate",
    "system": "system", "plan": "plan", "fidelity": "fidelity",
}


class _LazyGroup(click.Group):
    """Loads a subcommand's module only when it is used (keeps ``--help`` fast)."""

    def list_commands(self, ctx):
        return [n for n, mod in COMMANDS.items()
                if importlib.util.find_spec(f"{__name__}.{mod}") is not None]

    def get_command(self, ctx, name):
        mod = COMMANDS.get(name)
        if mod is None or importlib.util.find_spec(f"{__name__}.{mod}") is None:
            return None
        return importlib.import_module(f"{__name__}.{mod}").command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="accelsim")
def cli():
    """accelsim: what per-expert weight precision buys a Mixture-of-Experts model on a
    digital AI accelerator (memory, bandwidth, latency, energy), and what it costs."""


def _error(msg: str) -> None:
    click.echo(f"accelsim: error: {msg}", err=True)


def _note(exc: BaseException) -> str:
    """What a command said about an interrupt (a sweep: where its parts are kept)."""
    note = getattr(exc, "accelsim_note", "")
    return f"; {note}" if note else ""


class Interrupted(BaseException):
    """SIGINT or SIGTERM while a command runs. A BaseException (not KeyboardInterrupt, which
    click turns into a bare ``Abort`` after printing an empty line), so that it unwinds
    every ``try``/``finally`` (temporary files removed, workers stopped, a sweep's lock
    released) up to :func:`main`, which prints one line."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status. SIGINT and SIGTERM are handled alike: one line,
    exit status 130 or 143, nothing half-written, a sweep resumable."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) in (signal.default_int_handler, signal.SIG_DFL):
                previous[sig] = signal.signal(sig, _on_signal)
    try:
        return _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> int:
    try:
        rv = cli.main(args=argv, prog_name="accelsim", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()                  # a command given without arguments: its help
        return exc.exit_code
    except click.UsageError as exc:
        # a bad option or argument: one line like every other bad input, with the way on
        where = exc.ctx.command_path if exc.ctx is not None else "accelsim"
        _error(f"{exc.format_message()} (see '{where} --help')")
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        _error("aborted")
        return 130
    except Interrupted as exc:
        term = exc.signum == signal.SIGTERM
        _error(("terminated (SIGTERM)" if term else "interrupted") + _note(exc))
        return 143 if term else 130
    except (ConfigError, InfeasibleError) as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        for p in problems:
            _error(str(p))
        return 2
    except AccelsimError as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt as exc:
        _error("interrupted" + _note(exc))
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # the safety net of the path rules (docs/bad-input.md): a file the library did not
        # check first is still one line naming it, not a traceback
        name = exc.filename if exc.filename is not None else ""
        _error(one_line(f"{name}: {exc.strerror or exc}" if name else
                        f"{exc.strerror or exc}"))
        return 2
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
