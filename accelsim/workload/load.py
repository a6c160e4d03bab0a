"""Loading MoE models: packaged presets, model YAMLs, and Hugging Face ``config.json``."""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..config import read_mapping, validate
from ..presets import describe_presets, resolve
from .model import MoEModel

__all__ = ["load_workload", "workload_from_dict", "list_workloads"]


def workload_from_dict(data: Mapping[str, Any], *, file: str | None = None) -> MoEModel:
    """Validate a mapping (as read from a model YAML) into a :class:`MoEModel`."""
    return validate(MoEModel, data, file=file)


def _is_hf_config(data: Mapping[str, Any]) -> bool:
    return "architectures" in data or "model_type" in data


def load_workload(source: str | os.PathLike | Mapping[str, Any]) -> MoEModel:
    """Load an MoE model from a preset name, a model YAML, or a Hugging Face ``config.json``.

    Examples
    --------
    >>> load_workload("mixtral-8x7b").moe.num_experts
    8
    """
    if isinstance(source, Mapping):
        if _is_hf_config(source):
            from .hf import from_hf_config
            return from_hf_config(source)
        return workload_from_dict(source)
    path = resolve(source, "workload")
    data = read_mapping(path, what="model file")
    if _is_hf_config(data):
        from .hf import from_hf_config
        return from_hf_config(data, file=str(path))
    return workload_from_dict(data, file=str(path))


def list_workloads() -> list[dict[str, str]]:
    """Packaged model presets: ``[{"name", "path", "description"}]``."""
    return describe_presets("workload")
