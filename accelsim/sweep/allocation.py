"""Bit allocations of sweep points: the bridge from a point's parameters to the allocator.

A point names a ``method`` of :mod:`accelsim.alloc`, an average ``avg_bits`` and optionally
``levels`` and a ``signals`` file; :func:`make_allocation` turns them into a
:class:`~accelsim.precision.BitAllocation`. Attention, shared experts and dense FFNs stay at
``other_bits`` (16 unless the point says otherwise) for every method, so that methods differ
only in their expert bits.

Examples
--------
>>> from accelsim.workload import load_workload
>>> m = load_workload("mixtral-8x7b")
>>> a = make_allocation(m, {"method": "uniform", "avg_bits": 4.0, "levels": None,
...                         "signals": None, "seed": 0})
>>> a.average_expert_bits(), a.defaults["attention"]
(4.0, 16)
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import ConfigError
from ..precision import BitAllocation

__all__ = ["available_methods", "make_allocation", "check_allocation"]


def available_methods() -> list[str]:
    """Names of the allocation methods a sweep may use."""
    return ["uniform"]


def _common(params: Mapping[str, Any]) -> dict[str, Any]:
    other = params.get("other_bits")
    o = 16 if other is None else int(other)
    return {"defaults": {"attention": o, "shared": o, "dense_ffn": o, "router": 16,
                         "embeddings": 16},
            "activation_bits": params.get("activation_bits"),
            "kv_bits": int(params.get("kv_bits", 16)),
            "group_size": params.get("group_size", 128)}


def make_allocation(model, params: Mapping[str, Any], hw=None, graph=None) -> BitAllocation:
    """The :class:`BitAllocation` of one point.

    Raises :class:`ConfigError` naming the parameter when the combination is impossible
    (for example ``uniform`` at a fractional average).
    """
    method, avg = params["method"], float(params["avg_bits"])
    if method == "uniform":
        if avg != int(avg):
            raise ConfigError.single("uniform needs a whole number of average bits",
                                     key="avg_bits", value=avg)
        return BitAllocation.uniform(model, int(avg), method="uniform", **_common(params))
    raise ConfigError.single("unknown allocation method", key="method", value=method)


def check_allocation(model, params: Mapping[str, Any]) -> None:
    """Checks of a point's allocation parameters that do not depend on the other swept
    values (run once per distinct value before the sweep starts)."""
    return None
