"""Multi-core scheduling: level-synchronous list scheduling of the op DAG, with a NoC.

Ops of equal depth in the DAG (longest path from the graph's source) form a *phase*; phases
run one after the other and the ops of a phase run concurrently on the cores. Phase ``p`` on
``c`` cores takes::

    T_p(c) = max( sum_i t_i(1) / c,              work spread over c cores
                  max_i t_i(min(c, cols_i)),     the op that cannot be split further
                  sum_i F_i,l  for every shared level l,   fluid bandwidth bound
                  noc_p(c) )                      dispatch / combine over the NoC

``t_i(1)`` is op ``i`` on one core; ``t_i(s)`` interpolates between that and the time of a
piece one column tile wide (``cols_i`` = column tiles of the array along N; both times from the
tile pipeline), linearly in the column tiles per piece, ``ceil(cols_i / s)``. Neither anchor
depends on the number of cores. ``F_i,l`` is
the op's bytes at a chip or off-chip level over that level's bandwidth. Experts of a layer
are thereby spread over the cores by their expected load (the first term is McNaughton's
wrap-around bound, reached by splitting at most one op per core), dense ops are split across
cores (the second term).

The phases of one MoE layer's dispatch, routed experts and combine may use fewer cores:
``c`` in ``1..cores`` minimising their summed time, since spreading experts costs a NoC
dispatch that a small step may not win back. Every other phase uses all cores. This keeps the
schedule monotone: more cores never slow a step (greedy list scheduling can, Graham 1969).

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

__all__ = ["TOPOLOGIES", "noc_cost", "op_time", "schedule", "wrap_around", "phase_noc"]

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
def op_time(t1, ts, cols, c):  # pragma: no cover - numba
    """Time of an op split over ``min(c, cols)`` cores: linear in the column tiles per piece
    between ``t1`` (all ``cols`` on one core) and ``ts`` (one column tile)."""
    if cols <= 1 or c <= 1:
        return t1
    s = min(c, cols)
    b = math.ceil(cols / s)
    return ts + (t1 - ts) * (b - 1.0) / (cols - 1.0)


@njit(cache=True)
def _phase_consts(ph_ptr, order, t1, fluid, noc_bytes):  # pragma: no cover - numba
    """Per phase: summed work, largest single-core op time, fluid bound, NoC bytes."""
    nph = ph_ptr.shape[0] - 1
    W = np.zeros(nph)
    T1 = np.zeros(nph)
    FL = np.zeros(nph)
    NB = np.zeros(nph)
    fl = np.zeros(fluid.shape[1])
    for p in range(nph):
        fl[:] = 0.0
        for idx in range(ph_ptr[p], ph_ptr[p + 1]):
            i = order[idx]
            W[p] += t1[i]
            T1[p] = max(T1[p], t1[i])
            NB[p] += noc_bytes[i]
            for j in range(fluid.shape[1]):
                fl[j] += fluid[i, j]
        for j in range(fluid.shape[1]):
            FL[p] = max(FL[p], fl[j])
    return W, T1, FL, NB


@njit(cache=True)
def _phase_time(p, ph_ptr, order, t1, ts, cols, W, T1, FL, NB, cores, c, topo, link,
                hop):  # pragma: no cover - numba
    t = max(W[p] / c, FL[p])
    if t < T1[p]:
        # some op may not be spread thin enough: its own time bounds the phase
        for idx in range(ph_ptr[p], ph_ptr[p + 1]):
            i = order[idx]
            if t1[i] > t:
                t = max(t, op_time(t1[i], ts[i], cols[i], c))
    if NB[p] > 0.0:
        t = max(t, noc_cost(NB[p], c, topo, link, hop)[0])
    return t


@njit(cache=True)
def schedule(ph_ptr, order, ph_group, t1, ts, cols, fluid, noc_bytes, cores, topo, link,
             hop):  # pragma: no cover - numba
    """Phase times and core counts: ``(T[phase], c[phase])``."""
    nph = ph_ptr.shape[0] - 1
    W, T1, FL, NB = _phase_consts(ph_ptr, order, t1, fluid, noc_bytes)
    T = np.zeros(nph)
    cc = np.full(nph, cores, np.int64)
    done = np.zeros(nph, np.bool_)
    members = np.empty(nph, np.int64)
    for p in range(nph):
        if done[p]:
            continue
        g = ph_group[p]
        if g < 0 or cores == 1:
            T[p] = _phase_time(p, ph_ptr, order, t1, ts, cols, W, T1, FL, NB, cores, cores,
                               topo, link, hop)
            done[p] = True
            continue
        nm = 0
        for q in range(p, nph):
            if ph_group[q] == g:
                members[nm] = q
                nm += 1
        best = np.inf
        bestc = cores
        for c in range(cores, 0, -1):
            tot = 0.0
            for u in range(nm):
                tot += _phase_time(members[u], ph_ptr, order, t1, ts, cols, W, T1, FL, NB,
                                   cores, c, topo, link, hop)
            if tot < best * (1.0 - 1e-12):
                best = tot
                bestc = c
        for u in range(nm):
            q = members[u]
            cc[q] = bestc
            T[q] = _phase_time(q, ph_ptr, order, t1, ts, cols, W, T1, FL, NB, cores, bestc,
                               topo, link, hop)
            done[q] = True
    return T, cc


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
