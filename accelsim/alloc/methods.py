"""Allocation methods: one registry, each method a function ``AllocRequest -> BitAllocation``.

=============  ==============================================================================
method         experts ranked / chosen by
=============  ==============================================================================
uniform        every expert at ``avg_bits`` (an integer)
router-norm    the paper: ``order='router'`` (router-norm change, else norm, ascending),
               ``'maxvar'`` (max intra-neuron variance, descending), ``'combined'`` (router
               order + the max-variance promotion with ``zeta``; the default ``'auto'``
               is combined when max variance is known, else router); counts by
               :func:`~accelsim.alloc.paper.assign_bits`
reverse        the router-norm order reversed (ablation)
frequency      activation frequency, most frequent first
random         a seeded random order per layer
pmq            MC-MoE's per-layer 0-1 program (below)
hessian        per-layer least total sensitivity (output error of the quantized expert on
               calibration tokens, i.e. the Hessian-weighted weight perturbation) within
               ``avg_bits`` per expert, solved exactly
budget         least importance x distortion within memory / latency budgets on a chip
               (:mod:`accelsim.alloc.budget`)
=============  ==============================================================================

PMQ (Huang et al., 2024, "Mixture Compressor for Mixture-of-Experts LLMs Gains More",
arXiv:2410.06270): per layer, choose ``x_ib`` in {0, 1} minimising
``sum_ib x_ib * phi_i^alpha * w_i^beta * eps_ib^alpha`` subject to ``sum_b x_ib = 1``,
``sum_ib b * x_ib <= avg_bits * E`` and at least one expert at each of the two highest levels;
``phi_i`` activation frequency, ``w_i`` mean routing weight, ``eps_ib`` quantization error of
expert ``i`` at ``b`` bits; ``alpha = 1``, ``beta = 1.5``. Without a measured sensitivity
``eps_ib = 4^-b`` (the relative MSE of b-bit uniform quantization falls as ``2^-2b``);
without routing weights ``w_i = 1``.

Non-expert tensors keep their own bits (:data:`DEFAULT_ROLE_BITS`: attention 4 as in the
paper, shared experts and dense FFNs 4, router and embeddings 16).

Examples
--------
>>> import numpy as np
>>> from accelsim.workload import load_workload
>>> m = load_workload("mixtral-8x7b")
>>> s = ExpertSignals(router_norm=np.tile(np.arange(8.0), (32, 1)))
>>> a = allocate("router-norm", AllocRequest(m, s, avg_bits=2.5, levels=(3, 2, 1)))
>>> a.expert_bits[0].tolist(), a.average_expert_bits()
([3, 3, 3, 3, 3, 3, 1, 1], 2.5)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ConfigError, InfeasibleError, did_you_mean
from ..precision import BitAllocation
from .budget import budget_allocation, distortion
from .mckp import infeasible
from .paper import assign_bits, check_levels, expert_order
from .signals import ExpertSignals

__all__ = ["AllocRequest", "METHODS", "register", "allocate", "DEFAULT_ROLE_BITS",
           "ORDERS", "GRANULARITIES", "pmq_layer", "pmq_layers"]

#: Bits of the tensors the allocation does not choose (the paper keeps attention at 4).
DEFAULT_ROLE_BITS: Mapping[str, int] = {"attention": 4, "router": 16, "shared": 4,
                                        "dense_ffn": 4, "embeddings": 16}
ORDERS = ("auto", "router", "maxvar", "combined")
GRANULARITIES = ("expert", "layer")
PMQ_ALPHA, PMQ_BETA = 1.0, 1.5


@dataclass(frozen=True)
class AllocRequest:
    """Everything a method may use. Budget fields are used by ``budget`` only."""

    model: Any
    signals: ExpertSignals = field(default_factory=ExpertSignals)
    avg_bits: float | None = None
    levels: tuple[int, ...] = (3, 2, 1)
    zeta: float = 3.0
    order: str = "auto"        # combined when max_variance is known, else router
    seed: int = 0
    role_bits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_ROLE_BITS))
    group_size: int | None = 128
    symmetric: bool = False
    # budget method
    hw: Any = None
    scenario: Any = None
    memory_budget_bytes: float | None = None
    memory_scope: str = "global"
    latency_budget_s: float | None = None
    memory_budget_text: str | None = None     # as the user wrote them, for messages
    latency_budget_text: str | None = None
    granularity: str = "expert"     # 'layer': one bit-width per MoE layer's routed experts
    plan: Any = None    # hw a System (accelsim.system): the plan the latency budget is met on

    def __post_init__(self):
        object.__setattr__(self, "levels", check_levels(self.levels))
        if self.granularity not in GRANULARITIES:
            raise ConfigError.single(f"must be one of {', '.join(GRANULARITIES)}" +
                                     did_you_mean(self.granularity, GRANULARITIES),
                                     key="granularity", value=self.granularity)
        if self.granularity == "layer" and 0 in self.levels:
            raise ConfigError.single("granularity 'layer' cannot use a 0-bit level: a layer "
                                     "at 0 bits would prune all of its experts",
                                     key="levels", value=list(self.levels))
        rb = dict(DEFAULT_ROLE_BITS)
        rb.update(self.role_bits)
        object.__setattr__(self, "role_bits", rb)
        if self.order not in ORDERS:
            raise ConfigError.single(f"must be one of {', '.join(ORDERS)}" +
                                     did_you_mean(self.order, ORDERS), key="order",
                                     value=self.order)
        if self.avg_bits is not None and 0 in self.levels:
            if not (np.isfinite(self.avg_bits) and 0 < self.avg_bits <= 16):
                raise ConfigError.single("average bits must be in (0, 16] (levels with 0 = "
                                         "pruned)", key="avg_bits", value=self.avg_bits)
        elif self.avg_bits is not None and not (np.isfinite(self.avg_bits)
                                                and 1 <= self.avg_bits <= 16):
            raise ConfigError.single("average bits must be in 1..16", key="avg_bits",
                                     value=self.avg_bits)
        if self.memory_scope not in ("global", "layer"):
            raise ConfigError.single("must be 'global' or 'layer'", key="memory_scope",
                                     value=self.memory_scope)

    @property
    def shape(self) -> tuple[int, int]:
        return self.model.num_moe_layers, self.model.moe.num_experts

    def need_avg(self, method: str) -> float:
        if self.avg_bits is None:
            raise ConfigError.single(f"method '{method}' needs the target average bits "
                                     f"(--avg-bits)", key="avg_bits")
        return float(self.avg_bits)

    @property
    def by_layer(self) -> bool:
        return self.granularity == "layer"

    @property
    def min_alive(self) -> int:
        """Experts per layer that must survive (be above 0 bits): the router's top-k."""
        return int(self.model.moe.top_k) if 0 in self.levels else 0

    def result(self, bits: np.ndarray, method: str, *, check: bool = True,
               **meta: Any) -> BitAllocation:
        bits = np.asarray(bits, dtype=np.int64)
        if self.by_layer and bits.ndim == 1:       # one bit-width per MoE layer
            bits = np.repeat(bits[:, None], self.shape[1], axis=1)
        if self.by_layer:
            meta = dict(meta, granularity="layer")
        alloc = BitAllocation(self.model.name, bits, defaults=self.role_bits,
                              group_size=self.group_size, symmetric=self.symmetric,
                              method=method, meta=meta)
        if check and 0 in self.levels:
            alloc.check(self.model)         # at least top_k experts per layer survive
        return alloc


Method = Callable[[AllocRequest], BitAllocation]
METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    """Add a method to :data:`METHODS` under ``name``."""
    def deco(fn: Method) -> Method:
        METHODS[name] = fn
        return fn
    return deco


def allocate(method: str, request: AllocRequest) -> BitAllocation:
    """Run the method registered as ``method``; signals are checked against the model."""
    if method not in METHODS:
        raise ConfigError.single(f"unknown method; methods: {', '.join(sorted(METHODS))}" +
                                 did_you_mean(method, METHODS), key="method", value=method)
    request.signals.check(*request.shape)
    return METHODS[method](request)


def _by_order(req: AllocRequest, orders: list[list[int]], method: str,
              **meta: Any) -> BitAllocation:
    """Bits from per-layer expert orders, or (layer granularity) from one order of the MoE
    layers: each layer's experts all get that layer's bits."""
    avg = req.need_avg(method)
    bits = assign_bits(orders, avg, req.levels)
    if req.by_layer:
        bits = bits[0]
    return req.result(bits, method, target_avg_bits=avg, levels=list(req.levels), **meta)


def _order(req: AllocRequest, scores: np.ndarray, max_variance=None) -> list[list[int]]:
    """:func:`expert_order` of the experts of each layer; with layer granularity, of the
    MoE layers by their summed signals (one order of ``layers`` items)."""
    if req.by_layer:
        scores = np.asarray(scores, dtype=float).sum(axis=1)[None]
        if max_variance is not None:
            max_variance = np.asarray(max_variance, dtype=float).sum(axis=1)[None]
    if max_variance is None:
        return expert_order(scores)
    return expert_order(scores, max_variance, req.zeta)


def _paper_orders(req: AllocRequest) -> tuple[list[list[int]], dict]:
    s = req.signals
    order = req.order
    if order == "auto":
        order = "combined" if s.max_variance is not None else "router"
    if order == "maxvar":
        if s.max_variance is None:
            raise ConfigError.single("order 'maxvar' needs max_variance (from --checkpoint "
                                     "or --signals)", key="signals")
        return _order(req, -s.max_variance), {"order": "maxvar",
                                               "variance": s.max_variance_kind}
    scores, which = s.router_scores()
    if order == "router":
        return _order(req, scores), {"order": "router", "score": which}
    if s.max_variance is None:
        raise ConfigError.single("order 'combined' needs max_variance (from --checkpoint or "
                                 "--signals); use --order router without it", key="signals")
    return (_order(req, scores, s.max_variance),
            {"order": "combined", "score": which, "zeta": req.zeta,
             "variance": s.max_variance_kind})


@register("uniform")
def _uniform(req: AllocRequest) -> BitAllocation:
    avg = req.need_avg("uniform")
    if avg != int(avg):
        raise ConfigError.single("uniform needs an integer number of bits", key="avg_bits",
                                 value=avg)
    return req.result(np.full(req.shape, int(avg)), "uniform", target_avg_bits=avg)


@register("router-norm")
def _router_norm(req: AllocRequest) -> BitAllocation:
    orders, meta = _paper_orders(req)
    return _by_order(req, orders, "router-norm", **meta)


@register("reverse")
def _reverse(req: AllocRequest) -> BitAllocation:
    orders, meta = _paper_orders(req)
    return _by_order(req, [o[::-1] for o in orders], "reverse", **meta)


@register("frequency")
def _frequency(req: AllocRequest) -> BitAllocation:
    f = req.signals.frequency
    if f is None:
        raise ConfigError.single("method 'frequency' needs activation frequencies: give "
                                 "--trace FILE or --signals FILE.npz with 'frequency'",
                                 key="signals")
    return _by_order(req, _order(req, -f), "frequency")


@register("random")
def _random(req: AllocRequest) -> BitAllocation:
    rng = np.random.default_rng(req.seed)
    L, E = req.shape
    orders = ([rng.permutation(L).tolist()] if req.by_layer
              else [rng.permutation(E).tolist() for _ in range(L)])
    return _by_order(req, orders, "random", seed=req.seed)


def pmq_layer(weight: np.ndarray, eps: np.ndarray, levels, budget_bits: float) -> np.ndarray:
    """One layer of PMQ: bits per expert minimising ``sum weight_i * eps[i, b]`` with
    ``sum bits <= budget_bits`` and at least one expert at each of the two highest levels.

    >>> pmq_layer(np.array([1.0, 5, 2, 0.5]), np.tile([0.0, 1, 4], (4, 1)), (3, 2, 1), 8)
    array([2, 3, 2, 1])
    """
    return pmq_layers(np.asarray(weight)[None], np.asarray(eps)[None], levels, budget_bits)[0]


def pmq_layers(weight: np.ndarray, eps: np.ndarray, levels, budget_bits: float, *,
               top_two: bool = True, min_alive: int = 0) -> np.ndarray:
    """:func:`pmq_layer` for every layer (``weight`` [layers, experts], ``eps`` [layers,
    experts, levels]), as one integer program: the layers share no constraint, so its
    optimum is every layer's optimum, and one HiGHS call costs a fraction of one per layer
    (Mixtral-8x7B: 0.36 s -> 0.05 s). ``top_two=False`` drops PMQ's rule that the two
    highest levels are used (the ``hessian`` method). ``min_alive``: with a 0-bit level
    (pruned), at least this many experts per layer stay above 0 bits (the router's top-k).

    >>> w, eps = np.array([[1.0, 2, 5, 10]]), np.tile([0.0, 1, 1.5], (1, 4, 1))
    >>> pmq_layers(w, eps, (4, 2, 0), 8, top_two=False).tolist()
    [[0, 0, 4, 4]]
    >>> pmq_layers(w, eps, (4, 2, 0), 8, top_two=False, min_alive=3).tolist()
    [[0, 2, 2, 4]]
    """
    from scipy import sparse
    from scipy.optimize import Bounds, LinearConstraint, milp
    lv = np.asarray(levels, dtype=float)
    L, E, C = eps.shape
    top = np.argsort(-lv)[:2] if top_two and E >= 2 and C >= 2 else []
    need = (lv[top].sum() + (E - len(top)) * lv.min()) if len(top) else E * lv.min()
    zero = np.flatnonzero(lv == 0)
    alive = min(int(min_alive), E) if zero.size else 0
    if alive:   # survivors beyond the top levels' experts sit at the lowest non-zero level
        extra = max(0, alive - int((lv[top] > 0).sum()))
        need += extra * (lv[lv > 0].min() - lv.min())
    if budget_bits < need - 1e-9:
        rule = " (one expert at each of the two highest)" if len(top) else ""
        if alive:
            rule += f" (at least {alive} experts per layer above 0 bits)"
        raise infeasible(f"{'PMQ' if top_two else 'the allocation'} needs at least "
                         f"{need / E:.6g} average bits per expert with levels "
                         f"{tuple(int(b) for b in lv)}{rule}", need / E)
    layer = sparse.eye(L, format="csr")
    # one choice per expert; bits per layer within the budget; the two highest levels used
    A = [sparse.kron(sparse.eye(L * E), np.ones((1, C))), sparse.kron(layer, np.tile(lv, E))]
    lo = [np.ones(L * E), np.full(L, -np.inf)]
    hi = [np.ones(L * E), np.full(L, float(budget_bits))]
    for c in top:
        A.append(sparse.kron(layer, np.tile(np.eye(C)[c], E)))
        lo.append(np.ones(L))
        hi.append(np.full(L, np.inf))
    if alive:   # at most E - alive experts of a layer pruned
        A.append(sparse.kron(layer, np.tile(np.eye(C)[zero[0]], E)))
        lo.append(np.full(L, -np.inf))
        hi.append(np.full(L, float(E - alive)))
    cons = LinearConstraint(sparse.vstack(A).tocsr(), np.concatenate(lo), np.concatenate(hi))
    obj = (np.asarray(weight, dtype=float)[:, :, None] * eps).ravel()
    # HiGHS stops within an absolute gap of 1e-6: scale the objective so that is negligible
    top_obj = float(np.abs(obj).max(initial=0.0))
    if top_obj > 0.0:
        obj = obj * (1e6 / top_obj)
    res = milp(obj, constraints=cons, integrality=np.ones(L * E * C), bounds=Bounds(0, 1),
               options={"mip_rel_gap": 0.0, "time_limit": 60.0})
    if res.x is None:
        raise InfeasibleError("PMQ: the solver found no solution")
    return lv[res.x.reshape(L, E, C).argmax(axis=2)].astype(np.int64)


@register("pmq")
def _pmq(req: AllocRequest) -> BitAllocation:
    avg = req.need_avg("pmq")
    s = req.signals
    if s.frequency is None:
        raise ConfigError.single("method 'pmq' needs activation frequencies (and, "
                                 "optionally, mean routing weights): give --trace FILE or "
                                 "--signals FILE.npz with 'frequency'", key="signals")
    w = s.mean_weight if s.mean_weight is not None else np.ones(req.shape)
    eps, src = distortion(req, req.levels)
    E = req.shape[1]
    weight = s.frequency ** PMQ_ALPHA * w ** PMQ_BETA
    if req.by_layer:    # one item per MoE layer: its experts' summed weighted error
        bits = pmq_layers(np.ones((1, req.shape[0])),
                          (weight[:, :, None] * eps ** PMQ_ALPHA).sum(axis=1)[None],
                          req.levels, avg * req.shape[0])[0]
    else:
        bits = pmq_layers(weight, eps ** PMQ_ALPHA, req.levels, avg * E,
                          min_alive=req.min_alive)
    return req.result(bits, "pmq", target_avg_bits=avg, levels=list(req.levels),
                      alpha=PMQ_ALPHA, beta=PMQ_BETA, distortion=src,
                      routing_weight="trace" if s.mean_weight is not None else "1")


@register("hessian")
def _hessian(req: AllocRequest) -> BitAllocation:
    avg = req.need_avg("hessian")
    eps = req.signals.sensitivity_at(req.levels)
    if eps is None:
        raise ConfigError.single(
            f"method 'hessian' needs the sensitivity signal at bits {list(req.levels)}: "
            f"give --checkpoint (measured on calibration tokens) or --signals FILE.npz "
            f"with 'sensitivity' and 'sensitivity_bits'", key="signals")
    E = req.shape[1]
    # per layer: the least summed sensitivity within avg_bits x E bits; all layers in one
    # exact program (pmq_layers without PMQ's two-highest-levels rule)
    if req.by_layer:    # one item per MoE layer: its experts' summed sensitivity
        bits = pmq_layers(np.ones((1, req.shape[0])), eps.sum(axis=1)[None], req.levels,
                          avg * req.shape[0], top_two=False)[0]
    else:
        bits = pmq_layers(np.ones(req.shape), eps, req.levels, avg * E, top_two=False,
                          min_alive=req.min_alive)
    return req.result(bits, "hessian", target_avg_bits=avg, levels=list(req.levels),
                      calibration=req.signals.calibration or None)


@register("budget")
def _budget(req: AllocRequest) -> BitAllocation:
    return budget_allocation(req).allocation
