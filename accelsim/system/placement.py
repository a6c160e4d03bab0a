"""Precision-aware expert placement over the devices of an expert-parallel group.

Under a mixed allocation the routed experts of a layer have different sizes (bytes) and
different expected loads (tokens routed to them, from the scenario's routing). For each MoE
layer of a pipeline stage, :func:`place_experts` assigns every expert to one of the ``ep``
devices:

1. experts in decreasing expected load (ties: larger first, then lower index);
2. each goes to the device with the least load so far in this layer (ties: least memory
   used, then lowest index) among the devices where it fits: the device's bytes so far plus
   the expert plus a reserve for the layers still to place (their expert bytes spread evenly
   over the ``ep`` devices) stay within the device's capacity; when no device fits with the
   reserve, the reserve is dropped; when none fits at all,
   :class:`~accelsim.errors.DoesNotFitError`.

This is Graham's LPT (longest processing time first) rule with a memory constraint.
Without the constraint binding, LPT's largest device load is at most ``4/3 - 1/(3 ep)`` times
the optimum (Graham, SIAM J. Appl. Math. 17(2), 1969); with it, the only guarantee is that
no device exceeds its capacity (the placement is checked, not assumed). With ``replicate``,
hot experts are then copied: while the most loaded device has an expert with one copy and
another device has room for it and copying it (each copy serves half its tokens) lowers the
largest load, it is copied there (two copies at most per expert).

Examples
--------
>>> import numpy as np
>>> nbytes = np.array([[10., 10., 10., 10.]])
>>> load = np.array([[4., 3., 2., 1.]])
>>> p = place_experts(nbytes, load, ep=2, capacity=np.array([100., 100.]))
>>> p.share[:, 0, :]              # device x expert: 4+1 on device 0, 3+2 on device 1
array([[1., 0., 0., 1.],
       [0., 1., 1., 0.]])
>>> p.load.tolist(), p.memory.tolist(), p.imbalance
([5.0, 5.0], [20.0, 20.0], 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..errors import DoesNotFitError

__all__ = ["Placement", "place_experts"]


@dataclass(frozen=True)
class Placement:
    """Where the experts of one stage's MoE layers live.

    ``share[d, r, e]``: the share of expert ``e``'s tokens in layer ``r`` (of the stage) that
    device ``d`` serves (copies split the tokens; columns sum to 1). ``memory[d]``: expert
    bytes on ``d``; ``load[d]``: expected tokens ``d`` serves summed over the layers;
    ``layer_load[d, r]``. ``slack``: the least room (bytes) any device had beyond the
    layer being placed and the reserve, over the layers, when memory never bound (the same
    placement then holds on any device whose capacity is at most ``slack`` smaller);
    ``-inf`` when it did bind or hot experts were copied.
    """

    share: np.ndarray
    memory: np.ndarray
    load: np.ndarray
    layer_load: np.ndarray
    slack: float = -np.inf

    @property
    def imbalance(self) -> float:
        """Largest over mean expected load (1.0: balanced), over the stage's layers."""
        mean = float(self.load.mean())
        return float(self.load.max() / mean) if mean > 0 else 1.0

    @property
    def layer_imbalance(self) -> np.ndarray:
        """Per layer: largest over mean device load."""
        mean = self.layer_load.mean(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(mean > 0, self.layer_load.max(axis=0) / mean, 1.0)


def place_experts(nbytes: np.ndarray, load: np.ndarray, ep: int, capacity: np.ndarray, *,
                  replicate: bool = False, what: str = "the device",
                  layer_memo: dict | None = None) -> Placement:
    """Place experts of ``R`` layers over ``ep`` devices (see the module docstring).

    Parameters
    ----------
    nbytes, load : ndarray, shape (R, E)
        Bytes and expected tokens of every routed expert of the stage's MoE layers.
    ep : int
        Devices of the expert-parallel group.
    capacity : ndarray, shape (ep,)
        Bytes each device has left for routed experts.
    replicate : bool
        Copy hot experts when memory allows.
    layer_memo : dict, optional
        Shared between calls: the placement of a layer where no device can run out of room
        (it depends on the layer's bytes and loads, ``ep`` and the devices' bytes so far
        relative to the least used one only).
    """
    nbytes = np.asarray(nbytes, dtype=float)
    load = np.asarray(load, dtype=float)
    R, E = nbytes.shape
    cap = np.asarray(capacity, dtype=float).reshape(ep)
    share = np.zeros((ep, R, E))
    used = np.zeros(ep)
    layer_load = np.zeros((ep, R))
    tol = 1e-9 * max(1.0, float(cap.max(initial=1.0)))
    after = np.concatenate([np.cumsum(nbytes.sum(axis=1)[::-1])[::-1][1:], [0.0]]) / ep
    if not replicate and R:     # every layer in one compiled call (the same placement)
        devs, used, layer_load, slack, bad_r, bad_e = _lpt_layers(
            nbytes, load, cap, after, tol, ep)
        share = np.zeros((ep, R, E))
        r_ix, e_ix = np.nonzero(devs >= 0)
        share[devs[r_ix, e_ix], r_ix, e_ix] = 1.0
        if bad_r >= 0:
            raise DoesNotFitError(
                f"expert {bad_e} of MoE layer {bad_r} of the stage "
                f"({float(nbytes[bad_r, bad_e]):.4g} B) fits no device of the {ep}-device "
                f"expert group: {what} has {float((cap - used).max()):.4g} B left at most")
        return Placement(share, used, layer_load.sum(axis=1), layer_load, float(slack))
    same: dict = {} if layer_memo is None else layer_memo
    slack = np.inf
    for r in range(R):
        reserve = float(after[r])
        # a layer placed where no device can run out of room places exactly like an
        # identical layer before it that met the devices' bytes so far in the same pattern
        # (the rule compares bytes used, never their level: a shift changes nothing)
        room = float((cap - used - reserve).min()) - float(nbytes[r].sum())
        free = room >= 0
        slack = min(slack, room) if free else -np.inf
        key = (ep, nbytes[r].tobytes(), load[r].tobytes(),
               (used - used.min()).tobytes()) if free else None
        if key is not None and key in same:
            share[:, r, :], dl, du = same[key]
            layer_load[:, r] = dl
            used += du
            if replicate and ep > 1:
                _replicate(share, used, layer_load[:, r], r, nbytes[r], load[r], cap - reserve,
                           tol)
            continue
        used0 = used.copy()
        order = np.lexsort((np.arange(E), -nbytes[r], -load[r]))
        dev = np.zeros(E, np.int64)
        L = np.zeros(ep)
        bad = _lpt_layer(order, nbytes[r], load[r], used, L, cap, reserve, tol, dev)
        layer_load[:, r] = L
        L = layer_load[:, r]
        if bad >= 0:
            raise DoesNotFitError(
                f"expert {bad} of MoE layer {r} of the stage ({float(nbytes[r, bad]):.4g} B) "
                f"fits no device of the {ep}-device expert group: {what} has "
                f"{float((cap - used).max()):.4g} B left at most")
        share[dev[order], r, order] = 1.0
        if key is not None:
            same[key] = (share[:, r, :].copy(), L.copy(), used - used0)
        if replicate and ep > 1:
            _replicate(share, used, L, r, nbytes[r], load[r], cap - reserve, tol)
    return Placement(share, used, layer_load.sum(axis=1), layer_load,
                     -np.inf if replicate else float(slack))


@njit(cache=True)
def _lpt_layer(order, nbytes, load, used, L, cap, reserve, tol, dev):  # pragma: no cover
    """One layer's LPT placement (module docstring), in place on ``used`` and ``L`` (the
    layer's load per device): each expert of ``order`` to the device with the least (load,
    bytes used, index) among those it fits with ``reserve``, else without it; its device in
    ``dev``. Returns -1, or the first expert that fits no device (``used``/``L`` as then)."""
    ep = used.shape[0]
    for e in order:
        b = nbytes[e]
        best = -1
        for attempt in range(2):
            for d in range(ep):
                room = (used[d] + b + reserve <= cap[d] + tol if attempt == 0
                        else used[d] + b <= cap[d] + tol)
                if room and (best < 0 or L[d] < L[best] or (L[d] == L[best] and (
                        used[d] < used[best] or (used[d] == used[best] and d < best)))):
                    best = d
            if best >= 0:
                break
        if best < 0:
            return e
        dev[e] = best
        used[best] += b
        L[best] += load[e]
    return -1


@njit(cache=True)
def _lpt_layers(nbytes, load, cap, after, tol, ep):  # pragma: no cover - numba
    """:func:`_lpt_layer` of every layer in turn (``after[r]``: the bytes per device the
    later layers need at least, kept in reserve), as :func:`place_experts` places them
    without replicas (a layer where no device can run out of room, identical to an earlier
    one that met the same pattern of bytes used, placed like it, as the layer memo does):
    ``(device of every expert [layers x experts], used, layer_load, slack, failed layer,
    failed expert)`` (-1, -1 when every expert fits; ``used`` then as at the failure)."""
    R, E = nbytes.shape
    share = np.full((R, E), -1, np.int64)      # the device of every expert (-1: none yet)
    used = np.zeros(ep)
    layer_load = np.zeros((ep, R))
    slack = np.inf
    dev = np.zeros(E, np.int64)
    rel = np.zeros((R, ep))         # per layer placed where no device could run out: the
    du = np.zeros((R, ep))          # bytes used so far less their least, and what it added
    free_at = np.zeros(R, np.bool_)
    for r in range(R):
        reserve = after[r]
        room = np.inf
        for d in range(ep):
            room = min(room, cap[d] - used[d] - reserve)
        room -= nbytes[r].sum()
        slack = min(slack, room) if room >= 0 else -np.inf
        if room >= 0:
            # a layer where no device can run out places exactly like an identical layer
            # before it that met the devices' bytes so far in the same pattern
            low = used.min()
            for d in range(ep):
                rel[r, d] = used[d] - low
            free_at[r] = True
            hit = -1
            for q in range(r):
                if free_at[q] and _same_layer(nbytes, load, rel, q, r):
                    hit = q
                    break
            if hit >= 0:
                share[r, :] = share[hit, :]
                layer_load[:, r] = layer_load[:, hit]
                for d in range(ep):
                    du[r, d] = du[hit, d]
                    used[d] += du[hit, d]
                continue
        used0 = used.copy()
        # by load, then bytes (both descending), then index: two stable sorts
        o1 = np.argsort(-nbytes[r], kind="mergesort")
        order = o1[np.argsort(-load[r][o1], kind="mergesort")]
        L = np.zeros(ep)
        bad = _lpt_layer(order, nbytes[r], load[r], used, L, cap, reserve, tol, dev)
        if bad >= 0:
            return share, used, layer_load, slack, r, bad
        layer_load[:, r] = L
        for e in range(E):
            share[r, e] = dev[e]
        for d in range(ep):
            du[r, d] = used[d] - used0[d]
    return share, used, layer_load, slack, -1, -1


@njit(cache=True)
def _same_layer(nbytes, load, rel, q, r):  # pragma: no cover - numba
    """Whether layers ``q`` and ``r`` have the same experts' bytes and loads and met the
    same pattern of bytes used (``rel``)."""
    for e in range(nbytes.shape[1]):
        if nbytes[q, e] != nbytes[r, e] or load[q, e] != load[r, e]:
            return False
    for d in range(rel.shape[1]):
        if rel[q, d] != rel[r, d]:
            return False
    return True


def _replicate(share, used, L, r, nbytes, load, room, tol) -> None:
    E = nbytes.shape[0]
    for _ in range(E):
        d = int(np.argmax(L))
        hosted = [e for e in range(E) if share[d, r, e] == 1.0]
        if not hosted:
            return
        e = max(hosted, key=lambda x: (load[x], -x))
        half = load[e] / 2.0
        cand = [t for t in range(L.shape[0])
                if t != d and share[t, r, e] == 0 and used[t] + nbytes[e] <= room[t] + tol]
        if not cand:
            return
        t = min(cand, key=lambda x: (L[x], used[x], x))
        new = L.copy()
        new[d] -= half
        new[t] += half
        if new.max() >= L.max() - 1e-12 * max(1.0, L.max()):
            return
        share[d, r, e] = share[t, r, e] = 0.5
        used[t] += nbytes[e]
        L[:] = new
