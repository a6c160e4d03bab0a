"""The tile pipeline: one GEMM on one core, tile by tile, in numba.

A GEMM ``M x K`` (activations) times ``K x N`` (weights) is cut into L1 tiles
``Mt x Kt x Nt`` (chosen by :func:`best_tiling`) and run in a fixed loop order, outermost
first: weight-stationary ``n, m, k``; output-stationary ``m, n, k``. For every tile the DMA
loads the operands that changed (double-buffered: the load of tile ``s+1`` may start when the
compute of tile ``s-1`` has freed its buffer), the array computes its folds, and after the
last ``k`` tile the output block is stored (double-buffered output slots)::

    load(s+1)  start = max(dma free, compute end(s-1));        end = start + L(s+1)
    compute(s) start = max(load end(s), compute end(s-1)[, store end(block-2)])
    store(b)   start = max(compute end, store channel free);    end = start + S

With one DMA channel loads and stores share it (and the loads of the two operands add up);
with two or more, weights and activations load in parallel and stores have their own channel.
The DMA stream code ``two_ch`` says which (True / 1: two or more channels; False / 0: one;
with off-chip ports, :mod:`accelsim.sim.mapping`: 2 when weights and activations are on
different ports but outputs share one of them, 3 when only the outputs have a port of their
own). Load and store times are ``setup + latency + bytes / bandwidth`` of the source level
(:mod:`accelsim.sim.mapping` builds them).

Compute cycles of a tile follow SCALE-Sim's systolic model with an ``R x C`` array:
weight-stationary ``ceil(Kt / R') * ceil(Nt / C) * (2R + C + Mt - 2) * s``, output-stationary
``ceil(Mt / R) * ceil(Nt / C) * (2R + C + Kt' - 2) * s``, where ``c = cycles_per_mac`` of
the arithmetic: ``c >= 1`` (bit-serial, multi-pass) stretches every fold, ``s = c``;
``c < 1`` (several MACs per PE per cycle) packs the reduction, ``R' = R / c``,
``Kt' = Kt * c``, ``s = 1``.

That is the array's fill mode ``per_fold`` (``cores.mac_array.fill``, docs/hwconfig.md).
Write a tile as ``F`` folds of stream length ``L`` (``Mt`` weight-stationary, ``Kt'``
output-stationary), each fold ``H + S + L`` steps: ``H = R`` to shift the fold's weights in
(weight-stationary) or its outputs out (output-stationary), ``S = R + C - 2`` skew fill and
drain. With ``overlapped`` (weights, or outputs, double-buffered in the PEs, as in the TPU)
the next fold's ``H`` runs while the current fold streams and the skew of consecutive folds
overlaps, so a fold starts every ``max(L, H)`` steps and the tile takes
``(H + S + L + (F - 1) * max(L, H)) * s`` (equal to ``per_fold`` for one fold, never more
than it). ``none`` (a vector-matrix engine without a systolic fill: every step multiplies
one input vector by an ``R x C`` block) takes ``F * L * s``.

**Closed-form steady state.** The state of the pipeline is a handful of time stamps and each
step is a max-plus map, which is homogeneous: shifting the state by ``d`` shifts the result by
``d``. So once one step (or one block of steps) of a run of identical steps has moved every
time stamp by the same ``d``, every remaining identical step will too, and the engine jumps
over them. Tiles differ only at the edges of each dimension, so the engine simulates the fill,
a few steady steps and the drain at every loop level, and extends the rest exactly.
``full=True`` runs every tile instead (the tests compare both, and both with the plain Python
:func:`pipeline_reference`).

Examples
--------
>>> t, comp, *_ = pipeline(0, 64.0, 256, 256, 64.0, 256, 256, 16, 16, 1.0,
...                        1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, False, False)
>>> comp == 16 * 16 * (2 * 16 + 16 + 64 - 2)   # SCALE-Sim: folds x (2R + C + M - 2)
True
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["WS", "OS", "DATAFLOWS", "FILLS", "PER_FOLD", "OVERLAPPED", "NO_FILL", "fold_cycles",
           "tile_cycles", "pipeline", "best_tiling", "tiling_front",
           "pipeline_reference", "tile_candidates", "merge_fronts", "pair_front",
           "run_pairs", "pair_packed", "FRONT_COLS", "chip_fetch", "chip_fetches", "RX_COLS",
           "NRX"]

WS, OS = 0, 1
DATAFLOWS = ("weight_stationary", "output_stationary")
#: Fill modes of the MAC array (``cores.mac_array.fill``, docs/hwconfig.md), by code.
PER_FOLD, OVERLAPPED, NO_FILL = 0, 1, 2
FILLS = ("per_fold", "overlapped", "none")

# state vector components
_T_DMA, _T_ST, _LD, _C1, _O1, _O2 = 0, 1, 2, 3, 4, 5
_NSTATE = 6
_KCOMPS = np.array([_T_DMA, _LD, _C1])
_BCOMPS = np.array([_T_DMA, _LD, _C1, _O1, _O2])
_BCOMPS_ST = np.array([_T_DMA, _T_ST, _LD, _C1, _O1, _O2])


@njit(cache=True)
def fold_cycles(df, R, C, m, k, n, cpm, fill=PER_FOLD):  # pragma: no cover - numba
    """Array cycles of one tile ``m x k x n``: ``F`` folds of stream length ``L`` under the
    array's fill mode ``fill`` (:data:`FILLS`; module doc). ``per_fold`` is SCALE-Sim's
    ``F (2R + C + L - 2) s``; ``overlapped`` pays the weight shift-in (output drain) and the
    skew once, ``(R + (R + C - 2) + L + (F - 1) max(L, R)) s``; ``none`` is ``F L s``."""
    if df == WS:
        if cpm < 1.0:
            folds = math.ceil(k * cpm / R - 1e-9) * math.ceil(n / C)
            L, s = m, 1.0
        else:
            folds = math.ceil(k / R) * math.ceil(n / C)
            L, s = m, cpm
    else:
        folds = math.ceil(m / R - 1e-9) * math.ceil(n / C)
        if cpm < 1.0:
            L, s = k * cpm, 1.0
        else:
            L, s = k, cpm
    if fill == OVERLAPPED:
        return (2.0 * R + C + L - 2.0 + (folds - 1) * max(L, float(R))) * s
    if fill == NO_FILL:
        return folds * L * s
    return folds * (2.0 * R + C + L - 2.0) * s


@njit(cache=True)
def tile_cycles(df, R, C, m, k, n, cpm, wB, aB, fw, fa, fsame, fill=PER_FOLD):
    # pragma: no cover - numba
    """``(cycles, fold cycles)`` of one tile: the folds, or longer when the staging buffers
    cannot feed the array that fast. The array reads its weights once per tile
    (weight-stationary) or once per ``R`` rows (output-stationary), and its activations once
    per ``C``-column fold; ``fw``/``fa`` are cycles per byte of the weight and activation
    staging buffers, read in parallel unless they are one buffer (``fsame``); ``fill``: the
    array's fill mode (:func:`fold_cycles`)."""
    fold = fold_cycles(df, R, C, m, k, n, cpm, fill)
    if fw == 0.0 and fa == 0.0:
        return fold, fold
    wfeed = k * n * wB * (1.0 if df == WS else math.ceil(m / R - 1e-9))
    afeed = m * k * aB * math.ceil(n / C)
    feed = wfeed * fw + afeed * fa if fsame else max(wfeed * fw, afeed * fa)
    return max(fold, feed), fold


@njit(cache=True)
def _ntiles(total, t):  # pragma: no cover - numba
    return max(1, int(math.ceil(total / t - 1e-9)))


@njit(cache=True)
def _size(i, n, t, total):  # pragma: no cover - numba
    if i == n - 1:
        return total - (n - 1) * t
    return t


@njit(cache=True)
def _dims(df, a, b, k, nA, nB, nK, At, Bt, Kt, Atot, Btot, Ktot):  # pragma: no cover
    """Tile sizes (m, k, n) of tile (a, b, k) of the loop nest."""
    sa = _size(a, nA, At, Atot)
    sb = _size(b, nB, Bt, Btot)
    sk = _size(k, nK, Kt, Ktot)
    if df == WS:      # outer n, middle m
        return sb, sk, sa
    return sa, sk, sb  # outer m, middle n


@njit(cache=True)
def _reuse(df, nB, nK, keep):  # pragma: no cover - numba
    """Whether the operand indexed by (outer, k) is loaded once per outer block and the one
    indexed by (middle, k) once in all, instead of once per use. An operand whose tiles of
    one pass of its loop are at most two sits whole in its double buffer (the tile of step
    ``s + 1`` is the one step ``s - 1`` left in the same slot); ``keep`` holds the
    activations' whole pass in their staging level (:func:`keep_bytes`)."""
    p_reuse = nK <= 2 or (keep and df == OS)
    q_reuse = nB * nK <= 2 or (keep and df == WS)
    return p_reuse, q_reuse


@njit(cache=True)
def _load_time(df, a, b, k, p_reuse, q_reuse, m_sz, k_sz, n_sz, wB, aB, w_dma, w_fix, w_pb,
               a_dma, a_fix, a_pb, two_ch):  # pragma: no cover - numba
    """DMA time and fetched bytes (weights, activations) of tile (a, b, k)."""
    need_p = (not p_reuse) or b == 0        # operand indexed by (outer, k)
    need_q = (not q_reuse) or a == 0        # operand indexed by (middle, k)
    if df == WS:
        need_w, need_a = need_p, need_q
    else:
        need_w, need_a = need_q, need_p
    wb = k_sz * n_sz * wB if need_w else 0.0
    ab = m_sz * k_sz * aB if need_a else 0.0
    tw = w_fix + wb * w_pb if (need_w and w_dma) else 0.0
    ta = a_fix + ab * a_pb if (need_a and a_dma) else 0.0
    t = max(tw, ta) if _par_loads(two_ch) else tw + ta
    return t, wb, ab


@njit(cache=True)
def _jump(j, d, own, t_dma, t_st, ld, c1, o1, o2, comp, wbytes, abytes, obytes, i0, i1, i2,
          i3):  # pragma: no cover - numba
    """The closed form's jump over ``j`` outer or middle blocks that each moved every time
    stamp by ``d`` (the store stream too when it is its own, ``own``) and added ``i0..i3``
    to the compute cycles and the weight, activation and output bytes."""
    t_dma += j * d
    if own:
        t_st += j * d
    ld += j * d
    c1 += j * d
    o1 += j * d
    o2 += j * d
    return (t_dma, t_st, ld, c1, o1, o2, comp + j * i0, wbytes + j * i1, abytes + j * i2,
            obytes + j * i3)


@njit(cache=True)
def _loops(df, M, K, N, Mt, Kt, Nt, w_fix, w_pb, a_fix, a_pb, o_fix, o_pb, keep):
    # pragma: no cover - numba
    """The loop nest of a tiling, what :func:`pipeline` and its bounds start from: whether
    weights, activations and outputs move by DMA; the outer (``A``), middle (``B``) and
    ``k`` extents and tile sizes in the dataflow's order; the tile counts; the reuse flags
    (:func:`_reuse`)."""
    w_dma = w_fix > 0.0 or w_pb > 0.0
    a_dma = a_fix > 0.0 or a_pb > 0.0
    o_dma = o_fix > 0.0 or o_pb > 0.0
    if df == WS:
        Atot, At, Btot, Bt = float(N), float(Nt), float(M), float(Mt)
    else:
        Atot, At, Btot, Bt = float(M), float(Mt), float(N), float(Nt)
    Ktot, Ktf = float(K), float(Kt)
    nA, nB, nK = _ntiles(Atot, At), _ntiles(Btot, Bt), _ntiles(Ktot, Ktf)
    p_reuse, q_reuse = _reuse(df, nB, nK, keep)
    return (w_dma, a_dma, o_dma, Atot, At, Btot, Bt, Ktot, Ktf, nA, nB, nK, p_reuse,
            q_reuse)


@njit(cache=True)
def _par_loads(two_ch):  # pragma: no cover - numba
    """Whether weight and activation loads run side by side: DMA stream code ``two_ch`` 1
    (two or more channels; True) or 2 (off-chip ports: the two on different ports)."""
    return two_ch == 1 or two_ch == 2


@njit(cache=True)
def _own_store(two_ch):  # pragma: no cover - numba
    """Whether output stores have a stream of their own: code 1 (two or more channels;
    True) or 3 (off-chip ports: outputs on a port that serves neither load operand)."""
    return two_ch == 1 or two_ch == 3


@njit(cache=True)
def _step(s, X, L_next, has_next, first_k, last_k, S, o_dma, two_ch):  # pragma: no cover
    ld_next = 0.0
    if has_next:
        st = max(s[_T_DMA], s[_C1])
        ld_next = st + L_next
        s[_T_DMA] = ld_next
    start = max(s[_LD], s[_C1])
    if first_k:
        start = max(start, s[_O2])
    end = start + X
    s[_C1] = end
    if last_k:
        if o_dma:
            if _own_store(two_ch):
                sst = max(end, s[_T_ST])
                se = sst + S
                s[_T_ST] = se
            else:
                sst = max(end, s[_T_DMA])
                se = sst + S
                s[_T_DMA] = se
        else:
            se = end
        s[_O2] = s[_O1]
        s[_O1] = se
    s[_LD] = ld_next


@njit(cache=True)
def _uniform(cur, prev, ref_prev_delta, comps, ncomp):  # pragma: no cover - numba
    """True when cur - prev is the same shift d in every listed component."""
    d0 = cur[comps[0]] - prev[comps[0]]
    tol = 1e-9 * max(1.0, abs(d0)) + 1e-12 * max(1.0, abs(cur[comps[0]]))
    for i in range(1, ncomp):
        c = comps[i]
        if abs((cur[c] - prev[c]) - d0) > tol:
            return False
    return True


@njit(cache=True)
def _same_shift(c, p, d0, tol):  # pragma: no cover - numba
    """Whether one component moved by ``d0`` within ``tol`` (:func:`_uniform`)."""
    return not abs((c - p) - d0) > tol


@njit(cache=True)
def _uniform3(c_d, c_l, c_c, p_d, p_l, p_c):  # pragma: no cover - numba
    """:func:`_uniform` over the components of a ``k`` run (DMA stream, load end, compute
    end) held in scalars, ``c_*`` the current and ``p_*`` the previous state."""
    d0 = c_d - p_d
    tol = 1e-9 * max(1.0, abs(d0)) + 1e-12 * max(1.0, abs(c_d))
    return _same_shift(c_l, p_l, d0, tol) and _same_shift(c_c, p_c, d0, tol)


@njit(cache=True)
def _uniform6(c_d, c_s, c_l, c_c, c_o1, c_o2, p_d, p_s, p_l, p_c, p_o1, p_o2, own):
    # pragma: no cover - numba
    """:func:`_uniform` over the components of a block (the store stream only when it is
    its own, ``own``) held in scalars."""
    d0 = c_d - p_d
    tol = 1e-9 * max(1.0, abs(d0)) + 1e-12 * max(1.0, abs(c_d))
    if own and not _same_shift(c_s, p_s, d0, tol):
        return False
    return (_same_shift(c_l, p_l, d0, tol) and _same_shift(c_c, p_c, d0, tol)
            and _same_shift(c_o1, p_o1, d0, tol) and _same_shift(c_o2, p_o2, d0, tol))


@njit(cache=True)
def _shift(s, comps, d, j):  # pragma: no cover - numba
    for i in range(comps.shape[0]):
        s[comps[i]] += j * d


@njit(cache=True)
def pipeline(df, M, K, N, Mt, Kt, Nt, R, C, cpm, wB, aB, oB, w_fix, w_pb, a_fix, a_pb,
             o_fix, o_pb, two_ch, full, fw=0.0, fa=0.0, fsame=True, keep=False, fill=PER_FOLD):
    # pragma: no cover
    """Cycles of one GEMM on one core with the given L1 tiles.

    ``w_fix, w_pb`` (``a_*``, ``o_*``): cycles per transfer and per byte of a weight
    (activation, output) DMA; both 0 means the operand is already in its staging buffer (no
    DMA). ``fw, fa, fsame``: operand feed from the staging buffers (:func:`tile_cycles`;
    0 = unlimited). ``keep``: the activations of one pass stay in their staging level
    (:func:`keep_bytes`) and are loaded once. ``fill``: the array's fill mode
    (:func:`fold_cycles`). Returns ``(cycles, compute_cycles,
    weight_fetch_bytes, act_fetch_bytes,
    output_bytes, steps_simulated)``; compute cycles are the folds (a tile waiting for its
    operands to be fed counts as stall); fetch bytes count every tile (re)load whether or not
    it needs a DMA.
    """
    return _pipeline(df, M, K, N, Mt, Kt, Nt, R, C, cpm, wB, aB, oB, w_fix, w_pb, a_fix, a_pb,
                     o_fix, o_pb, two_ch, full, fw, fa, fsame, keep, fill, np.zeros((40, 4)),
                     1.0)


@njit(cache=True)
def _pipeline(df, M, K, N, Mt, Kt, Nt, R, C, cpm, wB, aB, oB, w_fix, w_pb, a_fix, a_pb,
              o_fix, o_pb, two_ch, full, fw, fa, fsame, keep, fill, xt, gen):
    # pragma: no cover - numba
    """:func:`pipeline` with its table of tile cycles and load times by tile shape in ``xt``
    [40 x 4] (a caller's workspace): a row is known when its first entry is ``gen``, so a
    caller running many pipelines passes a new ``gen`` each time instead of a new table."""
    (w_dma, a_dma, o_dma, Atot, At, Btot, Bt, Ktot, Ktf, nA, nB, nK, p_reuse,
     q_reuse) = _loops(df, M, K, N, Mt, Kt, Nt, w_fix, w_pb, a_fix, a_pb, o_fix, o_pb, keep)
    own = _own_store(two_ch) and o_dma      # the stores' stream is in the outer state
    # tile cycles by tile shape (last outer, last middle, last k tile or not): (known, X,
    # Xf, output bytes) in rows 0-7; load time and bytes by tile shape and first outer, first
    # middle block or not: (known, L, weight bytes, activation bytes) in rows 8-39
    m0, k0, n0 = _dims(df, 0, 0, 0, nA, nB, nK, At, Bt, Ktf, Atot, Btot, Ktot)
    L0, wbytes, abytes = _load_time(df, 0, 0, 0, p_reuse, q_reuse, m0, k0, n0, wB, aB,
                                    w_dma, w_fix,
                                    w_pb, a_dma, a_fix, a_pb, two_ch)
    # the state (module docstring; _step): DMA stream free, store stream free, load end of
    # the next tile, compute end, ends of the last two stores
    t_dma, t_st, ld, c1, o1, o2 = L0, 0.0, L0, 0.0, 0.0, 0.0
    comp = 0.0
    obytes = 0.0
    steps = 0
    # the state after the last (p*) and second-to-last (q*) unit of each level, the
    # increments (compute, weight, act, out bytes) of the last outer and middle blocks
    pa_d, pa_s, pa_l, pa_c, pa_o1, pa_o2 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    qa_d, qa_s, qa_l, qa_c, qa_o1, qa_o2 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    pb_d, pb_s, pb_l, pb_c, pb_o1, pb_o2 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    qb_d, qb_s, qb_l, qb_c, qb_o1, qb_o2 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    pk_d, pk_l, pk_c = 0.0, 0.0, 0.0
    qk_d, qk_l, qk_c = 0.0, 0.0, 0.0
    ia0, ia1, ia2, ia3 = 0.0, 0.0, 0.0, 0.0
    ib0, ib1, ib2, ib3 = 0.0, 0.0, 0.0, 0.0
    a = 0
    while a < nA:
        if (not full) and 2 <= a <= nA - 3 and _uniform6(
                pa_d, pa_s, pa_l, pa_c, pa_o1, pa_o2, qa_d, qa_s, qa_l, qa_c, qa_o1, qa_o2,
                own):
            j = nA - 2 - a
            (t_dma, t_st, ld, c1, o1, o2, comp, wbytes, abytes, obytes) = _jump(
                j, pa_d - qa_d, own, t_dma, t_st, ld, c1, o1, o2, comp, wbytes, abytes,
                obytes, ia0, ia1, ia2, ia3)
            a = nA - 2
            pa_d, pa_s, pa_l, pa_c, pa_o1, pa_o2 = t_dma, t_st, ld, c1, o1, o2
            continue
        a0, a1, a2, a3 = comp, wbytes, abytes, obytes
        b = 0
        while b < nB:
            if (not full) and 2 <= b <= nB - 3 and _uniform6(
                    pb_d, pb_s, pb_l, pb_c, pb_o1, pb_o2, qb_d, qb_s, qb_l, qb_c, qb_o1,
                    qb_o2, own):
                j = nB - 2 - b
                (t_dma, t_st, ld, c1, o1, o2, comp, wbytes, abytes, obytes) = _jump(
                    j, pb_d - qb_d, own, t_dma, t_st, ld, c1, o1, o2, comp, wbytes, abytes,
                    obytes, ib0, ib1, ib2, ib3)
                b = nB - 2
                pb_d, pb_s, pb_l, pb_c, pb_o1, pb_o2 = t_dma, t_st, ld, c1, o1, o2
                continue
            b0, b1, b2, b3 = comp, wbytes, abytes, obytes
            k = 0
            lastX, lastW, lastA = 0.0, 0.0, 0.0
            while k < nK:
                if (not full) and 2 <= k <= nK - 3 and _uniform3(pk_d, pk_l, pk_c, qk_d,
                                                                 qk_l, qk_c):
                    j = nK - 2 - k
                    d = pk_d - qk_d
                    t_dma += j * d
                    ld += j * d
                    c1 += j * d
                    comp += j * lastX
                    wbytes += j * lastW
                    abytes += j * lastA
                    k = nK - 2
                    pk_d, pk_l, pk_c = t_dma, ld, c1
                    continue
                ci = (4 if a == nA - 1 else 0) + (2 if b == nB - 1 else 0) + (
                    1 if k == nK - 1 else 0)
                if xt[ci, 0] != gen:
                    m_sz, k_sz, n_sz = _dims(df, a, b, k, nA, nB, nK, At, Bt, Ktf, Atot,
                                             Btot, Ktot)
                    xt[ci, 1], xt[ci, 2] = tile_cycles(df, R, C, m_sz, k_sz, n_sz, cpm, wB,
                                                       aB, fw, fa, fsame, fill)
                    xt[ci, 3] = m_sz * n_sz * oB
                    xt[ci, 0] = gen
                X, Xf = xt[ci, 1], xt[ci, 2]
                has_next = True
                if k + 1 < nK:
                    na, nb, nk = a, b, k + 1
                elif b + 1 < nB:
                    na, nb, nk = a, b + 1, 0
                elif a + 1 < nA:
                    na, nb, nk = a + 1, 0, 0
                else:
                    has_next = False
                    na, nb, nk = a, b, k
                Ln, wbn, abn = 0.0, 0.0, 0.0
                if has_next:
                    li = 8 + (4 if na == nA - 1 else 0) + (2 if nb == nB - 1 else 0) + (
                        1 if nk == nK - 1 else 0) + (8 if na == 0 else 0) + (
                        16 if nb == 0 else 0)
                    if xt[li, 0] != gen:
                        mm, kk, nn = _dims(df, na, nb, nk, nA, nB, nK, At, Bt, Ktf, Atot,
                                           Btot, Ktot)
                        xt[li, 1], xt[li, 2], xt[li, 3] = _load_time(
                            df, na, nb, nk, p_reuse, q_reuse, mm, kk, nn, wB, aB, w_dma,
                            w_fix, w_pb, a_dma, a_fix, a_pb, two_ch)
                        xt[li, 0] = gen
                    Ln, wbn, abn = xt[li, 1], xt[li, 2], xt[li, 3]
                last_k = k == nK - 1
                S = 0.0
                if last_k:
                    ob = xt[ci, 3]
                    obytes += ob
                    if o_dma:
                        S = o_fix + ob * o_pb
                # one step (_step, with the state in scalars)
                ld_next = 0.0
                if has_next:
                    st = max(t_dma, c1)
                    ld_next = st + Ln
                    t_dma = ld_next
                start = max(ld, c1)
                if k == 0:
                    start = max(start, o2)
                end = start + X
                c1 = end
                if last_k:
                    if o_dma:
                        if _own_store(two_ch):
                            sst = max(end, t_st)
                            se = sst + S
                            t_st = se
                        else:
                            sst = max(end, t_dma)
                            se = sst + S
                            t_dma = se
                    else:
                        se = end
                    o2 = o1
                    o1 = se
                ld = ld_next
                qk_d, qk_l, qk_c = pk_d, pk_l, pk_c
                pk_d, pk_l, pk_c = t_dma, ld, c1
                comp += Xf
                wbytes += wbn
                abytes += abn
                lastX, lastW, lastA = Xf, wbn, abn
                steps += 1
                k += 1
            ib0, ib1 = comp - b0, wbytes - b1
            ib2, ib3 = abytes - b2, obytes - b3
            qb_d, qb_s, qb_l, qb_c, qb_o1, qb_o2 = pb_d, pb_s, pb_l, pb_c, pb_o1, pb_o2
            pb_d, pb_s, pb_l, pb_c, pb_o1, pb_o2 = t_dma, t_st, ld, c1, o1, o2
            b += 1
        ia0, ia1 = comp - a0, wbytes - a1
        ia2, ia3 = abytes - a2, obytes - a3
        qa_d, qa_s, qa_l, qa_c, qa_o1, qa_o2 = pa_d, pa_s, pa_l, pa_c, pa_o1, pa_o2
        pa_d, pa_s, pa_l, pa_c, pa_o1, pa_o2 = t_dma, t_st, ld, c1, o1, o2
        a += 1
    t = max(c1, o1, t_dma)
    if _own_store(two_ch) and o_dma:
        t = max(t, t_st)
    return t, comp, wbytes, abytes, obytes, steps


@njit(cache=True)
def _in(arr, c):  # pragma: no cover - numba
    for i in range(arr.shape[0]):
        if arr[i] == c:
            return True
    return False


@njit(cache=True)
def _fetches(df, M, K, N, Mt, Kt, Nt, wB, aB, keep=False):  # pragma: no cover - numba
    """Closed-form tile (re)loads of the loop nest: ``(loads of the operand indexed by
    (outer, k), loads of the one indexed by (middle, k), weight bytes, activation bytes)``.
    Weight-stationary (n, m, k): weights reload per m block unless K is at most two tiles;
    activations per n block unless one pass (m blocks x K tiles) is at most two tiles or
    ``keep``. Output-stationary (m, n, k) the other way round (:func:`_reuse`)."""
    nM, nK, nN = _ntiles(M, Mt), _ntiles(float(K), float(Kt)), _ntiles(float(N), float(Nt))
    return _fetches_n(df, M, K, N, wB, aB, keep, nM, nK, nN)


@njit(cache=True)
def _fetches_n(df, M, K, N, wB, aB, keep, nM, nK, nN):  # pragma: no cover - numba
    """:func:`_fetches` with the tile counts of the three dimensions given."""
    if df == WS:
        nA, nB = nN, nM
        p_tot, q_tot = K * N * wB, M * K * aB
    else:
        nA, nB = nM, nN
        p_tot, q_tot = M * K * aB, K * N * wB
    p_reuse, q_reuse = _reuse(df, nB, nK, keep)
    rp = 1 if p_reuse else nB
    p_loads, p_bytes = nA * nK * rp, p_tot * rp
    if q_reuse:
        q_loads, q_bytes = nB * nK, q_tot
    else:
        q_loads, q_bytes = nA * nB * nK, q_tot * nA
    if df == WS:
        return p_loads, q_loads, p_bytes, q_bytes
    return p_loads, q_loads, q_bytes, p_bytes


@njit(cache=True)
def keep_bytes(df, M, K, N, Mt, Kt, Nt, aB):  # pragma: no cover - numba
    """Staging bytes of the activations when one pass of them is kept (0 when keeping
    saves no load, so the plain double buffer is the only choice): output-stationary, the
    ``Mt x K`` block of an m block, reused by every n block; weight-stationary, all of
    ``M x K``, reused by every n block. Never less than the double buffer."""
    nM, nK, nN = _ntiles(M, Mt), _ntiles(float(K), float(Kt)), _ntiles(float(N), float(Nt))
    return _keep_bytes_n(df, M, K, Mt, Kt, aB, nM, nK, nN)


@njit(cache=True)
def _keep_bytes_n(df, M, K, Mt, Kt, aB, nM, nK, nN):  # pragma: no cover - numba
    """:func:`keep_bytes` with the tile counts of the three dimensions given."""
    if df == OS:
        if nK <= 2 or nN == 1:
            return 0.0
        block = Mt * K
    else:
        if nM * nK <= 2 or nN == 1:
            return 0.0
        block = M * K
    return max(block, 2.0 * Mt * Kt) * aB


#: Entries of a GEMM's chip-tile inputs ``rx`` (:func:`chip_fetch`, :func:`_reuse_costs`):
#: the cache's bytes for chip tiles, the weights' share beyond the cache and its per-tile
#: DMA cost (cycles per transfer, per byte), 1 when the activations live beyond the cache,
#: the cache's cycles per transfer and per byte, the core count, and the busy cycles a byte
#: re-read from the cache instead of from beyond it adds to the shared levels (weights,
#: activations; with off-chip ports one such pair per block of :func:`_shared_cycles`).
RX_COLS = ("room", "w_out", "w_fix_out", "w_pb_out", "a_out", "x_fix", "x_pb", "cores",
           "dF_w", "dF_a")
NRX = len(RX_COLS)


@njit(cache=True)
def chip_fetch(df, M, K, N, Mt, Kt, Nt, wB, aB, Wf, Af, room, w_out, a_out, cores=1.0):
    # pragma: no cover - numba
    """``(Wc, Ac)``: the bytes of the weights and activations fetched from beyond a
    chip-scope cache (a GPU's L2) when the per-core tiles ``Mt x Kt x Nt`` run inside chip
    tiles ``Mc x Nc x K`` (``Mc`` a power-of-two multiple of ``Mt`` or all of ``M``, ``Nc``
    a multiple of ``Nt`` or all of ``N``). Each operand comes from beyond the cache once per
    chip tile that needs it, ``Wc = K N wB ceil(M / Mc)`` and ``Ac = M K aB ceil(N / Nc)``,
    never more than the per-core tiles fetch (``Wf``, ``Af``). Only what lives beyond the
    cache takes its room (``w_out``: the weights' share there; ``a_out`` 1 when the
    activations are). A chip tile is held in one of two ways:

    - *whole panels*: its operands fit, ``a_out Mc K aB + w_out K Nc wB <= room``;
    - *one wave*: at most ``cores`` per-core tiles (``Mc Nc <= cores Mt Nt``) that step
      through ``K`` together, so the cache holds their current and next ``Kt`` slabs,
      ``2 Kt (a_out Mc aB + w_out Nc wB) <= room``.

    The chip tile with the fewest bytes from beyond the cache (``w_out Wc + a_out Ac``, the
    first found on a tie) counts; ``(Wf, Af)`` when nothing lives beyond the cache."""
    if room <= 0.0 or (w_out <= 0.0 and a_out <= 0.0):
        return Wf, Af
    best = w_out * Wf + a_out * Af
    bw, ba = Wf, Af
    nmt = _ntiles(float(M), Mt)
    for wave in range(2):
        wcol = w_out * wB * (2.0 * Kt if wave == 1 else K)
        arow = a_out * aB * (2.0 * Kt if wave == 1 else K)
        i = 1
        while True:
            Mc = min(i * Mt, float(M))
            left = room - arow * Mc
            if left < 0.0:
                break
            Nc = float(N)
            if wcol > 0.0:
                Nc = math.floor(left / wcol / Nt + 1e-9) * Nt
            if wave == 1:
                Nc = min(Nc, math.floor(cores / _ntiles(Mc, Mt) + 1e-9) * Nt)
            if Nc >= N:
                Nc = float(N)
            if Nc >= min(float(Nt), float(N)) - 1e-9:
                wc = min(Wf, K * N * wB * _ntiles(float(M), Mc))
                ac = min(Af, M * K * aB * _ntiles(float(N), Nc))
                cost = w_out * wc + a_out * ac
                if cost < best * (1.0 - 1e-12):
                    best, bw, ba = cost, wc, ac
            if Mc >= M or i >= nmt:
                break
            i *= 2
    return bw, ba


@njit(cache=True)
def chip_fetches(df, M, K, N, Mt, Kt, Nt, wB, aB, Wf, Af, rx):  # pragma: no cover - numba
    """:func:`chip_fetch` of every op (arrays; ``rx`` [ops x NRX]): ``(Wc, Ac)``."""
    n = M.shape[0]
    wc = Wf.copy()
    ac = Af.copy()
    for i in range(n):
        if rx[i, 0] > 0.0:
            wc[i], ac[i] = chip_fetch(int(df[i]), M[i], K[i], N[i], Mt[i], Kt[i], Nt[i],
                                      wB[i], aB, Wf[i], Af[i], rx[i, 0], rx[i, 1], rx[i, 4],
                                      rx[i, 7])
    return wc, ac


@njit(cache=True)
def _reuse_costs(df, M, K, N, Mt, Kt, Nt, wB, aB, wf, af, w_fix, w_pb, a_fix, a_pb, rx):
    # pragma: no cover - numba
    """Per-tile DMA costs and shared-level busy cycles of a tiling whose re-reads a cache
    serves (:func:`chip_fetch`): a share ``1 - Wc / Wf`` of the weight tiles from beyond
    the cache come from the cache instead (its latency and bandwidth), likewise the
    activations. Returns ``(w_fix, w_pb, a_fix, a_pb, Wc, Ac)``; the inputs unchanged
    without a cache (``rx[0] <= 0``)."""
    if rx[0] <= 0.0:
        return w_fix, w_pb, a_fix, a_pb, wf, af
    wc, ac = chip_fetch(df, M, K, N, Mt, Kt, Nt, wB, aB, wf, af, rx[0], rx[1], rx[4], rx[7])
    if wf > 0.0 and wc < wf:
        r = 1.0 - wc / wf
        w_fix = w_fix + r * (rx[1] * rx[5] - rx[2])
        w_pb = w_pb + r * (rx[1] * rx[6] - rx[3])
    if rx[4] > 0.0 and af > 0.0 and ac < af:
        r = 1.0 - ac / af
        a_fix = a_fix + r * (rx[5] - a_fix)
        a_pb = a_pb + r * (rx[6] - a_pb)
    return w_fix, w_pb, a_fix, a_pb, wc, ac


@njit(cache=True)
def _lower_bound(df, M, K, N, Mt, Kt, Nt, R, C, cpm, wB, aB, oB, w_fix, w_pb, a_fix, a_pb,
                 o_fix, o_pb, two_ch, fw=0.0, fa=0.0, fsame=True, keep=False, fill=PER_FOLD):
    # pragma: no cover
    """A lower bound of :func:`pipeline` (total compute; total DMA), in closed form."""
    return _lower_bounds(df, M, K, N, Mt, Kt, Nt, R, C, cpm, wB, aB, oB, w_fix, w_pb, a_fix,
                         a_pb, o_fix, o_pb, two_ch, fw, fa, fsame, keep, fill,
                         _fetches(df, M, K, N, Mt, Kt, Nt, wB, aB, keep), _ntiles(M, Mt),
                         _ntiles(float(K), float(Kt)), _ntiles(float(N), float(Nt)))[0]


@njit(cache=True)
def _lower_bounds(df, M, K, N, Mt, Kt, Nt, R, C, cpm, wB, aB, oB, w_fix, w_pb, a_fix, a_pb,
                  o_fix, o_pb, two_ch, fw, fa, fsame, keep, fill, fx, nM, nK, nN):
    # pragma: no cover - numba
    """:func:`_lower_bound` and its compute term (the tile cycles of every tile); ``fx`` is
    :func:`_fetches` of the tiling and ``nM, nK, nN`` its tile counts (the caller has them
    already)."""
    # an edge tile as large as the others has their tile cycles: computed once
    em = nM > 1 and M - (nM - 1) * Mt == Mt
    ek = nK > 1 and K - (nK - 1) * Kt == Kt
    en = nN > 1 and N - (nN - 1) * Nt == Nt
    x0, x1, x2, x3, x4, x5, x6, x7 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    comp = 0.0
    for im in range(2):
        cm = nM - 1 if im == 0 else 1
        sm = Mt if im == 0 else M - (nM - 1) * Mt
        if cm == 0:
            continue
        for ik in range(2):
            ck = nK - 1 if ik == 0 else 1
            sk = Kt if ik == 0 else K - (nK - 1) * Kt
            if ck == 0:
                continue
            for i_n in range(2):
                cn = nN - 1 if i_n == 0 else 1
                sn = Nt if i_n == 0 else N - (nN - 1) * Nt
                if cn == 0:
                    continue
                own = 4 * im + 2 * ik + i_n
                key = (4 * (0 if (im == 1 and em) else im) + 2 * (0 if (ik == 1 and ek) else ik)
                       + (0 if (i_n == 1 and en) else i_n))
                if key == own:
                    x = tile_cycles(df, R, C, sm, sk, sn, cpm, wB, aB, fw, fa, fsame, fill)[0]
                    if key == 0:
                        x0 = x
                    elif key == 1:
                        x1 = x
                    elif key == 2:
                        x2 = x
                    elif key == 3:
                        x3 = x
                    elif key == 4:
                        x4 = x
                    elif key == 5:
                        x5 = x
                    elif key == 6:
                        x6 = x
                    else:
                        x7 = x
                else:       # a class visited before with the same tile sizes
                    x = (x0 if key == 0 else x1 if key == 1 else x2 if key == 2 else
                         x3 if key == 3 else x4 if key == 4 else x5 if key == 5 else
                         x6 if key == 6 else x7)
                comp += cm * ck * cn * x
    dma = _dma_term(df, M, N, oB, w_fix, w_pb, a_fix, a_pb, o_fix, o_pb, two_ch, fx, nM, nN)
    return max(comp, dma), comp


@njit(cache=True)
def _dma_term(df, M, N, oB, w_fix, w_pb, a_fix, a_pb, o_fix, o_pb, two_ch, fx, nM, nN):
    # pragma: no cover - numba
    """The DMA term of :func:`_lower_bound` (every load and store on its stream; ``fx`` is
    :func:`_fetches` of the tiling): the bound is the larger of it and the compute term,
    so never below it."""
    p_loads, q_loads, wf, af = fx
    if df == WS:
        nA, nB = nN, nM
        p_bytes, q_bytes = wf, af
        p_fix, p_pb, q_fix, q_pb = w_fix, w_pb, a_fix, a_pb
    else:
        nA, nB = nM, nN
        p_bytes, q_bytes = af, wf
        p_fix, p_pb, q_fix, q_pb = a_fix, a_pb, w_fix, w_pb
    tp = p_loads * p_fix + p_bytes * p_pb
    tq = q_loads * q_fix + q_bytes * q_pb
    ts = nA * nB * o_fix + M * N * oB * o_pb
    loads = max(tp, tq) if _par_loads(two_ch) else tp + tq
    return max(loads, ts) if _own_store(two_ch) else loads + ts


#: The largest tile count of a tiling for which :func:`_pipeline_bound` may prune: the
#: closed form's error grows with the steps it jumps over (see there).
BOUND_MAX_TILES = 200000.0


@njit(cache=True)
def _ends(df, M, K, N, Mt, Kt, Nt, wB, aB, oB, w_fix, w_pb, a_fix, a_pb, o_fix, o_pb, two_ch,
          keep):  # pragma: no cover - numba
    """The first tile's load and the last tile's store of :func:`pipeline` and the number
    of tiles: with the compute term of :func:`_lower_bounds` (every
    tile's cycles), ``L0 + compute + S_l`` is the compute chain of :func:`_pipeline_bound`
    at the cost of one tile."""
    (w_dma, a_dma, o_dma, Atot, At, Btot, Bt, Ktot, Ktf, nA, nB, nK, p_reuse,
     q_reuse) = _loops(df, M, K, N, Mt, Kt, Nt, w_fix, w_pb, a_fix, a_pb, o_fix, o_pb, keep)
    m0, k0, n0 = _dims(df, 0, 0, 0, nA, nB, nK, At, Bt, Ktf, Atot, Btot, Ktot)
    l0, _, _ = _load_time(df, 0, 0, 0, p_reuse, q_reuse, m0, k0, n0, wB, aB, w_dma, w_fix,
                          w_pb, a_dma, a_fix, a_pb, two_ch)
    s_l = 0.0
    if o_dma:
        m_sz, _, n_sz = _dims(df, nA - 1, nB - 1, nK - 1, nA, nB, nK, At, Bt, Ktf, Atot, Btot,
                              Ktot)
        s_l = o_fix + m_sz * n_sz * oB * o_pb
    return l0, s_l, float(nA) * float(nB) * float(nK)


@njit(cache=True)
def _pipeline_bound(df, M, K, N, Mt, Kt, Nt, R, C, cpm, wB, aB, oB, w_fix, w_pb, a_fix, a_pb,
                    o_fix, o_pb, two_ch, fw=0.0, fa=0.0, fsame=True, keep=False,
                    fill=PER_FOLD):  # pragma: no cover - numba
    """A lower bound of what :func:`pipeline` returns, tighter than :func:`_lower_bound`
    (which orders the candidates and must stay as it is), for leaving out candidates that a
    front point already dominates. With ``X`` the tile cycles, ``L`` the load and ``S`` the
    store time of a tile (in the loop order; the first tile's load ``L0``, the last tile's
    ``X_l``, ``S_l``), the recurrences of the module docstring give

    - the compute chain: nothing computes before the first load, the tiles compute one after
      the other and the last store follows the last compute: ``L0 + sum X + S_l``;
    - the load stream: every load runs on the one DMA stream, the last tile computes after
      its load and is stored after that: ``sum L + X_l + S_l``;
    - the stores: ``sum S`` on a stream of their own, ``sum L + sum S`` on the load
      stream.

    The sums run over the at most 3 x 3 x 2 classes of tiles that differ (first, inner,
    last outer and middle block; inner or last ``k`` tile) times their counts. Returns
    ``(bound, number of tiles P)``.

    The closed form (module docstring) is not the recurrences to the last bit: it jumps over
    ``j`` steps (tiles or blocks) once two consecutive ones moved every time stamp by the
    same ``d`` within ``tol = 1e-9 max(1, |d|) + 1e-12 max(1, |t|)``. The recurrences are a
    max-plus map, homogeneous and non-expansive in the max norm, so such a jump is off by at
    most ``j tol``. With costs that are not negative every time stamp only grows, the jumps
    advance the DMA stream by ``sum j |d| <= t`` in all, and they skip ``sum j <= 3 P``
    steps, so the closed form is off by at most ``1e-9 t + 3e-9 P + 3e-12 P max(1, t)``,
    below ``7e-7 t + 7e-4`` for ``P <= BOUND_MAX_TILES``. :func:`_front` therefore prunes
    only with ``bound - 1e-6 bound - 1e-3``, only for ``P <= BOUND_MAX_TILES`` and costs that
    are not negative; the rounding of the sums is far smaller. The tests check the bound
    against :func:`pipeline` and :func:`pipeline_reference`."""
    (w_dma, a_dma, o_dma, Atot, At, Btot, Bt, Ktot, Ktf, nA, nB, nK, p_reuse,
     q_reuse) = _loops(df, M, K, N, Mt, Kt, Nt, w_fix, w_pb, a_fix, a_pb, o_fix, o_pb, keep)
    sum_l = 0.0
    sum_x = 0.0
    sum_s = 0.0
    l0 = 0.0
    x_l = 0.0
    s_l = 0.0
    for ca in range(3):
        # the first, the inner and the last block of the outer loop, and their counts
        a = 0 if ca == 0 else (1 if ca == 1 else nA - 1)
        cA = 1 if ca == 0 else (nA - 2 if ca == 1 else (1 if nA >= 2 else 0))
        if cA <= 0:
            continue
        for cb in range(3):
            b = 0 if cb == 0 else (1 if cb == 1 else nB - 1)
            cB = 1 if cb == 0 else (nB - 2 if cb == 1 else (1 if nB >= 2 else 0))
            if cB <= 0:
                continue
            for ck in range(2):
                k = 0 if ck == 0 else nK - 1
                cK = nK - 1 if ck == 0 else 1
                if cK <= 0:
                    continue
                m_sz, k_sz, n_sz = _dims(df, a, b, k, nA, nB, nK, At, Bt, Ktf, Atot, Btot,
                                         Ktot)
                L, _, _ = _load_time(df, a, b, k, p_reuse, q_reuse, m_sz, k_sz, n_sz, wB, aB,
                                     w_dma, w_fix, w_pb, a_dma, a_fix, a_pb, two_ch)
                X = tile_cycles(df, R, C, m_sz, k_sz, n_sz, cpm, wB, aB, fw, fa, fsame,
                                fill)[0]
                c = float(cA) * float(cB) * float(cK)
                sum_l += c * L
                sum_x += c * X
                if ca == 0 and cb == 0 and k == 0:
                    l0 = L
                if ck == 1:
                    S = o_fix + m_sz * n_sz * oB * o_pb if o_dma else 0.0
                    sum_s += float(cA) * float(cB) * S
                    if a == nA - 1 and b == nB - 1:
                        x_l, s_l = X, S
    t = max(l0 + sum_x + s_l, sum_l + x_l + s_l)
    if o_dma:
        # every store on its own stream, or with the loads on theirs
        t = max(t, sum_s if _own_store(two_ch) else sum_l + sum_s)
    return t, float(nA) * float(nB) * float(nK)


@njit(cache=True)
def _pow2_count(lo, hi):  # pragma: no cover - numba
    """How many of lo, 2lo, 4lo, ... are < hi."""
    c = 0
    x = lo
    while x < hi:
        c += 1
        x *= 2.0
    return c


@njit(cache=True)
def tile_candidates(M, K, N, R, C):  # pragma: no cover - numba
    """The fixed menu of L1 tiles: ``Mt`` in {R*2^i < M} + {M}; ``(Kt, Nt)`` over the grid
    ``Kt`` in {R*2^i < K} + {K} times ``Nt`` in {min(N, C)} + {2C*2^j < N} + {N}. The chain
    that grows ``Kt`` at ``Nt = min(N, C)`` and then ``Nt`` at ``Kt = K`` comes first, the
    rest of the grid (``Kt < K`` with ``Nt > C``: wide weight tiles for staging too small for
    a whole ``K``) after it. The menu does not depend on capacities or bits, so more buffer
    never removes a candidate."""
    nm = _pow2_count(float(R), M) + 1
    ms = np.empty(nm)
    x = float(R)
    for i in range(nm - 1):
        ms[i] = x
        x *= 2.0
    ms[nm - 1] = M
    nk = _pow2_count(float(R), float(K)) + 1
    nn = _pow2_count(2.0 * C, float(N)) + (1 if N > C else 0)
    ks = np.empty(nk + nn + (nk - 1) * nn)
    ns = np.empty(nk + nn + (nk - 1) * nn)
    x = float(R)
    n0 = float(min(N, C))
    for i in range(nk - 1):
        ks[i] = x
        ns[i] = n0
        x *= 2.0
    ks[nk - 1] = float(K)
    ns[nk - 1] = n0
    x = 2.0 * C
    for i in range(nn):
        ks[nk + i] = float(K)
        ns[nk + i] = x if x < N else float(N)
        x *= 2.0
    c = nk + nn
    kx = float(R)
    for i in range(nk - 1):
        x = 2.0 * C
        for j in range(nn):
            ks[c] = kx
            ns[c] = x if x < N else float(N)
            x *= 2.0
            c += 1
        kx *= 2.0
    return ms, ks, ns


#: Columns of a tiling front point (:func:`tiling_front`).
FRONT_COLS = ("cycles", "compute", "dataflow", "tile_m", "tile_k", "tile_n", "w_fetch",
              "a_fetch", "o_bytes", "shared_cycles")
FRONT_MAX = 8


@njit(cache=True)
def _shared_cycles(df, M, K, N, Mt, Wf, Af, R, wB, flc):  # pragma: no cover - numba
    """Busy cycles of the shared (chip and off-chip) levels: linear in the fetched bytes with
    the per-op coefficients ``flc`` = (per weight byte fetched, per activation byte fetched,
    per weight byte the array reads, constant for weight-stationary, constant for
    output-stationary). With off-chip ports ``flc`` holds one such block of 5 for the levels
    without ports and one per port after it: the ports work side by side, so the result is
    the first block plus the busiest port."""
    return _shared_blocks(df, M, K, N, Mt, Wf, Af, 0.0, 0.0, wB, flc, flc, False)


@njit(cache=True)
def _shared_cycles_rx(df, M, K, N, Mt, Wf, Af, Wc, Ac, R, wB, flc, rx):
    # pragma: no cover - numba
    """:func:`_shared_cycles` with a cache serving re-reads (:func:`_reuse_costs`): every
    block moves ``Wf - Wc`` weight and ``Af - Ac`` activation bytes from beyond the cache to
    the cache at its own rates ``rx[8 + 2 b]``, ``rx[9 + 2 b]`` (:data:`RX_COLS`); exactly
    :func:`_shared_cycles` without a cache."""
    return _shared_blocks(df, M, K, N, Mt, Wf, Af, Wc, Ac, wB, flc, rx, rx[0] > 0.0)


@njit(cache=True)
def _shared_blocks(df, M, K, N, Mt, Wf, Af, Wc, Ac, wB, flc, rx, cached):
    # pragma: no cover - numba
    """The one loop of :func:`_shared_cycles` and :func:`_shared_cycles_rx`: each block of 5
    coefficients, plus the cache's re-read term when ``cached``; the first block plus the
    busiest port."""
    passes = math.ceil(M / Mt - 1e-9) if df == WS else 0.0
    t = 0.0
    top = 0.0
    for b in range(flc.shape[0] // 5):
        c = 5 * b
        if df == WS:
            v = flc[c] * Wf + flc[c + 1] * Af + flc[c + 2] * K * N * wB * passes + flc[c + 3]
        else:
            v = flc[c] * Wf + flc[c + 1] * Af + flc[c + 4]
        if cached:
            v += rx[8 + 2 * b] * (Wf - Wc) + rx[9 + 2 * b] * (Af - Ac)
        if b == 0:
            t = v
        elif b == 1:
            top = v
        else:
            top = max(top, v)
    if flc.shape[0] > 5:
        t += top
    return t


@njit(cache=True)
def tiling_front(df_mask, M, K, N, R, C, cpm, wB, aB, oB, accB, w_fix, w_pb, a_fix, a_pb,
                 o_fix, o_pb, two_ch, stage_cap, lw, la, lo, w_stage, a_stage, flc,
                 full, fw=0.0, fa=0.0, fsame=True, fill=PER_FOLD):  # pragma: no cover - numba
    """The Pareto front, over the feasible tiling menu, of (cycles on one core, busy cycles
    of the shared levels): a tiling that re-reads weights may be faster on its own core and
    yet slow a phase whose cores share the DRAM; the scheduler picks from the front.

    ``stage_cap[l]``: staging bytes per core of level ``l``; weight tiles go to level ``lw``
    when ``w_stage`` (the weights are not all resident there), activation tiles to ``la``
    when ``a_stage``, output tiles (accumulator width) to ``lo``; double-buffered. A tiling
    whose activations of one pass fit (:func:`keep_bytes`) keeps them and loads them once.
    Candidates are tried in order of a closed-form lower bound of their cycles and skipped
    when a point already found is no slower and no busier, so the front is exact over the
    menu. When nothing fits, the smallest tile is used and ``overflow`` is set.

    Returns ``(front [points x len(FRONT_COLS)] sorted by cycles, points, overflow)``.
    """
    front, nf, overflow = _front(df_mask, M, K, N, R, C, cpm, wB, aB, oB, accB, w_fix, w_pb,
                                 a_fix, a_pb, o_fix, o_pb, two_ch, stage_cap, lw, la, lo,
                                 w_stage, a_stage, flc, full, fw, fa, fsame,
                                 np.zeros((1, 10)), 0, stage_cap, False, False, np.zeros(NRX),
                                 fill)
    return front[:nf].copy(), nf, overflow


@njit(cache=True)
def _fits(use, stage_cap, lw, la, lo, w_stage, a_stage, Mt, Kt, Nt, wB, a_bytes, accB):
    # pragma: no cover - numba
    """Whether the double-buffered tiles ``Mt x Kt x Nt`` fit the staging capacities, with
    ``a_bytes`` of activation staging."""
    use[:] = 0.0
    if w_stage:
        use[lw] += 2.0 * Kt * Nt * wB
    if a_stage:
        use[la] += a_bytes
    use[lo] += 2.0 * Mt * Nt * accB
    for lv in range(use.shape[0]):
        if use[lv] > stage_cap[lv]:
            return False
    return True


@njit(cache=True)
def _choose(use, stage_cap, lw, la, lo, w_stage, a_stage, df, M, K, N, Mt, Kt, Nt, wB, aB,
            accB):  # pragma: no cover - numba
    """How the tiling fits: 1 with the activations of one pass kept (:func:`keep_bytes`),
    0 with the plain double buffer, -1 not at all. Keeping loads fewer tiles and nothing
    more, so it is taken whenever it fits."""
    if a_stage:
        kb = keep_bytes(df, M, K, N, Mt, Kt, Nt, aB)
        if kb > 0.0 and _fits(use, stage_cap, lw, la, lo, w_stage, a_stage, Mt, Kt, Nt, wB,
                              kb, accB):
            return 1
    if _fits(use, stage_cap, lw, la, lo, w_stage, a_stage, Mt, Kt, Nt, wB, 2.0 * Mt * Kt * aB,
             accB):
        return 0
    return -1


@njit(cache=True)
def _fit_caps(stage_cap, lw, la, lo):  # pragma: no cover - numba
    """The capacities :func:`_fits_at` compares with: those of the staging levels of
    weights, activations and outputs, and whether every other level holds its zero use."""
    ok = True
    for lv in range(stage_cap.shape[0]):
        if lv != lw and lv != la and lv != lo and 0.0 > stage_cap[lv]:
            ok = False
    return stage_cap[lw], stage_cap[la], stage_cap[lo], ok


@njit(cache=True)
def _fits_at(caps, lw, la, lo, w_stage, a_stage, Mt, Kt, Nt, wB, a_bytes, accB):
    # pragma: no cover - numba
    """:func:`_fits` with the capacities of :func:`_fit_caps` in scalars: the same sums per
    level in the same order (weights, activations, outputs), no array."""
    cw, ca, co, ok = caps
    if not ok:
        return False
    uw, ua, uo = 0.0, 0.0, 0.0          # use of levels lw, la (if not lw), lo (if neither)
    if w_stage:
        uw += 2.0 * Kt * Nt * wB
    if a_stage:
        if la == lw:
            uw += a_bytes
        else:
            ua += a_bytes
    ob = 2.0 * Mt * Nt * accB
    if lo == lw:
        uw += ob
    elif lo == la:
        ua += ob
    else:
        uo += ob
    if uw > cw:
        return False
    if la != lw and ua > ca:
        return False
    return not (lo != lw and lo != la and uo > co)


@njit(cache=True)
def _choose_at(caps, lw, la, lo, w_stage, a_stage, df, M, K, N, Mt, Kt, Nt, wB, aB, accB):
    # pragma: no cover - numba
    """:func:`_choose` with the capacities of :func:`_fit_caps` (:func:`_fits_at`)."""
    return _choose_n(caps, lw, la, lo, w_stage, a_stage, df, M, K, Mt, Kt, Nt, wB, aB, accB,
                     _ntiles(M, Mt), _ntiles(float(K), float(Kt)), _ntiles(float(N), float(Nt)))


@njit(cache=True)
def _choose_n(caps, lw, la, lo, w_stage, a_stage, df, M, K, Mt, Kt, Nt, wB, aB, accB, nM, nK,
              nN):  # pragma: no cover - numba
    """:func:`_choose_at` with the tile counts of the three dimensions given."""
    if a_stage:
        kb = _keep_bytes_n(df, M, K, Mt, Kt, aB, nM, nK, nN)
        if kb > 0.0 and _fits_at(caps, lw, la, lo, w_stage, a_stage, Mt, Kt, Nt, wB, kb,
                                 accB):
            return 1
    if _fits_at(caps, lw, la, lo, w_stage, a_stage, Mt, Kt, Nt, wB, 2.0 * Mt * Kt * aB,
                accB):
        return 0
    return -1


@njit(cache=True)
def _front(df_mask, M, K, N, R, C, cpm, wB, aB, oB, accB, w_fix, w_pb, a_fix, a_pb,
           o_fix, o_pb, two_ch, stage_cap, lw, la, lo, w_stage, a_stage, flc, full, fw, fa,
           fsame, prune, nprune, skip_cap, skip_a_stage, use_skip, rx, fill=PER_FOLD):
    # pragma: no cover
    """:func:`tiling_front`, with two ways to leave out candidates that cannot reach a
    merged front (:func:`pair_front`): a candidate whose lower bound is no better than a
    point of ``prune[:nprune]`` in both objectives, and, with ``use_skip``, a tiling that
    also fits ``skip_cap`` (staging activation tiles when ``skip_a_stage``), which the other
    option evaluates no slower and no busier. ``overflow`` is set only when no tiling fits
    at all; candidates left out this way leave the front empty instead. ``rx``
    (:data:`RX_COLS`): a chip-scope cache serving re-reads (:func:`_reuse_costs`; none when
    ``rx[0] <= 0``). Returns the full ``[FRONT_MAX x 10]`` buffer, the point count and the
    flag."""
    ms, ks, ns = tile_candidates(M, K, N, R, C)
    ncand = 2 * ms.shape[0] * ks.shape[0]
    # tile counts of every menu entry (the same _ntiles as everywhere), once
    nms = np.empty(ms.shape[0], np.int64)
    nks = np.empty(ks.shape[0], np.int64)
    nns = np.empty(ks.shape[0], np.int64)
    for i in range(ms.shape[0]):
        nms[i] = _ntiles(M, ms[i])
    for j in range(ks.shape[0]):
        nks[j] = _ntiles(float(K), float(ks[j]))
        nns[j] = _ntiles(float(N), float(ns[j]))
    lb = np.empty(ncand)
    lbc = np.empty(ncand)       # the compute term of the lower bound
    fl = np.empty(ncand)
    cdf = np.empty(ncand, np.int64)
    cm = np.empty(ncand)
    ckt = np.empty(ncand)
    cnt = np.empty(ncand)
    ckeep = np.zeros(ncand, np.bool_)
    cost = np.empty((ncand, 4))     # per-tile DMA costs with the cache's re-reads
    caps = _fit_caps(stage_cap, lw, la, lo)
    skip_caps = _fit_caps(skip_cap, lw, la, lo)
    ws = np.zeros((40, 4))      # the pipelines' table (_pipeline), one per front
    gen = 0.0
    n = 0
    feasible = 0
    for df in range(2):
        if not (df_mask >> df) & 1:
            continue
        for i in range(ms.shape[0]):
            for j in range(ks.shape[0]):
                Mt, Kt, Nt = ms[i], ks[j], ns[j]
                nM, nK, nN = nms[i], nks[j], nns[j]
                how = _choose_n(caps, lw, la, lo, w_stage, a_stage, df, M, K, Mt, Kt, Nt, wB,
                                aB, accB, nM, nK, nN)
                if how < 0:
                    continue
                feasible += 1
                if use_skip:
                    # the other option runs this tiling no slower if it loads its
                    # activations no more often
                    other = _choose_n(skip_caps, lw, la, lo, w_stage, skip_a_stage, df, M,
                                      K, Mt, Kt, Nt, wB, aB, accB, nM, nK, nN)
                    if other >= how:
                        continue
                keep = how == 1
                fx = _fetches_n(df, M, K, N, wB, aB, keep, nM, nK, nN)
                wf, af = fx[2], fx[3]
                wfx, wpb, afx, apb, wc, ac = _reuse_costs(df, M, K, N, Mt, Kt, Nt, wB, aB,
                                                          wf, af, w_fix, w_pb, a_fix, a_pb,
                                                          rx)
                fl[n] = _shared_cycles_rx(df, M, K, N, Mt, wf, af, wc, ac, R, wB, flc, rx)
                if nprune > 0:
                    # a point of prune no slower than the DMA term (so than the lower bound)
                    # and no busier leaves the candidate out below whenever it comes: drop
                    # it now (the others keep their order)
                    dma = _dma_term(df, M, N, oB, wfx, wpb, afx, apb, o_fix, o_pb, two_ch, fx,
                                    nM, nN)
                    covered = False
                    for f in range(nprune):
                        if prune[f, 0] <= dma and prune[f, 9] <= fl[n]:
                            covered = True
                            break
                    if covered:
                        continue
                lb[n], lbc[n] = _lower_bounds(df, M, K, N, Mt, Kt, Nt, R, C, cpm, wB, aB,
                                              oB, wfx, wpb, afx, apb, o_fix, o_pb, two_ch,
                                              fw, fa, fsame, keep, fill, fx, nM, nK, nN)
                cost[n, 0], cost[n, 1], cost[n, 2], cost[n, 3] = wfx, wpb, afx, apb
                cdf[n], cm[n], ckt[n], cnt[n], ckeep[n] = df, Mt, Kt, Nt, keep
                n += 1
    overflow = False
    if feasible == 0:
        overflow = True
        for df in range(2):
            if (df_mask >> df) & 1:
                Mt, Kt, Nt = ms[0], ks[0], ns[0]
                lb[n] = 0.0
                lbc[n] = 0.0
                _, _, wf, af = _fetches(df, M, K, N, Mt, Kt, Nt, wB, aB)
                wfx, wpb, afx, apb, wc, ac = _reuse_costs(df, M, K, N, Mt, Kt, Nt, wB, aB,
                                                          wf, af, w_fix, w_pb, a_fix, a_pb,
                                                          rx)
                fl[n] = _shared_cycles_rx(df, M, K, N, Mt, wf, af, wc, ac, R, wB, flc, rx)
                cost[n, 0], cost[n, 1], cost[n, 2], cost[n, 3] = wfx, wpb, afx, apb
                cdf[n], cm[n], ckt[n], cnt[n], ckeep[n] = df, Mt, Kt, Nt, False
                n += 1
    order = np.argsort(lb[:n], kind="mergesort")
    front = np.zeros((FRONT_MAX, 10))
    nf = 0
    for ii in range(n):
        c = order[ii]
        skip = False
        for f in range(nf):
            if front[f, 0] <= lb[c] and front[f, 9] <= fl[c]:
                skip = True
                break
        for f in range(nprune):
            if prune[f, 0] <= lb[c] and prune[f, 9] <= fl[c]:
                skip = True
                break
        if skip:
            continue
        # the fastest point of the front no busier than the candidate: when the candidate's
        # pipeline bound already reaches it, the candidate would be dominated (below)
        thr = np.inf
        for f in range(nf):
            if front[f, 9] <= fl[c] and front[f, 0] < thr:
                thr = front[f, 0]
        if thr < np.inf:
            # the compute chain from the lower bound's compute term first (one tile's load
            # and store more), then the whole pipeline bound
            l0, s_l, ntl = _ends(cdf[c], M, K, N, cm[c], ckt[c], cnt[c], wB, aB, oB,
                                 cost[c, 0], cost[c, 1], cost[c, 2], cost[c, 3], o_fix, o_pb,
                                 two_ch, ckeep[c])
            if ntl <= BOUND_MAX_TILES and min(cost[c, 0], cost[c, 1], cost[c, 2], cost[c, 3],
                                              o_fix, o_pb, 0.0) == 0.0:
                bnd = l0 + lbc[c] + s_l
                if bnd - 1e-6 * bnd - 1e-3 >= thr:
                    continue
                bnd, _ = _pipeline_bound(cdf[c], M, K, N, cm[c], ckt[c], cnt[c], R, C, cpm,
                                         wB, aB, oB, cost[c, 0], cost[c, 1], cost[c, 2],
                                         cost[c, 3], o_fix, o_pb, two_ch, fw, fa, fsame,
                                         ckeep[c], fill)
                if bnd - 1e-6 * bnd - 1e-3 >= thr:
                    continue
        gen += 1.0
        r = _pipeline(cdf[c], M, K, N, cm[c], ckt[c], cnt[c], R, C, cpm, wB, aB, oB,
                      cost[c, 0], cost[c, 1], cost[c, 2], cost[c, 3], o_fix, o_pb, two_ch,
                      full, fw, fa, fsame, ckeep[c], fill, ws, gen)
        t = r[0]
        dominated = False
        for f in range(nf):
            if front[f, 0] <= t and front[f, 9] <= fl[c]:
                dominated = True
                break
        if dominated:
            continue
        # drop points the new one dominates, then insert keeping the order by cycles
        k = 0
        for f in range(nf):
            if not (t <= front[f, 0] and fl[c] <= front[f, 9]):
                front[k, :] = front[f, :]
                k += 1
        nf = k
        if nf == FRONT_MAX:
            continue
        pos = nf
        while pos > 0 and front[pos - 1, 0] > t:
            front[pos, :] = front[pos - 1, :]
            pos -= 1
        front[pos, 0], front[pos, 1], front[pos, 2] = t, r[1], cdf[c]
        front[pos, 3], front[pos, 4], front[pos, 5] = cm[c], ckt[c], cnt[c]
        front[pos, 6], front[pos, 7], front[pos, 8], front[pos, 9] = r[2], r[3], r[4], fl[c]
        nf += 1
    return front, nf, overflow


@njit(cache=True)
def best_tiling(df_mask, M, K, N, R, C, cpm, wB, aB, oB, accB, w_fix, w_pb, a_fix, a_pb,
                o_fix, o_pb, two_ch, stage_cap, lw, la, lo, w_stage, a_stage,
                full, fw=0.0, fa=0.0, fsame=True, fill=PER_FOLD):  # pragma: no cover - numba
    """The fastest tiling of the feasible menu on one core (the front's first point when the
    shared levels are ignored): ``(cycles, compute, dataflow, Mt, Kt, Nt,
    weight_fetch_bytes, act_fetch_bytes, output_bytes, overflow)``."""
    front, nf, overflow = tiling_front(df_mask, M, K, N, R, C, cpm, wB, aB, oB, accB, w_fix,
                                       w_pb, a_fix, a_pb, o_fix, o_pb, two_ch, stage_cap, lw,
                                       la, lo, w_stage, a_stage, np.zeros(5), full, fw, fa,
                                       fsame, fill)
    p = front[0]
    return (p[0], p[1], int(p[2]), p[3], p[4], p[5], p[6], p[7], p[8], overflow)


def pipeline_reference(df, M, K, N, Mt, Kt, Nt, R, C, cpm, wB, aB, oB, w_fix, w_pb, a_fix,
                       a_pb, o_fix, o_pb, two_ch, fw=0.0, fa=0.0, fsame=True, keep=False,
                       fill=PER_FOLD):
    """Plain-Python tile-by-tile model of :func:`pipeline` (an explicit list of tiles and the
    recurrences of the module docstring), for tests. Each operand's staging holds its last
    two distinct tiles (the double buffer), or with ``keep`` the activations hold all their
    tiles; a tile is loaded when it is not held. Returns ``(cycles, compute_cycles)``."""
    def n_tiles(total, t):
        return max(1, math.ceil(total / t - 1e-9))

    def sizes(total, t):
        n = n_tiles(total, t)
        return [t] * (n - 1) + [total - (n - 1) * t]

    ms, ks, ns = sizes(float(M), float(Mt)), sizes(float(K), float(Kt)), sizes(float(N),
                                                                             float(Nt))
    outer, middle = (ns, ms) if df == WS else (ms, ns)
    tiles = []
    for a, sa in enumerate(outer):
        for b, sb in enumerate(middle):
            for k, sk in enumerate(ks):
                m_sz, n_sz = (sb, sa) if df == WS else (sa, sb)
                tiles.append((a, b, k, m_sz, sk, n_sz))
    nB, nK = len(middle), len(ks)
    w_dma, a_dma, o_dma = w_fix + w_pb > 0, a_fix + a_pb > 0, o_fix + o_pb > 0
    held_w: list = []
    held_a: list = []
    slots_a = len(tiles) if keep else 2

    def load(held, key, slots):
        """Whether ``key`` must be loaded; ``held`` is kept most recent first."""
        miss = key not in held
        if not miss:
            held.remove(key)
        held.insert(0, key)
        del held[slots:]
        return miss

    loads = []
    for (a, b, k, m_sz, k_sz, n_sz) in tiles:
        w_key = (k, a) if df == WS else (k, b)
        a_key = (b, k) if df == WS else (a, k)
        need_w, need_a = load(held_w, w_key, 2), load(held_a, a_key, slots_a)
        tw = (w_fix + k_sz * n_sz * wB * w_pb) if (w_dma and need_w) else 0.0
        ta = (a_fix + m_sz * k_sz * aB * a_pb) if (a_dma and need_a) else 0.0
        loads.append(max(tw, ta) if two_ch in (1, 2) else tw + ta)
    dma = st_ch = 0.0
    load_end = [0.0] * len(tiles)
    load_end[0] = dma = loads[0]
    comp_end = [0.0] * len(tiles)
    store_end: list[float] = []
    compute = 0.0
    for s, (a, b, k, m_sz, k_sz, n_sz) in enumerate(tiles):
        c_prev = comp_end[s - 1] if s >= 1 else 0.0
        if s + 1 < len(tiles):
            load_end[s + 1] = dma = max(dma, c_prev) + loads[s + 1]
        fold = float(fold_cycles(df, R, C, m_sz, k_sz, n_sz, cpm, fill))
        compute += fold
        x = fold
        if fw or fa:   # operand feed from the staging buffers
            wfeed = k_sz * n_sz * wB * (1 if df == WS else math.ceil(m_sz / R - 1e-9))
            afeed = m_sz * k_sz * aB * math.ceil(n_sz / C)
            x = max(fold, wfeed * fw + afeed * fa if fsame else max(wfeed * fw, afeed * fa))
        start = max(load_end[s], c_prev)
        if k == 0 and len(store_end) >= 2:
            start = max(start, store_end[-2])
        comp_end[s] = start + x
        if k == nK - 1:
            if not o_dma:
                store_end.append(comp_end[s])
            elif two_ch in (1, 3):
                st_ch = max(comp_end[s], st_ch) + o_fix + m_sz * n_sz * oB * o_pb
                store_end.append(st_ch)
            else:
                dma = max(comp_end[s], dma) + o_fix + m_sz * n_sz * oB * o_pb
                store_end.append(dma)
    del nB
    return max(comp_end[-1], store_end[-1], dma, st_ch), compute


@njit(cache=True)
def _merge_one(fa, na, fb, nb, out, src):  # pragma: no cover - numba
    """Pareto front over (cycles, shared_cycles) of ``fa[:na]`` and ``fb[:nb]`` into ``out``
    and ``src`` (1 where a point comes from ``fb``); ties go to ``fa``. Returns the count."""
    m = na + nb
    pts = np.empty((m, 10))
    s = np.empty(m, np.int64)
    for f in range(na):
        pts[f, :] = fa[f, :]
        s[f] = 0
    for f in range(nb):
        pts[na + f, :] = fb[f, :]
        s[na + f] = 1
    order = np.arange(m)
    # insertion sort by (cycles, shared cycles, source): at most 2 x FRONT_MAX points
    for a in range(1, m):
        j = a
        while j > 0:
            x, y = order[j - 1], order[j]
            if (pts[x, 0], pts[x, 9], s[x]) > (pts[y, 0], pts[y, 9], s[y]):
                order[j - 1], order[j] = y, x
                j -= 1
            else:
                break
    best = np.inf
    k = 0
    for a in range(m):
        c = order[a]
        if pts[c, 9] < best:
            out[k, :] = pts[c, :]
            src[k] = s[c]
            best = pts[c, 9]
            k += 1
    return k


@njit(cache=True)
def merge_fronts(fa, na, fb, nb):  # pragma: no cover - numba
    """Per op, the Pareto front over (cycles, shared_cycles) of two fronts of the same op
    (activations at home, and streamed from off chip with the reserve as tile space):
    ``(fronts [ops x 2 FRONT_MAX x len(FRONT_COLS)], points per op, source [ops x 2
    FRONT_MAX], 1 where a point comes from fb)``. Nothing is cut: the points with few shared
    cycles, which a phase of many cores needs, sit at the end. Ties go to ``fa``; with
    ``nb = 0`` the result is ``fa`` itself. :func:`pair_front` computes the same merge
    without evaluating tilings that cannot reach it."""
    n = fa.shape[0]
    out = np.zeros((n, 2 * FRONT_MAX, 10))
    cnt = np.zeros(n, np.int64)
    src = np.zeros((n, 2 * FRONT_MAX), np.int64)
    for i in range(n):
        cnt[i] = _merge_one(fa[i], na[i], fb[i], nb[i], out[i], src[i])
    return out, cnt, src


@njit(cache=True)
def pair_front(df_mask, M, K, N, R, C, cpm, wB, aB, oB, accB, w_fix, w_pb, two_ch, lw, la,
               lo, w_stage, full, fw, fa, fsame, io, flc, cap, out, src, rx, fill=PER_FOLD):
    # pragma: no cover - numba
    """The merged tiling front of one GEMM under two options for its activations (a: at
    home, tiles in the staging share; b: streamed from off chip, the reserve added to the
    tile space), equal to ``merge_fronts(tiling_front(a), tiling_front(b))`` but cheaper:
    option (b) only evaluates the tilings that could reach the merged front. ``io[o]`` =
    (evaluate, a_fix, a_pb, o_fix, o_pb, a_stage) of option ``o``, ``flc[o]`` its shared-level
    coefficients, ``cap[o]`` its staging bytes per core. When (a) costs no more than (b) in
    every DMA and shared-level coefficient, (b) at a tiling that also fits (a) is no faster
    and no less busy than (a) there (the pipeline is monotone in its costs), so (b) evaluates
    only the tilings that need its extra room; and every (b) candidate whose lower bound is
    already matched by a point of (a)'s front is left out. ``rx[o]``: option ``o``'s
    chip-tile inputs (:data:`RX_COLS`; the same cache room in both, and (a)'s activations
    beyond the cache only where (b)'s are, or the shortcut is not taken). Fills ``out``
    [2 FRONT_MAX x 10] and ``src`` (1 for (b)); returns ``(points, overflow of a, overflow
    of b)``."""
    do_a, do_b = io[0, 0] != 0.0, io[1, 0] != 0.0
    fr_a = np.zeros((1, 10))
    na = 0
    of_a = True
    if do_a:
        fr_a, na, of_a = _front(df_mask, M, K, N, R, C, cpm, wB, aB, oB, accB, w_fix, w_pb,
                                io[0, 1], io[0, 2], io[0, 3], io[0, 4], two_ch, cap[0], lw,
                                la, lo, w_stage, io[0, 5] != 0.0, flc[0], full, fw, fa, fsame,
                                fr_a, 0, cap[0], False, False, rx[0], fill)
    if not do_b:
        for f in range(na):
            out[f, :] = fr_a[f, :]
            src[f] = 0
        return na, of_a, of_a
    # (a)'s front may have been cut at FRONT_MAX points: then every (b) tiling is evaluated
    skip = do_a and na < FRONT_MAX
    for c in range(1, 5):
        if io[0, c] > io[1, c]:
            skip = False
    for c in range(flc.shape[1]):
        if flc[0, c] > flc[1, c]:
            skip = False
    if rx[0, 0] > 0.0 or rx[1, 0] > 0.0:
        # with a cache: the same chip-tile room and weight costs in both, a cache no dearer
        # than beyond it, (a)'s activations beyond the cache only where (b)'s are, and (a)'s
        # activation costs no higher than (b)'s re-reads from the cache
        for c in (0, 1, 2, 3, 5, 6, 7, 8):
            if rx[0, c] != rx[1, c]:
                skip = False
        if rx[0, 8] > 0.0 or rx[0, 1] * rx[0, 5] > rx[0, 2] or rx[0, 1] * rx[0, 6] > rx[0, 3]:
            skip = False
        if rx[0, 4] > rx[1, 4] or rx.shape[1] > NRX:
            skip = False
        if rx[1, 4] > 0.0 and (io[0, 1] > rx[1, 5] or io[0, 2] > rx[1, 6]
                               or flc[0, 1] > flc[1, 1] + min(rx[1, 9], 0.0)):
            skip = False
    fr_b, nb, of_b = _front(df_mask, M, K, N, R, C, cpm, wB, aB, oB, accB, w_fix, w_pb,
                            io[1, 1], io[1, 2], io[1, 3], io[1, 4], two_ch, cap[1], lw, la,
                            lo, w_stage, io[1, 5] != 0.0, flc[1], full, fw, fa, fsame, fr_a,
                            na, cap[0], io[0, 5] != 0.0, skip, rx[1], fill)
    if not do_a:
        of_a = of_b
    return _merge_one(fr_a, na, fr_b, nb, out, src), of_a, of_b


@njit(cache=True)
def run_pairs(df_mask, M, K, N, R, C, cpm, wB, aB, oB, accB, w_fix, w_pb, two_ch, lw, la, lo,
              w_stage, full, fw, fa, fsame, io, flc, cap, rx, fill=PER_FOLD):
    # pragma: no cover - numba
    """:func:`pair_front` for every GEMM (``io`` [ops x 2 x 6], ``flc`` [ops x 2 x 5 (x 1 +
    ports)], ``cap``
    [2 x levels], the same for every op; ``rx`` [ops x 2 x NRX]): ``(fronts [ops x 2
    FRONT_MAX x 10], points per op,
    source [ops x 2 FRONT_MAX], overflow of a, overflow of b)``."""
    n = M.shape[0]
    out = np.zeros((n, 2 * FRONT_MAX, 10))
    cnt = np.zeros(n, np.int64)
    src = np.zeros((n, 2 * FRONT_MAX), np.int64)
    of_a = np.zeros(n, np.bool_)
    of_b = np.zeros(n, np.bool_)
    for i in range(n):
        cnt[i], of_a[i], of_b[i] = pair_front(
            df_mask, M[i], K[i], N[i], R, C, cpm[i], wB[i], aB, oB, accB, w_fix[i], w_pb[i],
            two_ch, lw, la, lo, w_stage[i], full, fw, fa, fsame, io[i], flc[i], cap, out[i],
            src[i], rx[i], fill)
    return out, cnt, src, of_a, of_b


@njit(cache=True)
def pair_packed(p, io, flc, cap, rx=None):  # pragma: no cover - numba
    """:func:`pair_front` of one GEMM with its scalars packed in one float array (numba's
    dispatch cost dominates a single GEMM point): ``p`` = (df_mask, M, K, N, R, C, cpm, wB,
    aB, oB, accB, w_fix, w_pb, two_ch, lw, la, lo, w_stage, full, fw, fa, fsame[, fill]);
    ``rx`` [2 x NRX] (default: no cache). Returns ``(front [points x 10], source [points],
    overflow of a, overflow of b)``."""
    rxx = np.zeros((2, NRX)) if rx is None else rx
    out = np.zeros((2 * FRONT_MAX, 10))
    src = np.zeros(2 * FRONT_MAX, np.int64)
    n, of_a, of_b = pair_front(int(p[0]), p[1], int(p[2]), int(p[3]), int(p[4]), int(p[5]),
                               p[6], p[7], p[8], p[9], p[10], p[11], p[12], int(p[13]),
                               int(p[14]), int(p[15]), int(p[16]), p[17] != 0.0,
                               p[18] != 0.0, p[19], p[20], p[21] != 0.0, io, flc, cap, out,
                               src, rxx, int(p[22]) if p.shape[0] > 22 else PER_FOLD)
    return out[:n], src[:n], of_a, of_b
