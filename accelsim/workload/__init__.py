"""MoE workloads: model specs, Hugging Face import, scenarios, routing and the op graph."""

from .load import list_workloads, load_workload, workload_from_dict
from .model import Attention, LayerInfo, MoEModel, MoeSpec, TensorSpec

__all__ = ["load_workload", "workload_from_dict", "list_workloads", "MoEModel", "MoeSpec",
           "Attention", "TensorSpec", "LayerInfo"]
