"""Searching parallelism plans and device counts: ``accelsim plan``.

Every plan of :func:`~accelsim.system.plan.enumerate_plans` with ``dp = 1`` on up to the
allowed number of devices is laid out (:func:`~accelsim.system.simulate.prepare`; plans
whose experts find no room are dropped); the device parts of all of them go to
:func:`accelsim.sim.simulate_parts` together (each distinct part once), and each plan is
composed from its parts. Data-parallel replicas (``dp > 1``) do not change the per-token
latency or the energy per token and multiply the throughput and the devices, so their rows
are derived, not simulated. The Pareto table keeps the rows no other row beats on all of
devices (fewer), latency (lower), tokens/s (higher) and energy per token (lower).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, DoesNotFitError, InfeasibleError
from .load import load_system
from .plan import enumerate_plans
from .simulate import _equivalence_key, compose, prepare

__all__ = ["search_plans", "OBJECTIVES", "pareto_rows", "min_devices"]

OBJECTIVES = ("latency", "throughput", "devices", "energy")
ROW_KEYS = ("plan", "devices", "latency_s", "tokens_per_s", "energy_per_token_j",
            "tokens_per_s_per_device", "bound")


def min_devices(system, model, alloc) -> int:
    """A lower bound on the devices any plan needs: the weights under ``alloc`` over one
    device's weight capacity, rounded up (every weight lives on some device).

    >>> from accelsim.workload import load_workload
    >>> from accelsim.precision import BitAllocation
    >>> m = load_workload("mixtral-8x7b")
    >>> a = BitAllocation.uniform(m, 4)
    >>> a.weight_bytes(m) / 2**20 / 192          # 192 MiB of weight SRAM per NorthPole
    123.35...
    >>> min_devices(load_system("northpole-rack"), m, a)
    124
    """
    import math

    from .simulate import weight_capacity_bytes
    cap = weight_capacity_bytes(system.hw)
    return max(1, math.ceil(alloc.weight_bytes(model) / cap))


def _row(res, dp: int = 1, plan_text: str | None = None) -> dict[str, Any]:
    devices = res.devices * dp
    tps = res.tokens_per_s * dp
    return {"plan": plan_text or res.plan, "devices": devices, "latency_s": res.latency_s,
            "tokens_per_s": tps, "energy_per_token_j": res.energy_per_token_j,
            "tokens_per_s_per_device": tps / devices, "bound": res.bound}


def pareto_rows(rows: list[dict]) -> list[dict]:
    """The rows no other row dominates, by devices then latency.

    >>> r = lambda d, l, t, e: dict(devices=d, latency_s=l, tokens_per_s=t,
    ...                             energy_per_token_j=e)
    >>> [x["devices"] for x in pareto_rows([r(1, 2, 1, 1), r(2, 1, 2, 1), r(2, 3, 1, 2)])]
    [1, 2]
    """
    import numpy as np
    if not rows:
        return []
    M = np.array([[r["devices"], r["latency_s"], -r["tokens_per_s"], r["energy_per_token_j"]]
                  for r in rows], dtype=float)
    keep = []
    for i in range(len(rows)):        # dominated: another row as good in all, better in one
        ge = (M <= M[i]).all(axis=1)
        gt = (M < M[i]).any(axis=1)
        keep.append(not (ge & gt).any())
    out = [r for r, k in zip(rows, keep) if k]
    seen, uniq = set(), []
    for a in out:   # plans with equal figures: the first (the simplest) stands for them
        k = (a["devices"], a["latency_s"], a["tokens_per_s"], a["energy_per_token_j"])
        if k not in seen:
            seen.add(k)
            uniq.append(a)
    return sorted(uniq, key=lambda x: (x["devices"], x["latency_s"]))


def _best(rows: list[dict], objective: str) -> dict:
    keys = {
        "latency": lambda x: (x["latency_s"], x["devices"], x["energy_per_token_j"]),
        "throughput": lambda x: (-x["tokens_per_s"], x["devices"], x["latency_s"]),
        "devices": lambda x: (x["devices"], x["latency_s"], x["energy_per_token_j"]),
        "energy": lambda x: (x["energy_per_token_j"], x["devices"], x["latency_s"]),
    }
    return min(rows, key=keys[objective])


def search_plans(system, graph, alloc=None, *, devices: int | None = None,
                 max_devices: int | None = None, latency_budget_s: float | None = None,
                 objective: str = "latency", microbatches: int | None = None,
                 cache: dict | None = None, **options) -> dict[str, Any]:
    """Search plans and device counts of ``system`` for one step of ``graph``.

    Returns ``{"best": row, "pareto": [rows], "rows": [every feasible row], "evaluated":
    n, "infeasible": n}``; a row holds ``plan``, ``devices``, ``latency_s``,
    ``tokens_per_s``, ``energy_per_token_j``, ``tokens_per_s_per_device`` and ``bound``.
    ``devices``: exactly that many; ``max_devices``: at most (default: all of the system).

    Raises
    ------
    InfeasibleError
        No plan fits, or none meets ``latency_budget_s``.
    """
    from ..precision import BitAllocation
    from .simulate import _run_parts
    if objective not in OBJECTIVES:
        raise ConfigError.single(f"must be one of {', '.join(OBJECTIVES)}", key="objective",
                                 value=objective)
    system = load_system(system)
    model = graph.graph.get("model_spec")
    if model is None:
        raise ConfigError.single("the graph has no 'model_spec'", key="graph")
    N = system.num_devices
    for key, v in (("devices", devices), ("max_devices", max_devices)):
        if v is not None and not 1 <= v <= N:
            raise ConfigError.single(f"must be in 1..{N} (the devices of {system.name})",
                                     key=key, value=v)
    top = devices or max_devices or N
    acct = alloc if alloc is not None else BitAllocation.uniform(model, 16)
    least = min_devices(system, model, acct)
    counts = {devices} if devices else set(range(least, top + 1))
    # dp = 1 plans on any count that divides an allowed one (dp replicas are derived)
    plans = [p for p in enumerate_plans(model, top, devices_per_node=system.devices_per_node,
                                        exact=False, microbatches=microbatches)
             if p.dp == 1 and p.devices >= least
             and any(c % p.devices == 0 for c in counts)]
    memo: dict = {}
    cache = {} if cache is None else cache
    preps, infeasible = [], 0
    for p in plans:
        try:
            preps.append(prepare(system, graph, model, alloc, acct, p, memo))
        except (DoesNotFitError, ConfigError):
            infeasible += 1
    opts = dict(options)
    stats = preps[0].stats if preps else None
    keys = [[_equivalence_key(q, stats, graph, alloc, opts) for q in prep.all_parts()]
            for prep in preps]
    flat = [q for prep in preps for q in prep.all_parts()]
    try:
        _run_parts(system, graph, alloc, flat, opts, cache, stats,
                   keys=[k for ks in keys for k in ks], aligned=False)
        batch_ok = True
    except DoesNotFitError:
        batch_ok = False
    rows = []
    for prep, ks in zip(preps, keys):
        try:
            if batch_ok:
                results = [cache[k] for k in ks]
            else:
                results = _run_parts(system, graph, alloc, prep.all_parts(), opts, cache,
                                     stats, keys=ks, aligned=False)
        except DoesNotFitError:
            infeasible += 1
            continue
        res = compose(prep, results, memo)
        for dp in range(1, top // res.devices + 1):
            if res.devices * dp in counts:
                text = res.plan.replace(",dp=1,", f",dp={dp},")
                rows.append(_row(res, dp, text))
    if not rows:
        raise InfeasibleError(f"no plan of {model.name} fits "
                              + (f"{devices} devices" if devices else f"up to {top} devices")
                              + f" of {system.name}")
    ok = rows
    if latency_budget_s is not None:
        ok = [r for r in rows if r["latency_s"] <= latency_budget_s * (1 + 1e-12)]
        if not ok:
            fastest = min(r["latency_s"] for r in rows)
            raise InfeasibleError(f"no plan meets the latency budget of "
                                  f"{latency_budget_s:.4g} s on {system.name}; the fastest "
                                  f"takes {fastest:.4g} s")
    return {"best": _best(ok, objective), "pareto": pareto_rows(ok), "rows": rows,
            "evaluated": len(plans), "infeasible": infeasible}
