"""Simulating one step of a model on a system under a parallelism plan.

1. the plan is checked against the model and the system (:mod:`accelsim.system.plan`);
2. the layers are split into ``pp`` contiguous stages of about equal weight bytes;
3. in every stage the routed experts are placed over the ``ep`` devices
   (:mod:`accelsim.system.placement`) and each device gets an
   :class:`accelsim.sim.DevicePart` (its layers, ``tp``, its share of every expert);
4. :func:`accelsim.sim.simulate_parts` simulates the distinct parts once;
5. composition: per layer, the slowest device of the stage plus ``tp`` all-reduces and the
   expert all-to-all (dispatch and combine, from the placement and the routing); stages in
   a pipeline with point-to-point sends between them; micro-batches, bubbles, energy.

The formulas and assumptions are in docs/systems.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import ConfigError, DoesNotFitError
from . import collectives as C
from .load import load_system
from .placement import Placement, place_experts
from .plan import Plan, as_plan, check_plan, split_layers
from .result import SystemResult
from .spec import LEVELS, System

__all__ = ["simulate", "simulate_system", "default_plan", "weight_capacity_bytes",
           "stage_layout", "attention_groups", "host_power_w"]

def _identity_cache():
    from ..sim.lower import IdentityCache
    return IdentityCache()


class _Lazy:
    """An identity cache created on first use (nothing is built at import)."""

    def __init__(self):
        self._c = None

    def get(self, obj):
        return None if self._c is None else self._c.get(obj)

    def put(self, obj, value):
        if self._c is None:
            self._c = _identity_cache()
        self._c.put(obj, value)


_STATS = _Lazy()     # op table -> (expected tokens, activation probability) per expert
_KINDS = _Lazy()     # op table -> kind of every layer (its ops other than routed experts)
_BYTES = _Lazy()     # allocation -> (model, bytes per layer and per expert)

#: Parts per simulate_parts call are bounded by about this many (layer x expert) ops.
_CHUNK_OPS = 60000

#: Roles whose matrices are split tp ways (DevicePart contract); others are replicated.
_TP_ROLES = ("attention", "dense_ffn", "shared", "lm_head")


def _is_system(x) -> bool:
    if isinstance(x, System):
        return True
    if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"):
        from pathlib import Path

        from ..config import read_mapping
        from ..presets import list_presets
        text = str(x)
        if Path(text).is_file():
            try:
                data = read_mapping(text)
            except ConfigError:
                return False
            return "device" in data
        return text in list_presets("system")
    return isinstance(x, dict) and "device" in x


def simulate(hw, graph, alloc=None, plan=None, *, devices: int | None = None, **options):
    """``accelsim.simulate``: a chip (:func:`accelsim.sim.simulate`) or, when ``hw`` is a
    :class:`System` (or a system preset / file) or a ``plan`` or ``devices`` is given, a
    system (:func:`simulate_system`).

    >>> import accelsim
    >>> m = accelsim.load_workload("mixtral-8x7b")
    >>> g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=8))
    >>> a = accelsim.BitAllocation.uniform(m, 4)
    >>> accelsim.simulate("h100", g, a).latency_s == accelsim.simulate(
    ...     accelsim.load_system("h100"), g, a).latency_s
    True
    """
    if plan is not None or devices is not None or _is_system(hw):
        return simulate_system(hw, graph, alloc, plan, devices=devices, **options)
    from ..sim import simulate as chip
    return chip(hw, graph, alloc, **options)


def weight_capacity_bytes(hw) -> float:
    """Bytes of every memory level of ``hw`` that may hold weights."""
    return float(sum(hw.level_capacity(m) for m in hw.memory if "weights" in m.holds))


def default_plan(system: System, model) -> Plan:
    """The plan used when none is given: one device -> the chip; otherwise every device of
    the system: expert parallelism over ``ep`` = the largest divisor of the devices not
    above the routed experts (the largest power of two <= both when the devices are a power
    of two), ``pp`` = the largest divisor of the rest not above the layers, ``dp`` = what
    remains (a dense model: ``ep = 1``).

    >>> from accelsim.workload import load_workload
    >>> str(default_plan(load_system("h100-8").first(6), load_workload("mixtral-8x7b")))
    'pp=1,tp=1,ep=6,dp=1,mb=1'
    """
    from .plan import _divisors
    n, E, L = system.num_devices, model.num_experts, model.total_layers
    if n == 1:
        return Plan()
    ep = max(d for d in _divisors(n) if d <= max(E, 1))
    rest = n // ep
    pp = max(d for d in _divisors(rest) if d <= L)
    return Plan(pp=pp, tp=1, ep=ep, dp=rest // pp)


def _expert_stats(graph, model) -> tuple[np.ndarray, np.ndarray]:
    """Expected tokens and activation probability of every routed expert, [MoE layers,
    experts], from the graph's op table (lowered once per graph by the simulator; the
    figures are kept per op table)."""
    from ..sim.lower import lower
    ot = lower(graph)
    hit = _STATS.get(ot)
    if hit is not None:
        return hit
    out = _expert_stats_of(ot, model)
    _STATS.put(ot, out)
    return out


def _expert_stats_of(ot, model) -> tuple[np.ndarray, np.ndarray]:
    E = model.num_experts
    tok = np.zeros((model.num_moe_layers, E))
    pact = np.zeros((model.num_moe_layers, E))
    row = np.full(model.total_layers + 1, -1)
    row[list(model.moe_layers)] = np.arange(model.num_moe_layers)
    # every op of a routed expert (its matrices, its activation) carries the same figures
    idx = np.flatnonzero((ot.expert >= 0) & (ot.layer >= 0))
    tok[row[ot.layer[idx]], ot.expert[idx]] = ot.tokens[idx]
    pact[row[ot.layer[idx]], ot.expert[idx]] = ot.p_active[idx]
    return tok, pact


def _layer_kinds(graph, model) -> np.ndarray:
    """One integer per layer: layers with the same number of the same ops (kind, shapes,
    work, KV cache) outside the routed experts get the same one. Layers of one kind run
    alike; layers of an encoder and a decoder do not (cross-attention; at decode the
    encoder runs nothing), nor MoE and dense layers."""
    from ..sim.lower import lower
    ot = lower(graph)
    hit = _KINDS.get(ot)
    if hit is not None:
        return hit
    n = model.total_layers
    sel = np.flatnonzero((ot.layer >= 0) & (ot.expert < 0))
    cols = np.stack([ot.layer[sel], ot.op_code[sel], ot.m[sel], ot.k[sel], ot.n[sel],
                     ot.macs[sel], ot.vector_ops[sel], ot.in_elems[sel], ot.out_elems[sel],
                     ot.kv_elems[sel], ot.kv_write_elems[sel], ot.kv_resident[sel],
                     ot.att_m[sel], ot.att_k[sel], ot.att_n[sel]], axis=1).astype(float)
    cols = cols[np.lexsort(cols.T[::-1])]            # by layer, then the ops' figures
    bounds = np.searchsorted(cols[:, 0], np.arange(n + 1))
    seen: dict = {}
    out = np.zeros(n, dtype=np.int64)
    for L in range(n):
        out[L] = seen.setdefault(cols[bounds[L]:bounds[L + 1], 1:].tobytes(), len(seen))
    out.setflags(write=False)
    _KINDS.put(ot, out)
    return out


def _tensor_bytes(model, alloc):
    """:func:`_tensor_bytes_of`, kept per allocation object (allocations are immutable)."""
    hit = _BYTES.get(alloc)
    if hit is not None and hit[0] is model:
        return hit[1]
    out = _tensor_bytes_of(model, alloc)
    _BYTES.put(alloc, (model, out))
    return out


def _tensor_bytes_of(model, alloc):
    """Per layer: non-expert bytes split tp ways, replicated, and k/v (split min(tp, kv
    heads) ways); routed-expert bytes [MoE layers, experts]; embed, lm_head and the final
    norms' bytes. Storage bytes from the simulator's vectorised rule (the same numbers
    :meth:`BitAllocation.tensor_bytes` gives)."""
    from ..sim.lower import EXPERT_ROLE, tensor_storage_bytes, tensor_table
    tt = tensor_table(model)
    nbytes = tensor_storage_bytes(tt, alloc).astype(float)
    n = model.total_layers
    split, repl, kv_split = np.zeros(n), np.zeros(n), np.zeros(n)
    embed = lm_head = tail = 0.0
    for i in np.flatnonzero(tt.role_code != EXPERT_ROLE):
        b, L, code, name = float(nbytes[i]), int(tt.layer[i]), int(tt.role_code[i]), tt.names[i]
        if L < 0:
            if name == "embed":
                embed += b
            elif name == "lm_head":
                lm_head += b
            else:
                tail += b
        elif code == 0 and name.endswith((".k", ".v")):
            kv_split[L] += b
        elif code == 0 and name.endswith((".q_a", ".kv_a")):
            repl[L] += b                # MLA's shared low-rank projections
        elif code in (0, 2, 3):         # attention, shared experts, dense FFN
            split[L] += b
        else:                           # router, shared-expert gate, norms, biases
            repl[L] += b
    ex = np.flatnonzero(tt.role_code == EXPERT_ROLE)
    expert = np.zeros((model.num_moe_layers, model.num_experts))
    np.add.at(expert, (tt.moe_row[ex], tt.expert[ex]), nbytes[ex])
    return split, repl, kv_split, expert, embed, lm_head, tail


def stage_layout(plan: Plan, replica: int, stage: int) -> list[int]:
    """Device indices of one stage's group (devices are numbered replica, stage, member)."""
    w = plan.group
    first = (replica * plan.pp + stage) * w
    return list(range(first, first + w))


def attention_groups(plan: Plan, seqs: float) -> np.ndarray:
    """Sequences of one micro-batch per attention group of a stage.

    A stage's ``w = max(tp, ep x etp)`` devices form ``w / tp`` attention groups of ``tp``
    consecutive devices; each runs attention (and everything else but the routed experts)
    for its own sequences, split as evenly as whole sequences allow (the first ``B mod g``
    groups one more), as data-parallel attention beside expert parallelism does. With
    ``ep x etp <= tp`` there is one group holding the whole micro-batch.

    >>> attention_groups(Plan(tp=2, ep=8), 7).tolist()     # 4 groups of 2 devices
    [2, 2, 2, 1]
    >>> attention_groups(Plan(tp=4, ep=2), 7).tolist()
    [7]
    """
    g = max(1, plan.group // plan.tp)
    B = max(int(round(float(seqs))), 1)
    n = np.full(g, B // g, dtype=np.int64)
    n[:B % g] += 1
    return n


def _act_bytes(hw, alloc) -> float:
    bits = getattr(alloc, "activation_bits", None) or hw.cores.mac_array.default_activation_bits
    return bits / 8.0


def simulate_system(system, graph, alloc=None, plan=None, *, devices: int | None = None,
                    residency: str = "hot-first", dataflow: str | None = None,
                    staging_fraction: float = 0.25, full_pipeline: bool = False,
                    cache: dict | None = None) -> SystemResult:
    """Simulate one step of ``graph`` on ``system`` under ``plan``.

    Parameters
    ----------
    system : System or str
        A system (or a system / chip preset name or path).
    graph : networkx.DiGraph
        From :func:`accelsim.workload.build_graph`: one micro-batch.
    alloc : BitAllocation, optional
        Default: every weight at 16 bits.
    plan : Plan or str, optional
        ``"pp=4,tp=2,ep=8"``; default :func:`default_plan`.
    devices : int, optional
        Use the first ``devices`` devices of the system.
    cache : dict, optional
        Part results keyed by part (lets a plan search reuse them).

    Returns
    -------
    SystemResult

    Examples
    --------
    >>> import accelsim
    >>> m = accelsim.load_workload("mixtral-8x7b")
    >>> g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=8))
    >>> a = accelsim.BitAllocation.uniform(m, 4)
    >>> r = simulate_system("h100-8", g, a, "tp=2,ep=8")
    >>> r.devices, r.plan, len(r.per_device)
    (8, 'pp=1,tp=2,ep=8,dp=1,mb=1', 8)
    """
    from ..precision import BitAllocation
    system = load_system(system)
    if devices is not None:
        system = system.first(devices)
    model = graph.graph.get("model_spec")
    if model is None:
        raise ConfigError.single("the graph has no 'model_spec': build it with "
                                 "accelsim.workload.build_graph", key="graph")
    plan = as_plan(plan) if plan is not None else default_plan(system, model)
    if model.num_experts == 0 and plan.ep is None:
        # a dense model has no expert parallelism: ep=1, not the default ep=tp, so that the
        # plan printed ("tp=4,ep=1") is one check_plan accepts when given back
        plan = replace(plan, ep=1)
    check_plan(plan, model, system.num_devices, system.name)
    if plan.devices == 1 and plan.microbatches == 1:
        return _single(system, graph, alloc, plan, residency, dataflow, staging_fraction,
                       full_pipeline)
    acct = alloc if alloc is not None else BitAllocation.uniform(model, 16)
    return _compose(system, graph, model, alloc, acct, plan, cache,
                    dict(residency=residency, dataflow=dataflow,
                         staging_fraction=staging_fraction, full_pipeline=full_pipeline))


def _single(system, graph, alloc, plan, residency, dataflow, staging_fraction,
            full_pipeline) -> SystemResult:
    """One device: exactly the chip simulation, with the system keys added."""
    from ..sim import simulate
    r = simulate(system.hw, graph, alloc, residency=residency, dataflow=dataflow,
                 staging_fraction=staging_fraction, full_pipeline=full_pipeline)
    fields = {k: getattr(r, k) for k in r.__dataclass_fields__}
    if system.host_power_w > 0:         # the node's host draws its power for the step
        host_j = host_power_w(system, 1) * float(r.latency_s)
        fields["energy_j"] = float(r.energy_j) + host_j
        fields["energy_breakdown_j"] = {**r.energy_breakdown_j, "host": host_j}
    mem = float(sum(r.weight_bytes_by_level.values()) + sum(r.kv_bytes_by_level.values()))
    model = graph.graph["model_spec"]
    n_exp, e_bytes, e_load = 0, 0.0, 0.0
    if model.num_experts and model.num_moe_layers:
        # the device holds every routed expert: the figures a placement over ep=1 gives
        from ..precision import BitAllocation
        acct = alloc if alloc is not None else BitAllocation.uniform(model, 16)
        expert = _tensor_bytes(model, acct)[3]
        n_exp, e_bytes = int(expert.size), float(expert.sum())
        e_load = float(_expert_stats(graph, model)[0].sum())
    dev = {"device": 0, "node": 0, "replica": 0, "stage": 0,
           "layers": [0, model.total_layers], "experts": n_exp,
           "memory_bytes": mem, "expert_bytes": e_bytes, "expected_load": e_load,
           "latency_s": float(r.latency_s), "busy_fraction": 1.0,
           "utilization": float(r.mac_utilization), "energy_j": float(r.energy_j),
           "bound": r.bound,
           "sequences": int((graph.graph.get("scenario") or {}).get("batch", 1))}
    return SystemResult(**fields, devices=1, plan=str(plan), per_device=(dev,),
                        per_link=tuple({"level": lv, "bytes": 0.0, "time_s": 0.0,
                                        "energy_j": 0.0} for lv in LEVELS),
                        energy_per_token_j=float(fields["energy_j"]) / max(float(r.tokens),
                                                                           1e-300),
                        pipeline={"stages": [[0, dev["layers"][1]]],
                                  "stage_s": [float(r.latency_s)],
                                  "compute_s": [float(r.latency_s)], "p2p_s": [],
                                  "fill_s": float(r.latency_s),
                                  "bottleneck_s": float(r.latency_s), "microbatches": 1,
                                  "period_s": float(r.latency_s), "expert_imbalance": 1.0,
                                  "overlap": [False]},
                        parts=((0, r),))


def _part_key(part, graph, alloc, opts) -> tuple:
    share = part.expert_share
    return (id(graph), id(alloc), part.layers, part.tp,
            None if share is None else share.tobytes(), part.embed, part.lm_head,
            part.expert_tp, part.batch_share, tuple(sorted(opts.items())))


def _equivalence_key(part, stats, graph, alloc, opts, sigs: dict | None = None) -> tuple:
    """Parts whose layers hold, one by one, the same kind of layer (dense or MoE, same
    non-expert bits) and experts with the same bits, expected tokens, activation
    probability and share run the same ops: only the names of layers and experts differ.
    They are simulated once; the key lists those figures per layer, sorted within a layer,
    and whether the part holds the embedding and the lm_head (not where its layers sit).
    ``sigs``: the figures kept per (share matrix, layers) while the share matrices live."""
    share = part.expert_share
    if share is None or stats is None:
        return _part_key(part, graph, alloc, opts)
    bits, tok, pact, moe_row = stats[:4]
    kinds = stats[4] if len(stats) > 4 else moe_row[:-1] >= 0
    a, b = part.layers
    skey = (id(share), a, b)
    hit = sigs.get(skey) if sigs is not None else None
    if hit is None:
        rows_in = moe_row[a:b]
        rows_in = rows_in[rows_in >= 0]
        sub = share[rows_in] if len(rows_in) else share[:0]
        r, e = np.nonzero(sub != 0)
        rr = rows_in[r]
        cols = (bits[rr, e], tok[rr, e], pact[rr, e], sub[r, e])
        order = _group_order(r, _figure_hash(cols))   # by layer, then the experts' figures
        hit = (np.bincount(r, minlength=len(rows_in)).tobytes(),
               np.stack([c[order] for c in cols], axis=1).tobytes())
        if sigs is not None:
            sigs[skey] = hit
    counts, sig = hit
    n = len(moe_row) - 1
    first = part.embed if part.embed is not None else a == 0
    last = part.lm_head if part.lm_head is not None else b == n
    return (id(graph), id(alloc), b - a, (moe_row[a:b] >= 0).tobytes(),
            np.asarray(kinds[a:b]).tobytes(), part.tp, counts, sig,
            bool(first), bool(last), part.expert_tp, part.batch_share,
            tuple(sorted(opts.items())))


def _figure_hash(cols) -> np.ndarray:
    """Per expert, a hash of its figures (bits, tokens, probability, share): a canonical
    order of the experts of a layer (the key holds the figures themselves, so two experts
    with equal hashes but other figures -- or an order among equal keys that differs --
    can only keep two equal parts apart, never make two different ones equal)."""
    from ..sim.stages import _row_hash
    return _row_hash(np.column_stack([np.asarray(c, dtype=np.float64) for c in cols]))


def _group_order(g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The order of entries by group ``g`` (ascending), then by hash ``h`` inside a group:
    one sort of a 64-bit key (the group in the high bits, the hash's top bits below)."""
    if not len(g):
        return np.zeros(0, np.int64)
    gb = max(int(g.max()).bit_length(), 1)
    if gb > 40:
        return np.lexsort((h, g))
    key = (g.astype(np.uint64) << np.uint64(64 - gb)) | (h >> np.uint64(gb))
    return np.argsort(key)


def _equivalence_keys(parts, stats, graph, alloc, opts) -> list:
    """``[_equivalence_key(p, stats, graph, alloc, opts) for p in parts]``, the signatures
    of the parts on one layer range worked out together (one ``nonzero`` and one sort for
    all of them: the same keys)."""
    sigs: dict = {}
    if stats is not None:
        bits, tok, pact, moe_row = stats[:4]
        groups: dict = {}
        for p in parts:
            share = p.expert_share
            if share is not None:
                groups.setdefault(p.layers, {}).setdefault(id(share), share)
        for (a, b), shares in groups.items():
            if len(shares) < 2:
                continue
            rows_in = moe_row[a:b]
            rows_in = rows_in[rows_in >= 0]
            ids = list(shares)
            whole = len(rows_in) == len(shares[ids[0]]) and np.array_equal(
                rows_in, np.arange(len(rows_in)))
            qs, rs_, es, vs = [], [], [], []
            for j, i in enumerate(ids):       # each part's held experts (no stacked copy)
                sub = shares[i] if whole else shares[i][rows_in]
                r1, e1 = np.nonzero(sub != 0)
                qs.append(np.full(len(r1), j, np.int64))
                rs_.append(r1)
                es.append(e1)
                vs.append(sub[r1, e1])
            q, r, e = np.concatenate(qs), np.concatenate(rs_), np.concatenate(es)
            rr = rows_in[r]
            cols = (bits[rr, e], tok[rr, e], pact[rr, e], np.concatenate(vs))
            nr = len(rows_in)
            # by part and layer, then the experts' figures (as _equivalence_key orders them)
            order = _group_order(q * nr + r, _figure_hash(cols))
            sig = np.stack([c[order] for c in cols], axis=1)
            bounds = np.searchsorted(q[order], np.arange(len(ids) + 1))
            counts = np.bincount(q * nr + r, minlength=len(ids) * nr).reshape(len(ids), nr)
            for j, i in enumerate(ids):
                sigs[(i, a, b)] = (counts[j].tobytes(),
                                   np.ascontiguousarray(sig[bounds[j]:bounds[j + 1]]).tobytes())
    return [_equivalence_key(p, stats, graph, alloc, opts, sigs) for p in parts]


def _shifted(res, src: tuple, dst: tuple):
    """``res`` of a part on layers ``src`` as the result of the equivalent part on ``dst``:
    its per-layer latencies moved to ``dst``'s layers."""
    if src == dst or getattr(res, "layer_latency_s", None) is None:
        return res
    from dataclasses import replace as _replace
    lat = np.zeros_like(res.layer_latency_s)
    lat[0], lat[-1] = res.layer_latency_s[0], res.layer_latency_s[-1]
    lat[dst[0] + 1:dst[1] + 1] = res.layer_latency_s[src[0] + 1:src[1] + 1]
    try:
        return _replace(res, layer_latency_s=lat)
    except TypeError:                      # not a dataclass (a test stub)
        import copy
        out = copy.copy(res)
        out.layer_latency_s = lat
        return out


def _run_parts(system, graph, alloc, parts, opts, cache, stats=None, keys=None,
               aligned: bool = True):
    """Results of ``parts`` (each distinct equivalence class simulated once, through
    ``cache``). ``aligned``: results moved to each part's own layers; else ``(result,
    layers it was simulated on)`` pairs (what :func:`compose` takes, cheaper)."""
    from ..sim import simulate_parts
    cache = {} if cache is None else cache
    if keys is None:
        keys = _equivalence_keys(parts, stats, graph, alloc, opts)
    todo, seen, idle = [], set(), []
    for k, p in zip(keys, parts):
        if k not in cache and k not in seen:
            seen.add(k)
            if _runs_nothing(p, graph):
                # a group without sequences on layers where it holds no expert: nothing
                # runs; its memory is that of the same part with sequences
                busy = replace(p, batch_share=1.0)
                bk = _equivalence_key(busy, stats, graph, alloc, opts)
                idle.append((k, bk))
                if bk not in cache and bk not in seen:
                    seen.add(bk)
                    todo.append((bk, busy))
                continue
            todo.append((k, p))
    # one simulate_parts call per chunk of parts (its GEMM table grows with the experts of
    # all parts at once: bounded so that a plan search stays within memory)
    chunk: list = []
    size = 0
    for i, (k, p) in enumerate(todo):
        share = p.expert_share
        size += (p.layers[1] - p.layers[0]) * (16 + (int(np.count_nonzero(share)) // max(
            1, share.shape[0]) if share is not None else 64))
        chunk.append((k, p))
        if size >= _CHUNK_OPS or i == len(todo) - 1:
            out = simulate_parts(system.hw, graph, alloc, [q for _, q in chunk], **opts)
            for (kk, q), r in zip(chunk, out):
                cache[kk] = (r, q.layers)
            chunk, size = [], 0
    for k, bk in idle:
        r, lay = cache[bk]
        cache[k] = (_nothing_runs(r), lay)
    if not aligned:
        return [cache[k] for k in keys]
    return [_shifted(cache[k][0], cache[k][1], p.layers) for k, p in zip(keys, parts)]


def _runs_nothing(part, graph) -> bool:
    """A part of an attention group without sequences (``batch_share`` 0) whose layers
    hold no share of any routed expert: no op of the step runs on it."""
    if getattr(part, "batch_share", 1.0) != 0.0:
        return False
    model = graph.graph["model_spec"]
    a, b = part.layers
    rows = [r for r, L in enumerate(model.moe_layers) if a <= L < b]
    if not rows:
        return True
    share = part.expert_share
    return share is not None and not bool((np.asarray(share)[rows] > 0).any())


def _nothing_runs(res):
    """``res`` with no time, work, energy, traffic or KV cache: the weights it holds stay."""
    zero = dict.fromkeys(("cycles", "latency_s", "tokens_per_s", "energy_j", "offchip_bytes",
                          "onchip_bytes_moved", "macs", "mac_utilization", "compute_cycles",
                          "stall_cycles", "vector_cycles", "noc_cycles"), 0.0)
    zero.update({k: dict.fromkeys(getattr(res, k), 0.0) for k in (
        "energy_breakdown_j", "kv_bytes_by_level", "bytes_by_level", "busy_cycles")})
    zero["layer_latency_s"] = np.zeros_like(np.asarray(res.layer_latency_s, dtype=float))
    try:
        return replace(res, **zero, op_data={}, phase_data={})
    except TypeError:                      # not a dataclass (a test stub)
        import copy
        out = copy.copy(res)
        for k, v in zero.items():
            setattr(out, k, v)
        return out


def kv_bytes_per_layer(graph, model, acct) -> np.ndarray:
    """KV-cache bytes each layer holds at the end of one step for the whole micro-batch
    (its attention op's resident KV elements x the allocation's KV bytes)."""
    from ..sim.lower import OP, lower
    ot = lower(graph)
    att = np.flatnonzero((ot.op_code == OP["attention"]) & (ot.layer >= 0))
    out = np.zeros(model.total_layers)
    np.add.at(out, ot.layer[att], ot.kv_resident[att])
    return out * (float(acct.kv_bits) / 8.0)


def _placements(system, model, acct, plan, stages, tokens, tb, memo=None, groups=None,
                kv=None):
    """One placement per stage, and the device parts of replica 0, stage by stage
    (``groups``: sequences per attention group, :func:`attention_groups`; ``kv``: KV-cache
    bytes per layer for the micro-batch, :func:`kv_bytes_per_layer`)."""
    from ..sim import DevicePart
    split, repl, kv_split, expert, embed, lm_head, tail = tb
    tp, ep, w, etp = plan.tp, plan.experts, plan.group, plan.etp
    copies = w // (ep * etp)        # placements per stage (copies split the tokens)
    kv_div = min(tp, model.num_kv_heads) if model.attention.kind == "gqa" else tp
    cap = weight_capacity_bytes(system.hw)
    row = {L: r for r, L in enumerate(model.moe_layers)}
    R, E = expert.shape
    placements, parts = [], []
    last = len(stages) - 1
    bshare = [1.0] * w
    if groups is not None and len(groups) > 1:
        B = float(groups.sum())
        bshare = [float(groups[g // tp]) / B for g in range(w)]
    # what any memory level may hold of weights and KV cache together (a necessary bound)
    room = float(sum(system.hw.level_capacity(m) for m in system.hw.memory
                     if {"weights", "kv"} & set(m.holds)))
    kv_heads = 1 if model.attention.kind == "mla" else min(tp, int(model.num_kv_heads))
    for s, (a, b) in enumerate(stages):
        # the embedding table is split by vocabulary like lm_head; a tied table is held by
        # the first and the last stage
        head = lm_head + (embed if model.tie_word_embeddings and s != 0 else 0.0)
        fixed = (split[a:b].sum() / tp + kv_split[a:b].sum() / kv_div + repl[a:b].sum()
                 + (embed / tp if s == 0 else 0.0) + ((head / tp + tail) if s == last else 0.0))
        rows = [row[L] for L in range(a, b) if L in row]
        if fixed > cap:
            raise DoesNotFitError(
                f"stage {s} (layers {a}..{b - 1}) of {plan}: its weights other than the "
                f"routed experts ({fixed:.4g} B per device) exceed the {cap:.4g} B a "
                f"{system.hw.name} holds for weights")
        kv_dev = 0.0 if kv is None else float(kv[a:b].sum()) * max(bshare) / kv_heads
        if kv_dev > 0 and fixed + kv_dev > room:
            raise DoesNotFitError(
                f"stage {s} (layers {a}..{b - 1}) of {plan}: its weights other than the "
                f"routed experts ({fixed:.4g} B per device) and the KV cache of "
                f"{max(bshare):.3g} of the micro-batch ({kv_dev:.4g} B) exceed the "
                f"{room:.4g} B of a {system.hw.name}")
        if rows and expert[rows].sum() / (ep * etp) + fixed > cap:
            # some device holds at least the mean share of the experts
            raise DoesNotFitError(
                f"stage {s} (layers {a}..{b - 1}) of {plan}: the routed experts need "
                f"{expert[rows].sum() / (ep * etp):.4g} B per device on average, "
                f"{cap - fixed:.4g} B "
                f"are left on a {system.hw.name}")
        if rows:
            pkey = ("placement", tuple(rows), ep, etp, fixed, plan.rep)
            pl = memo.get(pkey) if memo is not None else None
            # a placement where memory never bound holds for any capacity down to its slack
            # (plans that differ in tp leave the experts different room)
            loose = ("loose placement", tuple(rows), ep, etp, plan.rep)
            if pl is None and memo is not None and loose in memo:
                room, prev = memo[loose]
                if cap - fixed >= room - prev.slack:
                    pl = prev
            if pl is None:
                lm = memo.setdefault("layer placements", {}) if memo is not None else None
                # an expert slot of etp devices: each holds 1/etp of every expert of the slot
                pl = place_experts(expert[rows] / etp, tokens[rows], ep,
                                   np.full(ep, cap - fixed),
                                   replicate=plan.rep, what=system.hw.name, layer_memo=lm)
                if memo is not None:
                    memo[pkey] = pl
                    if pl.slack >= 0 and (loose not in memo
                                          or pl.slack > memo[loose][1].slack):
                        memo[loose] = (cap - fixed, pl)
        else:
            pl = Placement(np.zeros((ep, 0, E)), np.zeros(ep), np.zeros(ep), np.zeros((ep, 0)))
        placements.append((pl, rows, fixed))
        stage_parts = []
        for g in range(w):
            slot = (g // etp) % ep
            share = None
            if R:
                skey = ("share", id(pl), slot, copies, tuple(rows))
                share = memo.get(skey) if memo is not None else None
                if share is None:
                    share = np.zeros((R, E))
                    if rows:
                        share[rows] = pl.share[slot] / copies
                    share.setflags(write=False)
                    if memo is not None:
                        memo[skey] = share
                        memo[("keep", id(pl))] = pl      # keeps id(pl) unique
            stage_parts.append(DevicePart(layers=(a, b), tp=tp, expert_share=share,
                                          expert_tp=etp, batch_share=bshare[g]))
        parts.append(stage_parts)
    return placements, parts


def _concurrent(system, kind, groups, nbytes) -> C.Cost:
    """One collective ``kind`` in each of ``groups`` at once, ``nbytes[i]`` per device in
    group ``i``: the slowest group's time, every group's bytes and energy (groups with
    equal bytes and layout cost alike: each is computed once)."""
    worst, byl, energy, seen = None, {}, 0.0, {}
    for grp, nb in zip(groups, nbytes):
        k = (tuple(system.node_of(x) for x in grp), float(nb))
        c = seen.get(k)
        if c is None:
            c = seen[k] = getattr(C, kind)(system, grp, nb)
        if worst is None or c.time_s > worst.time_s:
            worst = c
        for lv, v in c.bytes_by_level.items():
            byl[lv] = byl.get(lv, 0.0) + v
        energy += c.energy_j
    if worst is None:
        return C.Cost()
    return replace(worst, bytes_by_level=byl, energy_j=energy)


def _stage_comm(system, model, plan, devs, a, b, rows, pl, tokens, T, ab, first_last, seqs,
                memo, groups=None, per_layer: np.ndarray | None = None):
    """Communication of one stage for one micro-batch: (time, Cost). ``groups``: sequences
    per attention group (:func:`attention_groups`; None: one group, the whole batch).
    ``per_layer`` (length layers + 2, as ``SimResult.layer_latency_s``): each layer's
    communication time is added at its index (the embedding's all-reduce at 0, the logits'
    gather at the end)."""
    tp, ep, w = plan.tp, plan.experts, plan.group
    d = model.hidden_size
    total = C.Cost()
    moe = set(model.moe_layers)
    layout = tuple(system.node_of(x) for x in devs)
    layout = (tuple(x - layout[0] for x in layout), devs[0] % system.devices_per_node)
    ng = w // tp
    if groups is None or len(groups) != ng:
        groups = np.full(ng, 1.0)
    frac = np.asarray(groups, dtype=float) / float(np.sum(groups))   # each group's tokens
    if tp > 1:
        tp_groups = [devs[i:i + tp] for i in range(0, w, tp)]
        akey = ("all_reduce", layout, tp, T * d * ab, frac.tobytes())
        if akey not in memo:
            # every group all-reduces its own tokens' activations, all groups at once
            memo[akey] = _concurrent(system, "all_reduce", tp_groups, T * d * ab * frac)
        ar = memo[akey]
        n_ar = 1 if first_last[0] else 0    # the vocabulary-parallel embedding
        if per_layer is not None and first_last[0]:
            per_layer[0] += ar.time_s
        for L in range(a, b):
            k = 1 if L in moe and not (model.moe is not None
                                       and model.moe.num_shared_experts) else 2
            n_ar += k
            if per_layer is not None:
                per_layer[L + 1] += k * ar.time_s
        total = total + ar.scaled(n_ar)
        if first_last[1]:   # lm_head split by vocabulary: gather the logits
            gather = _concurrent(system, "all_gather", tp_groups,
                                 seqs * model.vocab_size * ab * frac)
            total = total + gather
            if per_layer is not None:
                per_layer[-1] += gather.time_s
    if w > 1 and rows:
        # [ep slot, layer]; slot by slot (the same sums without a slots x layers x experts
        # temporary, whose fresh pages cost more than the products on this VM)
        tok_rows = tokens[rows]
        loads = np.stack([(pl.share[j] * tok_rows).sum(axis=1)
                          for j in range(pl.share.shape[0])])
        # every device of an expert slot gets all of the slot's tokens (its slice of every
        # expert needs them) and returns a partial output the receiver adds up
        copies = w // (ep * plan.etp)
        per = np.ascontiguousarray(loads[(np.arange(w) // plan.etp) % ep, :].T / copies)
        alike: dict = {}                    # layers with the same loads: costed once
        for j in range(len(rows)):
            alike.setdefault(per[j].tobytes(), []).append(j)
        fkey = frac.tobytes()
        new = [pkey for pkey in alike if ("all_to_all", layout, pkey, fkey) not in memo]
        if new:     # every layer's exchange not yet costed, all at once
            per_new = per[[alike[pkey][0] for pkey in new]]              # [exchange, dev]
            if (frac == frac[0]).all():   # every device sends 1/w of the tokens
                ms = np.repeat((per_new * d * ab / w)[:, None, :], w, axis=1)
            else:   # device i: its group's share of the tokens over the tp devices
                send = np.repeat(frac / tp, tp)
                ms = send[None, :, None] * (per_new * d * ab)[:, None, :]
            ms[:, np.arange(w), np.arange(w)] = 0.0
            there = C.all_to_all_many(system, devs, ms)
            back = C.all_to_all_many(system, devs, ms.transpose(0, 2, 1))
            for pkey, c1, c2 in zip(new, there, back):
                memo[("all_to_all", layout, pkey, fkey)] = c1 + c2
        for pkey, js in alike.items():
            key = ("all_to_all", layout, pkey, fkey)
            total = total + memo[key].scaled(float(len(js)))
            if per_layer is not None:
                per_layer[np.asarray(model.moe_layers)[np.asarray(rows)[js]] + 1] += \
                    memo[key].time_s
    return total


@dataclass
class Prepared:
    """A plan laid out on a system, before the device parts are simulated."""

    system: System
    graph: Any
    model: Any
    alloc: Any
    plan: Plan
    stages: list
    placements: list
    parts: list            # replica 0's parts, stage by stage (pp x w)
    T: float
    ab: float
    seqs: float
    tokens: np.ndarray
    stats: tuple = ()
    groups: np.ndarray | None = None    # sequences per attention group


    def all_parts(self) -> list:
        return [p for sp in self.parts for p in sp]


def _bytes_cached(model, acct, memo):
    key = (id(model), id(acct))
    if memo is None:
        return _tensor_bytes(model, acct)
    if key not in memo:
        memo[key] = _tensor_bytes(model, acct)
    return memo[key]


def prepare(system, graph, model, alloc, acct, plan, memo: dict | None = None) -> Prepared:
    """Stages, expert placement and device parts of ``plan`` (raises
    :class:`~accelsim.errors.DoesNotFitError` when the placement finds no room)."""
    T = float(graph.graph.get("tokens", 1.0))
    ab = _act_bytes(system.hw, acct)
    tkey = ("tokens", id(graph))
    if memo is not None and tkey in memo:
        tokens, pact = memo[tkey]
    else:
        tokens, pact = _expert_stats(graph, model)
        if memo is not None:
            memo[tkey] = (tokens, pact)
    seqs = float((graph.graph.get("scenario") or {}).get("batch", 1))
    tb = _bytes_cached(model, acct, memo)
    split, repl, kv_split, expert = tb[0], tb[1], tb[2], tb[3]
    per_layer = split + repl + kv_split + np.bincount(
        np.asarray(model.moe_layers, dtype=np.int64), weights=expert.sum(axis=1),
        minlength=model.total_layers)
    stages = split_layers(per_layer, plan.pp)
    groups = attention_groups(plan, seqs)
    kkey = ("kv bytes", id(graph), id(acct))
    if memo is not None and kkey in memo:
        kv = memo[kkey]
    else:
        kv = kv_bytes_per_layer(graph, model, acct)
        if memo is not None:
            memo[kkey] = kv
    placements, parts = _placements(system, model, acct, plan, stages, tokens, tb, memo,
                                    groups, kv)
    moe_row = np.full(model.total_layers + 1, -1)
    moe_row[list(model.moe_layers)] = np.arange(model.num_moe_layers)
    lkey = ("layer kinds", id(graph))
    if memo is not None and lkey in memo:
        kinds = memo[lkey]
    else:
        kinds = _layer_kinds(graph, model)
        if memo is not None:
            memo[lkey] = kinds
    return Prepared(system, graph, model, alloc, plan, stages, placements, parts, T, ab,
                    seqs, tokens, (np.asarray(acct.expert_bits, dtype=float), tokens, pact,
                                   moe_row, kinds), groups)


def _compose(system, graph, model, alloc, acct, plan, cache, opts) -> SystemResult:
    memo: dict = {}
    prep = prepare(system, graph, model, alloc, acct, plan, memo)
    whole = _run_parts(system, graph, alloc, prep.all_parts(), opts, cache, prep.stats,
                       aligned=False)
    halves = None
    if plan.tbo:
        halves = _run_parts(system, graph, alloc, half_parts(prep, memo), opts, cache,
                            prep.stats, aligned=False)
    return compose(prep, whole, memo, halves=halves)


def half_parts(prep: "Prepared", memo: dict) -> list:
    """The device parts of half a micro-batch (two-batch overlap): half the sequences of
    every attention group (``batch_share / 2``) and half of every expert's tokens
    (``expert_share / 2``: each token lands in either half). ``memo`` keeps the halved
    share matrices (and so their ids) alive."""
    out = []
    for p in prep.all_parts():
        share = p.expert_share
        if share is not None:
            k = ("half share", id(share))
            if k not in memo:
                h = np.asarray(share, dtype=float) / 2.0
                h.setflags(write=False)
                memo[k] = (share, h)
            share = memo[k][1]
        out.append(replace(p, batch_share=p.batch_share / 2.0, expert_share=share))
    return out


def two_batch_overlap(c: np.ndarray, x: np.ndarray) -> float:
    """Time of two half micro-batches through a stage whose ops alternate computation
    ``c[i]`` and communication ``x[i]`` (per half, entry by entry: the embedding, each layer,
    the tail). The device computes one half while the links carry the other's
    communication: half A computes entry ``i``, then half B does while A communicates; an
    entry starts once the half's previous communication is done and the device is free.

    >>> two_batch_overlap(np.array([1.0, 1.0]), np.array([1.0, 1.0]))   # 2 x 2 + 1
    5.0
    >>> two_batch_overlap(np.array([2.0]), np.array([0.5]))     # compute-bound: 4 + 0.5
    4.5
    >>> two_batch_overlap(np.array([1.0, 1.0]), np.array([3.0, 0.0]))   # 1 + 2 x 3 + 1
    8.0
    """
    dev = link = 0.0
    ready = [0.0, 0.0]
    for ci, xi in zip(c, x):
        if ci <= 0 and xi <= 0:
            continue
        for h in (0, 1):
            dev = max(dev, ready[h]) + ci
            if xi > 0:
                link = max(link, dev) + xi
                ready[h] = link
            else:
                ready[h] = dev
    return float(max(ready))


def _stage_send(system, plan: Plan, s: int, nbytes: float, groups=None) -> C.Cost:
    """The activations of one micro-batch (``nbytes``) from stage ``s`` to ``s + 1``. One
    attention group: one message from the stage's last device to the next stage's first.
    Several: each group sends its own sequences' share, from its last device to the same
    group of the next stage, all at once; where the link has a port per device the sends
    take the slowest one's time, through a port per node they queue (one message of all the
    bytes)."""
    src, dst = stage_layout(plan, 0, s), stage_layout(plan, 0, s + 1)
    if groups is None or len(groups) <= 1:
        return C.point_to_point(system, src[-1], dst[0], nbytes)
    frac = np.asarray(groups, dtype=float) / float(np.sum(groups))
    tp = plan.tp
    sends = [C.point_to_point(system, src[(a + 1) * tp - 1], dst[a * tp], nbytes * f)
             for a, f in enumerate(frac) if f > 0]
    level = ("intra_node" if system.node_of(src[-1]) == system.node_of(dst[0])
             else "inter_node")
    if system.link(level) is not None and system.link(level).per == "node":
        return C.point_to_point(system, src[-1], dst[0], nbytes)
    worst = max(sends, key=lambda c: c.time_s)
    byl: dict = {}
    for c in sends:
        for k, v in c.bytes_by_level.items():
            byl[k] = byl.get(k, 0.0) + v
    return replace(worst, bytes_by_level=byl, energy_j=sum(c.energy_j for c in sends))


def _stage_latency(pairs, a: int, b: int, w: int, n: int) -> np.ndarray:
    """Per device of a stage, per layer (as ``layer_latency_s``), from its parts' results
    (``(result, layers it was simulated on)`` pairs)."""
    lat = np.zeros((w, n + 2))
    for g, (r, src) in enumerate(pairs):
        arr = np.asarray(r.layer_latency_s, dtype=float)
        if src is None or tuple(src) == (a, b):
            lat[g] = arr
        else:                                # an equivalent part on other layers
            lat[g, 0], lat[g, -1] = arr[0], arr[-1]
            lat[g, a + 1:b + 1] = arr[src[0] + 1:src[1] + 1]
    return lat


def _dynamic_j(r) -> float:
    return float(r.energy_j) - float(r.energy_breakdown_j.get("static", 0.0))


def compose(prep: Prepared, results: list, memo: dict | None = None, light: bool = False,
            halves: list | None = None):
    """The system result of a prepared plan from its parts' results (in ``prep.parts``
    order; a result, or a ``(result, layers it was simulated on)`` pair of an equivalent
    part); ``memo`` shares collective costs between plans. ``light``: only what a plan
    search's row needs (:func:`_summary`). ``halves``: the results of
    :func:`half_parts` (a plan with ``tbo=1``; without them its stages do not overlap)."""
    system, model, plan = prep.system, prep.model, prep.plan
    n = model.total_layers
    pairs = [x if isinstance(x, tuple) else (x, None) for x in results]
    results = [r for r, _ in pairs]
    hpairs = None if halves is None else [x if isinstance(x, tuple) else (x, None)
                                          for x in halves]
    stages, placements = prep.stages, prep.placements
    T, ab, tokens, seqs = prep.T, prep.ab, prep.tokens, prep.seqs
    w, m, pp = plan.group, plan.microbatches, plan.pp
    res = [results[s * w:(s + 1) * w] for s in range(pp)]
    dyn = [_dynamic_j(r) for r in results]
    brk = [r.energy_breakdown_j for r in results]
    stage_t, comp_t, comm, overlap = [], [], [], []
    memo = {} if memo is None else memo
    for s, ((a, b), (pl, rows, _)) in enumerate(zip(stages, placements)):
        lat = _stage_latency(pairs[s * w:(s + 1) * w], a, b, w, n)
        comp = float(lat.max(axis=0).sum())
        devs = stage_layout(plan, 0, s)
        fl = (s == 0, s == pp - 1)
        x_whole = np.zeros(n + 2) if hpairs is not None else None
        c = _stage_comm(system, model, plan, devs, a, b, rows, pl, tokens, T, ab, fl, seqs,
                        memo, prep.groups, x_whole)
        t, used = comp + c.time_s, False
        if hpairs is not None:
            # two-batch overlap: per entry, a half's compute (the slowest device) and
            # communication (half the tokens), never below half of the whole's
            c_whole = lat.max(axis=0)
            c_half = np.maximum(_stage_latency(hpairs[s * w:(s + 1) * w], a, b, w, n)
                                .max(axis=0), c_whole / 2)
            x_half = np.zeros(n + 2)
            ch = _stage_comm(system, model, plan, devs, a, b, rows, pl, tokens / 2, T / 2,
                             ab, fl, seqs / 2, memo, prep.groups, x_half)
            x_half = np.maximum(x_half, x_whole / 2)
            t_ov = two_batch_overlap(c_half, x_half)
            if t_ov < t:                  # overlap only where it pays
                t, used = t_ov, True
                comp = float(2 * c_half.sum())
                c = ch.scaled(2.0)
                for g in range(w):
                    hr = hpairs[s * w + g][0]
                    dyn[s * w + g] = 2.0 * _dynamic_j(hr)
                    brk[s * w + g] = {k: 2.0 * v for k, v in hr.energy_breakdown_j.items()}
        comp_t.append(comp)
        comm.append(c)
        stage_t.append(t)
        overlap.append(used)
    p2p = [_stage_send(system, plan, s, T * model.hidden_size * ab, prep.groups)
           for s in range(pp - 1)]
    fill = float(sum(stage_t) + sum(c.time_s for c in p2p))
    bottleneck = float(max(stage_t + [c.time_s for c in p2p]))
    period = max(fill, m * bottleneck)
    phase = (prep.graph.graph.get("scenario") or {}).get("phase", "decode")
    latency = period if phase == "decode" else fill + (m - 1) * bottleneck
    link = C.Cost()
    for c in comm + p2p:
        link = link + c
    if light:
        return _summary(system, plan, res, latency, period, fill, stage_t, comp_t, link, T,
                        dyn)
    return _result(system, prep.graph, model, plan, stages, placements, res, latency, period,
                   fill, bottleneck, stage_t, comp_t, p2p, link, T, dyn, overlap, brk)


def _bound(fill, comp_t, stage_t, res) -> str:
    """``interconnect`` when communication is at least half of the fill, else the bound of
    the slowest device of the bottleneck stage."""
    comm_fill = fill - sum(comp_t)
    s_star = int(np.argmax(stage_t)) if stage_t else 0
    slowest = max(res[s_star], key=lambda r: r.latency_s)
    return "interconnect" if comm_fill >= 0.5 * fill and comm_fill > 0 else slowest.bound


def host_power_w(system: System, devices: int) -> float:
    """The share of the nodes' ``host_power`` (host CPUs, memory, NICs, switches, fans)
    charged to ``devices`` devices: a node's power per device, times the devices used (a
    node's other devices may serve other work, as their own static power is not charged
    either)."""
    return system.host_power_w * devices / system.devices_per_node


def _summary(system, plan, res, latency, period, fill, stage_t, comp_t, link, T, dyn):
    """The figures of a plan's row (plan, devices, latency, tokens/s, energy per token,
    bound), as :func:`_result` computes them, without its tables."""
    from types import SimpleNamespace
    m, dp = plan.microbatches, plan.dp
    p_static = system.hw.energy.static_power_w
    n_parts = sum(len(stage) for stage in res)
    energy = dp * (m * float(sum(dyn)) + p_static * period * n_parts + m * link.energy_j)
    energy += host_power_w(system, plan.devices) * period
    tokens = m * T * dp
    return SimpleNamespace(
        plan=str(plan), devices=plan.devices, latency_s=latency,
        tokens_per_s=tokens / period if period else 0.0,
        energy_per_token_j=energy / tokens if tokens else 0.0,
        bound=_bound(fill, comp_t, stage_t, res))


def _sum_dicts(dicts, f=1.0) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0.0) + float(v) * f
    return out


def _result(system, graph, model, plan, stages, placements, res, latency, period, fill,
            bottleneck, stage_t, comp_t, p2p, link, T, dyn, overlap, brk) -> SystemResult:
    hw = system.hw
    m, dp, w = plan.microbatches, plan.dp, plan.group
    flat = [r for stage in res for r in stage]
    n_used = plan.devices
    p_static = hw.energy.static_power_w
    dev_energy = [m * e + p_static * period for e in dyn]
    link_energy = m * link.energy_j
    host_j = host_power_w(system, plan.devices) * period
    energy = dp * (sum(dev_energy) + link_energy) + host_j
    tokens = m * T * dp
    breakdown = _sum_dicts([{k: v for k, v in b.items() if k != "static"} for b in brk],
                           m * dp)
    breakdown["static"] = p_static * period * n_used
    if system.host_power_w > 0:
        breakdown["host"] = host_j
    for lv in LEVELS:
        breakdown[f"link:{lv}"] = m * dp * link.bytes_by_level.get(lv, 0.0) * (
            system.link(lv).energy_per_byte_j if system.link(lv) is not None else 0.0)
    bound = _bound(fill, comp_t, stage_t, res)
    per_device = []
    groups = attention_groups(plan, (graph.graph.get("scenario") or {}).get("batch", 1))
    for s, stage in enumerate(res):
        pl, rows, fixed = placements[s]
        for g, r in enumerate(stage):
            slot = (g // plan.etp) % plan.experts
            copies = w // (plan.experts * plan.etp)
            for rep in range(dp):
                dev = stage_layout(plan, rep, s)[g]
                mem = float(sum(r.weight_bytes_by_level.values())
                            + sum(r.kv_bytes_by_level.values()))
                busy = m * float(r.latency_s) / period if period > 0 else 0.0
                per_device.append({
                    "device": dev, "node": system.node_of(dev), "replica": rep, "stage": s,
                    "layers": list(stages[s]),
                    "experts": int((pl.share[slot] > 0).sum()) if rows else 0,
                    "memory_bytes": mem,
                    "expert_bytes": float(pl.memory[slot]) if rows else 0.0,
                    "expected_load": float(pl.load[slot]) / copies if rows else 0.0,
                    "latency_s": float(r.latency_s), "busy_fraction": busy,
                    "utilization": float(r.mac_utilization) * busy,
                    "energy_j": dev_energy[s * w + g], "bound": r.bound,
                    "sequences": int(groups[g // plan.tp])})
    per_device.sort(key=lambda x: x["device"])
    per_link = tuple({"level": lv, "bytes": m * dp * link.bytes_by_level.get(lv, 0.0),
                      "time_s": m * link.time_by_level.get(lv, 0.0),
                      "energy_j": m * dp * link.bytes_by_level.get(lv, 0.0) * (
                          system.link(lv).energy_per_byte_j if system.link(lv) else 0.0)}
                     for lv in LEVELS)
    f = m * dp
    util = (sum(float(r.mac_utilization) * float(r.latency_s) for r in flat) * m
            / (period * len(flat))) if period > 0 else 0.0
    first = flat[0]
    warnings = tuple(dict.fromkeys(wn for r in flat for wn in r.warnings))
    imb = [float(pl.imbalance) for pl, rows, _ in placements if rows]
    return SystemResult(
        hw=system.name, model=first.model, scenario=first.scenario, residency=first.residency,
        clock_hz=hw.clock_hz, cores=hw.cores.count * n_used, cycles=latency * hw.clock_hz,
        latency_s=latency, tokens=tokens, tokens_per_s=tokens / period if period else 0.0,
        energy_j=energy, energy_breakdown_j=breakdown,
        weight_bytes=dp * sum(float(r.weight_bytes) for r in flat),
        weight_bytes_by_level=_sum_dicts([r.weight_bytes_by_level for r in flat], dp),
        kv_bytes_by_level=_sum_dicts([r.kv_bytes_by_level for r in flat], dp),
        activation_bytes_by_level=_sum_dicts([r.activation_bytes_by_level for r in flat], dp),
        staging_bytes_by_level=_sum_dicts([r.staging_bytes_by_level for r in flat], dp),
        bytes_by_level=_sum_dicts([r.bytes_by_level for r in flat], f),
        offchip_bytes=f * sum(float(r.offchip_bytes) for r in flat),
        onchip_bytes_moved=f * sum(float(r.onchip_bytes_moved) for r in flat),
        macs=f * sum(float(r.macs) for r in flat), mac_utilization=util,
        compute_cycles=f * sum(float(r.compute_cycles) for r in flat),
        stall_cycles=f * sum(float(r.stall_cycles) for r in flat),
        vector_cycles=f * sum(float(r.vector_cycles) for r in flat),
        noc_cycles=f * sum(float(r.noc_cycles) for r in flat),
        busy_cycles=_sum_dicts([r.busy_cycles for r in flat], f), bound=bound,
        warnings=warnings, devices=n_used, plan=str(plan), per_device=tuple(per_device),
        per_link=per_link, energy_per_token_j=energy / tokens if tokens else 0.0,
        pipeline={"stages": [list(x) for x in stages], "stage_s": list(stage_t),
                  "compute_s": list(comp_t), "p2p_s": [c.time_s for c in p2p],
                  "fill_s": fill, "bottleneck_s": bottleneck, "microbatches": m,
                  "period_s": period, "expert_imbalance": max(imb) if imb else 1.0,
                  "overlap": list(overlap)},
        parts=tuple((stage_layout(plan, 0, s)[g], r) for s, stage in enumerate(res)
                    for g, r in enumerate(stage)))
