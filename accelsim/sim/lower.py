"""Lowering: an op graph to a struct-of-arrays op table, and an allocation to per-op bits.

:func:`lower` walks the ``networkx`` graph once (topological order, longest-path depth for
the level-synchronous schedule) and keeps everything the simulator needs as numpy arrays. The
result depends only on the graph, so it is cached per graph object: repeated
:func:`~accelsim.sim.simulate` calls with other allocations or accelerators skip the
traversal (graphs are treated as immutable once built). :func:`tensor_table` does the same
for a model's weight tensors.

:func:`tensor_bits` and :func:`tensor_storage_bytes` turn a
:class:`~accelsim.precision.BitAllocation` into bits and bytes per tensor with numpy; the
bytes equal :meth:`BitAllocation.tensor_bytes` (tested).

Examples
--------
>>> from accelsim.workload import load_workload, Scenario, build_graph
>>> g = build_graph(load_workload("mixtral-8x7b"), Scenario(phase="decode", batch=16))
>>> t = lower(g)
>>> len(t), int(t.op_code[t.index["L0.E3.w1"]]) == OP["gemm"]
(1379, True)
>>> lower(g) is t
True
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from ..errors import ConfigError

__all__ = ["OP", "OpTable", "TensorTable", "lower", "tensor_table", "tensor_bits",
           "tensor_storage_bytes", "ROLE_KEYS"]

#: Op type codes of the op table.
OP = {"gemm": 0, "router": 1, "lm_head": 2, "attention": 3, "norm": 4, "elementwise": 5,
      "topk": 6, "dispatch": 7, "combine": 8, "embed": 9}
OP_NAMES = {v: k for k, v in OP.items()}
GEMM_OPS = (OP["gemm"], OP["router"], OP["lm_head"])
VECTOR_OPS = (OP["norm"], OP["elementwise"], OP["topk"], OP["combine"])

#: BitAllocation.defaults keys, in the order of the role codes of the tensor table.
ROLE_KEYS = ("attention", "router", "shared", "dense_ffn", "embeddings")
_ROLE_CODE = {"attention": 0, "router": 1, "shared_gate": 1, "shared": 2, "dense_ffn": 3,
              "embed": 4, "lm_head": 4}
EXPERT_ROLE = -1
VECTOR_ROLE = -2     # norm weights and biases: float16 vectors



class IdentityCache:
    """A cache keyed by object identity that forgets an entry when its object dies (works for
    unhashable objects such as frozen pydantic models)."""

    def __init__(self):
        self._d: dict[int, tuple[weakref.ref, Any]] = {}

    def get(self, obj) -> Any:
        hit = self._d.get(id(obj))
        return hit[1] if hit is not None and hit[0]() is obj else None

    def put(self, obj, value) -> None:
        key = id(obj)
        self._d[key] = (weakref.ref(obj, lambda _r, k=key, d=self._d: d.pop(k, None)), value)


_TENSORS = IdentityCache()
_LOWERED = IdentityCache()


@dataclass(frozen=True, eq=False)
class TensorTable:
    """Every parameter tensor of a model, as arrays (model order).

    ``role_code`` is an index into :data:`ROLE_KEYS`, or ``EXPERT_ROLE`` (routed experts:
    bits from ``expert_bits[moe_row, expert]``) or ``VECTOR_ROLE`` (float16 vectors).
    Matrices have ``out_f x in_f``; vectors ``numel x 1``.
    """

    names: tuple[str, ...]
    index: dict[str, int]
    role_code: np.ndarray
    moe_row: np.ndarray
    expert: np.ndarray
    out_f: np.ndarray
    in_f: np.ndarray
    layer: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


def tensor_table(model) -> TensorTable:
    """The :class:`TensorTable` of ``model`` (cached per model object)."""
    cached = _TENSORS.get(model)
    if cached is not None:
        return cached
    row_of = {layer: r for r, layer in enumerate(model.moe_layers)}
    names, role, row, exp, out_f, in_f, layer = [], [], [], [], [], [], []
    for t in model.tensors():
        names.append(t.name)
        vector = len(t.shape) == 1 or t.role in ("norm", "bias")
        if vector:
            role.append(VECTOR_ROLE)
        elif t.role == "expert":
            role.append(EXPERT_ROLE)
        else:
            role.append(_ROLE_CODE.get(t.role, VECTOR_ROLE))
        row.append(row_of.get(t.layer, -1) if t.role == "expert" else -1)
        exp.append(t.expert if t.role == "expert" else -1)
        if vector:
            out_f.append(t.numel)
            in_f.append(1)
        else:
            out_f.append(t.shape[0])
            in_f.append(t.shape[1])
        layer.append(-1 if t.layer is None else t.layer)
    table = TensorTable(tuple(names), {n: i for i, n in enumerate(names)},
                        np.array(role, np.int64), np.array(row, np.int64),
                        np.array(exp, np.int64), np.array(out_f, np.int64),
                        np.array(in_f, np.int64), np.array(layer, np.int64))
    _TENSORS.put(model, table)
    return table


def tensor_bits(tt: TensorTable, alloc) -> np.ndarray:
    """Weight bits of every tensor under ``alloc`` (vectors: 16)."""
    defaults = np.array([alloc.defaults[k] for k in ROLE_KEYS] + [16], np.int64)
    code = np.where(tt.role_code >= 0, tt.role_code, len(ROLE_KEYS))
    bits = defaults[code]
    ex = tt.role_code == EXPERT_ROLE
    if ex.any():
        bits = bits.copy()
        bits[ex] = alloc.expert_bits[tt.moe_row[ex], tt.expert[ex]]
    return bits


def _ceil_div(a: np.ndarray, b) -> np.ndarray:
    return -(-a // b)


def tensor_storage_bytes(tt: TensorTable, alloc, bits: np.ndarray | None = None) -> np.ndarray:
    """Storage bytes of every tensor: the WeightFormat rule of :mod:`accelsim.precision`
    (dense codes + per-group scales and zero points; 16 bits = plain float16), vectorised."""
    bits = tensor_bits(tt, alloc) if bits is None else bits
    n = tt.out_f * tt.in_f
    if alloc.packing == "pow2":
        code_bits = np.where(bits >= 16, bits,
                             1 << np.ceil(np.log2(np.maximum(bits, 1))).astype(np.int64))
    else:
        code_bits = bits
    codes = _ceil_div(n * code_bits, 8)
    groups_per_row = (np.ones_like(tt.in_f) if alloc.group_size is None
                      else _ceil_div(tt.in_f, alloc.group_size))
    groups = tt.out_f * groups_per_row
    scales = _ceil_div(groups * alloc.scale_bits, 8)
    zeros = np.zeros_like(groups) if alloc.symmetric else np.where(
        bits == 1, 0, _ceil_div(groups * alloc.zero_bits, 8))
    quant = codes + scales + zeros
    out = np.where((bits >= 16) | (tt.role_code == VECTOR_ROLE), 2 * n, quant)
    # a pruned routed expert (0 bits) stores nothing
    return np.where((bits == 0) & (tt.role_code == EXPERT_ROLE), 0, out)


@dataclass(frozen=True, eq=False)
class OpTable:
    """The ops of one graph in topological order, as arrays (one entry per op).

    Fields mirror the node attributes of :mod:`accelsim.workload.graph`; in addition
    ``tensor`` (index into the model's :class:`TensorTable`, -1 for none), ``depth``
    (longest path from a source: ops of equal depth form one schedule phase), ``group``
    (the MoE layer of routed-expert ops, dispatch and combine, else -1); ``phase_order``
    (op indices by depth), ``phase_ptr`` (phase ``p`` is ``phase_order[ptr[p]:ptr[p+1]]``)
    and ``phase_group`` (the MoE layer a phase belongs to, else -1); ``kv_resident``
    (KV-cache elements held for the layer at the end of the step) and the attention op's
    equivalent batched GEMM ``att_m x att_k x att_n`` (see docs/simulator.md).
    """

    names: tuple[str, ...]
    index: dict[str, int]
    op_code: np.ndarray
    layer: np.ndarray
    expert: np.ndarray
    role: tuple[str, ...]
    tensor: np.ndarray
    m: np.ndarray
    k: np.ndarray
    n: np.ndarray
    tokens: np.ndarray
    p_active: np.ndarray
    macs: np.ndarray
    vector_ops: np.ndarray
    in_elems: np.ndarray
    out_elems: np.ndarray
    kv_elems: np.ndarray
    kv_write_elems: np.ndarray
    kv_resident: np.ndarray
    weight_fraction: np.ndarray
    depth: np.ndarray
    group: np.ndarray
    att_m: np.ndarray
    att_k: np.ndarray
    att_n: np.ndarray
    tensor_density: np.ndarray
    phase_order: np.ndarray
    phase_ptr: np.ndarray
    phase_group: np.ndarray
    tokens_step: float
    model: Any
    scenario: dict

    def __len__(self) -> int:
        return len(self.names)


def _fingerprint(g: nx.DiGraph) -> int:
    return g.number_of_nodes()


def lower(graph: nx.DiGraph) -> OpTable:
    """Lower an op graph built by :func:`accelsim.workload.build_graph` (cached per graph).

    Raises
    ------
    ConfigError
        When the graph was not built by ``build_graph`` (no ``model_spec``) or has a cycle.
    """
    hit = _LOWERED.get(graph)
    if hit is not None and hit[0] == _fingerprint(graph):
        return hit[1]
    table = _lower(graph)
    _LOWERED.put(graph, (_fingerprint(graph), table))
    return table


def _lower(g: nx.DiGraph) -> OpTable:
    model = g.graph.get("model_spec")
    if model is None:
        raise ConfigError.single("the graph has no 'model_spec': build it with "
                                 "accelsim.workload.build_graph", key="graph")
    try:
        order = list(nx.topological_sort(g))
    except nx.NetworkXUnfeasible:
        raise ConfigError.single("the op graph has a cycle", key="graph") from None
    tt = tensor_table(model)
    scen = dict(g.graph.get("scenario") or {})
    seqs = float(scen.get("batch", 1))
    a = model.attention
    kvh = 1.0 if a.kind == "mla" else float(model.num_kv_heads)
    depth: dict[str, int] = {}
    n = len(order)
    cols: dict[str, list] = {k: [] for k in (
        "op", "layer", "expert", "role", "tensor", "m", "k", "n", "tokens", "p", "macs",
        "vec", "in", "out", "kv", "kvw", "wf", "depth", "group", "am", "ak", "an")}
    unknown = set()
    for node in order:
        d = g.nodes[node]
        preds = list(g.predecessors(node))
        depth[node] = 1 + max((depth[p] for p in preds), default=-1)
        op = d.get("op")
        if op not in OP:
            unknown.add(op)
            continue
        w = d.get("weight")
        cols["op"].append(OP[op])
        cols["layer"].append(-1 if d.get("layer") is None else d["layer"])
        cols["expert"].append(-1 if d.get("expert") is None else d["expert"])
        cols["role"].append(d.get("role") or "")
        cols["tensor"].append(tt.index.get(w, -1) if w else -1)
        for key, attr in (("m", "m"), ("k", "k"), ("n", "n"), ("tokens", "tokens"),
                          ("p", "p_active"), ("macs", "macs"), ("vec", "vector_ops"),
                          ("in", "in_elems"), ("out", "out_elems"), ("kv", "kv_elems"),
                          ("kvw", "kv_write_elems"), ("wf", "weight_fraction")):
            cols[key].append(float(d.get(attr, 0.0) or 0.0))
        cols["depth"].append(depth[node])
        routed = d.get("expert") is not None or op in ("dispatch", "combine")
        cols["group"].append(cols["layer"][-1] if routed else -1)
        am = ak = an = 0.0
        if op == "attention":
            heads = float(d.get("heads", a.num_heads))
            q_per_seq = float(d.get("q_per_seq", 1.0))
            kv_len = float(d.get("kv_len", 1.0))
            am = max(q_per_seq * heads / kvh, 1.0)
            an = float(np.ceil(2.0 * seqs * kvh * kv_len))
            ak = float(np.ceil(d["macs"] / (am * an))) if d["macs"] > 0 else 0.0
        cols["am"].append(am)
        cols["ak"].append(ak)
        cols["an"].append(an)
    if unknown:
        raise ConfigError.single(f"unknown op type(s) {sorted(map(str, unknown))}; known: "
                                 f"{', '.join(OP)}", key="graph")
    names = tuple(nd for nd in order if g.nodes[nd].get("op") in OP)
    f = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()
         if k not in ("op", "layer", "expert", "role", "tensor", "depth", "group")}
    ints = {k: np.asarray(cols[k], dtype=np.int64) for k in
            ("op", "layer", "expert", "tensor", "depth", "group")}
    # expected reads per byte per step for each tensor (hot-first residency)
    density = np.zeros(len(tt))
    has_t = ints["tensor"] >= 0
    np.add.at(density, ints["tensor"][has_t], (f["p"] * f["wf"])[has_t])
    density[tt.role_code == VECTOR_ROLE] = 1.0
    del n
    porder, pptr, pgroup = phases(ints["depth"], ints["group"])
    return OpTable(
        names=names, index={nm: i for i, nm in enumerate(names)}, op_code=ints["op"],
        layer=ints["layer"], expert=ints["expert"], role=tuple(cols["role"]),
        tensor=ints["tensor"], m=f["m"], k=f["k"], n=f["n"], tokens=f["tokens"],
        p_active=f["p"], macs=f["macs"], vector_ops=f["vec"], in_elems=f["in"],
        out_elems=f["out"], kv_elems=f["kv"], kv_write_elems=f["kvw"],
        kv_resident=np.maximum(f["kv"], f["kvw"]), weight_fraction=f["wf"],
        depth=ints["depth"], group=ints["group"], att_m=f["am"], att_k=f["ak"],
        att_n=f["an"], tensor_density=density, phase_order=porder, phase_ptr=pptr,
        phase_group=pgroup,
        tokens_step=float(g.graph.get("tokens", scen.get("tokens", 1)) or 1),
        model=model, scenario=scen)


def phases(depth: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ops grouped by depth: ``(order, ptr, group per phase)``."""
    order = np.argsort(depth, kind="stable")
    d = depth[order]
    starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]]) if len(d) else np.zeros(0, np.int64)
    ptr = np.r_[starts, len(d)].astype(np.int64)
    pgroup = (np.maximum.reduceat(group[order], starts) if len(d)
              else np.zeros(0, np.int64)).astype(np.int64)
    return order.astype(np.int64), ptr, pgroup
