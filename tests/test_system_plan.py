"""Plans, placement and the composition of a system step, with expected values derived by
hand (the per-device simulation is replaced by a stub whose per-layer latencies are known)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import accelsim
from accelsim.errors import ConfigError, DoesNotFitError
from accelsim.hw import hw_from_dict
from accelsim.system import (Plan, System, check_plan, enumerate_plans, parse_plan,
                             place_experts, split_layers)
from accelsim.system.spec import Link, Links
from accelsim.workload import Scenario, build_graph
from accelsim.workload.load import load_workload

from _sysstub import install_stub
from _toys import TINY_HW, TOY_WL

# ----------------------------------------------------------------------------- plans


def test_parse_plan_and_defaults():
    p = parse_plan("pp=4,tp=2,ep=8")
    assert (p.pp, p.tp, p.experts, p.dp, p.microbatches, p.devices) == (4, 2, 8, 1, 4, 32)
    assert parse_plan("tp=4").experts == 4          # ep defaults to tp
    assert parse_plan(" dp=2 , mb=3 ").devices == 2
    assert parse_plan(str(p)) == Plan(pp=4, tp=2, ep=8, mb=4)


@pytest.mark.parametrize("text, reason", [
    ("pp=4,tpp=2", "'tpp=2' is not KEY=N with KEY one of pp, tp, ep, dp, mb, rep, etp, tbo (did you "
                   "mean 'tp'?)"),
    ("pp=x", "pp must be a whole number (got 'x')"),
    ("pp=0", "pp must be an integer >= 1"),
    ("tp=2,ep=3", "tp=2 and ep=3: the larger must be a multiple of the smaller"),
    ("tp=2,tp=4", "tp is given twice"),
])
def test_bad_plan_strings_are_one_line(text, reason):
    with pytest.raises(ConfigError) as e:
        parse_plan(text)
    assert len(e.value.problems) == 1
    assert e.value.problems[0].key == "plan" and e.value.problems[0].reason == reason


def test_plans_that_do_not_divide_the_model():
    m = load_workload("mixtral-8x7b")        # 32 heads, 8 KV heads, 32 layers, 8 experts
    for text, words in [("tp=3", "tp=3 does not divide the 32 attention heads"),
                        ("tp=16,ep=8", "KV heads replicated"),   # 16 % 8 == 0: allowed
                        ("pp=33", "pp=33 is more stages than the 32 layers"),
                        ("ep=16", "ep=16 is more than the 8 routed experts"),
                        ("pp=4,ep=8", "needs 32 devices (dp x pp x max(tp, ep x etp)), h100-8 "
                                      "has 8")]:
        if text == "tp=16,ep=8":
            check_plan(parse_plan(text), m)            # KV heads replicated: fine
            continue
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            check_plan(parse_plan(text), m, 8, "h100-8")


def test_split_layers_balances_and_keeps_order():
    assert split_layers([1] * 8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert split_layers([3, 1, 1, 1], 2) == [(0, 1), (1, 4)]
    with pytest.raises(ConfigError):
        split_layers([1, 1], 3)


def test_enumerate_plans_covers_every_factorization():
    m = load_workload("mixtral-8x7b")
    plans = enumerate_plans(m, 8, devices_per_node=8)
    assert all(p.devices == 8 for p in plans)
    # dp x pp x max(tp, ep) = 8 with tp, ep powers of two, every combination once
    assert {str(p) for p in plans} >= {"pp=8,tp=1,ep=1,dp=1,mb=8", "pp=1,tp=8,ep=8,dp=1,mb=1",
                                       "pp=1,tp=1,ep=8,dp=1,mb=1", "pp=2,tp=2,ep=4,dp=1,mb=2",
                                       "pp=1,tp=1,ep=1,dp=8,mb=1"}
    assert len({str(p) for p in plans}) == len(plans)


def test_enumerate_plans_takes_every_divisor():
    from accelsim.system.plan import stage_shapes
    m = load_workload("mixtral-8x7b")             # 32 heads, 8 KV heads, 8 experts
    six = {str(p) for p in enumerate_plans(m, 6, devices_per_node=8)}
    # 6 = 2 stages x 3 experts slots: tp must divide 3 and the node's 8 devices (tp=1);
    # ep=3 holds at most 3 of the 8 experts a device, fewer than ep=2's 4
    assert {"pp=2,tp=1,ep=3,dp=1,mb=2", "pp=1,tp=1,ep=3,dp=2,mb=1",
            "pp=3,tp=2,ep=2,dp=1,mb=3", "pp=6,tp=1,ep=1,dp=1,mb=6"} <= six
    # ep=6 leaves 2 experts on the fullest device, as ep=5 and ep=4 do: not searched
    assert not any(",ep=6," in p or ",ep=5," in p for p in six)
    # 16 devices in one group: 8 expert slots of 2 devices each (etp=2), any tp of the node
    assert stage_shapes(m, 16, 8) == [(1, 8, 2), (2, 8, 2), (4, 8, 2), (8, 8, 2)]
    # an expert larger than a device: every split of at least 2 ways
    assert all(e * etp == 16 and etp >= 2 for _, e, etp in stage_shapes(m, 16, 8, 2))
    ds = load_workload("deepseek-v3")             # 256 experts, 128 heads
    plans = enumerate_plans(ds, 64, devices_per_node=8, exact=False)
    eps = {p.experts for p in plans if p.dp == 1 and p.pp == 1 and p.tp == 1}
    # ep useful for 256 experts: ceil(256 / ep) drops (52: 5 a device, 51: 6)
    assert {52, 43, 37, 64, 32, 29} <= eps and not eps & {53, 51, 60, 63}
    assert max(p.tp for p in plans) == 8          # tp inside a node of 8
    for p in plans:
        check_plan(p, ds, 64)
        assert 8 % p.tp == 0


def test_search_splits_experts_larger_than_a_device():
    from accelsim.system import load_system
    from accelsim.system.search import _min_etp
    from accelsim.system.simulate import weight_capacity_bytes
    m = load_workload("mixtral-8x7b")
    s = load_system("northpole-16")
    a16 = accelsim.BitAllocation.uniform(m, 16)
    # an expert: 3 matrices of 4096 x 14336 at 2 bytes = 352 MB over a card's weight memory
    expert = 3 * 4096 * 14336 * 2
    cap = weight_capacity_bytes(s.hw)
    assert _min_etp(s, m, a16) == -(-expert // int(cap)) == 2
    assert _min_etp(s, m, accelsim.BitAllocation.uniform(m, 4)) == 1
    plans = enumerate_plans(m, 16, devices_per_node=16, exact=False, min_etp=2)
    assert plans and all(p.etp >= 2 for p in plans)


# ----------------------------------------------------------------------------- placement


def test_placement_lpt_by_hand():
    # loads 5, 4, 3, 3, 2, 1 on 2 devices, each to the less loaded device:
    # 5 -> d0, 4 -> d1, 3 -> d1 (7), 3 -> d0 (8), 2 -> d1 (9), 1 -> d0 (9)
    load = np.array([[5.0, 4.0, 3.0, 3.0, 2.0, 1.0]])
    p = place_experts(np.full((1, 6), 1.0), load, 2, np.array([10.0, 10.0]))
    assert p.load.tolist() == [9.0, 9.0] and p.imbalance == 1.0
    assert p.share[0, 0].tolist() == [1, 0, 0, 1, 0, 1]


def test_placement_respects_memory_with_mixed_sizes():
    # expert 0 is big (8 B) and hot; device 0 has 8 B free, device 1 has 10 B
    nbytes = np.array([[8.0, 2.0, 2.0, 2.0, 2.0]])
    load = np.array([[10.0, 1.0, 1.0, 1.0, 1.0]])
    p = place_experts(nbytes, load, 2, np.array([8.0, 10.0]))
    assert (p.memory <= np.array([8.0, 10.0])).all()
    assert p.share[:, 0, :].sum(axis=0).tolist() == [1.0] * 5
    with pytest.raises(DoesNotFitError):
        place_experts(np.array([[9.0, 9.0, 9.0]]), np.ones((1, 3)), 2, np.array([10.0, 10.0]))


def test_replication_splits_a_hot_expert():
    load = np.array([[10.0, 1.0, 1.0, 1.0]])
    p0 = place_experts(np.ones((1, 4)), load, 2, np.array([10.0, 10.0]))
    p1 = place_experts(np.ones((1, 4)), load, 2, np.array([10.0, 10.0]), replicate=True)
    assert p0.load.max() == 10.0
    # LPT: {10} and {1, 1, 1}; copying expert 0 gives 5 | 5 + 3 = 8; then each copy of a
    # 1-token expert of the busier device moves 0.5: 5.5 | 7.5, 6 | 7, 6.5 | 6.5
    assert p1.load.tolist() == [6.5, 6.5]
    assert p1.share[:, 0, 0].tolist() == [0.5, 0.5]
    assert p1.share.sum(axis=0).tolist() == [[1.0, 1.0, 1.0, 1.0]]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 12), st.integers(0, 2**31 - 1), st.booleans())
def test_placement_never_exceeds_memory(ep, E, seed, rep):
    rng = np.random.default_rng(seed)
    nbytes = rng.integers(1, 9, size=(2, E)).astype(float)
    load = rng.random((2, E))
    cap = rng.uniform(0.5, 2.0, size=ep) * nbytes.sum() / ep
    try:
        p = place_experts(nbytes, load, ep, cap, replicate=rep)
    except DoesNotFitError:
        return
    assert (p.memory <= cap * (1 + 1e-9)).all()
    assert np.allclose(p.share.sum(axis=0), 1.0)
    assert p.load.sum() == pytest.approx(load.sum())


# ----------------------------------------------------------------------------- composition


@pytest.fixture
def stub(monkeypatch):
    install_stub(monkeypatch)


BW, A, E_B = 1e9, 1e-6, 1e-11


def _toy(phase="decode"):
    import yaml

    from accelsim.workload.model import MoEModel
    m = MoEModel.model_validate(yaml.safe_load(TOY_WL))
    hw = hw_from_dict(yaml.safe_load(TINY_HW))
    system = System(name="toy2", hw=hw, devices_per_node=2,
                    links=Links(intra_node=Link.make(BW, A, E_B, "chain")))
    g = build_graph(m, Scenario(phase=phase, batch=4, seq_len=1))
    return system, m, g, accelsim.BitAllocation.uniform(m, 8)


def test_pipeline_by_hand(stub):
    system, m, g, a = _toy()
    r = accelsim.simulate(system, g, a, plan="pp=2")       # mb defaults to pp = 2
    # stage 0: embed 0.1 ms + layer 0 (1 ms + 4 experts x 0.1 ms); stage 1: 1.4 + 0.2 ms
    s0, s1 = 1.5e-3, 1.6e-3
    # the activations of 4 tokens x 64 x 1 byte (8-bit activations) cross the chain once
    p2p = A + 4 * 64 / BW
    fill = s0 + s1 + p2p
    assert r.pipeline["stage_s"] == pytest.approx([s0, s1])
    assert r.pipeline["fill_s"] == pytest.approx(fill)
    period = max(fill, 2 * s1)
    assert r.latency_s == pytest.approx(period)
    assert r.tokens == 8 and r.tokens_per_s == pytest.approx(8 / period)
    assert r.energy_j == pytest.approx(2 * (s0 + s1) + 2 * 256 * E_B)
    assert r.energy_per_token_j == pytest.approx(r.energy_j / 8)
    assert r.devices == 2 and [d["stage"] for d in r.per_device] == [0, 1]
    link = {x["level"]: x for x in r.per_link}
    assert link["intra_node"]["bytes"] == pytest.approx(2 * 256)
    rp = accelsim.simulate(system, build_graph(m, Scenario(phase="prefill", batch=4,
                                                           seq_len=1)), a, plan="pp=2")
    assert rp.latency_s == pytest.approx(fill + (2 - 1) * s1)   # TTFT: fill + (mb-1) B


def test_expert_parallel_by_hand(stub):
    system, m, g, a = _toy()
    r = accelsim.simulate(system, g, a, plan="ep=2")
    # 4 experts, uniform routing, top-2 of 4 tokens: 2 tokens each; 2 experts per device.
    # ep=2 > tp=1: two attention groups of one device, 2 of the 4 sequences each, so the
    # stub's attention (1 ms), embedding (0.1 ms) and tail (0.2 ms) are halved
    layer = 1e-3 / 2 + 2 * 1e-4
    # dispatch: each device sends half of the other device's 4 tokens x 64 B = 128 B;
    # a chain of 2: 1 message + 128 B / BW; combine the same, in every MoE layer (2)
    a2a = A + 128 / BW
    expect = 1e-4 / 2 + 2 * layer + 2e-4 / 2 + 2 * 2 * a2a
    assert r.latency_s == pytest.approx(expect)
    assert [d["experts"] for d in r.per_device] == [4, 4]     # 2 per layer x 2 layers
    assert [d["expected_load"] for d in r.per_device] == [8.0, 8.0]
    link = {x["level"]: x for x in r.per_link}
    assert link["intra_node"]["bytes"] == pytest.approx(2 * 2 * 2 * 128)


def test_attention_groups_split_an_uneven_batch_by_hand(stub):
    system, m, _, a = _toy()
    g = build_graph(m, Scenario(phase="decode", batch=3, seq_len=1))
    r = accelsim.simulate(system, g, a, plan="ep=2")
    # 3 sequences over 2 attention groups: device 0 runs 2, device 1 runs 1
    assert [d["sequences"] for d in r.per_device] == [2, 1]
    # per layer the slower device: 2/3 of the stub's 1 ms attention + 2 experts x 0.1 ms;
    # embedding and tail: 2/3 of 0.1 and 0.2 ms
    layer = 1e-3 * 2 / 3 + 2 * 1e-4
    # experts get 3 tokens x top-2 / 4 = 1.5 tokens each, 3 per device; device 0 sends its
    # 2/3 of device 1's 3 tokens (2 x 64 B = 128 B), device 1 its 1/3 of device 0's (64 B);
    # the busier direction of the chain sets the time, dispatch and combine alike
    a2a = A + 128 / BW
    assert r.latency_s == pytest.approx(2 / 3 * 1e-4 + 2 * layer + 2 / 3 * 2e-4 + 4 * a2a)
    link = {x["level"]: x for x in r.per_link}
    assert link["intra_node"]["bytes"] == pytest.approx(2 * 2 * (128 + 64))
    # attention split over 4 groups of one device with 2 sequences (ep=4, 8 sequences);
    # ep <= tp keeps one group with the whole batch
    g8 = build_graph(m, Scenario(phase="decode", batch=8, seq_len=1))
    sys4 = System(name="toy4", hw=system.hw, devices_per_node=4, links=system.links)
    assert [d["sequences"] for d in accelsim.simulate(sys4, g8, a, plan="ep=4").per_device] \
        == [2, 2, 2, 2]
    assert [d["sequences"] for d in accelsim.simulate(sys4, g8, a, plan="tp=4,ep=2")
            .per_device] == [8, 8, 8, 8]
    assert [d["sequences"] for d in accelsim.simulate(sys4, g8, a, plan="tp=2,ep=4")
            .per_device] == [4, 4, 4, 4]


def test_attention_groups_send_their_own_sequences_between_stages(stub):
    system, m, g, a = _toy()
    sys4 = System(name="toy4", hw=system.hw, devices_per_node=4, links=system.links)
    r = accelsim.simulate(sys4, g, a, plan="pp=2,ep=2")
    # two attention groups of one device, 2 of the 4 sequences each: devices 0 -> 2 and
    # 1 -> 3 each send 2 tokens x 64 B at once (a port per device): A + 128 B / BW, where
    # one group (tp=2) sends all 4 tokens in one message
    assert r.pipeline["p2p_s"] == pytest.approx([A + 128 / BW])
    r1 = accelsim.simulate(sys4, g, a, plan="pp=2,tp=2,ep=2")
    assert r1.pipeline["p2p_s"] == pytest.approx([A + 256 / BW])
    # through a port per node the sends queue: one message of all 256 B
    node = system.links.intra_node.model_copy(update={"per": "node"})
    r2 = accelsim.simulate(sys4.with_links(intra_node=node), g, a, plan="pp=2,ep=2")
    assert r2.pipeline["p2p_s"] == pytest.approx([A + 256 / BW])


def test_two_batch_overlap_by_hand(stub):
    system, m, g, a = _toy()
    # ep=2, batch 4: per layer 0.5 ms of attention + 2 experts x 0.1 ms = 0.7 ms, embedding
    # 0.05 ms, tail 0.1 ms; a half micro-batch takes half of each (the stub is linear)
    plain = accelsim.simulate(system, g, a, plan="ep=2")
    r = accelsim.simulate(system, g, a, plan="ep=2,tbo=1")
    assert r.plan == "pp=1,tp=1,ep=2,dp=1,mb=1,tbo=1" and r.pipeline["overlap"] == [True]
    # a half's dispatch and combine (64 B each way, 2 x (A + 64 / BW) = 2.128 us) hide under
    # the other half's 0.35 ms layer: the stage takes its computation, 1.55 ms
    assert plain.latency_s == pytest.approx(1.55e-3 + 4 * (A + 128 / BW))
    assert r.latency_s == pytest.approx(1.55e-3, rel=1e-12)
    # links 10^4 times slower (1e5 B/s): communication bound; the critical path is both
    # halves' embedding, half A's first layer, the four half all-to-alls of the two MoE
    # layers back to back (each 2 x (A + 64 / 1e5) = 1.282 ms), half B's tail
    slow = system.with_links(intra_node=Link.make(1e5, A, E_B, "chain"))
    x = 2 * (A + 64 / 1e5)
    r = accelsim.simulate(slow, g, a, plan="ep=2,tbo=1")
    assert r.latency_s == pytest.approx(2 * 0.025e-3 + 0.35e-3 + 4 * x + 0.05e-3, rel=1e-12)
    plain = accelsim.simulate(slow, g, a, plan="ep=2")
    comm = 4 * (A + 128 / 1e5)
    assert plain.latency_s == pytest.approx(1.55e-3 + comm)
    assert max(1.55e-3, comm) <= r.latency_s <= plain.latency_s
    # with tensor parallelism and no expert all-to-all worth hiding, no overlap is chosen
    # when it does not pay; the result is the plain plan's
    assert (accelsim.simulate(system, g, a, plan="tp=2,tbo=1").latency_s
            <= accelsim.simulate(system, g, a, plan="tp=2").latency_s)


def test_tensor_parallel_by_hand(stub):
    system, m, g, a = _toy()
    r = accelsim.simulate(system, g, a, plan="tp=2")          # ep = tp = 2
    layer = 1e-3 / 2 + 2 * 1e-4
    ar = 2 * A + 2 * (1 / 2) * 256 / BW          # all-reduce of 256 B on 2 devices
    gather = A + (1 / 2) * 4 * 100 / BW          # logits of 4 sequences x 100 words x 1 B
    a2a = A + 128 / BW
    # all-reduces: one per layer after attention, one of the vocabulary-parallel embedding
    expect = 1e-4 + 2 * layer + 2e-4 + 3 * ar + gather + 2 * 2 * a2a
    assert r.latency_s == pytest.approx(expect)


def test_more_link_bandwidth_is_never_slower(stub):
    system, m, g, a = _toy()
    fast = system.with_links(intra_node=Link.make(10 * BW, A / 10, E_B, "chain"))
    for plan in ("pp=2", "ep=2", "tp=2"):
        assert (accelsim.simulate(fast, g, a, plan=plan).latency_s
                <= accelsim.simulate(system, g, a, plan=plan).latency_s)


def test_deterministic(stub):
    system, m, g, a = _toy()
    r1 = accelsim.simulate(system, g, a, plan="tp=2").to_dict()
    r2 = accelsim.simulate(system, g, a, plan="tp=2").to_dict()
    assert r1 == r2


def test_expert_tensor_parallel_by_hand(stub):
    system, m, g, a = _toy()
    r = accelsim.simulate(system, g, a, plan="ep=1,etp=2")
    assert r.devices == 2 and r.plan == "pp=1,tp=1,ep=1,dp=1,mb=1,etp=2"
    # one expert slot of 2 devices: each holds half of every expert and serves all of its
    # 8 token copies per layer (4 experts x 2 tokens); dispatch sends each device the other's
    # half of them: 8 x 64 B / 2 = 256 B, combine returns as many partial outputs
    assert [d["experts"] for d in r.per_device] == [8, 8]      # 4 slices x 2 layers
    assert [d["expected_load"] for d in r.per_device] == [16.0, 16.0]
    link = {x["level"]: x for x in r.per_link}
    assert link["intra_node"]["bytes"] == pytest.approx(2 * 2 * 2 * 256)


def test_expert_tensor_parallel_plans():
    p = parse_plan("tp=8,etp=4")
    assert (p.experts, p.group, p.devices) == (2, 8, 8)
    assert str(p) == "pp=1,tp=8,ep=2,dp=1,mb=1,etp=4"
    assert parse_plan("ep=4,etp=2").group == 8
    m = load_workload("mixtral-8x7b")          # expert FFN 14336 = 2^11 x 7
    with pytest.raises(ConfigError, match="etp=3 does not divide the expert FFN width 14336"):
        check_plan(parse_plan("ep=1,etp=3"), m)
    with pytest.raises(ConfigError, match="dense model has no routed experts"):
        check_plan(parse_plan("etp=2"), load_workload("llama-2-7b"))


def test_screen_is_exact_where_parts_add_up(stub):
    # with the stub a part's time is the sum of its layers', so every plan's screened
    # estimate equals its exact result, whichever plan first summed an equivalent part (on
    # other layers: pipeline stages of the same kinds of layers)
    import yaml

    from accelsim.system.plan import enumerate_plans
    from accelsim.system.search import _Runner
    from accelsim.system.simulate import prepare
    from accelsim.workload.model import MoEModel
    wl = yaml.safe_load(TOY_WL)
    wl["num_layers"] = 6
    m = MoEModel.model_validate(wl)
    system, _, _, a = _toy()
    a = accelsim.BitAllocation.uniform(m, 8)
    sys4 = System(name="toy4", hw=system.hw, devices_per_node=4, links=system.links)
    g = build_graph(m, Scenario(phase="decode", batch=3, seq_len=1))
    memo: dict = {}
    preps = [prepare(sys4, g, m, a, a, p, memo)
             for p in enumerate_plans(m, 4, devices_per_node=4, exact=False) if p.dp == 1]
    run = _Runner(sys4, g, a, {}, {}, preps[0].stats, memo)
    est = [run.estimate(p) for p in preps]
    for p, e in zip(preps, est):
        x = run.exact([p])[0]
        assert e.latency_s == pytest.approx(x.latency_s, rel=1e-12), str(p.plan)
        assert e.energy_per_token_j == pytest.approx(x.energy_per_token_j, rel=1e-12)
