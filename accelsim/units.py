"""Quantities with units, as written in YAML, to base units.

Base units inside accelsim: bytes, seconds, hertz, joules, watts, bytes/second,
joules/byte. Decimal prefixes are powers of 1000 (``MB``), binary ones powers of 1024
(``MiB``). A lower-case ``b`` or ``bit`` means bits.

Why not pint: pint treats bytes as dimensionless and ``cycle`` as an angle, so it cannot
tell ``'224 MiB'`` from ``'224'`` or ``'128 B/cycle'`` from ``'128 B'``, and building its
registry takes most of a second at every CLI start. The grammar we need is small and
table-driven here.

Examples
--------
>>> parse_quantity("224 MiB", "size")
234881024.0
>>> parse_quantity("1.6 TB/s", "bandwidth")
1600000000000.0
>>> parse_quantity("400 MHz", "frequency")
400000000.0
>>> parse_quantity("0.2 pJ", "energy")
2e-13
>>> parse_quantity("128 B/cycle", "bandwidth", clock_hz=1e9)
128000000000.0
>>> parse_quantity("500 cycles", "time", clock_hz=1e9)
5e-07
"""

from __future__ import annotations

import math
import re
from typing import Literal

from .errors import ConfigError

__all__ = ["parse_quantity", "parse_any", "format_quantity", "KINDS", "EXAMPLES",
           "QUANTITY_PATTERN"]

Kind = Literal["size", "bandwidth", "frequency", "time", "energy", "energy_per_byte", "power"]

_DEC = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BIN = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_SMALL = {"": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15,
          "k": 1e3, "M": 1e6, "G": 1e9}


def _size_units() -> dict[str, float]:
    units: dict[str, float] = {}
    for prefix, f in {**_DEC, **_BIN}.items():
        units[f"{prefix}B"] = f
        units[f"{prefix}b"] = f / 8.0
        units[f"{prefix}bit"] = f / 8.0
    units.update({"byte": 1.0, "bytes": 1.0, "bits": 1 / 8.0})
    return units


_SIZE = _size_units()
_FREQ = {f"{p}Hz": f for p, f in _DEC.items() if p != "K"}
_TIME = {f"{p}s": f for p, f in _SMALL.items() if p in ("", "m", "u", "µ", "n", "p")}
_ENERGY = {f"{p}J": f for p, f in _SMALL.items()}
_POWER = {f"{p}W": f for p, f in _SMALL.items() if p in ("", "m", "u", "k")}
_CYCLES = ("cycle", "cycles", "cyc")

KINDS: tuple[str, ...] = ("size", "bandwidth", "frequency", "time", "energy",
                          "energy_per_byte", "power")

#: One example per kind, used in error messages and the JSON schema.
EXAMPLES: dict[str, str] = {
    "size": "'64 KiB'",
    "bandwidth": "'64 GB/s' or '128 B/cycle'",
    "frequency": "'400 MHz'",
    "time": "'500 ns' or '100 cycles'",
    "energy": "'0.2 pJ'",
    "energy_per_byte": "'10 pJ/B'",
    "power": "'2 W'",
}

_NOUN = {
    "size": "a size", "bandwidth": "a bandwidth", "frequency": "a frequency",
    "time": "a time", "energy": "an energy", "energy_per_byte": "an energy per byte",
    "power": "a power",
}

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_RE = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-zµ]+(?:\s*/\s*[A-Za-z]+)?)\s*$")

#: A loose regular expression for "number, space, unit", for editors (JSON schema).
QUANTITY_PATTERN = rf"^\s*{_NUMBER}\s*[A-Za-zµ]+(\s*/\s*[A-Za-z]+)?\s*$"


def _fail(kind: str, text: object, why: str = "") -> ConfigError:
    reason = f"must be {_NOUN[kind]} like {EXAMPLES[kind]}"
    if why:
        reason += f"; {why}"
    return ConfigError.single(reason, value=text)


def parse_quantity(text: object, kind: str, *, clock_hz: float | None = None) -> float:
    """Parse ``text`` such as ``'224 MiB'`` into the base unit of ``kind``.

    Parameters
    ----------
    text : str
        A number followed by a unit. Bare numbers are refused: the unit is part of the value.
    kind : {'size', 'bandwidth', 'frequency', 'time', 'energy', 'energy_per_byte', 'power'}
        What the value measures; its unit must match.
    clock_hz : float, optional
        Needed for per-cycle units (``'128 B/cycle'``, ``'100 cycles'``).

    Returns
    -------
    float
        The value in bytes, bytes/s, Hz, s, J, J/byte or W. It may be negative or zero: range
        checks belong to the caller, which knows the field.

    Raises
    ------
    ConfigError
        Unknown unit, wrong dimension, missing unit, NaN or infinity. The error names no file
        or key; callers add them.
    """
    return _parse(text, kind, clock_hz, True)


def _parse(text: object, kind: str, clock_hz: float | None, hint: bool) -> float:
    if kind not in KINDS:
        raise ValueError(f"unknown quantity kind {kind!r}")
    if isinstance(text, bool) or not isinstance(text, str):
        raise _fail(kind, text, "write the unit too" if isinstance(text, (int, float)) else "")
    m = _RE.match(text)
    if not m:
        low = text.strip().lower()
        if low.lstrip("+-") in ("nan", "inf", "infinity") or low.split(" ")[0].lstrip("+-") in (
                "nan", "inf", "infinity"):
            raise _fail(kind, text, "must be finite")
        raise _fail(kind, text)
    number = float(m.group(1))
    unit = re.sub(r"\s+", "", m.group(2))
    if not math.isfinite(number):
        raise _fail(kind, text, "must be finite")
    try:
        factor = _unit_factor(kind, unit, clock_hz, text)
    except ConfigError:
        why = _dimension_hint(kind, m.group(1), unit) if hint else None
        if why is None:
            raise
        raise _fail(kind, text, why) from None
    value = number * factor
    if not math.isfinite(value):
        raise _fail(kind, text, "too large")
    return value


def _unit_factor(kind: str, unit: str, clock_hz: float | None, text: str) -> float:
    num, _, den = unit.partition("/")

    def need_clock() -> float:
        if not clock_hz:
            raise _fail(kind, text, "per-cycle units need the chip's clock")
        return clock_hz

    f: float | None = None
    if kind == "size" and not den:
        f = _SIZE.get(num)
    elif kind == "frequency" and not den:
        f = _FREQ.get(num)
    elif kind == "time" and not den:
        f = _TIME.get(num)
        if f is None and num in _CYCLES:
            f = 1.0 / need_clock()
    elif kind == "energy" and not den:
        f = _ENERGY.get(num)
    elif kind == "power" and not den:
        f = _POWER.get(num)
    elif kind == "bandwidth" and den:
        s = _SIZE.get(num)
        if s is not None:
            if den == "s":
                f = s
            elif den in _CYCLES:
                f = s * need_clock()
    elif kind == "energy_per_byte" and den:
        e = _ENERGY.get(num)
        s = _SIZE.get(den) if den not in ("byte",) else 1.0
        if e is not None and s is not None:
            f = e / s
    if f is None:
        raise _fail(kind, text, f"unknown unit '{unit}'")
    return f


def parse_any(text: object) -> tuple[float, str] | None:
    """``(value in base units, kind)`` of a quantity of whatever kind ``text`` is (per-cycle
    units excluded: they need a clock), or None when it is none.

    >>> parse_any("1.6 TB")
    (1600000000000.0, 'size')
    >>> parse_any("2 W")
    (2.0, 'power')
    >>> parse_any("fast") is None
    True
    """
    for kind in KINDS:
        try:
            return _parse(text, kind, None, False), kind
        except ConfigError:
            continue
    return None


def _dimension_hint(kind: str, number: str, unit: str) -> str | None:
    """For a unit of the wrong dimension: what it is, and the value the writer most likely
    meant ("'1.6 TB' is a size; did you mean '1.6 TB/s'?")."""
    got = parse_any(f"{number} {unit}")
    if got is None or got[1] == kind:
        return None
    other = got[1]
    num = unit.partition("/")[0]
    guess = None
    if kind == "bandwidth" and other == "size":
        guess = f"{number} {unit}/s"
    elif kind == "size" and other == "bandwidth":
        guess = f"{number} {num}"
    elif kind == "energy_per_byte" and other == "energy":
        guess = f"{number} {unit}/B"
    elif kind == "energy" and other == "energy_per_byte":
        guess = f"{number} {num}"
    text = f"'{number} {unit}' is {_NOUN[other]}, not {_NOUN[kind]}"
    return text + (f"; did you mean '{guess}'?" if guess else "")


def format_quantity(value: float, kind: str) -> str:
    """A readable string for a base-unit value (the inverse of :func:`parse_quantity`).

    >>> format_quantity(234881024, "size")
    '224 MiB'
    >>> format_quantity(1.6e12, "bandwidth")
    '1.6 TB/s'
    >>> format_quantity(4e8, "frequency")
    '400 MHz'
    """
    if kind == "size":
        # Binary only when the largest binary prefix gives a round number: '80 GB' is a
        # multiple of 1 KiB but must not print as '7.8125e+07 KiB'.
        big = next((p for p in ("Ti", "Gi", "Mi", "Ki") if value >= _BIN[p]), None)
        if big is not None and (value / _BIN[big]) == round(value / _BIN[big], 3):
            return f"{value / _BIN[big]:g} {big}B"
        for p in ("T", "G", "M", "k"):
            if value >= _DEC[p]:
                return f"{value / _DEC[p]:.4g} {p}B"
        return f"{value:g} B"
    base = {"bandwidth": ("B/s", _DEC), "frequency": ("Hz", _DEC), "power": ("W", None),
            "time": ("s", None), "energy": ("J", None), "energy_per_byte": ("J/B", None)}
    unit, table = base[kind]
    if table is _DEC:
        for p in ("P", "T", "G", "M", "k"):
            if abs(value) >= _DEC[p]:
                return f"{value / _DEC[p]:.4g} {p}{unit}"
        return f"{value:.4g} {unit}"
    for p, f in (("", 1.0), ("m", 1e-3), ("u", 1e-6), ("n", 1e-9), ("p", 1e-12), ("f", 1e-15)):
        if abs(value) >= f:
            return f"{value / f:.4g} {p}{unit}"
    return f"{value:.4g} {unit}"
