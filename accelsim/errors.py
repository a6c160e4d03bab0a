"""The accelsim exception family.

Every error the library raises on purpose derives from :class:`AccelsimError`. The library
never prints or exits; :mod:`accelsim.cli` turns these into one line per problem on stderr
and exit status 2.

A :class:`ConfigError` carries one or more :class:`Problem` records, each naming the file,
the key path inside it, the rule that was broken and the offending value, so that a user
reads, for example::

    hwconfigs/edge.yaml: memory[1].read_bandwidth: must be a bandwidth like '64 GB/s' (got '-3 GB/s')

Examples
--------
>>> err = ConfigError.single("must be > 0", file="hw.yaml", key="cores.count", value=-1)
>>> str(err)
'hw.yaml: cores.count: must be > 0 (got -1)'
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

__all__ = [
    "AccelsimError",
    "ConfigError",
    "Problem",
    "InfeasibleError",
    "DoesNotFitError",
    "UnsupportedModelError",
    "CheckpointError",
    "SimulationError",
    "did_you_mean",
    "format_key_path",
]

_NO_VALUE = object()


class AccelsimError(Exception):
    """Base class of every error raised on purpose by accelsim."""


def format_key_path(parts: Iterable[Any]) -> str:
    """Join key-path parts the way users read them: ``memory[1].capacity``.

    >>> format_key_path(["memory", 1, "capacity"])
    'memory[1].capacity'
    >>> format_key_path([])
    ''
    """
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A short ``" (did you mean 'x'?)"`` suffix, or ``""`` when nothing is close.

    >>> did_you_mean("capacty", ["capacity", "scope"])
    " (did you mean 'capacity'?)"
    >>> did_you_mean("zzz", ["capacity"])
    ''
    """
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input: where it is, which rule it breaks, what it was."""

    reason: str
    file: str | None = None
    key: str = ""
    value: Any = field(default=_NO_VALUE, compare=False)

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.key) if p]
        head = ": ".join(parts)
        got = "" if self.value is _NO_VALUE else f" (got {_short_repr(self.value)})"
        return f"{head}: {self.reason}{got}" if head else f"{self.reason}{got}"


class ConfigError(AccelsimError, ValueError):
    """A configuration, model, allocation or data file (or API argument) is invalid.

    Holds every problem found (validation collects them all before raising); ``str()`` gives
    one line per problem.
    """

    def __init__(self, problems: Sequence[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, reason: str, *, file: str | None = None, key: str = "",
               value: Any = _NO_VALUE) -> "ConfigError":
        """One problem."""
        return cls([Problem(reason, file=file, key=key, value=value)])

    @property
    def file(self) -> str | None:
        return self.problems[0].file if self.problems else None

    @property
    def key(self) -> str:
        return self.problems[0].key if self.problems else ""

    def with_file(self, file: str) -> "ConfigError":
        """The same problems, attributed to ``file`` where they name none."""
        return type(self)([Problem(p.reason, file=p.file or file, key=p.key, value=p.value)
                           for p in self.problems])


class UnsupportedModelError(ConfigError):
    """A Hugging Face ``config.json`` (or model YAML) describes an architecture we cannot model."""


class CheckpointError(ConfigError):
    """A checkpoint lacks a tensor, or a tensor has the wrong shape or dtype."""


class InfeasibleError(AccelsimError, ValueError):
    """No solution satisfies the constraints (for example a memory budget below the minimum)."""


class DoesNotFitError(InfeasibleError):
    """The ``must-fit`` residency policy could not place all weights on chip."""


class SimulationError(AccelsimError, RuntimeError):
    """The simulator met a state it cannot model (a bug or an unsupported graph)."""
