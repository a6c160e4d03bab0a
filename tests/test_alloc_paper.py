"""The paper's method (accelsim.alloc.paper): every rule of the issue, checked on hand cases.

Expected values are worked out by hand from the written rules (issue 5), not by the code.
"""

from __future__ import annotations

import numpy as np
import pytest

from accelsim.alloc.paper import assign_bits, check_levels, expert_order, three_level_counts
from accelsim.errors import ConfigError

IDENTITY8 = [list(range(8))]


@pytest.mark.parametrize("avg, counts", [
    # (n_low, n_mid, n_high) for E = 8, levels 3/2/1: the worked example, verbatim
    (1.5, (4, 4, 0)), (1.75, (4, 2, 2)), (2.0, (2, 4, 2)), (2.125, (2, 3, 3)),
    (2.25, (2, 2, 4)), (2.5, (2, 0, 6)), (2.75, (1, 0, 7)), (3.0, (0, 0, 8)),
])
def test_three_level_worked_example(avg, counts):
    assert three_level_counts(8, avg, (3, 2, 1)) == counts
    bits = assign_bits(IDENTITY8, avg, (3, 2, 1))[0]
    n_low, n_mid, n_high = counts
    # first n_high experts of the order high, then mid, then low
    assert bits.tolist() == [3] * n_high + [2] * n_mid + [1] * n_low
    # the moves keep the base split's average: mean bits = (n_h*3 + n_m*2 + n_l)/8
    assert bits.mean() == pytest.approx((3 * n_high + 2 * n_mid + n_low) / 8)


def test_three_level_levels_given_in_any_order():
    assert three_level_counts(8, 2.125, (1, 3, 2)) == (2, 3, 3)


@pytest.mark.parametrize("avg, n_high", [
    (1.0, 0), (3.0, 8), (0.5, 0), (9.0, 8),       # clipped
    (1.25, 1),                                    # kappa 1/8 -> 1
    (1.125, 0),                                   # kappa*E = 0.5 -> round half to even = 0
    (1.375, 2),                                   # 1.5 -> 2
    (1.625, 2),                                   # 2.5 -> 2 (half to even)
    (2.0, 4),
])
def test_two_level_rule(avg, n_high):
    bits = assign_bits(IDENTITY8, avg, (3, 1))[0]
    assert bits.tolist() == [3] * n_high + [1] * (8 - n_high)


def test_bits_are_indexed_by_expert_id():
    # order (2, 0, 1): two high experts (kappa = 2/3 of 3) are experts 2 and 0
    assert assign_bits([[2, 0, 1]], 7 / 3, (3, 1)).tolist() == [[3, 1, 3]]


def test_one_level_gives_everyone_that_level():
    assert assign_bits([[1, 0]], 2.0, (4,)).tolist() == [[4, 4]]


@pytest.mark.parametrize("levels", [(4, 2, 1), (8, 4, 3), (5, 4, 1)])
def test_unequal_three_level_spacing_is_an_error(levels):
    with pytest.raises(ConfigError, match="equally spaced"):
        assign_bits(IDENTITY8, 2.0, levels)


@pytest.mark.parametrize("levels", [(), (3, 3), (4, 3, 2, 1), (0,), (-1, 1), (17, 1), (2.5, 1)])
def test_bad_levels(levels):
    with pytest.raises(ConfigError):
        check_levels(levels)


def test_order_must_be_permutations():
    with pytest.raises(ConfigError, match="permutation"):
        assign_bits([[0, 0, 1]], 2, (3, 1))


def test_stable_ascending_sort():
    assert expert_order([[1.0, 0.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0]]) == [[1, 3, 0, 2],
                                                                         [3, 2, 1, 0]]


@pytest.mark.parametrize("v, zeta, expected", [
    # j=3 (v=10): 3*1 < 10 at positions 0..2 -> moves to 0
    ([1, 1, 1, 10], 3.0, [3, 0, 1, 2]),
    # j=1 (v=10) moves ahead of expert 0 (3*1 < 10); nothing else qualifies
    ([1, 10, 2], 3.0, [1, 0, 2]),
    # j=2 (v=20) moves to 0; then j=1 (v=4) sees 3*1 < 4 at position 1 of [2,0,1,3] -> 1
    ([1, 4, 20, 2], 3.0, [2, 1, 0, 3]),
    # zeta 5: j=2 still first (5 < 20); j=1 (v=4): no 5*v < 4 -> stays
    ([1, 4, 20, 2], 5.0, [2, 0, 1, 3]),
    # j=0 has K = {1} but stands before it: no move
    ([10, 1], 3.0, [0, 1]),
    # strict inequality: 3*1 < 3 is false
    ([1, 3], 3.0, [0, 1]),
])
def test_max_variance_promotion(v, zeta, expected):
    scores = [list(np.arange(len(v)) / 10)]
    assert expert_order(scores, [v], zeta) == [expected]


def test_promotion_runs_per_layer():
    scores = [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]
    assert expert_order(scores, [[1, 1, 10], [1, 1, 1]]) == [[2, 0, 1], [0, 1, 2]]


@pytest.mark.parametrize("bad, match", [
    ([[1.0, np.nan]], "finite"), ([1.0, 2.0], "2-D"), ([[]], "2-D"),
])
def test_bad_scores(bad, match):
    with pytest.raises(ConfigError, match=match):
        expert_order(bad)


def test_variance_shape_must_match():
    with pytest.raises(ConfigError, match="shape"):
        expert_order([[1, 2, 3]], [[1, 2]])


def test_zeta_must_be_positive():
    with pytest.raises(ConfigError, match="zeta"):
        expert_order([[1, 2]], [[1, 2]], zeta=0)
