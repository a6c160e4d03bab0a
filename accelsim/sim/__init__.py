"""The cycle-approximate simulator: what a precision choice does to latency, throughput,
energy and memory traffic on a given chip.

``simulate(hw, graph, alloc)`` runs one inference step of an MoE op graph;
``simulate_gemm(hw, m, k, n)`` one GEMM; ``simulate_parts(hw, graph, alloc, parts)`` the share
of a step that each device of a system runs (:class:`DevicePart`). Both return a :class:`SimResult`.
``memory_plan(hw, graph, alloc)`` (and ``fits``) only places the model, without simulating:
the cheap feasibility check. The model, its
formulas, assumptions and limits are in docs/simulator.md.

Modules: :mod:`~accelsim.sim.lower` (graph -> op table, allocation -> bits and bytes),
:mod:`~accelsim.sim.residency` (policies ``hot-first``, ``offchip``, ``must-fit``),
:mod:`~accelsim.sim.mapping`, :mod:`~accelsim.sim.engine` (numba tile pipeline),
:mod:`~accelsim.sim.schedule` (cores and NoC), :mod:`~accelsim.sim.energy`,
:mod:`~accelsim.sim.result`.
"""

from .core import SimOptions, fits, memory_plan, simulate, simulate_gemm
from .parts import DevicePart, simulate_parts
from .residency import (RESIDENCY_POLICIES, HotFirst, MemoryPlan, MustFit, Offchip,
                        ResidencyPolicy, get_policy, register_residency)
from .result import BOUNDS, SimResult

__all__ = ["simulate", "simulate_gemm", "simulate_parts", "DevicePart", "memory_plan", "fits", "MemoryPlan", "SimResult",
           "SimOptions", "RESIDENCY_POLICIES", "ResidencyPolicy", "HotFirst", "Offchip", "MustFit", "get_policy",
           "register_residency", "BOUNDS"]
