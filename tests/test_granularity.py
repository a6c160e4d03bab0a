"""``--granularity layer``: one bit-width per MoE layer's routed experts, chosen per layer
(router-norm by the layers' summed signal; pmq, hessian and budget with one item per layer)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import yaml

from _toys import TOY_WL
from accelsim.alloc.budget import budget_allocation
from accelsim.alloc.methods import AllocRequest, allocate
from accelsim.alloc.signals import ExpertSignals
from accelsim.errors import ConfigError
from accelsim.precision import BitAllocation, WeightFormat
from accelsim.workload import load_workload, workload_from_dict


@pytest.fixture(scope="module")
def mixtral():
    return load_workload("mixtral-8x7b")


@pytest.fixture(scope="module")
def toy():
    return workload_from_dict(yaml.safe_load(TOY_WL))


def _equal_within_layers(a: BitAllocation) -> bool:
    return bool((a.expert_bits == a.expert_bits[:, :1]).all())


def test_router_norm_ranks_layers_by_summed_signal(mixtral):
    rng = np.random.default_rng(0)
    c = rng.permutation(32).astype(float)             # per-layer level of the signal
    norms = c[:, None] + rng.random((32, 8)) * 0.1    # layer sums ordered as c
    a = allocate("router-norm", AllocRequest(mixtral, ExpertSignals(router_norm=norms),
                                             avg_bits=2.0, levels=(3, 1),
                                             granularity="layer"))
    assert _equal_within_layers(a)
    # two levels: round(0.5 * 32) = 16 layers at 3 bits, those of the smallest sums
    assert sorted(np.flatnonzero(a.expert_bits[:, 0] == 3).tolist()) == \
        sorted(np.argsort(c)[:16].tolist())
    assert a.meta["granularity"] == "layer" and a.average_expert_bits() == 2.0


@pytest.mark.parametrize("method", ["router-norm", "reverse", "frequency", "random", "pmq",
                                    "hessian", "uniform"])
def test_every_method_gives_equal_bits_within_each_layer(mixtral, method):
    rng = np.random.default_rng(1)
    s = ExpertSignals(router_norm=rng.random((32, 8)),
                      frequency=rng.dirichlet(np.ones(8), 32),
                      sensitivity=np.sort(rng.random((32, 8, 3)), axis=2)[:, :, ::-1],
                      sensitivity_bits=(1, 2, 3))
    avg = 2.0 if method == "uniform" else 2.5
    a = allocate(method, AllocRequest(mixtral, s, avg_bits=avg, granularity="layer"))
    assert _equal_within_layers(a)
    assert a.average_expert_bits() <= avg + 1e-9


def test_pmq_by_layer_against_brute_force(toy):
    rng = np.random.default_rng(3)
    f = rng.dirichlet(np.ones(4), 2)
    lv = (3, 2, 1)
    sens = np.sort(rng.random((2, 4, 3)), axis=2)[:, :, ::-1]      # at bits 1, 2, 3
    s = ExpertSignals(frequency=f, sensitivity=sens, sensitivity_bits=(1, 2, 3))
    for avg in (2.5, 3.0):
        a = allocate("pmq", AllocRequest(toy, s, avg_bits=avg, levels=lv,
                                         granularity="layer"))
        best = None
        for b in itertools.product(lv, repeat=2):        # one level per layer
            if sum(b) > avg * 2 or 3 not in b or 2 not in b:
                continue
            v = sum((f[r] * sens[r, :, b[r] - 1]).sum() for r in range(2))
            if best is None or v < best[0]:
                best = (v, b)
        assert tuple(a.expert_bits[:, 0]) == best[1]
        assert _equal_within_layers(a)


def test_budget_by_layer_against_brute_force(toy):
    rng = np.random.default_rng(5)
    s = ExpertSignals(frequency=rng.dirichlet(np.ones(4), 2))
    lv = (4, 3, 2)
    per = {b: sum(WeightFormat(b).storage_bytes(*toy.tensor(f"L0.E0.{m}").shape)
                  for m in toy.expert_matrices) * 4 for b in lv}     # a layer's experts
    roles = AllocRequest(toy).role_bits
    fixed = BitAllocation(toy.name, np.full((2, 4), 2), defaults=roles).weight_bytes(toy) \
        - 2 * per[2]
    budget = fixed + per[4] + per[2] + 10
    r = budget_allocation(AllocRequest(toy, s, levels=lv, memory_budget_bytes=budget,
                                       granularity="layer"))
    a = r.allocation
    assert _equal_within_layers(a) and r.weight_bytes <= budget
    best = None
    for b in itertools.product(lv, repeat=2):
        if fixed + per[b[0]] + per[b[1]] > budget:
            continue
        v = sum(s.frequency[i].sum() * 4.0 ** -b[i] for i in range(2))   # 4^-bits proxy
        if best is None or v < best[0]:
            best = (v, b)
    assert tuple(a.expert_bits[:, 0]) == best[1]


def test_layer_granularity_refuses_a_zero_level(mixtral):
    with pytest.raises(ConfigError, match="prune all of its experts"):
        AllocRequest(mixtral, levels=(4, 2, 0), granularity="layer")
    with pytest.raises(ConfigError, match="expert, layer"):
        AllocRequest(mixtral, granularity="tensor")


def test_cli_granularity(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "s.npz", router_norm=rng.random((32, 8)))
    out = tmp_path / "a.json"
    rc, text, err = run_cli("allocate", "--workload", "mixtral-8x7b", "--method",
                            "router-norm", "--avg-bits", "2.5", "--granularity", "layer",
                            "--signals", tmp_path / "s.npz", "--out", out)
    assert rc == 0, err
    assert "granularity          layer" in text
    assert _equal_within_layers(BitAllocation.load(out))
    rc, _, err = run_cli("allocate", "--workload", "mixtral-8x7b", "--method", "uniform",
                         "--avg-bits", "2", "--granularity", "layer", "--levels", "4,2,0")
    assert rc == 2 and err.count("\n") == 1 and "granularity 'layer'" in err


def test_sweep_point_with_layer_granularity_and_a_zero_level(mixtral):
    from accelsim.sweep.allocation import make_allocation
    from accelsim.sweep.spec import sweep_from_dict
    shares = np.full((32, 8), 1 / 8)
    a = make_allocation(mixtral, {"method": "router-norm", "avg_bits": 2.5, "levels": None,
                                  "seed": 0, "granularity": "layer"}, shares=shares)
    assert _equal_within_layers(a) and a.average_expert_bits() == 2.5
    spec = sweep_from_dict({"fixed": {"hw": "h100", "workload": "mixtral-8x7b",
                                      "method": "router-norm", "avg_bits": 2,
                                      "levels": [4, 2, 0]},
                            "axes": [{"grid": {"granularity": ["expert"]}}]})
    p = spec.points[0].params
    a = make_allocation(mixtral, p, shares=shares)
    assert a.num_pruned == 64 and p["levels"] == (4, 2, 0)


def _op_bits(model, ot, alloc):
    from accelsim.sim.lower import tensor_bits, tensor_table
    tb = tensor_bits(tensor_table(model), alloc)
    return np.where(ot.tensor >= 0, tb[np.maximum(ot.tensor, 0)], 0)


def test_mixed_width_kernels_by_hand(mixtral):
    from accelsim.sim.lower import lower
    from accelsim.sim.stages import mixed_width_kernels
    from accelsim.workload import Scenario, build_graph
    bits = np.full((32, 8), 3)
    bits[:, :4] = 2
    mixed = BitAllocation(mixtral.name, bits)
    one = BitAllocation.uniform(mixtral, 3)
    # prefill: every expert runs: (2 widths - 1) extra pass in each of the 2 expert phases
    # (w1/w3, then w2) of each of the 32 MoE layers
    ot = lower(build_graph(mixtral, Scenario(phase="prefill", seq_len=64)))
    assert mixed_width_kernels(ot, _op_bits(mixtral, ot, mixed)).sum() == pytest.approx(64)
    assert mixed_width_kernels(ot, _op_bits(mixtral, ot, one)).sum() == 0
    # decode batch 1: each expert runs with p = 2/8; a width group of 4 with 1 - 0.75^4, one
    # pass of the layer with 1 - 0.75^8
    ot = lower(build_graph(mixtral, Scenario(batch=1)))
    want = 2 * (1 - 0.75 ** 4) - (1 - 0.75 ** 8)
    got = mixed_width_kernels(ot, _op_bits(mixtral, ot, mixed))
    assert np.count_nonzero(got) == 64 and got[got > 0] == pytest.approx(want)


def test_simulator_charges_one_kernel_per_extra_width(toy):
    from accelsim.hw import hw_from_dict
    from accelsim.sim import simulate
    from accelsim.workload import Scenario, build_graph
    from _toys import TINY_HW
    base = yaml.safe_load(TINY_HW)
    x = 10e-6
    hws = {o: hw_from_dict(dict(base, efficiency={"kernel_overhead": f"{o * 1e6:g} us"}))
           for o in (0.0, x)}
    g = build_graph(toy, Scenario(phase="prefill", seq_len=16))
    mixed = BitAllocation(toy.name, np.array([[4, 4, 2, 2], [4, 2, 2, 2]]),
                          defaults={"attention": 8})
    one = BitAllocation(toy.name, np.full((2, 4), 4), defaults={"attention": 8})

    def overhead(a):
        return simulate(hws[x], g, a).latency_s - simulate(hws[0.0], g, a).latency_s

    # 16 tokens, top-2 of 4: each expert runs with p = 1 - 0.5^16; a width group of n
    # experts needs its pass with 1 - (1 - p)^n, the layer's one pass with 1 - (1 - p)^4;
    # 2 expert phases (w1/w3, then w2) per MoE layer: almost 4 extra passes
    idle = 0.5 ** 16
    layer0 = 2 * (1 - idle ** 2) - (1 - idle ** 4)            # widths 4,4 | 2,2
    layer1 = (1 - idle) + (1 - idle ** 3) - (1 - idle ** 4)   # widths 4 | 2,2,2
    assert overhead(mixed) - overhead(one) == pytest.approx(2 * (layer0 + layer1) * x,
                                                            rel=1e-9)
    assert overhead(one) > 0
