"""Searching parallelism plans and device counts: ``accelsim plan``.

Every plan of :func:`~accelsim.system.plan.enumerate_plans` with ``dp = 1`` on up to the
allowed number of devices is laid out (:func:`~accelsim.system.simulate.prepare`; plans
whose experts find no room are dropped); the device parts of all of them go to
:func:`accelsim.sim.simulate_parts` together (each distinct part once), and each plan is
composed from its parts. Data-parallel replicas (``dp > 1``) do not change the per-token
latency or the energy per token and multiply the throughput and the devices, so their rows
are derived, not simulated. The Pareto table keeps the rows no other row beats on all of
devices (fewer), latency (lower), tokens/s (higher) and energy per token (lower).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import ConfigError, DoesNotFitError, InfeasibleError
from .load import load_system
from .plan import enumerate_plans
from .simulate import _equivalence_key, _equivalence_keys, compose, half_parts, prepare

__all__ = ["search_plans", "smallest_plan", "OBJECTIVES", "pareto_rows", "min_devices"]

OBJECTIVES = ("latency", "throughput", "devices", "energy")
#: Rounds of screening: estimate, simulate the candidates exactly, recompute the table.
MAX_ROUNDS = 8
ROW_KEYS = ("plan", "devices", "latency_s", "tokens_per_s", "energy_per_token_j",
            "tokens_per_s_per_device", "bound")


def min_devices(system, model, alloc) -> int:
    """A lower bound on the devices any plan needs: the weights under ``alloc`` over one
    device's weight capacity, rounded up (every weight lives on some device).

    >>> from accelsim.workload import load_workload
    >>> from accelsim.precision import BitAllocation
    >>> m = load_workload("mixtral-8x7b")
    >>> a = BitAllocation.uniform(m, 4)
    >>> a.weight_bytes(m) / 2**20 / 192          # 192 MiB of weight SRAM per NorthPole
    123.35...
    >>> min_devices(load_system("northpole-rack"), m, a)
    124
    """
    import math

    from .simulate import weight_capacity_bytes
    cap = weight_capacity_bytes(system.hw)
    return max(1, math.ceil(alloc.weight_bytes(model) / cap))


def _min_etp(system, model, acct) -> int:
    """The fewest ways every routed expert must be split for the largest one to fit a
    device's weight memory (1 when it fits whole)."""
    import math

    from .simulate import _tensor_bytes, weight_capacity_bytes
    if model.moe is None:
        return 1
    biggest = float(np.max(_tensor_bytes(model, acct)[3], initial=0.0))
    cap = weight_capacity_bytes(system.hw)
    return max(1, math.ceil(biggest / cap)) if cap > 0 else 1


def _row(res, dp: int = 1, plan_text: str | None = None) -> dict[str, Any]:
    devices = res.devices * dp
    tps = res.tokens_per_s * dp
    return {"plan": plan_text or res.plan, "devices": devices, "latency_s": res.latency_s,
            "tokens_per_s": tps, "energy_per_token_j": res.energy_per_token_j,
            "tokens_per_s_per_device": tps / devices, "bound": res.bound}


def pareto_rows(rows: list[dict]) -> list[dict]:
    """The rows no other row dominates, by devices then latency.

    >>> r = lambda d, l, t, e: dict(devices=d, latency_s=l, tokens_per_s=t,
    ...                             energy_per_token_j=e)
    >>> [x["devices"] for x in pareto_rows([r(1, 2, 1, 1), r(2, 1, 2, 1), r(2, 3, 1, 2)])]
    [1, 2]
    """
    import numpy as np
    if not rows:
        return []
    M = np.array([[r["devices"], r["latency_s"], -r["tokens_per_s"], r["energy_per_token_j"]]
                  for r in rows], dtype=float)
    keep = []
    for i in range(len(rows)):        # dominated: another row as good in all, better in one
        ge = (M <= M[i]).all(axis=1)
        gt = (M < M[i]).any(axis=1)
        keep.append(not (ge & gt).any())
    out = [r for r, k in zip(rows, keep) if k]
    seen, uniq = set(), []
    for a in out:   # plans with equal figures: the first (the simplest) stands for them
        k = (a["devices"], a["latency_s"], a["tokens_per_s"], a["energy_per_token_j"])
        if k not in seen:
            seen.add(k)
            uniq.append(a)
    return sorted(uniq, key=lambda x: (x["devices"], x["latency_s"]))


def _best(rows: list[dict], objective: str) -> dict:
    keys = {
        "latency": lambda x: (x["latency_s"], x["devices"], x["energy_per_token_j"]),
        "throughput": lambda x: (-x["tokens_per_s"], x["devices"], x["latency_s"]),
        "devices": lambda x: (x["devices"], x["latency_s"], x["energy_per_token_j"]),
        "energy": lambda x: (x["energy_per_token_j"], x["devices"], x["latency_s"]),
    }
    return min(rows, key=keys[objective])


def search_plans(system, graph, alloc=None, *, devices: int | None = None,
                 max_devices: int | None = None, latency_budget_s: float | None = None,
                 objective: str = "latency", microbatches: int | None = None,
                 cache: dict | None = None, screen: bool = True, tbo: bool = False,
                 **options) -> dict[str, Any]:
    """Search plans and device counts of ``system`` for one step of ``graph``.

    Returns ``{"best": row, "pareto": [rows], "rows": [every feasible row], "evaluated":
    n, "infeasible": n}``; a row holds ``plan``, ``devices``, ``latency_s``,
    ``tokens_per_s``, ``energy_per_token_j``, ``tokens_per_s_per_device`` and ``bound``.
    ``devices``: exactly that many; ``max_devices``: at most (default: all of the system).
    ``screen``: estimate every plan from one-layer parts first and simulate exactly only the
    plans whose estimated rows reach the Pareto table or are best for an objective, until
    the table holds exact rows only (False: simulate every plan exactly). ``rows`` are the
    exactly simulated rows. ``tbo``: every plan with two-batch overlap (``tbo=1``; the
    screen and the exact rows alike overlap each stage where it pays).

    Raises
    ------
    InfeasibleError
        No plan fits, or none meets ``latency_budget_s``.
    """
    from ..precision import BitAllocation
    if objective not in OBJECTIVES:
        raise ConfigError.single(f"must be one of {', '.join(OBJECTIVES)}", key="objective",
                                 value=objective)
    system = load_system(system)
    model = graph.graph.get("model_spec")
    if model is None:
        raise ConfigError.single("the graph has no 'model_spec'", key="graph")
    N = system.num_devices
    for key, v in (("devices", devices), ("max_devices", max_devices)):
        if v is not None and not 1 <= v <= N:
            raise ConfigError.single(f"must be in 1..{N} (the devices of {system.name})",
                                     key=key, value=v)
    top = devices or max_devices or N
    acct = alloc if alloc is not None else BitAllocation.uniform(model, 16)
    least = min_devices(system, model, acct)
    counts = {devices} if devices else set(range(least, top + 1))
    # dp = 1 plans on any count that divides an allowed one (dp replicas are derived)
    plans = [replace(p, tbo=bool(tbo))
             for p in enumerate_plans(model, top, devices_per_node=system.devices_per_node,
                                      exact=False, microbatches=microbatches,
                                      min_etp=_min_etp(system, model, acct))
             if p.dp == 1 and p.devices >= least
             and any(c % p.devices == 0 for c in counts)]
    memo: dict = {}
    cache = {} if cache is None else cache
    preps, infeasible = [], 0
    for p in plans:
        try:
            preps.append(prepare(system, graph, model, alloc, acct, p, memo))
        except (DoesNotFitError, ConfigError):
            infeasible += 1
    opts = dict(options)
    stats = preps[0].stats if preps else None
    run = _Runner(system, graph, alloc, opts, cache, stats, memo)
    exact: dict[int, Any] = {}           # plan index -> exact SystemResult, or None

    def verify(idx):
        for i, res in zip(idx, run.exact([preps[i] for i in idx])):
            exact[i] = res

    def expand(res):
        out = []
        for dp in range(1, top // res.devices + 1):
            if res.devices * dp in counts:
                out.append(_row(res, dp, res.plan.replace(",dp=1,", f",dp={dp},")))
        return out

    if not screen:
        verify(list(range(len(preps))))
    else:
        estimates = [run.estimate(prep) for prep in preps]
        for _ in range(MAX_ROUNDS):
            cand = []
            for i, est in enumerate(estimates):
                res = exact.get(i, est) if i in exact else est
                if res is None:
                    continue
                cand += [(i, r) for r in expand(res)]
            if not cand:
                break
            if latency_budget_s is not None:
                within = [(i, r) for i, r in cand
                          if r["latency_s"] <= latency_budget_s * (1 + 1e-12)]
                if not within:      # the fastest, simulated exactly, says by how much
                    i = min(cand, key=lambda x: x[1]["latency_s"])[0]
                    if i in exact:
                        break
                    verify([i])
                    continue
                cand = within
            front = pareto_rows([r for _, r in cand])
            keep = {id(r) for r in front} | {id(_best([r for _, r in cand], o))
                                             for o in OBJECTIVES}
            need = sorted({i for i, r in cand if id(r) in keep} - set(exact))
            if not need:
                break
            verify(need)
    rows = []
    for i in sorted(exact):
        if exact[i] is None:
            infeasible += 1
        else:
            rows += expand(exact[i])
    if not rows:
        raise InfeasibleError(f"no plan of {model.name} fits "
                              + (f"{devices} devices" if devices else f"up to {top} devices")
                              + f" of {system.name}")
    ok = rows
    if latency_budget_s is not None:
        ok = [r for r in rows if r["latency_s"] <= latency_budget_s * (1 + 1e-12)]
        if not ok:
            fastest = min(r["latency_s"] for r in rows)
            raise InfeasibleError(f"no plan meets the latency budget of "
                                  f"{latency_budget_s:.4g} s on {system.name}; the fastest "
                                  f"takes {fastest:.4g} s")
    return {"best": _best(ok, objective), "pareto": pareto_rows(ok), "rows": rows,
            "evaluated": len(plans), "infeasible": infeasible,
            "simulated": sum(1 for v in exact.values() if v is not None)}


def smallest_plan(system, graph, alloc=None, *, least: int = 1,
                  max_devices: int | None = None, **options):
    """The smallest system that holds ``alloc``: the fewest devices of ``system``, then the
    fewest nodes, then the lowest latency, over every plan with ``dp = 1`` of
    :func:`~accelsim.system.plan.enumerate_plans` (every divisor group size and ``(tp, ep,
    etp)`` the plan rules allow, ``etp`` from the largest expert against a device's weight
    memory), each simulated exactly.

    The plans are tried by increasing devices from ``max(least, min_devices(...))``: each is
    laid out (:func:`~accelsim.system.simulate.prepare`: the placement's memory checks, no
    simulation), the ones that pass are simulated (parts shared across plans), and the first
    device count where any plan fits is the answer; among its plans the fastest. A plan on
    the first ``n`` devices spans ``ceil(n / devices per node)`` nodes, so fewer devices
    never means more nodes. No monotonicity is assumed: every plan on fewer devices than the
    answer was tried. ``options``: those of
    :func:`~accelsim.system.simulate.simulate_system` (residency, dataflow, ...).

    Returns ``(SystemResult, Plan)``. Raises :class:`~accelsim.errors.DoesNotFitError` when
    no plan on up to ``max_devices`` (default: all) devices fits, naming why the last plan
    that passed the placement failed in the simulation (else why the last plan's placement
    failed).

    Examples
    --------
    >>> import accelsim
    >>> m = accelsim.load_workload("mixtral-8x7b")
    >>> g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=1))
    >>> r, p = smallest_plan("h100-8", g, accelsim.BitAllocation.uniform(m, 4))
    >>> r.devices, str(p)
    (1, 'pp=1,tp=1,ep=1,dp=1,mb=1')
    """
    from itertools import groupby

    from ..precision import BitAllocation
    from .simulate import simulate_system
    system = load_system(system)
    model = graph.graph.get("model_spec")
    if model is None:
        raise ConfigError.single("the graph has no 'model_spec'", key="graph")
    N = system.num_devices
    top = N if max_devices is None else int(max_devices)
    if not 1 <= top <= N:
        raise ConfigError.single(f"must be in 1..{N} (the devices of {system.name})",
                                 key="max_devices", value=max_devices)
    acct = alloc if alloc is not None else BitAllocation.uniform(model, 16)
    lo = max(int(least), min_devices(system, model, acct))
    plans = _stage_plans(model, lo, top, system.devices_per_node,
                         _min_etp(system, model, acct))
    opts = {"residency": "hot-first", "dataflow": None, "staging_fraction": 0.25,
            "full_pipeline": False, **options}      # simulate_system's defaults
    memo: dict = {}
    run = None
    last: Exception | None = None       # why the last plan failed: its simulation, or else
    placed: Exception | None = None     # its placement
    for _n, group in groupby(plans, key=lambda p: p.devices):
        found = []
        for p in group:
            if p.devices > 1:
                try:
                    prep = prepare(system, graph, model, alloc, acct, p, memo)
                except ConfigError:
                    continue
                except DoesNotFitError as exc:
                    placed = exc
                    continue
                if run is None:
                    run = _Runner(system, graph, alloc, opts, {}, prep.stats, memo)
            try:
                found.append((run.one(prep) if p.devices > 1 else   # one device: the chip
                              simulate_system(system, graph, alloc, p, **opts), p))
            except DoesNotFitError as exc:
                last = exc
        if found:
            return min(found, key=lambda x: x[0].latency_s)
    last = last or placed
    why = str(last).splitlines()[0] if last is not None else "no valid plan"
    raise DoesNotFitError(f"no plan on up to {top} devices of {system.name} holds it "
                          f"(last tried: {why})")


def _stage_plans(model, lo: int, top: int, node: int, min_etp: int = 1) -> list:
    """The plans of :func:`~accelsim.system.plan.enumerate_plans` with ``dp = 1`` on ``lo``
    to ``top`` devices, in its order (fewest devices first), built for ``dp = 1`` only:
    each group size ``w``'s shapes (:func:`~accelsim.system.plan.stage_shapes`) times the
    stages ``pp = devices / w``, kept when :func:`~accelsim.system.plan.check_plan` accepts
    them."""
    from .plan import Plan, check_plan, stage_shapes
    out = []
    for w in range(1, top + 1):
        pps = range(max(1, -(-lo // w)), min(top // w, model.total_layers) + 1)
        if not pps:
            continue
        for t, e, etp in stage_shapes(model, w, node, min_etp):
            for pp in pps:
                p = Plan(pp=pp, tp=t, ep=e, etp=etp)
                try:
                    check_plan(p, model, top)
                except ConfigError:
                    break           # the rules broken do not depend on pp (pp <= layers)
                out.append(p)
    return sorted(out, key=lambda p: (p.devices, -p.pp, -p.tp, -p.experts, p.etp))


class _Runner:
    """Exact and estimated results of prepared plans, sharing one part cache."""

    def __init__(self, system, graph, alloc, opts, cache, stats, memo):
        self.system, self.graph, self.alloc, self.opts = system, graph, alloc, opts
        self.cache, self.stats, self.memo = cache, stats, memo
        self.n = graph.graph["model_spec"].total_layers

    def _key(self, part):
        # the share matrices live in the layout memo as long as the search: key by id
        share = part.expert_share
        pk = (part.layers, part.tp, part.expert_tp, part.batch_share, part.embed,
              part.lm_head, None if share is None else id(share))
        known = self.__dict__.setdefault("_key_memo", {})
        k = known.get(pk)
        if k is None:
            k = known[pk] = _equivalence_key(part, self.stats, self.graph, self.alloc,
                                             self.opts,
                                             self.memo.setdefault("share figures", {}))
        return k

    def _keys(self, parts) -> list:
        """``[self._key(q) for q in parts]`` for one plan's parts: each distinct part once,
        their signatures worked out together (:func:`_equivalence_keys`)."""
        first: dict = {}
        idx = [first.setdefault((q.layers, q.tp, q.expert_tp, q.batch_share, q.embed,
                                 q.lm_head, id(q.expert_share)), len(first)) for q in parts]
        reps = [None] * len(first)
        for q, j in zip(parts, idx):
            if reps[j] is None:
                reps[j] = q
        keys = _equivalence_keys(reps, self.stats, self.graph, self.alloc, self.opts)
        return [keys[j] for j in idx]

    def _unit_key(self, part, L: int):
        """The equivalence key of a one-layer part, memoized by the layer's row of shares
        (one device part's units share one share matrix)."""
        share = part.expert_share
        moe_row = self.stats[3] if self.stats else None
        r = -1 if moe_row is None else int(moe_row[L])
        memo = self.__dict__.setdefault("_units", {})
        if r < 0:
            k = ("dense", L, part.tp, L == 0, L == self.n - 1, part.expert_tp,
                 part.batch_share)
        else:
            # identical MoE layers (same bits, tokens, activation) share one content id
            ids = self.__dict__.get("_row_ids")
            if ids is None:
                bits, tok, pact = self.stats[0], self.stats[1], self.stats[2]
                rows = np.concatenate([bits, tok, pact], axis=1)
                _, ids = np.unique(rows, axis=0, return_inverse=True)
                self._row_ids = ids = np.asarray(ids).ravel()
            k = ("moe", int(ids[r]), None if share is None else share[r].tobytes(), part.tp,
                 L == 0, L == self.n - 1, part.expert_tp, part.batch_share)
        if k not in memo:
            memo[k] = self._key(part)
        return memo[k]

    def _run(self, parts, keys):
        from .simulate import _run_parts
        return _run_parts(self.system, self.graph, self.alloc, parts, self.opts, self.cache,
                          self.stats, keys=keys, aligned=False)

    def exact(self, preps):
        """Exact results (None for a plan whose part does not fit)."""
        keys = [[self._key(q) for q in prep.all_parts()] for prep in preps]
        try:
            self._run([q for prep in preps for q in prep.all_parts()],
                      [k for ks in keys for k in ks])
            ok = True
        except DoesNotFitError:
            ok = False
        out = []
        for prep, ks in zip(preps, keys):
            try:
                out.append(self.one(prep, ks, [self.cache[k] for k in ks] if ok else None))
            except DoesNotFitError:
                out.append(None)
        return out

    def one(self, prep, keys=None, results=None):
        """The exact result of one prepared plan (raises
        :class:`~accelsim.errors.DoesNotFitError` when a part does not fit). ``keys``,
        ``results``: its parts' keys and results when already known."""
        if results is None:
            parts = prep.all_parts()
            if keys is None:
                # the part with the most weight bytes first: the likeliest not to fit, found
                # out for the cost of one part
                j = _heaviest(prep)
                self._run([parts[j]], [self._key(parts[j])])
                keys = self._keys(parts)
            results = self._run(parts, keys)
        halves = None
        if prep.plan.tbo:           # two-batch overlap: the half micro-batch's parts
            hp = half_parts(prep, self.memo)
            try:
                halves = self._run(hp, [self._key(q) for q in hp])
            except DoesNotFitError:
                halves = None
        return compose(prep, results, self.memo, halves=halves)

    def estimate(self, prep):
        """The plan's row figures composed from one-layer parts: each device part's
        per-layer latencies and energy are the sums over its layers simulated one at a time
        (a screen; fitting is not checked). None when a one-layer part does not fit. Each
        distinct device part (up to which experts it holds: :func:`_equivalence_key`) is
        summed once per search. A plan with two-batch overlap (``tbo``) is composed as the
        exact rows are (:func:`~accelsim.system.simulate.compose` with the halves): its half
        micro-batch's parts (:func:`~accelsim.system.simulate.half_parts`) are estimated
        the same way, and the stages overlap where it pays."""
        parts = self._summed(prep.all_parts())
        if parts is None:
            return None
        halves = None
        if prep.plan.tbo:
            halves = self._summed(half_parts(prep, self.memo))
        return compose(prep, parts, self.memo, light=True, halves=halves)

    def _summed(self, all_parts):
        """Each part's estimate (:func:`_sum_units` over its one-layer parts, with the layers
        it was summed on), or None when a one-layer part does not fit."""
        from ..sim import DevicePart
        sums = self.__dict__.setdefault("_sums", {})
        ekeys = self.__dict__.setdefault("_ekeys", {})
        keys = []
        for p in all_parts:
            pk = (p.layers, p.tp, p.expert_tp, p.batch_share,
                  None if p.expert_share is None else id(p.expert_share))
            k = ekeys.get(pk)
            if k is None:           # parts equal up to which experts they hold: one sum
                k = ekeys[pk] = self._key(p)
            keys.append(k)
        todo = {}
        for k, p in zip(keys, all_parts):
            if k not in sums and k not in todo:
                a, b = p.layers
                todo[k] = [DevicePart((L, L + 1), p.tp, p.expert_share, embed=L == 0,
                                      lm_head=L == self.n - 1, expert_tp=p.expert_tp,
                                      batch_share=p.batch_share) for L in range(a, b)]
        vecs = self.__dict__.setdefault("_vecs", {})
        batches = [list(todo.items())]
        while batches:
            batch = batches.pop()
            units = [u for _, us in batch for u in us]
            if not units:
                continue
            try:
                pairs = self._run(units, [self._unit_key(u, u.layers[0]) for u in units])
            except DoesNotFitError:
                if len(batch) == 1:
                    sums[batch[0][0]] = None
                else:           # find the parts that do not fit: each on its own
                    batches += [[x] for x in batch]
                continue
            i = 0
            for k, us in batch:
                # kept with the layers it was summed on: compose moves it to the layers
                # of an equivalent part elsewhere
                a = us[0].layers[0]
                sums[k] = (_sum_units(pairs[i:i + len(us)], a, self.n, vecs), (a, a + len(us)))
                i += len(us)
        parts = [sums[k] for k in keys]
        if any(x is None for x in parts):
            return None
        return parts


def _heaviest(prep) -> int:
    """The index in ``prep.all_parts()`` of a device part with the most weight bytes: its
    stage's weights other than the routed experts plus its expert slot's bytes."""
    plan = prep.plan
    w = plan.group
    best, at = -1.0, 0
    for s, (pl, _rows, fixed) in enumerate(prep.placements):
        mem = np.asarray(pl.memory, dtype=float)
        slot = int(np.argmax(mem)) if len(mem) else 0
        total = float(fixed) + (float(mem[slot]) if len(mem) else 0.0)
        if total > best:
            best, at = total, s * w + slot * plan.etp
    return at


_NUM = ("energy_j", "weight_bytes", "offchip_bytes", "onchip_bytes_moved", "macs",
        "compute_cycles", "stall_cycles", "vector_cycles", "noc_cycles")


def _sum_units(pairs, first: int, n: int, vecs: dict | None = None):
    """A device part's estimated result: the sum of its one-layer parts' results (a screen
    needs latency, energy and the bound; byte tables stay empty). ``vecs`` keeps each
    distinct result's figures as one array."""
    from types import SimpleNamespace
    vecs = {} if vecs is None else vecs
    lat = np.zeros(n + 2)
    tot = np.zeros(len(_NUM) + 2)
    slow = None
    for j, (r, src) in enumerate(pairs):
        arr = r.layer_latency_s
        lat[first + j + 1] += arr[src[0] + 1]
        lat[0] += arr[0]
        lat[-1] += arr[-1]
        v = vecs.get(id(r))
        if v is None:
            v = vecs[id(r)] = (np.array([float(getattr(r, k)) for k in _NUM] + [
                float(r.energy_breakdown_j.get("static", 0.0)),
                float(r.mac_utilization) * float(r.latency_s)]), r)
        tot += v[0]
        if slow is None or r.latency_s > slow.latency_s:
            slow = r
    total = float(lat.sum())
    num = dict(zip(_NUM, map(float, tot[:len(_NUM)])))
    return SimpleNamespace(
        latency_s=total, layer_latency_s=lat,
        mac_utilization=float(tot[-1]) / total if total > 0 else 0.0, bound=slow.bound,
        energy_breakdown_j={"static": float(tot[-2])}, weight_bytes_by_level={},
        kv_bytes_by_level={}, activation_bytes_by_level={}, staging_bytes_by_level={},
        bytes_by_level={}, busy_cycles={}, warnings=(), model=slow.model,
        scenario=slow.scenario, residency=slow.residency, **num)
