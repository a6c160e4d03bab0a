"""Precision allocation against a chip's memory and latency: the ``budget`` method.

Minimise ``sum_(l,e) importance[l,e] * distortion[l,e](bits)`` over one bit level per routed
expert subject to any of

* a **memory budget** on all weights (``scope='global'``) or on each MoE layer's experts
  (``scope='layer'``: the budget left after the other tensors, split evenly over the MoE
  layers); expert bytes are exact (:meth:`accelsim.precision.WeightFormat.storage_bytes`),
  so this constraint is additive and needs no repair;
* a **latency budget** for one inference step of ``scenario`` on accelerator ``hw``. Per-expert
  latency at each level comes from the simulator: one simulation per level with every
  expert at that level; an expert's share is the core-cycles of its ops (per-op table)
  spread over all cores; the rest of the step is the base. The sum is only an estimate
  (residency -- what fits on chip -- and the balance of experts over cores are not
  additive), so the chosen allocation is
  re-simulated; when it misses the budget, the latency target given to the solver is
  bisected (:data:`MAX_REPAIRS` steps) between the all-lowest allocation (simulated first:
  if even that misses, the budget is infeasible) and the budget, keeping the best answer
  the simulator accepts;
* an **average-bits** cap when ``avg_bits`` is given.

With a latency budget the weights must also fit the chip: the memory budget is at most the
capacity of the levels that may hold weights (:func:`weight_capacity_bytes`); an answer the
simulator still cannot place (KV cache, staging buffers) counts as a miss in the repair.

Importance is the activation frequency when known (else uniform); distortion is the measured
sensitivity when known at every level (else the proxy ``4^-bits``). The knapsack is solved by
:func:`accelsim.alloc.mckp.solve_mckp_multi` (exact when small, convex-hull greedy with an
LP bound when large).

:func:`pareto_front` sweeps memory (or latency) budgets between the smallest feasible and the
largest useful one and keeps the non-dominated (cost, distortion) points.

Examples
--------
>>> from accelsim.workload import load_workload
>>> from accelsim.alloc.methods import AllocRequest
>>> m = load_workload("mixtral-8x7b")
>>> req = AllocRequest(m, levels=(4, 3, 2), memory_budget_bytes=20e9)
>>> r = budget_allocation(req)
>>> r.weight_bytes <= 20e9, sorted(set(r.allocation.expert_bits.ravel().tolist()))
(True, [3, 4])
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, InfeasibleError
from ..precision import BitAllocation, WeightFormat
from .mckp import infeasible, mckp_lp_bound, solve_mckp_multi

__all__ = ["BudgetResult", "ExpertCosts", "expert_costs", "budget_allocation", "fewest_devices",
           "bits_for_latency",
           "pareto_front", "MAX_REPAIRS", "in_unit_of", "expert_latency_table",
           "weight_capacity_bytes"]

MAX_REPAIRS = 8


def in_unit_of(value: float, text: str | None, kind: str) -> str:
    """``value`` (base unit) written in the unit the user wrote ``text`` in.

    >>> in_unit_of(23.5e9, "16 GB", "size"), in_unit_of(0.0123, "5 ms", "time")
    ('23.5 GB', '12.3 ms')
    """
    from ..units import format_quantity, parse_quantity
    m = re.match(r"^\s*[-+]?[0-9.]+(?:[eE][-+]?\d+)?\s*(.*?)\s*$", text or "")
    if m and m.group(1):
        try:
            f = parse_quantity("1 " + m.group(1), kind)
            return f"{value / f:.4g} {m.group(1)}"
        except ConfigError:
            pass
    return format_quantity(value, kind)


@dataclass(frozen=True)
class ExpertCosts:
    """Costs of every routed expert at every level, arrays [layers, experts, levels]."""

    levels: tuple[int, ...]
    bytes: np.ndarray
    fixed_bytes: int                    # every other tensor at its role's bits
    latency_s: np.ndarray | None = None
    base_latency_s: float | None = None


def _expert_bytes(req, levels) -> np.ndarray:
    m = req.model
    E = m.moe.num_experts
    shapes = [m.tensor(f"L{m.moe_layers[0]}.E0.{mx}").shape for mx in m.expert_matrices]
    per = [sum(WeightFormat(int(b), req.group_size, req.symmetric).storage_bytes(*s)
               for s in shapes) if b else 0 for b in levels]     # 0 bits: pruned
    return np.broadcast_to(np.array(per, dtype=float), (m.num_moe_layers, E, len(levels)))


def _fixed_bytes(req) -> int:
    m = req.model
    alloc = BitAllocation(m.name, np.full((m.num_moe_layers, m.moe.num_experts), 16),
                          defaults=req.role_bits, group_size=req.group_size,
                          symmetric=req.symmetric)
    return int(sum(alloc.tensor_bytes(m, t) for t in m.tensors() if t.role != "expert"))


def expert_latency_table(req, levels, simulate: Callable | None = None):
    """Per-expert latency [layers, experts, levels] and the base latency of the rest of the
    step, from one simulation per level (every expert at that level). A level at which the
    whole model does not fit the chip is extrapolated from the highest level that fits, in
    proportion to the expert's bytes (the re-simulation checks the result)."""
    from ..errors import DoesNotFitError
    sim, graph = _simulator(req, simulate)
    L, E = req.shape
    lat = np.full((L, E, len(levels)), np.nan)
    levels = tuple(levels)
    bases, first_error = [], None
    for c, b in enumerate(levels):
        if int(b) == 0:         # a pruned expert costs no time (its tokens go elsewhere)
            lat[:, :, c] = 0.0
            continue
        try:
            res = sim(req.hw, graph, _uniform(req, int(b)))
        except DoesNotFitError as exc:
            first_error = first_error or exc
            continue
        per = _per_expert_latency(res, req.model)
        lat[:, :, c] = per
        bases.append(float(res.latency_s) - float(per.sum()))
    if not bases:
        raise first_error
    ok = np.flatnonzero(~np.isnan(lat[0, 0]))
    nbytes = _expert_bytes(req, levels)[0, 0]
    for c in np.flatnonzero(np.isnan(lat[0, 0])):
        ref = ok[np.argmin(np.abs(ok - c))]
        lat[:, :, c] = lat[:, :, ref] * nbytes[c] / nbytes[ref]
    return lat, max(0.0, min(bases))


def weight_capacity_bytes(hw) -> float:
    """Bytes of every memory level that may hold weights (the most a model may occupy); of
    a system (:class:`~accelsim.system.System`), of all its devices."""
    if hasattr(hw, "num_devices") and hasattr(hw, "hw"):
        return hw.num_devices * weight_capacity_bytes(hw.hw)
    return float(sum(hw.level_capacity(m) for m in hw.memory if "weights" in m.holds))


def _uniform(req, bits: int) -> BitAllocation:
    m = req.model
    return BitAllocation(m.name, np.full((m.num_moe_layers, m.moe.num_experts), bits),
                         defaults=req.role_bits, group_size=req.group_size,
                         symmetric=req.symmetric, method="uniform")


def _simulator(req, simulate):
    if req.hw is None:
        raise ConfigError.single("a latency budget needs an accelerator (--hw)", key="hw")
    if simulate is None and hasattr(req.hw, "num_devices"):
        # a system (accelsim.system.System): a step under req.plan (None: its default plan
        # over all of its devices)
        from ..system.simulate import simulate_system

        def simulate(system, graph, alloc):
            return simulate_system(system, graph, alloc, getattr(req, "plan", None))
    if simulate is None:
        try:
            from ..sim import simulate
        except ImportError:
            raise ConfigError.single("the simulator (accelsim.sim.simulate) is not available "
                                     "in this installation", key="latency_budget") from None
    from ..workload import Scenario, build_graph
    scenario = req.scenario if req.scenario is not None else Scenario()
    return simulate, build_graph(req.model, scenario)


def _per_expert_latency(res, model) -> np.ndarray:
    """Each routed expert's share of the step latency, [MoE layers, experts]: its ops'
    core-cycles of work spread over all cores (exact on one core; the re-simulation
    corrects what imbalance and overlap add)."""
    ops = res.ops
    if not {"layer", "expert", "cycles"} <= set(ops.columns):
        raise ConfigError.single("the simulator's per-op table lacks layer/expert/cycles "
                                 "columns", key="ops", value=list(ops.columns))
    L, E = model.num_moe_layers, model.moe.num_experts
    row = {layer: r for r, layer in enumerate(model.moe_layers)}
    out = np.zeros((L, E))
    sel = ops[ops["expert"].notna() & ops["layer"].isin(list(row))]
    if "role" in sel.columns:
        sel = sel[sel["role"] == "expert"]
    scale = 1.0 / (max(int(res.cores), 1) * float(res.clock_hz))
    for (layer, e), t in sel.groupby(["layer", "expert"])["cycles"].sum().items():
        out[row[int(layer)], int(e)] = float(t) * scale
    return out


def expert_costs(req, *, simulate: Callable | None = None) -> ExpertCosts:
    """Bytes (exact) and, when a latency budget is asked for, simulated latency."""
    levels = tuple(sorted(req.levels))
    lat = base = None
    if req.latency_budget_s is not None:
        lat, base = expert_latency_table(req, levels, simulate)
    return ExpertCosts(levels, _expert_bytes(req, levels), _fixed_bytes(req), lat, base)


@dataclass(frozen=True)
class BudgetResult:
    """The chosen allocation and what it costs."""

    allocation: BitAllocation
    weight_bytes: int
    distortion: float
    lower_bound: float | None          # LP bound on the distortion (memory-only problems)
    latency_s: float | None = None      # re-simulated
    repairs: int = 0

    def row(self) -> dict[str, Any]:
        return {"average_bits": self.allocation.average_expert_bits(),
                "weight_bytes": self.weight_bytes, "latency_s": self.latency_s,
                "distortion": self.distortion, "repairs": self.repairs}


def distortion(req, levels) -> tuple[np.ndarray, str]:
    """eps [layers, experts, levels] of ``req`` (an :class:`~accelsim.alloc.AllocRequest`):
    the measured sensitivity, or the ``4^-bits`` proxy; and where it came from."""
    eps = req.signals.sensitivity_at(levels)
    if eps is not None:
        cal = req.signals.calibration
        return eps, f"sensitivity on {cal}" if cal else "sensitivity"
    proxy = 4.0 ** -np.asarray(levels, dtype=float)
    return np.broadcast_to(proxy, req.shape + (len(levels),)).copy(), "proxy 4^-bits"


def _objective(req, levels) -> tuple[np.ndarray, dict]:
    s = req.signals
    L, E = req.shape
    if s.frequency is not None:
        imp, isrc = s.frequency, "frequency"
    else:
        imp, isrc = np.full((L, E), 1.0 / E), "uniform"
    eps, dsrc = distortion(req, levels)
    return imp[:, :, None] * eps, {"importance": isrc, "distortion": dsrc}


def budget_allocation(req, *, simulate: Callable | None = None,
                      costs: ExpertCosts | None = None) -> BudgetResult:
    """Solve the ``budget`` problem for ``req`` (an :class:`~accelsim.alloc.AllocRequest`)."""
    if req.memory_budget_bytes is None and req.latency_budget_s is None:
        raise ConfigError.single("method 'budget' needs a memory and/or a latency budget "
                                 "(accelsim allocate: --memory-budget, --latency-budget; "
                                 "sweeps: memory_budget, latency_budget)", key="budget")
    costs = costs or expert_costs(req, simulate=simulate)
    levels = costs.levels
    loss, meta = _objective(req, levels)
    L, E = req.shape
    n, C = L * E, len(levels)
    flat_loss = loss.reshape(n, C)
    rows, budgets, kinds = _constraints(req, costs)
    lat_row = kinds.index("latency") if "latency" in kinds else None
    if req.by_layer:    # one item per MoE layer: its experts' summed costs and loss
        rows = [r.reshape(L, E, C).sum(axis=1) for r in rows]
        flat_loss = flat_loss.reshape(L, E, C).sum(axis=1)
        n = L
    x = _solve(req, rows, flat_loss, budgets, kinds, costs)
    repairs, sim_lat = 0, None
    if lat_row is not None:
        x, sim_lat, repairs = _repair(req, rows, flat_loss, budgets, kinds, costs, x, meta,
                                      simulate, lat_row)
    alloc = _to_alloc(req, x, levels, meta)
    alive = (alloc.expert_bits > 0).sum(axis=1)
    if 0 in levels and alive.min() < req.model.moe.top_k:
        r = int(np.argmin(alive))
        raise infeasible(f"the budget leaves MoE layer {req.model.moe_layers[r]} with "
                         f"{int(alive[r])} expert(s) above 0 bits, fewer than top_k="
                         f"{req.model.moe.top_k}: raise the budget or drop the 0-bit level",
                         np.nan)
    bound = None
    if kinds == ["memory"] and req.memory_scope == "global":
        bound = float(mckp_lp_bound(rows[0], flat_loss, budgets[0]))
    return BudgetResult(alloc, int(alloc.weight_bytes(req.model)),
                        float(flat_loss[np.arange(n), x].sum()), bound, sim_lat, repairs)


def _repair(req, rows, loss, budgets, kinds, costs, x, meta, simulate, lat_row):
    """Re-simulate; while the answer misses the latency budget (or does not fit the chip),
    bisect the latency target handed to the solver between the all-lowest allocation
    (checked first) and the budget, keeping the best answer that the simulator accepts."""
    levels, n = costs.levels, rows[0].shape[0]
    ok = lambda t: t is not None and t <= req.latency_budget_s * (1 + 1e-9)  # noqa: E731
    t = _resimulate(req, _to_alloc(req, x, levels, meta), simulate)
    if ok(t):
        return x, t, 0
    # the cheapest allocation the router can run: the lowest level, or the lowest non-zero
    # one when 0 (pruned) is a level
    base_c = 1 if levels[0] == 0 else 0
    best = np.full(n, base_c, dtype=np.int64)
    t_best = _resimulate(req, _to_alloc(req, best, levels, meta), simulate)
    if not ok(t_best):
        if t_best is None:
            raise infeasible(f"the weights do not fit {getattr(req.hw, 'name', 'the chip')} "
                             f"even with every expert at {levels[base_c]} bits", np.nan)
        raise _latency_infeasible(req, t_best)
    lo, hi = float(rows[lat_row][:, base_c].sum()), float(budgets[lat_row])
    target = budgets.copy()
    for i in range(1, MAX_REPAIRS + 1):
        target[lat_row] = 0.5 * (lo + hi)
        try:
            xm = _solve(req, rows, loss, target, kinds, costs)
        except InfeasibleError:
            lo = target[lat_row]
            continue
        tm = _resimulate(req, _to_alloc(req, xm, levels, meta), simulate)
        if ok(tm):
            best, t_best, lo = xm, tm, target[lat_row]
        else:
            hi = target[lat_row]
    return best, t_best, MAX_REPAIRS


def req_text(req, kind: str) -> str | None:
    return getattr(req, f"{kind}_budget_text", None)


def _constraints(req, costs: ExpertCosts):
    L, E = req.shape
    n, C = L * E, len(costs.levels)
    rows, budgets, kinds = [], [], []
    mem = req.memory_budget_bytes
    if req.latency_budget_s is not None:
        cap = weight_capacity_bytes(req.hw)
        least = costs.fixed_bytes + costs.bytes[..., 0].sum()
        if least > cap:
            from ..errors import DoesNotFitError
            text = req_text(req, "memory")
            raise DoesNotFitError(
                f"the weights need at least {in_unit_of(least, text, 'size')} (every expert "
                f"at {costs.levels[0]} bits) but {req.hw.name} holds "
                f"{in_unit_of(cap, text, 'size')} of weights")
        mem = cap if mem is None else min(mem, cap)
    if mem is not None:
        free = mem - costs.fixed_bytes
        need = costs.bytes[..., 0].sum()
        if free < need:
            need_total = costs.fixed_bytes + need
            raise infeasible(
                f"memory budget {in_unit_of(mem, req_text(req, 'memory'), 'size')}"
                f" is below the smallest feasible "
                f"{in_unit_of(need_total, req_text(req, 'memory'), 'size')} (every expert at "
                f"{costs.levels[0]} bits, other tensors at their own bits)", need_total)
        rows.append(costs.bytes.reshape(n, C))
        budgets.append(free)
        kinds.append("memory")
    if req.latency_budget_s is not None:
        free = req.latency_budget_s - costs.base_latency_s
        rows.append(costs.latency_s.reshape(n, C))
        budgets.append(free)
        kinds.append("latency")
    if req.avg_bits is not None:
        rows.append(np.broadcast_to(np.asarray(costs.levels, dtype=float), (n, C)))
        budgets.append(req.avg_bits * n)
        kinds.append("bits")
    return rows, np.array(budgets, dtype=float), kinds


def _solve(req, rows, loss, budgets, kinds, costs) -> np.ndarray:
    if req.memory_scope == "layer" and "memory" in kinds:
        return _solve_per_layer(req, rows, loss, budgets, kinds)
    try:
        return solve_mckp_multi(np.stack(rows), loss, budgets)
    except InfeasibleError as exc:
        kind = kinds[getattr(exc, "index", 0)] if hasattr(exc, "index") else None
        if kind == "latency":
            raise _latency_infeasible(req, costs.base_latency_s + exc.minimum) from None
        if kind == "bits":
            raise infeasible(f"average bits {req.avg_bits} is below the lowest level "
                             f"{costs.levels[0]}", costs.levels[0]) from None
        raise


def _solve_per_layer(req, rows, loss, budgets, kinds) -> np.ndarray:
    L, E = req.shape
    if req.by_layer:        # one item per layer
        E = 1
    if "latency" in kinds:
        raise ConfigError.single("a per-layer memory budget cannot be combined with a "
                                 "latency budget (the step latency is not per layer)",
                                 key="memory_scope", value="layer")
    out = []
    per = budgets / L
    for r in range(L):
        sl = slice(r * E, (r + 1) * E)
        out.append(solve_mckp_multi(np.stack([c[sl] for c in rows]), loss[sl], per))
    return np.concatenate(out)


def _latency_infeasible(req, minimum_s: float) -> InfeasibleError:
    t = req_text(req, "latency")
    return infeasible(f"latency budget {in_unit_of(req.latency_budget_s, t, 'time')} is "
                      f"below the smallest feasible {in_unit_of(minimum_s, t, 'time')} on "
                      f"{getattr(req.hw, 'name', 'this accelerator')} (every expert at the "
                      f"lowest level)", minimum_s)


def _resimulate(req, alloc, simulate) -> float | None:
    """Simulated step latency, or None when the weights do not fit the chip."""
    from ..errors import DoesNotFitError
    if (alloc.expert_bits > 0).sum(axis=1).min() < req.model.moe.top_k:
        return None         # prunes more experts than the router can do without
    sim, graph = _simulator(req, simulate)
    try:
        return float(sim(req.hw, graph, alloc).latency_s)
    except DoesNotFitError:
        return None


def _to_alloc(req, x, levels, meta) -> BitAllocation:
    x = np.asarray(x)
    if req.by_layer and x.size == req.shape[0]:     # one choice per MoE layer
        x = np.repeat(x, req.shape[1])
    bits = np.asarray(levels)[x].reshape(req.shape)
    m = dict(meta, levels=list(levels))
    if req.memory_budget_bytes is not None:
        m["memory_budget_bytes"] = float(req.memory_budget_bytes)
        m["memory_scope"] = req.memory_scope
    if req.latency_budget_s is not None:
        m["latency_budget_s"] = float(req.latency_budget_s)
        m["hw"] = getattr(req.hw, "name", None)
    return req.result(bits, "budget", check=False, **m)


def pareto_front(req, points: int = 9, *, simulate: Callable | None = None
                 ) -> list[BudgetResult]:
    """Budget results over ``points`` memory budgets from the smallest feasible to the one
    that fits every expert at the highest level (latency budgets when only a latency budget
    was asked for), non-dominated in (cost, distortion), cheapest first."""
    if points < 2:
        raise ConfigError.single("a Pareto sweep needs at least 2 points", key="points",
                                 value=points)
    costs = expert_costs(req, simulate=simulate)
    if req.memory_budget_bytes is not None or req.latency_budget_s is None:
        lo = costs.fixed_bytes + costs.bytes[..., 0].sum()
        hi = costs.fixed_bytes + costs.bytes[..., -1].sum()
        grid = np.linspace(lo, hi, points)
        reqs = [replace(req, memory_budget_bytes=float(b)) for b in grid]
        key = lambda r: r.weight_bytes  # noqa: E731
    else:
        lo = costs.base_latency_s + costs.latency_s[..., 0].sum()
        hi = costs.base_latency_s + costs.latency_s[..., -1].sum()
        reqs = [replace(req, latency_budget_s=float(b)) for b in np.linspace(lo, hi, points)]
        key = lambda r: r.latency_s  # noqa: E731
    results = []
    for r in reqs:
        try:
            results.append(budget_allocation(r, simulate=simulate, costs=costs))
        except InfeasibleError:
            continue
    results.sort(key=lambda r: (key(r), r.distortion))
    front, best = [], math.inf
    for r in results:
        if not front or r.distortion < best - 1e-12 * abs(best):
            front.append(r)
            best = r.distortion
    return front


def fewest_devices(system, graph, alloc, *, latency_budget_s: float | None = None,
                   max_devices: int | None = None, **options) -> dict[str, Any]:
    """An allocation targeting a system: the fewest devices of ``system`` (and the plan)
    that hold ``alloc``'s weights and, when given, run a step within ``latency_budget_s``
    (``accelsim plan --objective devices``).

    Starts from the lower bound ceil(weight bytes / one device's weight capacity) and
    searches the plans from there up (:func:`accelsim.system.search.search_plans`); returns
    its row (``plan``, ``devices``, ``latency_s``, ``tokens_per_s``,
    ``energy_per_token_j``). Raises :class:`InfeasibleError` when no plan fits.
    """
    from ..system.search import search_plans
    return search_plans(system, graph, alloc, max_devices=max_devices,
                        latency_budget_s=latency_budget_s, objective="devices",
                        **options)["best"]


def bits_for_latency(system, model, scenario, latency_budget_s: float, *, devices: int,
                     levels=(16, 8, 4, 3, 2), **options) -> tuple[BitAllocation, dict]:
    """An allocation targeting a system: the most bits (uniform over the routed experts,
    tried from the highest of ``levels`` down) whose best plan on exactly ``devices``
    devices of ``system`` runs a step of ``scenario`` within ``latency_budget_s``.

    Returns the allocation and its plan row (``plan``, ``devices``, ``latency_s``, ...).
    Raises :class:`InfeasibleError` when even the lowest level misses the budget or fits
    no plan.
    """
    from ..system.search import search_plans
    from ..workload import build_graph
    graph = build_graph(model, scenario)
    fastest = None
    for b in sorted({int(x) for x in levels}, reverse=True):
        alloc = BitAllocation.uniform(model, b)
        try:
            row = search_plans(system, graph, alloc, devices=devices,
                               latency_budget_s=latency_budget_s, objective="latency",
                               **options)["best"]
        except InfeasibleError as exc:
            fastest = str(exc)
            continue
        return alloc, row
    raise InfeasibleError(f"no uniform expert precision in {sorted(set(levels))} meets "
                          f"{latency_budget_s:.4g} s on {devices} devices of "
                          f"{getattr(system, 'name', system)} ({fastest})")
