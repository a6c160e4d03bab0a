"""MoE workloads: model specs, Hugging Face import, scenarios, routing and the op graph."""

from .load import list_workloads, load_workload, workload_from_dict
from .graph import OP_TYPES, build_graph, graph_for_allocation, graph_summary
from .model import Attention, LayerInfo, MoEModel, MoeSpec, TensorSpec
from .scenario import (Explicit, ExpertLoad, Routing, Scenario, Trace, Uniform, Zipf, load_trace,
                       parse_routing)

__all__ = ["load_workload", "workload_from_dict", "list_workloads", "MoEModel", "MoeSpec",
           "Attention", "TensorSpec", "LayerInfo", "Scenario", "Uniform", "Zipf", "Explicit",
           "Trace", "Routing", "ExpertLoad", "load_trace", "parse_routing", "build_graph",
           "graph_summary", "graph_for_allocation", "OP_TYPES"]
