"""Per-expert signals that allocation methods rank experts by.

Every signal is an array [MoE layers, experts] (row ``r`` is the model's MoE layer
``moe_layers[r]``), gathered in one frozen :class:`ExpertSignals`:

* ``router_norm``: L2 norm of each router row (the expert's gate vector);
* ``router_norm_change``: fine-tuned norm minus pre-trained norm (signed);
* ``max_variance``: max intra-neuron variance of ``w1`` (gate projection; ``wi`` for
  ReLU experts), variant ``max_row`` (the largest unbiased row variance, the paper's
  definition) or ``top_norm_row`` (unbiased variance of the row with the largest L2 norm,
  what the paper's code computes for Mixtral);
* ``frequency``: share of the routed selections each expert receives (rows sum to 1);
* ``mean_weight``: mean routing weight of the tokens routed to the expert;
* ``sensitivity`` [layers, experts, levels]: relative output error of the expert quantized
  (RTN) to each of ``sensitivity_bits``, measured with the integer kernels (8-bit
  activations) on calibration tokens: ``||f(x) - f_q(x)||^2 / ||f(x)||^2``.

Sources: :func:`signals_from_checkpoint` (safetensors, via :mod:`accelsim.quant`),
:func:`signals_from_npz`, :func:`signals_from_trace`.

Examples
--------
>>> import numpy as np
>>> from accelsim.workload import Trace
>>> ids = np.array([[[0, 1]], [[0, 2]], [[0, 1]]])     # 3 tokens, 1 layer, top-2
>>> signals_from_trace(Trace(ids), num_experts=4).frequency.tolist()
[[0.5, 0.3333333333333333, 0.16666666666666666, 0.0]]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import check_array, load_arrays
from ..errors import ConfigError, Problem, did_you_mean

__all__ = ["ExpertSignals", "router_norms", "max_intra_neuron_variance",
           "signals_from_checkpoint", "signals_from_npz", "signals_from_trace",
           "load_calibration",
           "expert_sensitivity", "NPZ_KEYS", "VARIANCE_VARIANTS"]

VARIANCE_VARIANTS = ("max_row", "top_norm_row")

#: Arrays an NPZ signals file may hold (each [layers, experts] but ``sensitivity``
#: [layers, experts, levels] with ``sensitivity_bits`` [levels]).
NPZ_KEYS = ("router_norm_change", "router_norm", "max_variance", "frequency",
            "mean_routing_weight", "sensitivity", "sensitivity_bits")

_MATRIX_FIELDS = ("router_norm", "router_norm_change", "max_variance", "frequency",
                  "mean_weight")


@dataclass(frozen=True)
class ExpertSignals:
    """Signals per (MoE layer, expert); any may be None. See the module docstring."""

    router_norm: np.ndarray | None = None
    router_norm_change: np.ndarray | None = None
    max_variance: np.ndarray | None = None
    max_variance_kind: str = "max_row"
    frequency: np.ndarray | None = None
    mean_weight: np.ndarray | None = None
    sensitivity: np.ndarray | None = None
    sensitivity_bits: tuple[int, ...] = ()
    source: str = ""
    #: what the sensitivity was measured on (a calibration file, or the synthetic default)
    calibration: str = ""

    def __post_init__(self):
        for name in _MATRIX_FIELDS + ("sensitivity",):
            v = getattr(self, name)
            if v is not None:
                a = np.array(v, dtype=float, copy=True)
                a.setflags(write=False)
                object.__setattr__(self, name, a)
        object.__setattr__(self, "sensitivity_bits",
                           tuple(int(b) for b in self.sensitivity_bits))

    @property
    def available(self) -> tuple[str, ...]:
        """Names of the signals present."""
        return tuple(f.name for f in fields(self)
                     if f.name in _MATRIX_FIELDS + ("sensitivity",)
                     and getattr(self, f.name) is not None)

    def shape(self) -> tuple[int, int] | None:
        for name in self.available:
            return tuple(getattr(self, name).shape[:2])
        return None

    def router_scores(self) -> tuple[np.ndarray, str]:
        """The paper's ordering score: the router-norm change when known, else the norm."""
        if self.router_norm_change is not None:
            return self.router_norm_change, "router_norm_change"
        if self.router_norm is not None:
            return self.router_norm, "router_norm"
        raise ConfigError.single(
            "needs router_norm_change or router_norm: give --checkpoint FT.safetensors "
            "[--pretrained PT.safetensors] or --signals FILE.npz with one of them",
            key="signals")

    def merged(self, other: "ExpertSignals") -> "ExpertSignals":
        """These signals completed by ``other``'s (ours win where both have one)."""
        changes = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name in _MATRIX_FIELDS + ("sensitivity",) and mine is None \
                    and theirs is not None:
                changes[f.name] = theirs
                if f.name == "sensitivity":
                    changes["sensitivity_bits"] = other.sensitivity_bits
                    changes["calibration"] = other.calibration
                if f.name == "max_variance":
                    changes["max_variance_kind"] = other.max_variance_kind
        src = " + ".join(s for s in (self.source, other.source) if s)
        return replace(self, source=src, **changes)

    def check(self, num_layers: int, num_experts: int, *, file: str | None = None) -> None:
        """Raise ConfigError unless every signal is [num_layers, num_experts] and finite."""
        file = file or self.source or None
        problems = []
        want = (num_layers, num_experts)
        for name in self.available:
            a = getattr(self, name)
            key = "mean_routing_weight" if name == "mean_weight" else name
            if tuple(a.shape[:2]) != want or a.ndim != (3 if name == "sensitivity" else 2):
                shape = want + ((len(self.sensitivity_bits),) if name == "sensitivity"
                                else ())
                problems.append(Problem(f"must have shape {shape} ([MoE layers, experts"
                                        f"{', levels' if name == 'sensitivity' else ''}])",
                                        file=file, key=key, value=a.shape))
            elif not np.all(np.isfinite(a)):
                bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
                problems.append(Problem("must be finite (no NaN or inf)", file=file, key=key,
                                        value=f"first at layer {bad[0]}, expert {bad[1]}"))
            elif name in ("frequency", "mean_weight", "sensitivity") and (a < 0).any():
                problems.append(Problem("must be >= 0", file=file, key=key))
        if self.sensitivity is not None and self.sensitivity.ndim == 3 and \
                self.sensitivity.shape[2] != len(self.sensitivity_bits):
            problems.append(Problem("needs one bit-width per level (sensitivity_bits)",
                                    file=file, key="sensitivity_bits",
                                    value=self.sensitivity_bits))
        if problems:
            raise ConfigError(problems)

    def sensitivity_at(self, bits: Sequence[int]) -> np.ndarray | None:
        """Sensitivity [layers, experts, len(bits)] at exactly these bit-widths, or None
        when a bit-width was not measured (16 bits counts as error 0; 0 bits, a pruned
        expert, as error 1: its output is absent)."""
        if self.sensitivity is None:
            return None
        cols = []
        for b in bits:
            if int(b) in self.sensitivity_bits:
                cols.append(self.sensitivity[:, :, self.sensitivity_bits.index(int(b))])
            elif int(b) >= 16:
                cols.append(np.zeros(self.sensitivity.shape[:2]))
            elif int(b) == 0:       # pruned: the output is absent, relative error 1
                cols.append(np.ones(self.sensitivity.shape[:2]))
            else:
                return None
        return np.stack(cols, axis=2)


# ----------------------------------------------------------------------------- formulas
def router_norms(router: np.ndarray) -> np.ndarray:
    """L2 norm of each row of a router weight [experts, hidden].

    >>> router_norms(np.array([[3.0, 4.0], [0.0, 1.0]])).tolist()
    [5.0, 1.0]
    """
    r = np.asarray(router, dtype=np.float64)
    return np.sqrt(np.einsum("ij,ij->i", r, r))


def max_intra_neuron_variance(w1: np.ndarray, variant: str = "max_row") -> float:
    """Max intra-neuron variance of a weight [neurons (rows), inputs].

    ``max_row``: the largest unbiased variance over a row; ``top_norm_row``: the unbiased
    variance of the row with the largest L2 norm.

    >>> w = np.array([[0.0, 2.0], [5.0, 5.5]])
    >>> max_intra_neuron_variance(w), max_intra_neuron_variance(w, "top_norm_row")
    (2.0, 0.125)
    """
    if variant not in VARIANCE_VARIANTS:
        raise ConfigError.single(f"must be one of {VARIANCE_VARIANTS}", key="variance",
                                 value=variant)
    w = np.asarray(w1)
    if w.ndim != 2 or w.shape[1] < 2 or w.dtype.kind not in "fiu":
        raise ConfigError.single("needs a real 2-D weight with at least 2 inputs per row",
                                 key="w1", value=w.shape)
    # float64 row by row block: exact enough for 1e4-wide rows, and no 8-byte copy of a
    # whole (14336 x 4096) matrix
    rows = max(1, (1 << 21) // w.shape[1])
    var = np.empty(w.shape[0])
    sq = np.empty(w.shape[0])
    for r0 in range(0, w.shape[0], rows):
        blk = w[r0:r0 + rows].astype(np.float64)
        var[r0:r0 + rows] = blk.var(axis=1, ddof=1)
        sq[r0:r0 + rows] = np.einsum("ij,ij->i", blk, blk)
    if variant == "max_row":
        return float(var.max())
    return float(var[np.argmax(sq)])


def expert_sensitivity(expert, bits: Sequence[int], calib: np.ndarray, *,
                       group_size: int | None = 128, act_bits: int | None = 8) -> np.ndarray:
    """Relative output error of ``expert`` (an :class:`accelsim.quant.Expert`) quantized by
    RTN to each of ``bits``, on tokens ``calib`` [tokens, hidden]; integer kernels with
    ``act_bits``-bit activations (None: dequantized float path).

    >>> from accelsim.quant import Expert
    >>> rng = np.random.default_rng(0)
    >>> e = Expert("relu", {"wi": rng.standard_normal((16, 8)), "wo": rng.standard_normal((8, 16))})
    >>> err = expert_sensitivity(e, [2, 4, 8], rng.standard_normal((32, 8)), group_size=8)
    >>> bool(err[0] > err[1] > err[2])
    True
    """
    from ..quant import expert_forward, quantize_expert
    ref = expert_forward(expert, calib).astype(np.float64)
    denom = max(float(np.sum(ref * ref)), 1e-300)
    out = []
    for b in bits:
        if int(b) >= 16:
            out.append(0.0)
            continue
        q = quantize_expert(expert, int(b), group_size=group_size)
        y = expert_forward(q, calib, act_bits=act_bits).astype(np.float64)
        out.append(float(np.sum((y - ref) ** 2)) / denom)
    return np.array(out)


# ----------------------------------------------------------------------------- sources
def signals_from_checkpoint(checkpoint, family: str, *, pretrained=None,
                            variance: str | None = "max_row",
                            sensitivity_bits: Sequence[int] = (),
                            calib: np.ndarray | None = None, calib_tokens: int = 64,
                            seed: int = 0, group_size: int | None = 128,
                            calib_label: str = "", progress=None) -> ExpertSignals:
    """Router norms (and their change against ``pretrained``), max intra-neuron variance
    and, when ``sensitivity_bits`` is given, quantization sensitivity, read from
    safetensors checkpoints of a model ``family`` (see :func:`accelsim.quant.open_checkpoint`).

    ``calib`` defaults to ``calib_tokens`` seeded standard-normal tokens (documented proxy
    for real calibration activations; :func:`load_calibration` reads real ones, named by
    ``calib_label`` in the result's ``calibration``). Experts are read one at a time;
    ``progress`` (a callable, optional) is called with a message after each MoE layer.
    """
    from ..quant import open_checkpoint
    ft = open_checkpoint(checkpoint, family)
    layers = ft.moe_layers()
    norms = _stack([router_norms(ft.router(k)) for k in layers], ft.label)
    change = None
    if pretrained is not None:
        pt = open_checkpoint(pretrained, family)
        if pt.moe_layers() != layers:
            raise ConfigError.single(f"MoE layers differ from the fine-tuned checkpoint's "
                                     f"({len(layers)} layers)", file=pt.label,
                                     key="moe_layers", value=len(pt.moe_layers()))
        pre = _stack([router_norms(pt.router(k)) for k in layers], pt.label)
        if pre.shape != norms.shape:
            raise ConfigError.single(f"router shape {pre.shape} differs from the fine-tuned "
                                     f"{norms.shape}", file=pt.label, key="router")
        change = norms - pre
    maxvar = sens = None
    bits = tuple(int(b) for b in sensitivity_bits)
    if variance is not None or bits:
        first = "w1" if ft.ffn_kind == "swiglu" else "wi"
        mv, se = [], []
        x = calib
        for k in layers:
            row_v, row_s = [], []
            for e in range(ft.num_experts(k)):
                if bits:
                    expert = ft.load_expert(k, e)
                    if x is None:
                        x = np.random.default_rng(seed).standard_normal(
                            (calib_tokens, expert.hidden_size)).astype(np.float32)
                    row_s.append(expert_sensitivity(expert, bits, x, group_size=group_size))
                    w = np.asarray(expert.weights[first])
                else:
                    w = ft.tensor(ft.expert_names(k, e)[first])
                if variance is not None:
                    row_v.append(max_intra_neuron_variance(w, variance))
            mv.append(row_v)
            se.append(row_s)
            if progress:
                progress(f"{ft.label}: MoE layer {len(mv)}/{len(layers)} read"
                         + (" (sensitivity measured)" if bits else ""))
        maxvar = np.array(mv) if variance is not None else None
        sens = np.array(se) if bits else None
    return ExpertSignals(router_norm=norms, router_norm_change=change, max_variance=maxvar,
                         max_variance_kind=variance or "max_row", sensitivity=sens,
                         sensitivity_bits=bits if bits else (), source=ft.label,
                         calibration=(calib_label or (
                             f"{calib.shape[0]} given tokens" if calib is not None else
                             f"{calib_tokens} standard-normal tokens (seed {seed})"))
                         if bits else "")


def _stack(rows: list[np.ndarray], label: str) -> np.ndarray:
    if len({len(r) for r in rows}) != 1:
        raise ConfigError.single("MoE layers have different expert counts", file=label,
                                 key="router", value=sorted({len(r) for r in rows}))
    return np.stack(rows)


#: Magnitudes a signal value may have (besides 0): beyond them the solvers' sums overflow or
#: underflow (HiGHS refuses non-finite costs). docs/bad-input.md.
SIGNAL_MAX = 1e30
SIGNAL_TINY = 1e-30


def signals_from_npz(path: str | os.PathLike, *,
                     variance_kind: str = "max_row") -> ExpertSignals:
    """Read an NPZ of signals (keys :data:`NPZ_KEYS`; ``mean_routing_weight`` fills
    ``mean_weight``). Shapes are checked against a model by :meth:`ExpertSignals.check`."""
    name = str(path)
    data = load_arrays(path, what="signals file")
    unknown = [k for k in data if k not in NPZ_KEYS]
    problems = [Problem("unknown array" + did_you_mean(k, NPZ_KEYS) +
                        f" (known: {', '.join(NPZ_KEYS)})", file=name, key=k)
                for k in unknown]
    if not any(k in data for k in NPZ_KEYS if k != "sensitivity_bits"):
        problems.append(Problem("has none of the signal arrays router_norm_change, "
                                "router_norm, max_variance, frequency, mean_routing_weight, "
                                "sensitivity", file=name))
    for k, a in data.items():
        if k not in NPZ_KEYS:
            continue
        try:   # real, finite and of a sane magnitude: the solvers get these numbers
            if k == "sensitivity_bits":
                data[k] = check_array(a, file=name, key=k, ndim=(0, 1), integer=True, lo=1,
                                      hi=16)
            else:
                data[k] = check_array(a, file=name, key=k, ndim=3 if k == "sensitivity" else 2,
                                      lo=-SIGNAL_MAX, hi=SIGNAL_MAX, tiny=SIGNAL_TINY,
                                      axes=("layer", "expert", "level"))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if ("sensitivity" in data) != ("sensitivity_bits" in data):
        problems.append(Problem("sensitivity and sensitivity_bits go together", file=name,
                                key="sensitivity"))
    if problems:
        raise ConfigError(problems)
    sb = tuple(int(b) for b in np.atleast_1d(data.get("sensitivity_bits", [])))
    return ExpertSignals(router_norm=data.get("router_norm"),
                         router_norm_change=data.get("router_norm_change"),
                         max_variance=data.get("max_variance"), max_variance_kind=variance_kind,
                         frequency=data.get("frequency"),
                         mean_weight=data.get("mean_routing_weight"),
                         sensitivity=data.get("sensitivity"), sensitivity_bits=sb,
                         source=name)


def load_calibration(path: str | os.PathLike, hidden_size: int) -> np.ndarray:
    """Calibration activations for the sensitivity signal: a ``.npy`` array or an ``.npz``
    with array ``tokens``, shape [tokens, hidden_size], finite numbers; returned as float32.
    Activations at the experts' input (after the attention block and its norm) are what
    real calibration means; they are model- and data-specific, so accelsim does not make
    them (``accelsim allocate --calibration``)."""
    name = str(path)
    arrays = load_arrays(path, what="calibration file")
    key = "tokens" if Path(name).suffix.lower() == ".npz" else ""
    if key not in arrays:
        raise ConfigError.single(
            f"has no array 'tokens' (arrays: {', '.join(arrays) or 'none'})",
            file=name, key="tokens")
    x = arrays[key]
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ConfigError.single("holds NaN or infinite values", file=name, key=key)
    x = check_array(x, file=name, key=key, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != hidden_size:
        raise ConfigError.single(f"must have shape [tokens, {hidden_size}] (the model's "
                                 f"hidden size)", file=name, key=key, value=list(x.shape))
    return np.ascontiguousarray(x, dtype=np.float32)


def signals_from_trace(trace, num_experts: int, *, num_layers: int | None = None,
                       top_k: int | None = None) -> ExpertSignals:
    """Activation frequency (and mean routing weight when the trace NPZ holds
    ``routing_weights`` [tokens, layers, top_k]) from a routing trace.

    ``trace`` is a :class:`accelsim.workload.Trace` or a path for
    :func:`accelsim.workload.load_trace`.
    """
    from ..workload import Trace, load_trace
    weights = None
    if not isinstance(trace, Trace):
        path = Path(trace)
        tr = load_trace(path)
        if path.suffix.lower() == ".npz":
            z = load_arrays(path, what="trace file")
            if "routing_weights" in z:
                weights = check_array(z["routing_weights"], file=str(path),
                                      key="routing_weights", ndim=3, lo=-SIGNAL_MAX,
                                      hi=SIGNAL_MAX)
        trace = tr
    ids = trace.expert_ids
    L = ids.shape[1] if num_layers is None else num_layers
    k = ids.shape[2] if top_k is None else top_k
    trace.validate(L, num_experts, k)
    counts = np.zeros((L, num_experts))
    for layer in range(L):
        counts[layer] = np.bincount(ids[:, layer, :].ravel(), minlength=num_experts)
    freq = counts / counts.sum(axis=1, keepdims=True)
    mean_w = None
    if weights is not None:
        if weights.shape != ids.shape or not np.all(np.isfinite(weights)):
            raise ConfigError.single("routing_weights must be finite and shaped like "
                                     "expert_ids", file=trace.source, key="routing_weights",
                                     value=weights.shape)
        sums = np.zeros((L, num_experts))
        for layer in range(L):
            sums[layer] = np.bincount(ids[:, layer, :].ravel(),
                                      weights=weights[:, layer, :].ravel(),
                                      minlength=num_experts)
        mean_w = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return ExpertSignals(frequency=freq, mean_weight=mean_w, source=trace.source)
