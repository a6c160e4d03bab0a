"""The paper's central experiment, reproduced at toy scale.

Per seed and data set: pre-train the patch-level MoE of :mod:`accelsim.theory.toymoe` on
the pre-training task, fine-tune it on the downstream task, then quantize its experts with
RTN (:func:`accelsim.quant.quantize_rtn`, one group per neuron row, asymmetric; 1 bit = sign
binarisation) at a matched average bit-width under five allocations, and measure test
accuracy with the router left in float:

==============  ==========================================================================
method          experts ranked for precision (most bits first)
==============  ==========================================================================
router-norm     the paper: ascending change of the router row's L2 norm during fine-tuning,
                then promotion of experts with a large max intra-neuron variance
                (:func:`accelsim.alloc.paper.expert_order`, zeta = 3)
reverse         descending router-norm change (the opposite hypothesis)
frequency       descending share of fine-tuning patches routed to the expert
random          a seeded random order
uniform         every expert at the average (integer averages only)
==============  ==========================================================================

Bit-widths come from :func:`accelsim.alloc.paper.assign_bits` with three levels centred on
the integer part of the average: ``(b+1, b, b-1)`` for ``b = floor(avg)`` (2 and 2.5 ->
3/2/1 bits, 3 -> 4/3/2 bits), raised to at least 1 bit.

**Pruning at matched memory** (methods ``router-norm+prune``, ``reverse+prune``,
``frequency+prune``, ``random+prune``; not run by default): the same order, but levels
``(2b, b, 0)`` for ``b = floor(avg)`` (2 and 2.5 -> 4/2/0, 3 -> 6/3/0, at most 8 bits), so the
experts ranked last are pruned instead of quantized coarsely while the average code bits
(the memory of the codes) stay the same. A pruned expert's router logit is removed: patches
go to the best surviving expert (:func:`accelsim.theory.toymoe.forward`).

Examples
--------
>>> cfg = ExperimentConfig(data="synthetic", seeds=1, bits=(2.0,), steps=20, samples=200)
>>> rows = run_experiment(cfg)
>>> sorted({r["method"] for r in rows})
['float', 'frequency', 'random', 'reverse', 'router-norm', 'uniform']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import ConfigError
from .data import DATASETS, Tasks
from .toymoe import ToyParams, accuracy, init_params, routing, train

__all__ = ["ExperimentConfig", "ExpertSignals", "METHODS", "PRUNE_METHODS",
           "prune_levels_for", "ALLOCATORS", "run_experiment",
           "expert_sensitivity",
           "expert_signals", "allocate", "levels_for", "TrainedModel", "train_model"]

METHODS = ("router-norm", "reverse", "frequency", "random", "uniform")
#: Pruning variants (levels ``(2b, b, 0)``, matched average bits); opt-in.
PRUNE_METHODS = ("router-norm+prune", "reverse+prune", "frequency+prune", "random+prune")


@dataclass(frozen=True)
class ExperimentConfig:
    """What :func:`run_experiment` runs. ``steps`` and ``samples`` apply to each of the
    pre-training and fine-tuning phases (``samples`` only to the synthetic data)."""

    data: str = "synthetic"
    seeds: int = 5
    bits: tuple[float, ...] = (2.0, 2.5, 3.0)
    methods: tuple[str, ...] = METHODS
    experts: int = 8
    neurons: int = 8
    steps: int = 300
    samples: int = 2000
    lr: float = 0.02
    batch: int = 128
    zeta: float = 3.0

    def __post_init__(self):
        if self.data not in DATASETS:
            raise ConfigError.single(f"data must be one of {sorted(DATASETS)}", key="--data",
                                     value=self.data)
        if not 1 <= int(self.seeds) <= 1000:
            raise ConfigError.single("seeds must be in 1..1000", key="--seeds",
                                     value=self.seeds)
        bad = [b for b in self.bits if not (isinstance(b, (int, float)) and 1 <= b <= 8)]
        if not self.bits or bad:
            raise ConfigError.single("average bits must be numbers in 1..8", key="--bits",
                                     value=list(self.bits))
        unknown = [m for m in self.methods if m not in METHODS + PRUNE_METHODS]
        if unknown:
            raise ConfigError.single(f"unknown method(s); choose from "
                                     f"{list(METHODS + PRUNE_METHODS)}", key="methods",
                                     value=unknown)


@dataclass(frozen=True)
class ExpertSignals:
    """Per expert: router-norm change during fine-tuning, share of fine-tuning patches
    routed to it, and max intra-neuron variance of its first-layer weights."""

    norm_change: np.ndarray
    frequency: np.ndarray
    max_variance: np.ndarray


@dataclass(frozen=True)
class TrainedModel:
    pretrained: ToyParams
    finetuned: ToyParams
    tasks: Tasks


def train_model(cfg: ExperimentConfig, seed: int) -> TrainedModel:
    """Pre-train then fine-tune one model (seeded)."""
    kw = {"n_pretrain": cfg.samples, "n_finetune": cfg.samples,
          "n_test": cfg.samples} if cfg.data == "synthetic" else {}
    tasks = DATASETS[cfg.data](seed, **kw)
    p0 = init_params(tasks.d, cfg.experts, cfg.neurons, seed)
    pre = train(p0, tasks.pretrain_X, tasks.pretrain_y, steps=cfg.steps, lr=cfg.lr,
                batch=cfg.batch, seed=seed + 1)
    fine = train(pre, tasks.finetune_X, tasks.finetune_y, steps=cfg.steps, lr=cfg.lr,
                 batch=cfg.batch, seed=seed + 2)
    return TrainedModel(pre, fine, tasks)


def expert_signals(model: TrainedModel) -> ExpertSignals:
    E = model.finetuned.experts
    change = (np.linalg.norm(model.finetuned.router, axis=1)
              - np.linalg.norm(model.pretrained.router, axis=1))
    sel = routing(model.finetuned, model.tasks.finetune_X).ravel()
    freq = np.bincount(sel, minlength=E) / sel.size
    maxvar = np.var(model.finetuned.w, axis=2, ddof=1).max(axis=1)
    return ExpertSignals(change, freq, maxvar)


def levels_for(avg_bits: float) -> tuple[int, int, int] | tuple[int, int]:
    """Three levels ``(b+1, b, b-1)`` around ``b = floor(avg)``; two, ``(2, 1)``, when
    ``b = 1``; at most 8 bits (the RTN quantizer's limit): ``(8, 7, 6)`` from ``b = 7``."""
    b = min(int(math.floor(avg_bits)), 7)
    return (b + 1, b, b - 1) if b >= 2 else (2, 1)


def prune_levels_for(avg_bits: float) -> tuple[int, int, int]:
    """Pruning levels ``(2b, b, 0)`` for ``b = floor(avg)``, ``1 <= b <= 4``.

    >>> prune_levels_for(2.5), prune_levels_for(3.0)
    ((4, 2, 0), (6, 3, 0))
    """
    b = max(1, min(int(math.floor(avg_bits)), 4))
    return (2 * b, b, 0)


def _order_router_norm(sig: ExpertSignals, rng, zeta: float):
    from ..alloc.paper import expert_order
    return expert_order([sig.norm_change], [sig.max_variance], zeta=zeta)


def _order_reverse(sig: ExpertSignals, rng, zeta: float):
    from ..alloc.paper import expert_order
    return expert_order([-sig.norm_change])


def _order_frequency(sig: ExpertSignals, rng, zeta: float):
    from ..alloc.paper import expert_order
    return expert_order([-sig.frequency])


def _order_random(sig: ExpertSignals, rng, zeta: float):
    return [rng.permutation(sig.norm_change.size).tolist()]


#: method -> function (signals, rng, zeta) -> [order] (most bits first); ``uniform`` is
#: handled by :func:`allocate`.
ALLOCATORS: dict[str, Callable] = {"router-norm": _order_router_norm,
                                   "reverse": _order_reverse,
                                   "frequency": _order_frequency, "random": _order_random}


def allocate(method: str, sig: ExpertSignals, avg_bits: float, rng: np.random.Generator,
             zeta: float = 3.0) -> np.ndarray | None:
    """Bits per expert for ``method`` at ``avg_bits`` (None: ``uniform`` at a fractional
    average, which it cannot match)."""
    from ..alloc.paper import assign_bits
    E = sig.norm_change.size
    if method == "uniform":
        if float(avg_bits) != int(avg_bits):
            return None
        return np.full(E, int(avg_bits))
    if method.endswith("+prune"):
        order = ALLOCATORS[method[:-len("+prune")]](sig, rng, zeta)
        return assign_bits(order, avg_bits, prune_levels_for(avg_bits))[0]
    order = ALLOCATORS[method](sig, rng, zeta)
    return assign_bits(order, avg_bits, levels_for(avg_bits))[0]


def _quantized_experts(w: np.ndarray, bits: np.ndarray) -> np.ndarray:
    from ..quant import quantize_rtn
    return np.stack([quantize_rtn(w[e], int(b), group_size=None).dequantize() if b
                     else np.zeros_like(w[e])        # pruned (never selected)
                     for e, b in enumerate(bits)]).astype(np.float64)


def run_experiment(cfg: ExperimentConfig, progress: Callable[[str], None] | None = None
                   ) -> list[dict]:
    """Rows ``{"data", "method", "avg_bits", "accuracy", "accuracy_std", "seeds",
    "per_seed"}`` (mean and sample standard deviation of test accuracy over seeds, and the
    accuracy of each seed in seed order, so methods can be compared seed by seed), plus one
    ``float`` row per data set with the unquantized accuracy (``avg_bits`` 32)."""
    acc: dict[tuple[str, float], list[float]] = {}
    float_acc = []
    for seed in range(int(cfg.seeds)):
        model = train_model(cfg, seed)
        t = model.tasks
        float_acc.append(accuracy(model.finetuned, t.test_X, t.test_y))
        sig = expert_signals(model)
        for i, avg in enumerate(cfg.bits):
            rng = np.random.default_rng([seed, i, 7])
            for method in cfg.methods:
                bits = allocate(method, sig, avg, rng, cfg.zeta)
                if bits is None:
                    continue
                wq = _quantized_experts(model.finetuned.w, bits)
                acc.setdefault((method, float(avg)), []).append(
                    accuracy(model.finetuned, t.test_X, t.test_y, wq, pruned=bits == 0))
        if progress:
            progress(f"{cfg.data}: seed {seed + 1}/{cfg.seeds} done")
    rows = [_row(cfg.data, "float", 32.0, float_acc)]
    for avg in cfg.bits:
        for method in cfg.methods:
            vals = acc.get((method, float(avg)))
            if vals:
                rows.append(_row(cfg.data, method, float(avg), vals))
    return rows


def _row(data: str, method: str, avg: float, vals: Sequence[float]) -> dict:
    a = np.asarray(vals, dtype=float)
    return {"data": data, "method": method, "avg_bits": avg, "accuracy": float(a.mean()),
            "accuracy_std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "seeds": int(a.size), "per_seed": [float(v) for v in a]}


def expert_sensitivity(cfg: ExperimentConfig, bits: int = 1) -> list[dict]:
    """Per seed and expert: the signals and the test-accuracy drop when that expert alone is
    quantized to ``bits`` (the others stay float) -- the quantity the paper's ranking is
    meant to predict. Rows ``{"seed", "expert", "norm_change", "frequency",
    "max_variance", "accuracy_drop"}``."""
    rows = []
    for seed in range(int(cfg.seeds)):
        model = train_model(cfg, seed)
        t, p = model.tasks, model.finetuned
        sig = expert_signals(model)
        base = accuracy(p, t.test_X, t.test_y)
        for e in range(p.experts):
            b = np.full(p.experts, 16)
            b[e] = bits
            w = p.w.copy()
            w[e] = _quantized_experts(p.w[e:e + 1], b[e:e + 1])[0]
            rows.append({"seed": seed, "expert": e, "norm_change": float(sig.norm_change[e]),
                         "frequency": float(sig.frequency[e]),
                         "max_variance": float(sig.max_variance[e]),
                         "accuracy_drop": base - accuracy(p, t.test_X, t.test_y, w)})
    return rows
