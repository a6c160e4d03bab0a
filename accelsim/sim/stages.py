"""The stages of one simulated step on one chip, each a function returning a small record.

:func:`accelsim.sim.simulate` is their composition (``core._run``), and
:func:`accelsim.sim.simulate_parts` composes the same functions for several device parts
with one engine call. In order:

1. :func:`lower_step` -- op table, bits, storage bytes and elements per tensor
   (:class:`Lowered`);
2. :func:`place` -- memory plan, activation home and weight/KV placement per op
   (:class:`Placement`);
3. :func:`gemm_inputs` -- the tile-pipeline inputs of every GEMM and attention op under both
   activation options (:class:`GemmJob`); :func:`run_engine` -- one engine call over the
   distinct GEMMs of one or several jobs (:class:`Fronts`, the tiling fronts per op);
4. :func:`other_ops` -- vector ops, embedding lookups, core-split parameters and the traffic
   that does not depend on a tiling (:class:`OtherOps`);
5. :func:`schedule_step` -- phase times, core counts, the chosen front point per op and the
   core placement (:class:`Schedule`);
6. :func:`chosen_traffic` -- bytes read and written per op and level under the chosen
   tilings (:class:`Traffic`); :func:`noc_step` -- MoE dispatch/combine and split-K
   reductions on the NoC (:class:`Noc`);
7. :func:`step_energy` -- energy per op and the breakdown (:class:`Energy`);
8. :func:`assemble` -- the step's :class:`Totals` and its
   :class:`~accelsim.sim.result.SimResult` (:func:`result_of`).

Arrays are per op (op-table order) unless a record says otherwise; ``e`` is the index of the
ops the tile engine simulates (GEMMs and attention with MACs that may run).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..precision import BitAllocation
from ..workload.graph import graph_for_allocation
from . import engine as E
from .lower import OP, GEMM_OPS, VECTOR_OPS, IdentityCache, OpTable, lower, tensor_bits
from .lower import tensor_storage_bytes, tensor_table
from .mapping import act_home, dma_cost
from .residency import MemoryPlan, plan_memory
from .result import SimResult
from .schedule import TOPOLOGIES, k_slices_ops, phase_noc, schedule, wrap_around

__all__ = ["Lowered", "Placement", "GemmJob", "Fronts", "OtherOps", "Net", "Schedule",
           "Traffic", "Noc", "Energy", "lower_step", "place", "memory_plan_of", "gemm_inputs",
           "tile_space",
           "engine_ops", "run_engine", "other_ops", "net_params", "schedule_step", "fluid",
           "chosen_traffic", "noc_step", "step_energy", "energy_breakdown", "layer_latency",
           "Totals", "assemble", "result_of",
           "finish_step", "overheads", "run_step", "mixed_width_kernels"]


def _ceil(x):
    return np.ceil(x - 1e-9)


# ---------------------------------------------------------------------------- 1. lower
class Lowered(NamedTuple):
    """The step as arrays: the op table and, per tensor (``tensor_table`` order, or the
    tensors named by ``tensor_names`` when a part holds a subset), weight bits, storage bytes
    and elements; activation and KV bits."""

    ot: OpTable
    bits: np.ndarray
    t_bytes: np.ndarray
    t_numel: np.ndarray
    a_bits: int
    kv_bits: int
    tensor_names: tuple | None = None


def lower_step(hw, graph, alloc: BitAllocation | None) -> Lowered:
    """Stage 1: lower ``graph`` (cached) and ``alloc`` (default: 16 bits everywhere). An
    allocation that prunes experts (0 bits) the graph still routes to runs on the graph
    rebuilt with those experts pruned (:func:`accelsim.workload.graph_for_allocation`,
    cached), so pruned experts are never selected."""
    if alloc is not None:
        alloc.check(graph.graph.get("model_spec") or lower(graph).model)
        graph = graph_for_allocation(graph, alloc)
    ot = lower(graph)
    model = ot.model
    if alloc is None:
        alloc = BitAllocation.uniform(model, 16)
    alloc.check(model)
    tt = tensor_table(model)
    bits = tensor_bits(tt, alloc)
    t_bytes = tensor_storage_bytes(tt, alloc, bits).astype(np.float64)
    a_bits = alloc.activation_bits or hw.cores.mac_array.default_activation_bits
    return Lowered(ot, bits, t_bytes, (tt.out_f * tt.in_f).astype(np.float64), int(a_bits),
                   int(alloc.kv_bits))


# ---------------------------------------------------------------------------- 2. place
class Placement(NamedTuple):
    """Where everything lives: the memory plan, each op's activation working set ``foot``
    (bytes, given that it runs) and home level ``home``, the attention ops ``att_idx``, the
    share of each op's weights (the KV cache for attention) per level ``wfrac`` [ops x
    levels] and each op's weight bits ``op_wbits`` (KV bits for attention, 0 without a
    weight)."""

    plan: MemoryPlan
    foot: np.ndarray
    att_idx: np.ndarray
    home: np.ndarray
    wfrac: np.ndarray
    op_wbits: np.ndarray


def memory_plan_of(hw, low: Lowered, opts) -> tuple[MemoryPlan, np.ndarray, np.ndarray]:
    """The memory plan, the activation working set per op and the attention ops (the part of
    :func:`place` that :func:`accelsim.sim.memory_plan` runs)."""
    ot, t_bytes = low.ot, low.t_bytes
    aB, kvB = low.a_bits / 8.0, low.kv_bits / 8.0
    p = ot.p_active
    pe = np.where(p > 0, p, 1.0)
    foot = (ot.in_elems + ot.out_elems) / pe * aB
    att_idx = np.flatnonzero(ot.op_code == OP["attention"])
    kv_res = ot.kv_resident[att_idx]
    kv_bytes = kv_res * kvB
    kv_den = np.where(kv_res > 0, ot.kv_elems[att_idx] / np.where(kv_res > 0, kv_res, 1), 0.0)
    density = ot.tensor_density if len(ot.tensor_density) == len(t_bytes) else np.ones(
        len(t_bytes))
    plan = plan_memory(hw, t_bytes, density, kv_bytes, kv_den, float(foot.max(initial=0.0)),
                       opts.residency, opts.staging_fraction)
    return plan, foot, att_idx


def place(hw, hp, low: Lowered, opts) -> Placement:
    """Stage 2: budget the memory, place weights and KV cache (raises
    :class:`~accelsim.errors.DoesNotFitError`), and find every op's activation home."""
    ot = low.ot
    plan, foot, att_idx = memory_plan_of(hw, low, opts)
    home = act_home(foot, plan.act_reserve, plan.act_levels, hp.offchip, plan.stage_a)
    has_t = ot.tensor >= 0
    wfrac = np.zeros((len(ot), len(hp.names)))
    wfrac[has_t] = plan.weight_fraction[ot.tensor[has_t]]
    wfrac[att_idx] = plan.kv_fraction
    op_wbits = np.where(has_t, low.bits[np.maximum(ot.tensor, 0)], 0)
    op_wbits = np.where(ot.op_code == OP["attention"], low.kv_bits, op_wbits)
    return Placement(plan, foot, att_idx, home, wfrac, op_wbits)


# ---------------------------------------------------------------------------- 3. map
class GemmJob(NamedTuple):
    """Tile-engine inputs of the ops ``e`` (GEMMs where ``ge``, else attention) of one step:
    the GEMM shape ``M x K x N`` (``M`` given that the op runs), cycles per MAC, weight bytes
    per element, the weight DMA cost and staging flag, K folds ``kf``; option (a) keeps
    activations at home ``h_a``, option (b) streams them from off chip ``h_b`` (``io_*``:
    evaluate, a_fix, a_pb, o_fix, o_pb, a_stage; ``flc_*``: shared-level coefficients) with
    per-core tile space ``caps[cap_id]`` [2 x levels] (one entry per memory plan: a step has
    one, a batch of device parts one per part); ``pr`` the probability each op runs."""

    e: np.ndarray
    ge: np.ndarray
    M: np.ndarray
    K: np.ndarray
    N: np.ndarray
    cpm: np.ndarray
    wB: np.ndarray
    w_fix: np.ndarray
    w_pb: np.ndarray
    w_stage: np.ndarray
    kf: np.ndarray
    h_a: np.ndarray
    h_b: np.ndarray
    io_a: np.ndarray
    flc_a: np.ndarray
    io_b: np.ndarray
    flc_b: np.ndarray
    caps: np.ndarray
    cap_id: np.ndarray
    pr: np.ndarray
    rx_a: np.ndarray | None = None      # chip-tile inputs [ops x NRX] per option
    rx_b: np.ndarray | None = None      # (engine.RX_COLS; room 0: no cache)

    def key(self) -> list[np.ndarray]:
        """Columns, one entry per op: everything the engine result depends on besides its
        tile space and the step-wide constants (equal rows are simulated once)."""
        cols = [self.M, self.K, self.N, self.cpm, self.wB, self.w_fix, self.w_pb,
                self.w_stage]
        for x in (self.io_a, self.flc_a, self.io_b, self.flc_b, self.rx_a, self.rx_b):
            cols.extend(x.T)
        return cols


def engine_ops(ot: OpTable) -> np.ndarray:
    """Boolean per op: run by the tile engine (GEMMs with a weight and attention, with MACs,
    that may run)."""
    oc = ot.op_code
    is_gemm = np.isin(oc, GEMM_OPS) & (ot.tensor >= 0)
    return ((is_gemm & (ot.macs > 0)) | ((oc == OP["attention"]) & (ot.macs > 0))) & (
        ot.p_active > 0)


def _shared_coefficients(hp, f, sw, sa, so, h, a_dma, o_dma, M, K, N, wB, aB, kf, R, C,
                         att=None, kvw=None):
    """Per GEMM, the shared-level busy cycles as a function of its tiling (see
    :func:`accelsim.sim.engine._shared_cycles`): [ops x 5], or with off-chip ports
    [ops x 5 (1 + ports)]: the levels without ports, then each port with the kinds it
    serves (``att``: rows whose first operand is the KV cache; ``kvw``: KV bytes written per
    level, [ops x levels])."""
    sh, rbw, wbw = hp.shared_mask, hp.read_bpc, hp.write_bpc
    if hp.nports == 0:
        out = _coefficient_block(sh, sh, sh, rbw, wbw, rbw, wbw, wbw, hp.acc_bytes, f, sw,
                                 sa, so, h, a_dma, o_dma, M, K, N, wB, aB, kf, R, C)
        if kvw is not None:
            kv = (kvw * sh / wbw).sum(axis=1)
            out[:, 3] += kv
            out[:, 4] += kv
        return out
    W, A, O, KV = range(4)
    off = hp.offchip
    rb, wb = hp.kind_rbw, hp.kind_wbw
    att = np.zeros(len(M), bool) if att is None else att
    lvl = np.arange(len(sh))
    blocks = []
    for b in range(1 + hp.nports):
        # shared levels of this block, per kind: the levels without ports, or port b - 1
        mk = [sh * (lvl != off) if b == 0 else
              ((lvl == off) & (hp.port_of[k] == b - 1)).astype(np.float64) for k in range(4)]
        shw = np.where(att[:, None], mk[KV], mk[W])
        out = _coefficient_block(shw, mk[A], mk[O], np.where(att[:, None], rb[KV], rb[W]),
                                 np.where(att[:, None], wb[KV], wb[W]), rb[A], wb[A], wb[O],
                                 hp.acc_bytes, f, sw, sa, so, h, a_dma, o_dma, M, K, N, wB,
                                 aB, kf, R, C)
        if kvw is not None:
            kv = (kvw * mk[KV] / wb[KV]).sum(axis=1)
            out[:, 3] += kv
            out[:, 4] += kv
        blocks.append(out)
    return np.hstack(blocks)


def _coefficient_block(shw, sha, sho, rbw_w, wbw_w, rbw_a, wbw_a, wbw_o, acc, f, sw, sa, so,
                       h, a_dma, o_dma, M, K, N, wB, aB, kf, R, C):
    """The 5 coefficients of :func:`_shared_coefficients` over the levels ``sh*`` marks for
    the weights (per op or one row), activations and outputs, at their bytes per cycle."""
    shw, rbw_w, wbw_w = np.atleast_2d(shw), np.atleast_2d(rbw_w), np.atleast_2d(wbw_w)
    src = f.copy()
    src[:, sw] = 0.0
    c_w = (src * shw / rbw_w).sum(axis=1) + shw[:, sw] * (1.0 - f[:, sw]) / wbw_w[:, sw]
    c_a = np.where(a_dma, sha[h] / rbw_a[h] + sha[sa] / wbw_a[sa], 0.0)
    c_warr = shw[:, sw] / rbw_w[:, sw]
    base = (sha[sa] / rbw_a[sa] * M * K * aB * _ceil(N / C)
            + np.where(o_dma, sho[h] / wbw_o[h], 0.0) * M * N * aB)
    ps = sho[so] / wbw_o[so] * M * N * acc
    out = np.empty((len(M), 5))
    out[:, 0], out[:, 1], out[:, 2] = c_w, c_a, c_warr
    out[:, 3] = base + ps * kf
    out[:, 4] = base + ps + c_warr * K * N * wB * _ceil(M / R)
    return out


def gemm_inputs(hw, hp, low: Lowered, pl: Placement, spaces=None) -> GemmJob:
    """Stage 3a: the engine inputs of every GEMM and attention op of the step. ``spaces``:
    ``(plans, plan index per op)`` when the ops come from several memory plans (device
    parts batched in one table; their global fields -- staging levels, activation levels --
    are equal); default: ``pl.plan`` for every op."""
    ot, plan = low.ot, pl.plan
    R, C = hp.rows, hp.cols
    aB, kvB = low.a_bits / 8.0, low.kv_bits / 8.0
    sw, sa, so = plan.stage_w, plan.stage_a, plan.stage_o
    p = ot.p_active
    pe = np.where(p > 0, p, 1.0)
    e = np.flatnonzero(engine_ops(ot))
    ge = np.isin(ot.op_code, GEMM_OPS)[e] & (ot.tensor[e] >= 0)
    M = np.where(ge, np.maximum(ot.m[e] / pe[e], 1.0), ot.att_m[e])
    K = np.where(ge, ot.k[e], ot.att_k[e])
    N = np.where(ge, ot.n[e], ot.att_n[e])
    cpm = hp.cpm[np.clip(pl.op_wbits[e], 1, 16), min(max(low.a_bits, 1), 16)]
    if hp.att_cpm_scale != 1.0:     # efficiency model: attention's own share of the MAC rate
        cpm = np.where(ge, cpm, cpm * hp.att_cpm_scale)
    if hp.exp_cpm_scale != 1.0:     # the routed experts' GEMMs' own share (grouped kernels)
        cpm = np.where(ge & (ot.expert[e] >= 0), cpm * hp.exp_cpm_scale, cpm)
    tix = np.maximum(ot.tensor[e], 0)
    wB = np.where(ge, low.t_bytes[tix] / low.t_numel[tix], kvB)
    wfe = pl.wfrac[e]
    att = ~ge
    # weights (the KV cache for attention) at their kind's bandwidth: an off-chip port's
    w_rbw = None if hp.nports == 0 else np.where(att[:, None], hp.kind_rbw[3], hp.kind_rbw[0])
    w_fix, w_pb = dma_cost(wfe, sw, hp, w_rbw)
    w_stage = wfe[:, sw] < 1.0 - 1e-9
    kf = np.where(cpm < 1.0, _ceil(K * cpm / R), _ceil(K / R))
    att_idx = pl.att_idx
    kvw = None
    if len(att_idx):
        pos = np.searchsorted(e, att_idx)
        ok = (pos < len(e)) & (e[np.minimum(pos, len(e) - 1)] == att_idx)
        kvw = np.zeros((len(e), len(hp.names)))
        kvw[pos[ok]] = ((ot.kv_write_elems[att_idx] * kvB)[:, None] * pl.wfrac[att_idx])[ok]
    a_rbw, o_wbw = hp.kind_rbw[1], hp.kind_wbw[2]

    def option(h, do):
        """Engine inputs of the GEMMs with their activations in levels ``h``: per op
        (evaluate, a_fix, a_pb, o_fix, o_pb, a_stage) and the shared-level coefficients."""
        a_dma, o_dma = h != sa, h != so
        io = np.column_stack([do, np.where(a_dma, hp.setup_cyc + hp.latency_cyc[h], 0.0),
                              np.where(a_dma, 1.0 / a_rbw[h], 0.0),
                              np.where(o_dma, hp.setup_cyc + hp.latency_cyc[h], 0.0),
                              np.where(o_dma, 1.0 / o_wbw[h], 0.0), a_dma])
        flc = _shared_coefficients(hp, wfe, sw, sa, so, h, a_dma, o_dma, M, K, N, wB,
                                   aB, kf, R, C, att, kvw)
        return io.astype(np.float64), flc

    # (a) activations at home, tiles in the staging share; (b) activations streamed from off
    # chip, the activation reserve added to the tile space (docs/simulator.md): offered to
    # every op at every SRAM size, so more SRAM never removes an option. An op whose home is
    # off chip has the same costs in (b) with more room: (a) adds nothing.
    h_a = pl.home[e]
    off = hp.offchip
    h_b = np.full(len(e), off, np.int64)
    alt = bool(off >= 0 and plan.act_levels[off] and len(e))
    io_a, flc_a = option(h_a, (h_a != off) if alt else np.ones(len(e), bool))
    if alt:
        io_b, flc_b = option(h_b, np.ones(len(e), bool))
    else:
        io_b, flc_b = np.zeros_like(io_a), flc_a
    plans, plan_of = spaces if spaces is not None else ((plan,), None)
    caps = np.ascontiguousarray(np.stack([tile_space(hp, q, alt) for q in plans]))
    cap_id = np.zeros(len(e), np.int64) if plan_of is None else plan_of[e]
    room = np.array([q.cache_room for q in plans])[cap_id]
    rx_a = chip_inputs(hp, plan.cache_level, room, wfe, att, h_a, h_a != sa)
    rx_b = chip_inputs(hp, plan.cache_level, room, wfe, att, h_b, h_b != sa) if alt else rx_a
    return GemmJob(e, ge, M, K, N, cpm, wB, w_fix, w_pb, w_stage, kf, h_a, h_b, io_a, flc_a,
                   io_b, flc_b, caps, cap_id, pe[e], rx_a, rx_b)


def chip_inputs(hp, x: int, room: np.ndarray, wfe: np.ndarray, att: np.ndarray,
                h: np.ndarray, a_dma: np.ndarray) -> np.ndarray:
    """Per op, the chip-tile inputs of the tile engine (``engine.RX_COLS``) with the cache
    level ``x`` (-1: none) holding ``room`` bytes for chip tiles, weight (KV cache for
    attention ``att``) shares per level ``wfe`` and activations in levels ``h`` (loaded by
    DMA where ``a_dma``): the shares beyond the cache, their DMA costs (an off-chip port's
    rate with ports), the cache's, and per block of the shared-level coefficients
    (:func:`_shared_coefficients`) the busy cycles of a byte re-read from the cache instead
    of from beyond it. All zero (no cache) without a cache level."""
    n = len(h)
    nb = 1 + hp.nports
    rx = np.zeros((n, 8 + 2 * nb))
    if x < 0 or n == 0:
        return rx
    holds = hp.holds[x]
    lvl = np.arange(len(hp.names))
    src = np.where((lvl > x)[None, :], wfe, 0.0)
    w_ok = np.where(att, "kv" in holds, "weights" in holds)
    src = np.where(w_ok[:, None], src, 0.0)
    w_rb = np.where(att[:, None], hp.kind_rbw[3], hp.kind_rbw[0])
    a_rb = hp.kind_rbw[1]
    sh = hp.shared_mask
    x_pb = 1.0 / hp.read_bpc[x]
    a_out = (a_dma & (h > x) & ("activations" in holds)).astype(np.float64)
    w_out = src.sum(axis=1)
    rx[:, 0] = np.where((w_out > 0) | (a_out > 0), room, 0.0)
    rx[:, 1] = w_out
    rx[:, 2] = (src * (hp.setup_cyc + hp.latency_cyc)[None, :]).sum(axis=1)
    rx[:, 3] = (src / w_rb).sum(axis=1)
    rx[:, 4] = a_out
    rx[:, 5] = hp.setup_cyc + hp.latency_cyc[x]
    rx[:, 6] = x_pb
    rx[:, 7] = hp.cores
    off = hp.offchip
    # block 0: the shared levels without ports (the cache among them); then each port
    blk0 = sh if hp.nports == 0 else sh * (lvl != off)
    rx[:, 8] = w_out * sh[x] * x_pb - (src * blk0[None, :] / w_rb).sum(axis=1)
    rx[:, 9] = a_out * (sh[x] * x_pb - blk0[h] / a_rb[h])
    for p in range(hp.nports):
        on_w = np.where(att, hp.port_of[3] == p, hp.port_of[0] == p)
        rx[:, 10 + 2 * p] = -np.where(on_w, src[:, off] / w_rb[:, off], 0.0)
        if hp.port_of[1] == p:
            rx[:, 11 + 2 * p] = -a_out * (h == off) / a_rb[off]
    return rx


def tile_space(hp, plan: MemoryPlan, alt: bool) -> np.ndarray:
    """Per-core tile space [2 x levels] of option (a) (the staging share) and option (b)
    (plus the activation reserve, when activations may stream from off chip)."""
    cores = hp.cores
    cap_a = plan.staging / cores
    if alt:
        res = np.where(plan.act_levels & hp.onchip, plan.act_reserve, 0.0)
        # a core's share of a per-core level is what its own memory has beyond the staging
        # share (up to the reserve), whatever the core count, so more cores never shrink it
        cap = np.asarray(hp.capacity)
        res = np.where(hp.core_scope, np.minimum(res, (cap - plan.staging) / cores),
                       res / cores)
        cap_b = cap_a + res
    else:
        cap_b = cap_a
    return np.stack([cap_a, cap_b])


class Fronts(NamedTuple):
    """Engine results of a job's ops (``GemmJob.e`` order): the merged tiling front
    [ops x points x 10] (t, compute, dataflow, Mt, Kt, Nt, Wf, Af, Ob, F), points per op,
    the option each point comes from (0: a, 1: b) and whether options a/b overflowed the
    staging buffer."""

    fronts: np.ndarray
    npts: np.ndarray
    src: np.ndarray
    of_a: np.ndarray
    of_b: np.ndarray


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first occurrence of every distinct row, and each row's position among
    them (rows compared by value, -0.0 equal to 0.0): rows grouped by a hash of their bits
    (:func:`_row_hash`; a float projection would let a large column absorb a small one's
    differences), the grouping checked exactly, and on a collision an exact sort."""
    a = np.ascontiguousarray(a, dtype=np.float64) + 0.0   # -0.0 -> 0.0
    if a.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, first, inverse = np.unique(_row_hash(a), return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if np.array_equal(a[first][inverse], a):
        return first, inverse
    v = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    _, first, inverse = np.unique(v, return_index=True, return_inverse=True)
    return first, inverse.ravel()


#: Seeds of the column hashes of :func:`_row_hash` (fixed: results never depend on them,
#: only which rows are compared first).
_SEEDS = [int(x) for x in np.random.default_rng(20261207).integers(1, 2**63, 64)]


def _row_hash(a: np.ndarray) -> np.ndarray:
    """Per row of the float matrix ``a``, a 64-bit hash of its values' bits (-0.0 as 0.0):
    splitmix64 of every entry with its column's seed, summed along the row."""
    a = np.ascontiguousarray(a, dtype=np.float64) + 0.0
    seeds = np.resize(np.array(_SEEDS, dtype=np.uint64), a.shape[1])
    return _mix64(a.view(np.uint64), seeds).sum(axis=1, dtype=np.uint64)


def _mix64(x: np.ndarray, seed) -> np.ndarray:
    """splitmix64 of ``x ^ seed`` (uint64, wrapping; ``seed`` an int or an array that
    broadcasts against ``x``)."""
    x = x.astype(np.uint64) ^ np.asarray(seed, dtype=np.uint64)
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _unique_columns(cols: list[np.ndarray], rows: np.ndarray | None = None):
    """:func:`_unique_rows` of the matrix whose columns are ``cols`` (restricted to
    ``rows``)."""
    cols = [np.asarray(c, dtype=np.float64) for c in cols]
    if rows is not None:
        cols = [c[rows] for c in cols]
    if not cols or len(cols[0]) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return _unique_rows(np.column_stack(cols))


def run_engine(hp, mask: int, a_bits: int, jobs: list[GemmJob], full: bool) -> list[Fronts]:
    """Stage 3b: the tiling fronts of every op of ``jobs``, simulating each distinct GEMM
    once (the experts of a layer, the layers of a model and the parts of a system repeat):
    one engine call per distinct tile space (one for a single step)."""
    aB = a_bits / 8.0
    cat = jobs[0] if len(jobs) == 1 else _concat_jobs(jobs)
    key = cat.key()
    space: dict[bytes, int] = {}
    sid = np.array([space.setdefault(c.tobytes(), len(space)) for c in cat.caps],
                   np.int64)[cat.cap_id]
    if len(np.unique(sid)) <= 1:
        first, inverse = _unique_columns(key)
        cap = cat.caps[cat.cap_id[0]] if len(cat.e) else cat.caps[0]
        fr = _engine_call(hp, mask, aB, cat, first, cap, full)
        fr = Fronts(fr.fronts[inverse], fr.npts[inverse], fr.src[inverse], fr.of_a[inverse],
                    fr.of_b[inverse])
    else:
        fr = _engine_spaces(hp, mask, aB, cat, key, sid, full)
    w = max(int(fr.npts.max(initial=1)), 1)   # columns in use: less work for the scheduler
    out, lo = [], 0
    for x in jobs:
        s_ = slice(lo, lo + len(x.e))
        lo += len(x.e)
        out.append(Fronts(fr.fronts[s_, :w], fr.npts[s_], fr.src[s_, :w], fr.of_a[s_],
                          fr.of_b[s_]))
    return out


def _concat_jobs(jobs: list[GemmJob]) -> GemmJob:
    """One job of the rows of ``jobs`` (their tile spaces renumbered)."""
    off = np.cumsum([0] + [len(x.caps) for x in jobs])
    cols = {f: np.concatenate([getattr(x, f) for x in jobs]) for f in GemmJob._fields
            if f not in ("caps", "cap_id")}
    cols["caps"] = np.concatenate([x.caps for x in jobs])
    cols["cap_id"] = np.concatenate([x.cap_id + o for x, o in zip(jobs, off)])
    return GemmJob(**cols)


def _engine_spaces(hp, mask, aB, cat: GemmJob, key, sid, full) -> Fronts:
    """The engine over rows with several tile spaces: one call per space."""
    n = len(cat.e)
    fronts = np.zeros((n, 2 * E.FRONT_MAX, 10))
    npts = np.zeros(n, np.int64)
    src = np.zeros((n, 2 * E.FRONT_MAX), np.int64)
    of_a = np.zeros(n, bool)
    of_b = np.zeros(n, bool)
    for s_ in np.unique(sid):
        rows = np.flatnonzero(sid == s_)
        first, inverse = _unique_columns(key, rows)
        u = rows[first]
        fr = _engine_call(hp, mask, aB, cat, u, cat.caps[cat.cap_id[u[0]]], full)
        fronts[rows], npts[rows], src[rows] = (fr.fronts[inverse], fr.npts[inverse],
                                               fr.src[inverse])
        of_a[rows], of_b[rows] = fr.of_a[inverse], fr.of_b[inverse]
    return Fronts(fronts, npts, src, of_a, of_b)


def _engine_call(hp, mask, aB, job: GemmJob, u: np.ndarray, cap: np.ndarray,
                 full: bool) -> Fronts:
    """One :func:`engine.run_pairs` call over the rows ``u`` of ``job`` (tile space
    ``cap``)."""
    sw, sa, so = _stages(hp)
    R, C = hp.rows, hp.cols
    return Fronts(*E.run_pairs(
        mask, job.M[u], job.K[u].astype(np.int64), job.N[u].astype(np.int64), R, C,
        job.cpm[u], job.wB[u], aB, aB, hp.acc_bytes, job.w_fix[u], job.w_pb[u],
        hp.dma_code, sw, sa, so, job.w_stage[u], full, 1.0 / hp.read_bpc[sw],
        1.0 / hp.read_bpc[sa], sw == sa,
        np.ascontiguousarray(np.stack([job.io_a[u], job.io_b[u]], axis=1)),
        np.ascontiguousarray(np.stack([job.flc_a[u], job.flc_b[u]], axis=1)),
        np.ascontiguousarray(cap),
        np.ascontiguousarray(np.stack([job.rx_a[u], job.rx_b[u]], axis=1)),
        hp.fill))


def _stages(hp) -> tuple[int, int, int]:
    """The staging levels of weights, activations and outputs (as :func:`plan_memory`)."""
    hit = hp.py.get("stages")
    if hit is None:
        holds = hp.holds
        nl = len(hp.names)
        sw = next((i for i in range(nl) if "weights" in holds[i]), 0)
        sa = next((i for i in range(nl) if "activations" in holds[i]), sw)
        so = next((i for i in range(nl) if "outputs" in holds[i]), sa)
        hit = hp.py["stages"] = (sw, sa, so)
    return hit


# ---------------------------------------------------------------------------- 4. other ops
class OtherOps(NamedTuple):
    """Ops outside the tile engine and what the scheduler needs of every op: the one-core
    cycles of vector ops and embedding lookups ``t_other``, vector cycles ``vcyc``, masks
    ``vec`` (vector ops that may run) and ``emb`` (embedding lookups), the pieces an op may
    split into ``cols``, its K tiles ``kt`` and split-K partial-sum bytes ``rb`` and add
    cycles ``ra`` per column tile; ``rd``/``wr`` [ops x levels] the bytes read and written
    by the ops whose traffic does not depend on a tiling."""

    t_other: np.ndarray
    vcyc: np.ndarray
    vec: np.ndarray
    emb: np.ndarray
    cols: np.ndarray
    kt: np.ndarray
    rb: np.ndarray
    ra: np.ndarray
    rd: np.ndarray
    wr: np.ndarray


def other_ops(hw, hp, low: Lowered, pl: Placement, job: GemmJob) -> OtherOps:
    """Stage 4: vector ops, embedding lookups and dispatch in closed form, split parameters
    of every op and the traffic that does not depend on a tiling."""
    ot, plan = low.ot, pl.plan
    nops, nl = len(ot), len(hp.names)
    oc, p = ot.op_code, ot.p_active
    aB, kvB = low.a_bits / 8.0, low.kv_bits / 8.0
    sa = plan.stage_a
    live = p > 0
    pe = np.where(live, p, 1.0)
    has_t = ot.tensor >= 0
    vcyc = ot.vector_ops / hp.vector_rate
    vec = np.isin(oc, VECTOR_OPS) & live
    hv = pl.home
    v_dma = hv != sa
    if hp.nports == 0:
        data = np.where(v_dma, ot.in_elems * aB / hp.read_bpc[hv] + ot.out_elems * aB
                        / hp.write_bpc[hv], 0.0)
    else:   # reads at the activations' port, writes at the outputs'; two ports overlap
        t_in = ot.in_elems * aB / hp.kind_rbw[1][hv]
        t_out = ot.out_elems * aB / hp.kind_wbw[2][hv]
        apart = (hv == hp.offchip) & (hp.port_of[1] != hp.port_of[2])
        data = np.where(v_dma, np.where(apart, np.maximum(t_in, t_out), t_in + t_out), 0.0)
    vfix = np.where(v_dma, 2.0 * (hp.setup_cyc + hp.latency_cyc[hv]), 0.0) * pe
    t_other = np.where(vec, np.maximum(vcyc, data) + vfix, 0.0)
    cols = np.ones(nops, np.int64)
    cols = np.where(vec, np.maximum(_ceil(ot.out_elems / hw.cores.vector_unit.lanes), 1.0),
                    cols).astype(np.int64)
    emb = (oc == OP["embed"]) & has_t & live
    emb_bytes = np.where(emb, ot.weight_fraction * low.t_bytes[np.maximum(ot.tensor, 0)], 0.0)
    wfrac = pl.wfrac
    if emb.any():
        efix, epb = dma_cost(wfrac[emb], sa, hp, None if hp.nports == 0 else hp.kind_rbw[0])
        t_other[emb] = efix + emb_bytes[emb] * epb
        cols[emb] = np.maximum(_ceil(ot.tokens[emb]), 1.0).astype(np.int64)
    e, ge, M, K, N = job.e, job.ge, job.M, job.K, job.N
    cols[e] = np.maximum(_ceil(N / hp.cols), 1.0).astype(np.int64)
    # split-K: GEMMs may also split K into slices of R rows; partial sums (accumulator width)
    # per column tile are reduced over the NoC and added on the vector unit
    kt = np.ones(nops, np.int64)
    rb = np.zeros(nops)
    ra = np.zeros(nops)
    g_e = e[ge]
    kt[g_e] = np.maximum(_ceil(K[ge] / hp.rows), 1.0).astype(np.int64)
    per_tile = M[ge] * N[ge] / cols[g_e] * job.pr[ge]
    rb[g_e] = per_tile * hp.acc_bytes
    ra[g_e] = per_tile / hp.vector_rate
    # traffic of the ops whose traffic does not depend on a tiling
    rd = np.zeros((nops, nl))
    wr = np.zeros((nops, nl))
    att_idx = pl.att_idx
    if len(att_idx):
        wr[att_idx] += (ot.kv_write_elems[att_idx] * kvB)[:, None] * wfrac[att_idx]
    oi = np.flatnonzero((vec | (oc == OP["dispatch"]) | emb) & live)
    rd[oi, hv[oi]] += np.where(emb[oi], 0.0, ot.in_elems[oi] * aB)
    wr[oi, hv[oi]] += ot.out_elems[oi] * aB
    if emb.any():
        rd[emb] += emb_bytes[emb][:, None] * np.where(np.arange(nl) == sa, 0.0, wfrac[emb])
        wr[emb, sa] += emb_bytes[emb] * (1.0 - wfrac[emb, sa])
        rd[emb, sa] += emb_bytes[emb]
    return OtherOps(t_other, vcyc, vec, emb, cols, kt, rb, ra, rd, wr)


# ---------------------------------------------------------------------------- 5. schedule
class Net(NamedTuple):
    """The NoC as the scheduler sees it: topology code, link bytes per cycle, hop cycles,
    joules per byte per hop."""

    topo: int
    link: float
    hop: float
    e_hop: float


def net_params(hw, hp) -> Net:
    """:class:`Net` of ``hw`` (a bus with one byte per cycle when it has no NoC)."""
    noc = hw.noc
    return Net(TOPOLOGIES[noc.topology] if noc else TOPOLOGIES["bus"],
               noc.link_bandwidth_bytes_per_s / hp.clock_hz if noc else 1.0,
               noc.hop_latency_s * hp.clock_hz if noc else 0.0,
               noc.energy_per_byte_per_hop_j if noc else 0.0)


class Schedule(NamedTuple):
    """Phase times ``T`` and core counts ``cc`` (per phase), the chosen front point
    ``choice`` and its one-core cycles ``t1`` per op, the NoC bytes per op (dispatch and
    combine), and the wrap-around placement: first ``core``, ``span``, ``start``, ``end``."""

    T: np.ndarray
    cc: np.ndarray
    choice: np.ndarray
    t1: np.ndarray
    noc_bytes: np.ndarray
    core: np.ndarray
    span: np.ndarray
    start: np.ndarray
    end: np.ndarray


def fluid(hp, rd: np.ndarray, wr: np.ndarray, emb=None, att=None) -> np.ndarray:
    """Busy cycles each op causes on the shared (chip and off-chip) levels. With off-chip
    ports, the off-chip bytes go to their kinds' ports (reads: weights for embedding lookups
    ``emb``, else activations; writes: the KV cache for attention ``att``, else outputs) and
    the busiest port counts."""
    sh = hp.shared_mask
    if hp.nports == 0:
        return (rd * sh / hp.read_bpc).sum(axis=1) + (wr * sh / hp.write_bpc).sum(axis=1)
    off = hp.offchip
    rest = sh * (np.arange(len(sh)) != off)
    t = (rd * rest / hp.read_bpc).sum(axis=1) + (wr * rest / hp.write_bpc).sum(axis=1)
    n = rd.shape[0]
    emb = np.zeros(n, bool) if emb is None else emb
    att = np.zeros(n, bool) if att is None else att
    by_kind = np.zeros((n, 4, 2))                    # [op, kind, read/write] off-chip bytes
    by_kind[:, 0, 0] = np.where(emb, rd[:, off], 0.0)
    by_kind[:, 1, 0] = np.where(emb, 0.0, rd[:, off])
    by_kind[:, 3, 1] = np.where(att, wr[:, off], 0.0)
    by_kind[:, 2, 1] = np.where(att, 0.0, wr[:, off])
    return t + port_busy(hp, by_kind).max(axis=1)


def port_busy(hp, by_kind: np.ndarray) -> np.ndarray:
    """Busy cycles of every off-chip port [..., ports] from off-chip bytes by kind of data
    (KINDS order) and direction [..., kinds, read/write]."""
    out = np.zeros(by_kind.shape[:-2] + (hp.nports,))
    for k in range(4):
        p = hp.port_of[k]
        out[..., p] += (by_kind[..., k, 0] / hp.port_rbw[p]
                        + by_kind[..., k, 1] / hp.port_wbw[p])
    return out


def schedule_step(hp, low: Lowered, job: GemmJob, fr: Fronts, oth: OtherOps,
                  net: Net, placement: bool = True) -> Schedule:
    """Stage 5: the level-synchronous phase schedule over the cores (docs/simulator.md);
    ``placement=False`` leaves the wrap-around placement (``core`` ... ``end``) None."""
    ot = low.ot
    nops = len(ot)
    e, pr = job.e, job.pr
    aB = low.a_bits / 8.0
    oc = ot.op_code
    FT = np.zeros((nops, fr.fronts.shape[1]))
    FF = np.zeros((nops, fr.fronts.shape[1]))
    NF = np.ones(nops, np.int64)
    FT[:, 0] = oth.t_other
    FF[:, 0] = fluid(hp, oth.rd, oth.wr, oth.emb, oc == OP["attention"])
    FT[e] = fr.fronts[:, :, 0] * pr[:, None]
    FF[e] = fr.fronts[:, :, 9] * pr[:, None]
    NF[e] = fr.npts
    att_e = ~job.ge
    FT[e[att_e]] += oth.vcyc[e[att_e]][:, None]
    noc_bytes = np.where(oc == OP["dispatch"], ot.out_elems * aB,
                         np.where(oc == OP["combine"], ot.in_elems * aB, 0.0))
    T, cc, choice = schedule(ot.phase_ptr, ot.phase_order, ot.phase_group, FT, FF, NF,
                             oth.cols, oth.kt, oth.rb, oth.ra, noc_bytes, hp.cores, net.topo,
                             net.link, net.hop)
    t1 = FT[np.arange(nops), choice]
    if not placement:
        return Schedule(T, cc, choice, t1, noc_bytes, None, None, None, None)
    core, span, start, end = wrap_around(ot.phase_ptr, ot.phase_order, T, cc, t1)
    return Schedule(T, cc, choice, t1, noc_bytes, core, span, start, end)


# ---------------------------------------------------------------------------- 6. traffic, NoC
class Traffic(NamedTuple):
    """Bytes read ``rd`` and written ``wr`` [ops x levels] with the chosen tilings, compute
    cycles ``comp``, dataflow (-1: not a tiled op) and tile shape per op, and which of the
    engine ops ran out of staging buffer (``overflow``, ``GemmJob.e`` order)."""

    rd: np.ndarray
    wr: np.ndarray
    comp: np.ndarray
    dflow: np.ndarray
    tiles: np.ndarray
    overflow: np.ndarray
    port_busy: np.ndarray | None = None     # off-chip ports: busy cycles of each


def chosen_traffic(hp, low: Lowered, pl: Placement, job: GemmJob, fr: Fronts, oth: OtherOps,
                   sch: Schedule) -> Traffic:
    """Stage 6a: the traffic of every op with the tiling the scheduler chose (expected bytes,
    times ``p_active``; docs/simulator.md)."""
    nops = len(low.ot)
    plan = pl.plan
    sw, sa, so = plan.stage_w, plan.stage_a, plan.stage_o
    R, C = hp.rows, hp.cols
    aB = low.a_bits / 8.0
    e, pr, M, K, N, wB, kf = job.e, job.pr, job.M, job.K, job.N, job.wB, job.kf
    ch = sch.choice[e]
    P = fr.fronts[np.arange(len(e)), ch]
    streamed = fr.src[np.arange(len(e)), ch] == 1
    overflow = np.where(streamed, fr.of_b, fr.of_a)
    h = np.where(streamed, job.h_b, job.h_a)
    a_dma, o_dma = h != sa, h != so
    comp = np.zeros(nops)
    comp[e] = pr * P[:, 1]
    dflow = np.full(nops, -1, np.int64)
    tiles = np.zeros((nops, 3))
    dflow[e] = P[:, 2].astype(np.int64)
    tiles[e] = P[:, 3:6]
    rd, wr = oth.rd.copy(), oth.wr.copy()
    Wf, Af, Ob = P[:, 6] * pr, P[:, 7] * pr, P[:, 8] * pr
    wfe = pl.wfrac[e]
    src = wfe.copy()
    src[:, sw] = 0.0
    rx = np.where(streamed[:, None], job.rx_b, job.rx_a)
    x = plan.cache_level
    if x >= 0 and (rx[:, 0] > 0).any():
        # a cache serves the re-reads inside a chip tile (docs/simulator.md): of the
        # operands beyond it, Wc and Ac come from there, the rest from the cache
        wc, ac = E.chip_fetches(P[:, 2], M, K.astype(np.float64), N.astype(np.float64),
                                P[:, 3], P[:, 4], P[:, 5], wB, aB, P[:, 6], P[:, 7],
                                np.ascontiguousarray(rx))
        beyond = np.arange(len(hp.names)) > x
        re_w = (Wf - wc * pr)[:, None] * np.where(beyond[None, :] & (rx[:, 1:2] > 0),
                                                  src, 0.0)
        rd[e] -= re_w
        rd[e, x] += re_w.sum(axis=1)
        re_a = np.where(rx[:, 4] > 0, Af - ac * pr, 0.0)
        Af_h = Af - re_a
        rd[e, x] += re_a
    else:
        Af_h = Af
        re_w = np.zeros_like(src)
    rd[e] += Wf[:, None] * src
    wr[e, sw] += Wf * (1.0 - wfe[:, sw])
    ws = P[:, 2] == E.WS
    passes = np.where(ws, _ceil(M / np.maximum(P[:, 3], 1e-9)), _ceil(M / R))
    rd[e, sw] += K * N * wB * passes * pr
    rd[e, h] += np.where(a_dma, Af_h, 0.0)
    wr[e, sa] += np.where(a_dma, Af, 0.0)
    rd[e, sa] += M * K * aB * _ceil(N / C) * pr
    # partial sums accumulate in place: one access per update (the last one is the drain)
    psum = M * N * hp.acc_bytes * pr * np.where(ws, kf, 1.0)
    wr[e, so] += psum
    wr[e, h] += np.where(o_dma, Ob, 0.0)
    ports = None
    if hp.nports:
        off = hp.offchip
        att = low.ot.op_code == OP["attention"]
        k = np.zeros((4, 2))         # off-chip bytes by kind, read / write
        w_off = Wf * src[:, off] - re_w[:, off]
        k[0, 0] = oth.rd[oth.emb, off].sum() + w_off[job.ge].sum()
        k[3, 0] = w_off[~job.ge].sum()
        k[1, 0] = oth.rd[~oth.emb, off].sum() + np.where(a_dma & (h == off), Af_h, 0.0).sum()
        k[3, 1] = oth.wr[att, off].sum()
        k[2, 1] = oth.wr[~att, off].sum() + np.where(o_dma & (h == off), Ob, 0.0).sum()
        ports = port_busy(hp, k)
    return Traffic(rd, wr, comp, dflow, tiles, overflow, ports)


class Noc(NamedTuple):
    """NoC energy per op ``noc_j``, NoC cycles of the step ``noc_cyc`` (dispatch and combine
    per phase plus each phase's longest split-K reduction), K-slices per op ``ksl`` and the
    split-K tree's adds per op ``red_adds``; per phase the dispatch/combine cycles ``noc_t``
    and the longest split-K reduction ``red_t``."""

    noc_j: np.ndarray
    noc_cyc: float
    ksl: np.ndarray
    red_adds: np.ndarray
    noc_t: np.ndarray
    red_t: np.ndarray


def noc_step(hp, ot: OpTable, oth: OtherOps, sch: Schedule, net: Net) -> Noc:
    """Stage 6b: MoE dispatch and combine per phase, attributed to ops by their bytes, and
    the split-K reductions of the ops whose N-only split would overrun their phase."""
    nops = len(ot)
    T, cc, t1, cols, kt = sch.T, sch.cc, sch.t1, oth.cols, oth.kt
    noc_t, noc_j = phase_noc(ot.phase_ptr, ot.phase_order, ot.phase_group, cc, sch.noc_bytes,
                             net.topo, net.link, net.hop, net.e_hop)
    noc_cyc = float(noc_t.sum())
    ksl = np.ones(nops, np.int64)
    ph_of = np.empty(nops, np.int64)
    ph_of[ot.phase_order] = np.repeat(np.arange(len(T)), np.diff(ot.phase_ptr))
    sh1 = np.where((cols > 1) & (cc[ph_of] > 1),
                   _ceil(cols / np.minimum(cols, cc[ph_of])) / cols, 1.0)
    split = np.flatnonzero((kt > 1) & (sh1 * t1 > T[ph_of] * (1.0 + 1e-9)))
    red_adds = np.zeros(nops)
    red_t = np.zeros(len(T))
    if len(split):
        ks, bh, tn = k_slices_ops(split, t1, cols, kt, cc[ph_of[split]], oth.rb, oth.ra,
                                  net.topo, net.link, net.hop, T[ph_of[split]])
        ksl[split] = ks
        noc_j[split] += bh * net.e_hop
        # the tree's adds: ks - 1 partial outputs of M x N accumulator words per op (vector
        # energy); its NoC time: the longest reduction of a phase (pieces run in parallel)
        red_adds[split] = (ks - 1) * oth.rb[split] / hp.acc_bytes * cols[split]
        np.maximum.at(red_t, ph_of[split], tn)
        noc_cyc += float(red_t.sum())
    return Noc(noc_j, noc_cyc, ksl, red_adds, noc_t, red_t)


# ---------------------------------------------------------------------------- 7. energy
class Energy(NamedTuple):
    """Energy per op ``op_j`` (static excluded), by kind per op (``e_mac``, ``e_vec``) and
    per op and level ``e_mem``; the static energy, the total and the breakdown dict."""

    op_j: np.ndarray
    e_mac: np.ndarray
    e_mem: np.ndarray
    e_vec: np.ndarray
    static: float
    total: float
    breakdown: dict


def step_energy(hw, hp, ot: OpTable, op_wbits: np.ndarray, a_bits: int, tr: Traffic,
                noc: Noc, latency: float) -> Energy:
    """Stage 7: MACs, memory accesses, vector ops, NoC and static power (docs/simulator.md)."""
    a_idx = min(max(a_bits, 1), 16)
    e_mac = ot.macs * hp.e_mac[np.clip(op_wbits, 1, 16), a_idx] * (ot.macs > 0)
    e_mem = tr.rd * hp.read_j[None, :] + tr.wr * hp.write_j[None, :]
    e_vec = (ot.vector_ops + noc.red_adds) * hp.e_vector
    op_j = e_mac + e_mem.sum(axis=1) + e_vec + noc.noc_j
    static = hw.energy.static_power_w * latency
    energy = float(op_j.sum() + static)
    breakdown = energy_breakdown(hp, float(e_mac.sum()), float(e_vec.sum()),
                                 float(noc.noc_j.sum()), e_mem.sum(axis=0), static)
    return Energy(op_j, e_mac, e_mem, e_vec, float(static), energy, breakdown)


def energy_breakdown(hp, mac: float, vector: float, noc: float, memory: np.ndarray,
                     static: float) -> dict:
    """``SimResult.energy_breakdown_j`` from a step's sums: MACs, vector ops, NoC, static,
    and ``memory:<level>`` per level (``memory``: joules per level)."""
    out = {"mac": float(mac), "vector": float(vector), "noc": float(noc),
           "static": float(static)}
    for i, name in enumerate(hp.names):
        out[f"memory:{name}"] = float(memory[i])
    return out


# ---------------------------------------------------------------------------- 8. result
def layer_latency(ot: OpTable, T: np.ndarray, clock_hz: float) -> np.ndarray | None:
    """Seconds per layer, shape ``(n_layers + 2,)``: [0] the phases before the first
    transformer layer (embedding), [1 + l] layer ``l``, [-1] the phases after the last
    (final norm, lm_head). A phase counts for the highest layer among its ops. None without a
    model (a single GEMM)."""
    if ot.model is None:
        return None
    slot = _phase_slots(ot)
    return np.bincount(slot, weights=T / clock_hz, minlength=int(ot.model.total_layers) + 2)


_SLOTS = IdentityCache()


def _phase_slots(ot: OpTable) -> np.ndarray:
    """The :func:`layer_latency` slot of every phase of ``ot`` (cached per op table)."""
    hit = _SLOTS.get(ot)
    if hit is not None:
        return hit
    nl = int(ot.model.total_layers)
    nph = len(ot.phase_ptr) - 1
    if nph <= 0:
        slot = np.zeros(0, np.int64)
    else:
        lay = np.maximum.reduceat(ot.layer[ot.phase_order], ot.phase_ptr[:-1])
        has = lay >= 0
        first = int(np.argmax(has)) if has.any() else nph
        slot = np.where(has, lay + 1, np.where(np.arange(nph) < first, 0, nl + 1))
    _SLOTS.put(ot, slot.astype(np.int64))
    return _SLOTS.get(ot)


class Totals(NamedTuple):
    """A step's sums over its ops, what :func:`result_of` reports: bytes moved, read and
    written per level; compute, stall and vector cycles (vector ops and attention); MACs and
    PE-cycles (MACs times cycles per MAC); GEMMs whose tiles overflow the staging buffer and
    live ops whose activations stay off chip."""

    moved: np.ndarray
    rd: np.ndarray
    wr: np.ndarray
    comp: float
    stall: float
    vec: float
    macs: float
    pe: float
    overflow: int
    offchip_act: int


def assemble(hw, hp, low: Lowered, pl: Placement, oth: OtherOps, sch: Schedule,
             tr: Traffic, noc: Noc, en: Energy, model_name, weight_bytes: float) -> SimResult:
    """Stage 8: totals, bound, warnings and the per-op table of the step."""
    ot, plan = low.ot, pl.plan
    oc, p = ot.op_code, ot.p_active
    is_att = oc == OP["attention"]
    live = p > 0
    vec, vcyc, rd, wr = oth.vec, oth.vcyc, tr.rd, tr.wr
    moved = rd + wr
    vcyc_x = np.where(vec | is_att, vcyc, 0.0)
    comp = tr.comp
    a_bits = low.a_bits
    a_idx = min(max(a_bits, 1), 16)
    op_wbits = pl.op_wbits
    pe_cycles = float((ot.macs * hp.cpm[np.clip(op_wbits, 1, 16), a_idx]).sum())
    t1 = sch.t1
    stall = np.maximum(t1 - comp - vcyc_x, 0.0)
    off = hp.offchip
    tot = Totals(moved.sum(axis=0), rd.sum(axis=0), wr.sum(axis=0), float(comp.sum()),
                 float(stall.sum()), float(vcyc_x.sum()), float(ot.macs.sum()), pe_cycles,
                 int(tr.overflow.sum()), int((pl.home[live] == off).sum()) if off >= 0 else 0)
    op_data = {
        "names": ot.names, "op_code": oc, "layer": ot.layer, "expert": ot.expert,
        "role": ot.role, "tensor": ot.tensor,
        "tensor_names": (low.tensor_names if low.tensor_names is not None
                         else tensor_table(ot.model).names if ot.model is not None
                         else ("W",)),
        "w_bits": op_wbits, "a_bits": a_bits, "p_active": p, "m": ot.m, "k": ot.k,
        "n": ot.n, "macs": ot.macs, "core": sch.core, "cores": sch.span,
        "start_cycle": sch.start, "end_cycle": sch.end, "cycles": t1, "compute_cycles": comp,
        "vector_cycles": vcyc_x, "stall_cycles": stall,
        "dataflow": tr.dflow, "k_slices": noc.ksl, "tiles": tr.tiles, "bytes": moved,
        "energy_j": en.op_j, "level_names": hp.names}
    return result_of(hw, hp, ot, model_name, plan, tot, sch.T, sch.cc, noc.noc_cyc,
                     tr.port_busy, en.total, en.breakdown, weight_bytes, op_data,
                     ot.phase_order, ot.phase_ptr, layer_latency(ot, sch.T, hp.clock_hz))


def result_of(hw, hp, ot: OpTable, model_name, plan: MemoryPlan, tot: Totals,
              T: np.ndarray, cc: np.ndarray, noc_cyc: float, port_busy, energy_j: float,
              breakdown: dict, weight_bytes: float, op_data, order: np.ndarray,
              ptr: np.ndarray, layer_latency_s) -> SimResult:
    """The :class:`~accelsim.sim.result.SimResult` of a step from its sums (``tot``), its
    phase times ``T`` and core counts ``cc`` (phases ``order``/``ptr``), NoC cycles, the
    off-chip ports' busy cycles (None: one bus), energy and per-op table (``op_data``):
    the bound, utilization and warnings. :func:`assemble` (one chip) and
    :func:`accelsim.sim.simulate_parts` (device parts, from the sums of shared units) both
    build their results here."""
    cores, R, C = hp.cores, hp.rows, hp.cols
    cycles = float(T.sum())
    latency = cycles / hp.clock_hz
    off = hp.offchip
    # off chip, reads and writes share the bus; on-chip SRAM banks take DMA writes while the
    # array reads (double buffering), so a level is busy for the longer of the two
    r_t, w_t = tot.rd / hp.agg_read_bpc, tot.wr / hp.agg_write_bpc
    lvl_time = np.where(hp.onchip, np.maximum(r_t, w_t), r_t + w_t)
    if port_busy is not None:     # ports work side by side: the busiest one
        lvl_time[off] = port_busy.max()
    busy = {"compute": tot.comp / cores, "vector": tot.vec / cores,
            "offchip_bandwidth": float(lvl_time[off]) if off >= 0 else 0.0,
            "onchip_bandwidth": float(lvl_time[hp.onchip].max(initial=0.0)),
            "noc": noc_cyc}
    top = max(busy, key=lambda k: busy[k])
    bound = top if busy[top] >= 0.5 * cycles else "latency"
    util = tot.pe / (R * C * cores * cycles) if cycles > 0 else 0.0
    warnings = _warnings(hp, plan, tot.overflow, tot.offchip_act)
    tokens = float(ot.tokens_step)
    names = hp.names
    by_level = tot.moved
    return SimResult(
        hw=hw.name, model=model_name, scenario=dict(ot.scenario), residency=plan.policy,
        clock_hz=hp.clock_hz, cores=cores, cycles=cycles, latency_s=latency, tokens=tokens,
        tokens_per_s=tokens / latency if latency > 0 else 0.0, energy_j=energy_j,
        energy_breakdown_j=breakdown, weight_bytes=weight_bytes,
        weight_bytes_by_level=dict(zip(names, plan.weight_bytes_by_level.tolist())),
        kv_bytes_by_level=dict(zip(names, plan.kv_bytes_by_level.tolist())),
        activation_bytes_by_level=dict(zip(names, plan.act_reserve.tolist())),
        staging_bytes_by_level=dict(zip(names, plan.staging.tolist())),
        bytes_by_level=dict(zip(names, by_level.tolist())),
        offchip_bytes=float(by_level[off]) if off >= 0 else 0.0,
        onchip_bytes_moved=float(by_level[hp.onchip].sum()),
        macs=tot.macs, mac_utilization=util, compute_cycles=tot.comp,
        stall_cycles=tot.stall, vector_cycles=tot.vec, noc_cycles=noc_cyc,
        busy_cycles=busy, bound=bound, warnings=tuple(warnings), op_data=op_data,
        phase_data={"T": T, "c": cc, "order": order, "ptr": ptr},
        layer_latency_s=layer_latency_s)


def _warnings(hp, plan: MemoryPlan, overflow: int, offchip_act: int) -> list[str]:
    """Staging-buffer overflows (``overflow`` GEMMs) and activations kept off chip
    (``offchip_act`` live ops)."""
    sw, sa, so = plan.stage_w, plan.stage_a, plan.stage_o
    warnings = []
    if overflow:
        warnings.append(f"{int(overflow)} GEMM(s) need more staging buffer than "
                        f"{hp.names[sw]}/{hp.names[sa]}/{hp.names[so]} keep for tiles; "
                        "simulated with the smallest tile")
    if offchip_act:
        warnings.append(f"{int(offchip_act)} op(s) keep activations off chip")
    return warnings


# ---------------------------------------------------------------------------- composed
def finish_step(hw, hp, low: Lowered, pl: Placement, job: GemmJob, fr: Fronts,
                model_name, weight_bytes: float) -> SimResult:
    """Stages 4-8 of one step whose tiling fronts are known."""
    net = net_params(hw, hp)
    oth = other_ops(hw, hp, low, pl, job)
    sch = schedule_step(hp, low, job, fr, oth, net)
    tr = chosen_traffic(hp, low, pl, job, fr, oth, sch)
    noc = noc_step(hp, low.ot, oth, sch, net)
    sch = overheads(hp, low.ot, sch, pl.op_wbits)   # fixed costs, after every choice
    latency = float(sch.T.sum()) / hp.clock_hz
    en = step_energy(hw, hp, low.ot, pl.op_wbits, low.a_bits, tr, noc, latency)
    return assemble(hw, hp, low, pl, oth, sch, tr, noc, en, model_name,
                    weight_bytes).with_power_check(hw.energy.rated_power_w, hw.name)


def overheads(hp, ot: OpTable, sch: Schedule, op_wbits: np.ndarray | None = None
              ) -> Schedule:
    """The efficiency model's fixed overheads in the schedule (``hw.efficiency``,
    docs/fidelity.md): every op that runs is one kernel whose launch and synchronisation add
    ``kernel_overhead`` to its phase (times the op's probability of running), the routed
    experts of a phase one fused kernel (:func:`_kernels_per_phase`); the step's host
    overhead is added to its first phase. With ``op_wbits`` (each op's weight bits), a phase
    of a MoE layer's expert GEMMs also pays one more ``kernel_overhead`` per extra weight
    width among its experts (:func:`mixed_width_kernels`: a fused MoE kernel runs one
    format, so each further width is one more pass). Unchanged without them."""
    nph = len(sch.T)
    if (hp.kernel_cyc <= 0 and hp.step_cyc <= 0) or nph == 0:
        return sch
    runs = np.where((ot.p_active > 0) & (sch.t1 > 0), ot.p_active, 0.0)
    ph_of = np.repeat(np.arange(nph), np.diff(ot.phase_ptr))
    kernels = _kernels_per_phase(ot, runs, ph_of, nph)
    if op_wbits is not None:
        kernels = kernels + mixed_width_kernels(ot, op_wbits)
    T = sch.T + hp.kernel_cyc * kernels
    T[0] += hp.step_cyc
    return sch._replace(T=T)


def _kernels_per_phase(ot: OpTable, runs: np.ndarray, ph_of: np.ndarray, nph: int
                       ) -> np.ndarray:
    """Expected kernels per phase: every op that runs is one kernel (weighted by its
    probability of running), except the routed experts' ops of a phase, which a fused MoE
    kernel (a grouped GEMM over the layer's experts, as in TensorRT-LLM and vLLM) runs as one:
    that kernel runs when any of them does, ``P_any = 1 - prod_e (1 - p_e)`` over the
    phase's experts (the pass :func:`mixed_width_kernels` counts as the one a layer needs
    anyway)."""
    order = ot.phase_order
    r = runs[order]
    fused = (ot.expert[order] >= 0) & (r > 0)
    out = np.bincount(ph_of[~fused], weights=r[~fused], minlength=nph).astype(float)
    if fused.any():
        idx, ph = order[fused], ph_of[fused]
        ex = ot.expert[idx]
        # one entry per (phase, expert), sorted by phase
        _, first = np.unique(ph * (int(ex.max()) + 1) + ex, return_index=True)
        ph1 = ph[first]
        idle = 1.0 - np.minimum(runs[idx[first]], 1.0)
        starts = np.flatnonzero(np.r_[True, ph1[1:] != ph1[:-1]])
        out[ph1[starts]] += 1.0 - np.multiply.reduceat(idle, starts)
    return out


def run_step(hw, hp, low: Lowered, opts, mask: int, model_name) -> SimResult:
    """Every stage of one step on one chip (what :func:`accelsim.sim.simulate` runs)."""
    pl = place(hw, hp, low, opts)
    job = gemm_inputs(hw, hp, low, pl)
    fr = run_engine(hp, mask, low.a_bits, [job], opts.full_pipeline)[0]
    return finish_step(hw, hp, low, pl, job, fr, model_name, float(low.t_bytes.sum()))


# ---------------------------------------------------------------------------- mixed widths
def mixed_width_kernels(ot: OpTable, op_wbits: np.ndarray) -> np.ndarray:
    """Expected *extra* kernels per phase that mixed weight widths inside one MoE layer cost.

    A fused MoE kernel (vLLM, TensorRT-LLM, llama.cpp) runs the routed experts of a layer
    with one weight format, so a phase holding a layer's expert GEMMs (``w1``/``w3``
    together, then ``w2``) needs one pass per distinct width among the experts that run.
    With expert ``e`` running with probability ``p_e`` (independently, as the graph's
    expected values assume), width ``w`` needs its pass with probability
    ``P_w = 1 - prod_{e at w} (1 - p_e)``; one pass (``P_any``) is the kernel the layer needs
    anyway, so the extra passes are ``sum_w P_w - P_any`` (``distinct widths - 1`` when
    every expert runs; 0 with one width). Returns an array per phase (``ot.phase_ptr``).
    """
    nph = len(ot.phase_ptr) - 1
    out = np.zeros(max(nph, 0))
    if nph <= 0:
        return out
    order = ot.phase_order
    ph_of = np.repeat(np.arange(nph), np.diff(ot.phase_ptr))
    sel = (ot.expert[order] >= 0) & np.isin(ot.op_code[order], GEMM_OPS) & \
        (ot.p_active[order] > 0)
    if not sel.any():
        return out
    idx, ph = order[sel], ph_of[sel]
    # one entry per (phase, expert), the expert's first op in the phase (w1 and w3 of an
    # expert share its width and probability), sorted by phase then expert
    ex = ot.expert[idx]
    _, first = np.unique(ph * (int(ex.max()) + 1) + ex, return_index=True)
    ops, ph, ex = idx[first], ph[first], ex[first]
    w = op_wbits[ops]
    idle = 1.0 - np.minimum(ot.p_active[ops], 1.0)
    starts = np.flatnonzero(np.r_[True, ph[1:] != ph[:-1]])
    # the widths of every phase: entries by (phase, width, expert)
    o = np.lexsort((ex, w, ph))
    wph, ww = ph[o], w[o]
    wstart = np.flatnonzero(np.r_[True, (wph[1:] != wph[:-1]) | (ww[1:] != ww[:-1])])
    p_w = 1.0 - np.multiply.reduceat(idle[o], wstart)        # per (phase, width)
    gph = wph[wstart]
    gstart = np.flatnonzero(np.r_[True, gph[1:] != gph[:-1]])
    nwidth = np.diff(np.r_[gstart, len(gph)])
    p_any = 1.0 - np.multiply.reduceat(idle, starts)          # per phase, expert order
    # sum over each mixed phase's widths with np.sum's rounding (in order, left to right,
    # below 9 terms), vectorised over phases
    mixed = np.flatnonzero(nwidth >= 2)
    small = mixed[nwidth[mixed] <= 8]
    total = p_w[gstart[small]].copy()
    for j in range(1, int(nwidth[small].max(initial=1))):
        more = nwidth[small] > j
        total[more] += p_w[gstart[small][more] + j]
    out[gph[gstart[small]]] = np.maximum(0.0, total - p_any[small])
    for k in mixed[nwidth[mixed] > 8]:
        w_k = p_w[gstart[k]:gstart[k] + nwidth[k]]
        out[gph[gstart[k]]] = max(0.0, float(np.sum(w_k)) - p_any[k])
    return out
