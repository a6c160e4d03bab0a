"""A scalar fast path for :func:`accelsim.sim.simulate_gemm`.

The general path (:func:`accelsim.sim.core._run`) works on arrays of ops; for a single GEMM
its numpy overhead (~0.5 ms) dwarfs the tile pipeline (~2 us). This module does the same
stages with Python scalars for one op on one phase: the same budget, placement, DMA costs,
engine call, traffic, schedule bound and energy, one function per stage (:func:`_place`,
:func:`_inputs`, :func:`_point`, :func:`_traffic`, :func:`_result`). Anything out of the ordinary (weights that do
not fit, a policy that fails) returns ``None`` and the caller takes the general path, which
raises the proper error. ``tests/test_sim_simulate.py`` checks that both paths agree.

``_point`` compiles the engine's functions into this module's numba cache, and numba checks
only this file for changes: a change to ``engine.py`` must come with a change here (or an
emptied ``__pycache__``), or ``simulate_gemm`` keeps running the old engine.
Engine revision this file was last touched for: the closed form's block jump shared by the
outer and middle loops (``engine._jump``), 2026-12-07 (rev 17).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from . import engine as E
from .result import SimResult
from .schedule import TOPOLOGIES, k_slices, reduce_cost, split_k_time, split_share

__all__ = ["fast_gemm"]


def _ceil(x: float) -> float:
    return float(math.ceil(x - 1e-9))


@njit(cache=True)
def _point(p, io, flc, cap, sp, rx):  # pragma: no cover - numba
    """The engine and the one-op schedule of a GEMM point in one call (numba's dispatch cost
    dominates a single point; ``p`` as :func:`engine.pair_packed`'s, with the array's fill
    mode last): the merged tiling front (:func:`engine.pair_front`), the phase
    time ``T`` over all cores (best front point, split along N and K), the point the
    scheduler reports (least first-term share, :mod:`accelsim.sim.schedule`) and its
    K-slices. ``sp`` = (cols, K tiles, cores, reduction bytes, reduction vector cycles per
    column tile, topology, link bytes per cycle, hop cycles); ``rx`` [2 x NRX] the chip-tile
    inputs of both options (:data:`engine.RX_COLS`). Returns ``(point, from option
    (b), overflow, T, k_slices, reduction byte-hops, reduction NoC cycles)``."""
    out = np.zeros((2 * E.FRONT_MAX, 10))
    src = np.zeros(2 * E.FRONT_MAX, np.int64)
    n, of_a, of_b = E.pair_front(int(p[0]), p[1], int(p[2]), int(p[3]), int(p[4]), int(p[5]),
                                 p[6], p[7], p[8], p[9], p[10], p[11], p[12], int(p[13]),
                                 int(p[14]), int(p[15]), int(p[16]), p[17] != 0.0,
                                 p[18] != 0.0, p[19], p[20], p[21] != 0.0, io, flc, cap, out,
                                 src, rx, int(p[22]))
    cols, kt, cores = int(sp[0]), int(sp[1]), int(sp[2])
    rb, ra, topo, link, hop = sp[3], sp[4], int(sp[5]), sp[6], sp[7]
    T = np.inf
    best, bv = 0, np.inf
    for f in range(n):
        v = max(split_k_time(out[f, 0], cols, kt, cores, rb, ra, topo, link, hop), out[f, 9])
        if v < T:
            T = v
        w = max(out[f, 0] / cores, out[f, 9])
        if w < bv:
            best, bv = f, w
    t1 = out[best, 0]
    ks, bh, tn = 1, 0.0, 0.0
    if kt > 1 and split_share(cols, cores) * t1 > T * (1.0 + 1e-9):
        ks, _, bh = k_slices(t1, cols, kt, cores, rb, ra, topo, link, hop, T)
        if ks > 1:
            tn = reduce_cost(ks, cols, min(cores // ks, cols), rb, 0.0, topo, link, hop)
    streamed = src[best] == 1
    return out[best].copy(), streamed, of_b if streamed else of_a, T, ks, bh, tn


@njit(cache=True)
def _point_f(f, nl):  # pragma: no cover - numba
    """:func:`_point` with its inputs in one float array ``f`` (as :func:`_inputs` packs
    them; ``nl`` memory levels): one array to pass instead of six."""
    c = 45 + 2 * nl
    rx = f[c + 8:c + 8 + 2 * E.NRX].reshape(2, E.NRX)
    return _point(f[:23], f[23:35].reshape(2, 6), f[35:45].reshape(2, 5),
                  f[45:c].reshape(2, nl), f[c:c + 8], rx)


def _levels(hw, hp, staging_fraction: float) -> dict:
    """What the fast path needs of ``hw`` that does not depend on the GEMM (cached per
    accelerator and staging fraction)."""
    key = ("gemm", staging_fraction)
    hit = hp.py.get(key)
    if hit is not None:
        return hit
    nl = len(hp.names)
    holds, cap, off = hp.holds, hp.capacity, hp.offchip
    onchip = [s != "offchip" for s in hp.scope]
    sw = next((i for i in range(nl) if "weights" in holds[i]), 0)
    sa = next((i for i in range(nl) if "activations" in holds[i]), sw)
    so = next((i for i in range(nl) if "outputs" in holds[i]), sa)
    staging = [0.0] * nl
    for lv in {sw, sa, so}:
        if onchip[lv]:
            staging[lv] = cap[lv] * (1.0 if holds[lv] <= {"outputs"}
                                     else staging_fraction)
    x = hw.cache_level      # a cache holds no placed data (residency.plan_memory)
    act_lv = [("activations" in holds[i]) and (onchip[i] or i == off) and i != x
              for i in range(nl)]
    idx = [i for i in range(nl) if act_lv[i]]
    noc = hw.noc
    cores = hp.cores
    free = [(cap[i] - staging[i]) if onchip[i] else (cap[i] if i == off else 0.0)
            for i in range(nl)]
    room = 0.0
    if x >= 0:
        room, free[x] = free[x], 0.0
    L = dict(
        nl=nl, onchip=onchip, off=off, sw=sw, sa=sa, so=so, staging=staging,
        free=free, x=x, room=room, rx0=[0.0] * E.NRX,
        x_w=x >= 0 and "weights" in holds[x], x_a=x >= 0 and "activations" in holds[x],
        # per level: cycles per transfer, per byte, shared-level cycles per byte
        x_lv=([hp.setup_cyc + c for c in hp.py["latency_cyc"]],
              [1.0 / b for b in hp.py["read_bpc"]],
              [(0.0 if hp.core_scope[i] else 1.0) / hp.py["read_bpc"][i]
               for i in range(nl)]),
        act_onchip=[("activations" in holds[i]) and onchip[i] and i != x for i in range(nl)],
        weights=[("weights" in holds[i]) and i != x for i in range(nl)],
        first_w=next((i for i in range(nl) if "weights" in holds[i]), 0),
        act_lv=act_lv,
        home0=off if (off >= 0 and act_lv[off]) else (idx[-1] if idx else sa),
        alt=off >= 0 and act_lv[off],
        sh=[0.0 if hp.core_scope[i] else 1.0 for i in range(nl)],
        cap_a=[s_ / cores for s_ in staging],
        res_lim=[(cap[i] - staging[i]) / cores for i in range(nl)],
        topo=TOPOLOGIES[noc.topology] if noc else TOPOLOGIES["bus"],
        link=noc.link_bandwidth_bytes_per_s / hp.clock_hz if noc else 1.0,
        hop=noc.hop_latency_s * hp.clock_hz if noc else 0.0,
        e_hop=noc.energy_per_byte_per_hop_j if noc else 0.0)
    hp.py[key] = L
    return L


class _Place(NamedTuple):
    """Where the one GEMM's data lives: activation reserve per level ``act``, the weight's
    share per level ``frac`` and the activation home level ``home``."""

    act: list
    frac: list
    home: int


def _place(L: dict, m: float, k: int, n: int, aB: float, nbytes: float,
           policy: str) -> _Place | None:
    """Place the activations, the one weight tensor and find the activation home (as
    :func:`accelsim.sim.residency.plan_memory` and :func:`accelsim.sim.mapping.act_home`);
    None when the general path must decide (weights that do not fit, no off-chip level)."""
    nl, onchip, off = L["nl"], L["onchip"], L["off"]
    free = list(L["free"])
    foot = (m * k + m * n) * aB
    act = [0.0] * nl
    need = foot
    act_onchip = L["act_onchip"]
    for lv in range(nl):
        if need <= 0:
            break
        if act_onchip[lv]:
            act[lv] = min(need, free[lv])
            need -= act[lv]
            free[lv] -= act[lv]
    frac = [0.0] * nl
    if policy == "offchip":
        if off < 0:
            return None
        frac[off] = 1.0
    elif nbytes <= 0:
        frac[L["first_w"]] = 1.0
    else:
        rest = nbytes
        weights = L["weights"]
        for lv in range(nl):
            if rest <= 0:
                break
            if not weights[lv] or free[lv] <= 0:
                continue
            if policy == "must-fit" and not onchip[lv]:
                continue
            take = min(rest, free[lv])
            frac[lv] = take / nbytes
            rest -= take
        if rest > 0.5:
            return None
    act_lv = L["act_lv"]
    home = L["home0"]
    cum = 0.0
    for lv in range(nl):
        if act_lv[lv]:
            cum += act[lv]
            if lv != off and foot <= cum * (1 + 1e-12) + 1e-9:
                home = lv
                break
    return _Place(act, frac, home)


class _Inputs(NamedTuple):
    """Engine and schedule inputs of the GEMM (the arguments of :func:`_point`, packed in
    ``f`` for :func:`_point_f`), the chip-tile inputs of both options ``rx`` and the
    scalars the later stages reuse."""

    f: np.ndarray
    nl: int
    rx: tuple
    M: float
    K: int
    N: int
    cpm: float
    wB: float


def _inputs(hw, hp, L: dict, pl: _Place, m, k, n, w_bits, a_bits, nbytes, mask,
            full) -> _Inputs:
    """The tile-engine inputs under both activation options and the one-op schedule's
    split parameters (as :func:`accelsim.sim.stages.gemm_inputs` and
    :func:`accelsim.sim.stages.other_ops`)."""
    py = hp.py
    nl, sw, sa, so = L["nl"], L["sw"], L["sa"], L["so"]
    cores, R, C = hp.cores, hp.rows, hp.cols
    aB = a_bits / 8.0
    lat, rbw, wbw = py["latency_cyc"], py["read_bpc"], py["write_bpc"]
    frac, act, home = pl.frac, pl.act, pl.home
    M, K, N = max(float(m), 1.0), int(k), int(n)
    cpm = py["cpm"][w_bits][a_bits]
    wB = nbytes / (float(k) * float(n))
    w_fix = w_pb = 0.0
    for lv in range(nl):
        if lv != sw and frac[lv] > 0.0:
            w_fix += frac[lv] * (hp.setup_cyc + lat[lv])
            w_pb += frac[lv] / rbw[lv]
    w_stage = frac[sw] < 1.0 - 1e-9
    cols = max(_ceil(N / C), 1.0)
    kf = _ceil(K * cpm / R) if cpm < 1.0 else _ceil(K / R)
    sh = L["sh"]
    acc = hp.acc_bytes
    c_w = sum(frac[i] * sh[i] / rbw[i] for i in range(nl) if i != sw) + sh[sw] * (
        1.0 - frac[sw]) / wbw[sw]
    c_warr = sh[sw] / rbw[sw]
    ps = sh[so] / wbw[so] * M * N * acc
    a_read = sh[sa] / rbw[sa] * M * K * aB * cols
    ws_arr = c_warr * K * N * wB * _ceil(M / R)

    def option(h, do):
        """Engine inputs with the activations in level ``h``: (evaluate, a_fix, a_pb, o_fix,
        o_pb, a_stage) and the shared-level coefficients."""
        a_dma, o_dma = h != sa, h != so
        c_a = (sh[h] / rbw[h] + sh[sa] / wbw[sa]) if a_dma else 0.0
        base = a_read + (sh[h] / wbw[h] * M * N * aB if o_dma else 0.0)
        fix = hp.setup_cyc + lat[h]
        io = (1.0 if do else 0.0, fix if a_dma else 0.0, 1.0 / rbw[h] if a_dma else 0.0,
              fix if o_dma else 0.0, 1.0 / wbw[h] if o_dma else 0.0, 1.0 if a_dma else 0.0)
        return io, (c_w, c_a, c_warr, base + ps * kf, base + ps + ws_arr)

    # (a) activations at home, tiles in the staging share; (b) streamed from off chip with
    # the activation reserve added to the tile space (docs/simulator.md). An op already off
    # chip has the same costs in (b) with more room: (a) adds nothing.
    alt, off, act_onchip = L["alt"], L["off"], L["act_onchip"]
    io_a, flc_a = option(home, not alt or home != off)
    cap_a = L["cap_a"]
    if alt:
        res_lim = L["res_lim"]
        io_b, flc_b = option(off, True)
        # a core's share of the reserve: of a per-core level, what its own memory has beyond
        # the staging share (up to the reserve); of a shared level, a 1 / cores share
        cap_b = list(cap_a)
        for i in range(nl):
            if act_onchip[i]:
                cap_b[i] += min(act[i], res_lim[i]) if hp.core_scope[i] else act[i] / cores
    else:
        io_b, flc_b, cap_b = (0.0,) * 6, flc_a, cap_a
    kt = int(max(_ceil(K / R), 1.0))
    per_tile = M * N / cols
    rb, ra = per_tile * acc, per_tile / hp.vector_rate
    rx_a = _chip_inputs(hp, L, frac, home)
    rx_b = _chip_inputs(hp, L, frac, off) if alt else rx_a
    # one float array, cut into the engine's inputs by _point_f
    f = np.array([mask, M, K, N, R, C, cpm, wB, aB, aB, acc, w_fix, w_pb, hp.dma_code,
                  sw, sa, so, w_stage, full, 1.0 / rbw[sw], 1.0 / rbw[sa], sw == sa,
                  hp.fill, *io_a, *io_b, *flc_a, *flc_b, *cap_a, *cap_b, cols, kt, cores, rb,
                  ra, L["topo"], L["link"], L["hop"], *rx_a, *rx_b], dtype=np.float64)
    return _Inputs(f, nl, (rx_a, rx_b), M, K, N, cpm, wB)


def _chip_inputs(hp, L: dict, frac: list, h: int) -> list:
    """The chip-tile inputs (:data:`engine.RX_COLS`) with the activations in level ``h``
    (as :func:`accelsim.sim.stages.chip_inputs`)."""
    x = L["x"]
    if x < 0:
        return L["rx0"]
    fix, inv, shinv = L["x_lv"]
    beyond = [i for i in range(x + 1, L["nl"]) if frac[i] > 0.0] if L["x_w"] else []
    w_out = sum(frac[i] for i in beyond)
    a_out = 1.0 if (h != L["sa"] and h > x and L["x_a"]) else 0.0
    if w_out <= 0.0 and a_out <= 0.0:
        return L["rx0"]
    x_pb = inv[x]
    return [L["room"], w_out, sum(frac[i] * fix[i] for i in beyond),
            sum(frac[i] * inv[i] for i in beyond), a_out, fix[x], x_pb, float(hp.cores),
            w_out * shinv[x] - sum(frac[i] * shinv[i] for i in beyond),
            a_out * (shinv[x] - shinv[h])]


def _traffic(hp, L: dict, pl: _Place, x: _Inputs, r: list, h: int,
             aB: float, rx=None) -> tuple[list, list]:
    """Bytes read and written per level with the chosen tiling ``r`` (a front point) and
    activations in level ``h`` (as :func:`accelsim.sim.stages.chosen_traffic`)."""
    nl, sw, sa, so = L["nl"], L["sw"], L["sa"], L["so"]
    R, C = hp.rows, hp.cols
    M, K, N, cpm, wB, frac = x.M, x.K, x.N, x.cpm, x.wB, pl.frac
    a_dma, o_dma = h != sa, h != so
    rd = [0.0] * nl
    wr = [0.0] * nl
    Wf, Af, Ob = r[6], r[7], r[8]
    Wc, Ac, cl = Wf, Af, L["x"]
    if rx is not None and rx[0] > 0.0:
        # a cache serves the re-reads inside a chip tile: Wc, Ac from beyond it
        Wc, Ac = E.chip_fetch(int(r[2]), M, K, N, r[3], r[4], r[5], wB, aB, Wf, Af, rx[0],
                              rx[1], rx[4], rx[7])
        if rx[4] <= 0.0:
            Ac = Af
    for lv in range(nl):
        if lv != sw:
            if rx is not None and rx[1] > 0.0 and lv > cl:
                rd[lv] += Wc * frac[lv]
                rd[cl] += (Wf - Wc) * frac[lv]
            else:
                rd[lv] += Wf * frac[lv]
    wr[sw] += Wf * (1.0 - frac[sw])
    ws = r[2] == E.WS
    passes = _ceil(M / max(r[3], 1e-9)) if ws else _ceil(M / R)
    rd[sw] += K * N * wB * passes
    if a_dma:
        rd[h] += Ac
        if Ac != Af:
            rd[cl] += Af - Ac
        wr[sa] += Af
    rd[sa] += M * K * aB * _ceil(N / C)
    kf = _ceil(K * cpm / R) if cpm < 1.0 else _ceil(K / R)
    psum = M * N * hp.acc_bytes * (kf if ws else 1.0)
    wr[so] += psum
    if o_dma:
        wr[h] += Ob
    return rd, wr


def fast_gemm(hw, hp, m: float, k: int, n: int, w_bits: int, a_bits: int, nbytes: float,
              policy: str, staging_fraction: float, mask: int, full: bool):
    """:func:`accelsim.sim.simulate_gemm` of one GEMM with Python scalars: place, engine
    inputs, engine and one-op schedule (:func:`_point`), traffic, energy and the result;
    None when the general path must decide."""
    if hp.nports:       # off-chip ports: the general path splits traffic by port
        return None
    L = _levels(hw, hp, staging_fraction)
    aB = a_bits / 8.0
    pl = _place(L, m, k, n, aB, nbytes, policy)
    if pl is None:
        return None
    x = _inputs(hw, hp, L, pl, m, k, n, w_bits, a_bits, nbytes, mask, full)
    r, streamed, overflow, T, ks, bh, tn = _point_f(x.f, x.nl)
    r = r.tolist()
    h = L["off"] if streamed else pl.home
    rd, wr = _traffic(hp, L, pl, x, r, h, aB, x.rx[1 if streamed else 0])
    return _result(hw, hp, L, pl, x, r, (T, ks, bh, tn), rd, wr, overflow, m, k, n,
                   w_bits, a_bits, nbytes, policy)


def _result(hw, hp, L, pl: _Place, x: _Inputs, r: list, sched: tuple, rd: list, wr: list,
            overflow: bool, m, k, n, w_bits, a_bits, nbytes, policy) -> SimResult:
    """Schedule placement, energy, totals and the :class:`SimResult` of the GEMM."""
    py = hp.py
    nl, onchip, off = L["nl"], L["onchip"], L["off"]
    sw, sa, so = L["sw"], L["sa"], L["so"]
    cores, R, C = hp.cores, hp.rows, hp.cols
    T, ks, bh, tn = sched
    M, N, cpm = x.M, x.N, x.cpm
    t1, comp = r[0], r[1]
    e_noc = bh * L["e_hop"]
    e_red = (ks - 1) * M * N * hp.e_vector    # the split-K tree's adds
    # schedule: one op, one phase, all cores (T computed above from the front)
    span = 1 if t1 <= T * (1 + 1e-9) else min(cores, int(math.ceil(t1 / T - 1e-9)))
    end = t1 if span == 1 else T
    T = T + (hp.kernel_cyc if t1 > 0 else 0.0) + hp.step_cyc   # efficiency model overheads
    cycles = T
    latency = cycles / hp.clock_hz
    macs = float(m) * k * n
    e_mac = macs * py["e_mac"][w_bits][a_bits]
    e_mem = [rd[i] * py["read_j"][i] + wr[i] * py["write_j"][i] for i in range(nl)]
    static = hw.energy.static_power_w * latency
    op_j = e_mac + sum(e_mem) + e_noc + e_red
    breakdown = {"mac": e_mac, "vector": e_red, "noc": e_noc, "static": static}
    for i, name in enumerate(hp.names):
        breakdown[f"memory:{name}"] = e_mem[i]
    moved = [rd[i] + wr[i] for i in range(nl)]
    lvl_time = [(max if onchip[i] else sum)((rd[i] / py["agg_read_bpc"][i],
                                             wr[i] / py["agg_write_bpc"][i]))
                for i in range(nl)]
    busy = {"compute": comp / cores, "vector": 0.0,
            "offchip_bandwidth": lvl_time[off] if off >= 0 else 0.0,
            "onchip_bandwidth": max([lvl_time[i] for i in range(nl) if onchip[i]] or [0.0]),
            "noc": tn}
    top = max(busy, key=lambda key: busy[key])
    bound = top if busy[top] >= 0.5 * cycles else "latency"
    util = macs * cpm / (R * C * cores * cycles) if cycles > 0 else 0.0
    stall = max(t1 - comp, 0.0)
    warnings = []
    if overflow:
        warnings.append(f"1 GEMM(s) need more staging buffer than {hp.names[sw]}/"
                        f"{hp.names[sa]}/{hp.names[so]} keep for tiles; simulated with the "
                        "smallest tile")
    if off >= 0 and pl.home == off:
        warnings.append("1 op(s) keep activations off chip")
    op_data = {
        "names": ("gemm",), "op_code": (0,), "layer": (-1,), "expert": (-1,),
        "role": ("gemm",), "tensor": (0,), "tensor_names": ("W",), "w_bits": (w_bits,),
        "a_bits": a_bits, "p_active": (1.0,), "m": (float(m),), "k": (float(k),),
        "n": (float(n),), "macs": (macs,), "core": (0,), "cores": (span,),
        "start_cycle": (0.0,), "end_cycle": (end,), "cycles": (t1,),
        "compute_cycles": (comp,), "vector_cycles": (0.0,), "stall_cycles": (stall,),
        "dataflow": (int(r[2]),), "k_slices": (int(ks),),
        "tiles": ((float(r[3]), float(r[4]), float(r[5])),),
        "bytes": (tuple(moved),), "energy_j": (op_j,), "level_names": hp.names}
    names = hp.names
    staging, act, frac = L["staging"], pl.act, pl.frac
    return SimResult(
        hw=hw.name, model=None, scenario={"gemm": {"m": float(m), "k": float(k),
                                                   "n": float(n)}},
        residency=policy, clock_hz=hp.clock_hz, cores=cores, cycles=cycles,
        latency_s=latency, tokens=float(m),
        tokens_per_s=float(m) / latency if latency > 0 else float("inf"),
        energy_j=op_j + static, energy_breakdown_j=breakdown, weight_bytes=nbytes,
        weight_bytes_by_level={names[i]: nbytes * frac[i] for i in range(nl)},
        kv_bytes_by_level={nm: 0.0 for nm in names},
        activation_bytes_by_level=dict(zip(names, act)),
        staging_bytes_by_level=dict(zip(names, staging)),
        bytes_by_level=dict(zip(names, moved)),
        offchip_bytes=moved[off] if off >= 0 else 0.0,
        onchip_bytes_moved=sum(moved[i] for i in range(nl) if onchip[i]), macs=macs,
        mac_utilization=util, compute_cycles=comp, stall_cycles=stall, vector_cycles=0.0,
        noc_cycles=tn, busy_cycles=busy, bound=bound, warnings=tuple(warnings),
        op_data=op_data, phase_data={"T": (T,), "c": (cores,), "order": (0,),
                                     "ptr": (0, 1)}).with_power_check(
        hw.energy.rated_power_w, hw.name)
