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
import re
import reprlib
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


#: Problems of one kind (same file, reason and key with list indices as ``[*]``) shown in
#: full before the rest are summed up in one "... and N more like it" line.
MAX_SIMILAR = 3
#: Lines one ConfigError shows at most; the rest are counted in a last line.
MAX_PROBLEMS = 20


class _BoundedRepr(reprlib.Repr):
    """``reprlib`` with limits on every container and on huge integers, so that an error
    message never walks (or ``repr``s) more than a few dozen elements of a value."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxtuple = self.maxlist = self.maxarray = self.maxset = self.maxfrozenset = 6
        self.maxdeque = self.maxdict = 6
        self.maxstring = self.maxother = 60
        self.maxlong = 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:   # repr() of an int over 4,300 digits raises
            return f"<integer of {x.bit_length():,} bits>"
        return super().repr_int(x, level)

    def repr_ndarray(self, x: Any, level: int) -> str:
        if x.size > 8:
            return f"<array of shape {tuple(x.shape)}, dtype {x.dtype}>"
        return self.repr_list(x.tolist(), level)

    def repr_instance(self, x: Any, level: int) -> str:
        # objects of other types: only small ones are repr()ed
        try:
            size = len(x)
        except Exception:
            size = 0
        if size > 64:
            return f"<{type(x).__name__} of {size:,} items>"
        return super().repr_instance(x, level)


_REPR = _BoundedRepr()
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _short_repr(value: Any, limit: int = 60) -> str:
    """A bounded ``repr``: never longer than ``limit`` characters, and never built by walking
    more than a few elements of a container (an alias bomb or a huge array stays cheap).

    >>> _short_repr(list(range(10**6)))
    '[0, 1, 2, 3, 4, 5, ...]'
    >>> _short_repr(10**5000)
    '<integer of 16,610 bits>'
    """
    try:
        text = _REPR.repr(value)
    except Exception:  # a broken __repr__ must not hide the problem
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str) -> str:
    """``text`` with control characters (newlines in file names, ...) escaped, so that one
    problem is always one line.

    >>> one_line("a" + chr(10) + "b") == "a" + chr(92) + "nb"
    True
    """
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], text)


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
        return one_line(f"{head}: {self.reason}{got}" if head else f"{self.reason}{got}")


def _kind_of(p: Problem) -> tuple:
    return (p.file, p.reason, re.sub(r"\[\d+\]", "[*]", p.key))


def group_problems(problems: Sequence[Problem]) -> tuple[Problem, ...]:
    """Problems capped for reading: at most :data:`MAX_SIMILAR` of one kind (same file and
    reason, key equal up to list indices), then one "... and N more like it" line; at most
    :data:`MAX_PROBLEMS` lines in all.

    >>> ps = [Problem("must be <= 16", file="a.yaml", key=f"x[{i}]") for i in range(1024)]
    >>> [str(p) for p in group_problems(ps)]  # doctest: +NORMALIZE_WHITESPACE
    ['a.yaml: x[0]: must be <= 16', 'a.yaml: x[1]: must be <= 16',
     'a.yaml: x[2]: must be <= 16', 'a.yaml: x[*]: ... and 1,021 more like it']
    """
    counts: dict[tuple, int] = {}
    for p in problems:
        k = _kind_of(p)
        counts[k] = counts.get(k, 0) + 1
    shown: dict[tuple, int] = {}
    out: list[Problem] = []
    for p in problems:
        k = _kind_of(p)
        n = shown.get(k, 0)
        shown[k] = n + 1
        if n < MAX_SIMILAR:
            out.append(p)
        elif n == MAX_SIMILAR:
            out.append(Problem(f"... and {counts[k] - MAX_SIMILAR:,} more like it",
                               file=p.file, key=k[2]))
    if len(out) > MAX_PROBLEMS:
        rest = len(out) - (MAX_PROBLEMS - 1)
        out = out[:MAX_PROBLEMS - 1] + [Problem(f"... and {rest:,} more problems",
                                                file=out[0].file)]
    return tuple(out)


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
        self.problems: tuple[Problem, ...] = group_problems(list(problems))
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
