"""The tile engine's pruning leaves the fronts unchanged to the bit: the pipeline bound that
leaves out dominated candidates is a lower bound of the tile-by-tile model, and the tiling
front (and the merged front of both activation options) equals a plain-Python evaluation of
every feasible candidate in the engine's documented order, without that pruning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from accelsim.sim import engine as E


def _case(rng):
    """A random small GEMM, array and cost set (every DMA stream code and fill mode)."""
    R, C = int(rng.choice([4, 8, 16])), int(rng.choice([4, 8, 16, 32]))
    M = float(rng.choice([rng.integers(1, 150), rng.uniform(1, 30)]))
    K, N = int(rng.integers(8, 1200)), int(rng.integers(8, 1200))
    z = lambda p: 0.0 if rng.random() < p else float(rng.uniform(1.0, 200.0))
    w_fix, a_fix, o_fix = z(0.2), z(0.4), z(0.3)
    w_pb = 0.0 if w_fix == 0 else float(rng.uniform(0.001, 0.5))
    a_pb = 0.0 if a_fix == 0 else float(rng.uniform(0.001, 0.5))
    o_pb = 0.0 if o_fix == 0 else float(rng.uniform(0.001, 0.5))
    return {"M": M, "K": K, "N": N, "R": R, "C": C, "cpm": float(rng.choice([0.5, 1.0, 2.0])),
            "wB": float(rng.choice([0.25, 0.5, 1.0])), "aB": float(rng.choice([1.0, 2.0])),
            "oB": float(rng.choice([1.0, 2.0])), "accB": 4.0, "w_fix": w_fix, "w_pb": w_pb,
            "a_fix": a_fix, "a_pb": a_pb, "o_fix": o_fix, "o_pb": o_pb,
            "two_ch": int(rng.integers(0, 4)), "fill": int(rng.integers(0, 3))}


def test_pipeline_bound_is_below_the_tile_by_tile_model():
    rng = np.random.default_rng(31)
    tight = 0
    for _ in range(120):
        c = _case(rng)
        ms, ks, ns = E.tile_candidates(c["M"], c["K"], c["N"], c["R"], c["C"])
        j = int(rng.integers(0, len(ks)))
        Mt, Kt, Nt = float(rng.choice(ms)), float(ks[j]), float(ns[j])
        # at most ~8 tiles per level: the plain-Python reference stays quick
        Kt = float(min(c["K"], max(Kt, math.ceil(c["K"] / 8))))
        Nt = float(min(c["N"], max(Nt, math.ceil(c["N"] / 8))))
        Mt = float(min(c["M"], max(Mt, math.ceil(c["M"] / 8))))
        df = int(rng.integers(0, 2))
        fw, fa = (0.0, 0.0) if rng.random() < 0.4 else tuple(rng.uniform(0.01, 0.2, 2))
        fsame, keep = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        args = (df, c["M"], c["K"], c["N"], Mt, Kt, Nt, c["R"], c["C"], c["cpm"], c["wB"],
                c["aB"], c["oB"], c["w_fix"], c["w_pb"], c["a_fix"], c["a_pb"], c["o_fix"],
                c["o_pb"], c["two_ch"])
        ref = E.pipeline_reference(*args, fw, fa, fsame, keep, c["fill"])[0]
        closed = E.pipeline(*args, False, fw, fa, fsame, keep, c["fill"])[0]
        bound, nmax = E._pipeline_bound(*args, fw, fa, fsame, keep, c["fill"])
        assert nmax <= 9
        assert bound <= ref * (1 + 1e-12), (args, bound, ref)
        assert bound - 1e-6 * bound - 1e-3 <= closed, (args, bound, closed)
        # and never looser than the bound that orders the candidates
        lb = E._lower_bound(*args, fw, fa, fsame, keep, c["fill"])
        assert bound >= lb * (1 - 1e-12)
        tight += bound > lb * (1 + 1e-6)
    assert tight > 30


def _fits_ref(cap, lw, la, lo, w_stage, a_stage, Mt, Kt, Nt, wB, a_bytes, accB):
    use = [0.0] * len(cap)
    if w_stage:
        use[lw] += 2.0 * Kt * Nt * wB
    if a_stage:
        use[la] += a_bytes
    use[lo] += 2.0 * Mt * Nt * accB
    return all(u <= c_ for u, c_ in zip(use, cap))


def _how_ref(cap, lw, la, lo, w_stage, a_stage, df, M, K, N, Mt, Kt, Nt, wB, aB, accB):
    """Docs of engine._choose: 1 keeps one pass of activations, 0 double-buffers, -1 none."""
    if a_stage:
        nM, nK, nN = (max(1, math.ceil(M / Mt - 1e-9)), max(1, math.ceil(K / Kt - 1e-9)),
                      max(1, math.ceil(N / Nt - 1e-9)))
        saves = (nK > 2 and nN > 1) if df == E.OS else (nM * nK > 2 and nN > 1)
        if saves:
            block = Mt * K if df == E.OS else M * K
            kb = max(block, 2.0 * Mt * Kt) * aB
            if _fits_ref(cap, lw, la, lo, w_stage, a_stage, Mt, Kt, Nt, wB, kb, accB):
                return 1
    if _fits_ref(cap, lw, la, lo, w_stage, a_stage, Mt, Kt, Nt, wB, 2.0 * Mt * Kt * aB, accB):
        return 0
    return -1


def test_fit_check_in_scalars_matches_per_level_sums():
    rng = np.random.default_rng(37)
    for _ in range(3000):
        cap = rng.choice([-1.0, 0.0, 2048.0, 16384.0, 65536.0, 1 << 20], size=4)
        lw, la, lo = (int(x) for x in rng.integers(0, 4, 3))
        w_stage, a_stage = bool(rng.random() < 0.7), bool(rng.random() < 0.6)
        M, K, N = float(rng.integers(1, 300)), int(rng.integers(8, 4000)), int(
            rng.integers(8, 4000))
        Mt, Kt, Nt = (float(rng.choice([4, 16, 64, M])), float(rng.choice([16, 128, K])),
                      float(rng.choice([8, 64, 256, N])))
        df, wB, aB = int(rng.integers(0, 2)), float(rng.choice([0.5, 1.0])), 2.0
        caps = E._fit_caps(cap, lw, la, lo)
        got = E._choose_at(caps, lw, la, lo, w_stage, a_stage, df, M, K, N, Mt, Kt, Nt, wB,
                           aB, 4.0)
        assert got == _how_ref(list(cap), lw, la, lo, w_stage, a_stage, df, M, K, N, Mt, Kt,
                               Nt, wB, aB, 4.0)


def _front_ref(c, df_mask, cap, lw, la, lo, w_stage, a_stage, flc, rx, fw, fa, fsame,
               prune=(), skip_cap=None, skip_a_stage=False, full=False):
    """The tiling front as engine.tiling_front documents it, every feasible candidate of the
    menu evaluated: the menu in order (dataflow, Mt, (Kt, Nt)); candidates sorted stably by
    their closed-form lower bound, left out when a point already found (or one of
    ``prune``) is no slower than that bound and no busier; a point enters the front when no
    front point is no slower and no busier, dropping those it beats, unless the front is
    full. ``skip_cap``: tilings that also fit there, loading activations no more often, are
    left out (engine.pair_front's shortcut)."""
    M, K, N, R, C = c["M"], c["K"], c["N"], c["R"], c["C"]
    ms, ks, ns = E.tile_candidates(M, K, N, R, C)
    cands = []
    feasible = 0
    for df in (0, 1):
        if not (df_mask >> df) & 1:
            continue
        for Mt in ms:
            for Kt, Nt in zip(ks, ns):
                how = _how_ref(cap, lw, la, lo, w_stage, a_stage, df, M, K, N, Mt, Kt, Nt,
                               c["wB"], c["aB"], c["accB"])
                if how < 0:
                    continue
                feasible += 1
                if skip_cap is not None and _how_ref(
                        skip_cap, lw, la, lo, w_stage, skip_a_stage, df, M, K, N, Mt, Kt, Nt,
                        c["wB"], c["aB"], c["accB"]) >= how:
                    continue
                keep = how == 1
                _, _, wf, af = E._fetches(df, M, K, N, Mt, Kt, Nt, c["wB"], c["aB"], keep)
                wfx, wpb, afx, apb, wc, ac = E._reuse_costs(
                    df, M, K, N, Mt, Kt, Nt, c["wB"], c["aB"], wf, af, c["w_fix"], c["w_pb"],
                    c["a_fix"], c["a_pb"], rx)
                cost = (df, M, K, N, Mt, Kt, Nt, R, C, c["cpm"], c["wB"], c["aB"], c["oB"],
                        wfx, wpb, afx, apb, c["o_fix"], c["o_pb"], c["two_ch"])
                lb = E._lower_bound(*cost, fw, fa, fsame, keep, c["fill"])
                sh = E._shared_cycles_rx(df, M, K, N, Mt, wf, af, wc, ac, R, c["wB"], flc, rx)
                cands.append((lb, sh, cost, keep))
    assert feasible > 0      # the cases below keep the smallest tile feasible
    order = sorted(range(len(cands)), key=lambda i: cands[i][0])    # stable
    front: list = []
    for i in order:
        lb, sh, cost, keep = cands[i]
        if any(p[0] <= lb and p[9] <= sh for p in list(front) + list(prune)):
            continue
        r = E.pipeline(*cost, full, fw, fa, fsame, keep, c["fill"])
        t = r[0]
        if any(p[0] <= t and p[9] <= sh for p in front):
            continue
        front = [p for p in front if not (t <= p[0] and sh <= p[9])]
        if len(front) == E.FRONT_MAX:
            continue
        pt = (t, r[1], float(cost[0]), cost[4], cost[5], cost[6], r[2], r[3], r[4], sh)
        pos = len(front)
        while pos > 0 and front[pos - 1][0] > t:
            pos -= 1
        front.insert(pos, pt)
    return np.array(front, dtype=float).reshape(-1, 10)


def _tile_space(rng, c):
    """Staging capacities (3 levels) that keep the smallest tile of the menu feasible."""
    lw, la, lo = (int(x) for x in rng.integers(0, 3, 3))
    w_stage, a_stage = bool(rng.random() < 0.8), bool(rng.random() < 0.6)
    cap = rng.choice([4096.0, 16384.0, 65536.0, 1 << 20], size=3)
    ms, ks, ns = E.tile_candidates(c["M"], c["K"], c["N"], c["R"], c["C"])
    need = [0.0, 0.0, 0.0]
    need[lw] += 2 * ks[0] * ns[0] * c["wB"] if w_stage else 0.0
    need[la] += 2 * ms[0] * ks[0] * c["aB"] if a_stage else 0.0
    need[lo] += 2 * ms[0] * ns[0] * c["accB"]
    return np.maximum(cap, np.array(need)), lw, la, lo, w_stage, a_stage


def _flc(rng):
    return rng.random(5) * np.array([0.1, 0.1, 0.1, 1000.0, 1000.0])


def test_tiling_front_equals_the_unpruned_evaluation():
    rng = np.random.default_rng(41)
    points = 0
    for i in range(30):
        c = _case(rng)
        cap, lw, la, lo, w_stage, a_stage = _tile_space(rng, c)
        flc = _flc(rng)
        fw, fa = (0.0, 0.0) if rng.random() < 0.5 else (1 / 16, 1 / 32)
        fsame = bool(rng.random() < 0.5)
        mask = int(rng.choice([1, 2, 3]))
        got, nf, of = E.tiling_front(mask, c["M"], c["K"], c["N"], c["R"], c["C"], c["cpm"],
                                     c["wB"], c["aB"], c["oB"], c["accB"], c["w_fix"],
                                     c["w_pb"], c["a_fix"], c["a_pb"], c["o_fix"], c["o_pb"],
                                     c["two_ch"], cap, lw, la, lo, w_stage, a_stage, flc,
                                     bool(i % 10 == 9), fw, fa, fsame, c["fill"])
        ref = _front_ref(c, mask, list(cap), lw, la, lo, w_stage, a_stage, flc,
                         np.zeros(E.NRX), fw, fa, fsame, full=bool(i % 10 == 9))
        assert not of
        assert np.array_equal(got, ref), (c, got, ref)
        points += nf
    assert points > 60


def test_pair_front_equals_the_unpruned_evaluation():
    # engine.pair_front: option (a) at home, option (b) streamed with more tile space; (b)
    # leaves out what (a) covers; the merge (engine.merge_fronts, ties to a) of the two
    rng = np.random.default_rng(43)
    for _ in range(25):
        c = _case(rng)
        cap_a, lw, la, lo, w_stage, a_stage = _tile_space(rng, c)
        cap_b = cap_a + rng.choice([0.0, 65536.0, 1 << 20], size=3)
        flc_a = _flc(rng)
        flc_b = flc_a + rng.random(5) * np.array([0.1, 0.1, 0.1, 1000.0, 1000.0])
        io_a = np.array([1.0, c["a_fix"], c["a_pb"], c["o_fix"], c["o_pb"], float(a_stage)])
        io_b = np.array([1.0, c["a_fix"] + 100.0, c["a_pb"] + 0.05, c["o_fix"] + 100.0,
                         c["o_pb"] + 0.05, 1.0])
        fw, fa, fsame = 1 / 16, 1 / 32, bool(rng.random() < 0.5)
        ca = dict(c)
        fr_a = _front_ref(ca, 3, list(cap_a), lw, la, lo, w_stage, a_stage, flc_a,
                          np.zeros(E.NRX), fw, fa, fsame)
        cb = dict(c, a_fix=io_b[1], a_pb=io_b[2], o_fix=io_b[3], o_pb=io_b[4])
        skip = len(fr_a) < E.FRONT_MAX     # (a) no dearer than (b) everywhere
        fr_b = _front_ref(cb, 3, list(cap_b), lw, la, lo, w_stage, True, flc_b,
                          np.zeros(E.NRX), fw, fa, fsame, prune=[tuple(p) for p in fr_a],
                          skip_cap=list(cap_a) if skip else None, skip_a_stage=a_stage)
        pad = lambda f: np.pad(f, ((0, E.FRONT_MAX - len(f)), (0, 0)))
        ref, rc, rs = E.merge_fronts(pad(fr_a)[None], np.array([len(fr_a)]),
                                     pad(fr_b)[None], np.array([len(fr_b)]))
        p = np.array([3, c["M"], c["K"], c["N"], c["R"], c["C"], c["cpm"], c["wB"], c["aB"],
                      c["oB"], c["accB"], c["w_fix"], c["w_pb"], c["two_ch"], lw, la, lo,
                      w_stage, 0, fw, fa, fsame, c["fill"]])
        got, src, _, _ = E.pair_packed(p, np.stack([io_a, io_b]), np.stack([flc_a, flc_b]),
                                       np.stack([cap_a, cap_b]))
        assert np.array_equal(got, ref[0, :rc[0]]), (c, got, ref[0, :rc[0]])
        assert np.array_equal(src, rs[0, :rc[0]])


@pytest.mark.parametrize("seed", [0, 1])
def test_run_pairs_rows_equal_single_points(seed):
    # run_pairs is pair_front row by row: the same fronts as one pair_packed call per row
    rng = np.random.default_rng(50 + seed)
    rows = [_case(rng) for _ in range(6)]
    R, C = 16, 16
    cap = np.array([[65536.0, 262144.0, 0.0], [65536.0, 1 << 20, 0.0]])
    io = np.array([[[1.0, 0.0, 0.0, 20.0, 0.01, 0.0], [1.0, 120.0, 0.06, 120.0, 0.06, 1.0]]]
                  * len(rows))
    flc = np.array([[[0.01, 0.0, 0.0, 5.0, 7.0], [0.01, 0.02, 0.0, 9.0, 9.0]]] * len(rows))
    rx = np.zeros((len(rows), 2, E.NRX))
    M = np.array([r["M"] for r in rows])
    K = np.array([r["K"] for r in rows], np.int64)
    N = np.array([r["N"] for r in rows], np.int64)
    cpm = np.array([r["cpm"] for r in rows])
    wB = np.array([r["wB"] for r in rows])
    w_fix = np.array([r["w_fix"] for r in rows])
    w_pb = np.array([r["w_pb"] for r in rows])
    w_stage = np.ones(len(rows), np.bool_)
    out, cnt, src, _, _ = E.run_pairs(3, M, K, N, R, C, cpm, wB, 1.0, 1.0, 4.0, w_fix, w_pb,
                                      1, 1, 1, 0, w_stage, False, 1 / 16, 1 / 16, True, io,
                                      flc, cap, rx, 0)
    for i in range(len(rows)):
        p = np.array([3, M[i], K[i], N[i], R, C, cpm[i], wB[i], 1.0, 1.0, 4.0, w_fix[i],
                      w_pb[i], 1, 1, 1, 0, 1, 0, 1 / 16, 1 / 16, 1, 0])
        got, s, _, _ = E.pair_packed(p, io[i], flc[i], cap, rx[i])
        assert np.array_equal(out[i, :cnt[i]], got) and np.array_equal(src[i, :cnt[i]], s)
