"""Design-space sweeps: specs, point evaluation, executors (local processes, Dask) and
resumable, chunked results.

The flow: :func:`load_sweep` validates a spec and expands it into :class:`Point` s;
:func:`run_sweep` evaluates them (:func:`evaluate_point` by default) on an executor and
returns one tidy table, one row per point. The spec format is documented in
``docs/sweeps.md``.
"""

from .evaluate import METRICS, build_hw, evaluate_point, noise_equivalent_bits
from .executors import EXECUTORS, Executor, make_executor, run_chunk
from .overrides import apply_overrides, parse_key_path
from .run import SweepResult, default_chunk, results_table, run_sweep
from .spec import PARAMS, Param, Point, SweepSpec, load_sweep, sweep_from_dict
from .store import parts_dir, read_table, write_table

__all__ = ["load_sweep", "sweep_from_dict", "SweepSpec", "Point", "Param", "PARAMS",
           "run_sweep", "SweepResult", "default_chunk", "results_table", "evaluate_point",
           "METRICS", "build_hw", "noise_equivalent_bits", "EXECUTORS", "Executor",
           "make_executor", "run_chunk", "apply_overrides", "parse_key_path", "parts_dir",
           "read_table", "write_table"]
