"""The op graph of one inference step of an MoE model, as a ``networkx.DiGraph``.

Node ids are strings; GEMM nodes that use a weight are named after the weight
(``L3.E5.w1``), other nodes after their layer and op (``L3.attention``, ``L3.topk``).

Node attributes
---------------
op : str
    ``gemm``, ``attention``, ``softmax`` (inside ``attention``: not a separate node),
    ``norm``, ``router`` (the gate GEMM is an op ``router``), ``topk``, ``dispatch``,
    ``combine``, ``elementwise``, ``embed``, ``lm_head``.
layer : int or None
    Global layer index (None for embed, final norm and lm_head).
expert : int or None
    Routed expert index (routed-expert GEMMs and activations).
shared : int or None
    Shared-expert index.
role : str or None
    Role of the weight (expert, shared, attention, router, shared_gate, dense_ffn, embed,
    lm_head).
weight : str or None
    Name of the weight tensor (``MoEModel.tensor(name)``), None for weight-less ops.
m, k, n : float
    GEMM shape: activations ``m x k`` times weights ``k x n``. ``m`` is the *expected*
    number of tokens and may be fractional for routed experts.
tokens : float
    Expected tokens through the op.
p_active : float
    Probability that the op runs in this step (routed experts in small batches); its weights
    are read only then. 1 for every other op.
macs : float
    Expected multiply-accumulates (``m * k * n`` for a GEMM; QK^T and PV for attention).
vector_ops : float
    Expected element operations on the vector unit.
in_elems, out_elems : float
    Activation elements read and written.
kv_elems : float
    Attention only: KV-cache elements read in this step (and ``kv_write_elems`` written).
weight_fraction : float
    Share of the weight tensor the op reads (1 but for ``embed``, which reads one row per
    token).
Edge attributes: ``elems`` (activation elements passed) and ``bytes`` (at 16-bit
activations; the simulator rescales to the allocation's activation bits).

Graph attributes: ``model`` (name), ``model_spec`` (the :class:`MoEModel`), ``moe_layers``
(global layer index of each BitAllocation row), ``scenario`` (dict), ``scenario_spec`` (the
:class:`Scenario` itself), ``tokens``, ``total_macs``, ``weight_params`` (parameters of the
weights the step may touch), ``pruned`` ((MoE layer row, expert) pairs of the pruned
experts) and ``rerouted_selections`` (trace selections of pruned experts moved to survivors).

Pruned experts (``Scenario.pruned``, or 0-bit experts of ``alloc``) get no nodes at all:
the router's top-k is over the survivors, whose expected loads grow
(:meth:`Scenario.expert_load`). :func:`graph_for_allocation` returns the graph an allocation
needs (the same graph, or one rebuilt with the allocation's pruned experts; cached).

Examples
--------
>>> from accelsim.workload import load_workload, Scenario, build_graph
>>> g = build_graph(load_workload("mixtral-8x7b"), Scenario(phase="decode", batch=16))
>>> g.nodes["L0.E3.w1"]["k"], g.nodes["L0.E3.w1"]["n"], g.nodes["L0.E3.w1"]["m"]
(4096, 14336, 4.0)
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

import networkx as nx
import numpy as np

from .model import LayerInfo, MoEModel
from .scenario import Scenario, Trace

__all__ = ["build_graph", "graph_summary", "graph_for_allocation", "OP_TYPES"]

OP_TYPES = ("gemm", "attention", "norm", "router", "topk", "dispatch", "combine",
            "elementwise", "embed", "lm_head")

# Element operations per element on the vector unit (documented in docs/simulator.md).
NORM_OPS = 4          # square-accumulate, rsqrt share, scale, weight
SOFTMAX_OPS = 5       # max, subtract, exp, sum, divide
SWIGLU_OPS = 6        # silu (exp, add, divide, multiply) and the gate multiply
RELU_OPS = 1
GELU_OPS = 8


class _Builder:
    def __init__(self, model: MoEModel, scenario: Scenario):
        self.m, self.s = model, scenario
        self.load = scenario.expert_load(model)
        self.dead = scenario.pruned_mask(model)
        sd = scenario.to_dict()
        if isinstance(scenario.routing, Trace) and scenario.pruned:
            sd["rerouted_selections"] = int(self.load.rerouted)
        self.g = nx.DiGraph(model=model.name, scenario=sd,
                            tokens=scenario.tokens, model_spec=model,
                            moe_layers=tuple(model.moe_layers), scenario_spec=scenario,
                            pruned=scenario.pruned,
                            rerouted_selections=int(self.load.rerouted))
        self.row = {layer: r for r, layer in enumerate(model.moe_layers)}

    def node(self, nid: str, op: str, prev: list[str] | str | None, *, elems: float = 0.0,
             **attrs: Any) -> str:
        base = dict(op=op, layer=None, expert=None, shared=None, role=None, weight=None,
                    m=0.0, k=0, n=0, tokens=0.0, p_active=1.0, macs=0.0, vector_ops=0.0,
                    in_elems=0.0, out_elems=0.0, kv_elems=0.0, kv_write_elems=0.0,
                    weight_fraction=1.0)
        base.update(attrs)
        self.g.add_node(nid, **base)
        for p in [prev] if isinstance(prev, str) else (prev or []):
            e = elems or self.g.nodes[p]["out_elems"]
            self.g.add_edge(p, nid, elems=float(e), bytes=2.0 * float(e))
        return nid

    def gemm(self, weight: str, prev, tokens: float, *, p_active: float = 1.0,
             op: str = "gemm", **extra: Any) -> str:
        t = self.m.tensor(weight)
        n, k = t.shape
        return self.node(weight, op, prev, layer=t.layer, expert=extra.pop("expert", None),
                         shared=extra.pop("shared", None), role=t.role, weight=weight,
                         m=float(tokens), k=k, n=n, tokens=float(tokens), p_active=p_active,
                         macs=float(tokens) * k * n, in_elems=float(tokens) * k,
                         out_elems=float(tokens) * n, **extra)

    def vec(self, nid: str, op: str, prev, tokens: float, width: float, ops_per_elem: float,
            **extra: Any) -> str:
        return self.node(nid, op, prev, tokens=float(tokens),
                         vector_ops=float(tokens) * width * ops_per_elem,
                         in_elems=float(tokens) * width, out_elems=float(tokens) * width,
                         **extra)

    # ------------------------------------------------------------------ blocks
    def attention(self, li: LayerInfo, prev: str, prefix: str, tokens: float, kv_len: float,
                  cross: bool) -> str:
        m, L, a = self.m, li.index, self.m.attention
        heads = a.num_heads
        if a.kind == "mla":
            if a.q_lora_rank:
                qa = self.gemm(f"{prefix}.q_a", prev, tokens)
                qn = self.vec(f"{prefix}.q_a_norm", "norm", qa, tokens, a.q_lora_rank,
                              NORM_OPS, layer=L)
                q = self.gemm(f"{prefix}.q_b", qn, tokens)
            else:
                q = self.gemm(f"{prefix}.q", prev, tokens)
            kva = self.gemm(f"{prefix}.kv_a", prev, tokens)
            kvn = self.vec(f"{prefix}.kv_a_norm", "norm", kva, tokens, a.kv_lora_rank or 0,
                           NORM_OPS, layer=L)
            kvb = self.gemm(f"{prefix}.kv_b", kvn, tokens)
            latent = (a.kv_lora_rank or 0) + (a.qk_rope_head_dim or 0)
            # absorbed decode form: scores against the cached latent (+ rope key), values
            # from the latent; documented simplification (docs/simulator.md)
            qk_width, v_width = latent, a.kv_lora_rank or 0
            kv_width = latent
            out_width = heads * (a.v_head_dim or 0)
            srcs = [q, kvb]
        else:
            hd, kvh = m.head_dim, m.num_kv_heads
            q = self.gemm(f"{prefix}.q", prev, tokens)
            k = self.gemm(f"{prefix}.k", prev, tokens)
            v = self.gemm(f"{prefix}.v", prev, tokens)
            qk_width = v_width = hd
            kv_width = 2 * kvh * hd
            out_width = heads * hd
            srcs = [q, k, v]
        seqs = self.s.batch
        q_per_seq = tokens / seqs
        macs = tokens * kv_len * heads * (qk_width + v_width)
        kv_elems = 0.0 if cross and self.s.phase == "prefill" else seqs * kv_len * kv_width
        kv_write = 0.0 if cross else tokens * kv_width
        att = self.node(f"L{L}.xattn.attention" if cross else f"L{L}.attention",
                        "attention", srcs, layer=L, tokens=float(tokens), macs=float(macs),
                        vector_ops=float(tokens * kv_len * heads * SOFTMAX_OPS),
                        in_elems=float(tokens * (qk_width * heads)),
                        out_elems=float(tokens * out_width), kv_elems=float(kv_elems),
                        kv_write_elems=float(kv_write), heads=heads, q_per_seq=q_per_seq,
                        kv_len=float(kv_len), cross=cross)
        return self.gemm(f"{prefix}.o", att, tokens)

    def ffn(self, prefix: str, prev: str, tokens: float, p_active: float = 1.0,
            **ids: Any) -> str:
        m = self.m
        size = m.tensor(f"{prefix}.w1").shape[0]
        w1 = self.gemm(f"{prefix}.w1", prev, tokens, p_active=p_active, **ids)
        ins = [w1]
        if m.ffn_kind == "swiglu":
            ins.append(self.gemm(f"{prefix}.w3", prev, tokens, p_active=p_active, **ids))
        ops = {"swiglu": SWIGLU_OPS, "relu": RELU_OPS, "gelu": GELU_OPS}[m.ffn_kind]
        act = self.vec(f"{prefix}.act", "elementwise", ins, tokens, size, ops,
                       layer=m.tensor(f"{prefix}.w1").layer, p_active=p_active, **ids)
        return self.gemm(f"{prefix}.w2", act, tokens, p_active=p_active, **ids)

    def moe(self, li: LayerInfo, prev: str, tokens: float) -> str:
        m, L, d = self.m, li.index, self.m.hidden_size
        E, k = m.moe.num_experts, m.moe.top_k
        r = self.gemm(f"L{L}.router", prev, tokens, op="router")
        tk = self.vec(f"L{L}.topk", "topk", r, tokens, E, SOFTMAX_OPS + max(1, E.bit_length()),
                      layer=L)
        disp = self.node(f"L{L}.dispatch", "dispatch", [prev, tk], layer=L,
                         tokens=float(tokens), in_elems=float(tokens * d),
                         out_elems=float(tokens * k * d), elems=float(tokens * d))
        outs = []
        row = self.row[L]
        for e in range(E):
            if self.dead[row, e]:
                continue            # pruned: never selected, no ops
            t = float(self.load.tokens[row, e])
            pa = float(self.load.p_active[row, e])
            outs.append(self.ffn(f"L{L}.E{e}", disp, t, p_active=pa, expert=e))
        for s in range(m.moe.num_shared_experts):
            outs.append(self.ffn(f"L{L}.S{s}", prev, tokens, shared=s))
        if m.moe.shared_expert_gate and m.moe.num_shared_experts:
            outs.append(self.gemm(f"L{L}.S.gate", prev, tokens))
        return self.node(f"L{L}.combine", "combine", outs, layer=L, tokens=float(tokens),
                         vector_ops=float(tokens * (k + m.moe.num_shared_experts) * d * 2),
                         in_elems=float(tokens * k * d), out_elems=float(tokens * d))

    def block(self, li: LayerInfo, prev: str, tokens: float) -> str:
        L, d, s = li.index, self.m.hidden_size, self.s
        self_kv = s.kv_length if li.stack == "decoder" else s.seq_len
        if s.phase == "prefill":
            self_kv = (s.seq_len + 1) / 2.0  # causal: mean keys per query
        if li.stack == "encoder":
            self_kv = s.seq_len
        n1 = self.vec(f"L{L}.attn_norm", "norm", prev, tokens, d, NORM_OPS, layer=L)
        x = self.attention(li, n1, f"L{L}.attn", tokens, self_kv, cross=False)
        if li.cross_attention:
            nx_ = self.vec(f"L{L}.xattn_norm", "norm", x, tokens, d, NORM_OPS, layer=L)
            x = self.attention(li, nx_, f"L{L}.xattn", tokens, s.seq_len, cross=True)
        n2 = self.vec(f"L{L}.ffn_norm", "norm", x, tokens, d, NORM_OPS + 1, layer=L)
        if li.is_moe:
            return self.moe(li, n2, tokens)
        return self.ffn(f"L{L}.ffn", n2, tokens)

    def build(self) -> nx.DiGraph:
        m, s, d = self.m, self.s, self.m.hidden_size
        T = s.tokens
        layers = list(m.layers)
        if m.architecture == "encoder_decoder":
            # prefill runs the encoder over the prompt; decode runs the decoder stack with
            # cross-attention over seq_len encoder outputs
            stack = "encoder" if s.phase == "prefill" else "decoder"
            layers = [li for li in layers if li.stack == stack]
            if s.phase == "decode":
                T = s.batch
        V = m.vocab_size
        x = self.node("embed", "embed", None, role="embed", weight="embed", tokens=float(T),
                      out_elems=float(T * d), weight_fraction=min(1.0, T / V))
        for li in layers:
            x = self.block(li, x, T)
        x = self.vec("final_norm", "norm", x, T, d, NORM_OPS)
        head = "lm_head" if not m.tie_word_embeddings else "embed"
        logits_tokens = float(s.batch)  # prefill: logits of the last prompt token only
        if not (m.architecture == "encoder_decoder" and s.phase == "prefill"):
            t = m.tensor(head)
            n, k = t.shape
            self.node("lm_head", "lm_head", x, role="lm_head", weight=head, m=logits_tokens,
                      k=k, n=n, tokens=logits_tokens, macs=logits_tokens * k * n,
                      in_elems=logits_tokens * k, out_elems=logits_tokens * n)
        g = self.g
        g.graph["total_macs"] = float(sum(a["macs"] for _, a in g.nodes(data=True)))
        weights = {a["weight"] for _, a in g.nodes(data=True) if a["weight"]}
        g.graph["weight_params"] = int(sum(m.tensor(w).numel for w in weights))
        return g


def build_graph(model: MoEModel, scenario: Scenario | None = None, *,
                alloc=None) -> nx.DiGraph:
    """Build the op graph of one step of ``scenario`` (default: decode, batch 1).

    The graph is frozen (``networkx.freeze``; copy it with ``networkx.DiGraph(g)`` to edit
    it) and cached: the same model object with an equal scenario (routing ``uniform`` or
    ``zipf``) returns the same graph, so a loop that rebuilds the graph of an unchanged
    step neither builds nor lowers it again (docs/performance.md).

    ``alloc`` (a :class:`~accelsim.precision.BitAllocation`, optional): its 0-bit (pruned)
    experts are pruned in the graph too, in addition to ``scenario.pruned``.

    Examples
    --------
    >>> import numpy as np
    >>> from accelsim.workload import load_workload
    >>> m = load_workload("mixtral-8x7b")
    >>> mask = np.zeros((32, 8), bool); mask[:, 6:] = True
    >>> g = build_graph(m, Scenario(batch=3, pruned=mask))
    >>> "L0.E6.w1" in g, g.nodes["L0.E0.w1"]["m"]     # 3 tokens x top-2 over 6 experts
    (False, 1.0)
    """
    scenario = scenario or Scenario()
    if alloc is not None:
        scenario = _with_alloc_pruning(model, scenario, alloc)
    try:
        key = (id(model), scenario, hash(scenario))
    except TypeError:          # routing given as arrays (explicit frequencies, a trace)
        return _Builder(model, scenario).build()
    with _BUILT_LOCK:
        hit = _BUILT.get(key)
        if hit is not None and hit[0]() is model:
            _BUILT.move_to_end(key)
            return hit[1]
    g = nx.freeze(_Builder(model, scenario).build())
    with _BUILT_LOCK:
        _BUILT[key] = (weakref.ref(model), g)
        while len(_BUILT) > 16:
            _BUILT.popitem(last=False)
    return g


# graphs by (model object, scenario value): a step rebuilt with an equal scenario gets the
# same (frozen) graph back, and the simulator's lowering of it, cached per graph object
_BUILT: OrderedDict = OrderedDict()
_BUILT_LOCK = threading.Lock()


def _with_alloc_pruning(model, scenario: Scenario, alloc) -> Scenario:
    dead = np.asarray(alloc.expert_bits) == 0
    if not dead.any():
        return scenario
    return scenario.with_pruned(dead | scenario.pruned_mask(model))


_REBUILT: dict[int, tuple[Any, dict]] = {}


def graph_for_allocation(graph: nx.DiGraph, alloc) -> nx.DiGraph:
    """The graph ``alloc`` can run on: ``graph`` itself when every expert ``alloc`` prunes
    (0 bits) is already pruned in it, else ``graph`` rebuilt from its scenario with those
    experts pruned too (cached per graph and pruned set, so repeated simulations lower it
    once).

    Raises
    ------
    ConfigError
        ``alloc`` prunes experts and ``graph`` was not built by :func:`build_graph`.
    """
    bits = np.asarray(alloc.expert_bits)
    if not (bits == 0).any():
        return graph
    want = {(int(r), int(e)) for r, e in np.argwhere(bits == 0)}
    have = set(graph.graph.get("pruned", ()))
    if want <= have:
        return graph
    scenario = graph.graph.get("scenario_spec")
    model = graph.graph.get("model_spec")
    if scenario is None or model is None:
        from ..errors import ConfigError
        raise ConfigError.single("the allocation prunes experts (0 bits) that the graph "
                                 "routes to, and the graph cannot be rebuilt: build it with "
                                 "accelsim.workload.build_graph(model, scenario, alloc=alloc)",
                                 key="graph")
    import weakref
    key = id(graph)
    hit = _REBUILT.get(key)
    if hit is None or hit[0]() is not graph:
        hit = (weakref.ref(graph, lambda _r, k=key: _REBUILT.pop(k, None)), {})
        _REBUILT[key] = hit
    pruned = tuple(sorted(want | have))
    g = hit[1].get(pruned)
    if g is None:
        g = _Builder(model, scenario.with_pruned(pruned)).build()
        if len(hit[1]) >= 4:    # keep the last few pruned sets per source graph
            hit[1].pop(next(iter(hit[1])))
        hit[1][pruned] = g
    return g


def graph_summary(g: nx.DiGraph) -> dict[str, Any]:
    """Counts and totals, with a breakdown by op type (``accelsim workload graph``)."""
    by_op: dict[str, dict[str, float]] = {}
    for _, a in g.nodes(data=True):
        b = by_op.setdefault(a["op"], {"count": 0, "macs": 0.0, "vector_ops": 0.0})
        b["count"] += 1
        b["macs"] += a["macs"]
        b["vector_ops"] += a["vector_ops"]
    return {
        "model": g.graph.get("model"),
        "scenario": g.graph.get("scenario"),
        "nodes": g.number_of_nodes(),
        "edges": g.number_of_edges(),
        "total_macs": g.graph.get("total_macs"),
        "weight_params": g.graph.get("weight_params"),
        "by_op": by_op,
    }
