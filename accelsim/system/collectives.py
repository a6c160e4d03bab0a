"""Collective communication costs from alpha-beta models, per link topology.

A link level has a latency ``a`` per message (alpha) and a bandwidth ``bw`` per direction of
a port (beta = 1/bw). For a group of ``n`` devices and a buffer of ``B`` bytes per device
(the whole vector being reduced or gathered; for all-to-all, the bytes each device holds for
all destinations together):

=================  =======================================  ================================
collective         ring / chain                             switch / fully_connected
=================  =======================================  ================================
reduce-scatter     (n-1) a + (n-1)/n B/bw                   ceil(log2 n) a + (n-1)/n B/bw
all-gather         (n-1) a + (n-1)/n B/bw                   ceil(log2 n) a + (n-1)/n B/bw
all-reduce         2(n-1) a + 2(n-1)/n B/bw                 2 ceil(log2 n) a + 2(n-1)/n B/bw
all-to-all         (n-1) a + max link load / bw             a + max port load / bw
point-to-point     a + B/bw                                 a + B/bw
=================  =======================================  ================================

Ring all-reduce is reduce-scatter then all-gather (Patarasuk & Yuan, JPDC 2009; Thakur,
Rabenseifner & Gropp, IJHPCA 2005); on a switch the latency term is that of recursive
halving / doubling (Rabenseifner's algorithm, same paper) and the bandwidth term the same
``2(n-1)/n B``. A chain embeds the ring (the closing hop uses the reverse direction of the
bidirectional links), so reduce-scatter, all-gather and all-reduce cost as on a ring. For
all-to-all the load of each directed link (ring, chain: shortest-path routing, ties split
over both directions) or of each port (switch: the larger of a device's bytes out and in) is
computed from the traffic matrix; for a uniform all-to-all (``B/n`` to every other device)
that is ``(n-1)/n B`` per port on a switch, ``sum_d min(d, n-d) B / (2n)`` per link on a
ring and ``floor(n/2) ceil(n/2) B / n`` on the middle link of a chain.

A group that spans nodes is hierarchical (the slower level's link is charged for the part
that crosses nodes): all-reduce = reduce-scatter inside each node over ``m`` devices,
all-reduce across the ``k`` nodes of ``B/m`` per device, all-gather inside the node;
reduce-scatter and all-gather likewise; all-to-all splits the traffic matrix into the pairs
inside a node (intra-node links) and across nodes (inter-node links), the two levels working
concurrently (time = the larger). A node-level port (``per: node``) is shared by the
node's devices that cross it at once: the bandwidth each sees is divided by their number.

Energy: every byte that crosses a link (each hop for multi-hop routes) times that level's
energy per byte. ``bytes`` reported per level are those bytes.

Examples
--------
>>> from accelsim.system.spec import Link
>>> link = Link(bandwidth="100 GB/s", latency="1 us", topology="ring")
>>> c = flat_cost("all_reduce", 4, 1e9, link)      # 2*3 us + 2*(3/4)*1e9/1e11 s
>>> round(c.time_s, 9), c.bytes                    # 4 devices x 1.5 GB sent
(0.015006, 6000000000.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .spec import Link

__all__ = ["Cost", "flat_cost", "all_reduce", "reduce_scatter", "all_gather", "all_to_all",
           "point_to_point", "alltoall_link_load", "group_layout", "COLLECTIVES",
           "all_to_all_many"]

COLLECTIVES = ("all_reduce", "reduce_scatter", "all_gather", "all_to_all", "p2p")


@dataclass(frozen=True)
class Cost:
    """Time of a collective and the bytes (every link hop) and energy per link level."""

    time_s: float = 0.0
    bytes_by_level: dict = field(default_factory=dict)
    energy_j: float = 0.0
    time_by_level: dict = field(default_factory=dict)

    @property
    def bytes(self) -> float:
        return float(sum(self.bytes_by_level.values()))

    def __add__(self, other: "Cost") -> "Cost":
        """Sequential composition: times add."""
        keys = set(self.bytes_by_level) | set(other.bytes_by_level)
        tkeys = set(self.time_by_level) | set(other.time_by_level)
        return Cost(self.time_s + other.time_s,
                    {k: self.bytes_by_level.get(k, 0.0) + other.bytes_by_level.get(k, 0.0)
                     for k in keys},
                    self.energy_j + other.energy_j,
                    {k: self.time_by_level.get(k, 0.0) + other.time_by_level.get(k, 0.0)
                     for k in tkeys})

    def scaled(self, f: float) -> "Cost":
        """``f`` repetitions (f may be fractional: an expected count)."""
        return Cost(self.time_s * f, {k: v * f for k, v in self.bytes_by_level.items()},
                    self.energy_j * f, {k: v * f for k, v in self.time_by_level.items()})


def _ring_like(topology: str) -> bool:
    return topology in ("ring", "chain")


def flat_cost(kind: str, n: int, nbytes: float, link: Link, *, level: str = "link",
              share: int = 1) -> Cost:
    """Cost of a collective over ``n`` devices on one link level (closed forms above).

    ``nbytes``: the per-device buffer ``B`` (all-to-all: uniform, ``B/n`` to each other
    device; p2p: the message). ``share``: devices sharing one port at once (``per: node``).
    """
    if n <= 1 or nbytes <= 0:
        return Cost()
    a, bw = link.latency_s, link.bandwidth_bytes_per_s / max(share, 1)
    lg = math.ceil(math.log2(n))
    ring = _ring_like(link.topology)
    if kind in ("reduce_scatter", "all_gather"):
        steps = (n - 1) if ring else lg
        per_dev = (n - 1) / n * nbytes
        t = steps * a + per_dev / bw
        sent = n * per_dev
    elif kind == "all_reduce":
        steps = 2 * (n - 1) if ring else 2 * lg
        per_dev = 2 * (n - 1) / n * nbytes
        t = steps * a + per_dev / bw
        sent = n * per_dev
    elif kind == "all_to_all":
        m = np.full((n, n), nbytes / n)
        np.fill_diagonal(m, 0.0)
        return _alltoall_flat(m, link, level, share)
    elif kind == "p2p":
        t, sent = a + nbytes / bw, nbytes
    else:
        raise ValueError(f"unknown collective {kind!r} (one of {', '.join(COLLECTIVES)})")
    return Cost(t, {level: sent}, sent * link.energy_per_byte_j, {level: t})


def alltoall_link_load(matrix: np.ndarray, topology: str) -> tuple[float, float]:
    """(largest load of one port or directed link, total bytes over all link hops) of a
    traffic matrix ``matrix[i, j]`` = bytes from device ``i`` to ``j`` (diagonal ignored).

    >>> m = np.full((4, 4), 1.0); np.fill_diagonal(m, 0)
    >>> alltoall_link_load(m, "switch")     # 3 bytes out of every port
    (3.0, 12.0)
    >>> alltoall_link_load(m, "ring")       # sum_d min(d, 4-d) = 4 hop-bytes per source
    (2.0, 16.0)
    >>> alltoall_link_load(m, "chain")      # middle link: 2 x 2 pairs x 1 byte
    (4.0, 20.0)
    """
    m = np.array(matrix, dtype=float)
    np.fill_diagonal(m, 0.0)
    n = m.shape[0]
    if topology in ("switch", "fully_connected"):
        return float(max(m.sum(axis=1).max(), m.sum(axis=0).max())), float(m.sum())
    # directed link loads: cw[i] = link i -> i+1, ccw[i] = link i+1 -> i
    cw, ccw = np.zeros(n), np.zeros(n)
    hops_total = 0.0
    for i in range(n):
        for j in range(n):
            b = m[i, j]
            if i == j or b == 0.0:
                continue
            if topology == "chain":
                if j > i:
                    cw[i:j] += b
                else:
                    ccw[j:i] += b
                hops_total += b * abs(j - i)
                continue
            d = (j - i) % n
            fw, bw_ = d, n - d
            if fw < bw_:
                idx = (i + np.arange(fw)) % n
                cw[idx] += b
            elif bw_ < fw:
                idx = (i - 1 - np.arange(bw_)) % n
                ccw[idx] += b
            else:   # a tie: half each way
                cw[(i + np.arange(fw)) % n] += b / 2
                ccw[(i - 1 - np.arange(bw_)) % n] += b / 2
            hops_total += b * min(fw, bw_)
    return float(max(cw.max(), ccw.max())), float(hops_total)


def _alltoall_flat(m: np.ndarray, link: Link, level: str, share: int = 1) -> Cost:
    n = m.shape[0]
    load, hop_bytes = alltoall_link_load(m, link.topology)
    if load <= 0:
        return Cost()
    steps = 1 if link.topology in ("switch", "fully_connected") else n - 1
    t = steps * link.latency_s + load * max(share, 1) / link.bandwidth_bytes_per_s
    return Cost(t, {level: hop_bytes}, hop_bytes * link.energy_per_byte_j, {level: t})


# ----------------------------------------------------------------------------- on a system


def group_layout(system, devices) -> list[list[int]]:
    """The devices of a group, by node (nodes in order)."""
    by: dict[int, list[int]] = {}
    for d in devices:
        by.setdefault(system.node_of(int(d)), []).append(int(d))
    return [by[k] for k in sorted(by)]


def _levels(system, devices):
    layout = group_layout(system, devices)
    k = len(layout)
    m = max(len(g) for g in layout)
    return layout, k, m


def _need(system, level: str) -> Link:
    link = system.link(level)
    if link is None:
        from ..errors import ConfigError
        raise ConfigError.single(f"the group spans devices that need links.{level}",
                                 key=f"links.{level}")
    return link


def _share(link: Link, concurrent: int) -> int:
    return concurrent if link.per == "node" else 1


def _hier(kind: str, system, devices, nbytes: float) -> Cost:
    devices = list(devices)
    if len(devices) <= 1 or nbytes <= 0:
        return Cost()
    layout, k, m = _levels(system, devices)
    if k == 1:
        return flat_cost(kind, m, nbytes, _need(system, "intra_node"), level="intra_node")
    inter = _need(system, "inter_node")
    if m == 1:
        return flat_cost(kind, k, nbytes, inter, level="inter_node",
                         share=_share(inter, 1))
    intra = _need(system, "intra_node")
    across = flat_cost(kind, k, nbytes / m, inter, level="inter_node",
                       share=_share(inter, m)).scaled(1.0)
    # m concurrent groups across nodes: bytes and energy m times, time once
    across = Cost(across.time_s, {lv: b * m for lv, b in across.bytes_by_level.items()},
                  across.energy_j * m, across.time_by_level)
    inside = flat_cost("reduce_scatter" if kind != "all_gather" else "all_gather", m,
                       nbytes, intra, level="intra_node")
    inside = Cost(inside.time_s, {lv: b * k for lv, b in inside.bytes_by_level.items()},
                  inside.energy_j * k, inside.time_by_level)
    if kind == "all_reduce":
        return inside + across + inside   # reduce-scatter, all-reduce across, all-gather
    return inside + across


def all_reduce(system, devices, nbytes: float) -> Cost:
    """All-reduce of ``nbytes`` per device over ``devices`` of ``system`` (hierarchical when
    they span nodes)."""
    return _hier("all_reduce", system, devices, nbytes)


def reduce_scatter(system, devices, nbytes: float) -> Cost:
    return _hier("reduce_scatter", system, devices, nbytes)


def all_gather(system, devices, nbytes: float) -> Cost:
    return _hier("all_gather", system, devices, nbytes)


def all_to_all(system, devices, matrix) -> Cost:
    """All-to-all with traffic ``matrix[i, j]`` bytes from ``devices[i]`` to ``devices[j]``
    (a number: uniform, that many bytes per device spread evenly over the others)."""
    devices = [int(d) for d in devices]
    n = len(devices)
    if n <= 1:
        return Cost()
    if np.isscalar(matrix):
        m = np.full((n, n), float(matrix) / n)
    else:
        m = np.array(matrix, dtype=float)
    np.fill_diagonal(m, 0.0)
    nodes = np.array([system.node_of(d) for d in devices])
    same = nodes[:, None] == nodes[None, :]
    total = Cost()
    parts = []
    if same.any() and (m * same).sum() > 0:
        intra = _need(system, "intra_node")
        worst = Cost()
        for node in np.unique(nodes):
            idx = np.flatnonzero(nodes == node)
            c = _alltoall_flat(m[np.ix_(idx, idx)], intra, "intra_node")
            worst = Cost(max(worst.time_s, c.time_s),
                         {"intra_node": worst.bytes_by_level.get("intra_node", 0.0)
                          + c.bytes_by_level.get("intra_node", 0.0)},
                         worst.energy_j + c.energy_j,
                         {"intra_node": max(worst.time_s, c.time_s)})
        parts.append(worst)
    cross = m * ~same
    if cross.sum() > 0:
        inter = _need(system, "inter_node")
        if inter.per == "device" and inter.topology in ("switch", "fully_connected"):
            # every device its own port into a switched network
            load, _ = alltoall_link_load(cross, "switch")
            t = inter.latency_s + load / inter.bandwidth_bytes_per_s
            b = float(cross.sum())
            parts.append(Cost(t, {"inter_node": b}, b * inter.energy_per_byte_j,
                              {"inter_node": t}))
        else:
            # node to node: one shared port per node (per: node), or m ports in parallel
            # (per: device) along a ring or chain of nodes
            uniq = list(np.unique(nodes))
            pos = np.array([uniq.index(x) for x in nodes])
            agg = np.zeros((len(uniq), len(uniq)))
            np.add.at(agg, (pos[:, None].repeat(n, 1), pos[None, :].repeat(n, 0)), cross)
            ports = 1 if inter.per == "node" else max(int((nodes == u).sum()) for u in uniq)
            c = _alltoall_flat(agg / ports, inter, "inter_node")
            parts.append(Cost(c.time_s, {"inter_node": c.bytes * ports},
                              c.energy_j * ports, c.time_by_level))
    for c in parts:
        total = Cost(max(total.time_s, c.time_s),
                     {k: total.bytes_by_level.get(k, 0.0) + c.bytes_by_level.get(k, 0.0)
                      for k in set(total.bytes_by_level) | set(c.bytes_by_level)},
                     total.energy_j + c.energy_j,
                     {**total.time_by_level, **c.time_by_level})
    return total


def _link_load_many(ms: np.ndarray, topology: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`alltoall_link_load` of a stack ``ms[l, i, j]`` (diagonals already zero):
    arrays ``(load[l], hop bytes[l])``, each element computed by the same operations in the
    same order as the one-matrix call."""
    L, n = ms.shape[0], ms.shape[1]
    if topology in ("switch", "fully_connected"):
        out = np.maximum(ms.sum(axis=2).max(axis=1), ms.sum(axis=1).max(axis=1))
        return out, ms.reshape(L, n * n).sum(axis=1)
    cw, ccw = np.zeros((L, n)), np.zeros((L, n))
    hops_total = np.zeros(L)
    for i in range(n):
        for j in range(n):
            b = ms[:, i, j]
            if i == j or not b.any():
                continue
            # a zero entry adds 0.0, which leaves every running sum as it was
            if topology == "chain":
                if j > i:
                    cw[:, i:j] += b[:, None]
                else:
                    ccw[:, j:i] += b[:, None]
                hops_total += b * abs(j - i)
                continue
            d = (j - i) % n
            fw, bw_ = d, n - d
            if fw < bw_:
                cw[:, (i + np.arange(fw)) % n] += b[:, None]
            elif bw_ < fw:
                ccw[:, (i - 1 - np.arange(bw_)) % n] += b[:, None]
            else:
                cw[:, (i + np.arange(fw)) % n] += (b / 2)[:, None]
                ccw[:, (i - 1 - np.arange(bw_)) % n] += (b / 2)[:, None]
            hops_total += b * min(fw, bw_)
    return np.maximum(cw.max(axis=1), ccw.max(axis=1)), hops_total


def _flat_many(ms: np.ndarray, link: Link, share: int = 1):
    """:func:`_alltoall_flat` of a stack: arrays (time, hop bytes, energy), zero where the
    matrix carries nothing (the one-matrix call's empty ``Cost()``)."""
    n = ms.shape[1]
    load, hop = _link_load_many(ms, link.topology)
    steps = 1 if link.topology in ("switch", "fully_connected") else n - 1
    t = steps * link.latency_s + load * max(share, 1) / link.bandwidth_bytes_per_s
    some = load > 0
    hop = np.where(some, hop, 0.0)
    return np.where(some, t, 0.0), hop, hop * link.energy_per_byte_j


def all_to_all_many(system, devices, matrices) -> list[Cost]:
    """:func:`all_to_all` of many traffic matrices over the same ``devices`` at once
    (``matrices[l, i, j]``: bytes from ``devices[i]`` to ``devices[j]`` in exchange ``l``):
    the list of their costs, equal to ``[all_to_all(system, devices, m) for m in
    matrices]`` (to the last bit but for the order of the sums over a matrix's entries)."""
    devices = [int(d) for d in devices]
    n = len(devices)
    ms = np.array(matrices, dtype=float)
    L = ms.shape[0]
    if n <= 1 or L == 0:
        return [Cost() for _ in range(L)]
    ms[:, np.arange(n), np.arange(n)] = 0.0
    nodes = np.array([system.node_of(d) for d in devices])
    same = nodes[:, None] == nodes[None, :]
    levels = []     # (level, mask of the exchanges that use it, time, bytes, energy)
    if same.any():
        has = (ms * same).reshape(L, n * n).sum(axis=1) > 0
        if has.any():
            intra = _need(system, "intra_node")
            wt, wb, we = np.zeros(L), np.zeros(L), np.zeros(L)
            for node in np.unique(nodes):
                idx = np.flatnonzero(nodes == node)
                t, b, e = _flat_many(ms[:, idx][:, :, idx], intra)
                wt, wb, we = np.maximum(wt, t), wb + b, we + e
            levels.append(("intra_node", has, wt, wb, we))
    cross = ms * ~same
    has = cross.reshape(L, n * n).sum(axis=1) > 0
    if has.any():
        inter = _need(system, "inter_node")
        if inter.per == "device" and inter.topology in ("switch", "fully_connected"):
            load, b = _link_load_many(cross, "switch")
            t = inter.latency_s + load / inter.bandwidth_bytes_per_s
            levels.append(("inter_node", has, t, b, b * inter.energy_per_byte_j))
        else:
            uniq = list(np.unique(nodes))
            pos = np.array([uniq.index(x) for x in nodes])
            k = len(uniq)
            agg = np.zeros((L, k, k))
            for i in range(n):      # the one-matrix np.add.at's order: row by row
                for j in range(n):
                    agg[:, pos[i], pos[j]] += cross[:, i, j]
            ports = 1 if inter.per == "node" else max(int((nodes == u).sum()) for u in uniq)
            t, b, e = _flat_many(agg / ports, inter)
            levels.append(("inter_node", has, t, b * ports, e * ports))
    out = []
    cols = [(lv, has.tolist(), t.tolist(), b.tolist(), e.tolist())
            for lv, has, t, b, e in levels]
    for l in range(L):
        total = Cost()
        for lv, has, t, b, e in cols:
            if not has[l]:
                continue
            total = Cost(max(total.time_s, t[l]),
                         {**total.bytes_by_level,
                          lv: total.bytes_by_level.get(lv, 0.0) + b[l]},
                         total.energy_j + e[l], {**total.time_by_level, lv: t[l]})
        out.append(total)
    return out


def point_to_point(system, src: int, dst: int, nbytes: float) -> Cost:
    """One message of ``nbytes`` from device ``src`` to ``dst`` (the inter-node link when
    they sit in different nodes)."""
    if src == dst or nbytes <= 0:
        return Cost()
    level = "intra_node" if system.node_of(src) == system.node_of(dst) else "inter_node"
    return flat_cost("p2p", 2, nbytes, _need(system, level), level=level)

