"""``plan_memories`` (many memory plans on one chip at once) equals ``plan_memory`` called
request by request: every field of every plan, and the same error for the first request
that does not fit."""

import dataclasses

import numpy as np
import pytest

from accelsim.errors import DoesNotFitError
from accelsim.sim.core import _as_hw
from accelsim.sim.residency import plan_memories, plan_memory


def _requests(hw, rng, n=7, frac=1.0):
    """Random requests sized around the chip's memory: some on chip, some spilling."""
    cap = sum(hw.level_capacity(m) for m in hw.memory if m.scope != "offchip")
    out = []
    for i in range(n):
        nw, nk = int(rng.integers(0, 40)), int(rng.integers(0, 6))
        scale = cap * frac * [0.002, 0.02, 0.08][i % 3]
        wd = rng.random(nw)
        wd[rng.random(nw) < 0.3] = 0.5                      # ties: model order decides
        out.append((rng.random(nw) * scale, wd, rng.random(nk) * scale, rng.random(nk),
                    float(rng.random() * cap * 0.05)))
    out.append((np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), 0.0))   # nothing
    return out


def _same(a, b):
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("chip", ["h100", "gemmini", "spyre", "northpole", "a100"])
@pytest.mark.parametrize("policy", ["hot-first", "offchip", "must-fit"])
def test_batched_equals_one_by_one(chip, policy):
    hw = _as_hw(chip)
    small = policy == "must-fit" or chip == "northpole"     # all on chip
    reqs = _requests(hw, np.random.default_rng(len(chip)), frac=0.03 if small else 1.0)
    try:
        ref = [plan_memory(hw, *r, policy, 0.25) for r in reqs]
    except Exception as e:      # the policy refuses this chip or a request: same error
        with pytest.raises(type(e)) as got:
            plan_memories(hw, reqs, policy, 0.25)
        assert str(got.value) == str(e)
        return
    new = plan_memories(hw, reqs, policy, 0.25)
    assert len(new) == len(ref)
    for a, b in zip(new, ref):
        _same(a, b)


def test_first_misfit_is_reported_with_its_index():
    hw = _as_hw("h100")
    rng = np.random.default_rng(5)
    reqs = _requests(hw, rng, 4)
    total = sum(hw.level_capacity(m) for m in hw.memory)
    big = (np.array([2.0 * total]), np.ones(1), np.zeros(0), np.zeros(0), 0.0)
    reqs = reqs[:2] + [big] + reqs[2:] + [big]
    with pytest.raises(DoesNotFitError) as ref:
        plan_memory(hw, *big)
    with pytest.raises(DoesNotFitError) as got:
        plan_memories(hw, reqs)
    assert str(got.value) == str(ref.value)
    assert got.value.index == 2
    assert plan_memories(hw, []) == []


@pytest.mark.parametrize("fill", [0.5, 1.0 - 1e-12, 1.0, 1.5])
def test_hot_first_when_a_level_runs_out_or_not(fill):
    """Weights totalling ``fill`` times the room of the innermost level that takes them:
    below it no level runs out (any order gives the same plan); at or past it the hottest
    go inside and one straddles. The batched plans equal plan_memory's either way."""
    hw = _as_hw("gemmini")
    from accelsim.sim.residency import _Budget
    bud = _Budget(hw, 0.25)
    lv = int(np.flatnonzero(bud.allow_w & (bud.free > 0))[0])
    rng = np.random.default_rng(3)
    w = rng.random(9)
    w *= fill * bud.free[lv] / w.sum()
    dens = rng.permutation(9).astype(float)
    reqs = [(w, dens, np.zeros(0), np.zeros(0), 0.0), (w[::-1].copy(), dens, np.zeros(0),
                                                      np.zeros(0), 0.0)]
    new = plan_memories(hw, reqs, "hot-first", 0.25)
    for q, r in zip(new, reqs):
        _same(q, plan_memory(hw, *r, "hot-first", 0.25))
        inside = q.item_fraction[:, lv]
        if fill < 1.0 - 1e-9:
            assert np.all(inside == 1.0)
        else:       # the hottest items inside; at most one straddles
            hot = np.argsort(-r[1], kind="stable")
            assert np.all(np.diff(inside[hot]) <= 0.0)
            assert ((inside > 0) & (inside < 1)).sum() <= 1


@pytest.mark.parametrize("chip", ["h100", "spyre"])
@pytest.mark.parametrize("case", ["ties", "spread", "zero", "kv"])
def test_hot_first_sorting_only_the_hottest(chip, case):
    """When the inner levels run out and the outermost does not, only the hottest items are
    sorted (the ties at the top in item order, or those above a density threshold): the
    plans equal plan_memory's, which sorts them all. Items: a third at the top density,
    the rest colder (``spread``: every density distinct), zero-byte items among them
    (``zero``), and KV caches as hot as the weights (``kv``)."""
    hw = _as_hw(chip)
    from accelsim.sim.residency import _Budget
    bud = _Budget(hw, 0.25)
    inner = float(bud.free[(bud.allow_w & (bud.free > 0))][:-1].sum())
    rng = np.random.default_rng(len(case) + len(chip))
    n = 300
    size = rng.random(n)
    size *= 4.0 * inner / size.sum()          # four times the inner levels
    dens = np.where(rng.random(n) < 1 / 3, 1.0, rng.choice([0.6, 0.3, 0.01], size=n))
    if case == "spread":
        dens = rng.random(n)
    if case == "zero":
        size[rng.random(n) < 0.1] = 0.0
    kvb = np.zeros(0)
    kvd = np.zeros(0)
    if case == "kv":
        kvb, kvd = rng.random(7) * inner / 3, np.ones(7)
    reqs = [(size, dens, kvb, kvd, 0.0), (size[::-1].copy(), dens, kvb, kvd, inner / 10)]
    for q, r in zip(plan_memories(hw, reqs, "hot-first", 0.25), reqs):
        _same(q, plan_memory(hw, *r, "hot-first", 0.25))
    # the case is one the partial sort takes (else this would test the full sort again)
    from accelsim.sim.residency import _fill_hottest
    sizes, d = np.concatenate([size, kvb]), np.concatenate([dens, kvd])
    kinds = np.r_[np.zeros(n, np.int64), np.ones(len(kvb), np.int64)]
    out = np.zeros((len(sizes), len(bud.free)))
    assert _fill_hottest(d, sizes, kinds, bud.free.copy(),
                         np.stack([bud.allow_w, bud.allow_kv]), out)
