"""The router-norm method of Chowdhury et al. (ICLR 2026), exactly as specified.

"Efficient Quantization of Mixture-of-Experts with Theoretical Generalization Guarantees"
(M. N. R. Chowdhury, K. El Maghraoui, H. Tsai, N. Wang, G. W. Burr, L. Liu, M. Wang;
arXiv:2604.06515). Experts whose router row changed *least* during fine-tuning capture rare
but critical features and get the most bits; an expert whose largest intra-neuron variance
is far above others' is promoted so that it is not quantized coarsely.

Two pure functions:

* :func:`expert_order` ranks the experts of each layer, highest precision first: a stable
  ascending sort of the scores, then (optionally) one promotion pass by max variance.
* :func:`assign_bits` turns the rankings into bit-widths for a target average, with two or
  three levels (the three-level counts rule keeps the average while spreading experts to the
  outer levels). A lowest level of 0 (e.g. 4/2/0) prunes the experts ranked last, by the same
  rule as any lowest level, as the reference code allows.

The exact rules are in ``docs/allocation.md``; they reproduce the reference code
(``bitallocutils.py`` of the authors' repository) but for the sort, which is stable here
(the reference uses ``torch.sort``, whose tie order is unspecified).

Examples
--------
>>> order = expert_order([[0.3, 0.1, 0.2, 0.4]])
>>> order
[[1, 2, 0, 3]]
>>> assign_bits(order, 2.5, (3, 2)).tolist()
[[2, 3, 3, 2]]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["expert_order", "assign_bits", "three_level_counts", "check_levels"]


def _as_matrix(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ConfigError.single("must be a 2-D array [layers, experts]", key=name,
                                 value=a.shape)
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ConfigError.single("must be finite (no NaN or inf)", key=name,
                                 value=f"layer {bad[0]}, expert {bad[1]}")
    return a


def expert_order(scores, max_variance=None, zeta: float = 3.0) -> list[list[int]]:
    """Experts of each layer, highest precision first.

    Parameters
    ----------
    scores : array-like [layers, experts]
        Lower score = more bits (the paper passes the router-norm change).
    max_variance : array-like [layers, experts], optional
        Max intra-neuron variance of each expert's ``w1``. When given, one promotion pass
        runs over the experts ``j`` in reverse sorted order: among the positions ``k`` of the
        current order ``c`` with ``zeta * v[c[k]] < v[j]``, if any, and ``j`` stands after the
        first of them, ``j`` moves to that first position.
    zeta : float
        Promotion threshold ratio (the paper uses 3).

    Returns
    -------
    list of list of int
        One permutation of ``range(experts)`` per layer.

    Examples
    --------
    >>> expert_order([[0.1, 0.2, 0.3]], max_variance=[[1.0, 1.0, 10.0]])
    [[2, 0, 1]]
    """
    s = _as_matrix(scores, "scores")
    if not (np.isfinite(zeta) and zeta > 0):
        raise ConfigError.single("zeta must be a positive number", key="zeta", value=zeta)
    orders = [np.argsort(row, kind="stable").tolist() for row in s]
    if max_variance is None:
        return orders
    v = _as_matrix(max_variance, "max_variance")
    if v.shape != s.shape:
        raise ConfigError.single(f"must have the shape of the scores {s.shape}",
                                 key="max_variance", value=v.shape)
    return [_promote(order, row, float(zeta)) for order, row in zip(orders, v)]


def _promote(order: list[int], v: np.ndarray, zeta: float) -> list[int]:
    c = list(order)
    for j in reversed(order):
        first = next((k for k, e in enumerate(c) if zeta * v[e] < v[j]), None)
        if first is not None:
            pos = c.index(j)
            if pos > first:
                c.pop(pos)
                c.insert(first, j)
    return c


def check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    """Bit levels sorted high to low; 1 to 3 distinct integers in 0..16, three levels
    equally spaced. 0 bits means the expert is pruned; it can only be the lowest of two or
    three levels (one level of 0 would prune every expert).

    >>> check_levels([1, 3, 2])
    (3, 2, 1)
    >>> check_levels([0, 4, 2])
    (4, 2, 0)
    """
    try:
        lv = [int(b) for b in levels]
    except (TypeError, ValueError):
        raise ConfigError.single("levels must be integers", key="levels",
                                 value=levels) from None
    if any(float(b) != float(o) for b, o in zip(lv, levels)):
        raise ConfigError.single("levels must be integers", key="levels", value=list(levels))
    if not 1 <= len(lv) <= 3 or len(set(lv)) != len(lv):
        raise ConfigError.single("give 1, 2 or 3 distinct bit levels, like 3,2,1",
                                 key="levels", value=list(levels))
    if any(not 0 <= b <= 16 for b in lv):
        raise ConfigError.single("bit levels must be in 0..16 (0 = pruned)", key="levels",
                                 value=lv)
    if lv == [0]:
        raise ConfigError.single("a single level of 0 bits would prune every expert; give "
                                 "0 as the lowest of two or three levels, like 4,2,0",
                                 key="levels", value=lv)
    lv = sorted(lv, reverse=True)
    if len(lv) == 3 and lv[0] - lv[1] != lv[1] - lv[2]:
        raise ConfigError.single(
            f"three levels must be equally spaced (high - mid = {lv[0] - lv[1]}, "
            f"mid - low = {lv[1] - lv[2]})", key="levels", value=lv)
    return tuple(lv)


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


def three_level_counts(num_experts: int, avg_bits: float,
                       levels: Sequence[int]) -> tuple[int, int, int]:
    """``(n_low, n_mid, n_high)`` of the paper's three-level rule.

    Examples
    --------
    >>> three_level_counts(8, 2.125, (3, 2, 1))
    (2, 3, 3)
    """
    high, mid, low = check_levels(levels)
    E = int(num_experts)
    if avg_bits >= mid:
        n_high = round(_clip01((avg_bits - mid) / (high - mid)) * E)
        n_mid, n_low = E - n_high, 0
    else:
        n_mid = round(_clip01((avg_bits - low) / (mid - low)) * E)
        n_high, n_low = 0, E - n_mid
    base_high = n_high
    D = high - low
    region = "high" if avg_bits > high - D / 3 else "mid" if avg_bits >= high - 2 * D / 3 \
        else "low"
    while n_mid >= 2 and region != "low":
        nl, nm, nh = n_low + 1, n_mid - 2, n_high + 1
        if region == "mid" and nm < nh - base_high:
            break
        n_low, n_mid, n_high = nl, nm, nh
    return n_low, n_mid, n_high


def _counts(num_experts: int, avg_bits: float, levels: tuple[int, ...]) -> list[int]:
    """Experts per level, in the order of ``levels`` (high first)."""
    if len(levels) == 1:
        return [num_experts]
    if len(levels) == 2:
        high, low = levels
        n_high = round(_clip01((avg_bits - low) / (high - low)) * num_experts)
        return [n_high, num_experts - n_high]
    n_low, n_mid, n_high = three_level_counts(num_experts, avg_bits, levels)
    return [n_high, n_mid, n_low]


def _check_order(order, num_experts: int | None = None) -> list[list[int]]:
    rows = [list(map(int, r)) for r in order]
    if not rows:
        raise ConfigError.single("order has no layers", key="order")
    E = len(rows[0]) if num_experts is None else num_experts
    for i, r in enumerate(rows):
        if sorted(r) != list(range(E)):
            raise ConfigError.single(f"each layer's order must be a permutation of "
                                     f"0..{E - 1}", key=f"order[{i}]", value=r)
    return rows


def assign_bits(order, avg_bits: float, levels: Sequence[int]) -> np.ndarray:
    """Bits per (layer, expert id) from per-layer orders (highest precision first).

    Two levels ``(high, low)``: the first ``round(clip((avg - low) / (high - low)) * E)``
    experts get ``high``. Three levels: :func:`three_level_counts`; the first ``n_high``
    get ``high``, the next ``n_mid`` get ``mid``, the rest ``low``. One level: every expert
    at that level. Rounding is Python's ``round`` (half to even).

    Examples
    --------
    >>> assign_bits([[0, 1, 2, 3, 4, 5, 6, 7]], 1.75, (3, 2, 1)).tolist()
    [[3, 3, 2, 2, 1, 1, 1, 1]]
    """
    lv = check_levels(levels)
    if not np.isfinite(avg_bits):
        raise ConfigError.single("average bits must be a finite number", key="avg_bits",
                                 value=avg_bits)
    rows = _check_order(order)
    E = len(rows[0])
    counts = _counts(E, float(avg_bits), lv)
    ranked = np.repeat(np.array(lv, dtype=np.int64), counts)
    out = np.empty((len(rows), E), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, r] = ranked
    return out
