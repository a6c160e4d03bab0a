"""Multi-device systems: devices, links, parallelism plans, collectives, expert placement
and the system simulation.

A :class:`System` is identical devices (accelerators) in nodes with two levels of links;
``load_system("h100-8")`` loads a preset of ``hwconfigs/systems/``. The model, formulas,
assumptions and limits are in docs/systems.md.

Modules: :mod:`~accelsim.system.spec` and :mod:`~accelsim.system.load` (the YAML),
:mod:`~accelsim.system.collectives` (alpha-beta costs per topology),
:mod:`~accelsim.system.plan` (parallelism plans), :mod:`~accelsim.system.placement` (expert
placement), :mod:`~accelsim.system.simulate` (``simulate_system``) and
:mod:`~accelsim.system.result` (``SystemResult``). The last two import the simulator and load
on first use.
"""

from .load import list_systems, load_system, system_from_dict, system_schema
from .placement import Placement, place_experts
from .plan import Plan, as_plan, check_plan, enumerate_plans, parse_plan, split_layers
from .spec import LEVELS, TOPOLOGIES, Link, Links, System

__all__ = ["System", "Link", "Links", "load_system", "system_from_dict", "list_systems",
           "system_schema", "TOPOLOGIES", "LEVELS", "Plan", "parse_plan",
           "as_plan", "check_plan", "enumerate_plans", "split_layers", "Placement",
           "place_experts", "simulate_system", "SystemResult"]


def __getattr__(name: str):
    if name == "simulate_system":
        from .simulate import simulate_system
        return simulate_system
    if name == "SystemResult":
        from .result import SystemResult
        return SystemResult
    raise AttributeError(f"module 'accelsim.system' has no attribute {name!r}")
