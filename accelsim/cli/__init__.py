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
import sys

import click

from .._version import __version__
from ..errors import AccelsimError, ConfigError, InfeasibleError

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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
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
    except (ConfigError, InfeasibleError) as exc:
        problems = getattr(exc, "problems", None) or [str(exc)]
        for p in problems:
            _error(str(p))
        return 2
    except AccelsimError as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
