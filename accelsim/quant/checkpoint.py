"""Read MoE routers and experts from ``.safetensors`` checkpoints, one tensor at a time.

:func:`open_checkpoint` reads only the files' headers (tensor names, dtypes, shapes, byte
offsets); :meth:`Checkpoint.router` and :meth:`Checkpoint.expert` then read just the tensors
asked for. F32 and F16 tensors are read with ``safetensors.safe_open(..., framework="numpy")``;
BF16 tensors (which numpy cannot represent) are read as raw little-endian ``uint16`` from
their byte range and widened to float32 (``bits << 16``, exact). Everything is returned as
float32.

Tensor names per family (``{i}`` layer, ``{e}`` expert), mapped to the canonical matrix
names of :data:`accelsim.quant.experts.FFN_KINDS`:

=========================  ==================================================  ===========
family                     router / experts                                    canonical
=========================  ==================================================  ===========
``mixtral``                ``model.layers.{i}.block_sparse_moe.gate.weight``   w1 w3 w2
                           ``...block_sparse_moe.experts.{e}.w1|w3|w2.weight``
``qwen2_moe``, ``olmoe``,  ``model.layers.{i}.mlp.gate.weight``                w1 w3 w2
``deepseek_v2``,           ``...mlp.experts.{e}.gate_proj|up_proj|down_proj``
``deepseek_v3``            ``.weight``
``switch``                 ``{encoder|decoder}.block.{i}.layer.{1|2}.mlp``     wi wo
                           ``.router.classifier.weight``,
                           ``...mlp.experts.expert_{e}.wi|wo.weight``
=========================  ==================================================  ===========

Shared experts: ``...mlp.shared_expert.*`` (Qwen2-MoE) and ``...mlp.shared_experts.*``
(DeepSeek), same projection names. Layer keys are the integer ``i`` for decoder-only
families and the strings ``"encoder.{i}"`` / ``"decoder.{i}"`` for Switch. MoE layers are
found from the router tensors present (dense layers, e.g. DeepSeek's first ones, have none).

Sharded checkpoints: pass several files, a directory (its
``model.safetensors.index.json`` when present, else all its ``*.safetensors``), or the index
JSON itself.

Examples
--------
>>> import tempfile, os
>>> from safetensors.numpy import save_file
>>> d = tempfile.mkdtemp()
>>> p = os.path.join(d, "model.safetensors")
>>> pre = "model.layers.0.block_sparse_moe"
>>> t = {f"{pre}.gate.weight": np.ones((2, 4), np.float32)}
>>> for e in range(2):
...     for n, s in (("w1", (3, 4)), ("w3", (3, 4)), ("w2", (4, 3))):
...         t[f"{pre}.experts.{e}.{n}.weight"] = np.full(s, e, np.float16)
>>> save_file(t, p)
>>> ck = open_checkpoint(p, "mixtral")
>>> ck.moe_layers(), ck.num_experts(0), ck.router(0).shape
([0], 2, (2, 4))
>>> {k: (v.dtype.name, v.shape) for k, v in ck.expert(0, 1).items()}
{'w1': ('float32', (3, 4)), 'w3': ('float32', (3, 4)), 'w2': ('float32', (4, 3))}
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np
from safetensors import safe_open

from accelsim.errors import CheckpointError, ConfigError, Problem, did_you_mean
from accelsim.quant.experts import FFN_KINDS, Expert, MoELayer

__all__ = ["FAMILIES", "Family", "Checkpoint", "TensorInfo", "open_checkpoint",
           "read_safetensors_header"]

LayerKey = int | str
_FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
_NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8",
                 "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


@dataclass(frozen=True)
class Family:
    """Checkpoint naming of one model family (rules as data).

    ``router_re`` matches a router tensor name; its groups give the layer key and its
    ``moe`` group the module prefix that expert names are built from.
    """

    name: str
    router_re: str
    expert_fmt: str               # uses {moe}, {e}, {proj}
    projections: Mapping[str, str]  # canonical -> checkpoint projection name
    ffn_kind: str
    shared_fmt: str | None = None  # uses {moe}, {proj}

    def layer_key(self, m: re.Match) -> LayerKey:
        g = m.groupdict()
        return f"{g['stack']}.{int(g['layer'])}" if "stack" in g else int(g["layer"])


_SWIGLU_HF = MappingProxyType({"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"})
_DECODER_MLP = r"(?P<moe>model\.layers\.(?P<layer>\d+)\.mlp)\.gate\.weight"

FAMILIES: Mapping[str, Family] = MappingProxyType({
    "mixtral": Family(
        "mixtral",
        r"(?P<moe>model\.layers\.(?P<layer>\d+)\.block_sparse_moe)\.gate\.weight",
        "{moe}.experts.{e}.{proj}.weight",
        MappingProxyType({"w1": "w1", "w3": "w3", "w2": "w2"}), "swiglu"),
    "qwen2_moe": Family("qwen2_moe", _DECODER_MLP, "{moe}.experts.{e}.{proj}.weight",
                        _SWIGLU_HF, "swiglu", "{moe}.shared_expert.{proj}.weight"),
    "olmoe": Family("olmoe", _DECODER_MLP, "{moe}.experts.{e}.{proj}.weight", _SWIGLU_HF,
                    "swiglu"),
    "deepseek_v2": Family("deepseek_v2", _DECODER_MLP, "{moe}.experts.{e}.{proj}.weight",
                          _SWIGLU_HF, "swiglu", "{moe}.shared_experts.{proj}.weight"),
    "deepseek_v3": Family("deepseek_v3", _DECODER_MLP, "{moe}.experts.{e}.{proj}.weight",
                          _SWIGLU_HF, "swiglu", "{moe}.shared_experts.{proj}.weight"),
    "switch": Family(
        "switch",
        r"(?P<moe>(?P<stack>encoder|decoder)\.block\.(?P<layer>\d+)\.layer\.\d+\.mlp)"
        r"\.router\.classifier\.weight",
        "{moe}.experts.expert_{e}.{proj}.weight",
        MappingProxyType({"wi": "wi", "wo": "wo"}), "relu"),
})


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor lives: its file, dtype (safetensors code), shape and byte range."""

    file: str
    dtype: str
    shape: tuple[int, ...]
    begin: int   # absolute byte offset in the file
    end: int


def read_safetensors_header(path) -> dict[str, TensorInfo]:
    """Parse a ``.safetensors`` header (8-byte little-endian length + JSON); no tensor data.

    Raises
    ------
    accelsim.errors.CheckpointError
        Unreadable file or malformed header.
    """
    path = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ValueError("file shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            size = os.fstat(f.fileno()).st_size
            if n > size - 8:
                raise ValueError(f"header length {n} exceeds the file size {size}")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as exc:
        raise CheckpointError.single(f"not a readable safetensors file ({exc})",
                                     file=path) from None
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            b, e = meta["data_offsets"]
            out[name] = TensorInfo(path, str(meta["dtype"]), tuple(int(s) for s in meta["shape"]),
                                   base + int(b), base + int(e))
        except (KeyError, TypeError, ValueError):
            raise CheckpointError.single("malformed header entry", file=path, key=name,
                                         value=meta) from None
        if out[name].end > size or out[name].begin > out[name].end:
            raise CheckpointError.single(f"file truncated: the tensor's bytes end at "
                                         f"{out[name].end} but the file has {size}",
                                         file=path, key=name)
    return out


def _resolve_files(paths) -> tuple[list[str], str]:
    """Checkpoint files and a label naming the checkpoint in error messages."""
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        if p.is_dir():
            index = p / "model.safetensors.index.json"
            if index.exists():
                return _files_from_index(index), str(index)
            files = sorted(str(f) for f in p.glob("*.safetensors"))
            if not files:
                raise CheckpointError.single("directory holds no .safetensors file", file=str(p))
            return files, str(p)
        if p.name.endswith(".json"):
            return _files_from_index(p), str(p)
        if not p.exists():
            raise CheckpointError.single("no such file", file=str(p))
        return [str(p)], str(p)
    files = [str(Path(f)) for f in paths]
    if not files:
        raise ConfigError.single("must name at least one file", key="paths", value=paths)
    for f in files:
        if not Path(f).exists():
            raise CheckpointError.single("no such file", file=f)
    return files, files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} shards)"


def _files_from_index(index: Path) -> list[str]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError.single(f"not a readable safetensors index ({exc!r})",
                                     file=str(index)) from None
    files = [str(index.parent / n) for n in names]
    for f in files:
        if not Path(f).exists():
            raise CheckpointError.single("shard listed in the index does not exist",
                                         file=str(index), value=Path(f).name)
    return files


class Checkpoint:
    """A lazily read MoE checkpoint (see the module docstring); build with :func:`open_checkpoint`.

    Attributes
    ----------
    family : Family
    label : str
        The checkpoint's name in error messages.
    tensors : Mapping[str, TensorInfo]
        Every tensor of every shard (headers only).
    """

    def __init__(self, family: Family, tensors: Mapping[str, TensorInfo], label: str):
        self.family = family
        self.tensors = MappingProxyType(dict(tensors))
        self.label = label
        rx = re.compile(family.router_re)
        layers = {}
        for name in self.tensors:
            m = rx.fullmatch(name)
            if m:
                layers[family.layer_key(m)] = (m.group("moe"), name)
        self._moe = dict(sorted(layers.items(), key=lambda kv: _sort_key(kv[0])))

    @property
    def ffn_kind(self) -> str:
        """``"swiglu"`` or ``"relu"`` (the :class:`~accelsim.quant.Expert` kind)."""
        return self.family.ffn_kind

    def __repr__(self) -> str:
        return (f"Checkpoint({self.label!r}, family={self.family.name!r}, "
                f"moe_layers={len(self._moe)}, tensors={len(self.tensors)})")

    # ------------------------------------------------------------------ structure
    def moe_layers(self) -> list[LayerKey]:
        """Keys of the layers that have a router, in order."""
        return list(self._moe)

    def _prefix(self, layer: LayerKey) -> str:
        try:
            return self._moe[layer][0]
        except (KeyError, TypeError):
            raise ConfigError.single(
                "not an MoE layer of this checkpoint" + did_you_mean(str(layer),
                                                                     map(str, self._moe))
                + f" (layers: {_short_list(self.moe_layers())})", key="layer",
                value=layer) from None

    def router_name(self, layer: LayerKey) -> str:
        """Checkpoint name of the router of ``layer``."""
        self._prefix(layer)
        return self._moe[layer][1]

    def num_experts(self, layer: LayerKey) -> int:
        """Routed experts of ``layer`` (rows of its router; nothing is read)."""
        name = self.router_name(layer)
        info = self.tensors[name]
        self._check_info(name, info, ndim=2)
        return info.shape[0]

    def expert_names(self, layer: LayerKey, e: int) -> dict[str, str]:
        """Canonical matrix name -> checkpoint tensor name for expert ``e`` of ``layer``."""
        moe = self._prefix(layer)
        n = self.num_experts(layer)
        if isinstance(e, (bool, np.bool_)) or not isinstance(e, (int, np.integer)) \
                or not 0 <= e < n:
            raise ConfigError.single(f"must be an expert index in 0..{n - 1}", key="e", value=e)
        return {c: self.family.expert_fmt.format(moe=moe, e=int(e), proj=p)
                for c, p in self.family.projections.items()}

    # ------------------------------------------------------------------ reading
    def tensor(self, name: str, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
        """Read one tensor as float32, checking presence, float dtype and (optional) shape.

        ``shape`` entries that are None are not checked.
        """
        info = self.tensors.get(name)
        if info is None:
            raise CheckpointError.single(
                "missing tensor" + did_you_mean(name, self.tensors), file=self.label, key=name)
        self._check_info(name, info, shape=shape)
        return _read(name, info)

    def _check_info(self, name, info: TensorInfo, ndim=None, shape=None):
        if info.dtype not in _FLOAT_DTYPES:
            raise CheckpointError.single(f"dtype must be one of {_FLOAT_DTYPES}",
                                         file=info.file, key=name, value=info.dtype)
        if ndim is not None and len(info.shape) != ndim:
            raise CheckpointError.single(f"must be {ndim}-D", file=info.file, key=name,
                                         value=info.shape)
        if shape is not None and (len(shape) != len(info.shape) or any(
                s is not None and s != t for s, t in zip(shape, info.shape))):
            want = tuple("*" if s is None else s for s in shape)
            raise CheckpointError.single(f"wrong shape: expected {want}", file=info.file,
                                         key=name, value=info.shape)

    def router(self, layer: LayerKey) -> np.ndarray:
        """Router weight ``(n_experts, hidden)`` of ``layer``, float32."""
        return self.tensor(self.router_name(layer), shape=(None, None))

    def expert(self, layer: LayerKey, e: int) -> dict[str, np.ndarray]:
        """Matrices of routed expert ``e`` of ``layer`` by canonical name, float32.

        Shapes are checked against the router's hidden size and each other:
        ``w1``/``w3``/``wi`` ``(ffn, hidden)``, ``w2``/``wo`` ``(hidden, ffn)``.
        """
        names = self.expert_names(layer, e)
        hidden = self.tensors[self.router_name(layer)].shape[1]
        return self._read_ffn(names, hidden)

    def shared_expert(self, layer: LayerKey) -> dict[str, np.ndarray] | None:
        """Matrices of the shared expert of ``layer`` (None when the family/layer has none)."""
        fmt = self.family.shared_fmt
        moe = self._prefix(layer)
        if fmt is None:
            return None
        names = {c: fmt.format(moe=moe, proj=p) for c, p in self.family.projections.items()}
        if not any(n in self.tensors for n in names.values()):
            return None
        return self._read_ffn(names, self.tensors[self.router_name(layer)].shape[1])

    def _read_ffn(self, names: dict[str, str], hidden: int) -> dict[str, np.ndarray]:
        canon = FFN_KINDS[self.family.ffn_kind]
        first = names[canon[0]]
        info = self.tensors.get(first)
        if info is None:
            raise CheckpointError.single("missing tensor", file=self.label, key=first)
        self._check_info(first, info, ndim=2)
        ffn = info.shape[0]
        out = {}
        for c in canon:
            want = (hidden, ffn) if c == canon[-1] else (ffn, hidden)
            out[c] = self.tensor(names[c], shape=want)
        return out

    def load_expert(self, layer: LayerKey, e: int) -> Expert:
        """Expert ``e`` of ``layer`` as an :class:`~accelsim.quant.Expert` (float32)."""
        return Expert(self.ffn_kind, self.expert(layer, e))

    def moe_layer(self, layer: LayerKey, top_k: int, normalize_topk: bool = True) -> MoELayer:
        """The whole MoE block of ``layer`` (router, all experts, shared expert if any).

        Reads every expert of the layer (one layer's weights in memory at a time).
        """
        experts = tuple(self.load_expert(layer, e) for e in range(self.num_experts(layer)))
        shared = self.shared_expert(layer)
        return MoELayer(self.router(layer), experts, top_k, normalize_topk,
                        () if shared is None else (Expert(self.ffn_kind, shared),))


def _read(name: str, info: TensorInfo) -> np.ndarray:
    count = int(np.prod(info.shape, dtype=np.int64))
    width = np.dtype(_NUMPY_DTYPES[info.dtype]).itemsize
    if info.end - info.begin != count * width:
        raise CheckpointError.single(
            f"byte range {info.end - info.begin} does not match shape {info.shape} "
            f"of {info.dtype}", file=info.file, key=name)
    try:
        if info.dtype == "BF16":
            raw = np.fromfile(info.file, dtype="<u2", count=count, offset=info.begin)
            if raw.size != count:
                raise ValueError("file truncated")
            arr = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            with safe_open(info.file, framework="numpy") as f:
                arr = f.get_tensor(name)
    except Exception as exc:   # safetensors raises its own error types
        raise CheckpointError.single(f"cannot read tensor ({exc})", file=info.file,
                                     key=name) from None
    return np.ascontiguousarray(arr, dtype=np.float32).reshape(info.shape)


def _sort_key(k: LayerKey):
    if isinstance(k, str):
        stack, i = k.split(".")
        return (0 if stack == "encoder" else 1, int(i))
    return (0, k)


def _short_list(items: Sequence, n: int = 6) -> str:
    s = ", ".join(map(str, items[:n]))
    return s + (", ..." if len(items) > n else "") if items else "none"


def open_checkpoint(paths, family: str) -> Checkpoint:
    """Open a (possibly sharded) safetensors checkpoint of a model ``family``; reads headers only.

    Parameters
    ----------
    paths : path, directory, index JSON, or sequence of paths
        The checkpoint (see the module docstring for sharding).
    family : {"mixtral", "qwen2_moe", "olmoe", "deepseek_v2", "deepseek_v3", "switch"}

    Returns
    -------
    Checkpoint

    Raises
    ------
    accelsim.errors.ConfigError
        Unknown family.
    accelsim.errors.CheckpointError
        Missing or unreadable files; a tensor name present in two shards; no router tensor of
        the family (wrong family or not an MoE checkpoint).
    """
    if family not in FAMILIES:
        raise ConfigError.single(f"must be one of {sorted(FAMILIES)}" +
                                 did_you_mean(str(family), FAMILIES), key="family", value=family)
    files, label = _resolve_files(paths)
    tensors: dict[str, TensorInfo] = {}
    problems = []
    for f in files:
        for name, info in read_safetensors_header(f).items():
            if name in tensors:
                problems.append(Problem(f"tensor also present in {tensors[name].file}",
                                        file=f, key=name))
            tensors[name] = info
    if problems:
        raise CheckpointError(problems)
    ck = Checkpoint(FAMILIES[family], tensors, label)
    if not ck.moe_layers():
        raise CheckpointError.single(
            f"no {family} router tensor found (expected names matching "
            f"{FAMILIES[family].router_re!r}); wrong family?", file=label, key="family",
            value=family)
    return ck
