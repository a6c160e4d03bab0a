"""``simulate_parts`` over shared units equals the part-by-part batch it replaced.

The reference is ``parts._simulate_parts(..., shared=False)``: every distinct part cut out of
the op table, placed and scheduled in one batch of all parts' ops (the path
``simulate_parts`` took before its units were shared). Every field of every ``SimResult``
is compared: integers, strings, booleans and integer arrays exactly; floats exactly or, where
the shared path sums a phase's ops in another order (phase times, NoC bytes, kernels and
what is summed from them), within 1e-12 relative.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import accelsim
from accelsim.sim import parts as P
from accelsim.sim.core import SimOptions
from accelsim.workload import Zipf

RTOL = 1e-12


def _diff(a, b, path=""):
    """Differences between two results, field by field (empty: equal within RTOL)."""
    if dataclasses.is_dataclass(a):
        return [d for f in dataclasses.fields(a)
                for d in _diff(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")]
    if isinstance(a, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _diff(a[k], b[k], f"{path}[{k}]")]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
            return [f"{path}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"]
        if a.dtype.kind == "f":
            ok = np.isclose(a, b, rtol=RTOL, atol=0.0) | (a == b)
            return [] if ok.all() else [f"{path}: {a[~ok][:3]} vs {b[~ok][:3]}"]
        return [] if np.array_equal(a, b) else [f"{path}: differs"]
    if isinstance(a, float) and isinstance(b, float):
        return [] if a == b or abs(a - b) <= RTOL * abs(b) else [f"{path}: {a} vs {b}"]
    if isinstance(a, (tuple, list)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def _parts(m, rng, ep, pp=1, tp=1, etp=1, half=0.2):
    """``pp`` stages of ``ep`` devices; every layer's experts dealt out at random, a share
    of them split between two devices (share 0.5)."""
    E, R = m.num_experts, m.num_moe_layers
    bounds = np.linspace(0, m.total_layers, pp + 1).astype(int)
    out = []
    for s in range(pp):
        shares = np.zeros((ep, R, E))
        for r in range(R):
            perm = rng.permutation(E)
            for d in range(ep):
                mine = perm[d::ep]
                shares[d, r, mine] = 1.0
                split = mine[rng.random(len(mine)) < half]
                shares[d, r, split] = 0.5
                shares[(d + 1) % ep, r, split] = 0.5
        out += [P.DevicePart((int(bounds[s]), int(bounds[s + 1])), tp=tp,
                             expert_share=shares[d], expert_tp=etp) for d in range(ep)]
    return out


def _check(hw, g, a, parts, monkeypatch, residency="hot-first"):
    opts = SimOptions(residency, None, 0.25, False)
    ref = P._simulate_parts(hw, g, a, parts, opts, shared=False)
    calls = []
    real = P._run_batch
    monkeypatch.setattr(P, "_run_batch", lambda *x, **k: calls.append(1) or real(*x, **k))
    new = P._simulate_parts(hw, g, a, parts, opts, shared=True)
    monkeypatch.setattr(P, "_run_batch", real)
    assert not calls, "the shared path fell back to the batch of whole parts"
    assert len(new) == len(ref)
    for i, (x, y) in enumerate(zip(new, ref)):
        bad = _diff(x, y)
        assert not bad, f"part {i}: {bad[:5]}"
    return new


CASES = [
    # chip, model, scenario, expert bits, ep, pp, tp, etp
    ("h100", "olmoe-1b-7b",
     {"phase": "decode", "batch": 8, "context": 256, "routing": Zipf(1.2)}, (2, 3, 4), 4, 1,
     2, 1),
    ("spyre", "qwen1.5-moe-a2.7b", {"phase": "decode", "batch": 4, "context": 128},
     (2, 4, 8), 3, 2, 1, 1),
    ("a100", "deepseek-v2-lite",
     {"phase": "decode", "batch": 16, "context": 512, "routing": Zipf(1.0)}, (3, 4), 4, 1,
     1, 2),
    ("gemmini", "olmoe-1b-7b", {"phase": "prefill", "batch": 1, "seq_len": 16}, (2, 4, 8),
     8, 2, 1, 1),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_shared_equals_part_by_part(case, monkeypatch):
    hw, model, scen, levels, ep, pp, tp, etp = case
    m = accelsim.load_workload(model)
    g = accelsim.build_graph(m, accelsim.Scenario(**scen))
    rng = np.random.default_rng(len(model) + ep)
    a = accelsim.BitAllocation.uniform(m, 4).with_expert_bits(
        rng.choice(levels, size=(m.num_moe_layers, m.num_experts)))
    _check(hw, g, a, _parts(m, rng, ep, pp, tp, etp), monkeypatch)


def test_same_experts_in_another_order(monkeypatch):
    """Two parts whose layers hold the same multiset of experts (bits, tokens) in another
    order, and parts without a share table or with whole layers left empty."""
    m = accelsim.load_workload("olmoe-1b-7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=16, context=64))
    E, R = m.num_experts, m.num_moe_layers
    bits = np.tile(np.array([2, 4] * (E // 2)), (R, 1))
    a = accelsim.BitAllocation.uniform(m, 4).with_expert_bits(bits)
    s1, s2, s3 = np.zeros((R, E)), np.zeros((R, E)), np.zeros((R, E))
    s1[:, [0, 1, 2, 3]] = 1.0       # bits 2, 4, 2, 4
    s2[:, [1, 2, 5, 4]] = 1.0       # bits 4, 2, 4, 2
    s3[: R // 2, 10:20] = 1.0       # the second half of the layers holds no expert
    parts = [P.DevicePart((0, m.total_layers), expert_share=s) for s in (s1, s2, s3)]
    parts.append(P.DevicePart((0, m.total_layers // 2)))
    new = _check("h100", g, a, parts, monkeypatch)
    assert new[0].latency_s == pytest.approx(new[1].latency_s, rel=1e-12)


def test_offchip_residency_and_spilled_weights(monkeypatch):
    """Weights split over on-chip and off-chip levels differently per part (plans that do
    not agree) under the ``offchip`` and ``hot-first`` policies."""
    m = accelsim.load_workload("olmoe-1b-7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=2, context=64,
                                                  routing=Zipf(1.5)))
    rng = np.random.default_rng(5)
    a = accelsim.BitAllocation.uniform(m, 4).with_expert_bits(
        rng.choice([2, 3, 4, 8], size=(m.num_moe_layers, m.num_experts)))
    parts = _parts(m, rng, 4, pp=2)
    for res in ("hot-first", "offchip"):
        _check("rapid", g, a, parts, monkeypatch, residency=res)


def test_batch_share(monkeypatch):
    """Data-parallel attention beside expert parallelism: parts with a share of the
    sequences (``batch_share``), none of them (0: only their experts' ops), or all."""
    m = accelsim.load_workload("deepseek-v2-lite")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=8, context=128,
                                                  routing=Zipf(1.1)))
    rng = np.random.default_rng(11)
    a = accelsim.BitAllocation.uniform(m, 4).with_expert_bits(
        rng.choice([2, 4], size=(m.num_moe_layers, m.num_experts)))
    parts = [dataclasses.replace(p, batch_share=b) for p, b in
             zip(_parts(m, rng, 4, tp=1), (0.5, 0.5, 0.25, 0.0))]
    _check("h100", g, a, parts, monkeypatch)


def test_dense_model_and_embedding_only_parts(monkeypatch):
    """A dense model split over pipeline stages and tensor-parallel degrees, and parts that
    hold only the embedding or only the final norm and lm_head."""
    m = accelsim.load_workload("llm-3b-proxy")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=4, context=64))
    a = accelsim.BitAllocation.uniform(m, 4)
    L = m.total_layers
    parts = [P.DevicePart((0, L // 2), tp=2), P.DevicePart((L // 2, L), tp=2),
             P.DevicePart((0, L // 3), tp=1), P.DevicePart((0, 0), embed=True),
             P.DevicePart((L, L), lm_head=True)]
    _check("h100", g, a, parts, monkeypatch)


def test_one_layer_parts(monkeypatch):
    """The plan search's screening parts: one layer each (a few ops of the table, scaled on
    their own), with tensor parallelism and batch shares."""
    m = accelsim.load_workload("deepseek-v2-lite")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=8, context=128,
                                                  routing=Zipf(1.2)))
    rng = np.random.default_rng(13)
    a = accelsim.BitAllocation.uniform(m, 4).with_expert_bits(
        rng.choice([2, 3, 4], size=(m.num_moe_layers, m.num_experts)))
    full = _parts(m, rng, 4)
    parts = [P.DevicePart((ly, ly + 1), tp=tp, expert_share=full[d].expert_share,
                          batch_share=b)
             for ly, tp, d, b in ((0, 1, 0, 1.0), (1, 2, 1, 1.0), (2, 1, 2, 0.5),
                                  (5, 2, 3, 0.25), (5, 1, 0, 1.0))]
    _check("h100", g, a, parts, monkeypatch)


def test_op_data_built_when_read():
    """A shared-path result's ``op_data`` is built on first read, then reads, copies and
    pickles like the dict the reference path returns (same keys and values)."""
    import copy
    import pickle
    m = accelsim.load_workload("olmoe-1b-7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=4, context=64))
    a = accelsim.BitAllocation.uniform(m, 4)
    parts = _parts(m, np.random.default_rng(3), 2)
    opts = SimOptions("hot-first", None, 0.25, False)
    ref = P._simulate_parts("h100", g, a, parts, opts, shared=False)
    new = P._simulate_parts("h100", g, a, parts, opts, shared=True)
    d = new[0].op_data
    assert isinstance(d, dict) and d._build is not None     # nothing built yet
    assert len(d) == len(ref[0].op_data) and d._build is None
    for x in (copy.deepcopy(new[1].op_data), pickle.loads(pickle.dumps(new[1].op_data)),
              dict(new[1].op_data), {**new[1].op_data}):
        assert type(x) is dict
        assert not _diff(x, ref[1].op_data)
    assert not _diff(d, ref[0].op_data)
    assert list(d) == list(ref[0].op_data)                  # same key order
    assert len(new[0].ops) == len(ref[0].ops)               # the op table reads it


def test_dispatch_fraction_of_a_stack_of_shares():
    """The dispatch fractions of several parts' shares at once (one stacked call) equal the
    per-part call exactly, and the formula sum_j tokens[i, j] * share[i, j] / sum_j
    tokens[i, j] (0 for a row without tokens) summed term by term."""
    rng = np.random.default_rng(7)
    tok = rng.random((5, 9)) * rng.integers(0, 2, (5, 9))
    tok[2] = 0.0                                    # a row without routed tokens
    info = type("I", (), {"tokens": tok})()
    sh = rng.random((4, 5, 9)) * rng.integers(0, 2, (4, 5, 9))
    stacked = P._dispatch_fraction(info, sh)
    assert stacked.shape == (4, 5)
    for p in range(4):
        assert np.array_equal(stacked[p], P._dispatch_fraction(info, sh[p]))
        for i in range(5):
            tot = sum(tok[i])
            want = sum(t * s for t, s in zip(tok[i], sh[p, i])) / tot if tot > 0 else 0.0
            assert stacked[p, i] == pytest.approx(want, rel=1e-12, abs=0.0)


def test_content_keys_of_many_parts_equal_one_by_one():
    """The content keys worked out for all parts of a layer range at once equal each part's
    own key (parts on three layer ranges, two tp degrees, shares 0, 0.5 and 1, one part
    without a share table)."""
    from accelsim.sim import stages as S
    m = accelsim.load_workload("olmoe-1b-7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=8, context=64))
    rng = np.random.default_rng(1)
    a = accelsim.BitAllocation.uniform(m, 4).with_expert_bits(
        rng.choice([2, 3, 4], size=(m.num_moe_layers, m.num_experts)))
    low = S.lower_step(accelsim.load_hw("h100"), g, a)
    info = P._info(low.ot)
    ctx = P._expert_context(low, info)
    shape = (m.num_moe_layers, m.num_experts)
    parts = [P.DevicePart([(0, m.total_layers), (0, 8), (8, 16)][k % 3], tp=1 + k % 2,
                          expert_share=(rng.random(shape) < 0.2)
                          * rng.choice([0.5, 1.0], size=shape)) for k in range(12)]
    parts.append(P.DevicePart((0, 4)))
    rs = [P._resolved(p, m) for p in parts]
    keys = P._content_keys(ctx, rs)
    assert keys == [P._content_key(ctx, r) for r in rs]
    assert len(set(keys)) == len(keys)



def test_item_rows_partition_like_unique_rows():
    """Item-fraction rows told apart by their one level (or compared whole when spread over
    several): the same partition of the rows as ``stages._unique_rows``, and each id's row
    is the rows' value (-0.0 taken as 0.0)."""
    from accelsim.sim import stages as S
    rng = np.random.default_rng(0)
    a = np.zeros((5000, 4))
    a[np.arange(5000), rng.integers(0, 3, 5000)] = 1.0     # level 3 never whole
    a[::97] = rng.choice([0.0, 0.25, 0.75], size=(len(a[::97]), 4))
    a[5] = -0.0
    a[6, :2] = (1.0, 1.0)                                  # two ones: not one level
    rows, inv = P._item_rows(a)
    assert np.array_equal(np.stack(rows)[inv], a + 0.0)
    _, ref = S._unique_rows(a)
    assert len(rows) == len(np.unique(ref))
    assert len(set(zip(inv.tolist(), ref.tolist()))) == len(rows)


def test_held_fractions_equal_the_dense_sum():
    """Dispatch fractions from each part's held experts equal the sum over the whole share
    table (within 1e-12), and exactly 1.0 where a part holds every expert of a row whole."""
    m = accelsim.load_workload("olmoe-1b-7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=8, context=64,
                                                  routing=Zipf(1.2)))
    from accelsim.sim import stages as S
    low = S.lower_step(accelsim.load_hw("h100"), g, accelsim.BitAllocation.uniform(m, 4))
    info = P._info(low.ot)
    rng = np.random.default_rng(4)
    R, E = info.tokens.shape
    sh = (rng.random((5, R, E)) < 0.3) * rng.choice([0.5, 1.0], size=(5, R, E))
    sh[0, 2] = 1.0                                      # a whole row
    nz = [np.flatnonzero(x.ravel() > 0) for x in sh]
    part = np.repeat(np.arange(5), [len(z) for z in nz])
    flat = np.concatenate(nz)
    got = P._held_fractions(info, part, flat, sh.reshape(5, -1)[part, flat], 5)
    want = P._dispatch_fraction(info, sh)
    assert np.allclose(got, want, rtol=1e-12, atol=0.0)
    assert got[0, 2] == 1.0
