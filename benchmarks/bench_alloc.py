"""Benchmarks of the precision allocator (issue 5, item 8).

Run from the repository root::

    python benchmarks/bench_alloc.py            # every case (about a minute)
    python benchmarks/bench_alloc.py --quick    # fewer repeats, no latency case

Prints a markdown report (machine, load average before and after, minimum and median wall
time over the repeats). Results are recorded by hand in ``docs/performance.md``.

Cases:

1. The paper's method on Mixtral-8x7B (32 x 8) and Mixtral-8x22B (56 x 8): ``expert_order``
   (combined, zeta 3) + ``assign_bits`` (3/2/1), and the whole ``allocate('router-norm')``.
2. Max intra-neuron variance of one Mixtral-8x7B ``w1`` (14336 x 4096, float32 in memory):
   the per-expert cost of the checkpoint signal (x 256 experts for the model).
3. ``solve_mckp`` at DeepSeek-V3 scale: 58 MoE layers x 256 experts = 14,848 items x 4
   levels (costs = expert bytes with a little noise, loss = frequency x 4^-bits), budget at
   2.5 bits on average; time and the gap to the LP bound.
4. ``allocate('budget')`` on DeepSeek-V3 with a memory budget (costs, solve, allocation).
5. ``allocate('pmq')`` on Mixtral-8x7B and DeepSeek-V3 (one HiGHS program for all layers).
6. ``allocate('budget')`` with a latency budget on gemmini for OLMoE-1B-7B (simulations
   included; the first simulation compiles the numba engine, so it is warmed up first).
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
from _timing import timed

from accelsim.alloc import (AllocRequest, ExpertSignals, allocate, assign_bits, expert_order,
                            max_intra_neuron_variance, mckp_lp_bound, solve_mckp)
from accelsim.precision import WeightFormat
from accelsim.workload import load_workload


def row(name: str, tmin: float, tmed: float, note: str = "") -> str:
    return f"| {name} | {tmin * 1e3:.3f} | {tmed * 1e3:.3f} | {note} |"


def paper_cases(repeats: int) -> list[str]:
    rows = []
    rng = np.random.default_rng(0)
    for wl in ("mixtral-8x7b", "mixtral-8x22b"):
        m = load_workload(wl)
        shape = (m.num_moe_layers, m.moe.num_experts)
        s = ExpertSignals(router_norm_change=rng.standard_normal(shape),
                          max_variance=rng.random(shape))

        def order_and_bits():
            return assign_bits(expert_order(s.router_norm_change, s.max_variance, 3.0), 2.25,
                               (3, 2, 1))
        _, a, b = timed(order_and_bits, repeats)
        rows.append(row(f"expert_order + assign_bits, {wl} {shape}", a, b))
        req = AllocRequest(m, s, avg_bits=2.25, levels=(3, 2, 1))
        _, a, b = timed(lambda: allocate("router-norm", req), repeats)
        rows.append(row(f"allocate('router-norm'), {wl}", a, b))
    w = rng.standard_normal((14336, 4096)).astype(np.float32)
    _, a, b = timed(lambda: max_intra_neuron_variance(w, "max_row"), max(2, repeats // 5))
    rows.append(row("max intra-neuron variance, one Mixtral w1 (14336 x 4096)", a, b,
                    f"x 256 experts = {256 * a:.1f} s per model"))
    return rows


def deepseek_problem(seed: int = 0):
    m = load_workload("deepseek-v3")
    L, E = m.num_moe_layers, m.moe.num_experts
    levels = np.array([2, 3, 4, 8])
    per = np.array([3 * WeightFormat(int(b)).storage_bytes(2048, 7168) for b in levels],
                   dtype=float)
    rng = np.random.default_rng(seed)
    cost = per[None] * (1 + 1e-6 * rng.random((L * E, 4)))
    freq = rng.dirichlet(np.ones(E), L)
    loss = freq.reshape(-1, 1) * 4.0 ** -levels
    budget = L * E * 3 * WeightFormat(2).storage_bytes(2048, 7168) * 1.25
    return m, freq, cost, loss, budget


def mckp_cases(repeats: int) -> list[str]:
    m, freq, cost, loss, budget = deepseek_problem()
    x, a, b = timed(lambda: solve_mckp(cost, loss, budget), repeats)
    lp = mckp_lp_bound(cost, loss, budget)
    val = loss[np.arange(len(x)), x].sum()
    rows = [row(f"solve_mckp, {cost.shape[0]:,} items x {cost.shape[1]} (DeepSeek-V3)", a, b,
                f"relative gap to the LP bound {(val - lp) / lp:.2e}; "
                f"budget used {cost[np.arange(len(x)), x].sum() / budget:.6f}")]
    s = ExpertSignals(frequency=freq)
    req = AllocRequest(m, s, levels=(4, 3, 2), memory_budget_bytes=280e9)
    r, a, b = timed(lambda: allocate("budget", req), repeats)
    rows.append(row("allocate('budget'), DeepSeek-V3, memory budget 280 GB", a, b,
                    f"average bits {r.average_expert_bits():.3f}"))
    req = AllocRequest(m, ExpertSignals(frequency=freq), avg_bits=2.5, levels=(3, 2, 1))
    r, a, b = timed(lambda: allocate("pmq", req), max(1, repeats // 5))
    rows.append(row("allocate('pmq'), DeepSeek-V3 (one HiGHS program, 58 x 256 x 3 binaries)",
                    a, b, f"average bits {r.average_expert_bits():.3f}"))
    mx = load_workload("mixtral-8x7b")
    req = AllocRequest(mx, ExpertSignals(frequency=np.random.default_rng(0).dirichlet(
        np.ones(8), 32)), avg_bits=2.5, levels=(3, 2, 1))
    r, a, b = timed(lambda: allocate("pmq", req), repeats)
    rows.append(row("allocate('pmq'), Mixtral-8x7B (one HiGHS program, 32 x 8 x 3 binaries)",
                    a, b, f"average bits {r.average_expert_bits():.3f}"))
    return rows


def latency_case(repeats: int) -> list[str]:
    from accelsim.alloc import budget_allocation
    from accelsim.hw import load_hw
    from accelsim.sim import simulate
    from accelsim.workload import Scenario, build_graph
    m = load_workload("olmoe-1b-7b")
    hw = load_hw("gemmini")
    from accelsim.precision import BitAllocation
    simulate(hw, build_graph(m, Scenario()), BitAllocation.uniform(m, 2))   # numba warm-up
    calls = []

    def counting(*args, **kw):
        calls.append(1)
        return simulate(*args, **kw)

    req = AllocRequest(m, levels=(4, 3, 2), hw=hw, latency_budget_s=0.0835)
    r, a, b = timed(lambda: budget_allocation(req, simulate=counting), repeats)
    return [row("budget, OLMoE-1B-7B on gemmini, latency budget 83.5 ms", a, b,
                f"{len(calls) // repeats} simulations per run, {r.repairs} repairs, "
                f"average bits {r.allocation.average_expert_bits():.3f}")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeats = 3 if args.quick else 10
    load0 = os.getloadavg()
    rows = paper_cases(repeats) + mckp_cases(repeats)
    if not args.quick:
        rows += latency_case(3)
    load1 = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f}\n")
    print("| case | min ms | median ms | note |\n|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
