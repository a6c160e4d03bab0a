"""Predict the metrics of one measured row with the simulator.

A row runs on one chip (:func:`accelsim.sim.simulate`, exactly as before systems existed) or,
with more than one device, on a system (:func:`accelsim.simulate` with the row's system and
plan: tensor and pipeline parallelism, expert placement and every link charged;
docs/systems.md). A system step simulates one micro-batch: a batch of ``B`` requests under
a plan with ``dp`` replicas and ``mb`` micro-batches (``mb`` of the plan, at most
``ceil(B / dp)``; the plan's default is ``pp``) is ``dp x mb`` micro-batches of
``ceil(B / (dp mb))`` requests; a decode step's time is the
pipeline's period (every micro-batch advances one token), a prefill's the fill plus the
remaining micro-batches at the bottleneck stage's rate.

How a row's metrics come from simulated steps (``mode``; docs/fidelity.md):

- ``static-batch`` (a batch of ``B`` requests, prefill then ``O`` decode steps, as
  TensorRT-LLM's gptSessionBenchmark runs them): ``T = prefill(B, I) + O x decode(B,
  context I + O/2)``; ``tokens_per_s = B O / T``. A decode step's time is affine in its
  context (the KV cache read grows by one token per step), so the step at the mean context
  times ``O`` is the sum over the ``O`` steps.
- ``first-token``: ``ttft_s = prefill(B, I)``.
- ``single-stream``: ``ttft_s = prefill(B, I)`` and ``tpot_s = decode(B, context I + O/2)``.
- ``pipeline`` (users in flight on a pipeline of devices, NorthPole): ``B`` users decode at
  context ``I + O/2``; ``tpot_s`` = the decode step (the period in which every user gets a
  token), ``tokens_per_s = B / tpot_s``.

``tokens_per_s_per_device`` is ``tokens_per_s`` over the row's devices. ``power_w`` is the
energy of the simulated steps over their time, every device of the row included: devices the
plan leaves idle draw their static power; a system's host power is not included (published
figures are the accelerators' power).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..precision import BitAllocation
from ..sim import simulate
from ..workload import Scenario, build_graph
from .measured import MeasuredRow, Target, resolve_target

__all__ = ["Prediction", "predict_row"]


@dataclass(frozen=True)
class Prediction:
    """Predicted metrics of one row (keys of :data:`~accelsim.fidelity.measured.METRICS`
    plus the bounds), with a note on the approximation used."""

    row: str
    values: dict
    note: str = ""


@dataclass(frozen=True)
class Step:
    """One simulated step of a row: its time, its energy (all the row's devices) and the
    simulator's result."""

    latency_s: float
    energy_j: float
    result: object

    @property
    def avg_power_w(self) -> float:
        return self.energy_j / self.latency_s if self.latency_s > 0 else 0.0


class _Steps:
    """Simulated steps of one row, built once per (phase, batch, length)."""

    def __init__(self, row: MeasuredRow, ideal: bool, hw=None, cache: dict | None = None,
                 target: Target | None = None):
        self.row, self.ideal = row, ideal
        cache = {} if cache is None else cache
        t = target if target is not None else resolve_target(row, cache=cache)
        if hw is not None:          # the calibration script's candidate chip
            t = replace(t, hw=hw, system=None if t.system is None else replace(
                t.system, hw=hw))
        self.target = t
        self.hw, self.model = t.hw, t.model
        self.system = t.system
        if self.system is not None and ideal:
            self.system = replace(self.system, hw=self.system.hw.ideal())
        p = row.precision
        self.alloc = BitAllocation.uniform(self.model, p.weight_bits,
                                           activation_bits=p.activation_bits,
                                           kv_bits=p.kv_bits,
                                           defaults={"embeddings": p.embedding_bits})

    def replicas(self) -> int:
        return 1 if self.system is None else self.target.plan.dp

    def microbatches(self, batch: int) -> int:
        """Micro-batches per replica: the plan's (default ``pp``), at most the requests a
        replica serves."""
        if self.system is None:
            return 1
        per_replica = math.ceil(batch / self.replicas())
        return max(1, min(self.target.plan.microbatches, per_replica))

    def graph(self, phase: str, batch: int, length: int):
        b = math.ceil(batch / (self.replicas() * self.microbatches(batch)))
        if phase == "prefill":
            sc = Scenario(phase="prefill", batch=b, seq_len=length)
        else:
            sc = Scenario(phase="decode", batch=b, context=length)
        return build_graph(self.model, sc)

    def step(self, phase: str, batch: int, length: int) -> Step:
        g = self.graph(phase, batch, length)
        if self.system is None:
            r = simulate(self.hw, g, self.alloc, ideal=self.ideal)
            extra = (self.target.devices - 1) * self.hw.energy.static_power_w
            return Step(r.latency_s, r.energy_j + extra * r.latency_s, r)
        from ..system.simulate import simulate_system
        plan = replace(self.target.plan, mb=self.microbatches(batch))
        r = simulate_system(self.system, g, self.alloc, plan)
        idle = (self.target.devices - plan.devices) * self.hw.energy.static_power_w
        # published powers are the accelerators': the system's host power is left out
        host = float(r.energy_breakdown_j.get("host", 0.0))
        return Step(r.latency_s, r.energy_j - host + idle * r.latency_s, r)


def _static_batch(s: _Steps, r: MeasuredRow) -> dict:
    pre = s.step("prefill", r.batch, r.input_len)
    dec = s.step("decode", r.batch, r.input_len + r.output_len // 2)
    t = pre.latency_s + r.output_len * dec.latency_s
    e = pre.energy_j + r.output_len * dec.energy_j
    tok = r.batch * r.output_len / t
    return {"tokens_per_s": tok, "ttft_s": pre.latency_s, "tpot_s": dec.latency_s,
            "power_w": e / t, "tokens_per_s_per_w": tok / (e / t)}


def _first_token(s: _Steps, r: MeasuredRow) -> dict:
    pre = s.step("prefill", r.batch, r.input_len)
    return {"ttft_s": pre.latency_s, "power_w": pre.avg_power_w}


def _single_stream(s: _Steps, r: MeasuredRow) -> dict:
    pre = s.step("prefill", r.batch, r.input_len)
    dec = s.step("decode", r.batch, r.input_len + r.output_len // 2)
    tok = r.batch / dec.latency_s
    return {"ttft_s": pre.latency_s, "tpot_s": dec.latency_s, "tokens_per_s": tok,
            "power_w": dec.avg_power_w, "tokens_per_s_per_w": tok / dec.avg_power_w}


def _pipeline(s: _Steps, r: MeasuredRow) -> dict:
    dec = s.step("decode", r.batch, r.input_len + r.output_len // 2)
    itl = dec.latency_s
    tok = r.batch / itl
    return {"tpot_s": itl, "tpot_s_max": itl, "tokens_per_s": tok,
            "power_w": dec.avg_power_w, "tokens_per_s_per_w": tok / dec.avg_power_w}


_MODES = {"static-batch": _static_batch, "first-token": _first_token,
          "single-stream": _single_stream, "pipeline": _pipeline}


def predict_row(row: MeasuredRow, *, ideal: bool = False, hw=None,
                cache: dict | None = None, target: Target | None = None) -> Prediction:
    """Simulate ``row`` and return its predicted metrics (see the module doc).

    ``ideal=True`` ignores the hardware presets' efficiency models (the ideal roofline);
    ``hw`` replaces the row's chip (an :class:`~accelsim.hw.Accelerator`, used by the
    calibration script; a system keeps its links); ``cache`` (a dict) keeps the presets
    loaded across rows; ``target`` is the row's resolved chip, system and plan
    (:meth:`MeasuredSet.target`; resolved from the row when not given).
    """
    s = _Steps(row, ideal, hw, cache, target)
    values = _MODES[row.mode](s, row)
    values["tokens_per_s_per_device"] = values.get("tokens_per_s", math.nan) / max(
        s.target.devices, 1) if "tokens_per_s" in values else None
    values = {k: v for k, v in values.items() if v is not None}
    note = ""
    if s.system is not None:
        plan = replace(s.target.plan, mb=s.microbatches(row.batch))
        note = (f"system {s.target.system.name}, plan {plan} "
                f"({s.target.devices} devices; links charged)")
    return Prediction(row.id, values, note)
