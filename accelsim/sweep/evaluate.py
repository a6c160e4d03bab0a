"""Evaluating one sweep point: accelerator, model, scenario, graph, allocation, simulation.

:func:`evaluate_point` is the function every executor runs. Loaded accelerators, models,
routing traces and graphs are cached per process (bounded LRU caches keyed by the values
that define them), so the points of a chunk that share a workload and scenario reuse one
graph object, which in turn lets the simulator reuse its lowering of that graph.

Randomness: a point's ``seed`` drives the routing permutation (Zipf), the synthetic expert
signals and seeded allocation methods. Points that differ only in hardware or method share
their seed by default (common random numbers), so that they are compared on the same
routing and signals.

Examples
--------
>>> hw = build_hw("gemmini", (("cores.mac_array.rows", 32),))
>>> hw.cores.mac_array.rows
32
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from .sources import build_hw, load_model_cached
from .spec import Point

__all__ = ["evaluate_point", "build_hw", "load_model_cached", "scenario_of", "graph_cached",
           "METRICS", "noise_equivalent_bits"]

#: Result columns of a successful point, in order: the simulator's totals, then the total
#: MACs of the step, the expert bits actually allocated, weights left off chip and the
#: accuracy proxy.
METRICS = ("latency_s", "tokens_per_s", "energy_j", "weight_bytes", "offchip_bytes", "bound",
           "cycles", "compute_cycles", "stall_cycles", "mac_utilization",
           "onchip_bytes_moved", "macs", "expert_avg_bits", "offchip_weight_bytes",
           "noise_equiv_bits")
_SIM_TOTALS = METRICS[:12]


@lru_cache(maxsize=16)
def _routing(text: str):
    from ..workload import parse_routing
    return parse_routing(text)


def scenario_of(params: Mapping[str, Any]):
    """The :class:`~accelsim.workload.Scenario` of a point's parameters."""
    from ..workload import Scenario
    return Scenario(phase=params["phase"], batch=int(params["batch"]),
                    seq_len=int(params["seq_len"]), context=int(params["context"]),
                    routing=_routing(params["routing"]),
                    capacity_factor=params["capacity_factor"], seed=int(params["seed"]))


# the routing permutation depends on the seed only for Zipf routing: other points share
# their graph across seeds
_SCENARIO_KEYS = ("workload", "phase", "batch", "seq_len", "context", "routing",
                  "capacity_factor", "seed")


@lru_cache(maxsize=32)
def _graph(key: tuple) -> tuple[Any, Any]:
    from ..workload import build_graph
    params = dict(zip(_SCENARIO_KEYS, key))
    model = load_model_cached(params["workload"])
    scenario = scenario_of(params)
    return build_graph(model, scenario), scenario.expert_load(model).probabilities


def graph_cached(params: Mapping[str, Any]):
    """``(graph, routing shares [moe layers, experts])`` of a point, one object per
    distinct workload and scenario in a process."""
    return _graph(tuple(params[k] for k in _SCENARIO_KEYS))


def noise_equivalent_bits(expert_bits: np.ndarray, shares: np.ndarray) -> float:
    """Accuracy proxy: the uniform bit-width with the same expected quantization noise.

    Quantization noise power of a ``b``-bit uniform quantizer scales as ``4**-b``; a token
    meets expert ``e`` of layer ``l`` with probability proportional to its routing share
    ``shares[l, e]``. The proxy is ``-log2(mean_w(4**-b)) / 2`` with ``w`` the shares: equal
    to ``b`` for a uniform allocation, and lower when often-used experts get few bits. It
    sees routing frequency only, not the router-norm signal (docs/sweeps.md).

    >>> noise_equivalent_bits(np.array([[4, 4]]), np.array([[0.5, 0.5]]))
    4.0
    >>> round(noise_equivalent_bits(np.array([[2, 4]]), np.array([[0.5, 0.5]])), 3)
    2.456
    """
    b = np.asarray(expert_bits, dtype=float)
    w = np.asarray(shares, dtype=float)
    mean = float((w * 4.0 ** -b).sum() / w.sum())
    return -math.log2(mean) / 2.0


#: Parameters an allocation depends on (besides the routing shares, fixed by ``routing`` and
#: ``seed``); the ``budget`` method also depends on the chip and the scenario.
_ALLOC_KEYS = ("workload", "routing", "seed", "method", "avg_bits", "levels", "signals",
               "other_bits", "group_size", "activation_bits", "kv_bits")


class _Lru:
    """A small thread-safe LRU map (Dask may run several chunks in threads of a worker)."""

    def __init__(self, size: int):
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)


_ALLOCS = _Lru(256)


def _allocation(point: Point, model, hw, shares):
    """The point's allocation; points that differ only in chip or batch share it (solving
    an allocation, PMQ's per-layer programs for example, can cost more than simulating)."""
    from .allocation import make_allocation
    p = point.params
    key = tuple(p.get(k) for k in _ALLOC_KEYS)
    if p["method"] == "budget":
        key = tuple(sorted((k, str(v)) for k, v in p.items()))
    alloc = _ALLOCS.get(key)
    if alloc is None:
        alloc = make_allocation(model, p, hw=hw, scenario=scenario_of(p), shares=shares)
        _ALLOCS.put(key, alloc)
    return alloc


def evaluate_point(point: Point) -> dict[str, Any]:
    """Simulate one point; the :data:`METRICS` columns.

    Raises whatever the stages raise; the executors record it as the point's error.
    """
    from ..sim import simulate
    p = point.params
    if p.get("system") is not None:
        return _evaluate_system(point)
    hw = build_hw(p["hw"], tuple(sorted(point.overrides.items())))
    if p["gemm"] is not None:
        return _evaluate_gemm(p, hw)
    model = load_model_cached(p["workload"])
    graph, shares = graph_cached(p)
    alloc = _allocation(point, model, hw, shares)
    from ..packing import packed
    stored = packed(alloc, hw.cores.mac_array.weight_bits, p.get("packing", "native"))
    res = simulate(hw, graph, stored, residency=p["residency"], dataflow=p["dataflow"])
    return _metrics(res, hw, alloc.average_expert_bits(),
                    noise_equivalent_bits(alloc.expert_bits, shares))


def _evaluate_system(point: Point) -> dict[str, Any]:
    """A point on a multi-device system: :func:`accelsim.system.simulate_system`."""
    from ..system.simulate import simulate_system
    from .sources import build_system
    p = point.params
    system = build_system(p["system"], tuple(sorted(point.system_overrides.items())))
    if p.get("devices") is not None:
        system = system.first(int(p["devices"]))
    model = load_model_cached(p["workload"])
    graph, shares = graph_cached(p)
    # a budget allocation's latency budget is a step of this system (under the point's plan)
    alloc = _allocation(point, model, system if p["method"] == "budget" else system.hw, shares)
    res = simulate_system(system, graph, alloc, p.get("plan"), residency=p["residency"],
                          dataflow=p["dataflow"])
    out = _metrics(res, system.hw, alloc.average_expert_bits(),
                   noise_equivalent_bits(alloc.expert_bits, shares))
    out.update(_system_metrics(res))
    return out


def _system_metrics(res) -> dict[str, Any]:
    """A system point's own columns: devices and plan used (the point's ``devices``/``plan``
    say what was asked), energy per token, and bytes, time and energy on the links in
    all and per link level (``link_bytes_<level>``, ``link_time_s_<level>``)."""
    out: dict[str, Any] = {"devices_used": int(res.devices), "plan_used": str(res.plan),
                           "energy_per_token_j": float(res.energy_per_token_j)}
    tot = {"bytes": 0.0, "time_s": 0.0, "energy_j": 0.0}
    for row in res.per_link:
        for k in tot:
            tot[k] += float(row[k])
        out[f"link_bytes_{row['level']}"] = float(row["bytes"])
        out[f"link_time_s_{row['level']}"] = float(row["time_s"])
    out.update({f"link_{k}": v for k, v in tot.items()})
    return out


def _metrics(res, hw, expert_bits: float, noise_bits: float) -> dict[str, Any]:
    """The :data:`METRICS` of a simulation result."""
    out: dict[str, Any] = {k: getattr(res, k) for k in _SIM_TOTALS}
    for k, v in out.items():
        out[k] = v if isinstance(v, str) else float(v)
    off = hw.offchip
    out["expert_avg_bits"] = float(expert_bits)
    out["offchip_weight_bytes"] = float(res.weight_bytes_by_level.get(off.name, 0.0)
                                        if off is not None else 0.0)
    out["noise_equiv_bits"] = float(noise_bits)
    return out


def _evaluate_gemm(p: Mapping[str, Any], hw) -> dict[str, Any]:
    """A GEMM point: :func:`accelsim.sim.simulate_gemm` with weights at ``avg_bits``."""
    from ..sim import simulate_gemm
    m, k, n = p["gemm"]
    bits = int(p["avg_bits"])
    from ..packing import padded_width
    stored = (padded_width(bits, hw.cores.mac_array.weight_bits)
              if p.get("packing", "native") == "native" else bits)
    res = simulate_gemm(hw, m, k, n, w_bits=stored, a_bits=p["activation_bits"],
                        dataflow=p["dataflow"], residency=p["residency"],
                        group_size=p["group_size"])
    return _metrics(res, hw, bits, bits)

