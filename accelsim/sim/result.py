"""``SimResult``: totals of one simulated step, the per-op table and the per-core timeline.

The per-op :class:`pandas.DataFrame` (``ops``) and the per-core timeline (``timeline``) are
built on first access from arrays kept in the record, so a sweep that only reads totals pays
nothing for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["SimResult", "TOTAL_KEYS", "BOUNDS"]

#: What ``bound`` may say (docs/simulator.md).
BOUNDS = ("compute", "vector", "offchip_bandwidth", "onchip_bandwidth", "noc", "latency")

#: Scalar totals, in the order of ``to_dict()`` and of the CSV row.
TOTAL_KEYS = ("latency_s", "cycles", "tokens", "tokens_per_s", "energy_j", "weight_bytes",
              "offchip_bytes", "onchip_bytes_moved", "macs", "mac_utilization",
              "compute_cycles", "stall_cycles", "vector_cycles", "noc_cycles", "bound")


@dataclass(frozen=True, eq=False)
class SimResult:
    """One simulated step (or one GEMM).

    Totals: ``latency_s`` and ``cycles`` of the step; ``tokens`` processed and
    ``tokens_per_s``; ``energy_j`` (with ``energy_breakdown_j``: mac, vector, noc, static and
    ``memory:<level>``); ``weight_bytes`` of the whole model under the allocation and where
    they live (``weight_bytes_by_level``, also ``kv_bytes_by_level``); bytes read plus
    written at every level in this step (``bytes_by_level``), ``offchip_bytes`` (crossing
    the off-chip interface) and ``onchip_bytes_moved`` (all on-chip levels);
    ``compute_cycles`` (MAC-array busy cycles summed over ops and cores), ``stall_cycles``
    (cycles an op held a core without computing: waiting for DMA, fill and drain),
    ``vector_cycles``, ``noc_cycles``; ``mac_utilization`` (useful PE-cycles at the bits used
    over ``cores x PEs x cycles``); ``busy_cycles`` per resource and ``bound``, the resource
    that limits (one of :data:`BOUNDS`; ``latency`` when no resource is busy for at least half
    the step: DMA setup, access latency, pipeline fill and dependencies dominate).
    ``layer_latency_s`` (a step of a model; None for a single GEMM): seconds per layer, shape
    ``(n_layers + 2,)``: [0] before the first transformer layer (embedding), [1 + l] layer
    ``l``, [-1] after the last (final norm, lm_head); it sums to ``latency_s`` up to
    rounding.

    Examples
    --------
    >>> from accelsim.sim import simulate_gemm
    >>> r = simulate_gemm("gemmini", 64, 256, 256)
    >>> r.cycles == r.compute_cycles + r.stall_cycles, r.bound
    (True, 'compute')
    >>> row = r.ops.iloc[0]
    >>> row["op"], int(row["cores"]), row["dataflow"]
    ('gemm', 1, 'weight_stationary')
    >>> sorted(r.to_dict()["weight_bytes_by_level"])
    ['accumulator', 'dram', 'scratchpad']
    """

    hw: str
    model: str | None
    scenario: dict
    residency: str
    clock_hz: float
    cores: int
    cycles: float
    latency_s: float
    tokens: float
    tokens_per_s: float
    energy_j: float
    energy_breakdown_j: dict
    weight_bytes: float
    weight_bytes_by_level: dict
    kv_bytes_by_level: dict
    activation_bytes_by_level: dict
    staging_bytes_by_level: dict
    bytes_by_level: dict
    offchip_bytes: float
    onchip_bytes_moved: float
    macs: float
    mac_utilization: float
    compute_cycles: float
    stall_cycles: float
    vector_cycles: float
    noc_cycles: float
    busy_cycles: dict
    bound: str
    warnings: tuple[str, ...] = ()
    op_data: dict = field(default_factory=dict, repr=False)
    phase_data: dict = field(default_factory=dict, repr=False)
    layer_latency_s: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        # the last line of defence of issue 16: no result is ever inf or NaN
        for key in TOTAL_KEYS[:-1]:
            v = getattr(self, key)
            if not (math.isfinite(v) if isinstance(v, float) else np.isfinite(v)):
                from ..errors import ConfigError
                raise ConfigError.single(
                    f"simulating {self.model or 'the GEMM'} on {self.hw} gives a non-finite "
                    f"{key} ({v}): a quantity of the accelerator or the workload is out of "
                    "range", key=key)

    @property
    def avg_power_w(self) -> float:
        """Average power of the step in watts (``energy_j / latency_s``): what one device
        draws while running it, static power included; the per-device figure a multi-device
        system sums."""
        return self.energy_j / self.latency_s if self.latency_s > 0 else 0.0

    def with_power_check(self, rated_power_w: float | None, hw_name: str = "") -> "SimResult":
        """This result, with a warning when its average power exceeds ``rated_power_w`` (the
        device's rated power or TDP; None: nothing to check)."""
        if rated_power_w is None or self.latency_s <= 0 or (
                self.avg_power_w <= rated_power_w * (1 + 1e-9)):
            return self
        from dataclasses import replace
        msg = (f"average power {self.avg_power_w:.1f} W exceeds the rated power "
               f"{rated_power_w:.1f} W of {hw_name or self.hw}: the energy model overestimates "
               "this step")
        return replace(self, warnings=tuple(self.warnings) + (msg,))

    # ------------------------------------------------------------------ tables
    @cached_property
    def ops(self):
        """One row per op: name, op, layer, expert, role, weight, w_bits, a_bits, p_active,
        m, k, n, macs, core (first core), cores, start_cycle, end_cycle, cycles (core-cycles
        of work), compute_cycles, vector_cycles, stall_cycles, dataflow, k_slices (K-slices
        the op is split into across cores, 1: N only), tile_m, tile_k, tile_n,
        ``bytes_<level>`` (read plus written), energy_j."""
        import pandas as pd

        from .engine import DATAFLOWS
        from .lower import OP_NAMES
        d = {k: (np.asarray(v) if isinstance(v, tuple) and k not in (
            "names", "role", "tensor_names", "level_names") else v)
            for k, v in self.op_data.items()}
        n = len(d["names"])
        tn = d["tensor_names"]
        cols = {
            "name": list(d["names"]), "op": [OP_NAMES[int(c)] for c in d["op_code"]],
            "layer": d["layer"], "expert": d["expert"], "role": list(d["role"]),
            "weight": [tn[t] if t >= 0 else None for t in d["tensor"]],
            "w_bits": d["w_bits"], "a_bits": np.full(n, d["a_bits"])}
        for k in ("p_active", "m", "k", "n", "macs", "core", "cores", "start_cycle",
                  "end_cycle", "cycles", "compute_cycles", "vector_cycles", "stall_cycles"):
            cols[k] = d[k]
        cols["dataflow"] = [DATAFLOWS[x] if x >= 0 else None for x in d["dataflow"]]
        cols["k_slices"] = d.get("k_slices", np.ones(n, np.int64))
        for j, k in enumerate(("tile_m", "tile_k", "tile_n")):
            cols[k] = d["tiles"][:, j]
        for i, name in enumerate(d["level_names"]):
            cols[f"bytes_{name}"] = d["bytes"][:, i]
        cols["energy_j"] = d["energy_j"]
        df = pd.DataFrame(cols)
        for c in ("layer", "expert"):
            df[c] = df[c].astype("Int64").where(df[c] >= 0)
        return df

    @cached_property
    def timeline(self):
        """Per-core timeline: one row per piece of an op on a core (core, op, start_cycle,
        end_cycle), from the wrap-around placement of every phase."""
        import pandas as pd
        p, d = self.phase_data, self.op_data
        rows_core, rows_op, rows_s, rows_e = [], [], [], []
        t0 = 0.0
        names, t1 = d["names"], d["cycles"]
        for ph in range(len(p["T"])):
            Tp, c = float(p["T"][ph]), int(p["c"][ph])
            j, tau = 0, 0.0
            for i in p["order"][p["ptr"][ph]:p["ptr"][ph + 1]]:
                left = float(t1[i])
                while left > 1e-9 * max(1.0, Tp) and j < c:
                    take = min(left, Tp - tau)
                    rows_core.append(j)
                    rows_op.append(names[i])
                    rows_s.append(t0 + tau)
                    rows_e.append(t0 + tau + take)
                    left -= take
                    tau += take
                    if tau >= Tp * (1 - 1e-12):
                        j, tau = j + 1, 0.0
            t0 += Tp
        return pd.DataFrame({"core": np.array(rows_core, np.int64), "op": rows_op,
                             "start_cycle": rows_s, "end_cycle": rows_e})

    # ------------------------------------------------------------------ export
    def to_dict(self, ops: bool = False) -> dict[str, Any]:
        """Totals as plain Python values (JSON-ready); ``ops=True`` adds ``ops``, a list of
        row dicts."""
        d: dict[str, Any] = {"hw": self.hw, "model": self.model, "scenario": self.scenario,
                             "residency": self.residency}
        for k in TOTAL_KEYS:
            v = getattr(self, k)
            d[k] = v if isinstance(v, str) else float(v)
        d.update({
            "weight_bytes_by_level": _floats(self.weight_bytes_by_level),
            "kv_bytes_by_level": _floats(self.kv_bytes_by_level),
            "activation_bytes_by_level": _floats(self.activation_bytes_by_level),
            "staging_bytes_by_level": _floats(self.staging_bytes_by_level),
            "bytes_by_level": _floats(self.bytes_by_level),
            "energy_breakdown_j": _floats(self.energy_breakdown_j),
            "busy_cycles": _floats(self.busy_cycles),
            "cores": int(self.cores), "clock_hz": float(self.clock_hz),
            "avg_power_w": float(self.avg_power_w),
            "warnings": list(self.warnings),
        })
        if ops:
            df = self.ops.astype(object).where(self.ops.notna(), None)
            d["ops"] = df.to_dict(orient="records")
        return d

    def summary_rows(self) -> list[dict[str, Any]]:
        """``[{"quantity", "value"}]`` rows of the totals (the CLI's table)."""
        rows = [{"quantity": k, "value": getattr(self, k)} for k in TOTAL_KEYS]
        for name, v in self.weight_bytes_by_level.items():
            rows.append({"quantity": f"weight_bytes[{name}]", "value": v})
        for name, v in self.bytes_by_level.items():
            rows.append({"quantity": f"bytes_moved[{name}]", "value": v})
        return rows


def _floats(d: dict) -> dict:
    return {str(k): float(v) for k, v in d.items()}
