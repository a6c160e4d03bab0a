"""A scalar fast path for :func:`accelsim.sim.simulate_gemm`.

The general path (:func:`accelsim.sim.core._run`) works on arrays of ops; for a single GEMM
its numpy overhead (~0.5 ms) dwarfs the tile pipeline (~2 us). This module does the same
stages with Python scalars for one op on one phase: the same budget, placement, DMA costs,
engine call, traffic, schedule bound and energy. Anything out of the ordinary (weights that do
not fit, a policy that fails) returns ``None`` and the caller takes the general path, which
raises the proper error. ``tests/test_sim_gemm.py`` checks that both paths agree.
"""

from __future__ import annotations

import math

import numpy as np

from . import engine as E
from .result import SimResult
from .schedule import TOPOLOGIES, k_slices, split_k_time, split_share

__all__ = ["fast_gemm"]


def _ceil(x: float) -> float:
    return float(math.ceil(x - 1e-9))


def fast_gemm(hw, hp, m: float, k: int, n: int, w_bits: int, a_bits: int, nbytes: float,
              policy: str, staging_fraction: float, mask: int, full: bool):
    py = hp.py
    nl = len(hp.names)
    cores, R, C = hp.cores, hp.rows, hp.cols
    aB = a_bits / 8.0
    off = hp.offchip
    onchip = [s != "offchip" for s in hp.scope]
    holds = hp.holds
    cap = hp.capacity
    lat, rbw, wbw = py["latency_cyc"], py["read_bpc"], py["write_bpc"]
    sw = next((i for i in range(nl) if "weights" in holds[i]), 0)
    sa = next((i for i in range(nl) if "activations" in holds[i]), sw)
    so = next((i for i in range(nl) if "outputs" in holds[i]), sa)
    staging = [0.0] * nl
    for lv in {sw, sa, so}:
        if onchip[lv]:
            staging[lv] = cap[lv] * (1.0 if holds[lv] <= {"outputs"}
                                     else staging_fraction)
    free = [(cap[i] - staging[i]) if onchip[i] else (cap[i] if i == off else 0.0)
            for i in range(nl)]
    foot = (m * k + m * n) * aB
    act = [0.0] * nl
    need = foot
    for lv in range(nl):
        if need <= 0:
            break
        if "activations" in holds[lv] and onchip[lv]:
            act[lv] = min(need, free[lv])
            need -= act[lv]
    free = [free[i] - act[i] for i in range(nl)]
    # place the one weight tensor
    frac = [0.0] * nl
    if policy == "offchip":
        if off < 0:
            return None
        frac[off] = 1.0
    else:
        rest = nbytes
        for lv in range(nl):
            if rest <= 0:
                break
            if "weights" not in holds[lv] or free[lv] <= 0:
                continue
            if policy == "must-fit" and not onchip[lv]:
                continue
            take = min(rest, free[lv])
            frac[lv] = take / nbytes if nbytes > 0 else 1.0
            rest -= take
        if nbytes <= 0:
            frac = [0.0] * nl
            frac[next(i for i in range(nl) if "weights" in holds[i])] = 1.0
        elif rest > 0.5:
            return None
    # activation home
    act_lv = [("activations" in holds[i]) and (onchip[i] or i == off) for i in range(nl)]
    idx = [i for i in range(nl) if act_lv[i]]
    home = off if (off >= 0 and act_lv[off]) else (idx[-1] if idx else sa)
    cum = 0.0
    for lv in range(nl):
        if act_lv[lv]:
            cum += act[lv]
            if lv != off and foot <= cum * (1 + 1e-12) + 1e-9:
                home = lv
                break
    # engine inputs
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
    sh = [0.0 if hp.core_scope[i] else 1.0 for i in range(nl)]
    acc = hp.acc_bytes
    c_w = sum(frac[i] * sh[i] / rbw[i] for i in range(nl) if i != sw) + sh[sw] * (
        1.0 - frac[sw]) / wbw[sw]
    c_warr = sh[sw] / rbw[sw]
    ps = sh[so] / wbw[so] * M * N * acc

    def option(h, stage_cap):
        """The tiling front with the activations in level ``h``."""
        a_dma, o_dma = h != sa, h != so
        c_a = (sh[h] / rbw[h] + sh[sa] / wbw[sa]) if a_dma else 0.0
        base = (sh[sa] / rbw[sa] * M * K * aB * _ceil(N / C)
                + (sh[h] / wbw[h] if o_dma else 0.0) * M * N * aB)
        flc = np.array([c_w, c_a, c_warr, base + ps * kf,
                        base + ps + c_warr * K * N * wB * _ceil(M / R)])
        packed = np.array([mask, M, K, N, R, C, cpm, wB, aB, aB, acc, w_fix, w_pb,
                           hp.setup_cyc + lat[h] if a_dma else 0.0,
                           1.0 / rbw[h] if a_dma else 0.0,
                           hp.setup_cyc + lat[h] if o_dma else 0.0,
                           1.0 / wbw[h] if o_dma else 0.0, hp.two_channels, sw, sa, so,
                           w_stage, a_dma, full, 1.0 / rbw[sw], 1.0 / rbw[sa], sw == sa],
                          dtype=np.float64)
        return E.front_packed(packed, np.array(stage_cap), flc)

    # (a) activations at home, tiles in the staging share; (b) streamed from off chip with
    # the activation reserve added to the tile space (docs/simulator.md)
    alt = off >= 0 and act_lv[off]
    if not alt or home != off:
        front, nf, overflow = option(home, [s_ / cores for s_ in staging])
    else:
        # same costs in (b) with more room: (a) adds nothing
        front, nf, overflow = np.zeros((0, len(E.FRONT_COLS))), 0, True
    src = [0] * nf
    if alt:
        res = [act[i] if act_lv[i] and onchip[i] else 0.0 for i in range(nl)]
        res = [min(res[i], (cap[i] - staging[i]) / cores) if hp.core_scope[i]
               else res[i] / cores for i in range(nl)]
        fb, nb, ob = option(off, [staging[i] / cores + res[i] for i in range(nl)])
        # an option that fits nothing offers its smallest tile (flagged), as without (b)
        if nf == 0:
            front, nf, src = fb, nb, [1] * nb
        else:
            fr, cnt, sr = E.merge_fronts(front[None], np.array([nf]), fb[None],
                                         np.array([nb]))
            front, nf, src = fr[0, :cnt[0]], int(cnt[0]), sr[0, :cnt[0]].tolist()
    pts = front.tolist()
    noc = hw.noc
    topo = TOPOLOGIES[noc.topology] if noc else TOPOLOGIES["bus"]
    link = noc.link_bandwidth_bytes_per_s / hp.clock_hz if noc else 1.0
    hop = noc.hop_latency_s * hp.clock_hz if noc else 0.0
    kt = int(max(_ceil(K / R), 1.0))
    per_tile = M * N / cols
    rb, ra = per_tile * acc, per_tile / hp.vector_rate
    T = min(max(split_k_time(q[0], int(cols), kt, cores, rb, ra, topo, link, hop), q[9])
            for q in pts)
    best = min(range(nf), key=lambda f: (max(pts[f][0] / cores, pts[f][9]), f))
    r = pts[best]
    h = off if src[best] else home
    if src[best]:
        overflow = ob
    a_dma, o_dma = h != sa, h != so
    t1, comp = r[0], r[1]
    ks, e_noc = 1, 0.0
    if kt > 1 and split_share(int(cols), cores) * t1 > T * (1.0 + 1e-9):
        ks, _, bh = k_slices(t1, int(cols), kt, cores, rb, ra, topo, link, hop, T)
        e_noc = bh * noc.energy_per_byte_per_hop_j if noc else 0.0
    # traffic
    rd = [0.0] * nl
    wr = [0.0] * nl
    Wf, Af, Ob = r[6], r[7], r[8]
    for lv in range(nl):
        if lv != sw:
            rd[lv] += Wf * frac[lv]
    wr[sw] += Wf * (1.0 - frac[sw])
    ws = r[2] == E.WS
    passes = _ceil(M / max(r[3], 1e-9)) if ws else _ceil(M / R)
    rd[sw] += K * N * wB * passes
    if a_dma:
        rd[h] += Af
        wr[sa] += Af
    rd[sa] += M * K * aB * _ceil(N / C)
    kf = _ceil(K * cpm / R) if cpm < 1.0 else _ceil(K / R)
    psum = M * N * hp.acc_bytes * (kf if ws else 1.0)
    wr[so] += psum
    if o_dma:
        wr[h] += Ob
    # schedule: one op, one phase, all cores (T computed above from the front)
    span = 1 if t1 <= T * (1 + 1e-9) else min(cores, int(math.ceil(t1 / T - 1e-9)))
    end = t1 if span == 1 else T
    cycles = T
    latency = cycles / hp.clock_hz
    macs = float(m) * k * n
    e_mac = macs * py["e_mac"][w_bits][a_bits]
    e_mem = [rd[i] * py["read_j"][i] + wr[i] * py["write_j"][i] for i in range(nl)]
    static = hw.energy.static_power_w * latency
    op_j = e_mac + sum(e_mem) + e_noc
    breakdown = {"mac": e_mac, "vector": 0.0, "noc": e_noc, "static": static}
    for i, name in enumerate(hp.names):
        breakdown[f"memory:{name}"] = e_mem[i]
    moved = [rd[i] + wr[i] for i in range(nl)]
    lvl_time = [(max if onchip[i] else sum)((rd[i] / py["agg_read_bpc"][i],
                                             wr[i] / py["agg_write_bpc"][i]))
                for i in range(nl)]
    busy = {"compute": comp / cores, "vector": 0.0,
            "offchip_bandwidth": lvl_time[off] if off >= 0 else 0.0,
            "onchip_bandwidth": max([lvl_time[i] for i in range(nl) if onchip[i]] or [0.0]),
            "noc": 0.0}
    top = max(busy, key=lambda key: busy[key])
    bound = top if busy[top] >= 0.5 * cycles else "latency"
    util = macs * cpm / (R * C * cores * cycles) if cycles > 0 else 0.0
    stall = max(t1 - comp, 0.0)
    warnings = []
    if overflow:
        warnings.append(f"1 GEMM(s) need more staging buffer than {hp.names[sw]}/"
                        f"{hp.names[sa]}/{hp.names[so]} keep for tiles; simulated with the "
                        "smallest tile")
    if off >= 0 and home == off:
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
        noc_cycles=0.0, busy_cycles=busy, bound=bound, warnings=tuple(warnings),
        op_data=op_data, phase_data={"T": (T,), "c": (cores,), "order": (0,),
                                     "ptr": (0, 1)})
