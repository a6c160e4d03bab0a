"""``simulate`` and ``simulate_gemm``: the stages of the simulator, in order.

1. lower the graph to an op table (cached per graph) and the allocation to bits and bytes per
   tensor (:mod:`accelsim.sim.lower`);
2. budget the memory and place weights, KV cache and activations
   (:mod:`accelsim.sim.residency`); :func:`memory_plan` and :func:`fits` stop here;
3. map every GEMM and attention to L1 tiles and run its tile pipeline
   (:mod:`accelsim.sim.mapping`, :mod:`accelsim.sim.engine`); vector ops, embedding lookups
   and dispatch in closed form;
4. schedule the phases on the cores (:mod:`accelsim.sim.schedule`);
5. energy (:mod:`accelsim.sim.energy`) and the :class:`~accelsim.sim.result.SimResult`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import ConfigError, DoesNotFitError, Problem
from ..hw.spec import Accelerator
from ..precision import BitAllocation, WeightFormat
from . import engine as E
from .lower import OP, GEMM_OPS, VECTOR_OPS, OpTable, lower, phases, tensor_bits
from .lower import tensor_storage_bytes, tensor_table
from .gemm import fast_gemm
from .mapping import act_home, dma_cost, hw_params
from .residency import MemoryPlan, get_policy, plan_memory
from .result import SimResult
from .schedule import TOPOLOGIES, k_slices_ops, phase_noc, schedule, wrap_around

__all__ = ["simulate", "simulate_gemm", "memory_plan", "fits", "SimOptions", "finish_step"]


@dataclass(frozen=True)
class SimOptions:
    """Knobs of the model (defaults documented in docs/simulator.md).

    residency : str
        ``hot-first``, ``offchip`` or ``must-fit``.
    dataflow : str or None
        ``weight_stationary`` or ``output_stationary`` to force one; None lets the mapper
        pick, per GEMM, the fastest of the dataflows the array supports.
    staging_fraction : float
        Share of each staging buffer kept for double-buffered tiles (0 < f <= 1).
    full_pipeline : bool
        Run every tile instead of extending the steady state in closed form (tests).
    """

    residency: str = "hot-first"
    dataflow: str | None = None
    staging_fraction: float = 0.25
    full_pipeline: bool = False

    def check(self, hw) -> int:
        """Validate against ``hw``; returns the dataflow mask for the engine."""
        problems = []
        try:
            get_policy(self.residency)
        except ConfigError as e:
            problems.extend(e.problems)
        if not (0.0 < self.staging_fraction <= 1.0):
            problems.append(Problem("must be in (0, 1]", key="staging_fraction",
                                    value=self.staging_fraction))
        mask = 0
        ma = hw.cores.mac_array
        if self.dataflow is None:
            mask = sum(1 << E.DATAFLOWS.index(d) for d in ma.dataflows)
        elif self.dataflow not in E.DATAFLOWS:
            problems.append(Problem(f"must be one of {', '.join(E.DATAFLOWS)}",
                                    key="dataflow", value=self.dataflow))
        elif self.dataflow not in ma.dataflows:
            problems.append(Problem(f"{hw.name} supports {', '.join(ma.dataflows)}",
                                    key="dataflow", value=self.dataflow))
        else:
            mask = 1 << E.DATAFLOWS.index(self.dataflow)
        if problems:
            raise ConfigError(problems)
        return mask


def _as_hw(hw):
    if isinstance(hw, Accelerator):
        return hw
    if isinstance(hw, (str, bytes)) or hasattr(hw, "__fspath__") or isinstance(hw, dict):
        from ..hw import load_hw
        return load_hw(hw)
    return hw


def simulate(hw, graph, alloc: BitAllocation | None = None, *,
             residency: str = "hot-first", dataflow: str | None = None,
             staging_fraction: float = 0.25, full_pipeline: bool = False,
             ideal: bool = False) -> SimResult:
    """Simulate one step of ``graph`` on ``hw`` with the weight precisions of ``alloc``.

    Parameters
    ----------
    hw : Accelerator or str
        An accelerator (or a preset name / YAML path).
    graph : networkx.DiGraph
        From :func:`accelsim.workload.build_graph`.
    alloc : BitAllocation, optional
        Bits per expert and role; default: every weight at 16 bits.
    residency, dataflow, staging_fraction, full_pipeline
        See :class:`SimOptions`.
    ideal : bool
        Ignore the accelerator's efficiency model (``hw.efficiency``: achievable bandwidth
        and MAC-rate shares, kernel and step overheads) and give the ideal roofline.

    Returns
    -------
    SimResult

    Raises
    ------
    ConfigError
        A bad option, or an allocation that does not fit the graph's model.
    DoesNotFitError
        The weights do not fit (``must-fit``, or a chip without off-chip memory).

    Examples
    --------
    >>> import accelsim
    >>> m = accelsim.load_workload("mixtral-8x7b")
    >>> g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=16))
    >>> a = accelsim.BitAllocation.uniform(m, 4)
    >>> r = simulate("h100", g, a)
    >>> r.bound, r.weight_bytes == a.weight_bytes(m)
    ('offchip_bandwidth', True)
    """
    hw = _as_hw(hw)
    if ideal:
        hw = hw.ideal()
    opts = SimOptions(residency, dataflow, staging_fraction, full_pipeline)
    mask = opts.check(hw)
    ot, bits, t_bytes, t_numel, a_bits, kv_bits = _lower_all(hw, graph, alloc)
    return finish_step(hw, _run(hw, ot, bits, t_bytes, t_numel, a_bits, kv_bits, opts, mask,
                                ot.model.name))


def _lower_all(hw, graph, alloc):
    """Stage 1: the op table, and bits, storage bytes and elements per tensor."""
    ot = lower(graph)
    model = ot.model
    if alloc is None:
        alloc = BitAllocation.uniform(model, 16)
    alloc.check(model)
    tt = tensor_table(model)
    bits = tensor_bits(tt, alloc)
    t_bytes = tensor_storage_bytes(tt, alloc, bits).astype(np.float64)
    a_bits = alloc.activation_bits or hw.cores.mac_array.default_activation_bits
    return (ot, bits, t_bytes, (tt.out_f * tt.in_f).astype(np.float64), int(a_bits),
            int(alloc.kv_bits))


def memory_plan(hw, graph, alloc: BitAllocation | None = None, *,
                residency: str = "hot-first", staging_fraction: float = 0.25) -> MemoryPlan:
    """Where :func:`simulate` would put weights, KV cache and activations, without simulating.

    Runs only the lowering and the residency planning (stages 1 and 2), so it is the cheap
    way to ask whether a model fits a chip: it raises
    :class:`~accelsim.errors.DoesNotFitError` exactly when :func:`simulate` with the same
    arguments would (tested). The lowered graph is cached, so asking many chip variants is
    cheap.

    Parameters
    ----------
    hw, graph, alloc, residency, staging_fraction
        As for :func:`simulate`.

    Returns
    -------
    MemoryPlan
        ``weight_bytes_by_level``, ``kv_bytes_by_level``, ``act_reserve`` and ``staging``
        (bytes per level, ``level_names`` order), and the share of every tensor per level.

    Raises
    ------
    ConfigError
        A bad option, or an allocation that does not fit the graph's model.
    DoesNotFitError
        The weights do not fit (``must-fit``, or a chip without off-chip memory).

    Examples
    --------
    >>> import accelsim
    >>> m = accelsim.load_workload("mixtral-8x7b")
    >>> g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=1))
    >>> p = memory_plan("h100", g, accelsim.BitAllocation.uniform(m, 4))
    >>> p.level_names[-1], bool(p.weight_bytes_by_level[-1] > 0)
    ('hbm3', True)
    >>> fits("northpole", g, accelsim.BitAllocation.uniform(m, 4))
    False
    """
    hw = _as_hw(hw)
    opts = SimOptions(residency, None, staging_fraction)
    opts.check(hw)
    ot, _, t_bytes, _, a_bits, kv_bits = _lower_all(hw, graph, alloc)
    return _plan(hw, ot, t_bytes, a_bits, kv_bits, opts)[0]


def fits(hw, graph, alloc: BitAllocation | None = None, *, residency: str = "hot-first",
         staging_fraction: float = 0.25) -> bool:
    """Whether :func:`simulate` would place the model (:func:`memory_plan` without
    :class:`~accelsim.errors.DoesNotFitError`); a bad option still raises ConfigError."""
    try:
        memory_plan(hw, graph, alloc, residency=residency, staging_fraction=staging_fraction)
    except DoesNotFitError:
        return False
    return True


def _plan(hw, ot: OpTable, t_bytes: np.ndarray, a_bits: int, kv_bits: int,
          opts: SimOptions) -> tuple[MemoryPlan, np.ndarray, np.ndarray]:
    """Stage 2: the memory plan, the activation working set per op, the attention ops."""
    aB, kvB = a_bits / 8.0, kv_bits / 8.0
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


def simulate_gemm(hw, m: float, k: int, n: int, *, w_bits: int = 8, a_bits: int | None = None,
                  dataflow: str | None = None, residency: str = "hot-first",
                  group_size: int | None = 128, staging_fraction: float = 0.25,
                  full_pipeline: bool = False, ideal: bool = False) -> SimResult:
    """Simulate one GEMM: activations ``m x k`` times weights ``k x n`` on ``hw``.

    Weights are stored at ``w_bits`` in the :class:`~accelsim.precision.WeightFormat` with
    ``group_size`` (scales and zero points included) and placed by ``residency``; activations
    at ``a_bits`` (default: the array's default). Same result kind as :func:`simulate`.

    Examples
    --------
    >>> r = simulate_gemm("gemmini", 64, 256, 256, dataflow="weight_stationary")
    >>> r.compute_cycles == (256 // 16) * (256 // 16) * (2 * 16 + 16 + 64 - 2)
    True
    """
    hw = _as_hw(hw)
    if ideal:
        hw = hw.ideal()
    if (type(m) in _NUM and type(k) is int and type(n) is int and type(w_bits) is int
            and 1 <= m <= 2**40 and 1 <= k <= 2**40 and 1 <= n <= 2**40 and 1 <= w_bits <= 16
            and (a_bits is None or (type(a_bits) is int and 1 <= a_bits <= 16))
            and dataflow is None and residency in _POLICY_NAMES
            and type(staging_fraction) is float and 0.0 < staging_fraction <= 1.0
            and (group_size is None or type(group_size) is int and group_size >= 1)):
        # plain arguments (the common case in loops over design points): no checks needed
        hp = hw_params(hw)
        a = int(a_bits or hw.cores.mac_array.default_activation_bits)
        r = fast_gemm(hw, hp, float(m), k, n, w_bits, a,
                      _storage_bytes(w_bits, group_size, n, k), residency, staging_fraction,
                      hp.dataflow_mask, bool(full_pipeline))
        if r is not None:
            return finish_step(hw, r)
    problems = []
    for key, v, lo in (("m", m, 1), ("k", k, 1), ("n", n, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or (
                not math.isfinite(v)) or v < lo or v > 2**40:
            problems.append(Problem(f"must be a number in {lo}..2^40", key=key, value=v))
    for key, v in (("k", k), ("n", n)):
        if isinstance(v, (float, np.floating)) and float(v) != int(v):
            problems.append(Problem("must be an integer", key=key, value=v))
    for key, v in (("w_bits", w_bits), ("a_bits", a_bits)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))
                              or not 1 <= v <= 16):
            problems.append(Problem("must be an integer in 1..16", key=key, value=v))
    if problems:
        raise ConfigError(problems)
    opts = SimOptions(get_policy(residency).name, dataflow, staging_fraction, full_pipeline)
    mask = opts.check(hw)
    nbytes = _storage_bytes(int(w_bits), group_size, int(n), int(k))
    a = int(a_bits or hw.cores.mac_array.default_activation_bits)
    r = fast_gemm(hw, hw_params(hw), float(m), int(k), int(n), int(w_bits), a, nbytes,
                  opts.residency, staging_fraction, mask, full_pipeline)
    return finish_step(hw, r if r is not None else _gemm_general(
        hw, float(m), int(k), int(n), int(w_bits), a, nbytes, opts, mask))


def finish_step(hw, r: SimResult) -> SimResult:
    """The last stage of every simulated step: the efficiency model's fixed overheads and the
    rated-power check (docs/fidelity.md).

    With ``hw.efficiency``, every op that runs is one kernel whose launch and synchronisation
    cost ``kernel_overhead`` on the step's critical path (times the op's probability of
    running), and the step pays ``step_overhead`` of host time once; static power is charged
    for the added time. A step whose average power (``SimResult.avg_power_w``) exceeds
    ``energy.rated_power`` gets a warning. Without either, ``r`` is returned unchanged.
    """
    eff, rated = hw.efficiency, hw.energy.rated_power_w
    if eff is not None and (eff.kernel_overhead_s > 0 or eff.step_overhead_s > 0):
        p = np.asarray(r.op_data.get("p_active", ()), dtype=float)
        work = np.asarray(r.op_data.get("cycles", ()), dtype=float)
        kernels = float(p[(p > 0) & (work > 0)].sum()) if len(p) == len(work) else 0.0
        extra = eff.kernel_overhead_s * kernels + eff.step_overhead_s
        latency = r.latency_s + extra
        cycles = latency * r.clock_hz
        static = hw.energy.static_power_w * extra
        breakdown = dict(r.energy_breakdown_j)
        breakdown["static"] = breakdown.get("static", 0.0) + static
        busy = r.busy_cycles
        top = max(busy, key=lambda k: busy[k]) if busy else "latency"
        r = replace(r, latency_s=latency, cycles=cycles,
                    tokens_per_s=r.tokens / latency if latency > 0 else float("inf"),
                    energy_j=r.energy_j + static, energy_breakdown_j=breakdown,
                    bound=top if busy and busy[top] >= 0.5 * cycles else "latency")
    if rated is not None and r.latency_s > 0 and r.avg_power_w > rated * (1 + 1e-9):
        r = replace(r, warnings=tuple(r.warnings) + (
            f"average power {r.avg_power_w:.1f} W exceeds the rated power of {hw.name} "
            f"({rated:.1f} W): the energy model overestimates this step",))
    return r


_NUM = (int, float)
_POLICY_NAMES = ("hot-first", "offchip", "must-fit")


@functools.lru_cache(maxsize=4096)
def _storage_bytes(w_bits: int, group_size: int | None, n: int, k: int) -> float:
    """Bytes of a ``k x n`` weight matrix at ``w_bits`` (:class:`WeightFormat` defaults)."""
    return float(WeightFormat(w_bits, group_size).storage_bytes(n, k))


def _gemm_general(hw, m: float, k: int, n: int, w_bits: int, a_bits: int, nbytes: float,
                  opts: SimOptions, mask: int) -> SimResult:
    """``simulate_gemm`` through the general array path (the reference of the fast path)."""
    return _run(hw, _gemm_table(m, k, n), np.array([w_bits]), np.array([nbytes]),
                np.array([float(k) * float(n)]), a_bits, 16, opts, mask, None)


def _gemm_table(m: float, k: int, n: int) -> OpTable:
    f = lambda x: np.array([float(x)])  # noqa: E731
    z = np.zeros(1)
    i = np.zeros(1, np.int64)
    order, ptr, grp = phases(i, i - 1)
    return OpTable(
        names=("gemm",), index={"gemm": 0}, op_code=np.array([OP["gemm"]]),
        layer=i - 1, expert=i - 1, role=("gemm",), tensor=i, m=f(m), k=f(k), n=f(n),
        tokens=f(m), p_active=f(1.0), macs=f(m * k * n), vector_ops=z, in_elems=f(m * k),
        out_elems=f(m * n), kv_elems=z, kv_write_elems=z, kv_resident=z,
        weight_fraction=f(1.0), depth=i, group=i - 1, att_m=z, att_k=z, att_n=z,
        tensor_density=f(1.0), phase_order=order, phase_ptr=ptr, phase_group=grp,
        tokens_step=m, model=None, scenario={"gemm": {"m": m, "k": k, "n": n}})


def _ceil(x):
    return np.ceil(x - 1e-9)


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first occurrence of every distinct row, and each row's position among
    them (rows compared by value, -0.0 equal to 0.0)."""
    a = np.ascontiguousarray(a, dtype=np.float64) + 0.0   # -0.0 -> 0.0
    if a.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # equal rows have equal projections; rows that only share a projection are caught below
    h = a @ _PROJ[: a.shape[1]] if a.shape[1] <= _PROJ.shape[0] else a @ np.resize(
        _PROJ, a.shape[1])
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if np.array_equal(a[first][inverse], a):
        return first, inverse
    v = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    _, first, inverse = np.unique(v, return_index=True, return_inverse=True)
    return first, inverse.ravel()


_PROJ = np.random.default_rng(20261128).uniform(0.5, 1.5, 64)


def _fluid(hp, rd: np.ndarray, wr: np.ndarray) -> np.ndarray:
    """Busy cycles each op causes on the shared (chip and off-chip) levels."""
    sh = hp.shared_mask
    return (rd * sh / hp.read_bpc).sum(axis=1) + (wr * sh / hp.write_bpc).sum(axis=1)


def _shared_coefficients(hp, f, sw, sa, so, h, a_dma, o_dma, M, K, N, wB, aB, kf, R, C):
    """Per GEMM, the shared-level busy cycles as a function of its tiling (see
    :func:`accelsim.sim.engine._shared_cycles`): [ops x 5]."""
    sh, rbw, wbw, acc = hp.shared_mask, hp.read_bpc, hp.write_bpc, hp.acc_bytes
    src = f.copy()
    src[:, sw] = 0.0
    c_w = (src * sh / rbw).sum(axis=1) + sh[sw] * (1.0 - f[:, sw]) / wbw[sw]
    c_a = np.where(a_dma, sh[h] / rbw[h] + sh[sa] / wbw[sa], 0.0)
    c_warr = sh[sw] / rbw[sw]
    base = (sh[sa] / rbw[sa] * M * K * aB * _ceil(N / C)
            + np.where(o_dma, sh[h] / wbw[h], 0.0) * M * N * aB)
    ps = sh[so] / wbw[so] * M * N * acc
    out = np.empty((len(M), 5))
    out[:, 0], out[:, 1], out[:, 2] = c_w, c_a, c_warr
    out[:, 3] = base + ps * kf
    out[:, 4] = base + ps + c_warr * K * N * wB * _ceil(M / R)
    return out


def _run(hw, ot: OpTable, bits: np.ndarray, t_bytes: np.ndarray, t_numel: np.ndarray,
         a_bits: int, kv_bits: int, opts: SimOptions, mask: int, model_name) -> SimResult:
    hp = hw_params(hw)
    nops, nl = len(ot), len(hp.names)
    cores, R, C = hp.cores, hp.rows, hp.cols
    aB, kvB = a_bits / 8.0, kv_bits / 8.0
    oc, p = ot.op_code, ot.p_active
    has_t = ot.tensor >= 0
    is_att = oc == OP["attention"]
    is_gemm = np.isin(oc, GEMM_OPS) & has_t
    live = p > 0
    eng = ((is_gemm & (ot.macs > 0)) | (is_att & (ot.macs > 0))) & live
    pe = np.where(live, p, 1.0)

    # ------------------------------------------------------------------ residency
    plan, foot, att_idx = _plan(hw, ot, t_bytes, a_bits, kv_bits, opts)
    sw, sa, so = plan.stage_w, plan.stage_a, plan.stage_o
    home = act_home(foot, plan.act_reserve, plan.act_levels, hp.offchip, sa)
    wfrac = np.zeros((nops, nl))
    wfrac[has_t] = plan.weight_fraction[ot.tensor[has_t]]
    wfrac[att_idx] = plan.kv_fraction
    op_wbits = np.where(has_t, bits[np.maximum(ot.tensor, 0)], 0)
    op_wbits = np.where(is_att, kv_bits, op_wbits)

    # ------------------------------------------------------------------ GEMMs: tile pipeline
    e = np.flatnonzero(eng)
    ge = is_gemm[e]
    M = np.where(ge, np.maximum(ot.m[e] / pe[e], 1.0), ot.att_m[e])
    K = np.where(ge, ot.k[e], ot.att_k[e])
    N = np.where(ge, ot.n[e], ot.att_n[e])
    cpm = hp.cpm[np.clip(op_wbits[e], 1, 16), min(max(a_bits, 1), 16)]
    tix = np.maximum(ot.tensor[e], 0)
    wB = np.where(ge, t_bytes[tix] / t_numel[tix], kvB)
    w_fix, w_pb = dma_cost(wfrac[e], sw, hp)
    w_stage = wfrac[e, sw] < 1.0 - 1e-9
    kf = np.where(cpm < 1.0, _ceil(K * cpm / R), _ceil(K / R))
    if len(att_idx):
        kvw = (ot.kv_write_elems[att_idx] * kvB)[:, None] * plan.kv_fraction
        kv_sh = (kvw * hp.shared_mask / hp.write_bpc).sum(axis=1)
        pos = np.searchsorted(e, att_idx)
        ok = (pos < len(e)) & (e[np.minimum(pos, len(e) - 1)] == att_idx)

    def option(h, do):
        """Engine inputs of the GEMMs with their activations in levels ``h``: per op
        (evaluate, a_fix, a_pb, o_fix, o_pb, a_stage) and the shared-level coefficients."""
        a_dma, o_dma = h != sa, h != so
        io = np.column_stack([do, np.where(a_dma, hp.setup_cyc + hp.latency_cyc[h], 0.0),
                              np.where(a_dma, 1.0 / hp.read_bpc[h], 0.0),
                              np.where(o_dma, hp.setup_cyc + hp.latency_cyc[h], 0.0),
                              np.where(o_dma, 1.0 / hp.write_bpc[h], 0.0), a_dma])
        flc = _shared_coefficients(hp, wfrac[e], sw, sa, so, h, a_dma, o_dma, M, K, N, wB,
                                   aB, kf, R, C)
        if len(att_idx):
            flc[pos[ok], 3] += kv_sh[ok]
            flc[pos[ok], 4] += kv_sh[ok]
        return io.astype(np.float64), flc

    # (a) activations at home, tiles in the staging share; (b) activations streamed from off
    # chip, the activation reserve added to the tile space (docs/simulator.md): offered to
    # every op at every SRAM size, so more SRAM never removes an option. An op whose home is
    # off chip has the same costs in (b) with more room: (a) adds nothing.
    h_a = home[e]
    off = hp.offchip
    h_b = np.full(len(e), off, np.int64)
    alt = bool(off >= 0 and plan.act_levels[off] and len(e))
    io_a, flc_a = option(h_a, (h_a != off) if alt else np.ones(len(e), bool))
    cap_a = plan.staging / cores
    if alt:
        io_b, flc_b = option(h_b, np.ones(len(e), bool))
        res = np.where(plan.act_levels & hp.onchip, plan.act_reserve, 0.0)
        # a core's share of a per-core level is what its own memory has beyond the staging
        # share (up to the reserve), whatever the core count, so more cores never shrink it
        cap = np.asarray(hp.capacity)
        res = np.where(hp.core_scope, np.minimum(res, (cap - plan.staging) / cores),
                       res / cores)
        cap_b = cap_a + res
    else:
        io_b, flc_b, cap_b = np.zeros_like(io_a), flc_a, cap_a
    # the experts of a layer and the layers of a model repeat: simulate each distinct GEMM
    # once
    key = np.column_stack([M, K, N, cpm, wB, w_fix, w_pb, w_stage, io_a, flc_a, io_b, flc_b])
    first, inverse = _unique_rows(key)
    u = first
    fronts, npts, src, of_a, of_b = E.run_pairs(
        mask, M[u], K[u].astype(np.int64), N[u].astype(np.int64), R, C, cpm[u], wB[u], aB, aB,
        hp.acc_bytes, w_fix[u], w_pb[u], hp.two_channels, sw, sa, so, w_stage[u],
        opts.full_pipeline, 1.0 / hp.read_bpc[sw], 1.0 / hp.read_bpc[sa], sw == sa,
        np.ascontiguousarray(np.stack([io_a[u], io_b[u]], axis=1)),
        np.ascontiguousarray(np.stack([flc_a[u], flc_b[u]], axis=1)),
        np.ascontiguousarray(np.stack([cap_a, cap_b])))
    w = max(int(npts.max(initial=1)), 1)     # columns in use: less work for the scheduler
    fronts, npts, src = fronts[inverse, :w], npts[inverse], src[inverse, :w]
    of_a, of_b = of_a[inverse], of_b[inverse]
    pr = pe[e]
    vcyc = ot.vector_ops / hp.vector_rate

    # ------------------------------------------------------------------ other ops
    vec = np.isin(oc, VECTOR_OPS) & live
    hv = home
    v_dma = hv != sa
    data = np.where(v_dma, ot.in_elems * aB / hp.read_bpc[hv] + ot.out_elems * aB
                    / hp.write_bpc[hv], 0.0)
    vfix = np.where(v_dma, 2.0 * (hp.setup_cyc + hp.latency_cyc[hv]), 0.0) * pe
    t_other = np.where(vec, np.maximum(vcyc, data) + vfix, 0.0)
    cols = np.ones(nops, np.int64)
    cols = np.where(vec, np.maximum(_ceil(ot.out_elems / hw.cores.vector_unit.lanes), 1.0),
                    cols).astype(np.int64)
    emb = (oc == OP["embed"]) & has_t & live
    emb_bytes = np.where(emb, ot.weight_fraction * t_bytes[np.maximum(ot.tensor, 0)], 0.0)
    if emb.any():
        efix, epb = dma_cost(wfrac[emb], sa, hp)
        t_other[emb] = efix + emb_bytes[emb] * epb
        cols[emb] = np.maximum(_ceil(ot.tokens[emb]), 1.0).astype(np.int64)
    cols[e] = np.maximum(_ceil(N / C), 1.0).astype(np.int64)
    # split-K: GEMMs may also split K into slices of R rows; partial sums (accumulator width)
    # per column tile are reduced over the NoC and added on the vector unit
    kt = np.ones(nops, np.int64)
    rb = np.zeros(nops)
    ra = np.zeros(nops)
    g_e = e[ge]
    kt[g_e] = np.maximum(_ceil(K[ge] / R), 1.0).astype(np.int64)
    per_tile = M[ge] * N[ge] / cols[g_e] * pr[ge]
    rb[g_e] = per_tile * hp.acc_bytes
    ra[g_e] = per_tile / hp.vector_rate

    # traffic of the ops whose traffic does not depend on a tiling
    rd = np.zeros((nops, nl))
    wr = np.zeros((nops, nl))
    if len(att_idx):
        wr[att_idx] += (ot.kv_write_elems[att_idx] * kvB)[:, None] * plan.kv_fraction
    oi = np.flatnonzero((vec | (oc == OP["dispatch"]) | emb) & live)
    rd[oi, hv[oi]] += np.where(emb[oi], 0.0, ot.in_elems[oi] * aB)
    wr[oi, hv[oi]] += ot.out_elems[oi] * aB
    if emb.any():
        rd[emb] += emb_bytes[emb][:, None] * np.where(np.arange(nl) == sa, 0.0, wfrac[emb])
        wr[emb, sa] += emb_bytes[emb] * (1.0 - wfrac[emb, sa])
        rd[emb, sa] += emb_bytes[emb]

    # ------------------------------------------------------------------ schedule
    FT = np.zeros((nops, fronts.shape[1]))
    FF = np.zeros((nops, fronts.shape[1]))
    NF = np.ones(nops, np.int64)
    FT[:, 0] = t_other
    FF[:, 0] = _fluid(hp, rd, wr)
    FT[e] = fronts[:, :, 0] * pr[:, None]
    FF[e] = fronts[:, :, 9] * pr[:, None]
    NF[e] = npts
    att_e = is_att[e]
    FT[e[att_e]] += vcyc[e[att_e]][:, None]
    noc_bytes = np.where(oc == OP["dispatch"], ot.out_elems * aB,
                         np.where(oc == OP["combine"], ot.in_elems * aB, 0.0))
    noc = hw.noc
    topo = TOPOLOGIES[noc.topology] if noc else TOPOLOGIES["bus"]
    link = noc.link_bandwidth_bytes_per_s / hp.clock_hz if noc else 1.0
    hop = noc.hop_latency_s * hp.clock_hz if noc else 0.0
    T, cc, choice = schedule(ot.phase_ptr, ot.phase_order, ot.phase_group, FT, FF, NF, cols,
                             kt, rb, ra, noc_bytes, cores, topo, link, hop)
    t1 = FT[np.arange(nops), choice]

    # traffic of the chosen tilings
    P = fronts[np.arange(len(e)), choice[e]]
    streamed = src[np.arange(len(e)), choice[e]] == 1
    overflow = np.where(streamed, of_b, of_a)
    h = np.where(streamed, h_b, h_a)
    a_dma, o_dma = h != sa, h != so
    comp = np.zeros(nops)
    comp[e] = pr * P[:, 1]
    dflow = np.full(nops, -1, np.int64)
    tiles = np.zeros((nops, 3))
    dflow[e] = P[:, 2].astype(np.int64)
    tiles[e] = P[:, 3:6]
    Wf, Af, Ob = P[:, 6] * pr, P[:, 7] * pr, P[:, 8] * pr
    src = wfrac[e].copy()
    src[:, sw] = 0.0
    rd[e] += Wf[:, None] * src
    wr[e, sw] += Wf * (1.0 - wfrac[e, sw])
    ws = P[:, 2] == E.WS
    passes = np.where(ws, _ceil(M / np.maximum(P[:, 3], 1e-9)), _ceil(M / R))
    rd[e, sw] += K * N * wB * passes * pr
    rd[e, h] += np.where(a_dma, Af, 0.0)
    wr[e, sa] += np.where(a_dma, Af, 0.0)
    rd[e, sa] += M * K * aB * _ceil(N / C) * pr
    # partial sums accumulate in place: one access per update (the last one is the drain)
    psum = M * N * hp.acc_bytes * pr * np.where(ws, kf, 1.0)
    wr[e, so] += psum
    wr[e, h] += np.where(o_dma, Ob, 0.0)
    core, span, start, end = wrap_around(ot.phase_ptr, ot.phase_order, T, cc, t1)
    cycles = float(T.sum())
    latency = cycles / hp.clock_hz

    # NoC per phase (dispatch / combine), attributed to ops by their bytes
    e_hop = noc.energy_per_byte_per_hop_j if noc else 0.0
    noc_t, noc_j = phase_noc(ot.phase_ptr, ot.phase_order, ot.phase_group, cc, noc_bytes,
                             topo, link, hop, e_hop)
    noc_cyc = float(noc_t.sum())
    # split-K reductions of the ops whose N-only split would overrun their phase
    ksl = np.ones(nops, np.int64)
    ph_of = np.empty(nops, np.int64)
    ph_of[ot.phase_order] = np.repeat(np.arange(len(T)), np.diff(ot.phase_ptr))
    sh1 = np.where((cols > 1) & (cc[ph_of] > 1),
                   _ceil(cols / np.minimum(cols, cc[ph_of])) / cols, 1.0)
    split = np.flatnonzero((kt > 1) & (sh1 * t1 > T[ph_of] * (1.0 + 1e-9)))
    red_adds = np.zeros(nops)
    if len(split):
        ks, bh, tn = k_slices_ops(split, t1, cols, kt, cc[ph_of[split]], rb, ra, topo, link,
                                  hop, T[ph_of[split]])
        ksl[split] = ks
        noc_j[split] += bh * e_hop
        # the tree's adds: ks - 1 partial outputs of M x N accumulator words per op (vector
        # energy); its NoC time: the longest reduction of a phase (pieces run in parallel)
        red_adds[split] = (ks - 1) * rb[split] / hp.acc_bytes * cols[split]
        red_t = np.zeros(len(T))
        np.maximum.at(red_t, ph_of[split], tn)
        noc_cyc += float(red_t.sum())

    # ------------------------------------------------------------------ energy
    a_idx = min(max(a_bits, 1), 16)
    e_mac = ot.macs * hp.e_mac[np.clip(op_wbits, 1, 16), a_idx] * (ot.macs > 0)
    e_mem = rd * hp.read_j[None, :] + wr * hp.write_j[None, :]
    e_vec = (ot.vector_ops + red_adds) * hp.e_vector
    op_j = e_mac + e_mem.sum(axis=1) + e_vec + noc_j
    static = hw.energy.static_power_w * latency
    energy = float(op_j.sum() + static)
    breakdown = {"mac": float(e_mac.sum()), "vector": float(e_vec.sum()),
                 "noc": float(noc_j.sum()), "static": float(static)}
    for i, name in enumerate(hp.names):
        breakdown[f"memory:{name}"] = float(e_mem[:, i].sum())

    # ------------------------------------------------------------------ totals
    moved = rd + wr
    by_level = moved.sum(axis=0)
    off = hp.offchip
    # off chip, reads and writes share the bus; on-chip SRAM banks take DMA writes while the
    # array reads (double buffering), so a level is busy for the longer of the two
    r_t, w_t = rd.sum(axis=0) / hp.agg_read_bpc, wr.sum(axis=0) / hp.agg_write_bpc
    lvl_time = np.where(hp.onchip, np.maximum(r_t, w_t), r_t + w_t)
    vec_total = float(np.where(vec | is_att, vcyc, 0.0).sum())
    busy = {"compute": float(comp.sum()) / cores, "vector": vec_total / cores,
            "offchip_bandwidth": float(lvl_time[off]) if off >= 0 else 0.0,
            "onchip_bandwidth": float(lvl_time[hp.onchip].max(initial=0.0)),
            "noc": noc_cyc}
    top = max(busy, key=lambda k: busy[k])
    bound = top if busy[top] >= 0.5 * cycles else "latency"
    pe_cycles = float((ot.macs * hp.cpm[np.clip(op_wbits, 1, 16), a_idx]).sum())
    util = pe_cycles / (R * C * cores * cycles) if cycles > 0 else 0.0
    stall = np.maximum(t1 - comp - np.where(vec | is_att, vcyc, 0.0), 0.0)
    warnings = []
    if overflow.any():
        warnings.append(f"{int(overflow.sum())} GEMM(s) need more staging buffer than "
                        f"{hp.names[sw]}/{hp.names[sa]}/{hp.names[so]} keep for tiles; "
                        "simulated with the smallest tile")
    if off >= 0 and (home[live] == off).any():
        warnings.append(f"{int((home[live] == off).sum())} op(s) keep activations off chip")
    tokens = float(ot.tokens_step)
    op_data = {
        "names": ot.names, "op_code": oc, "layer": ot.layer, "expert": ot.expert,
        "role": ot.role, "tensor": ot.tensor,
        "tensor_names": tensor_table(ot.model).names if ot.model is not None else ("W",),
        "w_bits": op_wbits, "a_bits": a_bits, "p_active": p, "m": ot.m, "k": ot.k,
        "n": ot.n, "macs": ot.macs, "core": core, "cores": span, "start_cycle": start,
        "end_cycle": end, "cycles": t1, "compute_cycles": comp,
        "vector_cycles": np.where(vec | is_att, vcyc, 0.0), "stall_cycles": stall,
        "dataflow": dflow, "k_slices": ksl, "tiles": tiles, "bytes": moved, "energy_j": op_j,
        "level_names": hp.names}
    names = hp.names
    return SimResult(
        hw=hw.name, model=model_name, scenario=dict(ot.scenario), residency=plan.policy,
        clock_hz=hp.clock_hz, cores=cores, cycles=cycles, latency_s=latency, tokens=tokens,
        tokens_per_s=tokens / latency if latency > 0 else float("inf"), energy_j=energy,
        energy_breakdown_j=breakdown, weight_bytes=float(t_bytes.sum()),
        weight_bytes_by_level=dict(zip(names, plan.weight_bytes_by_level.tolist())),
        kv_bytes_by_level=dict(zip(names, plan.kv_bytes_by_level.tolist())),
        activation_bytes_by_level=dict(zip(names, plan.act_reserve.tolist())),
        staging_bytes_by_level=dict(zip(names, plan.staging.tolist())),
        bytes_by_level=dict(zip(names, by_level.tolist())),
        offchip_bytes=float(by_level[off]) if off >= 0 else 0.0,
        onchip_bytes_moved=float(by_level[hp.onchip].sum()),
        macs=float(ot.macs.sum()), mac_utilization=util, compute_cycles=float(comp.sum()),
        stall_cycles=float(stall.sum()), vector_cycles=vec_total, noc_cycles=noc_cyc,
        busy_cycles=busy, bound=bound, warnings=tuple(warnings), op_data=op_data,
        phase_data={"T": T, "c": cc, "order": ot.phase_order, "ptr": ot.phase_ptr})

