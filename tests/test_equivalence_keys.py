"""The system layer's batched equivalence keys equal the one-part-at-a-time keys."""

import numpy as np

import accelsim
from accelsim.sim.parts import DevicePart
from accelsim.system import load_system
from accelsim.system import simulate as SS
from accelsim.system.plan import parse_plan
from accelsim.workload import Zipf


def test_batched_keys_equal_one_by_one():
    m = accelsim.load_workload("olmoe-1b-7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=8, context=128,
                                                  routing=Zipf(1.2)))
    rng = np.random.default_rng(11)
    a = accelsim.BitAllocation.uniform(m, 4).with_expert_bits(
        rng.choice([2, 4], size=(m.num_moe_layers, m.num_experts)))
    system = load_system("h100-8")
    opts = {"residency": "hot-first"}
    prep = SS.prepare(system, g, m, a, a, parse_plan("pp=2,ep=4"))
    parts = prep.all_parts()
    R, E = m.num_moe_layers, m.num_experts
    # random shares, some parts equal up to which experts they hold, one share object twice
    extra = []
    for i in range(6):
        sh = np.zeros((R, E))
        for r in range(R):
            sh[r, rng.permutation(E)[:4 + i % 2]] = rng.choice([0.5, 1.0])
        extra.append(DevicePart((0, m.total_layers // (1 + i % 2)), expert_share=sh))
    extra.append(DevicePart(extra[0].layers, expert_share=extra[0].expert_share))
    extra.append(DevicePart((0, 3), expert_share=np.zeros((R, E))))
    extra.append(DevicePart((0, 3), expert_share=np.zeros((R, E))))
    extra.append(DevicePart((2, 4)))                          # no share matrix
    allp = parts + extra
    got = SS._equivalence_keys(allp, prep.stats, g, a, opts)
    ref = [SS._equivalence_key(p, prep.stats, g, a, opts) for p in allp]
    assert got == ref
    assert len(set(ref)) > 3                                  # the keys tell parts apart
    assert SS._equivalence_keys(allp, None, g, a, opts) == [
        SS._equivalence_key(p, None, g, a, opts) for p in allp]
