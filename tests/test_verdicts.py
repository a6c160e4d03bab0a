"""Every verdict rule of `accelsim validate`, driven to each of its outcomes by constructed
measurements (accelsim/report/verdicts.py)."""

from __future__ import annotations

import math

import pytest

from accelsim.report import verdicts as V

S, N, I = V.SUPPORTED, V.NOT_SUPPORTED, V.INCONCLUSIVE


def _layers(*certified, eps0=0.0):
    rows = [{"layer": 0, "eps_in_mean": eps0, "certified": 1.0, "unchanged": 1.0}]
    rows += [{"layer": i + 1, "eps_in_mean": 3.0, "certified": c, "unchanged": 0.8}
             for i, c in enumerate(certified)]
    return rows


@pytest.mark.parametrize("rows,tokens,want", [
    (_layers(0.9, 0.8), 256, S),
    (_layers(0.0, 0.1), 256, N),
    (_layers(0.52), 32, I),          # 0.52 over 32 tokens: the interval holds 0.5
    (_layers(), 256, I),             # only the trivially certified layer 0
])
def test_routing_stability_outcomes(rows, tokens, want):
    assert V.routing_stability(rows, tokens).verdict == want


def test_routing_excludes_trivial_layer_and_headline_is_the_verdict_statistic():
    v = V.routing_stability(_layers(0.2, 0.4), 256)
    assert v.value == pytest.approx(0.3)           # layer 0 (1.0) left out
    assert "layer(s) [0] left out" in v.explanation
    # with a quantized router layer 0 is not trivial and counts
    v = V.routing_stability(_layers(0.2, 0.4), 256, router_float=False)
    assert v.value == pytest.approx((1.0 + 0.2 + 0.4) / 3)


def test_wilson_interval_against_hand_value():
    # p = 0.5, n = 100, z = 1.96: (0.5 + 0.019208) / 1.038416 -+ 1.96 * sqrt(0.0025 +
    # 0.00009604) / 1.038416
    lo, hi = V.wilson_interval(0.5, 100)
    half = 1.96 * math.sqrt(0.0025 + 0.00009604) / 1.038416
    assert lo == pytest.approx(0.5 - half, abs=1e-6) and hi == pytest.approx(0.5 + half, abs=1e-6)


@pytest.mark.parametrize("mixed,base,want", [
    (109, {"fp16": 620, "int8": 319}, S),
    (320, {"fp16": 620, "int8": 319}, N),
    (319, {"fp16": 620, "int8": 319}, N),       # as many is not fewer
    (None, {"fp16": 620}, I),
    (109, {"fp16": None, "int8": 319}, I),
    (109, {"fp16": math.inf, "int8": 319}, S),   # fp16 did not fit the largest system
    (math.inf, {"fp16": math.inf}, I),          # nothing fits: nothing to compare
    (400, {"fp16": math.inf, "int8": 319}, N),
])
def test_fewer_devices_outcomes(mixed, base, want):
    assert V.fewer_devices(mixed, base).verdict == want


def test_size_accounting_outcomes():
    paper = {"a": 10.0, "b": 20.0, "c": 30.0, "d": 50.0}
    measured = {
        "default": {"a": 10.02, "b": 20.04, "c": 29.5, "d": 40.0},
        "wide": {"a": 10.5, "b": 20.6, "c": 30.5, "d": 41.0},
    }
    out, best = V.size_accounting(paper, measured)
    assert best == "default"
    assert out["a"].verdict == S and out["b"].verdict == S
    assert out["c"].verdict == I      # 30.0 lies between 29.5 and 30.5: no single match
    assert out["d"].verdict == N      # 50 is outside [40, 41]
    assert "+9.00 GB from the nearest (41.00)" in out["d"].explanation


def test_size_accounting_row_matched_only_by_a_minority_accounting_is_inconclusive():
    paper = {"a": 10.0, "b": 20.0, "c": 31.0}
    measured = {"x": {"a": 10.0, "b": 20.0, "c": 30.0}, "y": {"a": 11.0, "b": 21.0, "c": 31.0}}
    out, best = V.size_accounting(paper, measured)
    assert best == "x" and out["c"].verdict == I and "Accounting(s) y match" in out["c"].explanation


@pytest.mark.parametrize("ups,want", [
    ({1: 2.0, 8: 1.5}, S), ({1: 0.9, 8: 1.0}, N), ({1: 2.0, 8: 0.9}, I), ({1: 1.02}, I),
    ({1: None}, I), ({}, I),
])
def test_speedup_outcomes(ups, want):
    assert V.speedup(ups).verdict == want


@pytest.mark.parametrize("ratio,want", [(2.0, S), (1.0, N), (0.5, N), (1.03, I), (None, I)])
def test_fewer_bytes_outcomes(ratio, want):
    assert V.fewer_bytes(ratio).verdict == want


@pytest.mark.parametrize("best,fp16,want", [
    (20e9, 93e9, S), (85e9, 93e9, N), (20e9, 70e9, N), (79.5e9, 93e9, I), (20e9, 80.5e9, I),
])
def test_fits_one_device_outcomes(best, fp16, want):
    assert V.fits_one_device(best, fp16, 80e9).verdict == want


@pytest.mark.parametrize("sec,pub,want", [(1.0, 100.0, S), (100.0, 100.0, N), (50.0, 100.0, I),
                                          (1.0, None, I)])
def test_overhead_outcomes(sec, pub, want):
    assert V.overhead(sec, pub, source="x").verdict == want


@pytest.mark.parametrize("diffs,want", [
    ([0.02, 0.03, 0.025, 0.02], S), ([-0.02, -0.03, -0.025, -0.02], N),
    ([0.02, -0.02, 0.01, -0.01], I), ([0.5], I),
])
def test_paired_accuracy_outcomes(diffs, want):
    assert V.paired_accuracy(diffs).verdict == want


def test_paired_accuracy_interval_by_hand():
    # mean 0.01, sd 0.01 (values 0, 0.01, 0.02), n = 3: t(0.975, 2) = 4.302653
    v = V.paired_accuracy([0.0, 0.01, 0.02])
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert f"{0.01 - half:+.4f} to {0.01 + half:+.4f}" in v.explanation
    assert v.verdict == I
