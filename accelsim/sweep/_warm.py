"""Imported only by the process pool's fork server (never by the package itself): loads the
evaluation stack and runs one tiny simulation, so that numba's compiled functions are in
memory once and every worker forks with them instead of loading them again (about two
seconds per worker). The simulator starts no threads (no ``parallel=True`` kernels), so the
fork that follows is safe. A failure here only costs the workers that time.
"""

from __future__ import annotations

import accelsim.alloc  # noqa: F401
import accelsim.sweep.evaluate  # noqa: F401

_TINY_HW = {
    "name": "warm", "clock": "1 GHz",
    "cores": {"count": 1, "mac_array": {"rows": 4, "cols": 4,
                                        "arithmetic": {"kind": "fixed"}}},
    "memory": [{"name": "sram", "scope": "core", "capacity": "64 KiB",
                "read_bandwidth": "16 B/cycle", "read_energy": "1 pJ/B"},
               {"name": "dram", "scope": "offchip", "capacity": "1 GiB",
                "read_bandwidth": "1 GB/s", "read_energy": "100 pJ/B"}],
}
_TINY_MODEL = {"name": "warm-moe", "hidden_size": 16, "num_layers": 1, "vocab_size": 32,
               "attention": {"num_heads": 2}, "moe": {"num_experts": 2, "top_k": 1,
                                                       "expert_ffn_size": 32}}


def _warm() -> None:
    from accelsim.hw import load_hw
    from accelsim.precision import BitAllocation
    from accelsim.sim import simulate
    from accelsim.workload import Scenario, build_graph, load_workload
    model = load_workload(_TINY_MODEL)
    hw = load_hw(_TINY_HW)
    for phase in ("decode", "prefill"):
        g = build_graph(model, Scenario(phase=phase, batch=2, seq_len=4, context=4))
        simulate(hw, g, BitAllocation.uniform(model, 4))


try:
    from accelsim.sweep.executors import die_with_parent
    die_with_parent()     # the fork server dies with the sweep that started it
    _warm()
except Exception:  # noqa: BLE001 - a warm-up must never break the pool
    pass
