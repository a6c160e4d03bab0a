"""Multiple-choice knapsack: one choice per item, least total loss within a cost budget.

``minimise sum_i loss[i, x_i]  subject to  sum_i cost[i, x_i] <= budget``.

Two solvers behind :func:`solve_mckp`:

* ``exact``: a 0-1 program solved to optimality by HiGHS (``scipy.optimize.milp``, relative
  gap 0). Used for small instances (``method='auto'`` below :data:`EXACT_MAX_ITEMS` items).
* ``greedy``: the LP relaxation solved exactly by the convex-hull greedy (Sinha & Zoltners,
  1979): per item keep the lower convex hull of its (cost, loss) points, start every item at
  its cheapest point, and take hull upgrades in decreasing order of loss saved per unit cost.
  The integer answer takes every upgrade that still fits, in that order, skipping an item's
  later upgrades once one was skipped, then spends what is left on the single changes
  (hull or not) that save the most loss. Its loss exceeds the LP optimum (a lower bound on the
  true optimum, :func:`mckp_lp_bound`) by at most the loss saved by one upgrade. Linear in
  the number of choices after one sort: 14,848 items x 4 choices take ~30 ms (see
  ``docs/performance.md``).

:func:`solve_mckp_multi` adds further budgets (memory *and* latency) by Lagrangian
relaxation of the extra constraints around the single-budget solver.

Examples
--------
>>> cost = [[1, 2, 4], [1, 3, 4]]
>>> loss = [[9, 4, 0], [8, 2, 1]]
>>> solve_mckp(cost, loss, 5).tolist()
[1, 1]
>>> solve_mckp(cost, loss, 100).tolist()
[2, 2]
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, InfeasibleError

__all__ = ["solve_mckp", "solve_mckp_multi", "mckp_lp_bound", "EXACT_MAX_ITEMS",
           "infeasible"]

#: Below this many items, ``method='auto'`` solves to optimality with HiGHS.
EXACT_MAX_ITEMS = 400
_TOL = 1e-9


def infeasible(message: str, minimum: float) -> InfeasibleError:
    """An :class:`InfeasibleError` carrying the smallest feasible budget as ``.minimum``."""
    err = InfeasibleError(message)
    err.minimum = float(minimum)
    return err


def _check(cost, loss) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(cost, dtype=float)
    l = np.asarray(loss, dtype=float)
    if c.ndim != 2 or c.shape[1] == 0 or c.shape[0] == 0:
        raise ConfigError.single("cost must be a non-empty 2-D array [items, choices]",
                                 key="cost", value=c.shape)
    if l.shape != c.shape:
        raise ConfigError.single(f"loss must have the shape of cost {c.shape}", key="loss",
                                 value=l.shape)
    for name, a in (("cost", c), ("loss", l)):
        if not np.all(np.isfinite(a)):
            raise ConfigError.single("must be finite (no NaN or inf)", key=name)
    return c, l


def _check_budget(c: np.ndarray, budget: float) -> float:
    b = float(budget)
    if not np.isfinite(b):
        raise ConfigError.single("budget must be a finite number", key="budget", value=budget)
    need = float(c.min(axis=1).sum())
    if need > b + _TOL * max(1.0, abs(b)):
        raise infeasible(f"budget {b:.6g} is below the smallest feasible total cost "
                         f"{need:.6g}", need)
    return b


def solve_mckp(cost, loss, budget: float, *, method: str = "auto") -> np.ndarray:
    """One choice index per item minimising total loss with total cost <= ``budget``.

    Parameters
    ----------
    cost, loss : array-like [items, choices]
    budget : float
    method : {'auto', 'exact', 'greedy'}
        ``auto`` is ``exact`` up to :data:`EXACT_MAX_ITEMS` items, ``greedy`` above.

    Returns
    -------
    numpy.ndarray of int64 [items]

    Raises
    ------
    InfeasibleError
        When even the cheapest choices exceed the budget; ``.minimum`` is the smallest
        feasible budget.
    """
    c, l = _check(cost, loss)
    b = _check_budget(c, budget)
    if method not in ("auto", "exact", "greedy"):
        raise ConfigError.single("method must be auto, exact or greedy", key="method",
                                 value=method)
    if method == "exact" or (method == "auto" and c.shape[0] <= EXACT_MAX_ITEMS):
        x = _solve_milp(c[None], l, np.array([b]))
        if x is not None:
            return x
    return _greedy(c, l, b)[0]


# ----------------------------------------------------------------------------- exact
def _solve_milp(costs: np.ndarray, loss: np.ndarray, budgets: np.ndarray) -> np.ndarray | None:
    """Optimal choices under every budget in ``budgets`` (costs [k, items, choices]), or
    None when HiGHS reports no proven optimum."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix, vstack

    n, C = loss.shape
    nv = n * C
    # one-hot rows: each item picks exactly one choice
    rows = np.repeat(np.arange(n), C)
    onehot = csr_matrix((np.ones(nv), (rows, np.arange(nv))), shape=(n, nv))
    # scale every budget row to O(1) so HiGHS's absolute tolerances mean the same for bytes
    # and seconds
    scale = np.maximum(np.abs(budgets), np.abs(costs).reshape(len(budgets), -1).max(axis=1))
    scale = np.where(scale > 0, scale, 1.0)
    A = vstack([onehot, csr_matrix(costs.reshape(len(budgets), nv) / scale[:, None])])
    lo = np.concatenate([np.ones(n), np.full(len(budgets), -np.inf)])
    hi = np.concatenate([np.ones(n), budgets / scale])
    obj = loss.reshape(nv)
    res = milp(obj, constraints=LinearConstraint(A, lo, hi), integrality=np.ones(nv),
               bounds=Bounds(0, 1), options={"mip_rel_gap": 0.0, "presolve": True,
                                                      "time_limit": 20.0})
    if res.status != 0 or res.x is None:
        return None
    x = res.x.reshape(n, C).argmax(axis=1).astype(np.int64)
    used = costs[:, np.arange(n), x].sum(axis=1)
    if np.any(used > budgets + 1e-9 * np.maximum(1.0, np.abs(budgets))):
        return None
    return x


# ----------------------------------------------------------------------------- greedy
def _hulls(c: np.ndarray, l: np.ndarray):
    """Per item, the lower convex hull of its undominated (cost, loss) points: the start
    choice (cheapest, then lowest loss) and the upgrade segments as arrays (item, step k,
    choice, cost added, loss saved)."""
    n, C = c.shape
    order = np.lexsort((l, c), axis=1)
    cs = np.take_along_axis(c, order, axis=1)
    ls = np.take_along_axis(l, order, axis=1)
    ar = np.arange(n)
    # monotone chain, vectorised over items (a stack per item; C is small)
    stack = np.zeros((n, C), dtype=np.int64)
    size = np.ones(n, dtype=np.int64)
    for j in range(1, C):
        cj, lj = cs[:, j], ls[:, j]
        keep = lj < ls[ar, stack[ar, size - 1]]   # else dominated by the top
        for _ in range(C):
            top, below = stack[ar, size - 1], stack[ar, np.maximum(size - 2, 0)]
            cross = ((cs[ar, top] - cs[ar, below]) * (lj - ls[ar, below])
                     - (ls[ar, top] - ls[ar, below]) * (cj - cs[ar, below]))
            pop = keep & (size >= 2) & (cross <= 0)
            if not pop.any():
                break
            size = size - pop
        stack[ar[keep], size[keep]] = j
        size = size + keep
    start = order[ar, stack[:, 0]]
    parts = []
    for k in range(1, C):
        i = ar[size > k]
        if len(i) == 0:
            break
        a, b = stack[i, k - 1], stack[i, k]
        parts.append((i, np.full(len(i), k), order[i, b], cs[i, b] - cs[i, a],
                      ls[i, a] - ls[i, b]))
    if not parts:
        e = np.empty(0, np.int64)
        return start, (e, e, e, np.empty(0), np.empty(0))
    return start, tuple(np.concatenate([p[f] for p in parts]) for f in range(5))


def _greedy(c: np.ndarray, l: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    """Integer greedy choices and the LP-relaxation optimum (a lower bound)."""
    start, (item, k, choice, dc, dl) = _hulls(c, l)
    n = c.shape[0]
    x = start.astype(np.int64).copy()
    remaining = b - float(c[np.arange(n), x].sum())
    base = float(l[np.arange(n), x].sum())
    if len(item) == 0:
        return x, base
    eff = dl / np.maximum(dc, 1e-300)
    # decreasing efficiency; within an item hull steps come in order (convexity), ties
    # broken by item then step so that an item's steps never overtake each other
    o = np.lexsort((k, item, -eff))
    item, k, choice, dc, dl = item[o], k[o], choice[o], dc[o], dl[o]
    slack = 1e-12 * max(1.0, abs(b))
    csum = np.cumsum(dc)
    fit = int(np.searchsorted(csum, remaining + slack, side="right"))
    # the LP relaxation takes that whole prefix and a fraction of the next step
    if fit < len(dc):
        frac = max(0.0, remaining - (csum[fit - 1] if fit else 0.0)) / dc[fit]
        lp_value = base - float(dl[:fit].sum()) - min(1.0, frac) * float(dl[fit])
    else:
        lp_value = base - float(dl.sum())
    level = np.zeros(n, dtype=np.int64)
    np.maximum.at(level, item[:fit], k[:fit])
    deepest = k[:fit] == level[item[:fit]]
    x[item[:fit][deepest]] = choice[:fit][deepest]
    remaining -= float(csum[fit - 1]) if fit else 0.0
    blocked = np.zeros(n, dtype=bool)
    for idx in range(fit, len(dc)):
        i = item[idx]
        if blocked[i] or level[i] != k[idx] - 1:
            continue
        if dc[idx] <= remaining + slack:
            x[i] = choice[idx]
            level[i] = k[idx]
            remaining -= dc[idx]
        else:
            blocked[i] = True
    return _fill(c, l, x, remaining, slack), lp_value


def _fill(c, l, x, remaining: float, slack: float, rounds: int = 64) -> np.ndarray:
    """Spend what the greedy left: repeatedly make the single change of one item's choice
    (any choice, on the hull or not) that saves the most loss and still fits."""
    ar = np.arange(c.shape[0])
    for _ in range(rounds):
        dc = c - c[ar, x][:, None]
        dl = l - l[ar, x][:, None]
        ok = (dc <= remaining + slack) & (dl < 0)
        if not ok.any():
            break
        gain = np.where(ok, dl, 0.0)
        i, j = np.unravel_index(np.argmin(gain), gain.shape)
        remaining -= dc[i, j]
        x[i] = j
    return x


def mckp_lp_bound(cost, loss, budget: float) -> float:
    """Optimum of the LP relaxation: no integer solution has a smaller total loss.

    >>> mckp_lp_bound([[0, 2]], [[4, 0]], 1)
    2.0
    """
    c, l = _check(cost, loss)
    b = _check_budget(c, budget)
    return float(_greedy(c, l, b)[1])


# ----------------------------------------------------------------------------- several budgets
def solve_mckp_multi(costs, loss, budgets, *, method: str = "auto",
                     iterations: int = 40) -> np.ndarray:
    """Like :func:`solve_mckp` with ``k`` budgets: ``costs`` is [k, items, choices].

    Exact (HiGHS) for small instances; otherwise each budget in turn is kept as the knapsack
    constraint and the others are priced into the loss with a multiplier found by bisection
    (Lagrangian relaxation); the best feasible answer is kept. It is feasible but may be a
    little above optimum when several budgets bind at once.

    Raises
    ------
    InfeasibleError
        When a budget is below its own minimum (``.minimum``, ``.index`` say which), or no
        multiplier makes all budgets hold together.
    """
    cs = np.asarray(costs, dtype=float)
    bs = np.atleast_1d(np.asarray(budgets, dtype=float))
    if cs.ndim != 3 or cs.shape[0] != bs.shape[0]:
        raise ConfigError.single("costs must be [k, items, choices] with k budgets",
                                 key="costs", value=cs.shape)
    l = _check(cs[0], loss)[1]
    for j in range(len(bs)):
        try:
            _check_budget(_check(cs[j], l)[0], bs[j])
        except InfeasibleError as exc:
            exc.index = j
            raise
    if len(bs) == 1:
        return solve_mckp(cs[0], l, bs[0], method=method)
    if method == "exact" or (method == "auto" and l.shape[0] <= EXACT_MAX_ITEMS):
        x = _solve_milp(cs, l, bs)
        if x is not None:
            return x
        if method == "exact":
            raise infeasible("no choice satisfies all budgets together", np.nan)
    return _lagrangian(cs, l, bs, iterations)


def _feasible(cs, x, bs) -> bool:
    ar = np.arange(cs.shape[1])
    used = cs[:, ar, x].sum(axis=1)
    return bool(np.all(used <= bs + 1e-9 * np.maximum(1.0, np.abs(bs))))


def _lagrangian(cs, l, bs, iterations: int) -> np.ndarray:
    """Try each budget as the knapsack constraint with the others priced in by a common
    multiplier (bisection on the smallest feasible one); keep the best feasible answer.
    When one budget alone already satisfies the others (multiplier 0), that answer is the
    single-budget greedy's, which is near-optimal."""
    best, best_loss, minimum = None, np.inf, None
    ar = np.arange(cs.shape[1])
    for j in range(len(bs)):
        order = [j] + [i for i in range(len(bs)) if i != j]
        try:
            x = _priced(cs[order], l, bs[order], iterations)
        except InfeasibleError as exc:
            minimum = exc.minimum if minimum is None else minimum
            continue
        v = float(l[ar, x].sum())
        if v < best_loss:
            best, best_loss = x, v
    if best is None:
        raise infeasible("no choice satisfies all budgets together (each alone is "
                         "feasible)", minimum if minimum is not None else np.nan)
    return best


def _priced(cs, l, bs, iterations: int) -> np.ndarray:
    # normalise every extra budget so that one multiplier scale fits all
    extra = cs[1:] / np.where(bs[1:] != 0, np.abs(bs[1:]), 1.0)[:, None, None]
    span = max(float(np.ptp(l)), 1e-300) * l.shape[0]

    def solve(mu: float) -> np.ndarray:
        return _greedy(cs[0], l + mu * extra.sum(axis=0), bs[0])[0]

    x = solve(0.0)
    if _feasible(cs, x, bs):
        return x
    lo, hi = 0.0, span
    for _ in range(60):
        x = solve(hi)
        if _feasible(cs, x, bs):
            break
        hi *= 4.0
    else:
        mins = cs.min(axis=2).sum(axis=1)
        raise infeasible("no choice satisfies all budgets together", float(mins[1]))
    best = x
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        xm = solve(mid)
        if _feasible(cs, xm, bs):
            hi, best = mid, xm
        else:
            lo = mid
    return best
