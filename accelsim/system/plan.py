"""Parallelism plans: pipeline (``pp``), tensor (``tp``), expert (``ep``) and data (``dp``)
parallelism and micro-batches (``mb``).

A plan uses ``dp * pp * max(tp, ep * etp)`` devices: ``dp`` replicas of a pipeline of
``pp`` stages, each stage a group of ``w = max(tp, ep * etp)`` devices (the larger of ``tp``
and ``ep * etp`` must be a multiple of the smaller). Inside a stage, attention, dense FFNs,
shared experts, the embedding and the lm_head are split ``tp`` ways (``w / tp`` copies when
``ep * etp > tp``); the routed experts are placed over ``ep`` expert slots, each slot
``etp`` devices that split every expert it holds (expert tensor parallelism: ``w1``/``w3``
columns, ``w2`` rows, an all-reduce of the experts' outputs), and the placement is copied
``w / (ep * etp)`` times when ``tp`` is larger, copies splitting the tokens. ``etp``
defaults to 1 and ``ep`` to ``tp / etp``; ``mb`` (micro-batches in flight, each the
scenario's batch) defaults to ``pp`` (a full pipeline). ``rep=1`` lets the placement
replicate hot experts when memory allows. ``tbo=1`` (two-batch overlap) splits each
micro-batch into two halves whose communication overlaps the other half's computation
(:mod:`accelsim.system.simulate`; default off).

Rules (each broken rule is a one-line :class:`~accelsim.errors.ConfigError` at key
``plan``): every degree >= 1; ``tp`` divides the attention heads, and the KV heads divide
``tp`` or ``tp`` divides them (KV heads are replicated when ``tp`` exceeds them), and ``tp``
divides the dense-FFN and shared-expert widths; ``pp`` <= the model's layers; ``ep`` <= the
routed experts (a device of the expert group would hold no expert); ``ep`` need not divide
the experts (the placement balances an uneven split); ``etp`` divides the expert FFN width
(and needs routed experts); the plan needs no more devices than the system has.

Examples
--------
>>> p = parse_plan("pp=4,tp=2,ep=8")
>>> p.devices, p.group, p.microbatches, str(p)
(32, 8, 4, 'pp=4,tp=2,ep=8,dp=1,mb=4')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import ConfigError

__all__ = ["Plan", "parse_plan", "as_plan", "check_plan", "enumerate_plans", "split_layers",
           "stage_shapes", "PLAN_KEYS"]

PLAN_KEYS = ("pp", "tp", "ep", "dp", "mb", "rep", "etp", "tbo")
_ALIASES = {"microbatches": "mb", "micro_batches": "mb", "replicate": "rep",
            "overlap": "tbo"}


@dataclass(frozen=True)
class Plan:
    """A parallelism plan (see the module docstring)."""

    pp: int = 1
    tp: int = 1
    ep: int | None = None
    dp: int = 1
    mb: int | None = None
    rep: bool = False
    etp: int = 1
    tbo: bool = False

    def __post_init__(self):
        for k in ("pp", "tp", "dp", "ep", "mb", "etp"):
            v = getattr(self, k)
            if v is None and k in ("ep", "mb"):
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 20:
                raise ConfigError.single(f"{k} must be an integer >= 1", key="plan", value=v)
        t, e = self.tp, self.experts * self.etp
        if max(t, e) % min(t, e):
            what = f"ep={self.experts}" if self.etp == 1 else (
                f"ep x etp={self.experts} x {self.etp}")
            raise ConfigError.single(f"tp={t} and {what}: the larger must be a multiple of "
                                     "the smaller", key="plan", value=str(self))

    @property
    def experts(self) -> int:
        """The expert-parallel degree (``ep``, default ``tp / etp``, at least 1)."""
        return max(1, self.tp // self.etp) if self.ep is None else self.ep

    @property
    def group(self) -> int:
        """Devices per pipeline stage: ``max(tp, ep * etp)``."""
        return max(self.tp, self.experts * self.etp)

    @property
    def devices(self) -> int:
        return self.dp * self.pp * self.group

    @property
    def microbatches(self) -> int:
        return self.pp if self.mb is None else self.mb

    def __str__(self) -> str:
        s = f"pp={self.pp},tp={self.tp},ep={self.experts},dp={self.dp},mb={self.microbatches}"
        return (s + (",rep=1" if self.rep else "") + (f",etp={self.etp}" if self.etp > 1 else "")
                + (",tbo=1" if self.tbo else ""))

    def to_dict(self) -> dict:
        return {"pp": self.pp, "tp": self.tp, "ep": self.experts, "dp": self.dp,
                "mb": self.microbatches, "rep": self.rep, "etp": self.etp, "tbo": self.tbo,
                "devices": self.devices}


def parse_plan(text: str) -> Plan:
    """``"pp=4,tp=2,ep=8"`` (keys pp, tp, ep, dp, mb, rep, etp, tbo; any order; missing
    keys take their defaults) to a :class:`Plan`.

    >>> parse_plan("tp=8")
    Plan(pp=1, tp=8, ep=None, dp=1, mb=None, rep=False, etp=1, tbo=False)
    """
    from ..errors import did_you_mean
    if not isinstance(text, str) or not text.strip():
        raise ConfigError.single("must be like 'pp=4,tp=2,ep=8'", key="plan", value=text)
    vals: dict[str, int] = {}
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        k, sep, v = part.partition("=")
        k = k.lower()                   # "PP=2" is "pp=2"
        k = _ALIASES.get(k, k)
        if not sep and k in PLAN_KEYS:
            raise ConfigError.single(f"'{part}' needs a value, like '{k}=2'", key="plan",
                                     value=text)
        if not sep or k not in PLAN_KEYS:
            raise ConfigError.single(
                f"'{part}' is not KEY=N with KEY one of {', '.join(PLAN_KEYS)}"
                + did_you_mean(k, PLAN_KEYS), key="plan", value=text)
        if k in vals:
            raise ConfigError.single(f"{k} is given twice", key="plan", value=text)
        try:
            if not v.isascii() or not v.lstrip("+-").isdigit():
                raise ValueError        # int() would take "2_0" as 20 and "٢" as 2
            n = int(v)
        except ValueError:
            raise ConfigError.single(f"{k} must be a whole number (got '{v}')", key="plan",
                                     value=text) from None
        vals[k] = n
    flags = {}
    for k in ("rep", "tbo"):
        flags[k] = vals.pop(k, 0)
        if flags[k] not in (0, 1):
            raise ConfigError.single(f"{k} must be 0 or 1", key="plan", value=text)
    return Plan(**vals, rep=bool(flags["rep"]), tbo=bool(flags["tbo"]))


def as_plan(plan) -> Plan:
    """A :class:`Plan` from a plan, a string or None (the default plan)."""
    if plan is None:
        return Plan()
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, str):
        return parse_plan(plan)
    if isinstance(plan, dict):
        from ..errors import did_you_mean
        vals = {}
        for k, v in plan.items():
            key = _ALIASES.get(k, k) if isinstance(k, str) else k
            if key not in PLAN_KEYS:
                raise ConfigError.single(f"unknown key {k!r}: keys are {', '.join(PLAN_KEYS)}"
                                         + did_you_mean(str(k), PLAN_KEYS), key="plan",
                                         value=plan)
            if key in vals:
                raise ConfigError.single(f"{key} is given twice", key="plan", value=plan)
            vals[key] = v
        for k in ("rep", "tbo"):
            if k in vals:
                if vals[k] not in (0, 1) or not isinstance(vals[k], (bool, int)):
                    raise ConfigError.single(f"{k} must be 0 or 1 (or a bool)", key="plan",
                                             value=plan)
                vals[k] = bool(vals[k])
        return Plan(**vals)
    raise ConfigError.single("must be a Plan or a string like 'pp=4,tp=2,ep=8'", key="plan",
                             value=plan)


def _divides(a: int, b: int | None) -> bool:
    return b is None or b % a == 0


def check_plan(plan: Plan, model, num_devices: int | None = None,
               system_name: str = "the system") -> None:
    """Raise a one-line :class:`ConfigError` when ``plan`` does not divide ``model`` or
    needs more than ``num_devices`` devices."""
    a = model.attention
    heads, kv = a.num_heads, model.num_kv_heads
    t, e = plan.tp, plan.experts
    why = None
    if heads % t:
        why = f"tp={t} does not divide the {heads} attention heads"
    elif a.kind == "gqa" and kv % t and t % kv:
        why = f"tp={t} and the {kv} KV heads: one must divide the other"
    elif not _divides(t, model.dense_ffn_size) and any(not li.is_moe for li in model.layers):
        why = f"tp={t} does not divide the dense FFN width {model.dense_ffn_size}"
    elif model.moe is not None and model.moe.num_shared_experts and model.shared_ffn_size % t:
        why = f"tp={t} does not divide the shared-expert width {model.shared_ffn_size}"
    elif plan.pp > model.total_layers:
        why = f"pp={plan.pp} is more stages than the {model.total_layers} layers"
    elif model.moe is None and ((plan.ep or 1) > 1 or plan.etp > 1):
        why = (f"ep={plan.ep or 1}, etp={plan.etp}: a dense model has no routed experts to "
               "distribute (use tp, pp or dp)")
    elif plan.etp > 1 and model.moe.expert_ffn_size % plan.etp:
        why = f"etp={plan.etp} does not divide the expert FFN width {model.moe.expert_ffn_size}"
    elif e > model.num_experts > 0:
        why = (f"ep={e} is more than the {model.num_experts} routed experts (a device "
               "would hold none)")
    elif num_devices is not None and plan.devices > num_devices:
        why = (f"{plan} needs {plan.devices} devices (dp x pp x max(tp, ep x etp)), "
               f"{system_name} has {num_devices}")
    if why:
        raise ConfigError.single(f"{why} ({model.name})", key="plan", value=str(plan))


def split_layers(costs, pp: int) -> list[tuple[int, int]]:
    """Split layers with ``costs`` (one per layer) into ``pp`` contiguous non-empty stages
    whose cost sums are as even as a cut at the cumulative-cost quantiles makes them.

    >>> split_layers([1, 1, 1, 1, 1, 1], 3)
    [(0, 2), (2, 4), (4, 6)]
    >>> split_layers([4, 1, 1, 1, 1], 2)
    [(0, 1), (1, 5)]
    """
    n = len(costs)
    if not 1 <= pp <= n:
        raise ConfigError.single(f"pp={pp} must be in 1..{n} (the layers)", key="plan")
    total = float(sum(costs)) or float(n)
    cum, acc = [], 0.0
    for c in costs:
        acc += float(c) if sum(costs) else 1.0
        cum.append(acc)
    cuts = [0]
    for s in range(1, pp):
        target = total * s / pp
        # the first layer boundary whose cumulative cost reaches the target (nearest side)
        j = next((i for i, c in enumerate(cum) if c >= target), n - 1)
        before = cum[j - 1] if j > 0 else 0.0
        b = j + 1 if (cum[j] - target) <= (target - before) else j
        lo, hi = cuts[-1] + 1, n - (pp - s)
        cuts.append(min(max(b, lo), hi))
    cuts.append(n)
    return [(cuts[i], cuts[i + 1]) for i in range(pp)]


def _divisors(n: int) -> list[int]:
    """The divisors of ``n``, increasing.

    >>> _divisors(12)
    [1, 2, 3, 4, 6, 12]
    """
    if n < 1:
        return []
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small) | {n // d for d in small})


def stage_shapes(model, w: int, node: int, min_etp: int = 1) -> list[tuple[int, int, int]]:
    """Every ``(tp, ep, etp)`` of a stage group of ``w`` devices worth searching.

    ``tp`` divides ``w`` and a node's ``node`` devices (its groups of consecutive devices
    stay inside a node); either ``ep x etp = w`` (``w / tp`` attention groups) or ``tp = w``
    and ``ep x etp`` divides it (``tp / (ep x etp)`` copies of the placement split the
    tokens); ``ep`` at most the routed experts and useful for them: it puts fewer experts on
    the fullest device than ``ep - 1`` would (``ceil(E / ep) < ceil(E / (ep - 1))``; for 8
    experts 1, 2, 3, 4 and 8). Expert tensor parallelism (``etp`` dividing the expert FFN
    width) only where it helps: every ``etp >= min_etp`` when one expert is larger than a
    device (``min_etp > 1``); otherwise ``etp = 1``, or, when ``ep x etp = w`` exceeds the
    experts, the smallest ``etp`` that leaves a useful ``ep`` (the rest of the group splits
    the experts rather than holding none). A dense model: ``tp = w``, ``ep = 1``. The plan
    rules (:func:`check_plan`) are applied by the caller.

    >>> from accelsim.workload import load_workload
    >>> shapes = stage_shapes(load_workload("mixtral-8x7b"), 12, 12)     # 8 experts
    >>> [x for x in shapes if x[0] == 12]       # tp = 12: copies, or experts split 4 ways
    [(12, 1, 1), (12, 2, 1), (12, 3, 1), (12, 3, 4), (12, 4, 1)]
    >>> [x for x in shapes if x[0] < 12]        # 12 / tp attention groups
    [(1, 3, 4), (2, 3, 4), (3, 3, 4), (4, 3, 4), (6, 3, 4)]
    """
    E = model.num_experts
    ffn = model.moe.expert_ffn_size if model.moe is not None else 1
    out = set()

    def useful(e: int) -> bool:
        # fewer experts on the fullest device than with one device less
        return e == 1 or -(-E // e) < -(-E // (e - 1))
    for t in _divisors(w):
        if node % t:
            continue
        if E == 0:
            if t == w:
                out.add((t, 1, 1))
            continue
        for ew in ([w] if t < w else _divisors(w)):
            # ways an expert may split: whole widths, leaving a useful ep within the experts
            ok = [d for d in _divisors(ew) if ffn % d == 0 and ew // d <= E
                  and useful(ew // d) and (d == 1 or ew == w)]
            if min_etp > 1:
                etps = [d for d in ok if d >= min_etp]
            else:
                etps = [d for d in ok if d == 1] or (ok[:1] if ew > E else [])
            for etp in etps:
                out.add((t, ew // etp, etp))
    return sorted(out)


def enumerate_plans(model, devices: int, *, devices_per_node: int | None = None,
                    exact: bool = True, microbatches: int | None = None,
                    min_etp: int = 1) -> list[Plan]:
    """Every plan for ``model`` on ``devices`` devices (``exact=False``: on at most that
    many): any stage group size ``w`` dividing the devices, each ``(tp, ep, etp)`` of
    :func:`stage_shapes` (``tp`` dividing a node), any ``pp`` and ``dp``; only plans that
    :func:`check_plan` accepts (``tp`` dividing the heads, the KV heads, the FFN widths).

    >>> from accelsim.workload import load_workload
    >>> for p in enumerate_plans(load_workload("mixtral-8x7b"), 2):
    ...     print(p)
    pp=2,tp=1,ep=1,dp=1,mb=2
    pp=1,tp=2,ep=2,dp=1,mb=1
    pp=1,tp=2,ep=1,dp=1,mb=1
    pp=1,tp=1,ep=2,dp=1,mb=1
    pp=1,tp=1,ep=1,dp=2,mb=1
    >>> sorted({p.tp for p in enumerate_plans(load_workload("mixtral-8x7b"), 6,
    ...                                        devices_per_node=6)})
    [1, 2]
    """
    out: list[Plan] = []
    counts = [devices] if exact else range(1, devices + 1)
    node = devices_per_node or devices
    shapes: dict[int, list] = {}
    for n in counts:
        for w in _divisors(n):
            if w not in shapes:
                shapes[w] = stage_shapes(model, w, node, min_etp)
            rest = n // w
            for t, e, etp in shapes[w]:
                for pp in _divisors(rest):
                    p = Plan(pp=pp, tp=t, ep=e, dp=rest // pp, mb=microbatches, etp=etp)
                    try:
                        check_plan(p, model, n)
                    except ConfigError:
                        continue
                    out.append(p)
    seen, uniq = set(), []
    for p in sorted(out, key=lambda p: (p.devices, p.dp, -p.pp, -p.tp, -p.experts, p.etp)):
        if str(p) not in seen:
            seen.add(str(p))
            uniq.append(p)
    return uniq


def with_microbatches(plan: Plan, mb: int | None) -> Plan:
    return replace(plan, mb=mb)
