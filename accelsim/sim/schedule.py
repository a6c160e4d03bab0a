"""Multi-core scheduling: level-synchronous list scheduling of the op DAG, with a NoC.

Ops of equal depth in the DAG (longest path from the graph's source) form a *phase*; phases
run one after the other and the ops of a phase share the cores. Every op comes with a small
Pareto front of tilings, each with ``t`` (cycles on one core at the full bandwidth of the
shared levels) and ``F`` (busy cycles it causes on the chip and off-chip levels, which are one
request stream, as a core's DMA is). On ``c`` cores phase ``p`` takes::

    T_p(c) = max( sum_i min_f max(t_if / c, F_if),        work: each op over all c cores
                  max_i min_f max(a_i(c) t_if, F_if),      the op that splits least
                  noc_p(c) )                               dispatch / combine over the NoC

with ``a_i(c) = ceil(cols_i / s) / cols_i`` for ``s = min(c, cols_i)``: an op splits along N
into at most ``cols_i`` pieces (column tiles of the array), and a piece takes its share of the
op's time. The first term is at least the usual ``max(sum t / c, sum F)`` bound and equals it
when the ops of a phase are alike (the experts of a layer); the reported tiling of an op is the
one minimising its first-term share, so the reported shared-level traffic fits in the phase.
Because every term is a minimum over candidates, more buffer (more candidates), more
bandwidth or cores (smaller ``t`` and ``F``) and fewer bits never lengthen a phase.

Experts of a layer are thereby spread over the cores by their expected load, and dense ops are
split across cores. The phases of one MoE layer's dispatch, routed experts and combine may use
fewer cores: ``c`` in ``1..cores`` minimising their summed time, since spreading experts costs
a NoC dispatch that a small step may not win back. Every other phase uses all cores. Greedy
list scheduling can get slower with more cores (Graham 1969); this schedule cannot.

NoC time for ``B`` bytes dispatched over ``c`` cores (a share ``(c - 1) / c`` leaves its core)
is ``max(B' h / (links * bw), B' / 2 / (bisection * bw)) + h * hop_latency`` with the mean hop
count ``h`` over distinct pairs: mesh ``a x b`` (``a = ceil(sqrt(c))``), ring, crossbar (one
hop, a port per core) or bus (one shared link; also ``none``).

Examples
--------
>>> cyc, hops, moved = noc_cost(1024.0, 4, TOPOLOGIES["mesh"], 32.0, 1.0)
>>> round(hops, 3), moved
(1.333, 768.0)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["TOPOLOGIES", "noc_cost", "split_share", "split_k_time", "k_slices", "k_slices_ops",
           "schedule",
           "wrap_around", "phase_noc"]

TOPOLOGIES = {"mesh": 0, "ring": 1, "crossbar": 2, "bus": 3, "none": 3}


@njit(cache=True)
def noc_cost(nbytes, c, topo, link_bpc, hop_cyc):  # pragma: no cover - numba
    """``(cycles, mean hops, bytes moved)`` of an all-to-all of ``nbytes`` over ``c`` cores."""
    if c <= 1 or nbytes <= 0.0:
        return 0.0, 0.0, 0.0
    moved = nbytes * (c - 1) / c
    if topo == 0:
        a = int(math.ceil(math.sqrt(c)))
        b = int(math.ceil(c / a))
        n = a * b
        hops_all = (a - 1.0 / a) / 3.0 + (b - 1.0 / b) / 3.0
        hops = hops_all * n / (n - 1.0)
        links = 2.0 * ((a - 1) * b + (b - 1) * a)
        bis = 2.0 * min(a, b)
        t = max(moved * hops / (links * link_bpc), 0.5 * moved / (bis * link_bpc))
    elif topo == 1:
        hops_all = (c * c / 4.0 if c % 2 == 0 else (c * c - 1) / 4.0) / c
        hops = hops_all * c / (c - 1.0)
        links = 2.0 * c if c > 2 else 2.0
        bis = 4.0 if c > 2 else 2.0
        t = max(moved * hops / (links * link_bpc), 0.5 * moved / (bis * link_bpc))
    elif topo == 2:
        hops = 1.0
        t = moved / (c * link_bpc)
    else:
        hops = 1.0
        t = moved / link_bpc
    return t + hops * hop_cyc, hops, moved


@njit(cache=True)
def split_share(cols, c):  # pragma: no cover - numba
    """Share of an op's time taken by its longest piece when split over ``c`` cores."""
    if cols <= 1 or c <= 1:
        return 1.0
    s = min(c, cols)
    return math.ceil(cols / s) / cols


@njit(cache=True)
def reduce_cost(ks, cols, s, rb, ra, topo, link_bpc, hop_cyc):  # pragma: no cover - numba
    """Cycles to sum the partial outputs of ``ks`` K-slices of an op split into ``s`` column
    pieces of ``cols`` column tiles (``rb`` bytes and ``ra`` vector-add cycles per column tile):
    a binary tree of ``ceil(log2 ks)`` rounds, each moving one piece's partials one tree edge
    and adding them. Slices of a piece lie on a path, round ``r`` spans ``2^r`` hops
    (crossbar: one); pieces use disjoint links, except on a bus, where all
    ``(ks - 1) x cols x rb`` bytes share the one link."""
    if ks <= 1:
        return 0.0
    rounds = 0
    while (1 << rounds) < ks:
        rounds += 1
    per = math.ceil(cols / s)
    add = rounds * per * ra
    if topo == 3:
        return (ks - 1) * cols * rb / link_bpc + add + rounds * hop_cyc
    hops = float(rounds) if topo == 2 else (1 << rounds) - 1.0
    return rounds * per * rb / link_bpc + add + hops * hop_cyc


@njit(cache=True)
def split_k_time(t, cols, kt, c, rb, ra, topo, link_bpc, hop_cyc):  # pragma: no cover - numba
    """Time of an op of ``t`` cycles split over at most ``c`` cores: ``ks`` K-slices (a power
    of two, at most ``kt`` K tiles) times ``s = min(c // ks, cols)`` column pieces, the longest
    piece ``ceil(cols / s) / cols x ceil(kt / ks) / kt x t`` plus the reduction
    (:func:`reduce_cost`); the minimum over ``ks`` (``ks = 1`` is the N-only split)."""
    best = split_share(cols, c) * t
    ks = 2
    while ks <= kt and ks <= c:
        s = min(c // ks, cols)
        piece = math.ceil(cols / s) / cols * (math.ceil(kt / ks) / kt) * t
        v = piece + reduce_cost(ks, cols, s, rb, ra, topo, link_bpc, hop_cyc)
        if v < best:
            best = v
        ks *= 2
    return best


@njit(cache=True)
def k_slices(t, cols, kt, c, rb, ra, topo, link_bpc, hop_cyc, bound):  # pragma: no cover
    """``(ks, bytes, byte-hops)``: the fewest K-slices whose split time (as in
    :func:`split_k_time`) is within ``bound`` (else the fastest), and the NoC traffic of its
    reduction: ``(ks - 1) x cols x rb`` bytes; byte-hops ``log2(ks) x ks / 2 x cols x rb`` on
    the path of a mesh or ring (every round moves ``ks / 2`` partials ``2^r`` hops), one hop
    per byte on a crossbar or bus."""
    best = split_share(cols, c) * t
    arg = 1
    lim = bound * (1.0 + 1e-9)
    ks = 2
    while best > lim and ks <= kt and ks <= c:
        s = min(c // ks, cols)
        v = (math.ceil(cols / s) / cols * (math.ceil(kt / ks) / kt) * t
             + reduce_cost(ks, cols, s, rb, ra, topo, link_bpc, hop_cyc))
        if v < best:
            best = v
            arg = ks
        ks *= 2
    if arg == 1:
        return 1, 0.0, 0.0
    nbytes = (arg - 1) * cols * rb
    rounds = 0
    while (1 << rounds) < arg:
        rounds += 1
    hops = nbytes if topo >= 2 else rounds * arg / 2.0 * cols * rb
    return arg, nbytes, hops


@njit(cache=True)
def k_slices_ops(idx, t1, cols, kt, c, rb, ra, topo, link_bpc, hop_cyc, bound):
    # pragma: no cover - numba
    """:func:`k_slices` of the ops ``idx`` (``c`` and ``bound``: their phase's core count and
    time, per op): ``(ks, byte-hops, NoC cycles of the reduction)`` arrays, the last being
    :func:`reduce_cost` without the adds."""
    n = idx.shape[0]
    ks = np.ones(n, np.int64)
    bh = np.zeros(n)
    tn = np.zeros(n)
    for j in range(n):
        i = idx[j]
        ks[j], _, bh[j] = k_slices(t1[i], cols[i], kt[i], c[j], rb[i], ra[i], topo, link_bpc,
                                   hop_cyc, bound[j])
        if ks[j] > 1:
            tn[j] = reduce_cost(ks[j], cols[i], min(c[j] // ks[j], cols[i]), rb[i], 0.0, topo,
                                link_bpc, hop_cyc)
    return ks, bh, tn


@njit(cache=True)
def _work(i, c, ft, ff, nf):  # pragma: no cover - numba
    best = np.inf
    arg = 0
    for f in range(nf[i]):
        v = max(ft[i, f] / c, ff[i, f])
        if v < best:
            best = v
            arg = f
    return best, arg


@njit(cache=True)
def _crit(i, c, cols, kt, rb, ra, ft, ff, nf, topo, link, hop):  # pragma: no cover - numba
    best = np.inf
    for f in range(nf[i]):
        v = max(split_k_time(ft[i, f], cols[i], kt[i], c, rb[i], ra[i], topo, link, hop),
                ff[i, f])
        if v < best:
            best = v
    return best


@njit(cache=True)
def _phase_time(p, ph_ptr, order, ft, ff, nf, cols, kt, rb, ra, NB, c, topo, link,
                hop):  # pragma: no cover - numba
    w = 0.0
    m = 0.0
    for idx in range(ph_ptr[p], ph_ptr[p + 1]):
        i = order[idx]
        w += _work(i, c, ft, ff, nf)[0]
        x = _crit(i, c, cols, kt, rb, ra, ft, ff, nf, topo, link, hop)
        if x > m:
            m = x
    t = max(w, m)
    if NB[p] > 0.0:
        t = max(t, noc_cost(NB[p], c, topo, link, hop)[0])
    return t


@njit(cache=True)
def schedule(ph_ptr, order, ph_group, ft, ff, nf, cols, kt, rb, ra, noc_bytes, cores, topo,
             link, hop):  # pragma: no cover - numba
    """Phase times, core counts and the chosen front point of every op:
    ``(T[phase], c[phase], choice[op])``. ``ft``/``ff`` [ops x points]: cycles and
    shared-level busy cycles of each op's front, ``nf`` points per op; ``cols`` column
    pieces, ``kt`` K tiles (1: K is not split), ``rb``/``ra`` partial-sum bytes and add
    cycles per column tile of every op (:func:`split_k_time`)."""
    nph = ph_ptr.shape[0] - 1
    NB = np.zeros(nph)
    for p in range(nph):
        for idx in range(ph_ptr[p], ph_ptr[p + 1]):
            NB[p] += noc_bytes[order[idx]]
    T = np.zeros(nph)
    cc = np.full(nph, cores, np.int64)
    done = np.zeros(nph, np.bool_)
    members = np.empty(nph, np.int64)
    # the next phase of the same MoE group (phases of a group in order, found in one pass)
    nxt = np.full(nph, -1, np.int64)
    by_group = np.argsort(ph_group, kind="mergesort")
    for j in range(nph - 1):
        if ph_group[by_group[j]] == ph_group[by_group[j + 1]]:
            nxt[by_group[j]] = by_group[j + 1]
    for p in range(nph):
        if done[p]:
            continue
        g = ph_group[p]
        if g < 0 or cores == 1:
            T[p] = _phase_time(p, ph_ptr, order, ft, ff, nf, cols, kt, rb, ra, NB, cores,
                               topo, link, hop)
            done[p] = True
            continue
        nm = 0
        q = p
        while q >= 0:
            members[nm] = q
            nm += 1
            q = nxt[q]
        # work and critical-op terms only shrink with more cores, so with them taken at
        # all cores a candidate c's cost is bounded below; most c are never evaluated
        wc = np.empty(nm)
        tmin = np.zeros(nm)     # sum over ops of their smallest one-core time
        for u in range(nm):
            q = members[u]
            w = 0.0
            m = 0.0
            for idx in range(ph_ptr[q], ph_ptr[q + 1]):
                i = order[idx]
                w += _work(i, cores, ft, ff, nf)[0]
                m = max(m, _crit(i, cores, cols, kt, rb, ra, ft, ff, nf, topo, link, hop))
                x = np.inf
                for f in range(nf[i]):
                    x = min(x, ft[i, f])
                tmin[u] += x
            wc[u] = max(w, m)
        best = 0.0
        for u in range(nm):
            q = members[u]
            best += max(wc[u], noc_cost(NB[q], cores, topo, link, hop)[0] if NB[q] > 0.0
                        else 0.0)
        bestc = cores
        tsum = tmin[:nm].sum()
        for c in range(cores - 1, 0, -1):
            # the bound below is at least tsum / c, which only grows as c falls while best
            # only shrinks: once it reaches best, no smaller c can win
            if tsum / c >= best * (1.0 - 1e-12):
                break
            lb = 0.0
            for u in range(nm):
                q = members[u]
                lb += max(max(wc[u], tmin[u] / c),
                          noc_cost(NB[q], c, topo, link, hop)[0] if NB[q] > 0.0 else 0.0)
            if lb >= best * (1.0 - 1e-12):
                continue
            tot = 0.0
            for u in range(nm):
                tot += _phase_time(members[u], ph_ptr, order, ft, ff, nf, cols, kt, rb, ra,
                                   NB, c, topo, link, hop)
            if tot < best * (1.0 - 1e-12):
                best = tot
                bestc = c
        for u in range(nm):
            q = members[u]
            cc[q] = bestc
            T[q] = _phase_time(q, ph_ptr, order, ft, ff, nf, cols, kt, rb, ra, NB, bestc, topo,
                               link, hop)
            done[q] = True
    choice = np.zeros(ft.shape[0], np.int64)
    for p in range(nph):
        for idx in range(ph_ptr[p], ph_ptr[p + 1]):
            i = order[idx]
            choice[i] = _work(i, cc[p], ft, ff, nf)[1]
    return T, cc, choice


@njit(cache=True)
def wrap_around(ph_ptr, order, T, cc, t1):  # pragma: no cover - numba
    """McNaughton wrap-around placement of every phase: per op its first core, the number of
    cores it spans, start and end cycle (pieces of one op on several cores overlap)."""
    n = t1.shape[0]
    core = np.zeros(n, np.int64)
    span = np.ones(n, np.int64)
    start = np.zeros(n)
    end = np.zeros(n)
    t0 = 0.0
    for p in range(ph_ptr.shape[0] - 1):
        Tp, c = T[p], cc[p]
        j = 0
        tau = 0.0
        for idx in range(ph_ptr[p], ph_ptr[p + 1]):
            i = order[idx]
            d = t1[i]
            j0, tau0 = j, tau
            while d > 1e-9 * max(1.0, Tp) and j < c:
                take = min(d, Tp - tau)
                d -= take
                tau += take
                if tau >= Tp * (1.0 - 1e-12) and d > 1e-9 * max(1.0, Tp):
                    j += 1
                    tau = 0.0
            if j >= c:
                j = c - 1
                tau = Tp
            core[i] = j0
            span[i] = j - j0 + 1
            if span[i] == 1:
                start[i] = t0 + tau0
                end[i] = t0 + tau
            else:
                start[i] = t0
                end[i] = t0 + Tp
            if tau >= Tp * (1.0 - 1e-12) and j < c - 1:
                j += 1
                tau = 0.0
        t0 += Tp
    return core, span, start, end


@njit(cache=True)
def phase_noc(ph_ptr, order, ph_group, cc, noc_bytes, topo, link, hop,
              e_hop):  # pragma: no cover - numba
    """NoC cycles of every phase and NoC energy of every op (its share of its phase's
    bytes) for the chosen core counts."""
    nph = ph_ptr.shape[0] - 1
    t = np.zeros(nph)
    e = np.zeros(order.shape[0])
    for p in range(nph):
        if ph_group[p] < 0:
            continue
        nb = 0.0
        for idx in range(ph_ptr[p], ph_ptr[p + 1]):
            nb += noc_bytes[order[idx]]
        if nb <= 0.0:
            continue
        cyc, hops, moved = noc_cost(nb, cc[p], topo, link, hop)
        t[p] = cyc
        for idx in range(ph_ptr[p], ph_ptr[p + 1]):
            i = order[idx]
            e[i] = moved * hops * e_hop * noc_bytes[i] / nb
    return t, e
