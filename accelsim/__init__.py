"""accelsim: mixed-precision MoE expert quantization on digital AI accelerators.

Top-level API::

    import accelsim
    hw = accelsim.load_hw("northpole")          # or a system: accelsim.load_system("h100-8")
    model = accelsim.load_workload("mixtral-8x7b")
    graph = accelsim.build_graph(model, accelsim.Scenario(phase="decode", batch=16))
    alloc = accelsim.BitAllocation.uniform(model, 4)
    result = accelsim.simulate(hw, graph, alloc)

Nothing heavy happens at import: subpackages with numba kernels load on first use.
"""

from ._version import __version__
from .errors import AccelsimError, ConfigError, InfeasibleError
from .hw import load_hw
from .precision import BitAllocation, WeightFormat
from .system import load_system
from .workload import Scenario, build_graph, load_workload

__all__ = ["__version__", "load_hw", "load_system", "load_workload", "Scenario", "build_graph",
           "BitAllocation", "WeightFormat", "simulate", "AccelsimError", "ConfigError",
           "InfeasibleError"]


def __getattr__(name: str):
    if name == "simulate":
        # a chip or a system (accelsim.system.simulate dispatches on the first argument)
        from .system.simulate import simulate
        return simulate
    raise AttributeError(f"module 'accelsim' has no attribute {name!r}")
