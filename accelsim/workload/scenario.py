"""Scenarios (phase, batch, context) and routing distributions.

The simulator works with *expected* values per step: for each MoE layer and routed expert,
the expected number of tokens it receives (``tokens_per_expert``) and the probability that
it receives at least one (``p_active``), which decides whether its weights are read at all
in a small decode batch.

With per-token selection probabilities ``q_e`` (``sum_e q_e = top_k``, each ``q_e <= 1``)
and ``T`` tokens in the step, expert ``e`` expects ``T * q_e`` tokens and is active with
probability ``1 - (1 - q_e)^T``. A capacity factor ``c`` caps the tokens per expert at
``c * T * top_k / E`` (Switch Transformer).

**Pruned experts** (``Scenario.pruned``, or a :class:`~accelsim.precision.BitAllocation`
with 0-bit experts given to :func:`~accelsim.workload.build_graph`) are never selected: the
router's top-k is taken over the surviving experts. Uniform, Zipf and explicit routing shares
are set to 0 for pruned experts and renormalised over the survivors (so a survivor's
expected load grows by ``1 / (1 - pruned share)``), then water-filled as above, so the
expected tokens still sum to ``T * top_k``. A trace that routes a token to a pruned expert
is re-routed: the token keeps its surviving choices, and each pruned choice goes to the next
surviving expert in the layer's ranking. A trace records only each token's top-k, not the
router's full ranking, so "next" is the layer's order of popularity in the trace (most
selections first, ties to the lower id) among the survivors the token has not chosen yet.
:attr:`ExpertLoad.rerouted` counts the selections moved.

Examples
--------
>>> from accelsim.workload import load_workload
>>> m = load_workload("mixtral-8x7b")
>>> s = Scenario(phase="decode", batch=1)
>>> load = s.expert_load(m)
>>> float(load.tokens[0].sum()), round(float(load.p_active[0, 0]), 3)
(2.0, 0.25)
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

import numpy as np

from .._io import LIMITS, check_array, load_arrays, open_regular
from ..errors import ConfigError

#: Largest token index (and tokens x layers), layer and expert index of a CSV trace.
TRACE_LIMITS = (2**26, 4096, 65536)

__all__ = ["Scenario", "Uniform", "Zipf", "Explicit", "Trace", "Routing", "ExpertLoad",
           "load_trace", "parse_routing"]


@dataclass(frozen=True)
class Uniform:
    """Every expert equally likely."""

    kind: Literal["uniform"] = "uniform"

    def probabilities(self, num_layers: int, num_experts: int, seed: int) -> np.ndarray:
        return np.full((num_layers, num_experts), 1.0 / num_experts)


@dataclass(frozen=True)
class Zipf:
    """Expert popularity ~ 1 / rank^alpha; which expert has which rank is a seeded random
    permutation per layer (hot experts differ across layers)."""

    alpha: float = 1.0
    kind: Literal["zipf"] = "zipf"

    def __post_init__(self):
        if not (np.isfinite(self.alpha) and 0 <= self.alpha <= 20):
            raise ConfigError.single("zipf alpha must be in [0, 20]", key="routing.alpha",
                                     value=self.alpha)

    def probabilities(self, num_layers: int, num_experts: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        w = 1.0 / np.arange(1, num_experts + 1) ** self.alpha
        w /= w.sum()
        out = np.empty((num_layers, num_experts))
        for i in range(num_layers):
            out[i, rng.permutation(num_experts)] = w
        return out


@dataclass(frozen=True)
class Explicit:
    """Given per-layer frequencies, shape [moe layers, experts] (or [experts] for all
    layers); each row is normalised to sum to 1."""

    frequencies: np.ndarray
    kind: Literal["explicit"] = "explicit"

    def probabilities(self, num_layers: int, num_experts: int, seed: int) -> np.ndarray:
        f = np.asarray(self.frequencies, dtype=float)
        if f.ndim == 1:
            f = np.broadcast_to(f, (num_layers, f.shape[0]))
        if f.shape != (num_layers, num_experts):
            raise ConfigError.single(
                f"routing frequencies must have shape ({num_layers}, {num_experts}) or "
                f"({num_experts},)", key="routing.frequencies", value=f.shape)
        with np.errstate(all="ignore"):
            sums = f.sum(axis=1)
        if not np.all(np.isfinite(f)) or (f < 0).any() or (sums <= 0).any() or \
                not np.isfinite(sums).all():
            raise ConfigError.single("routing frequencies must be finite, >= 0, not all "
                                     "zero in a layer and sum to a finite number",
                                     key="routing.frequencies")
        return f / sums[:, None]


@dataclass(frozen=True)
class Trace:
    """Expert ids chosen per token and MoE layer: int array [tokens, moe layers, top_k]."""

    expert_ids: np.ndarray
    source: str = "<array>"
    kind: Literal["trace"] = "trace"

    def validate(self, num_layers: int, num_experts: int, top_k: int) -> None:
        ids = self.expert_ids
        if ids.ndim != 3 or ids.shape[1] != num_layers or ids.shape[2] != top_k:
            raise ConfigError.single(
                f"trace must be [tokens, {num_layers} MoE layers, top_k={top_k}]",
                file=self.source, key="expert_ids", value=ids.shape)
        if ids.size and (ids.min() < 0 or ids.max() >= num_experts):
            raise ConfigError.single(f"expert ids must be in 0..{num_experts - 1}",
                                     file=self.source, key="expert_ids",
                                     value=(int(ids.min()), int(ids.max())))
        if ids.shape[0] == 0:
            raise ConfigError.single("trace has no tokens", file=self.source, key="expert_ids")

    def probabilities(self, num_layers: int, num_experts: int, seed: int) -> np.ndarray:
        return _trace_shares(self.expert_ids, num_layers, num_experts)

    def rerouted(self, pruned: np.ndarray) -> tuple[np.ndarray, int]:
        """``(ids, moved)``: the trace with every selection of a pruned expert (``pruned``:
        bool [moe layers, experts]) moved to the next surviving expert (module docstring),
        and the number of selections moved."""
        ids = np.array(self.expert_ids, dtype=np.int64, copy=True)
        L, E = pruned.shape
        moved = 0
        for layer in range(L):
            dead = pruned[layer]
            if not dead.any():
                continue
            sel = ids[:, layer, :]
            hit = dead[sel]
            if not hit.any():
                continue
            moved += int(hit.sum())
            counts = np.bincount(sel.ravel(), minlength=E)
            rank = [e for e in np.lexsort((np.arange(E), -counts)) if not dead[e]]
            rows = np.flatnonzero(hit.any(axis=1))
            sub = sel[rows]
            chosen = np.zeros((rows.size, E), dtype=bool)
            rr, cc = np.nonzero(~hit[rows])
            chosen[rr, sub[rr, cc]] = True
            rank = np.asarray(rank, dtype=np.int64)
            for j in range(sel.shape[1]):
                r = np.flatnonzero(hit[rows, j])
                if not r.size:
                    continue
                pick = rank[np.argmax(~chosen[r][:, rank], axis=1)]
                sub[r, j] = pick
                chosen[r, pick] = True
            sel[rows] = sub
            ids[:, layer, :] = sel
        return ids, moved


Routing = Union[Uniform, Zipf, Explicit, Trace]


def _trace_shares(ids: np.ndarray, num_layers: int, num_experts: int) -> np.ndarray:
    counts = np.zeros((num_layers, num_experts))
    for layer in range(num_layers):
        counts[layer] = np.bincount(ids[:, layer, :].ravel(), minlength=num_experts)
    return counts / counts.sum(axis=1, keepdims=True)


def load_trace(path: str | os.PathLike) -> Trace:
    """Read a routing trace.

    NPZ: an array ``expert_ids`` shaped [tokens, moe layers, top_k]. CSV: columns
    ``token,layer,expert`` (one row per selection; ``layer`` is the MoE-layer ordinal).
    """
    p = Path(path)
    name = str(path)
    if p.suffix.lower() == ".npz":
        z = load_arrays(path, what="trace file")
        if "expert_ids" not in z:
            raise ConfigError.single(f"needs an array 'expert_ids' (has: "
                                     f"{', '.join(z) or 'none'})", file=name,
                                     key="expert_ids")
        ids = z["expert_ids"]
        if ids.dtype.kind not in "iu":
            raise ConfigError.single("expert_ids must be integers", file=name,
                                     key="expert_ids", value=str(ids.dtype))
        return Trace(check_array(ids, file=name, key="expert_ids", ndim=3, integer=True),
                     source=name)
    if p.suffix.lower() == ".csv":
        rows = []
        try:
            with open_regular(path, what="trace file", limit=LIMITS["trace_csv"]) as raw, \
                    io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh)
                need = {"token", "layer", "expert"}
                if not reader.fieldnames or not need <= set(reader.fieldnames):
                    raise ConfigError.single("CSV needs the columns token,layer,expert",
                                             file=name, value=reader.fieldnames)
                for i, r in enumerate(reader):
                    try:
                        row = (int(r["token"]), int(r["layer"]), int(r["expert"]))
                    except (TypeError, ValueError):
                        raise ConfigError.single("token, layer and expert must be integers",
                                                 file=name, key=f"row {i + 2}",
                                                 value=r) from None
                    for col, v, hi in zip(("token", "layer", "expert"), row, TRACE_LIMITS):
                        if not 0 <= v < hi:
                            raise ConfigError.single(f"{col} must be in 0..{hi - 1:,}",
                                                     file=name, key=f"row {i + 2}", value=v)
                    rows.append(row)
        except UnicodeDecodeError:
            raise ConfigError.single("is not a UTF-8 CSV file", file=name) from None
        except csv.Error as exc:
            raise ConfigError.single(f"is not a readable CSV file ({exc})", file=name
                                     ) from None
        if not rows:
            raise ConfigError.single("trace has no rows", file=name)
        a = np.array(rows)
        tokens, layers = a[:, 0].max() + 1, a[:, 1].max() + 1
        if tokens * layers > TRACE_LIMITS[0]:
            raise ConfigError.single(f"tokens x layers must be at most {TRACE_LIMITS[0]:,}",
                                     file=name, value=int(tokens * layers))
        per = np.zeros((tokens, layers), dtype=np.int64)
        np.add.at(per, (a[:, 0], a[:, 1]), 1)
        k = int(per.max())
        if per.min() != k:
            raise ConfigError.single("every token must select the same number of experts in "
                                     "every layer", file=name)
        order = np.lexsort((a[:, 2], a[:, 1], a[:, 0]))
        ids = a[order, 2].reshape(tokens, layers, k)
        return Trace(ids, source=name)
    raise ConfigError.single("trace must be a .npz or .csv file", file=name)


def parse_routing(text: str) -> Routing:
    """Parse the CLI form: ``uniform``, ``zipf:1.2``, ``trace:FILE`` or ``freq:FILE.npz``
    (array ``frequencies``).

    >>> parse_routing("zipf:1.5")
    Zipf(alpha=1.5, kind='zipf')
    """
    kind, _, arg = text.partition(":")
    if kind == "uniform" and not arg:
        return Uniform()
    if kind == "zipf":
        try:
            return Zipf(float(arg) if arg else 1.0)
        except ValueError:
            raise ConfigError.single("zipf needs a number, like 'zipf:1.2'", key="--routing",
                                     value=text) from None
    if kind == "trace" and arg:
        return load_trace(arg)
    if kind == "freq" and arg:
        z = load_arrays(arg, what="frequencies file")
        if "frequencies" not in z:
            raise ConfigError.single("needs an array 'frequencies'", file=arg)
        return Explicit(check_array(z["frequencies"], file=arg, key="frequencies",
                                    ndim=(1, 2), lo=0, hi=1e30))
    raise ConfigError.single("routing must be uniform, zipf:ALPHA, trace:FILE or freq:FILE",
                             key="--routing", value=text)


@dataclass(frozen=True)
class ExpertLoad:
    """Expected routing outcome of one step, arrays shaped [moe layers, experts]."""

    probabilities: np.ndarray   # share of routed selections per expert (rows sum to 1)
    tokens: np.ndarray          # expected tokens per expert (after the capacity cap)
    p_active: np.ndarray        # probability that the expert receives >= 1 token
    rerouted: int = 0           # trace selections of pruned experts moved to survivors


@dataclass(frozen=True)
class Scenario:
    """One step of inference.

    ``prefill``: ``batch`` sequences of ``seq_len`` prompt tokens (attention over the prompt,
    causal). ``decode``: ``batch`` sequences each generating one token against ``context``
    cached tokens.
    """

    phase: Literal["prefill", "decode"] = "decode"
    batch: int = 1
    seq_len: int = 1
    context: int = 0
    routing: Routing = field(default_factory=Uniform)
    capacity_factor: float | None = None
    seed: int = 0
    pruned: tuple[tuple[int, int], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "pruned", _pruned_pairs(self.pruned))
        problems = []
        if self.phase not in ("prefill", "decode"):
            problems.append(("phase", "must be 'prefill' or 'decode'", self.phase))
        for name, lo in (("batch", 1), ("seq_len", 1), ("context", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                problems.append((name, "must be an integer", v))
            elif v < lo or v > 1 << 24:
                problems.append((name, f"must be in {lo}..{1 << 24}", v))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or \
                not 0 <= self.seed < 2**63:
            problems.append(("seed", "must be an integer in 0..2^63-1", self.seed))
        cf = self.capacity_factor
        if cf is not None and not (np.isfinite(cf) and 0 < cf <= 1000):
            problems.append(("capacity_factor", "must be in (0, 1000]", cf))
        if problems:
            from ..errors import Problem
            raise ConfigError([Problem(r, key=k, value=v) for k, r, v in problems])

    @property
    def tokens(self) -> int:
        """Tokens processed by every non-attention op in this step."""
        return self.batch * (self.seq_len if self.phase == "prefill" else 1)

    @property
    def kv_length(self) -> int:
        """Keys each query attends to at the end of the step."""
        return self.seq_len if self.phase == "prefill" else self.context + 1

    def pruned_mask(self, model) -> np.ndarray:
        """Bool [moe layers, experts]: the pruned experts; checked against ``model``
        (indices in range, at least ``top_k`` survivors per layer)."""
        L, E = model.num_moe_layers, model.num_experts
        k = model.moe.top_k if model.moe is not None else 0
        mask = np.zeros((L, E), dtype=bool)
        for r, e in self.pruned:
            if not (0 <= r < L and 0 <= e < E):
                raise ConfigError.single(f"pruned expert (MoE layer row, expert) out of range "
                                         f"for {model.name} ({L} x {E})", key="pruned",
                                         value=(r, e))
            mask[r, e] = True
        alive = (~mask).sum(axis=1)
        if L and alive.min() < k:
            r = int(np.argmin(alive))
            raise ConfigError.single(f"MoE layer {model.moe_layers[r]} keeps {int(alive[r])} "
                                     f"expert(s); the router needs top_k={k} survivors",
                                     key="pruned", value=int(alive[r]))
        return mask

    def with_pruned(self, mask) -> "Scenario":
        """This scenario with ``mask`` (bool [moe layers, experts]) as its pruned experts."""
        from dataclasses import replace
        return replace(self, pruned=_pruned_pairs(mask))

    def expert_load(self, model) -> ExpertLoad:
        if model.moe is None:      # a dense model: no routed experts
            empty = np.zeros((0, 0))
            return ExpertLoad(empty, empty, empty)
        L, E, k = model.num_moe_layers, model.moe.num_experts, model.moe.top_k
        if isinstance(self.routing, Trace):
            self.routing.validate(L, E, k)
        dead = self.pruned_mask(model)
        moved = 0
        if dead.any() and isinstance(self.routing, Trace):
            ids, moved = self.routing.rerouted(dead)
            p = _trace_shares(ids, L, E)
        else:
            p = self.routing.probabilities(L, E, self.seed)
        if dead.any():
            p = np.where(dead, 0.0, p)
            total = p.sum(axis=1, keepdims=True)
            if (total <= 0).any():
                r = int(np.flatnonzero(total[:, 0] <= 0)[0])
                raise ConfigError.single(f"the routing gives no share to the surviving "
                                         f"experts of MoE layer {model.moe_layers[r]}",
                                         key="pruned")
            p = p / total
        # per-token selection probability, water-filled so that no q exceeds 1
        q = _selection_probabilities(p, k)
        T = self.tokens
        tokens = T * q
        cf = self.capacity_factor if self.capacity_factor is not None else (
            model.moe.capacity_factor)
        if cf is not None:
            tokens = np.minimum(tokens, cf * T * k / E)
        p_active = 1.0 - (1.0 - q) ** T
        return ExpertLoad(p, tokens, p_active, moved)

    def to_dict(self) -> dict:
        r = self.routing
        rd: dict = {"kind": r.kind}
        if isinstance(r, Zipf):
            rd["alpha"] = r.alpha
        if isinstance(r, Trace):
            rd["source"] = r.source
        d = {"phase": self.phase, "batch": self.batch, "seq_len": self.seq_len,
             "context": self.context, "routing": rd,
             "capacity_factor": self.capacity_factor, "seed": self.seed,
             "tokens": self.tokens}
        if self.pruned:
            d["pruned_experts"] = len(self.pruned)
        return d


def _pruned_pairs(pruned) -> tuple[tuple[int, int], ...]:
    """``pruned`` as sorted (MoE layer row, expert) pairs: from a bool mask [layers, experts]
    or from pairs."""
    if pruned is None:
        return ()
    if isinstance(pruned, np.ndarray) and pruned.dtype == bool:
        if pruned.ndim != 2:
            raise ConfigError.single("pruned mask must be 2-D [MoE layers, experts]",
                                     key="pruned", value=pruned.shape)
        return tuple((int(r), int(e)) for r, e in np.argwhere(pruned))
    try:
        pairs = {(int(r), int(e)) for r, e in pruned}
    except (TypeError, ValueError):
        raise ConfigError.single("pruned must be a bool mask [MoE layers, experts] or "
                                 "(layer row, expert) pairs", key="pruned",
                                 value=type(pruned).__name__) from None
    return tuple(sorted(pairs))


def _selection_probabilities(p: np.ndarray, k: int) -> np.ndarray:
    """Turn routing shares ``p`` (rows sum to 1) into per-token top-k selection
    probabilities ``q`` with ``sum q = k`` and ``q <= 1``: ``q = min(1, c * p)`` with ``c``
    found by bisection (an expert cannot be chosen twice by one token)."""
    out = np.empty_like(p)
    for i, row in enumerate(p):
        lo, hi = float(k), float(k) / max(row[row > 0].min(), 1e-300)
        if np.minimum(1.0, k * row).sum() >= k - 1e-12:
            out[i] = np.minimum(1.0, k * row)
            continue
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if np.minimum(1.0, mid * row).sum() < k:
                lo = mid
            else:
                hi = mid
        out[i] = np.minimum(1.0, hi * row)
    return out
