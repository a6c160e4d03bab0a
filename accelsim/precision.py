"""Weight formats and per-expert bit allocations.

:class:`WeightFormat` says how one weight tensor is stored: ``bits`` per weight, codes densely
packed as one flat stream, one float16 scale per group of ``group_size`` weights along the
input dimension and, when asymmetric, one uint8 zero point per group. 16 bits means plain
float16 with no scales. 1 bit is sign binarisation (``+-scale``), which has no zero point.
The bytes computed here equal :attr:`accelsim.quant.QuantizedTensor.nbytes` for the same
format (tested).

:class:`BitAllocation` gives every routed expert of every MoE layer its own bits, plus the
bits of attention, router, shared experts, dense FFNs and embeddings, activations and the
KV cache. A routed expert at 0 bits is *pruned*: it stores nothing and the router never
selects it (the workload renormalises routing over the surviving experts, see
:mod:`accelsim.workload.scenario`); every other role keeps at least 1 bit, and every MoE layer
keeps at least ``top_k`` experts (:meth:`BitAllocation.check`).

Examples
--------
>>> WeightFormat(bits=4, group_size=128).storage_bytes(14336, 4096)  # Mixtral w1
30736384
>>> from accelsim.workload import load_workload
>>> m = load_workload("mixtral-8x7b")
>>> a = BitAllocation.uniform(m, 3)
>>> a.expert_bits.shape, a.average_expert_bits()
((32, 8), 3.0)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
from pydantic import Field

from ._io import exists, jsonable
from .config import Bounded, Spec, read_mapping, validate
from .errors import ConfigError, Problem

__all__ = ["WeightFormat", "BitAllocation", "ROLE_DEFAULTS"]

#: Bits used for non-expert tensors unless an allocation says otherwise.
ROLE_DEFAULTS: dict[str, int] = {
    "attention": 16, "router": 16, "shared": 16, "dense_ffn": 16, "embeddings": 16,
}

_ROLE_KEY = {"attention": "attention", "router": "router", "shared": "shared",
             "shared_gate": "router", "dense_ffn": "dense_ffn", "embed": "embeddings",
             "lm_head": "embeddings"}


@dataclass(frozen=True)
class WeightFormat:
    """How a weight matrix is stored.

    Parameters
    ----------
    bits : int
        Bits per weight code, 1..16. 16 means unquantized float16.
    group_size : int or None
        Weights per scale along the input dimension; None means one group per row.
    symmetric : bool
        No zero points when True.
    scale_bits, zero_bits : int
        Storage of each group's scale (float16 = 16) and zero point (uint8 = 8).
    packing : {'dense', 'pow2'}
        ``dense``: codes packed back to back (``ceil(n * bits / 8)`` bytes).
        ``pow2``: each code in a container of the next power of two bits (3 -> 4), as some
        runtimes store them.
    """

    bits: int
    group_size: int | None = 128
    symmetric: bool = False
    scale_bits: int = 16
    zero_bits: int = 8
    packing: Literal["dense", "pow2"] = "dense"

    def __post_init__(self):
        if not isinstance(self.bits, (int, np.integer)) or not 1 <= int(self.bits) <= 16:
            raise ConfigError.single("bits must be an integer in 1..16", key="bits",
                                     value=self.bits)
        if self.group_size is not None and (not isinstance(self.group_size, (int, np.integer))
                                            or self.group_size < 1):
            raise ConfigError.single("group_size must be a positive integer or null",
                                     key="group_size", value=self.group_size)

    @property
    def is_float(self) -> bool:
        return self.bits >= 16

    @property
    def code_bits(self) -> int:
        """Bits each code occupies in memory."""
        if self.packing == "pow2" and not self.is_float:
            return 1 << math.ceil(math.log2(self.bits))
        return self.bits

    def n_groups(self, in_features: int) -> int:
        return 1 if self.group_size is None else math.ceil(in_features / self.group_size)

    def storage_bytes(self, out_features: int, in_features: int) -> int:
        """Bytes of one (out_features, in_features) matrix: codes + scales + zero points."""
        n = out_features * in_features
        if self.is_float:
            return 2 * n
        codes = math.ceil(n * self.code_bits / 8)
        groups = out_features * self.n_groups(in_features)
        scales = math.ceil(groups * self.scale_bits / 8)
        zeros = 0 if (self.symmetric or self.bits == 1) else math.ceil(groups * self.zero_bits / 8)
        return codes + scales + zeros

    def bits_per_weight(self, out_features: int, in_features: int) -> float:
        """Effective bits per weight, overheads included."""
        return 8.0 * self.storage_bytes(out_features, in_features) / (out_features * in_features)


class _FormatSpec(Spec):
    group_size: Bounded(int, 1, 1 << 20) | None = 128
    symmetric: bool = False
    scale_bits: Bounded(int, 1, 32) = 16
    zero_bits: Bounded(int, 1, 32) = 8
    packing: Literal["dense", "pow2"] = "dense"


class _DefaultsSpec(Spec):
    attention: Bounded(int, 1, 16) = 16
    router: Bounded(int, 1, 16) = 16
    shared: Bounded(int, 1, 16) = 16
    dense_ffn: Bounded(int, 1, 16) = 16
    embeddings: Bounded(int, 1, 16) = 16


class _AllocationFile(Spec):
    model: str = Field(min_length=1)
    method: str = "manual"
    expert_bits: list[list[Bounded(int, 0, 16)]] = Field(min_length=1)
    defaults: _DefaultsSpec = Field(default_factory=_DefaultsSpec)
    activation_bits: Bounded(int, 1, 16) | None = None
    kv_bits: Bounded(int, 1, 16) = 16
    format: _FormatSpec = Field(default_factory=_FormatSpec)
    layers: list[int] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


def split_point(path: str | os.PathLike) -> tuple[str, int | None]:
    """``("front.json", 3)`` for ``"front.json#3"`` when ``front.json`` exists and
    ``front.json#3`` does not; ``(path, None)`` otherwise.

    >>> split_point("no/such/file.json#2")
    ('no/such/file.json#2', None)
    """
    name = str(path)
    base, sep, tail = name.rpartition("#")
    if sep and tail.isascii() and tail.isdigit() and not exists(name) and exists(base) \
            and Path(base).is_file():
        return base, int(tail)
    return name, None


@dataclass(frozen=True)
class BitAllocation:
    """Bits per (MoE layer, routed expert) plus the bits of every other tensor role.

    Row ``r`` of ``expert_bits`` is the model's MoE layer ``model.moe_layers[r]``.
    ``activation_bits=None`` means the accelerator's default activation precision.
    """

    model_name: str
    expert_bits: np.ndarray
    defaults: Mapping[str, int] = field(default_factory=lambda: dict(ROLE_DEFAULTS))
    activation_bits: int | None = None
    kv_bits: int = 16
    group_size: int | None = 128
    symmetric: bool = False
    scale_bits: int = 16
    zero_bits: int = 8
    packing: Literal["dense", "pow2"] = "dense"
    method: str = "manual"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        bits = np.array(self.expert_bits, dtype=np.int64, copy=True)
        if bits.ndim != 2:
            raise ConfigError.single("expert_bits must be a 2-D array [moe layers, experts]",
                                     key="expert_bits", value=bits.shape)
        if bits.size and (bits.min() < 0 or bits.max() > 16):
            raise ConfigError.single("expert bits must be in 0..16 (0 = pruned)",
                                     key="expert_bits",
                                     value=(int(bits.min()), int(bits.max())))
        bits.setflags(write=False)
        object.__setattr__(self, "expert_bits", bits)
        d = dict(ROLE_DEFAULTS)
        unknown = set(self.defaults) - set(ROLE_DEFAULTS)
        if unknown:
            raise ConfigError.single(f"unknown role(s) {sorted(unknown)}; roles: "
                                     f"{sorted(ROLE_DEFAULTS)}", key="defaults")
        d.update({k: int(v) for k, v in self.defaults.items()})
        low = {k: v for k, v in d.items() if not 1 <= v <= 16}
        if low:
            raise ConfigError.single("only routed experts may be pruned (0 bits); attention, "
                                     "router, shared experts, dense FFNs and embeddings need "
                                     "1..16 bits", key=f"defaults.{next(iter(low))}",
                                     value=next(iter(low.values())))
        object.__setattr__(self, "defaults", d)
        object.__setattr__(self, "meta", dict(self.meta))

    # ------------------------------------------------------------------ construction
    @classmethod
    def uniform(cls, model, bits: int, *, others: int | None = None,
                **kwargs: Any) -> "BitAllocation":
        """Every routed expert at ``bits``; attention, shared experts and dense FFNs at
        ``others`` (default: ``bits``); router and embeddings at 16 unless ``defaults`` says
        otherwise."""
        o = bits if others is None else others
        defaults = {"attention": o, "shared": o, "dense_ffn": o, "router": 16,
                    "embeddings": 16}
        defaults.update(kwargs.pop("defaults", {}))
        arr = np.full((model.num_moe_layers, model.num_experts), int(bits))
        return cls(model.name, arr, defaults=defaults, method=kwargs.pop("method", "uniform"),
                   **kwargs)

    def with_expert_bits(self, expert_bits: np.ndarray, **changes: Any) -> "BitAllocation":
        return replace(self, expert_bits=np.asarray(expert_bits), **changes)

    # ------------------------------------------------------------------ queries
    def average_expert_bits(self) -> float:
        """Mean bits over all routed experts (all experts of a model have the same size);
        pruned experts count as 0 bits; NaN for a dense model (no routed experts)."""
        if self.expert_bits.size == 0:
            return float("nan")
        return float(self.expert_bits.mean())

    @property
    def pruned(self) -> np.ndarray:
        """Boolean mask [MoE layers, experts]: the routed experts at 0 bits (pruned)."""
        return self.expert_bits == 0

    @property
    def num_pruned(self) -> int:
        return int(self.pruned.sum())

    def weight_format(self, bits: int) -> WeightFormat:
        return WeightFormat(int(bits), self.group_size, self.symmetric, self.scale_bits,
                            self.zero_bits, self.packing)

    def bits_for(self, model, tensor) -> int:
        """Bits of one :class:`~accelsim.workload.TensorSpec` of ``model``."""
        if tensor.role == "expert":
            row = model.moe_layers.index(tensor.layer)
            return int(self.expert_bits[row, tensor.expert])
        return int(self.defaults.get(_ROLE_KEY.get(tensor.role, ""), 16))

    def tensor_bytes(self, model, tensor) -> int:
        """Storage bytes of one tensor: matrices in their WeightFormat; embeddings by their
        role's bits (a lookup table quantized per row like a matrix); vectors in float16."""
        if len(tensor.shape) == 1 or tensor.role in ("norm", "bias"):
            return 2 * tensor.numel
        out_f, in_f = tensor.shape
        bits = self.bits_for(model, tensor)
        if bits == 0:       # a pruned expert stores nothing
            return 0
        return self.weight_format(bits).storage_bytes(out_f, in_f)

    def weight_bytes(self, model) -> int:
        """Bytes of every parameter of ``model`` under this allocation (the sum of
        :meth:`tensor_bytes`; matrices of one shape at one bit-width are sized once)."""
        self.check(model)
        total = 0
        same: dict[tuple, int] = {}
        for t in model.tensors():
            if len(t.shape) == 1 or t.role in ("norm", "bias"):
                total += 2 * t.numel
            else:
                key = (self.bits_for(model, t), t.shape)
                same[key] = same.get(key, 0) + 1
        for (bits, (out_f, in_f)), count in same.items():
            if bits:        # 0 bits: pruned experts store nothing
                total += count * self.weight_format(bits).storage_bytes(out_f, in_f)
        return int(total)

    def bytes_by_role(self, model) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in model.tensors():
            out[t.role] = out.get(t.role, 0) + self.tensor_bytes(model, t)
        return out

    def check(self, model, *, file: str | None = None) -> None:
        """Raise ConfigError unless this allocation fits ``model``'s MoE layers and experts."""
        problems = []
        if self.model_name not in (model.name, "*"):
            problems.append(Problem(f"allocation is for model '{self.model_name}', not "
                                    f"'{model.name}'", file=file, key="model"))
        want = (model.num_moe_layers, model.num_experts)
        if self.expert_bits.shape != want:
            problems.append(Problem(
                f"must have {want[0]} rows (MoE layers) of {want[1]} experts for "
                f"{model.name}", file=file, key="expert_bits", value=self.expert_bits.shape))
        elif self.expert_bits.size:
            alive = (self.expert_bits > 0).sum(axis=1)
            k = int(model.moe.top_k)
            if alive.min() < k:
                r = int(np.argmin(alive))
                problems.append(Problem(
                    f"MoE layer {model.moe_layers[r]} keeps {int(alive[r])} expert(s) but the "
                    f"router selects top_k={k}: at least {k} experts per layer must survive "
                    f"pruning (0 bits)", file=file, key=f"expert_bits[{r}]",
                    value=int(alive[r])))
        if problems:
            raise ConfigError(problems)

    def histogram(self) -> dict[int, list[int]]:
        """Per MoE layer row, how many experts have each bit-width: {bits: [count per row]}."""
        out = {}
        for b in sorted(set(self.expert_bits.ravel().tolist())):
            out[int(b)] = [int(c) for c in (self.expert_bits == b).sum(axis=1)]
        return out

    # ------------------------------------------------------------------ IO
    def to_dict(self, model=None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model_name,
            "method": self.method,
            "average_expert_bits": self.average_expert_bits(),
            "expert_bits": self.expert_bits.tolist(),
            "defaults": dict(self.defaults),
            "activation_bits": self.activation_bits,
            "kv_bits": self.kv_bits,
            "format": {"group_size": self.group_size, "symmetric": self.symmetric,
                       "scale_bits": self.scale_bits, "zero_bits": self.zero_bits,
                       "packing": self.packing},
            "meta": jsonable(dict(self.meta)),
        }
        if model is not None:
            d["layers"] = list(model.moe_layers)
            d["weight_bytes"] = self.weight_bytes(model)
        return d

    def save(self, path: str | os.PathLike, model=None) -> None:
        """Write YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        import yaml
        p = Path(path)
        d = self.to_dict(model)
        text = (yaml.safe_dump(d, sort_keys=False, default_flow_style=None)
                if p.suffix.lower() in (".yaml", ".yml") else json.dumps(d, indent=2))
        p.write_text(text)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, file: str | None = None,
                  model=None) -> "BitAllocation":
        data = {k: v for k, v in data.items() if k not in ("average_expert_bits",
                                                            "weight_bytes")}
        spec = validate(_AllocationFile, data, file=file)
        widths = {len(r) for r in spec.expert_bits}
        if len(widths) != 1:
            raise ConfigError.single("every row of expert_bits must have the same length",
                                     file=file, key="expert_bits", value=sorted(widths))
        f = spec.format
        alloc = cls(spec.model, np.array(spec.expert_bits), defaults=spec.defaults.model_dump(),
                    activation_bits=spec.activation_bits, kv_bits=spec.kv_bits,
                    group_size=f.group_size, symmetric=f.symmetric, scale_bits=f.scale_bits,
                    zero_bits=f.zero_bits, packing=f.packing, method=spec.method,
                    meta=spec.meta)
        if model is not None:
            alloc.check(model, file=file)
        return alloc

    @classmethod
    def load(cls, path: str | os.PathLike, model=None) -> "BitAllocation":
        """Read an allocation file (YAML or JSON), validated against ``model`` if given.

        A Pareto front written by ``accelsim allocate --method budget --pareto --out F``
        holds one allocation per point: ``F#N`` loads point ``N`` (0-based, the ``point``
        column of the front's table)."""
        name, point = split_point(path)
        data = read_mapping(name, what="allocation file")
        if "pareto" in data and "expert_bits" not in data:
            pts = data["pareto"]
            if not isinstance(pts, list) or not pts:
                raise ConfigError.single("must be a non-empty list of points", file=name,
                                         key="pareto", value=type(pts).__name__)
            if point is None:
                raise ConfigError.single(
                    f"is a Pareto front of {len(pts)} allocation(s); pick one with "
                    f"'{name}#N', N in 0..{len(pts) - 1}", file=name)
            if point >= len(pts):
                raise ConfigError.single(f"has points 0..{len(pts) - 1}", file=name,
                                         key="pareto", value=point)
            entry = pts[point]
            if not isinstance(entry, dict) or not isinstance(entry.get("allocation"), dict):
                raise ConfigError.single("must be an allocation mapping", file=name,
                                         key=f"pareto.{point}.allocation")
            return cls.from_dict(entry["allocation"], file=f"{name}#{point}", model=model)
        if point is not None:
            raise ConfigError.single("is not a Pareto front: '#N' picks a point of one",
                                     file=name, value=f"#{point}")
        return cls.from_dict(data, file=name, model=model)

