"""``simulate_parts``: the share of one step that each device of a system runs.

A :class:`DevicePart` names a pipeline stage's layers, a tensor-parallel degree and the share
of every routed expert's tokens the device serves. :func:`simulate_parts` cuts the lowered
op table (:mod:`accelsim.sim.lower`) of the whole step down to each part, scales what is
split, and runs the single-chip stages (:mod:`accelsim.sim.stages`) once over the distinct
units (a phase, or the phases of one MoE layer) of all parts, then assembles every part from
them (:func:`_run_shared`; docs/simulator.md, "Device parts"). Identical parts are simulated
once.

What a part holds (docs/simulator.md, "Device parts"):

- the ops of its layers ``[first, last)``; the embedding lookup with ``embed``, the final norm
  and ``lm_head`` with ``lm_head``; the weight tensors of its layers (routed experts only
  where its share is > 0), the embedding table with ``embed`` and the final norm and
  ``lm_head`` (or the tied table) with ``lm_head``;
- **tensor parallelism** ``tp``: attention's q/k/v output columns (MLA: ``q_b``, ``kv_b``;
  its shared low-rank ``q_a``/``kv_a`` are replicated) and ``o``'s input rows, the attention
  op's work, dense FFN and shared-expert ``w1``/``w3`` columns and ``w2`` rows with their
  activation op, and ``lm_head``'s vocabulary columns are divided by ``tp``; so are those
  weights' bytes. K/V projections and the KV cache of grouped-query attention are divided by
  ``min(tp, kv_heads)`` (a device holds whole KV heads; beyond that they are replicated);
  MLA's compressed KV cache is replicated on every device of the group. The embedding table
  is split by vocabulary (each device holds ``vocab / tp`` rows and looks up the tokens that
  fall in them, the system layer all-reduces the result, as Megatron-LM's vocabulary-
  parallel embedding does); router, norms and the shared-expert gate are replicated. Shapes are rounded up to whole
  rows/columns; MACs and bytes are the exact ``1 / tp`` share;
- **expert share** ``s`` of routed expert ``e`` (its tokens are split between replicas, each
  token to one of them): the device's copy gets ``s m`` expected tokens of the expert's ``m``
  and runs with probability ``p' = p (1 - (1 - s)^M)``, ``M = max(m / p, 1)`` the expert's
  tokens given that it runs (each of them lands here with probability ``s``); so ``p' = p``
  at ``s = 1``, ``p' ~ s m`` for small ``s``, and the tokens given that the copy runs,
  ``s m / p'``, are never below one. The layer's dispatch and combine move the device's share
  ``sum_e s_e m_e / sum_e m_e`` of the routed token copies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from numba import njit

from ..errors import ConfigError, DoesNotFitError, Problem
from ..precision import BitAllocation
from . import stages as S
from .core import SimOptions, _as_hw
from .lower import OP, VECTOR_ROLE, IdentityCache, OpTable, phases, tensor_table
from .mapping import act_home, hw_params
from .residency import plan_memories
from .result import SimResult
from .schedule import wrap_around

__all__ = ["DevicePart", "simulate_parts"]


@dataclass(frozen=True)
class DevicePart:
    """The share of one step that one device runs.

    Parameters
    ----------
    layers : tuple of int
        Transformer layers ``[first, last)`` of its pipeline stage (empty only when the part
        holds the embedding or lm_head).
    tp : int
        Tensor-parallel degree: attention heads (q/k/v/o, the attention op and its KV
        cache), dense FFN, shared experts and lm_head are split ``tp`` ways; router and norms
        are replicated; routed experts are split by ``expert_tp`` instead.
    expert_share : numpy.ndarray or None
        ``(n_moe_layers, n_experts)`` floats in [0, 1]: the share of each routed expert's
        expected tokens this device serves (0: expert not on this device; replicas split
        tokens). None: every expert of its layers at 1.0.
    embed, lm_head : bool or None
        Whether it runs the embedding lookup / the final norm and lm_head. None: iff the
        part holds layer 0 / the last layer.
    expert_tp : int
        Expert tensor parallelism: every routed expert this part holds is split
        ``expert_tp`` ways (``w1``/``w3`` columns, ``w2`` rows, its activation op and its
        bytes); the part serves its share of the expert's tokens on its slice.
    batch_share : float
        The share of the micro-batch's sequences whose attention this device's group runs
        (data-parallel attention beside expert parallelism): every op other than the routed
        experts, dispatch and combine (attention and its KV cache, projections, norms,
        router, dense FFN, shared experts, embedding, lm_head) is scaled to it; 1.0: the
        whole micro-batch; 0.0: the group holds no sequence (those ops are dropped; the
        device still holds its weights and serves its experts).
    """

    layers: tuple[int, int]
    tp: int = 1
    expert_share: np.ndarray | None = None
    embed: bool | None = None
    lm_head: bool | None = None
    expert_tp: int = 1
    batch_share: float = 1.0


def simulate_parts(hw, graph, alloc: BitAllocation | None, parts, *,
                   residency: str = "hot-first", dataflow: str | None = None,
                   staging_fraction: float = 0.25,
                   full_pipeline: bool = False) -> list[SimResult]:
    """One :class:`SimResult` per part: its memory plan, latency, energy (with this device's
    static power for its own latency), weight bytes of the part only and ``layer_latency_s``.

    Lowers once and runs the engine once over the distinct GEMMs of all parts; identical
    parts are simulated once (the same result object is returned for each). A part with all
    layers, ``tp=1``, every share 1.0, embed and lm_head gives exactly
    :func:`accelsim.sim.simulate`.

    Parameters
    ----------
    hw, graph, alloc, residency, dataflow, staging_fraction, full_pipeline
        As for :func:`accelsim.sim.simulate`.
    parts : sequence of DevicePart

    Raises
    ------
    ConfigError
        A bad option, allocation or part (layers out of range, ``tp`` < 1 or not dividing
        the attention heads, shares of the wrong shape or outside [0, 1]).
    DoesNotFitError
        A part's weights do not fit the device.

    Examples
    --------
    >>> import accelsim
    >>> m = accelsim.load_workload("mixtral-8x7b")
    >>> g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=8))
    >>> a = accelsim.BitAllocation.uniform(m, 4)
    >>> whole, half = simulate_parts("h100", g, a, [DevicePart((0, 32)), DevicePart((0, 16))])
    >>> whole.latency_s == accelsim.simulate("h100", g, a).latency_s
    True
    >>> half.layer_latency_s.shape, bool(half.layer_latency_s[17:].sum() == 0)
    ((34,), True)
    """
    return _simulate_parts(hw, graph, alloc, parts, SimOptions(
        residency, dataflow, staging_fraction, full_pipeline), shared=True)


def _simulate_parts(hw, graph, alloc, parts, opts: SimOptions, shared: bool) -> list:
    """:func:`simulate_parts`; ``shared=False`` runs every distinct part through the whole
    batch (:func:`_run_batch`, the reference the shared path is tested against)."""
    hw = _as_hw(hw)
    mask = opts.check(hw)
    hp = hw_params(hw)
    low = S.lower_step(hw, graph, alloc)
    model = low.ot.model
    parts = list(parts)
    keys = [_check_part(model, i, p) for i, p in enumerate(parts)]
    first = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    # parts that differ only in which experts they hold (same shares, bits, tokens in the
    # same order) have the same numbers: simulate one, relabel the others' ops
    info = _info(low.ot)
    ctx = _expert_context(low, info)
    resolved = {k: _resolved(parts[i], model) for k, i in first.items()}
    content = dict(zip(resolved, _content_keys(ctx, list(resolved.values()))))
    reps: dict[tuple, tuple] = {}
    for k in first:
        reps.setdefault(content[k], k)
    todo = list(reps.values())
    got = None
    if shared and len(todo) > 1:
        got = _run_shared(hw, hp, low, [resolved[k] for k in todo],
                          [(first[k], parts[first[k]]) for k in todo], opts, mask, model.name)
    if got is None:
        lows = [_part_lowered(low, resolved[k]) for k in todo]
        pls = []
        for k, lw in zip(todo, lows):
            try:
                pls.append(S.place(hw, hp, lw, opts))
            except DoesNotFitError as e:
                i = first[k]
                raise DoesNotFitError(f"part {i} ({_describe(parts[i])}): {e}") from None
        got = _run_batch(hw, hp, lows, pls, opts, mask, model.name)
    sims = dict(zip(todo, got))
    out = {}
    for k in first:
        rk = reps[content[k]]
        out[k] = sims[rk] if rk == k else _relabel(sims[rk], info, resolved[k])
    return [out[k] for k in keys]


def _run_batch(hw, hp, lows: list, pls: list, opts, mask: int, model_name) -> list:
    """Stages 3-8 of every part: one table of all parts' ops (each part its own phases and
    memory plan), one engine call, then energy and the result per part."""
    a_bits = lows[0].a_bits
    if len(lows) == 1:
        job = S.gemm_inputs(hw, hp, lows[0], pls[0])
        fr = S.run_engine(hp, mask, a_bits, [job], opts.full_pipeline)[0]
        return [S.finish_step(hw, hp, lows[0], pls[0], job, fr, model_name,
                              float(lows[0].t_bytes.sum()))]
    cat, pl, op_off, ph_off = _concat(lows, pls)
    plan_of = np.repeat(np.arange(len(lows)), np.diff(op_off))
    job = S.gemm_inputs(hw, hp, cat, pl, ([q.plan for q in pls], plan_of))
    fr = S.run_engine(hp, mask, a_bits, [job], opts.full_pipeline)[0]
    net = S.net_params(hw, hp)
    oth = S.other_ops(hw, hp, cat, pl, job)
    sch = S.schedule_step(hp, cat, job, fr, oth, net, placement=False)
    tr = S.chosen_traffic(hp, cat, pl, job, fr, oth, sch)
    noc = S.noc_step(hp, cat.ot, oth, sch, net)
    e_off = np.searchsorted(job.e, op_off)
    out = []
    for p, (lw, q) in enumerate(zip(lows, pls)):
        o, f = slice(op_off[p], op_off[p + 1]), slice(ph_off[p], ph_off[p + 1])
        oth_p = S.OtherOps(*(x[o] for x in oth))
        T, cc, t1 = sch.T[f], sch.cc[f], sch.t1[o]
        place_ = wrap_around(lw.ot.phase_ptr, lw.ot.phase_order, T, cc, t1)
        sch_p = S.overheads(hp, lw.ot, S.Schedule(T, cc, sch.choice[o], t1,
                                                  sch.noc_bytes[o], *place_), q.op_wbits)
        tr_p = S.Traffic(tr.rd[o], tr.wr[o], tr.comp[o], tr.dflow[o], tr.tiles[o],
                         tr.overflow[e_off[p]:e_off[p + 1]])
        noc_p = S.Noc(noc.noc_j[o], float(noc.noc_t[f].sum()) + float(noc.red_t[f].sum()),
                      noc.ksl[o], noc.red_adds[o], noc.noc_t[f], noc.red_t[f])
        latency = float(sch_p.T.sum()) / hp.clock_hz
        en = S.step_energy(hw, hp, lw.ot, q.op_wbits, a_bits, tr_p, noc_p, latency)
        out.append(S.assemble(hw, hp, lw, q, oth_p, sch_p, tr_p, noc_p, en, model_name,
                              float(lw.t_bytes.sum())).with_power_check(
            hw.energy.rated_power_w, hw.name))
    return out


_OP_FIELDS = ("op_code", "layer", "expert", "m", "k", "n", "tokens", "p_active", "macs",
              "vector_ops", "in_elems", "out_elems", "kv_elems", "kv_write_elems",
              "kv_resident", "weight_fraction", "depth", "group", "att_m", "att_k", "att_n",
              "tensor_density")


def _concat(lows: list, pls: list):
    """One :class:`~accelsim.sim.stages.Lowered` and ``Placement`` of the ops of all parts
    (tensor indices, phases and MoE groups renumbered; the placement's global fields from
    the first plan), with the op and phase offsets of every part."""
    ots = [lw.ot for lw in lows]
    op_off = np.cumsum([0] + [len(o) for o in ots])
    ph_off = np.cumsum([0] + [len(o.phase_ptr) - 1 for o in ots])
    t_off = np.cumsum([0] + [len(lw.t_bytes) for lw in lows])
    cols = {f: np.concatenate([getattr(o, f) for o in ots]) for f in _OP_FIELDS}
    cols["tensor"] = np.concatenate([np.where(o.tensor >= 0, o.tensor + t, -1)
                                     for o, t in zip(ots, t_off)])
    names = np.concatenate([np.asarray(o.names, dtype=object) for o in ots])
    gstep = int(ots[0].model.total_layers) + 1
    ot = replace(
        ots[0], names=names, index=_LazyIndex(names),
        role=np.concatenate([np.asarray(o.role, dtype=object) for o in ots]),
        phase_order=np.concatenate([o.phase_order + a for o, a in zip(ots, op_off)]),
        phase_ptr=np.concatenate([o.phase_ptr[:-1] + a for o, a in zip(ots, op_off)]
                                 + [op_off[-1:]]).astype(np.int64),
        phase_group=np.concatenate([np.where(o.phase_group >= 0, o.phase_group + p * gstep,
                                             -1) for p, o in enumerate(ots)]), **cols)
    cat = S.Lowered(ot, np.concatenate([lw.bits for lw in lows]),
                    np.concatenate([lw.t_bytes for lw in lows]),
                    np.concatenate([lw.t_numel for lw in lows]), lows[0].a_bits,
                    lows[0].kv_bits)
    pl = S.Placement(pls[0].plan, np.concatenate([q.foot for q in pls]),
                     np.concatenate([q.att_idx + a for q, a in zip(pls, op_off)]),
                     np.concatenate([q.home for q in pls]),
                     np.concatenate([q.wfrac for q in pls]),
                     np.concatenate([q.op_wbits for q in pls]))
    return cat, pl, op_off, ph_off


class _Context(NamedTuple):
    """What the content keys need of the whole step: per routed expert (``row * n_experts
    + expert``) its bits, expected tokens and run probability; the layer of every MoE
    row."""

    bits: np.ndarray
    tokens: np.ndarray
    p: np.ndarray
    rows: np.ndarray


def _expert_context(low, info) -> _Context:
    n = info.tokens.size
    bits = np.zeros(n, np.int64)
    ex = info.t_flat >= 0
    bits[info.t_flat[ex]] = low.bits[ex]
    return _Context(bits, info.tokens.ravel(), info.p.ravel(),
                    np.array(low.ot.model.moe_layers, np.int64))


def _content_key(ctx, r: _Resolved) -> tuple:
    """Equal for parts whose op tables differ only in which experts they hold."""
    base = (r.first, r.last, r.tp, r.embed, r.lm_head, r.etp, r.bshare)
    if r.share is None:
        return base + (None,)
    rows = np.arange(r.share.shape[0])
    sel = (ctx.rows >= r.first) & (ctx.rows < r.last)
    sh = r.share[rows[sel]]
    nz = np.nonzero(sh > 0)
    flat = (rows[sel][nz[0]] * sh.shape[1] + nz[1])
    seq = np.stack([sh[nz], ctx.bits[flat], ctx.tokens[flat], ctx.p[flat]])
    return base + (np.bincount(nz[0], minlength=sh.shape[0]).tobytes(), seq.tobytes())


def _content_keys(ctx, rs: list) -> list:
    """``[_content_key(ctx, r) for r in rs]``, the parts with shares on one layer range
    worked out together (one ``nonzero`` for all of them: the same keys)."""
    out: list = [None] * len(rs)
    groups: dict = {}
    for i, r in enumerate(rs):
        if r.share is None:
            out[i] = _content_key(ctx, r)
        else:
            groups.setdefault((r.first, r.last), []).append(i)
    for (a, b), idx in groups.items():
        if len(idx) < 2:
            out[idx[0]] = _content_key(ctx, rs[idx[0]])
            continue
        rows = np.flatnonzero((ctx.rows >= a) & (ctx.rows < b))
        sh = np.stack([rs[i].share[rows] for i in idx])
        q, rr, e = np.nonzero(sh > 0)          # by part, then row, then expert
        flat = rows[rr] * sh.shape[2] + e
        seq = np.stack([sh[q, rr, e], ctx.bits[flat], ctx.tokens[flat], ctx.p[flat]])
        bounds = np.searchsorted(q, np.arange(len(idx) + 1))
        nr = len(rows)
        counts = np.bincount(q * nr + rr, minlength=len(idx) * nr).reshape(len(idx), nr)
        for j, i in enumerate(idx):
            r = rs[i]
            out[i] = (r.first, r.last, r.tp, r.embed, r.lm_head, r.etp, r.bshare,
                      counts[j].tobytes(),
                      np.ascontiguousarray(seq[:, bounds[j]:bounds[j + 1]]).tobytes())
    return out


def _relabel(res: SimResult, info, r: _Resolved) -> SimResult:
    """``res`` (a part with the same content) with the op and tensor names of part ``r``
    (its ``op_data`` built when first read)."""
    def build():
        idx, t_idx = _select(info, r)
        od = dict(res.op_data)
        od.update(names=info.names[idx], expert=info.expert[idx],
                  tensor_names=info.t_names[t_idx])
        return od
    return replace(res, op_data=_LazyOps.deferred(build))


# ---------------------------------------------------------------------------- checks
class _Resolved(NamedTuple):
    first: int
    last: int
    tp: int
    share: np.ndarray | None
    embed: bool
    lm_head: bool
    etp: int = 1
    bshare: float = 1.0


def _resolved(p: DevicePart, model) -> _Resolved:
    first, last = int(p.layers[0]), int(p.layers[1])
    embed = first == 0 if p.embed is None else bool(p.embed)
    lm = last == model.total_layers if p.lm_head is None else bool(p.lm_head)
    share = None if p.expert_share is None else np.asarray(p.expert_share, dtype=np.float64)
    return _Resolved(first, last, int(p.tp), share, embed, lm, int(p.expert_tp),
                     float(p.batch_share))


def _check_part(model, i: int, p) -> tuple:
    """Validate part ``i``; returns its identity key (equal keys: identical parts)."""
    key = f"parts[{i}]"
    if not isinstance(p, DevicePart):
        raise ConfigError.single("must be a DevicePart", key=key, value=type(p).__name__)
    problems = []
    n = model.total_layers
    lay = p.layers
    ok = (isinstance(lay, (tuple, list)) and len(lay) == 2
          and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in lay))
    if not ok or not 0 <= lay[0] <= lay[1] <= n:
        problems.append(Problem(f"must be (first, last) with 0 <= first <= last <= {n}",
                                key=f"{key}.layers", value=lay))
    elif lay[0] == lay[1] and not (p.embed or (p.embed is None and lay[0] == 0)
                                   or p.lm_head or (p.lm_head is None and lay[1] == n)):
        problems.append(Problem("holds no layer, no embedding and no lm_head",
                                key=f"{key}.layers", value=lay))
    heads = model.attention.num_heads
    if isinstance(p.tp, bool) or not isinstance(p.tp, (int, np.integer)) or p.tp < 1 or (
            heads % p.tp):
        problems.append(Problem(f"must be a positive integer dividing the {heads} attention "
                                "heads", key=f"{key}.tp", value=p.tp))
    etp = p.expert_tp
    if isinstance(etp, bool) or not isinstance(etp, (int, np.integer)) or not 1 <= etp <= (
            1 << 16):
        problems.append(Problem("must be a positive integer", key=f"{key}.expert_tp",
                                value=etp))
    b = p.batch_share
    if isinstance(b, bool) or not isinstance(b, (int, float, np.integer, np.floating)) or not (
            0.0 <= b <= 1.0):
        problems.append(Problem("must be a number in [0, 1]", key=f"{key}.batch_share",
                                value=b))
    share = p.expert_share
    if share is not None:
        shape = (model.num_moe_layers, model.num_experts)
        arr = np.asarray(share)
        if arr.shape != shape or arr.dtype.kind not in "fiu":
            problems.append(Problem(f"must be a numeric array of shape {shape}",
                                    key=f"{key}.expert_share", value=arr.shape))
        elif not (np.isfinite(arr).all() and (arr >= 0).all() and (arr <= 1).all()):
            problems.append(Problem("must be in [0, 1]", key=f"{key}.expert_share",
                                    value=float(arr.min()) if (arr < 0).any() else
                                    float(arr.max())))
    if problems:
        raise ConfigError(problems)
    r = _resolved(p, model)
    sh = None if r.share is None else r.share.tobytes()
    return (r.first, r.last, r.tp, sh, r.embed, r.lm_head, r.etp, r.bshare)


def _describe(p: DevicePart) -> str:
    etp = f", expert_tp={p.expert_tp}" if p.expert_tp != 1 else ""
    bs = f", batch_share={p.batch_share:g}" if p.batch_share != 1 else ""
    return f"layers {p.layers[0]}..{p.layers[1]}, tp={p.tp}{etp}{bs}"


# ---------------------------------------------------------------------------- op classes
#: Op split classes: how an op's work divides under tensor parallelism.
_REPL, _COL, _ROW, _KV_COL, _ATT, _ELEM = range(6)
_COL_MATS = {"q", "q_b", "kv_b", "w1", "w3"}
_ROW_MATS = {"o", "w2"}
_TP_ROLES = {"attention", "dense_ffn", "shared"}
_FFN_ACT = re.compile(r"\.(ffn|S\d+)\.act$")


class _Info(NamedTuple):
    """Per op table: each op's split class, owner (-2 embed, -1 final norm / lm_head, else
    its layer), the MoE row of its layer (-1: not a MoE layer) and, for routed-expert ops,
    ``row * n_experts + expert`` (-1 otherwise); names and roles as object arrays; the
    expert per op; the expected tokens and run probability of every routed expert [rows x
    experts]. Per tensor: split class (0
    replicated, 1 by tp, 2 by KV heads), layer (-2 embed table, -1 final norm / lm_head),
    ``row * n_experts + expert`` (-1 unless a routed expert), role code and name."""

    op_cls: np.ndarray
    owner: np.ndarray
    tensor: np.ndarray
    op_lrow: np.ndarray
    op_flat: np.ndarray
    names: np.ndarray
    roles: np.ndarray
    expert: np.ndarray
    tokens: np.ndarray
    p: np.ndarray
    t_cls: np.ndarray
    t_layer: np.ndarray
    t_flat: np.ndarray
    t_vector: np.ndarray
    t_names: np.ndarray
    ranges: dict
    floats: np.ndarray
    e_cls: np.ndarray
    batch_ops: np.ndarray | None = None


_INFO = IdentityCache()
#: The op-table fields a part scales (gathered together from ``_Info.floats``).
_FLOATS = ("m", "k", "n", "tokens", "p_active", "macs", "vector_ops", "in_elems", "out_elems",
           "kv_elems", "kv_write_elems", "kv_resident", "att_m", "att_n")
_FIELD = {k: j for j, k in enumerate(_FLOATS)}


def _info(ot: OpTable) -> _Info:
    """:class:`_Info` of ``ot`` (cached per op table)."""
    hit = _INFO.get(ot)
    if hit is not None:
        return hit
    model = ot.model
    tt = tensor_table(model)
    E = model.num_experts
    t_cls, mats = _tensor_classes(model)
    t_layer = tt.layer.copy()
    t_layer[np.array([t.role == "embed" for t in model.tensors()])] = -2
    oc = ot.op_code
    op_cls = np.zeros(len(ot), np.int64)
    op_cls[oc == OP["attention"]] = _ATT
    op_cls[oc == OP["lm_head"]] = _COL
    g = np.flatnonzero((oc == OP["gemm"]) & (ot.tensor >= 0))
    for i in g[t_cls[ot.tensor[g]] > 0]:
        tj = int(ot.tensor[i])
        op_cls[i] = (_KV_COL if t_cls[tj] == 2 else _COL if mats[tj] in _COL_MATS
                     else _ROW if mats[tj] in _ROW_MATS else _REPL)
    for i in np.flatnonzero((oc == OP["elementwise"]) & (ot.expert < 0)):
        if _FFN_ACT.search(ot.names[i]):
            op_cls[i] = _ELEM
    owner = np.where(ot.layer >= 0, ot.layer, np.where(oc == OP["embed"], -2, -1))
    row_of = np.full(max(model.total_layers, 1), -1, np.int64)
    row_of[list(model.moe_layers)] = np.arange(model.num_moe_layers)
    op_lrow = np.where(ot.layer >= 0, row_of[np.maximum(ot.layer, 0)], -1)
    routed = (ot.expert >= 0) & (op_lrow >= 0)
    op_flat = np.where(routed, op_lrow * E + ot.expert, -1)
    tokens = np.zeros(model.num_moe_layers * E)
    p = np.zeros(model.num_moe_layers * E)
    gr = np.flatnonzero(routed & (oc == OP["gemm"]))
    tokens[op_flat[gr]] = ot.tokens[gr]      # an expert's GEMMs all have its tokens
    p[op_flat[gr]] = ot.p_active[gr]
    t_flat = np.where(tt.moe_row >= 0, tt.moe_row * E + tt.expert, -1)
    info = _Info(op_cls, owner.astype(np.int64), ot.tensor, op_lrow.astype(np.int64),
                 op_flat.astype(np.int64), np.array(ot.names, dtype=object),
                 np.array(ot.role, dtype=object), ot.expert,
                 tokens.reshape(model.num_moe_layers, E), p.reshape(model.num_moe_layers, E),
                 t_cls, t_layer,
                 t_flat.astype(np.int64), tt.role_code == VECTOR_ROLE,
                 np.array(tt.names, dtype=object), {},
                 np.column_stack([getattr(ot, k) for k in _FLOATS]),
                 _expert_classes(ot, op_flat, mats),
                 (op_flat < 0) & (oc != OP["dispatch"]) & (oc != OP["combine"]))
    _INFO.put(ot, info)
    return _INFO.get(ot)


def _expert_classes(ot: OpTable, op_flat: np.ndarray, mats: list) -> np.ndarray:
    """Per op: how a routed expert's op splits under expert tensor parallelism (``w2``
    by rows, its other matrices by columns, its activation op elementwise); ``_REPL`` for
    every other op."""
    cls = np.full(len(ot), _REPL, np.int64)
    routed = op_flat >= 0
    for i in np.flatnonzero(routed & (ot.tensor >= 0)):
        cls[i] = _ROW if mats[int(ot.tensor[i])] == "w2" else _COL
    cls[routed & (ot.tensor < 0) & (ot.op_code == OP["elementwise"])] = _ELEM
    return cls


def _tensor_classes(model) -> tuple[np.ndarray, list]:
    """Per tensor: split class (0 replicated, 1 by tp, 2 by KV heads) and matrix name."""
    specs = model.tensors()
    cls = np.zeros(len(specs), np.int64)
    mats = []
    for j, t in enumerate(specs):
        mat = t.matrix if len(t.shape) == 2 and t.role not in ("norm", "bias") else None
        mats.append(mat)
        if t.role == "embed":       # vocabulary-parallel: each device holds vocab / tp rows
            cls[j] = 1
        if mat is None:
            continue
        if t.role == "attention" and mat in ("k", "v"):
            cls[j] = 2
        elif (t.role == "attention" and mat in _COL_MATS | _ROW_MATS) or t.role in (
                "dense_ffn", "shared", "lm_head"):
            cls[j] = 1
    return cls, mats


# ---------------------------------------------------------------------------- the part
def _kv_div(model, tp: int) -> int:
    """Ways the KV heads (and K/V projections) split: whole heads per device."""
    if model.attention.kind == "mla":
        return 1
    return min(tp, int(model.num_kv_heads))


def _select(info: _Info, r: _Resolved, nz: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ops and of the tensors a part holds (``nz``: its held experts, the flat
    ids of its shares above 0, when known)."""
    base, ex, t_base, t_ex = _range(info, r)
    if r.bshare == 0.0:            # a group without sequences: only its experts' ops
        base = base[~info.batch_ops[base]]
    # two sorted runs each (distinct indices): a stable sort merges them in linear time
    if r.share is None:
        return (np.sort(np.concatenate([base, ex[0]]), kind="stable"),
                np.sort(np.concatenate([t_base, t_ex[0]]), kind="stable"))
    if nz is None:
        nz = np.flatnonzero(r.share.ravel() > 0)
    return (np.sort(np.concatenate([base, _segments(ex, nz)]), kind="stable"),
            np.sort(np.concatenate([t_base, _segments(t_ex, nz)]), kind="stable"))


def _by_key(info: _Info, name: str, key: np.ndarray, n: int) -> tuple:
    """The ops of the table grouped by ``key`` (0..n-1; -1: none) with a pointer per key, as
    ``_segments`` reads them (cached per op table under ``name``)."""
    hit = info.ranges.get(name)
    if hit is None:
        i = np.flatnonzero(key >= 0)
        o = np.argsort(key[i], kind="stable")
        hit = info.ranges[name] = (i[o].astype(np.int64),
                                   np.searchsorted(key[i][o], np.arange(n + 1)))
    return hit


def _positions(sorted_keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``q`` is in ``sorted_keys``, and whether it is there."""
    pos = np.searchsorted(sorted_keys, q)
    if not len(sorted_keys):
        return pos, np.zeros(len(q), bool)
    return pos, sorted_keys[np.minimum(pos, len(sorted_keys) - 1)] == q


def _csr_take(csr: tuple, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The entries of ``keys`` in ``csr`` (concatenated in the order of ``keys``) and how
    many each key has."""
    items, ptr = csr
    return _segments(csr, keys), (ptr[keys + 1] - ptr[keys]).astype(np.int64)


def _segments(csr: tuple, nz: np.ndarray) -> np.ndarray:
    """The entries of the experts ``nz`` in ``csr`` = (entries grouped by expert, pointer
    per expert)."""
    items, ptr = csr
    starts = ptr[nz]
    lens = ptr[nz + 1] - starts
    if not len(lens):
        return items[:0]
    pos = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
    return items[pos]


def _range(info: _Info, r: _Resolved) -> tuple:
    """Of a part's layer range and embed/lm_head: the ops other than routed experts and
    the routed-expert ops grouped by expert (``row * n_experts + expert``, with a pointer
    per expert); the same for tensors (cached per op table)."""
    k = (r.first, r.last, r.embed, r.lm_head)
    hit = info.ranges.get(k)
    if hit is None:
        def held(owner):
            return ((owner >= r.first) & (owner < r.last)) | ((owner == -2) & r.embed) | (
                (owner == -1) & r.lm_head)

        def by_expert(take, flat):
            i = np.flatnonzero(take & (flat >= 0))
            o = np.argsort(flat[i], kind="stable")
            return i[o], np.searchsorted(flat[i][o], np.arange(info.tokens.size + 1))
        take, t_take = held(info.owner), held(info.t_layer)
        # a held op's weight is held (lm_head tied to the embedding table)
        t_ref = info.tensor[take & (info.op_flat < 0) & (info.tensor >= 0)]
        t_take[t_ref] = True
        hit = info.ranges[k] = (np.flatnonzero(take & (info.op_flat < 0)),
                                by_expert(take, info.op_flat),
                                np.flatnonzero(t_take & (info.t_flat < 0)),
                                by_expert(t_take, info.t_flat))
    return hit


def _part_lowered(low: S.Lowered, r: _Resolved) -> S.Lowered:
    """The part's :class:`~accelsim.sim.stages.Lowered`: its ops (scaled) and its tensors."""
    ot = low.ot
    info = _info(ot)
    idx, t_idx = _select(info, r)
    kvd = _kv_div(ot.model, r.tp)
    t_div = np.where(info.t_cls[t_idx] == 1, float(r.tp),
                     np.where(info.t_cls[t_idx] == 2, float(kvd), 1.0))
    t_div = np.where(info.t_flat[t_idx] >= 0, float(r.etp), t_div)
    sub = _sub_table(ot, idx, t_idx, info, r, kvd)
    return S.Lowered(sub, low.bits[t_idx], low.t_bytes[t_idx] / t_div,
                     low.t_numel[t_idx] / t_div, low.a_bits, low.kv_bits,
                     info.t_names[t_idx])


def _sub_table(ot: OpTable, idx, t_idx, info: _Info, r: _Resolved,
               kvd: int) -> OpTable:
    """The op table of the ops ``idx`` of ``ot``, scaled by tensor parallelism and expert
    shares, with its own phases and tensor indices."""
    sub = info.floats[idx]               # one gather of every scaled field
    f = {k: sub[:, j] for j, k in enumerate(_FLOATS)}
    if r.share is not None:
        _scale_experts(f, r.share.ravel(), info.op_flat[idx])
        _scale_moe_traffic(ot, idx, f, r.share, info)
    if r.bshare != 1.0:
        _scale_batch(f, info.batch_ops[idx], r.bshare)
    _scale_tp(f, info.op_cls[idx], float(r.tp), float(kvd))
    _scale_tp(f, info.e_cls[idx], float(r.etp), 1.0)
    tensor = ot.tensor[idx]
    tensor = np.where(tensor >= 0, np.searchsorted(t_idx, tensor), -1)   # held: see _range
    wf = ot.weight_fraction[idx]
    if r.bshare != 1.0:         # an embedding lookup reads a row per token it looks up
        emb = ot.op_code[idx] == OP["embed"]
        wf = np.where(emb, np.minimum(1.0, f["tokens"] / max(ot.model.vocab_size, 1)), wf)
    has_t = tensor >= 0
    density = np.bincount(tensor[has_t], weights=(f["p_active"] * wf)[has_t],
                          minlength=len(t_idx)).astype(np.float64)
    density[info.t_vector[t_idx]] = 1.0
    depth, group = ot.depth[idx], ot.group[idx]
    order, ptr, pgroup = phases(depth, group)
    names = info.names[idx]
    return replace(
        ot, names=names, index=_LazyIndex(names), op_code=ot.op_code[idx],
        layer=ot.layer[idx], expert=ot.expert[idx], role=info.roles[idx],
        tensor=tensor, weight_fraction=wf, depth=depth, group=group,
        att_k=ot.att_k[idx], tensor_density=density, phase_order=order, phase_ptr=ptr,
        phase_group=pgroup, **f)


class _LazyIndex(dict):
    """``OpTable.index`` built on first use (the stages never read it)."""

    def __init__(self, names):
        super().__init__()
        self._names = names
        self._built = False

    def _build(self):
        if not self._built:
            self._built = True
            self.update({nm: i for i, nm in enumerate(self._names)})

    def __getitem__(self, k):
        self._build()
        return super().__getitem__(k)

    def __contains__(self, k):
        self._build()
        return super().__contains__(k)

    def __iter__(self):
        self._build()
        return super().__iter__()

    def __len__(self):
        self._build()
        return super().__len__()

    def get(self, k, default=None):
        self._build()
        return super().get(k, default)


def _scale_experts(f: dict, share: np.ndarray, flat: np.ndarray) -> None:
    """Routed-expert ops at share ``s``: expected work ``s x``, run probability
    ``p (1 - (1 - s)^M)`` with ``M = max(tokens / p, 1)`` (module docstring)."""
    ex = np.flatnonzero(flat >= 0)
    se = share[flat[ex]]
    keep = se < 1.0
    ex, se = ex[keep], se[keep]
    if not len(ex):
        return
    p = f["p_active"][ex]
    M = np.maximum(f["tokens"][ex] / np.where(p > 0, p, 1.0), 1.0)
    f["p_active"][ex] = p * (1.0 - (1.0 - se) ** M)
    for k in ("m", "tokens", "macs", "vector_ops", "in_elems", "out_elems"):
        f[k][ex] *= se


def _scale_moe_traffic(ot: OpTable, idx, f: dict, share: np.ndarray, info: _Info) -> None:
    """Dispatch and combine of a MoE layer move the part's share ``sum_e s_e m_e / sum_e
    m_e`` of the routed token copies."""
    oc = ot.op_code[idx]
    rows = info.op_lrow[idx]
    disp = np.flatnonzero((oc == OP["dispatch"]) & (rows >= 0))
    comb = np.flatnonzero((oc == OP["combine"]) & (rows >= 0))
    if not (len(disp) or len(comb)):
        return
    frac = _dispatch_fraction(info, share)
    f["out_elems"][disp] *= frac[rows[disp]]
    f["in_elems"][comb] *= frac[rows[comb]]
    f["vector_ops"][comb] *= frac[rows[comb]]


def _scale_batch(f: dict, ops: np.ndarray, b: float) -> None:
    """The ops of a share ``b`` of the sequences (``DevicePart.batch_share``): tokens, work,
    activations and KV cache times ``b``; the attention op's KV columns to whole ones."""
    for k in ("m", "tokens", "macs", "vector_ops", "in_elems", "out_elems", "kv_elems",
              "kv_write_elems", "kv_resident"):
        f[k][ops] *= b
    f["att_n"][ops] = np.ceil(f["att_n"][ops] * b)


def _scale_tp(f: dict, cls: np.ndarray, tp: float, kvd: float) -> None:
    """Divide the tensor-parallel ops' work (module docstring); shapes to whole columns."""
    if tp == 1.0:
        return
    col, row, kvc = cls == _COL, cls == _ROW, cls == _KV_COL
    att, elem = cls == _ATT, cls == _ELEM
    for mask, d in ((col, tp), (kvc, kvd)):
        f["n"][mask] = np.ceil(f["n"][mask] / d)
        f["macs"][mask] /= d
        f["out_elems"][mask] /= d
    f["k"][row] = np.ceil(f["k"][row] / tp)
    f["macs"][row] /= tp
    f["in_elems"][row] /= tp
    for k in ("vector_ops", "in_elems", "out_elems"):
        f[k][elem] /= tp
    for k in ("macs", "vector_ops", "in_elems", "out_elems"):
        f[k][att] /= tp
    for k in ("kv_elems", "kv_write_elems", "kv_resident"):
        f[k][att] /= kvd
    f["att_m"][att] = np.maximum(f["att_m"][att] * kvd / tp, 1.0)
    f["att_n"][att] = np.ceil(f["att_n"][att] / kvd)



# ---------------------------------------------------------------------------- shared units
# Device parts repeat each other: every part of a pipeline stage runs the same attention,
# norms, router and shared experts, the layers of a stage repeat, and the expert phases of
# two parts (or two layers) holding the same multiset of experts (bits, tokens, share) cost
# the same. So the stages run once over a table of the distinct *units* -- a phase, or all
# phases of one MoE layer (whose core count the scheduler picks together) -- and every part
# is assembled from it. A unit's ops are identified by content: the op's unscaled row and
# tensor (bits, bytes), the part's tensor-parallel degrees, its share or dispatch fraction,
# and its memory plan's activation budget and the levels its weights (or KV cache) live in.
# Inside a phase the ops are put in a canonical order (by that content), so two units
# holding the same ops in another order are one; only the sums over a phase's ops (phase
# time, NoC bytes, kernels) may then differ in their last bits from a part-by-part run.

_U64 = np.uint64


@njit(cache=True)
def _part_sums(S, fm, ph_off):  # pragma: no cover - numba
    """Per part ``p``: the sum of the rows ``S[fm[f]]`` of its phases ``f`` (``ph_off[p]``
    to ``ph_off[p + 1]``), added in phase order."""
    n = ph_off.shape[0] - 1
    out = np.zeros((n, S.shape[1]))
    for p in range(n):
        for f in range(ph_off[p], ph_off[p + 1]):
            d = fm[f]
            for j in range(S.shape[1]):
                out[p, j] += S[d, j]
    return out


@njit(cache=True)
def _phases(part_of, depth, group, okey, n, nd):  # pragma: no cover - numba
    """The phases of every part (its ops by depth, as :func:`accelsim.sim.lower.phases`
    orders them; parts in order): ``(order of the ops, phase pointer into it, MoE group per
    phase (the largest among its ops), part per phase, the ops in canonical order (by
    ``okey`` inside each phase, ties in op order), per phase the sum of
    ``_mix(okey, SEED)`` of its ops)``."""
    m = part_of.shape[0]
    key = part_of * nd + depth
    srt = True
    for i in range(1, m):
        if key[i] < key[i - 1]:
            srt = False
            break
    order = np.arange(m) if srt else np.argsort(key, kind="mergesort")
    nph = 0
    for i in range(m):
        if i == 0 or key[order[i]] != key[order[i - 1]]:
            nph += 1
    ptr = np.empty(nph + 1, np.int64)
    grp = np.empty(nph, np.int64)
    part = np.empty(nph, np.int64)
    hsum = np.zeros(nph, np.uint64)
    canon = order.copy()
    f = -1
    for i in range(m):
        o = order[i]
        if i == 0 or key[o] != key[order[i - 1]]:
            f += 1
            ptr[f] = i
            grp[f] = group[o]
            part[f] = part_of[o]
        elif group[o] > grp[f]:
            grp[f] = group[o]
        hsum[f] += _mix1(np.uint64(okey[o]), np.uint64(0x243F6A8885A308D3))
    ptr[nph] = m
    for f in range(nph):      # by key inside the phase, stably
        a, b = ptr[f], ptr[f + 1]
        if b - a > 32:
            seg = canon[a:b].copy()
            canon[a:b] = seg[np.argsort(okey[seg], kind="mergesort")]
            continue
        for i in range(a + 1, b):         # a short phase: insertion sort
            x = canon[i]
            kx = okey[x]
            j = i - 1
            while j >= a and okey[canon[j]] > kx:
                canon[j + 1] = canon[j]
                j -= 1
            canon[j + 1] = x
    return order, ptr, grp, part, canon, hsum


@njit(cache=True)
def _mix1(x, seed):  # pragma: no cover - numba
    """:func:`_mix` of one uint64."""
    x = x ^ seed
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


#: splitmix64 of ``x ^ seed`` (uint64, wrapping).
_mix = S._mix64


def _raw_ids(low: S.Lowered, info: _Info) -> np.ndarray:
    """Per op of the whole table: an id, equal for ops whose unscaled rows, split classes and
    tensors (bits, bytes, elements, split class) are equal (the last allocation's ids are
    kept per op table)."""
    tag = (low.bits.tobytes(), low.t_bytes.tobytes())
    hit = info.ranges.get("raw")
    if hit is not None and hit[0] == tag:
        return hit[1]
    sid = _struct_ids(low.ot, info)
    # the allocation's part: each tensor's bits and bytes
    _, tc = S._unique_columns([low.bits.astype(np.float64), low.t_bytes])
    t = low.ot.tensor
    k = int(tc.max(initial=0)) + 2
    rid = sid * k + np.where(t >= 0, tc[np.maximum(t, 0)] + 1, 0)
    info.ranges["raw"] = (tag, rid.astype(np.int64))
    return info.ranges["raw"][1]


def _struct_ids(ot: OpTable, info: _Info) -> np.ndarray:
    """Per op: an id, equal for ops whose unscaled rows, split classes and tensor shapes and
    split classes are equal (cached per op table)."""
    hit = info.ranges.get("struct")
    if hit is not None:
        return hit
    t = ot.tensor
    has = t >= 0
    tj = np.maximum(t, 0)
    tt = tensor_table(ot.model)

    def of_t(x):
        return np.where(has, np.asarray(x, dtype=np.float64)[tj], -1.0)

    cols = [info.floats[:, j] for j in range(info.floats.shape[1])] + [
        ot.op_code, ot.weight_fraction, ot.att_k, info.op_cls, info.e_cls, ot.expert >= 0,
        info.op_flat >= 0, has, of_t(tt.out_f), of_t(tt.in_f), of_t(info.t_cls),
        of_t(info.t_flat >= 0)]
    _, inv = S._unique_columns([np.asarray(c, dtype=np.float64) for c in cols])
    info.ranges["struct"] = inv.astype(np.int64)
    return info.ranges["struct"]


#: Scaled copies of an op table's fields kept per table (each is 14 floats per op: 6.8 MB
#: for DeepSeek-V3; a plan search meets dozens of tp / batch-share combinations).
_SCALED_KEEP = 4


def _scaled(info: _Info, tp: int, kvd: int, etp: int, bshare: float,
            ops: np.ndarray | None = None) -> np.ndarray:
    """The scaled fields (:data:`_FLOATS`, one row each) under tensor parallelism ``tp`` (KV
    heads ``kvd``), expert tensor parallelism ``etp`` and batch share ``bshare``, for parts
    that hold every expert whole: of the ops ``ops`` (computed for them alone), or of every
    op of the table (the last few kept per op table)."""
    kept = info.ranges.setdefault("scaled", {})
    k = (tp, kvd, etp, bshare)
    hit = kept.pop(k, None)
    if hit is None and ops is not None:
        return _scale_rows(info, ops, tp, kvd, etp, bshare)
    if hit is None:
        hit = _scale_rows(info, None, tp, kvd, etp, bshare)
    kept[k] = hit                   # most recently used last
    while len(kept) > _SCALED_KEEP:
        kept.pop(next(iter(kept)))
    return hit if ops is None else hit[:, ops]


def _scale_rows(info: _Info, ops, tp: int, kvd: int, etp: int, bshare: float) -> np.ndarray:
    F = np.ascontiguousarray((info.floats if ops is None else info.floats[ops]).T)
    sel = slice(None) if ops is None else ops
    f = {n: F[j] for j, n in enumerate(_FLOATS)}
    if bshare != 1.0:
        _scale_batch(f, info.batch_ops[sel], bshare)
    _scale_tp(f, info.op_cls[sel], float(tp), float(kvd))
    _scale_tp(f, info.e_cls[sel], float(etp), 1.0)
    return F


def _run_shared(hw, hp, low: S.Lowered, rs: list, labels: list, opts, mask: int,
                model_name) -> list | None:
    """Stages 2-8 of the parts ``rs`` over their distinct units (see above); None when the
    parts' MoE layers do not keep their phases together (the caller runs them one by one)."""
    ot = low.ot
    model = ot.model
    info = _info(ot)
    aB, kvB = low.a_bits / 8.0, low.kv_bits / 8.0
    n = len(rs)
    oc = ot.op_code
    att_code, disp_code, comb_code = OP["attention"], OP["dispatch"], OP["combine"]
    # ---- 1. each part's ops and tensors, scaled fields, content ids
    nzs = [None if r.share is None else np.flatnonzero(r.share.ravel() > 0) for r in rs]
    sel = [_select(info, r, nz) for r, nz in zip(rs, nzs)]
    cnt = np.array([len(s[0]) for s in sel], np.int64)
    off = np.concatenate([[0], np.cumsum(cnt)])
    G = np.concatenate([s[0] for s in sel]) if n else np.zeros(0, np.int64)
    part_of = np.repeat(np.arange(n), cnt)
    scs: dict = {}
    sci = np.array([scs.setdefault((r.tp, _kv_div(model, r.tp), r.etp, r.bshare), len(scs))
                    for r in rs], np.int64)
    nsc = len(scs)
    n_ops = len(ot)
    sc_op = sci[part_of]
    fields = _Fields(info, list(scs), sc_op, G)
    raw = _raw_ids(low, info)
    nbase = (int(raw.max(initial=-1)) + 1) * nsc
    cid = raw[G] * nsc + sc_op
    # ops whose rows a part's shares change: routed experts at a share below 1, dispatch
    # and combine at a fraction other than 1
    held = np.array([r.share is not None for r in rs], bool)
    if held.any():
        fracs = np.ones((n, info.tokens.shape[0]))
        hidx = np.flatnonzero(held)
        # every held part's experts (flat ids) and shares, and its dispatch fractions
        hf = np.concatenate([nzs[p] for p in hidx]).astype(np.int64)
        h_loc = np.repeat(np.arange(len(hidx)), [len(nzs[p]) for p in hidx])
        sv = np.concatenate([rs[p].share.ravel()[nzs[p]] for p in hidx]).astype(np.float64)
        fracs[hidx] = _held_fractions(info, h_loc, hf, sv, len(hidx))
        # the part ops of held parts' experts at a share in (0, 1), and of their dispatch
        # and combine at a fraction other than 1, found from the shares and the MoE rows
        # (a part op's position: its op in the part's sorted ops)
        gkey = part_of * n_ops + G
        mid = np.flatnonzero(sv < 1.0)                  # (held: every share is > 0)
        qp, qf = h_loc[mid], hf[mid]
        ex_ops, ex_n = _csr_take(_by_key(info, "expert ops", info.op_flat, info.tokens.size),
                                 qf)
        ex_part = np.repeat(hidx[qp], ex_n)
        ex, found = _positions(gkey, ex_part * n_ops + ex_ops)
        ex = ex[found]                  # a part holds the experts of its own layers only
        s_ = np.repeat(sv[mid], ex_n)[found]
        dp, dr = np.nonzero(fracs[hidx] != 1.0)
        dp = hidx[dp]
        d_ops, d_n = _csr_take(_by_key(info, "moe io ops", np.where(
            (oc == disp_code) | (oc == comb_code), info.op_lrow, -1), info.tokens.shape[0]),
            dr)
        d_part = np.repeat(dp, d_n)
        dc, found = _positions(gkey, d_part * n_ops + d_ops)
        dc = dc[found]                  # a stage's parts hold their own layers
        fr = np.repeat(fracs[dp, dr], d_n)[found]
        mpos = np.concatenate([ex, dc]).astype(np.int64)
        if len(mpos):
            mkind = np.concatenate([np.ones(len(ex)), np.full(len(dc), 2.0)])
            mval = np.concatenate([s_, fr])
            _, minv = S._unique_columns([raw[G[mpos]].astype(np.float64),
                                         sci[part_of[mpos]].astype(np.float64), mkind, mval])
            cid[mpos] = nbase + minv
            fields.modify(mpos, _scale_modified(info, oc, G, mpos, mkind, mval,
                                                sci[part_of[mpos]], list(scs)))
    col = _FIELD
    WF = ot.weight_fraction[G]
    bs = np.array([r.bshare != 1.0 for r in rs], bool)
    if bs.any():                # an embedding lookup reads a row per token it looks up
        emb = np.flatnonzero(oc[G] == OP["embed"])
        emb = emb[bs[part_of[emb]]]
        WF[emb] = np.minimum(1.0, fields.read([col["tokens"]], emb)[0]
                             / max(model.vocab_size, 1))
    # ---- 2. memory plans
    p_all, in_all, out_all = fields.read([col["p_active"], col["in_elems"], col["out_elems"]])
    pe = np.where(p_all > 0, p_all, 1.0)
    foot = (in_all + out_all) / pe * aB
    # every part's tensors (its share of their bytes), each op's tensor among its part's,
    # and the tensors' densities, for all parts at once
    tcnt = np.array([len(x[1]) for x in sel], np.int64)
    t_off = np.concatenate([[0], np.cumsum(tcnt)])
    T_all = np.concatenate([x[1] for x in sel]) if n else np.zeros(0, np.int64)
    t_part = np.repeat(np.arange(n), tcnt)
    tp_p = np.array([float(r.tp) for r in rs])[t_part]
    kvd_p = np.array([float(_kv_div(model, r.tp)) for r in rs])[t_part]
    etp_p = np.array([float(r.etp) for r in rs])[t_part]
    t_div = np.where(info.t_cls[T_all] == 1, tp_p, np.where(info.t_cls[T_all] == 2, kvd_p,
                                                             1.0))
    t_div = np.where(info.t_flat[T_all] >= 0, etp_p, t_div)
    tb_all = low.t_bytes[T_all] / t_div
    tn_all = low.t_numel[T_all] / t_div
    bits_all = low.bits[T_all]
    tensor_g = ot.tensor[G]
    NT = len(low.t_bytes) + 1
    # each op's tensor among its part's: a table of positions filled and cleared per part
    # (index -1, no tensor, is never filled); the sorted search it replaces when an op's
    # tensor is not among its part's
    loc = np.full(NT, -1, np.int64)
    tl_g = np.empty(len(G), np.int64)
    for p in range(n):
        Tp = T_all[t_off[p]:t_off[p + 1]]
        loc[Tp] = np.arange(len(Tp))
        tl_g[off[p]:off[p + 1]] = loc[tensor_g[off[p]:off[p + 1]]]
        loc[Tp] = -1
    if np.any((tl_g < 0) & (tensor_g >= 0)):
        tl_g = np.searchsorted(t_part * NT + T_all, part_of * NT + tensor_g) - t_off[part_of]
        tl_g = np.where(tensor_g >= 0, tl_g, -1)
    has_t = tl_g >= 0
    dens_all = np.bincount((t_off[part_of] + tl_g)[has_t], weights=(p_all * WF)[has_t],
                           minlength=len(T_all)).astype(np.float64)
    dens_all[info.t_vector[T_all]] = 1.0
    tb = [tb_all[t_off[p]:t_off[p + 1]] for p in range(n)]
    tn = [tn_all[t_off[p]:t_off[p + 1]] for p in range(n)]
    tbits = [bits_all[t_off[p]:t_off[p + 1]] for p in range(n)]
    t_loc = [tl_g[off[p]:off[p + 1]] for p in range(n)]
    is_att_g = oc[G] == att_code
    # every part's KV caches (its attention ops, in order) and activation working set
    ai_all = np.flatnonzero(is_att_g)
    kv_res, kv_elems = fields.read([col["kv_resident"], col["kv_elems"]], ai_all)
    kv_den = np.where(kv_res > 0, kv_elems / np.where(kv_res > 0, kv_res, 1), 0.0)
    kv_b = kv_res * kvB
    a_ptr = np.searchsorted(ai_all, off)
    full = cnt > 0
    work = np.zeros(n)
    if full.any():
        work[full] = np.maximum(np.maximum.reduceat(foot, off[:-1][full]), 0.0)
    reqs = [(tb[p], dens_all[t_off[p]:t_off[p + 1]], kv_b[a_ptr[p]:a_ptr[p + 1]],
             kv_den[a_ptr[p]:a_ptr[p + 1]], float(work[p])) for p in range(n)]
    try:
        plans = plan_memories(hw, reqs, opts.residency, opts.staging_fraction)
    except DoesNotFitError as e:
        i, part = labels[getattr(e, "index", 0)]
        raise DoesNotFitError(f"part {i} ({_describe(part)}): {e}") from None
    # ---- 3. plan classes and the level shares of every op's weights / KV cache
    pcs: dict = {}
    pc = np.empty(n, np.int64)
    items_all = np.concatenate([q.item_fraction for q in plans])
    i_off = np.concatenate([[0], np.cumsum([len(q.item_fraction) for q in plans])])
    row_vec, inv = _item_rows(items_all)
    ctx_w = np.zeros(len(G), np.int64)          # 0: no weight; else 1 + row id
    for p, q in enumerate(plans):
        # everything of a plan an op's costs read besides its own weights' levels
        pc[p] = pcs.setdefault((q.staging.tobytes(), q.act_reserve.tobytes(),
                                q.act_levels.tobytes(), q.stage_w, q.stage_a, q.stage_o,
                                q.policy, q.cache_level, q.cache_room), len(pcs))
    # every op's item in its part's plan: its tensor, or for attention its part's KV cache
    # after the weights (the n-th attention op of a part: item n_weights + n); all at once
    item = tl_g.copy()
    ai = np.flatnonzero(is_att_g)
    if len(ai):
        a_cnt = np.bincount(part_of[ai], minlength=n)
        a_off = np.concatenate([[0], np.cumsum(a_cnt)])
        pa = part_of[ai]
        n_w = np.array([q.n_weights for q in plans], np.int64)
        item[ai] = n_w[pa] + (np.arange(len(ai)) - a_off[pa])
    if len(inv):
        j = np.minimum(i_off[part_of] + np.maximum(item, 0), len(inv) - 1)
        ctx_w = np.where(item >= 0, inv[j] + 1, 0).astype(np.int64)
    rows_id = row_vec
    n_ctx = len(pcs) * (len(rows_id) + 1)
    okey = (cid * n_ctx + pc[part_of] * (len(rows_id) + 1) + ctx_w).astype(np.int64)
    # ---- 4. phases of every part, units (a phase, or the phases of one MoE layer)
    # (a part's phases: its ops by depth, as lower.phases orders them; all parts at once)
    porder, gptr, pgroup, ph_part, canon, h = _phases(
        part_of, _take(ot.depth, G), _take(ot.group, G), okey, n,
        int(ot.depth.max(initial=0)) + 1)
    NP = len(pgroup)
    if NP == 0:
        return None
    nph = np.bincount(ph_part, minlength=n).astype(np.int64)
    ph_off = np.concatenate([[0], np.cumsum(nph)])
    ph_len = np.diff(gptr)
    new_part = np.r_[True, ph_part[1:] != ph_part[:-1]]
    u_start = new_part | (pgroup < 0) | np.r_[True, pgroup[1:] != pgroup[:-1]]
    ustarts = np.flatnonzero(u_start)
    grouped_u = pgroup[ustarts] >= 0
    # a MoE layer's phases must be consecutive: one unit per (part, group)
    gk = ph_part[ustarts[grouped_u]] * (int(pgroup.max()) + 1) + pgroup[ustarts[grouped_u]]
    if len(np.unique(gk)) != len(gk):
        return None
    unit_of_ph = np.cumsum(u_start) - 1
    pos_in_unit = np.arange(NP) - ustarts[unit_of_ph]
    ph_of_op = np.repeat(np.arange(NP), ph_len)
    ck = okey[canon]
    # ---- 5. unit hashes and the distinct units (a hash picks the candidates; the checks
    # below and of every op's key compare them exactly: a collision falls back)
    seed = 0x243F6A8885A308D3
    h = _mix(h + _mix(pos_in_unit.astype(np.uint64), seed ^ 0xA4093822299F31D0)
             + _mix(ph_len.astype(np.uint64), seed ^ 0x082EFA98EC4E6C89), seed)
    hu = np.add.reduceat(h, ustarts) + _mix(grouped_u.astype(np.uint64) * _U64(2) + _U64(1),
                                            seed ^ 0x452821E638D01377)
    _, rep, inv = np.unique(hu, return_index=True, return_inverse=True)
    inv = inv.ravel()
    ru = rep[inv]                                   # the representative of every unit
    uend = np.r_[ustarts[1:], NP]
    ulen = uend - ustarts
    if not (np.array_equal(ulen[ru], ulen) and np.array_equal(grouped_u[ru], grouped_u)):
        return None
    rph = ustarts[ru][unit_of_ph] + pos_in_unit      # representative phase of every phase
    if not np.array_equal(ph_len[rph], ph_len):
        return None
    # the table of distinct units: representatives in order of first appearance
    reps = np.sort(rep)
    uph = _ranges(ustarts[reps], ulen[reps])
    u_ph_len = ph_len[uph]
    u_ptr = np.concatenate([[0], np.cumsum(u_ph_len)]).astype(np.int64)
    u_pos = _ranges(gptr[uph], u_ph_len)
    u_ph_index = np.full(NP, -1, np.int64)
    u_ph_index[uph] = np.arange(len(uph))
    ph_map = u_ph_index[rph]                         # every phase -> its distinct phase
    op_map_c = u_ptr[ph_map][ph_of_op] + (np.arange(len(canon)) - gptr[ph_of_op])
    a_u = canon[u_pos]                               # part op of every distinct op
    if not np.array_equal(okey[a_u][op_map_c], ck):
        return None
    op_map = np.empty(len(G), np.int64)
    op_map[canon] = op_map_c
    unit_id = np.repeat(np.arange(len(reps)), ulen[reps])     # distinct unit of uph
    # ---- 6. the stages over the distinct units
    lw_u, pl_u, spaces = _unit_tables(hw, hp, low, info, G, fields.read(None, a_u), a_u, part_of, t_loc, tb, tn,
                                      tbits, plans, pc, row_vec, ctx_w, u_ptr,
                                      np.where(grouped_u[unit_of_ph[uph]], unit_id, -1), foot,
                                      WF)
    job = S.gemm_inputs(hw, hp, lw_u, pl_u, spaces)
    fr = S.run_engine(hp, mask, low.a_bits, [job], opts.full_pipeline)[0]
    net = S.net_params(hw, hp)
    oth = S.other_ops(hw, hp, lw_u, pl_u, job)
    sch = S.schedule_step(hp, lw_u, job, fr, oth, net, placement=False)
    tr = S.chosen_traffic(hp, lw_u, pl_u, job, fr, oth, sch)
    noc = S.noc_step(hp, lw_u.ot, oth, sch, net)
    # the efficiency model's kernel overheads per distinct phase; the step's host overhead
    # goes to each part's first phase below
    T_over = S.overheads(replace(hp, step_cyc=0.0), lw_u.ot, sch, pl_u.op_wbits).T
    step_cyc = hp.step_cyc if hp.kernel_cyc > 0 or hp.step_cyc > 0 else 0.0
    # ---- 7. every part from the distinct units: the sums a result reports, per distinct
    # phase, then per part over the distinct phases of its phases;
    # the per-op columns of a part are built only when its op_data is read
    um, fm = op_map, ph_map
    nd = len(uph)
    ot_u = lw_u.ot
    is_att_u = ot_u.op_code == att_code
    vcyc_u = np.where(oth.vec | is_att_u, oth.vcyc, 0.0)
    stall_u = np.maximum(sch.t1 - tr.comp - vcyc_u, 0.0)
    a_idx = min(max(low.a_bits, 1), 16)
    pe_u = ot_u.macs * hp.cpm[np.clip(pl_u.op_wbits, 1, 16), a_idx]
    en_u = S.step_energy(hw, hp, ot_u, pl_u.op_wbits, low.a_bits, tr, noc, 0.0)
    ov_u = np.zeros(len(a_u))
    ov_u[job.e] = tr.overflow
    offc = hp.offchip
    offl_u = ((pl_u.home == offc) & (ot_u.p_active > 0)) if offc >= 0 else np.zeros(len(a_u))
    L = len(hp.names)
    per_op_cols = np.column_stack([tr.rd, tr.wr, tr.comp, stall_u, vcyc_u, ot_u.macs, pe_u,
                                   en_u.e_mac, en_u.e_vec, noc.noc_j, en_u.op_j, en_u.e_mem,
                                   ov_u, offl_u])
    S_d = (np.add.reduceat(per_op_cols, u_ptr[:-1], axis=0) if nd
           else np.zeros((0, per_op_cols.shape[1])))
    S_d = np.column_stack([S_d, noc.noc_t + noc.red_t])
    tot = _part_sums(np.ascontiguousarray(S_d), fm, ph_off)
    # phase times of every part (the step's host overhead on each part's first phase)
    T_o = T_over[fm]
    if step_cyc:
        T_o[ph_off[:-1][nph > 0]] += step_cyc
    cc_g = _take(sch.cc, fm)
    layer_g = _take(ot.layer, G)
    lay = np.maximum.reduceat(layer_g[porder], gptr[:-1]) if len(porder) else layer_g[:0]
    static_w = hw.energy.static_power_w
    nl = int(ot.model.total_layers)
    lat_all = _layer_latencies(lay, T_o, ph_off, nl, hp.clock_hz)

    def per_op(p, o, f_):
        """Part ``p``'s per-op columns (names, placement on the cores, dataflow, tiles,
        energies, ...): built when its ``op_data`` is first read."""
        def build():
            a, b = o.start, o.stop
            Gp, ump = G[o], um[o]
            f_o = fields.read([col["m"], col["k"], col["n"], col["macs"]], np.arange(a, b))
            core, span, start, end = wrap_around(gptr[f_.start:f_.stop + 1] - a,
                                                 porder[a:b] - a, _take(sch.T, fm[f_]),
                                                 cc_g[f_], _take(sch.t1, ump))
            return {
                "names": info.names[Gp], "op_code": _take(oc, Gp),
                "layer": _take(ot.layer, Gp), "expert": _take(ot.expert, Gp),
                "role": info.roles[Gp], "tensor": tl_g[o],
                "tensor_names": info.t_names[sel[p][1]],
                "w_bits": _take(pl_u.op_wbits, ump), "a_bits": low.a_bits,
                "p_active": p_all[o], "m": f_o[0], "k": f_o[1], "n": f_o[2],
                "macs": f_o[3],
                "core": core, "cores": span, "start_cycle": start, "end_cycle": end,
                "cycles": _take(sch.t1, ump), "compute_cycles": _take(tr.comp, ump),
                "vector_cycles": _take(vcyc_u, ump), "stall_cycles": _take(stall_u, ump),
                "dataflow": _take(tr.dflow, ump), "k_slices": _take(noc.ksl, ump),
                "tiles": _take(tr.tiles, ump), "bytes": _take(tr.rd, ump) + _take(tr.wr, ump),
                "energy_j": _take(en_u.op_j, ump), "level_names": hp.names}
        return _LazyOps.deferred(build)

    out = []
    for p in range(n):
        o = slice(off[p], off[p + 1])
        f_ = slice(ph_off[p], ph_off[p + 1])
        a0 = off[p]
        T_p = T_o[f_]
        x = tot[p]
        rd_s, wr_s = x[:L], x[L:2 * L]
        comp, stall, vec, macs, pe, e_mac, e_vec, noc_j, op_j = x[2 * L:2 * L + 9]
        e_mem = x[2 * L + 9:3 * L + 9]
        n_over, n_off, noc_cyc = x[3 * L + 9:3 * L + 12]
        t = S.Totals(rd_s + wr_s, rd_s, wr_s, float(comp), float(stall), float(vec),
                     float(macs), float(pe), int(n_over + 0.5), int(n_off + 0.5))
        latency = float(T_p.sum()) / hp.clock_hz
        static = static_w * latency
        res = S.result_of(hw, hp, ot, model_name, plans[p], t, T_p, cc_g[f_],
                          float(noc_cyc), None, float(op_j + static),
                          S.energy_breakdown(hp, e_mac, e_vec, noc_j, e_mem, static),
                          float(tb[p].sum()), per_op(p, o, f_), porder[a0:off[p + 1]] - a0,
                          gptr[ph_off[p]:ph_off[p + 1] + 1] - a0,
                          lat_all[p])
        out.append(res.with_power_check(hw.energy.rated_power_w, hw.name))
    return out


def _layer_latencies(lay: np.ndarray, T: np.ndarray, ph_off: np.ndarray, nl: int,
                     clock_hz: float) -> list[np.ndarray]:
    """:func:`accelsim.sim.stages.layer_latency` of every part from the highest layer of
    each of its phases (``lay``, -1 for none) and their times ``T`` (part ``p``'s phases
    ``ph_off[p]:ph_off[p + 1]``): a phase before a part's first layer counts for the slot
    before the layers, one after its last for the slot after."""
    n = len(ph_off) - 1
    nph = np.diff(ph_off)
    part = np.repeat(np.arange(n), nph)
    has = lay >= 0
    idx = np.arange(len(lay))
    first = np.full(n, len(lay), np.int64)     # each part's first phase with a layer
    some = nph > 0
    if some.any():
        first[some] = np.minimum.reduceat(np.where(has, idx, len(lay)), ph_off[:-1][some])
    slot = np.where(has, lay + 1, np.where(idx < first[part], 0, nl + 1)).astype(np.int64)
    w = nl + 2
    out = np.bincount(part * w + slot, weights=T / clock_hz, minlength=n * w)
    return [row.copy() for row in out.reshape(n, w)]


class _LazyOps(dict):
    """A part's ``op_data``: a dict whose entries are built on first use (the system layer
    reads only a part's totals; building ~3,000-op columns for every part it never reads
    was a large share of a multi-device step). Copies and pickles are plain dicts."""

    __slots__ = ("_build",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._build = None

    @classmethod
    def deferred(cls, build) -> "_LazyOps":
        d = cls()
        d._build = build
        return d

    def _fill(self) -> None:
        build = self._build
        if build is not None:
            self._build = None
            dict.update(self, build())

    def __reduce__(self):
        self._fill()
        return dict, (dict.copy(self),)

    def __eq__(self, other):
        self._fill()
        if isinstance(other, _LazyOps):
            other._fill()
        return dict.__eq__(self, other)

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None


def _filled(name):
    base = getattr(dict, name)

    def method(self, *args, **kwargs):
        self._fill()
        return base(self, *args, **kwargs)
    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


for _name in ("__getitem__", "__iter__", "__len__", "__contains__", "__repr__", "__or__",
              "__ior__", "__setitem__", "__delitem__", "__reversed__", "keys", "values",
              "items", "get", "copy", "pop", "popitem", "setdefault", "update", "clear"):
    setattr(_LazyOps, _name, _filled(_name))
del _name


def _item_rows(items: np.ndarray) -> tuple[list, np.ndarray]:
    """The distinct rows of ``items`` (every plan's item fractions, [items x levels]) and
    each row's position among them (rows compared by value, -0.0 equal to 0.0). A row with
    one level at 1.0 and the others at 0.0 (an item wholly in one level: nearly all of
    them) is told by that level; the rest are compared row by row."""
    L = items.shape[1]
    code = _one_level(np.ascontiguousarray(items, dtype=np.float64))
    rest = np.flatnonzero(code < 0)
    rid = code.copy()
    first_r = np.zeros(0, np.int64)
    if len(rest):
        first_r, inv_r = S._unique_rows(items[rest])
        rid[rest] = L + inv_r
    used = np.zeros(L + len(first_r), bool)
    used[rid] = True
    dense = np.cumsum(used) - 1
    rows = [np.eye(L)[j] if j < L else items[rest[first_r[j - L]]] + 0.0
            for j in np.flatnonzero(used)]
    return rows, dense[rid].astype(np.int64)


@njit(cache=True)
def _one_level(a):  # pragma: no cover - numba
    """Per row of ``a``: the level holding all of it (one entry 1.0, the others 0.0), else
    -1."""
    n, L = a.shape
    out = np.full(n, -1, np.int64)
    for i in range(n):
        k = -1
        for j in range(L):
            x = a[i, j]
            if x == 1.0 and k == -1:
                k = j
            elif x != 0.0:
                k = -2
                break
        if k >= 0:
            out[i] = k
    return out


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lens)])``."""
    lens = np.asarray(lens, np.int64)
    if not len(lens):
        return np.zeros(0, np.int64)
    return (np.repeat(np.asarray(starts, np.int64) - np.cumsum(lens) + lens, lens)
            + np.arange(int(lens.sum())))


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``a[idx]`` along the first axis for indices known to be valid (``numpy.take`` without
    the bounds check: several times faster for rows of a 2-D array)."""
    return np.take(a, idx, axis=0, mode="clip")


def _dispatch_fraction(info: _Info, share: np.ndarray) -> np.ndarray:
    """Per MoE row: the share of the routed token copies a part's dispatch and combine move
    (as :func:`_scale_moe_traffic`); ``share`` may be a stack of parts' shares."""
    tok = info.tokens
    tot = tok.sum(axis=1)
    # a stack of shares (parts x rows x experts) gives one row of fractions per part
    return np.where(tot > 0, (tok * share).sum(axis=-1) / np.where(tot > 0, tot, 1.0), 0.0)


def _held_fractions(info: _Info, part: np.ndarray, flat: np.ndarray, share: np.ndarray,
                    n: int) -> np.ndarray:
    """:func:`_dispatch_fraction` of ``n`` parts from their held experts only (part
    ``part[i]`` holds expert ``flat[i]`` at ``share[i] > 0``): a row per part. A part that
    holds every expert of a row whole moves all of its copies (1.0 exactly, as the sum over
    the row gives)."""
    R, E = info.tokens.shape
    tot = info.tokens.sum(axis=1)
    row = flat // E
    k = part * R + row
    num = np.bincount(k, weights=info.tokens.ravel()[flat] * share, minlength=n * R)
    whole = np.bincount(k, weights=(share == 1.0).astype(np.float64), minlength=n * R) == E
    out = np.where(tot > 0, num.reshape(n, R) / np.where(tot > 0, tot, 1.0), 0.0)
    return np.where(whole.reshape(n, R) & (tot > 0), 1.0, out)


def _scale_modified(info: _Info, op_code: np.ndarray, G: np.ndarray, pos: np.ndarray,
                    kind: np.ndarray, val: np.ndarray, sc: np.ndarray,
                    scs: list) -> np.ndarray:
    """The scaled fields (one row per field of :data:`_FLOATS`, a column per op) of the part
    ops ``pos`` rescaled from their unscaled rows as :func:`_sub_table` does: an expert
    share (``kind`` 1) or a dispatch fraction (2), then tensor parallelism."""
    ti = G[pos]
    raw = np.ascontiguousarray(info.floats[ti].T)
    f = {k: raw[j] for j, k in enumerate(_FLOATS)}
    k1 = kind == 1
    _scale_experts(f, np.where(k1, val, 1.0), np.where(k1, np.arange(len(pos)), -1))
    k2 = kind == 2
    disp = k2 & (op_code[ti] == OP["dispatch"])
    comb = k2 & (op_code[ti] == OP["combine"])
    f["out_elems"][disp] *= val[disp]
    f["in_elems"][comb] *= val[comb]
    f["vector_ops"][comb] *= val[comb]
    out = np.empty_like(raw)
    for c, (tp, kvd, etp, _) in enumerate(scs):     # no batch op is modified
        m = np.flatnonzero(sc == c)
        if not len(m):
            continue
        g = {k: v[m] for k, v in f.items()}
        _scale_tp(g, info.op_cls[ti[m]], float(tp), float(kvd))
        _scale_tp(g, info.e_cls[ti[m]], float(etp), 1.0)
        for j, k in enumerate(_FLOATS):
            out[j, m] = g[k]
    return out


class _Fields:
    """The scaled fields (:data:`_FLOATS`) of every part op (``G``: its op in the table;
    ``sc_op``: its scale class, a key of ``scs``), read field by field for the ops that need
    them: from the whole table's scaled copy of each class (or, for a class with few ops,
    their own rows), with the rows of the ops a part's shares modify (:meth:`modify`) in
    place of those."""

    def __init__(self, info: _Info, scs: list, sc_op: np.ndarray, G: np.ndarray):
        self.G, self.sc_op, self.nsc = G, sc_op, len(scs)
        self.tables, self.own = [], []
        n_ops = len(info.floats)
        for c, key in enumerate(scs):
            m = np.flatnonzero(sc_op == c) if len(scs) > 1 else None
            Gm = G if m is None else G[m]
            if 4 * len(Gm) < n_ops:     # a few ops: scaled on their own
                own = np.full(len(G), -1, np.int64)
                own[slice(None) if m is None else m] = np.arange(len(Gm))
                self.tables.append(None)
                self.own.append((own, _scaled(info, *key, ops=Gm)))
            else:                       # the whole table's, kept
                self.tables.append(_scaled(info, *key))
                self.own.append(None)
        self.mod = None

    def modify(self, pos: np.ndarray, rows: np.ndarray) -> None:
        """The part ops ``pos`` have the fields ``rows`` (one column per op)."""
        self.mod = np.full(len(self.G), -1, np.int64)
        self.mod[pos] = np.arange(len(pos))
        self.mod_rows = rows

    def read(self, js, pos: np.ndarray | None = None) -> np.ndarray:
        """Fields ``js`` (indices into :data:`_FLOATS`; None: all) of the part ops ``pos``
        (None: all), one row per field."""
        js = list(range(len(_FLOATS))) if js is None else list(js)
        Gp = self.G if pos is None else self.G[pos]
        out = np.empty((len(js), len(Gp)))
        if self.nsc == 1:
            cls = [(0, None)]
        else:
            sc = self.sc_op if pos is None else self.sc_op[pos]
            cls = [(c, np.flatnonzero(sc == c)) for c in range(self.nsc)]
        for c, m in cls:
            if m is not None and not len(m):
                continue
            tab = self.tables[c]
            if tab is not None:
                g = Gp if m is None else Gp[m]
                for r, j in enumerate(js):
                    if m is None:
                        np.take(tab[j], g, out=out[r], mode="clip")     # valid indices
                    else:
                        out[r, m] = tab[j, g]
            else:
                own, rows = self.own[c]
                q = own if pos is None else own[pos]
                q = q if m is None else q[m]
                for r, j in enumerate(js):
                    if m is None:
                        out[r] = rows[j, q]
                    else:
                        out[r, m] = rows[j, q]
        if self.mod is not None:
            mk = self.mod if pos is None else self.mod[pos]
            w = np.flatnonzero(mk >= 0)
            if len(w):
                out[:, w] = self.mod_rows[js][:, mk[w]]
        return out


def _unit_tables(hw, hp, low: S.Lowered, info: _Info, G, F, a_u, part_of, t_loc, tb, tn,
                 tbits, plans, pc, row_vec, ctx_w, u_ptr, u_pgroup, foot, WF):
    """:class:`~accelsim.sim.stages.Lowered` and ``Placement`` of the distinct units' ops
    (``a_u``: the part op each is; ``F``: their scaled fields, a row per field of
    :data:`_FLOATS`; one tensor of its own per op with a weight) and the tile spaces of the
    memory-plan classes (``spaces`` of :func:`~accelsim.sim.stages.gemm_inputs`)."""
    ot = low.ot
    ti, pu = G[a_u], part_of[a_u]
    nu = len(a_u)
    t_off = np.concatenate([[0], np.cumsum([len(x) for x in tb])])
    tl = np.concatenate(t_loc)[a_u]
    has = tl >= 0
    g = (t_off[pu] + tl)[has]
    tensor = np.full(nu, -1, np.int64)
    tensor[has] = np.arange(int(has.sum()))
    bits_t = np.concatenate(tbits)[g]
    names = info.names[ti]
    nph = len(u_ptr) - 1
    depth = np.repeat(np.arange(nph), np.diff(u_ptr))
    op_code = ot.op_code[ti]
    fl = F
    ot_u = replace(ot, names=names, index=_LazyIndex(names), op_code=op_code,
                   layer=ot.layer[ti], expert=ot.expert[ti], role=info.roles[ti],
                   tensor=tensor, weight_fraction=WF[a_u], depth=depth,
                   group=u_pgroup[depth] if nph else depth, att_k=ot.att_k[ti],
                   tensor_density=np.ones(len(g)), phase_order=np.arange(nu, dtype=np.int64),
                   phase_ptr=u_ptr, phase_group=u_pgroup.astype(np.int64),
                   **{k: np.ascontiguousarray(fl[j]) for j, k in enumerate(_FLOATS)})
    lw = S.Lowered(ot_u, bits_t, np.concatenate(tb)[g], np.concatenate(tn)[g], low.a_bits,
                   low.kv_bits)
    # the placement of every op under its part's memory plan (one per plan class)
    foot_u = foot[a_u]
    cls = pc[pu]
    home = np.zeros(nu, np.int64)
    class_plans = []
    for c in range(int(pc.max()) + 1):
        q = plans[int(np.flatnonzero(pc == c)[0])]
        class_plans.append(q)
        m = cls == c
        if m.any():
            home[m] = act_home(foot_u[m], q.act_reserve, q.act_levels, hp.offchip, q.stage_a)
    w = ctx_w[a_u]
    rv = np.stack(row_vec) if row_vec else np.zeros((1, len(hp.names)))
    wfrac = np.where((w > 0)[:, None], rv[np.maximum(w - 1, 0)], 0.0)
    op_wbits = np.zeros(nu, dtype=low.bits.dtype)
    op_wbits[has] = bits_t
    op_wbits = np.where(op_code == OP["attention"], low.kv_bits, op_wbits)
    pl = S.Placement(plans[0], foot_u, np.flatnonzero(op_code == OP["attention"]), home,
                     wfrac, op_wbits)
    return lw, pl, (class_plans, cls)
