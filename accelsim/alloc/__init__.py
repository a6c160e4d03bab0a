"""Per-expert precision allocation: signals, the paper's method, baselines, a search against
the simulator's costs, and exports to quantizer configs. See ``docs/allocation.md``.

Examples
--------
>>> expert_order([[0.3, 0.1, 0.2]])
[[1, 2, 0]]
>>> solve_mckp([[1, 2], [1, 2]], [[5, 1], [3, 2]], 3).tolist()
[1, 0]
"""

from .budget import BudgetResult, budget_allocation, expert_costs, pareto_front
from .exports import (EXPORTS, export_text, gptqmodel_config, hf_module_name, hqq_config,
                      llama_cpp_overrides)
from .mckp import mckp_lp_bound, solve_mckp, solve_mckp_multi
from .methods import DEFAULT_ROLE_BITS, METHODS, AllocRequest, allocate, register
from .paper import assign_bits, expert_order, three_level_counts
from .signals import (ExpertSignals, expert_sensitivity, max_intra_neuron_variance,
                      router_norms, signals_from_checkpoint, signals_from_npz,
                      signals_from_trace)

__all__ = ["expert_order", "assign_bits", "three_level_counts", "solve_mckp",
           "solve_mckp_multi", "mckp_lp_bound", "ExpertSignals", "router_norms",
           "max_intra_neuron_variance", "expert_sensitivity", "signals_from_checkpoint",
           "signals_from_npz", "signals_from_trace", "AllocRequest", "METHODS", "register",
           "allocate", "DEFAULT_ROLE_BITS", "BudgetResult", "budget_allocation",
           "expert_costs", "pareto_front", "EXPORTS", "export_text", "gptqmodel_config",
           "llama_cpp_overrides", "hqq_config", "hf_module_name"]
