"""Mapping: per-level hardware parameters, the DMA cost of every operand, traffic per level.

The L1 tiling and loop order of each GEMM are chosen by
:func:`accelsim.sim.engine.best_tiling` (fixed menu of tile shapes, double buffering, the
fastest feasible one); this module prepares its inputs and turns its outputs into bytes read
and written at every memory level.

**DMA cost of an operand.** A tensor placed across levels has a share ``f_l`` of its tiles in
level ``l``; a tile of ``B`` bytes from level ``l`` costs ``setup + latency_l + B /
bandwidth_l`` cycles and tiles already in the staging buffer cost nothing, so the expected
cost of a tile is ``sum_{l != stage} f_l (setup + latency_l + B / bandwidth_l)``. Core-scope
levels give every core their own bandwidth; a chip or off-chip level
gives one core its full bandwidth (sharing between cores is the scheduler's fluid bound).

**Traffic of a GEMM** (expected bytes, times ``p_active``), with ``Wf``/``Af`` the bytes the
pipeline fetched tile by tile (reloads included):

- weights: ``Wf * f_l`` read from every source level ``l``, ``Wf * (1 - f_stage)`` written
  into the weight staging level, and the array reads its weights from there once per
  ``m`` block (weight-stationary) or per ``R`` rows (output-stationary);
- activations: ``Af`` read from the op's activation home and written to the staging level
  when they differ; the array reads them once per ``C``-column fold;
- outputs: partial sums at accumulator width in the output staging level (one
  accumulate-in-place access per ``K`` fold, weight-stationary), then ``M x N`` outputs at
  activation width written to the activation home.

Examples
--------
>>> from accelsim.hw import load_hw
>>> lv = hw_params(load_hw("gemmini"))
>>> lv.names, float(lv.read_bpc[2]), float(lv.latency_cyc[2]), float(lv.setup_cyc)
(('accumulator', 'scratchpad', 'dram'), 16.0, 100.0, 20.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .energy import mac_energy_table, vector_op_energy
from .engine import DATAFLOWS, FILLS
from .lower import IdentityCache

__all__ = ["HwParams", "hw_params", "dma_cost", "act_home", "cycles_per_mac_table", "KINDS"]


@dataclass(frozen=True, eq=False)
class HwParams:
    """What the simulator needs of an accelerator, precomputed: per memory level (innermost
    first) in cycles and bytes per cycle; cycles and energy per MAC by (w, a) bits."""

    names: tuple[str, ...]
    scope: tuple[str, ...]
    onchip: np.ndarray
    offchip: int
    core_scope: np.ndarray
    read_bpc: np.ndarray        # per core for core scope, whole level otherwise
    write_bpc: np.ndarray
    agg_read_bpc: np.ndarray    # whole chip
    agg_write_bpc: np.ndarray
    latency_cyc: np.ndarray
    read_j: np.ndarray
    write_j: np.ndarray
    setup_cyc: float
    two_channels: bool
    shared: np.ndarray          # indices of chip and off-chip levels
    shared_mask: np.ndarray     # 1.0 for chip and off-chip levels
    cpm: np.ndarray             # cycles_per_mac[w, a]
    e_mac: np.ndarray           # joules per MAC [w, a]
    e_vector: float
    rows: int
    cols: int
    cores: int
    clock_hz: float
    vector_rate: float          # vector ops per cycle per core
    dataflow_mask: int          # bit 0 weight-stationary, bit 1 output-stationary
    acc_bytes: float
    capacity: tuple[float, ...]           # chip total per level
    holds: tuple[frozenset, ...]
    py: dict                              # the per-level arrays as Python lists (fast path)
    kernel_cyc: float = 0.0               # efficiency model: cycles per kernel (op) and
    step_cyc: float = 0.0                 # per step (0 without hw.efficiency)
    att_cpm_scale: float = 1.0            # attention's cycles per MAC over the GEMMs'
    exp_cpm_scale: float = 1.0            # routed experts' GEMMs' cycles per MAC over the GEMMs'
    # off-chip ports (docs/hwconfig.md): the port of every kind of data (KINDS order); per
    # kind, read and write bytes per cycle of every level (the off-chip column is the kind's
    # port); per port, its bytes per cycle; the pipeline's DMA stream code
    # (engine.pipeline's ``two_ch``). No ports: nports 0, every kind at the level's bandwidth.
    nports: int = 0
    port_of: tuple[int, ...] = (0, 0, 0, 0)
    kind_rbw: np.ndarray | None = None    # [kinds x levels]
    kind_wbw: np.ndarray | None = None
    port_rbw: np.ndarray | None = None    # [ports]
    port_wbw: np.ndarray | None = None
    dma_code: int = 0
    fill: int = 0                         # the array's fill mode (engine.FILLS index)


_CACHE = IdentityCache()


def hw_params(hw) -> HwParams:
    """:class:`HwParams` of ``hw`` (cached per accelerator object, which is frozen)."""
    hit = _CACHE.get(hw)
    if hit is not None:
        return hit
    f = hw.clock_hz
    mem = hw.memory
    cores = hw.cores.count
    core = np.array([m.scope == "core" for m in mem])
    rd = np.array([m.read_bandwidth_bytes_per_s / f for m in mem])
    wr = np.array([m.write_bw / f for m in mem])
    mult = np.where(core, cores, 1)
    ma = hw.cores.mac_array
    # the efficiency model (hw.efficiency, docs/fidelity.md): achievable shares of the peak
    # off-chip bandwidth and MAC rate; None is the ideal roofline
    eff = getattr(hw, "efficiency", None)
    cpm = cycles_per_mac_table(ma)
    if eff is not None:
        off = np.array([m.scope == "offchip" for m in mem])
        rd = np.where(off, rd * eff.offchip_bandwidth, rd)
        wr = np.where(off, wr * eff.offchip_bandwidth, wr)
        cpm = cpm / eff.mac_rate
    lp = HwParams(
        names=tuple(m.name for m in mem), scope=tuple(m.scope for m in mem),
        onchip=np.array([m.scope != "offchip" for m in mem]),
        offchip=next((i for i, m in enumerate(mem) if m.scope == "offchip"), -1),
        core_scope=core, read_bpc=rd, write_bpc=wr, agg_read_bpc=rd * mult,
        agg_write_bpc=wr * mult, latency_cyc=np.array([m.latency_s * f for m in mem]),
        read_j=np.array([m.read_energy_per_byte_j for m in mem]),
        write_j=np.array([m.write_energy for m in mem]), setup_cyc=hw.dma.setup_s * f,
        two_channels=hw.dma.channels >= 2,
        shared=np.flatnonzero(~core), shared_mask=(~core).astype(np.float64),
        cpm=cpm,
        e_mac=mac_energy_table(hw), e_vector=vector_op_energy(hw), rows=ma.rows,
        cols=ma.cols, cores=cores, clock_hz=f,
        vector_rate=hw.cores.vector_unit.lanes * hw.cores.vector_unit.ops_per_lane_per_cycle,
        dataflow_mask=sum(1 << DATAFLOWS.index(d) for d in ma.dataflows),
        acc_bytes=ma.accumulator_bits / 8.0,
        capacity=tuple(float(hw.level_capacity(m)) for m in mem),
        holds=tuple(frozenset(m.holds) for m in mem), py={},
        kernel_cyc=eff.kernel_overhead_s * f if eff is not None else 0.0,
        step_cyc=eff.step_overhead_s * f if eff is not None else 0.0,
        att_cpm_scale=eff.mac_rate / eff.attention_rate if eff is not None else 1.0,
        exp_cpm_scale=eff.mac_rate / eff.expert_rate if eff is not None else 1.0,
        fill=FILLS.index(ma.fill))
    _ports(hw, lp)
    for key in ("read_bpc", "write_bpc", "agg_read_bpc", "agg_write_bpc", "latency_cyc",
                "read_j", "write_j"):
        lp.py[key] = [float(x) for x in getattr(lp, key)]
    lp.py["shared"] = [int(x) for x in lp.shared]
    lp.py["cpm"] = lp.cpm.tolist()
    lp.py["e_mac"] = lp.e_mac.tolist()
    _CACHE.put(hw, lp)
    return lp


#: Kinds of data, the order of :attr:`HwParams.port_of` and ``kind_rbw`` rows.
KINDS = ("weights", "activations", "outputs", "kv")


def _ports(hw, lp: HwParams) -> None:
    """Fill the port fields of ``lp`` (a frozen object being built)."""
    off = lp.offchip
    level = hw.memory[off] if off >= 0 else None
    ports = level.ports if level is not None else None
    rb = np.tile(lp.read_bpc, (len(KINDS), 1))
    wb = np.tile(lp.write_bpc, (len(KINDS), 1))
    port_of = (0, 0, 0, 0)
    code = 1 if lp.two_channels else 0
    prb = pwb = None
    if ports:
        f = hw.clock_hz
        # a port keeps the share of its nominal bandwidth the level's own figure keeps
        kr = lp.read_bpc[off] / (level.read_bandwidth_bytes_per_s / f)
        kw = lp.write_bpc[off] / (level.write_bw / f)
        prb = np.array([p.read_bandwidth_bytes_per_s / f * kr for p in ports])
        pwb = np.array([p.write_bw / f * kw for p in ports])
        port_of = tuple(level.port_of(k) for k in KINDS)
        for i in range(len(KINDS)):
            rb[i, off], wb[i, off] = prb[port_of[i]], pwb[port_of[i]]
        if not lp.two_channels:
            w, a, o = port_of[0], port_of[1], port_of[2]
            par, sep = w != a, o not in (w, a)
            code = 1 if (par and sep) else 2 if par else 3 if sep else 0
    object.__setattr__(lp, "nports", len(ports) if ports else 0)
    object.__setattr__(lp, "port_of", port_of)
    object.__setattr__(lp, "kind_rbw", rb)
    object.__setattr__(lp, "kind_wbw", wb)
    object.__setattr__(lp, "port_rbw", prb)
    object.__setattr__(lp, "port_wbw", pwb)
    object.__setattr__(lp, "dma_code", code)
    lp.py["kind_rbw"] = rb.tolist()
    lp.py["kind_wbw"] = wb.tolist()


def dma_cost(frac: np.ndarray, stage: int, lv: HwParams,
             read_bpc: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Expected cycles per transfer and per byte of loading a tile of operands whose tiles
    live, by fractions ``frac`` [ops x levels], in the levels; tiles already in the staging
    level ``stage`` need no transfer. ``read_bpc``: bytes per cycle of every level (per op
    [ops x levels], or one row), default the levels' own (an off-chip port's with ports)."""
    src = frac.copy()
    src[:, stage] = 0.0
    fix = (src * (lv.setup_cyc + lv.latency_cyc)[None, :]).sum(axis=1)
    bw = lv.read_bpc[None, :] if read_bpc is None else np.atleast_2d(read_bpc)
    pb = (src / bw).sum(axis=1)
    return fix, pb


def act_home(footprint: np.ndarray, act_reserve: np.ndarray, act_levels: np.ndarray,
             offchip: int, default: int) -> np.ndarray:
    """Level holding each op's activations: the innermost activation level whose reserve,
    together with the reserves inside it, holds the op's working set; else off chip (or the
    outermost activation level when there is no off-chip memory). With no level that holds
    activations at all, they stay in ``default`` (the activation staging buffer)."""
    idx = np.flatnonzero(act_levels)
    if idx.size == 0:
        return np.full(footprint.shape[0], default, dtype=np.int64)
    cum = np.cumsum(np.where(act_levels, act_reserve, 0.0))
    fallback = offchip if (offchip >= 0 and act_levels[offchip]) else int(idx[-1])
    home = np.full(footprint.shape[0], fallback, dtype=np.int64)
    for lvl in idx[::-1]:
        if lvl == offchip:
            continue
        home = np.where(footprint <= cum[lvl] * (1 + 1e-12) + 1e-9, lvl, home)
    return home


def cycles_per_mac_table(mac_array) -> np.ndarray:
    """``cycles_per_mac(w, a)`` for w, a in 0..16 (index by bits; row/column 0 unused)."""
    t = np.ones((17, 17))
    for w in range(1, 17):
        for a in range(1, 17):
            t[w, a] = mac_array.cycles_per_mac(w, a)
    return t


def ceil_div(a: float, b: float) -> float:
    return float(math.ceil(a / b - 1e-9))
