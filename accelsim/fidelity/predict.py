"""Predict the metrics of one measured row with the simulator.

How a row's metrics come from simulated steps (``mode``; docs/fidelity.md):

- ``static-batch`` (a batch of ``B`` requests, prefill then ``O`` decode steps, as
  TensorRT-LLM's gptSessionBenchmark runs them): ``T = prefill(B, I) + O x decode(B,
  context I + O/2)``; ``tokens_per_s = B O / T``. A decode step's time is affine in its
  context (the KV cache read grows by one token per step), so the step at the mean context
  times ``O`` is the sum over the ``O`` steps.
- ``first-token``: ``ttft_s = prefill(B, I)``.
- ``single-stream``: ``ttft_s = prefill(B, I)`` and ``tpot_s = decode(B, context I + O/2)``.
- ``pipeline`` (NorthPole: the layers on a chain of cards, several users in flight): the
  transformer layers are split over ``S`` pipeline stages of ``tp`` cards each (``S =
  min(layers, devices)``, ``tp = devices // S``), each user's token visits every stage once
  per output token; with ``U`` users in flight a stage serves micro-batches of
  ``m = ceil(U / S)`` tokens. ``tpot_s`` is the sum of the stages' step times at ``m``,
  ``tokens_per_s = U / tpot_s``; ``power_w`` is every device's static power plus each
  stage's dynamic energy ``ceil(U / m)`` times per ``tpot_s``. Transfers between cards are
  not charged (an approximation: documented per row in docs/fidelity.md).

Power of a single-device row is the step energy over its time (``SimResult.avg_power_w``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..hw import load_hw
from ..precision import BitAllocation
from ..sim import DevicePart, simulate, simulate_parts
from ..workload import Scenario, build_graph, load_workload
from .measured import MeasuredRow

__all__ = ["Prediction", "predict_row"]


@dataclass(frozen=True)
class Prediction:
    """Predicted metrics of one row (keys of :data:`~accelsim.fidelity.measured.METRICS`
    plus the bounds), with a note on the approximation used."""

    row: str
    values: dict
    note: str = ""


class _Steps:
    """Simulated steps of one row, built once per (phase, batch, length)."""

    def __init__(self, row: MeasuredRow, ideal: bool, hw=None, cache: dict | None = None):
        self.row, self.ideal = row, ideal
        cache = {} if cache is None else cache
        if hw is None:
            hw = cache.get(("hw", row.hardware)) or cache.setdefault(
                ("hw", row.hardware), load_hw(row.hardware))
        self.hw = hw
        self.model = cache.get(("model", row.model)) or cache.setdefault(
            ("model", row.model), load_workload(row.model))
        p = row.precision
        self.alloc = BitAllocation.uniform(self.model, p.weight_bits,
                                           activation_bits=p.activation_bits,
                                           kv_bits=p.kv_bits,
                                           defaults={"embeddings": p.embedding_bits})

    def graph(self, phase: str, batch: int, length: int):
        if phase == "prefill":
            sc = Scenario(phase="prefill", batch=batch, seq_len=length)
        else:
            sc = Scenario(phase="decode", batch=batch, context=length)
        return build_graph(self.model, sc)

    def step(self, phase: str, batch: int, length: int):
        return simulate(self.hw, self.graph(phase, batch, length), self.alloc,
                        ideal=self.ideal)


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


def _pipeline_parts(model, devices: int) -> list:
    """Pipeline stages over ``devices`` cards: one stage per transformer layer on ``tp``
    cards (the largest divisor of the heads that the cards allow), the last one also running
    the final norm and lm_head on up to twice as many; with fewer cards than layers,
    contiguous layer ranges, the lm_head on the last. The embedding lookup is left to the host
    (``embed=False``)."""
    n = model.total_layers
    heads = model.attention.num_heads

    def divisor(limit: int) -> int:
        return max(d for d in range(1, max(limit, 1) + 1) if heads % d == 0)

    if devices >= n + 1:
        tp = divisor((devices - 1) // n)
        last = divisor(min(devices - (n - 1) * tp, 2 * tp))
        return [DevicePart(layers=(i, i + 1), tp=last if i == n - 1 else tp, embed=False,
                           lm_head=i == n - 1) for i in range(n)]
    b = [round(i * n / devices) for i in range(devices + 1)]
    return [DevicePart(layers=(b[i], b[i + 1]), embed=False, lm_head=i == devices - 1)
            for i in range(devices)]


def _pipeline(s: _Steps, r: MeasuredRow) -> dict:
    parts = _pipeline_parts(s.model, r.devices)
    stages = len(parts)
    users = r.batch
    mb = math.ceil(users / stages)
    g = s.graph("decode", mb, r.input_len)
    hw = s.hw.ideal() if s.ideal else s.hw
    res = simulate_parts(hw, g, s.alloc, parts)
    itl = sum(x.latency_s for x in res)
    static = hw.energy.static_power_w
    dyn = sum(max(x.energy_j - static * x.latency_s, 0.0) * p.tp for x, p in zip(res, parts))
    power = r.devices * static + math.ceil(users / mb) * dyn / itl
    tok = users / itl
    return {"tpot_s": itl, "tpot_s_max": itl, "tokens_per_s": tok, "power_w": power,
            "tokens_per_s_per_w": tok / power}


_MODES = {"static-batch": _static_batch, "first-token": _first_token,
          "single-stream": _single_stream, "pipeline": _pipeline}


def predict_row(row: MeasuredRow, *, ideal: bool = False, hw=None,
                cache: dict | None = None) -> Prediction:
    """Simulate ``row`` and return its predicted metrics (see the module doc).

    ``ideal=True`` ignores the hardware presets' efficiency models (the ideal roofline);
    ``hw`` replaces the row's hardware preset (an :class:`~accelsim.hw.Accelerator`, used by
    the calibration script); ``cache`` (a dict) keeps the presets loaded across rows.
    """
    s = _Steps(row, ideal, hw, cache)
    values = _MODES[row.mode](s, row)
    note = ""
    if row.mode == "pipeline":
        note = ("pipeline approximation: one stage per layer (tensor-parallel over the spare "
                "cards; the lm_head with the last layer), embedding on the host, card-to-card "
                "transfers not charged")
    return Prediction(row.id, values, note)
