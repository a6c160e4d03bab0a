"""Bit allocations of sweep points: from a point's parameters to :mod:`accelsim.alloc`.

A point names a ``method`` of the allocator's registry (:data:`accelsim.alloc.METHODS`),
the target ``avg_bits`` and optionally the bit ``levels``, a ``signals`` file and, for the
``budget`` method, a ``memory_budget`` and/or ``latency_budget``. Non-expert tensors get
the allocator's role bits (:data:`accelsim.alloc.DEFAULT_ROLE_BITS`; ``other_bits`` sets
attention, shared experts and dense FFNs), the same for every method, so that methods differ
only in their expert bits.

**Default levels** (no ``levels`` given): three consecutive widths ``f + 1, f, f - 1`` with
``f = floor(avg_bits)`` (``2.5 -> 3,2,1``, ``3 -> 4,3,2``), two (``2, 1``) when ``f - 1``
would be 0, capped at 16. Explicit levels must bracket
``avg_bits``, or the point fails with that message.

**Synthetic signals.** Without a checkpoint there are no router norms or sensitivities, so
a point without a ``signals`` file uses signals derived from its seed and scenario
(:func:`synthetic_signals`): ``frequency`` is the routing share of every expert in the
point's own scenario (what the simulator routes by); ``router_norm_change`` is drawn
log-normal (sigma 0.5) per expert; ``sensitivity`` at bits 1..15 is ``c * 4**-bits`` with
``c`` log-normal per expert. They make every method runnable and its *hardware* cost exact
(the cost depends only on how many experts of each layer get each width and how often they
are used); they say nothing about accuracy. A ``signals`` NPZ replaces the synthetic arrays
it holds.

Examples
--------
>>> from accelsim.workload import load_workload
>>> m = load_workload("mixtral-8x7b")
>>> p = {"method": "router-norm", "avg_bits": 2.5, "levels": None, "seed": 0}
>>> a = make_allocation(m, p, shares=np.full((32, 8), 1 / 8))
>>> a.average_expert_bits(), sorted(set(a.expert_bits.ravel().tolist()))
(2.5, [1, 3])
>>> default_levels(2.5), default_levels(3.0), default_levels(1.5)
((3, 2, 1), (4, 3, 2), (2, 1))
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError

__all__ = ["available_methods", "make_allocation", "check_allocation", "default_levels",
           "synthetic_signals", "SIGMA"]

#: Spread (log-normal sigma) of the synthetic router-norm changes and sensitivities.
SIGMA = 0.5


def available_methods() -> list[str]:
    """Names of the allocation methods a sweep may use (the allocator's registry)."""
    from ..alloc import METHODS
    return sorted(METHODS)


def default_levels(avg_bits: float) -> tuple[int, ...]:
    """Three consecutive widths around ``avg_bits`` (see the module docstring)."""
    hi = min(16, math.floor(avg_bits) + 1)
    return (hi, hi - 1, hi - 2) if hi - 2 >= 1 else (2, 1)


def synthetic_signals(shape: tuple[int, int], seed: int, shares: np.ndarray | None):
    """Seeded stand-in signals (module docstring); independent random streams per signal."""
    from ..alloc import ExpertSignals
    L, E = shape
    change = np.random.default_rng([int(seed), 1]).lognormal(0.0, SIGMA, size=(L, E))
    c = np.random.default_rng([int(seed), 2]).lognormal(0.0, SIGMA, size=(L, E))
    bits = tuple(range(1, 16))
    sens = c[:, :, None] * 4.0 ** -np.asarray(bits, dtype=float)
    return ExpertSignals(router_norm_change=change,
                         frequency=None if shares is None else np.asarray(shares, float),
                         sensitivity=sens, sensitivity_bits=bits,
                         source=f"synthetic (seed {int(seed)})")


@lru_cache(maxsize=8)
def _npz(path: str):
    from ..alloc import signals_from_npz
    return signals_from_npz(path)


def _quantity(params: Mapping[str, Any], key: str, kind: str) -> tuple[float | None, str | None]:
    text = params.get(key)
    if text is None:
        return None, None
    from ..units import parse_quantity
    return parse_quantity(text, kind), str(text)


def make_allocation(model, params: Mapping[str, Any], *, hw=None, scenario=None,
                    shares: np.ndarray | None = None):
    """The :class:`~accelsim.precision.BitAllocation` of one point.

    ``shares`` are the routing shares [MoE layers, experts] of the point's scenario (the
    synthetic ``frequency``). Raises :class:`ConfigError` naming the parameter when the
    combination is impossible (``uniform`` at 2.5 bits, ``avg_bits`` outside ``levels``).
    """
    from ..alloc import DEFAULT_ROLE_BITS, AllocRequest, allocate
    avg = float(params["avg_bits"])
    levels = params.get("levels")
    if levels is None:
        levels = default_levels(avg)
    elif params["method"] not in ("uniform",) and not min(levels) <= avg <= max(levels):
        raise ConfigError.single(f"avg_bits {avg:g} is outside the levels "
                                 f"{','.join(map(str, levels))}", key="avg_bits", value=avg)
    shape = (model.num_moe_layers, model.moe.num_experts)
    signals = synthetic_signals(shape, int(params.get("seed", 0)), shares)
    if params.get("signals"):
        signals = _npz(params["signals"]).merged(signals)
    role_bits = dict(DEFAULT_ROLE_BITS)
    if params.get("other_bits") is not None:
        role_bits.update({k: int(params["other_bits"])
                          for k in ("attention", "shared", "dense_ffn")})
    mem, mem_text = _quantity(params, "memory_budget", "size")
    lat, lat_text = _quantity(params, "latency_budget", "time")
    req = AllocRequest(model, signals, avg_bits=avg, levels=tuple(levels),
                       seed=int(params.get("seed", 0)), role_bits=role_bits,
                       group_size=params.get("group_size", 128), hw=hw, scenario=scenario,
                       memory_budget_bytes=mem, latency_budget_s=lat,
                       memory_budget_text=mem_text, latency_budget_text=lat_text,
                       granularity=params.get("granularity", "expert"),
                       plan=params.get("plan") if hasattr(hw, "num_devices") else None)
    alloc = allocate(params["method"], req)
    changes = {}
    if params.get("activation_bits") is not None:
        changes["activation_bits"] = int(params["activation_bits"])
    if params.get("kv_bits") is not None:
        changes["kv_bits"] = int(params["kv_bits"])
    return replace(alloc, **changes) if changes else alloc


def check_allocation(model, params: Mapping[str, Any]) -> None:
    """Checks run once per distinct value before the sweep starts: a ``signals`` file must
    be readable and shaped for the model."""
    if params.get("signals"):
        _npz(params["signals"]).check(model.num_moe_layers, model.moe.num_experts)
