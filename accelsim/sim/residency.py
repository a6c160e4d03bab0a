"""Residency: where weights, the KV cache and activations live in the memory hierarchy.

Capacity of every on-chip level is budgeted in this order (docs/simulator.md):

1. **Tile staging.** The innermost level holding weights (``stage_w``), activations
   (``stage_a``) and outputs (``stage_o``) are the staging buffers the MAC array works from.
   Each keeps ``staging_fraction`` of its capacity for double-buffered tiles; a level that
   holds nothing but outputs (an accumulator) is all staging.
2. **Activations.** The largest activation working set of any op (its input plus output at
   the activation bits) is reserved next, innermost level first.
3. **Weights and KV cache**, by a registered policy:

   ``hot-first``
       tensors sorted by expected reads per byte per step (a routed expert's weights are read
       with probability ``p_active``, so routing frequencies decide), ties in model order;
       the hottest fill the innermost levels first; a tensor may straddle two levels.
   ``offchip``
       everything in the off-chip level (the baseline of a weight-streaming accelerator).
   ``must-fit``
       every weight on chip (hottest innermost), else :class:`~accelsim.errors.DoesNotFitError`
       naming the shortfall; the KV cache then goes hot-first where there is room.

Whatever does not fit on chip goes off chip; a chip without an off-chip level (NorthPole,
Stripes) that cannot hold the model raises :class:`~accelsim.errors.DoesNotFitError`.

Examples
--------
>>> sorted(RESIDENCY_POLICIES)
['hot-first', 'must-fit', 'offchip']
>>> get_policy("hot_first").name
'hot-first'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numba import njit

from ..errors import ConfigError, DoesNotFitError, did_you_mean
from ..units import format_quantity

__all__ = ["ResidencyPolicy", "HotFirst", "Offchip", "MustFit", "RESIDENCY_POLICIES",
           "register_residency", "get_policy", "MemoryPlan", "PlacementRequest", "plan_memory",
           "plan_memories", "fill_levels"]


@dataclass(frozen=True)
class PlacementRequest:
    """What a policy places: items (weight tensors, then one KV cache per attention op)."""

    bytes: np.ndarray        # per item
    density: np.ndarray      # expected reads per byte per step
    is_kv: np.ndarray        # bool per item
    free: np.ndarray         # bytes per level available after staging and activations
    allow_w: np.ndarray      # bool per level: may hold weights
    allow_kv: np.ndarray     # bool per level: may hold the KV cache
    onchip: np.ndarray       # bool per level
    offchip: int             # index of the off-chip level, -1 if none


class ResidencyPolicy(Protocol):
    """Places items in levels: returns fractions [items x levels] (rows sum to 1 where the
    item fits) and leaves unplaced bytes as a row sum below 1."""

    name: str
    description: str

    def place(self, req: PlacementRequest) -> np.ndarray: ...


@njit(cache=True)
def fill_levels(order, sizes, kinds, free, allow):  # pragma: no cover - numba
    """Greedy fill: items in ``order`` take what is left of the allowed levels, innermost
    first, possibly straddling. ``allow[kind, level]``. Returns fractions [items, levels]."""
    frac = np.zeros((sizes.shape[0], free.shape[0]))
    _fill_into(order, sizes, kinds, free, allow, frac)
    return frac


@njit(cache=True)
def _place_empty(allow, kind, row):  # pragma: no cover - numba
    """A zero-byte item lives at its kind's innermost allowed level (``row``: its
    fractions)."""
    for lv in range(allow.shape[1]):
        if allow[kind, lv]:
            row[lv] = 1.0
            break


@njit(cache=True)
def _fill_into(order, sizes, kinds, free, allow, frac):  # pragma: no cover - numba
    """:func:`fill_levels` writing its fractions into ``frac`` (zeros on entry)."""
    nl = free.shape[0]
    left = free.copy()
    for j in range(order.shape[0]):
        i = order[j]
        need = sizes[i]
        if need <= 0.0:
            _place_empty(allow, kinds[i], frac[i])
            continue
        rest = need
        for lv in range(nl):
            if rest <= 0.0:
                break
            if not allow[kinds[i], lv] or left[lv] <= 0.0:
                continue
            take = min(rest, left[lv])
            frac[i, lv] = take / need
            left[lv] -= take
            rest -= take


def _hot_order(req: PlacementRequest, subset: np.ndarray | None = None) -> np.ndarray:
    idx = np.arange(req.bytes.shape[0]) if subset is None else np.flatnonzero(subset)
    return idx[np.argsort(-req.density[idx], kind="stable")]


def _allow(req: PlacementRequest, onchip_only: bool = False) -> np.ndarray:
    a = np.stack([req.allow_w, req.allow_kv])
    if onchip_only:
        a = a & req.onchip[None, :]
    return a


class HotFirst:
    name = "hot-first"
    description = ("hottest tensors (expected reads per byte per step) in the innermost "
                   "levels; the rest further out")

    def place(self, req: PlacementRequest) -> np.ndarray:
        return fill_levels(_hot_order(req), req.bytes.astype(np.float64),
                           req.is_kv.astype(np.int64), req.free.astype(np.float64),
                           _allow(req))


class Offchip:
    name = "offchip"
    description = "all weights and the KV cache in the off-chip memory"

    def place(self, req: PlacementRequest) -> np.ndarray:
        if req.offchip < 0:
            raise ConfigError.single("the 'offchip' residency policy needs an off-chip memory "
                                     "level, and this accelerator has none", key="residency",
                                     value="offchip")
        frac = np.zeros((req.bytes.shape[0], req.free.shape[0]))
        frac[:, req.offchip] = 1.0
        return frac


class MustFit:
    name = "must-fit"
    description = "every weight on chip (else an error); the KV cache hot-first"

    def place(self, req: PlacementRequest) -> np.ndarray:
        sizes = req.bytes.astype(np.float64)
        kinds = req.is_kv.astype(np.int64)
        allow = _allow(req, onchip_only=True)
        wmask = ~req.is_kv
        frac_w = fill_levels(_hot_order(req, wmask), sizes, kinds, req.free.astype(np.float64),
                             allow)
        left = req.free - (frac_w * sizes[:, None]).sum(axis=0)
        short = float((sizes * (1.0 - frac_w.sum(axis=1)))[wmask].sum())
        if short > 0.5:
            raise _NotOnChip(short, float(sizes[wmask].sum()))
        frac_kv = fill_levels(_hot_order(req, req.is_kv), sizes, kinds,
                              np.maximum(left, 0.0), _allow(req))
        return np.where(wmask[:, None], frac_w, frac_kv)


class _NotOnChip(Exception):
    def __init__(self, short: float, need: float):
        self.short, self.need = short, need


#: Residency policies by name.
RESIDENCY_POLICIES: dict[str, ResidencyPolicy] = {}


def register_residency(policy: ResidencyPolicy) -> ResidencyPolicy:
    """Add a policy to :data:`RESIDENCY_POLICIES` (by its ``name``)."""
    RESIDENCY_POLICIES[policy.name] = policy
    return policy


for _p in (HotFirst(), Offchip(), MustFit()):
    register_residency(_p)


def get_policy(name: str | ResidencyPolicy) -> ResidencyPolicy:
    """A policy by name (``hot-first``, ``offchip``, ``must-fit``; ``_`` for ``-`` is fine)."""
    if not isinstance(name, str):
        return name
    key = name.strip().lower().replace("_", "-")
    if key in RESIDENCY_POLICIES:
        return RESIDENCY_POLICIES[key]
    raise ConfigError.single(f"unknown residency policy{did_you_mean(name, RESIDENCY_POLICIES)}"
                             f"; policies: {', '.join(sorted(RESIDENCY_POLICIES))}",
                             key="residency", value=name)


@dataclass(frozen=True, eq=False)
class MemoryPlan:
    """Where everything lives. Arrays over levels are innermost first (``hw.memory`` order).

    ``item_fraction[i, l]``: share of item ``i`` (weight tensors of the model's
    :class:`~accelsim.sim.lower.TensorTable`, then one KV cache per attention op) in level
    ``l``. ``staging`` and ``act_reserve`` are chip-total bytes per level; ``act_cumulative``
    the activation bytes that fit in level ``l`` and all levels inside it.
    """

    policy: str
    level_names: tuple[str, ...]
    stage_w: int
    stage_a: int
    stage_o: int
    staging: np.ndarray
    act_reserve: np.ndarray
    act_levels: np.ndarray
    item_fraction: np.ndarray
    n_weights: int
    weight_bytes_by_level: np.ndarray
    kv_bytes_by_level: np.ndarray
    #: the chip-scope cache that serves re-reads (``Accelerator.cache_level``, -1: none) and
    #: its bytes for chip tiles (its capacity less any tile staging it keeps)
    cache_level: int = -1
    cache_room: float = 0.0

    @property
    def weight_fraction(self) -> np.ndarray:
        return self.item_fraction[: self.n_weights]

    @property
    def kv_fraction(self) -> np.ndarray:
        return self.item_fraction[self.n_weights:]


def _innermost(hw, kind: str, fallback: int) -> int:
    for i, m in enumerate(hw.memory):
        if kind in m.holds:
            return i
    return fallback


def plan_memory(hw, weight_bytes: np.ndarray, weight_density: np.ndarray,
                kv_bytes: np.ndarray, kv_density: np.ndarray, act_working_set: float,
                policy: str | ResidencyPolicy = "hot-first", staging_fraction: float = 0.25,
                ) -> MemoryPlan:
    """Budget every level and place weights and KV cache with ``policy``.

    Raises
    ------
    DoesNotFitError
        ``must-fit`` with weights that do not fit on chip, or any policy when the model does
        not fit in the whole hierarchy.
    """
    pol = get_policy(policy)
    b = _Budget(hw, staging_fraction)
    cap, staging = b.cap, b.staging
    act, items_bytes, req = b.request(weight_bytes, weight_density, kv_bytes, kv_density,
                                      act_working_set)
    try:
        frac = pol.place(req)
    except _NotOnChip as e:
        raise DoesNotFitError(_must_fit_message(hw, e, cap, staging, act, req)) from None
    placed = frac * items_bytes[:, None]
    unplaced = items_bytes - placed.sum(axis=1)
    if unplaced.sum() > 0.5 + 1e-9 * items_bytes.sum():
        raise DoesNotFitError(_no_room_message(hw, items_bytes, len(weight_bytes), req.free,
                                               req))
    nw = len(weight_bytes)
    return MemoryPlan(pol.name, b.names, b.sw, b.sa, b.so, staging, act,
                      b.act_levels.copy(), frac, nw, placed[:nw].sum(axis=0),
                      placed[nw:].sum(axis=0), b.x, b.room)


class _Budget:
    """What a chip's memory plans share: capacities, staging, the levels' roles."""

    def __init__(self, hw, staging_fraction: float):
        mem = hw.memory
        nl = self.nl = len(mem)
        cap = self.cap = np.array([hw.level_capacity(m) for m in mem], dtype=np.float64)
        onchip = self.onchip = np.array([m.scope != "offchip" for m in mem])
        off = self.off = next((i for i, m in enumerate(mem) if m.scope == "offchip"), -1)
        sw = self.sw = _innermost(hw, "weights", 0)
        sa = self.sa = _innermost(hw, "activations", sw)
        so = self.so = _innermost(hw, "outputs", sa)
        staging = self.staging = np.zeros(nl)
        for lv in {sw, sa, so}:
            if onchip[lv]:
                only_outputs = set(mem[lv].holds) <= {"outputs"}
                staging[lv] = cap[lv] * (1.0 if only_outputs else staging_fraction)
        free = np.where(onchip, cap - staging, np.where(np.arange(nl) == off, cap, 0.0))
        # a cache holds no placed data: it serves re-reads of what lives further out
        x = self.x = hw.cache_level
        self.room = float(free[x]) if x >= 0 else 0.0
        if x >= 0:
            free[x] = 0.0
        self.free = free
        self.holds_act = np.array(["activations" in m.holds for m in mem])
        self.allow_w = np.array(["weights" in m.holds and i != x for i, m in enumerate(mem)])
        self.allow_kv = np.array(["kv" in m.holds and i != x for i, m in enumerate(mem)])
        self.act_levels = (self.holds_act & (onchip | (np.arange(nl) == off))
                           & (np.arange(nl) != x))
        self.names = tuple(m.name for m in mem)

    def activations(self, act_working_set) -> np.ndarray:
        """Activation bytes per level: the working set in the innermost on-chip levels that
        hold activations (not the cache), as far as they have room."""
        nl, free, onchip, x = self.nl, self.free, self.onchip, self.x
        act = np.zeros(nl)
        need = float(act_working_set)
        for lv in range(nl):
            if need <= 0:
                break
            if self.holds_act[lv] and onchip[lv] and lv != x:
                act[lv] = min(need, free[lv])
                need -= act[lv]
        return act

    def request(self, weight_bytes, weight_density, kv_bytes, kv_density, act_working_set):
        """(activation bytes per level, items' bytes, the placement request)."""
        onchip = self.onchip
        act = self.activations(act_working_set)
        free = self.free - act
        items_bytes = np.concatenate([weight_bytes, kv_bytes]).astype(np.float64)
        req = PlacementRequest(
            bytes=items_bytes, density=np.concatenate([weight_density, kv_density]),
            is_kv=np.concatenate([np.zeros(len(weight_bytes), bool),
                                  np.ones(len(kv_bytes), bool)]),
            free=free, allow_w=self.allow_w.copy(), allow_kv=self.allow_kv.copy(),
            onchip=onchip.copy(), offchip=self.off)
        return act, items_bytes, req


@njit(cache=True)
def _col_sums(x, bounds):  # pragma: no cover - numba
    """Per block ``b`` (rows ``bounds[b]:bounds[b + 1]`` of ``x`` [rows x levels]) its column
    sums, added row after row as ``numpy.sum(axis=0)`` adds them."""
    out = np.zeros((bounds.shape[0] - 1, x.shape[1]))
    for b in range(bounds.shape[0] - 1):
        for i in range(bounds[b], bounds[b + 1]):
            for j in range(x.shape[1]):
                out[b, j] += x[i, j]
    return out


def plan_memories(hw, requests, policy: str | ResidencyPolicy = "hot-first",
                  staging_fraction: float = 0.25) -> list[MemoryPlan]:
    """:func:`plan_memory` of many requests on one chip (each ``(weight_bytes,
    weight_density, kv_bytes, kv_density, act_working_set)``), the chip's budget worked out
    once and the plans' byte totals summed in one pass: equal to ``[plan_memory(hw, *r,
    policy, staging_fraction) for r in requests]``.

    Raises
    ------
    DoesNotFitError
        For the first request that does not fit (as :func:`plan_memory` would), with
        attribute ``index``: its position in ``requests``.
    """
    pol = get_policy(policy)
    bud = _Budget(hw, staging_fraction)
    nl = bud.nl
    made, fails = [], {}
    whole = None                # (items' bytes, fractions) of all requests, when at hand
    if type(pol) is HotFirst and requests:      # every request's fill in one compiled call
        made, whole = _hot_first_many(bud, requests)
    for i, r in enumerate(requests if not made else ()):
        act, items_bytes, req = bud.request(*r)
        try:
            frac = pol.place(req)
        except _NotOnChip as e:
            fails[i] = e
            frac = np.zeros((len(items_bytes), nl))
        made.append((act, items_bytes, req, frac, len(r[0])))
    if not made:
        return []
    sizes = [len(m[1]) for m in made]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    if whole is not None:
        items_all, frac_all = whole
    else:
        items_all = np.concatenate([m[1] for m in made])
        frac_all = np.concatenate([m[3] for m in made]).astype(np.float64, copy=False)
    placed_all = frac_all * items_all[:, None]
    # (its sum is screened below against half a byte: the order of the additions is moot)
    unplaced_all = items_all - placed_all @ np.ones(nl)
    # weights, then KV cache, of every request: blocks of rows summed column-wise
    wb = np.empty(2 * len(made) + 1, np.int64)
    wb[0:-1:2] = bounds[:-1]
    wb[1::2] = bounds[:-1] + np.array([m[4] for m in made], np.int64)
    wb[-1] = bounds[-1]
    if nl > 1:
        cols = _col_sums(placed_all, wb)
    else:           # one level: numpy's own (pairwise) sum of a column
        cols = np.array([placed_all[wb[j]:wb[j + 1]].sum(axis=0) for j in range(len(wb) - 1)]
                        ).reshape(len(wb) - 1, nl)
    # requests that may leave bytes unplaced (a loose screen of the sums; each is then
    # checked as plan_memory checks it)
    nz = bounds[:-1] < bounds[1:]
    starts = bounds[:-1][nz]
    loose = np.zeros(len(made), bool)
    if len(starts):
        loose[nz] = (np.add.reduceat(np.abs(unplaced_all), starts)
                     > 0.25 + 0.5e-9 * np.add.reduceat(items_all, starts))
    out = []
    for i, (act, items_bytes, req, frac, nw) in enumerate(made):
        if i in fails:
            err = DoesNotFitError(_must_fit_message(hw, fails[i], bud.cap, bud.staging, act,
                                                    req))
            err.index = i
            raise err
        unplaced = unplaced_all[bounds[i]:bounds[i + 1]]
        if loose[i] and unplaced.sum() > 0.5 + 1e-9 * items_bytes.sum():
            if req is None:
                req = bud.request(*requests[i])[2]
            err = DoesNotFitError(_no_room_message(hw, items_bytes, nw, req.free, req))
            err.index = i
            raise err
        out.append(MemoryPlan(pol.name, bud.names, bud.sw, bud.sa, bud.so,
                              bud.staging.copy(), act, bud.act_levels.copy(), frac, nw,
                              cols[2 * i], cols[2 * i + 1], bud.x, bud.room))
    return out


def _hot_first_many(bud: _Budget, requests) -> list[tuple]:
    """:class:`HotFirst` placements of many requests in one compiled fill: per request
    ``(activations, items' bytes, None, fractions, weights)`` as :func:`plan_memories`
    makes them request by request (the request itself is built only for an error), and
    all requests' items' bytes and fractions together."""
    n = len(requests)
    acts = [bud.activations(r[4]) for r in requests]
    sizes, dens, kinds = [], [], []
    for wb, wd, kb, kd, _ in requests:
        sizes += [wb, kb]
        dens += [wd, kd]
        kinds += [np.zeros(len(wb), np.int64), np.ones(len(kb), np.int64)]
    sizes_all = np.concatenate(sizes).astype(np.float64)
    dens_all = np.concatenate(dens).astype(np.float64)
    cnt = [len(r[0]) + len(r[2]) for r in requests]
    bounds = np.concatenate([[0], np.cumsum(cnt)]).astype(np.int64)
    free = np.ascontiguousarray(np.stack([bud.free - a for a in acts]), dtype=np.float64)
    allow = np.stack([bud.allow_w, bud.allow_kv])
    frac = _fill_many(dens_all, sizes_all, np.concatenate(kinds), bounds, free, allow)
    return [(acts[i], sizes_all[bounds[i]:bounds[i + 1]], None,
             frac[bounds[i]:bounds[i + 1]], len(requests[i][0])) for i in range(n)], (
        sizes_all, frac)


@njit(cache=True)
def _fill_many(density, sizes, kinds, bounds, free, allow):  # pragma: no cover - numba
    """:class:`HotFirst` of every request ``r`` (items ``bounds[r]:bounds[r + 1]``, with
    ``free[r]`` left per level): each request's items hottest first, ties in item order (a
    stable sort, as :func:`_hot_order`), through :func:`fill_levels`; unsorted when no level
    can run out (every item then lies whole in its innermost allowed level with room, as the
    fill puts it in any order). Fractions [items, levels]."""
    nl = free.shape[1]
    out = np.zeros((sizes.shape[0], nl))
    for r in range(bounds.shape[0] - 1):
        a, b = bounds[r], bounds[r + 1]
        # when every item fits whole in its kind's innermost allowed level with room (with
        # a margin for rounding), no level runs out and the order is moot: no sort
        first = np.full(2, -1, np.int64)
        for k in range(2):
            for lv in range(nl):
                if allow[k, lv] and free[r, lv] > 0.0:
                    first[k] = lv
                    break
        need = np.zeros(nl)
        moot = True
        for i in range(a, b):
            if sizes[i] > 0.0:
                if first[kinds[i]] < 0:
                    moot = False
                    break
                need[first[kinds[i]]] += sizes[i]
        if moot:
            for lv in range(nl):
                if need[lv] > free[r, lv] * (1.0 - 1e-9):
                    moot = False
        if moot:
            for i in range(a, b):
                if sizes[i] > 0.0:
                    out[i, first[kinds[i]]] = 1.0
                else:
                    _place_empty(allow, kinds[i], out[i])
            continue
        if _fill_hottest(density[a:b], sizes[a:b], kinds[a:b], free[r], allow, out[a:b]):
            continue
        order = np.argsort(-density[a:b], kind="mergesort")
        _fill_into(order, sizes[a:b], kinds[a:b], free[r], allow, out[a:b])
    return out


@njit(cache=True)
def _fill_hottest(density, sizes, kinds, free, allow, out):  # pragma: no cover - numba
    """The hot-first fill of one request sorting only its hottest items, when that gives
    the full sort's fractions; False (``out`` untouched) otherwise. Both kinds must be
    allowed in the same levels; of those with room, all but the outermost (``F`` bytes in
    all) run out and the outermost does not (with a margin for rounding). The items at or
    above a density threshold whose bytes exceed ``F`` (with a margin) then fill, in the
    sorted order, every inner level and spill into the outermost, and every colder item
    lies whole in the outermost level, as the full fill would put it in any order."""
    nl = free.shape[0]
    for lv in range(nl):
        if allow[0, lv] != allow[1, lv]:
            return False
    last = -1
    inner = 0.0
    for lv in range(nl):
        if allow[0, lv] and free[lv] > 0.0:
            if last >= 0:
                inner += free[last]
            last = lv
    if last < 0 or inner <= 0.0:
        return False
    total = 0.0
    dmax = 0.0
    for i in range(sizes.shape[0]):
        if sizes[i] > 0.0:
            total += sizes[i]
            dmax = max(dmax, density[i])
    if total - inner > free[last] * (1.0 - 1e-9) or total <= inner * (1.0 + 1e-9):
        return False
    # the threshold: buckets of density below the hottest (16 per halving), walked down
    # until the items above the bucket's floor hold more than the inner levels
    if not dmax > 0.0:
        return False
    k = 16                              # buckets per halving of the density
    nb = 64 * k
    acc = np.zeros(nb + 1)
    for i in range(sizes.shape[0]):
        if sizes[i] > 0.0:
            d = density[i]
            j = nb
            if d > 0.0:
                j = min(nb, max(0, int(np.floor(k * np.log2(dmax / d)))))
            acc[j] += sizes[i]
    want = inner * (1.0 + 1e-9)
    got = 0.0
    cut = -1
    for j in range(nb):
        got += acc[j]
        if got > want:
            cut = j
            break
    if cut < 0:
        return False
    top = 0.0                           # the items at the hottest density alone
    for i in range(sizes.shape[0]):
        if density[i] == dmax:
            top += max(sizes[i], 0.0)
    if top > want:                      # ... suffice: they go in item order, no sort
        floor = np.nextafter(dmax, -np.inf)
        order = np.flatnonzero(density == dmax)
    else:
        floor = dmax / 2.0 ** ((cut + 2) / k)      # every item of buckets 0..cut is above
        cand = np.flatnonzero(density > floor)
        held = 0.0
        for i in cand:
            held += max(sizes[i], 0.0)
        if not held > want:
            return False
        order = cand[np.argsort(-density[cand], kind="mergesort")]
    _fill_into(order, sizes, kinds, free, allow, out)
    for i in range(sizes.shape[0]):
        if density[i] > floor:
            continue
        if sizes[i] > 0.0:
            out[i, last] = 1.0
        else:
            _place_empty(allow, kinds[i], out[i])
    return True


def _size(x: float) -> str:
    return format_quantity(float(x), "size")


def _must_fit_message(hw, e, cap, staging, act, req) -> str:
    parts = [f"{m.name} {_size(c)}" + (f" less {_size(s)} tile staging" if s else "")
             + (f" less {_size(a)} activations" if a else "")
             for m, c, s, a, ok in zip(hw.memory, cap, staging, act, req.allow_w & req.onchip)
             if ok]
    room = float((req.free * (req.allow_w & req.onchip)).sum())
    levels = "; ".join(parts) or "no on-chip level holds weights"
    return (f"must-fit: the weights need {_size(e.need)} at this allocation but {hw.name} has "
            f"{_size(room)} on chip for weights ({levels}), {_size(e.short)} short; use "
            f"fewer bits, a smaller model, or --residency hot-first")


def _no_room_message(hw, items_bytes, nw, free, req) -> str:
    w, kv = float(items_bytes[:nw].sum()), float(items_bytes[nw:].sum())
    names = [m.name for m in hw.memory]
    w_lv = [names[i] for i in np.flatnonzero(req.allow_w)]
    room_w = float((free * req.allow_w).sum())
    room = float((free * (req.allow_w | req.allow_kv)).sum())
    if req.offchip < 0:
        where = "it has no off-chip memory"
    elif not req.allow_w[req.offchip]:
        where = (f"its off-chip memory does not hold weights, and the levels that do "
                 f"({', '.join(w_lv)}) have {_size(room_w)} left")
    else:
        where = f"its memory holds {_size(room)} for weights and KV cache"
    return (f"the weights ({_size(w)}) and KV cache ({_size(kv)}) do not fit on {hw.name}: "
            f"{where}; use fewer bits, a smaller model, a shorter context or smaller batch, "
            f"or an accelerator with more memory")
