"""The numba residency fill and phase scheduler against plain-Python references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from accelsim.sim.residency import fill_levels
from accelsim.sim.schedule import (
    k_slices,
    noc_cost,
    schedule,
    split_k_time,
    split_share,
    wrap_around,
)


def fill_reference(order, sizes, kinds, free, allow):
    frac = np.zeros((len(sizes), len(free)))
    left = list(free)
    for i in order:
        if sizes[i] <= 0:
            frac[i, next(lv for lv in range(len(free)) if allow[kinds[i], lv])] = 1.0
            continue
        rest = sizes[i]
        for lv in range(len(free)):
            if rest <= 0 or not allow[kinds[i], lv] or left[lv] <= 0:
                continue
            take = min(rest, left[lv])
            frac[i, lv] = take / sizes[i]
            left[lv] -= take
            rest -= take
    return frac


def test_fill_levels_matches_reference():
    rng = np.random.default_rng(2)
    for _ in range(50):
        n, nl = int(rng.integers(1, 30)), int(rng.integers(1, 5))
        sizes = rng.choice([0.0, 1.0, 10.0, 100.0, 1000.0], size=n)
        kinds = rng.integers(0, 2, size=n)
        free = rng.uniform(0, 2000, size=nl)
        allow = rng.random((2, nl)) < 0.7
        allow[:, -1] = True
        order = rng.permutation(n)
        assert np.allclose(fill_levels(order, sizes, kinds, free, allow),
                           fill_reference(order, sizes, kinds, free, allow))


def split_with(ks, t, cols, kt, c, rb, ra, topo, link, hop):
    """Longest piece plus reduction with ``ks`` K-slices (a power of two), written out."""
    if ks == 1:
        return math.ceil(cols / min(c, cols)) / cols * t
    r = int(math.log2(ks))
    s = min(c // ks, cols)
    per = math.ceil(cols / s)
    piece = per / cols * math.ceil(kt / ks) / kt * t
    if topo == 3:
        return piece + (ks - 1) * cols * rb / link + r * per * ra + r * hop
    return piece + r * per * (rb / link + ra) + (r if topo == 2 else ks - 1) * hop


def split_k_reference(t, cols, kt, c, rb, ra, topo, link, hop):
    """The best of every power-of-two K-slice count that fits ``kt`` and ``c``."""
    return min(split_with(2 ** r, t, cols, kt, c, rb, ra, topo, link, hop) for r in range(40)
               if 2 ** r == 1 or (2 ** r <= kt and 2 ** r <= c))


def phase_time_reference(ops, ft, ff, nf, cols, nb, c, kt, rb, ra, topo, link, hop):
    noc = noc_cost(nb, c, topo, link, hop)[0] if nb > 0 else 0.0
    work = sum(min(max(ft[i][f] / c, ff[i][f]) for f in range(nf[i])) for i in ops)
    crit = max(min(max(split_k_reference(ft[i][f], cols[i], kt[i], c, rb[i], ra[i], topo,
                                         link, hop), ff[i][f]) for f in range(nf[i]))
               for i in ops)
    return max(work, crit, noc)


def test_schedule_matches_reference():
    rng = np.random.default_rng(4)
    link, hop = 8.0, 1.0
    for _ in range(25):
        topo = int(rng.integers(0, 4))
        cores = int(rng.integers(1, 9))
        n = int(rng.integers(2, 25))
        depth = np.sort(rng.integers(0, 6, size=n))
        _, depth = np.unique(depth, return_inverse=True)
        nph = depth.max() + 1
        order = np.argsort(depth, kind="stable")
        ptr = np.r_[0, np.cumsum(np.bincount(depth, minlength=nph))]
        ph_group = np.where(rng.random(nph) < 0.4, rng.integers(0, 2, size=nph), -1)
        nf = rng.integers(1, 4, size=n)
        ft = np.zeros((n, 8))
        ff = np.zeros((n, 8))
        for i in range(n):
            ft[i, :nf[i]] = np.sort(rng.uniform(10, 1000, size=nf[i]))
            ff[i, :nf[i]] = np.sort(rng.uniform(0, 300, size=nf[i]))[::-1]
        cols = rng.integers(1, 20, size=n)
        noc_b = np.where(rng.random(n) < 0.2, rng.uniform(0, 5000, size=n), 0.0)
        kt = np.where(rng.random(n) < 0.5, rng.integers(1, 40, size=n), 1)
        rb = rng.uniform(0, 50, size=n)
        ra = rng.uniform(0, 5, size=n)
        T, cc, choice = schedule(ptr, order, ph_group, ft, ff, nf, cols, kt, rb, ra, noc_b,
                                 cores, topo, link, hop)
        args = (kt, rb, ra, topo, link, hop)
        phases = [list(order[ptr[p]:ptr[p + 1]]) for p in range(nph)]
        nbp = [noc_b[ops].sum() for ops in phases]
        for g in set(ph_group.tolist()):
            members = [p for p in range(nph) if ph_group[p] == g]
            if g < 0 or cores == 1:
                for p in members:
                    assert T[p] == pytest.approx(phase_time_reference(
                        phases[p], ft, ff, nf, cols, nbp[p], cores, *args))
                continue
            costs = {c: sum(phase_time_reference(phases[p], ft, ff, nf, cols, nbp[p], c, *args)
                            for p in members) for c in range(1, cores + 1)}
            assert sum(T[p] for p in members) == pytest.approx(min(costs.values()))
            assert cc[members[0]] in [c for c, v in costs.items()
                                      if v <= min(costs.values()) * (1 + 1e-9)]
        for p in range(nph):
            for i in phases[p]:
                vals = [max(ft[i][f] / cc[p], ff[i][f]) for f in range(nf[i])]
                assert choice[i] == int(np.argmin(vals))
        # wrap-around: pieces conserve each op's work and never overlap on a core
        t1 = ft[np.arange(n), choice]
        core, span, start, end = wrap_around(ptr, order, T, cc, t1)
        assert ((start <= end + 1e-9) & (core + span <= cc[depth])).all()


def test_split_share():
    assert split_share(1, 8) == 1.0
    assert split_share(10, 1) == 1.0
    assert split_share(10, 3) == pytest.approx(4 / 10)
    assert split_share(10, 64) == pytest.approx(1 / 10)


def test_split_k_time_matches_reference_and_never_grows_with_cores():
    rng = np.random.default_rng(7)
    for _ in range(300):
        t, cols, kt = rng.uniform(1, 1e5), int(rng.integers(1, 50)), int(rng.integers(1, 300))
        rb, ra, topo = rng.uniform(0, 200), rng.uniform(0, 20), int(rng.integers(0, 4))
        link, hop = rng.uniform(1, 64), rng.uniform(0, 10)
        prev = np.inf
        for c in range(1, 600, 7):
            x = split_k_time(t, cols, kt, c, rb, ra, topo, link, hop)
            assert x == pytest.approx(split_k_reference(t, cols, kt, c, rb, ra, topo, link,
                                                        hop), rel=1e-12)
            assert x <= prev * (1 + 1e-12) and x <= split_share(cols, c) * t * (1 + 1e-12)
            prev = x
            # the slices reported are the fewest that reach the best split's time
            ks, nbytes, _ = k_slices(t, cols, kt, c, rb, ra, topo, link, hop, x)
            assert nbytes == pytest.approx((ks - 1) * cols * rb)
            assert split_with(ks, t, cols, kt, c, rb, ra, topo, link, hop) <= x * (1 + 1e-9)
            assert all(split_with(2 ** j, t, cols, kt, c, rb, ra, topo, link, hop)
                       > x * (1 + 1e-9) for j in range(int(math.log2(ks))))
