"""accelsim.units: quantities with units to base units, and back.

Expected values are written as arithmetic on the unit definitions (1 KiB = 2**10 B,
1 kB = 10**3 B, 1 b = 1/8 B), not taken from the parser.
"""

from __future__ import annotations

import math

import pytest

from accelsim.errors import ConfigError
from accelsim.units import EXAMPLES, KINDS, format_quantity, parse_quantity

DEC = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
BIN = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}


# ----------------------------------------------------------------------------- every kind

@pytest.mark.parametrize("text,kind,expected", [
    # size: bytes
    ("64 KiB", "size", 64 * 2**10),
    ("224 MiB", "size", 224 * 2**20),
    ("1.5 MB", "size", 1.5e6),
    ("80 GB", "size", 80e9),
    ("12 B", "size", 12),
    ("3 bytes", "size", 3),
    ("1 byte", "size", 1),
    ("16 bit", "size", 2),
    ("24 bits", "size", 3),
    ("8 b", "size", 1),
    ("1 Mb", "size", 1e6 / 8),
    ("2 Gibit", "size", 2 * 2**30 / 8),
    # bandwidth: bytes per second
    ("64 GB/s", "bandwidth", 64e9),
    ("1.6 TB/s", "bandwidth", 1.6e12),
    ("3.75 GB/s", "bandwidth", 3.75e9),
    ("1 GiB/s", "bandwidth", 2**30),
    ("8 Gb/s", "bandwidth", 1e9),
    ("500 MB/s", "bandwidth", 500e6),
    # frequency: hertz
    ("400 MHz", "frequency", 400e6),
    ("1.05 GHz", "frequency", 1.05e9),
    ("2 kHz", "frequency", 2e3),
    ("50 Hz", "frequency", 50.0),
    # time: seconds
    ("500 ns", "time", 500e-9),
    ("2 us", "time", 2e-6),
    ("2 µs", "time", 2e-6),
    ("3 ms", "time", 3e-3),
    ("1 s", "time", 1.0),
    ("40 ps", "time", 40e-12),
    # energy: joules
    ("0.2 pJ", "energy", 0.2e-12),
    ("3.1 pJ", "energy", 3.1e-12),
    ("1.3 nJ", "energy", 1.3e-9),
    ("5 fJ", "energy", 5e-15),
    ("2 uJ", "energy", 2e-6),
    ("1 J", "energy", 1.0),
    # energy per byte: joules per byte
    ("10 pJ/B", "energy_per_byte", 10e-12),
    ("160 pJ/byte", "energy_per_byte", 160e-12),
    ("4 pJ/bit", "energy_per_byte", 4e-12 * 8),
    ("4 pJ/b", "energy_per_byte", 4e-12 * 8),
    ("1 nJ/KiB", "energy_per_byte", 1e-9 / 2**10),
    ("1 pJ/kB", "energy_per_byte", 1e-12 / 1e3),
    # power: watts
    ("2 W", "power", 2.0),
    ("700 W", "power", 700.0),
    ("500 mW", "power", 0.5),
    ("1.5 kW", "power", 1500.0),
    ("20 uW", "power", 20e-6),
])
def test_parse_every_kind(text, kind, expected):
    assert parse_quantity(text, kind) == pytest.approx(expected, rel=1e-12)


def test_every_kind_is_covered_and_has_an_example():
    assert set(KINDS) == {"size", "bandwidth", "frequency", "time", "energy",
                          "energy_per_byte", "power"}
    assert set(EXAMPLES) == set(KINDS)


@pytest.mark.parametrize("kind", ["size", "bandwidth", "frequency", "time", "energy",
                                  "energy_per_byte", "power"])
def test_examples_parse(kind):
    # the examples shown in error messages must themselves be valid ('or' separates two)
    for example in EXAMPLES[kind].split(" or "):
        assert parse_quantity(example.strip("'"), kind, clock_hz=1e9) > 0


# ----------------------------------------------------------------------------- prefixes

@pytest.mark.parametrize("prefix", sorted(DEC))
def test_decimal_prefixes_are_powers_of_1000(prefix):
    assert parse_quantity(f"3 {prefix}B", "size") == pytest.approx(3 * DEC[prefix])
    assert parse_quantity(f"3 {prefix}B/s", "bandwidth") == pytest.approx(3 * DEC[prefix])
    assert parse_quantity(f"3 {prefix}b", "size") == pytest.approx(3 * DEC[prefix] / 8)


@pytest.mark.parametrize("prefix", sorted(BIN))
def test_binary_prefixes_are_powers_of_1024(prefix):
    assert parse_quantity(f"3 {prefix}B", "size") == pytest.approx(3 * BIN[prefix])
    assert parse_quantity(f"3 {prefix}B/s", "bandwidth") == pytest.approx(3 * BIN[prefix])


def test_decimal_and_binary_differ():
    assert parse_quantity("1 MB", "size") == 10**6
    assert parse_quantity("1 MiB", "size") == 2**20
    assert parse_quantity("224 MiB", "size") - parse_quantity("224 MB", "size") == (
        224 * (2**20 - 10**6))
    # upper-case K is accepted as decimal kilo for sizes
    assert parse_quantity("1 KB", "size") == parse_quantity("1 kB", "size") == 1000


# ----------------------------------------------------------------------------- per-cycle units

@pytest.mark.parametrize("text,kind,clock,expected", [
    ("128 B/cycle", "bandwidth", 1e9, 128 * 1e9),
    ("128 B / cycle", "bandwidth", 1e9, 128 * 1e9),
    ("16 B/cycle", "bandwidth", 500e6, 16 * 500e6),
    ("1 KiB/cycle", "bandwidth", 1.05e9, 2**10 * 1.05e9),
    ("125 B/cyc", "bandwidth", 400e6, 125 * 400e6),
    ("500 cycles", "time", 1e9, 500 / 1e9),
    ("1 cycle", "time", 400e6, 1 / 400e6),
    ("20 cyc", "time", 2e9, 20 / 2e9),
])
def test_per_cycle_units_use_the_clock(text, kind, clock, expected):
    assert parse_quantity(text, kind, clock_hz=clock) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("text,kind", [("128 B/cycle", "bandwidth"), ("100 cycles", "time")])
@pytest.mark.parametrize("clock", [None, 0.0])
def test_per_cycle_units_need_a_clock(text, kind, clock):
    with pytest.raises(ConfigError, match="clock"):
        parse_quantity(text, kind, clock_hz=clock)


def test_per_second_units_ignore_the_clock():
    assert parse_quantity("64 GB/s", "bandwidth", clock_hz=1e9) == 64e9
    assert parse_quantity("5 ns", "time", clock_hz=1e9) == pytest.approx(5e-9)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("text,kind", [
    ("5 furlongs", "size"),
    ("64 GB", "bandwidth"),          # a size where a bandwidth is wanted
    ("64 GB/s", "size"),             # a bandwidth where a size is wanted
    ("400 MHz", "size"),
    ("1 GHz/s", "frequency"),
    ("10 pJ", "energy_per_byte"),
    ("10 pJ/B", "energy"),
    ("2 W/s", "power"),
    ("3 parsecs", "time"),
    ("1 KiHz", "frequency"),
    ("64 KiB extra", "size"),
    ("KiB", "size"),
    ("", "size"),
    ("   ", "size"),
    ("1,5 GB", "size"),
])
def test_bad_units_raise(text, kind):
    with pytest.raises(ConfigError) as info:
        parse_quantity(text, kind)
    problem = info.value.problems[0]
    assert problem.value == text                      # the offending value is reported
    assert EXAMPLES[kind] in problem.reason           # with an example of a good one


@pytest.mark.parametrize("text", ["nan MB", "NaN", "nan", "inf GB", "-inf B", "Infinity B",
                                  "1e400 B"])
def test_nan_and_infinity_raise(text):
    with pytest.raises(ConfigError, match="finite"):
        parse_quantity(text, "size")


def test_overflow_after_scaling_raises():
    with pytest.raises(ConfigError, match="too large"):
        parse_quantity("1e300 PB", "size")


@pytest.mark.parametrize("value", [5, 5.0, 0, True, False, None, [], {}, "5", "1e3"])
def test_bare_numbers_and_non_strings_raise(value):
    with pytest.raises(ConfigError):
        parse_quantity(value, "size")


@pytest.mark.parametrize("value", [5, 2.5])
def test_bare_numbers_ask_for_the_unit(value):
    with pytest.raises(ConfigError, match="write the unit too"):
        parse_quantity(value, "bandwidth")


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown quantity kind"):
        parse_quantity("1 B", "volume")


def test_errors_name_no_file_or_key():
    with pytest.raises(ConfigError) as info:
        parse_quantity("1 parsec", "size")
    assert info.value.problems[0].file is None and info.value.problems[0].key == ""


# ----------------------------------------------------------------------------- number forms

@pytest.mark.parametrize("text,expected", [
    ("1e3 B", 1e3), ("2.5e-1 KiB", 0.25 * 2**10), (".5 KiB", 512), ("+2 B", 2), ("7. B", 7),
    ("  64   KiB  ", 64 * 2**10), ("64KiB", 64 * 2**10),
])
def test_number_forms(text, expected):
    assert parse_quantity(text, "size") == pytest.approx(expected)


def test_sign_is_kept_for_the_caller_to_check():
    # range rules (> 0) belong to the field, which knows its name; the parser keeps the sign
    assert parse_quantity("-3 GB/s", "bandwidth") == -3e9
    assert parse_quantity("0 W", "power") == 0.0


# ----------------------------------------------------------------------------- formatting

@pytest.mark.parametrize("value,kind,text", [
    (234881024, "size", "224 MiB"),
    (64 * 2**10, "size", "64 KiB"),
    (1.5 * 2**30, "size", "1.5 GiB"),
    (80e9, "size", "80 GB"),          # a multiple of 1 KiB, but not a round number of GiB
    (128e9, "size", "128 GB"),
    (1e6, "size", "1 MB"),
    (12, "size", "12 B"),
    (1.6e12, "bandwidth", "1.6 TB/s"),
    (4e8, "frequency", "400 MHz"),
    (700, "power", "700 W"),
    (5e-7, "time", "500 ns"),
    (2e-13, "energy", "200 fJ"),
    (1.25e-12, "energy_per_byte", "1.25 pJ/B"),
])
def test_format_quantity(value, kind, text):
    assert format_quantity(value, kind) == text


@pytest.mark.parametrize("value,kind", [
    (234881024, "size"), (80e9, "size"), (3 * 2**40, "size"), (12345, "size"),
    (3.35e12, "bandwidth"), (614e9, "bandwidth"), (1.05e9, "frequency"), (1830e6, "frequency"),
    (5e-7, "time"), (0.2e-12, "energy"), (160e-12, "energy_per_byte"), (673.6, "power"),
])
def test_format_then_parse_round_trips(value, kind):
    back = parse_quantity(format_quantity(value, kind), kind)
    assert math.isclose(back, value, rel_tol=1e-3)


@pytest.mark.parametrize("text,kind,hint", [
    ("1.6 TB", "bandwidth", "'1.6 TB' is a size, not a bandwidth; did you mean '1.6 TB/s'?"),
    ("64 GB/s", "size", "'64 GB/s' is a bandwidth, not a size; did you mean '64 GB'?"),
    ("2 pJ", "energy_per_byte", "did you mean '2 pJ/B'?"),
    ("3 W", "time", "'3 W' is a power, not a time"),
])
def test_wrong_dimension_says_what_it_is_and_what_was_meant(text, kind, hint):
    from accelsim.errors import ConfigError
    from accelsim.units import parse_quantity
    with pytest.raises(ConfigError) as e:
        parse_quantity(text, kind)
    assert hint in str(e.value) and len(e.value.problems) == 1
