"""``SystemResult``: a :class:`~accelsim.sim.SimResult` of a whole system, with per-device and
per-link tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..sim.result import SimResult

__all__ = ["SystemResult", "SYSTEM_KEYS"]

#: Keys a system result adds to :meth:`SimResult.to_dict`.
SYSTEM_KEYS = ("devices", "plan", "per_device", "per_link", "energy_per_token_j",
               "pipeline")


@dataclass(frozen=True, eq=False)
class SystemResult(SimResult):
    """A simulated step on a system.

    Totals are per pipeline *period*: ``plan.microbatches`` micro-batches (each the
    scenario's batch) through every stage of every data-parallel replica. ``latency_s`` is
    the per-token latency: at decode the time per output token (the period), at prefill the
    time to first token of the last micro-batch (fill plus ``mb - 1`` bottleneck stages);
    ``tokens`` are the tokens of a period over all replicas and ``tokens_per_s`` the
    throughput with the pipeline full; ``energy_j`` counts every device used (dynamic energy
    of its micro-batches and static power for the whole period, idle or not) plus the links.

    ``devices``: devices used; ``plan``: the plan as text; ``per_device``: one dict per
    device (device, node, replica, stage, layers, experts, memory_bytes, expert_bytes,
    expected_load, latency_s, busy_fraction, utilization, energy_j, bound); ``per_link``:
    one dict per link level (level, bytes, time_s, energy_j) per period; ``pipeline``: the
    stage times and how they compose.
    """

    devices: int = 1
    plan: str = "pp=1,tp=1,ep=1,dp=1,mb=1"
    per_device: tuple = ()
    per_link: tuple = ()
    energy_per_token_j: float = 0.0
    pipeline: dict = field(default_factory=dict)
    parts: tuple = field(default=(), repr=False)

    @cached_property
    def ops(self):
        """The per-op tables of the distinct device parts, with a ``device`` column (the
        first device that runs the part)."""
        import pandas as pd
        if not self.parts:
            return super().ops
        frames = []
        for dev, res in self.parts:
            df = res.ops.copy()
            df.insert(0, "device", dev)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    def to_dict(self, ops: bool = False) -> dict[str, Any]:
        d = super().to_dict(ops=ops)
        d.update({"devices": int(self.devices), "plan": self.plan,
                  "per_device": [dict(r) for r in self.per_device],
                  "per_link": [dict(r) for r in self.per_link],
                  "energy_per_token_j": float(self.energy_per_token_j),
                  "pipeline": dict(self.pipeline)})
        return d

    def summary_rows(self) -> list[dict[str, Any]]:
        rows = [{"quantity": "devices", "value": self.devices},
                {"quantity": "plan", "value": self.plan}]
        rows += super().summary_rows()
        rows.append({"quantity": "energy_per_token_j", "value": self.energy_per_token_j})
        return rows
