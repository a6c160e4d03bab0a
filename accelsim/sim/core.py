"""``simulate`` and ``simulate_gemm``: the stages of the simulator, in order (each a
function of :mod:`accelsim.sim.stages`, which says what they take and return):

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
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DoesNotFitError, Problem
from ..hw.spec import Accelerator
from ..precision import BitAllocation, WeightFormat
from . import engine as E
from . import stages as S
from .gemm import fast_gemm
from .lower import OP, OpTable, phases
from .mapping import hw_params
from .residency import MemoryPlan, get_policy
from .result import SimResult
from .stages import _unique_rows  # noqa: F401  (tests import it from here)

__all__ = ["simulate", "simulate_gemm", "memory_plan", "fits", "SimOptions"]


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
    >>> r = simulate("h100", g, a, ideal=True)      # the ideal roofline
    >>> r.bound, r.weight_bytes == a.weight_bytes(m)
    ('offchip_bandwidth', True)
    >>> simulate("h100", g, a).latency_s > r.latency_s   # the calibrated efficiency model
    True
    """
    hw = _as_hw(hw)
    if ideal:
        hw = hw.ideal()
    opts = SimOptions(residency, dataflow, staging_fraction, full_pipeline)
    mask = opts.check(hw)
    low = S.lower_step(hw, graph, alloc)
    return S.run_step(hw, hw_params(hw), low, opts, mask, low.ot.model.name)


def _lower_all(hw, graph, alloc):
    """Stage 1: the op table, and bits, storage bytes and elements per tensor."""
    return tuple(S.lower_step(hw, graph, alloc))[:6]


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
    return S.memory_plan_of(hw, S.Lowered(ot, None, t_bytes, None, a_bits, kv_bits), opts)


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
            return r
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
    return r if r is not None else _gemm_general(hw, float(m), int(k), int(n), int(w_bits), a,
                                                 nbytes, opts, mask)


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
    f = lambda x: np.array([float(x)])
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


def _run(hw, ot: OpTable, bits: np.ndarray, t_bytes: np.ndarray, t_numel: np.ndarray,
         a_bits: int, kv_bits: int, opts: SimOptions, mask: int, model_name) -> SimResult:
    """Every stage of one step (:func:`accelsim.sim.stages.run_step`)."""
    return S.run_step(hw, hw_params(hw), S.Lowered(ot, bits, t_bytes, t_numel, a_bits, kv_bits),
                      opts, mask, model_name)
