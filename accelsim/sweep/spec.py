"""Sweep specifications: the YAML schema, its validation and the expansion into points.

A sweep spec names *parameters* (``hw``, ``workload``, ``method``, ``avg_bits``, ``batch``,
hardware overrides such as ``hw.cores.mac_array.rows`` ...), gives some of them one value
for every point (``fixed``) and sweeps the others in *blocks* (``axes``): a ``grid`` block
takes every combination of its lists, a ``zip`` block pairs its equally long lists element
by element, and the blocks combine as a product, first block outermost. The full reference
is ``docs/sweeps.md``; :data:`PARAMS` holds the rule of every parameter.

Every value is checked, every file and preset is loaded and every hardware override is
applied and validated before a single point runs; all problems are reported together, each
naming the sweep file and the key (``axes[0].grid.avg_bits[2]``).

Examples
--------
>>> spec = sweep_from_dict({
...     "fixed": {"workload": "mixtral-8x7b", "phase": "decode"},
...     "axes": [{"grid": {"hw": ["gemmini"], "avg_bits": [4, 8]}},
...              {"zip": {"batch": [1, 8], "context": [512, 128]}}]})
>>> len(spec.points)
4
>>> [(p.columns["avg_bits"], p.columns["batch"], p.columns["context"]) for p in spec.points]
[(4.0, 1, 512), (4.0, 8, 128), (8.0, 1, 512), (8.0, 8, 128)]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from pydantic import Field

from .._io import exists
from ..config import Bounded, Spec, read_mapping, validate
from ..errors import ConfigError, Problem, did_you_mean
from .overrides import OverrideError, apply_overrides, parse_key_path
from .sources import build_hw, load_model_cached, raw_hw

__all__ = ["SweepSpec", "Point", "Param", "PARAMS", "load_sweep", "sweep_from_dict",
           "MAX_POINTS", "OVERRIDE_PREFIX"]

#: A spec may expand to at most this many points (a typo guard, not a hard limit of the
#: executors).
MAX_POINTS = 1_000_000
#: Parameters starting with this prefix override a key path of the accelerator YAML.
OVERRIDE_PREFIX = "hw."
#: ... and these a key path of the system YAML (``system.links.inter_node.bandwidth``).
SYSTEM_PREFIX = "system."
#: Bump when the meaning of a point's parameters changes (invalidates resumable parts).
SPEC_VERSION = 1

_REQUIRED = object()


# ----------------------------------------------------------------------------- parameter rules


@dataclass(frozen=True)
class Param:
    """The rule of one sweep parameter.

    ``check(value, base_dir)`` returns the value the evaluation uses (files resolved against
    the spec's directory) or raises ``ValueError(reason)``; ``column(value, checked)`` is
    the value shown in the results table.
    """

    name: str
    group: str
    check: Callable[[Any, Path], Any]
    default: Any
    doc: str
    column: Callable[[Any, Any], Any] = staticmethod(lambda raw, checked: checked)
    always_column: bool = False


def _number(lo: float, hi: float, *, integer: bool = False, what: str = "") -> Callable:
    def check(v: Any, base: Path) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"must be {'an integer' if integer else 'a number'}"
                             + (f" ({what})" if what else ""))
        if not math.isfinite(v):
            raise ValueError(f"must be in {lo:g}..{hi:g}")
        if integer and float(v) != int(v):
            raise ValueError("must be a whole number")
        if not lo <= v <= hi:
            raise ValueError(f"must be in {lo:g}..{hi:g}")
        return int(v) if integer else float(v)
    return check


def _optional(inner: Callable) -> Callable:
    def check(v: Any, base: Path) -> Any:
        return None if v is None else inner(v, base)
    return check


def _choice(*choices: str) -> Callable:
    def check(v: Any, base: Path) -> Any:
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}" + did_you_mean(str(v),
                                                                                   choices))
        return v
    return check


def _file_or_preset(v: Any, base: Path) -> str:
    """A preset name stays a name; a path is resolved against the spec's directory."""
    if not isinstance(v, str) or not v.strip():
        raise ValueError("must be a preset name or a path to a file")
    p = Path(v).expanduser()
    cand = p if p.is_absolute() else base / p
    return str(cand.resolve()) if exists(cand) else v


def _file(v: Any, base: Path) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("must be a path to a file")
    p = Path(v).expanduser()
    cand = p if p.is_absolute() else base / p
    if not exists(cand) or not os.path.isfile(cand):
        raise ValueError(f"no such file ({cand})")
    return str(cand.resolve())


def _as_written(raw: Any, checked: Any) -> Any:
    return raw


def _levels(v: Any, base: Path) -> tuple[int, ...]:
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)):
        raise ValueError("must be a list of 1 to 3 bit-widths like [4, 3, 2] (in axes: a list "
                         "of such lists, like [[4, 3, 2], [3, 2, 1]])")
    try:
        lv = [int(str(b).strip()) for b in items]
    except ValueError:
        raise ValueError("bit levels must be integers, like [4, 3, 2]") from None
    if not 1 <= len(lv) <= 3 or len(set(lv)) != len(lv) or not all(0 <= b <= 16 for b in lv) \
            or lv == [0]:
        raise ValueError("must be 1 to 3 distinct bit-widths in 0..16 (0 = pruned, only as "
                         "the lowest of two or three), like [4, 3, 2] or [4, 2, 0]")
    return tuple(sorted(lv, reverse=True))


def _levels_column(raw: Any, checked: Any) -> Any:
    return None if checked is None else ",".join(str(b) for b in checked)


def _routing(v: Any, base: Path) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("must be uniform, zipf:ALPHA, trace:FILE or freq:FILE")
    kind, _, arg = v.partition(":")
    if kind == "uniform" and not arg:
        return v
    if kind == "zipf":
        try:
            alpha = float(arg) if arg else 1.0
        except ValueError:
            raise ValueError("zipf needs a number, like 'zipf:1.2'") from None
        if not (math.isfinite(alpha) and 0 <= alpha <= 20):
            raise ValueError("zipf alpha must be in [0, 20]")
        return f"zipf:{alpha:g}"
    if kind in ("trace", "freq") and arg:
        return f"{kind}:{_file(arg, base)}"
    raise ValueError("must be uniform, zipf:ALPHA, trace:FILE or freq:FILE"
                     + did_you_mean(kind, ["uniform", "zipf", "trace", "freq"]))


def _gemm(v: Any, base: Path) -> tuple[int, int, int]:
    """One GEMM: ``"M,K,N"`` or ``[M, K, N]`` (activations M x K, weights K x N)."""
    items = v.split(",") if isinstance(v, str) else v
    msg = "must be M,K,N (activations M x K, weights K x N), like '64,4096,14336'"
    if not isinstance(items, (list, tuple)) or len(items) != 3:
        raise ValueError(msg)
    try:
        dims = [int(str(x).strip()) for x in items]
    except ValueError:
        raise ValueError(msg) from None
    if not all(1 <= d <= 2**40 for d in dims):
        raise ValueError("M, K and N must be whole numbers in 1..2^40")
    return tuple(dims)


def _gemm_column(raw: Any, checked: Any) -> Any:
    return None if checked is None else ",".join(str(d) for d in checked)


def _method(v: Any, base: Path) -> str:
    from .allocation import available_methods
    methods = available_methods()
    if v not in methods:
        raise ValueError(f"unknown allocation method; methods: {', '.join(methods)}"
                         + did_you_mean(str(v), methods))
    return v


def _quantity(kind: str) -> Callable:
    def check(v: Any, base: Path) -> Any:
        from ..units import parse_quantity
        try:
            x = parse_quantity(v, kind)
        except ConfigError as exc:
            raise ValueError(exc.problems[0].reason) from None
        if not x > 0:
            raise ValueError("must be > 0")
        return v
    return check


def _residency(v: Any, base: Path) -> str:
    from ..sim import RESIDENCY_POLICIES
    return _choice(*sorted(RESIDENCY_POLICIES))(v, base)


def _plan(v: Any, base: Path) -> str:
    from ..system.plan import parse_plan
    if not isinstance(v, str):
        raise ValueError("must be a plan like 'pp=4,tp=2,ep=8'")
    try:
        return str(parse_plan(v))
    except ConfigError as exc:
        raise ValueError(exc.problems[0].reason) from None


def _override_value(v: Any, base: Path) -> Any:
    if isinstance(v, (dict, list)) or v is None:
        # keeping columns scalar keeps the results table tidy
        raise ValueError("an override value must be a number, a string or a boolean")
    return v


def _seed(v: Any, base: Path) -> int:
    return _number(0, 2**31 - 1, integer=True)(v, base)


_P = Param
PARAMS: dict[str, Param] = {p.name: p for p in [
    _P("workload", "workload", _file_or_preset, _REQUIRED,
       "MoE model: a preset name, a model YAML or a Hugging Face config.json",
       _as_written, True),
    _P("gemm", "workload", _optional(_gemm), None,
       "one GEMM 'M,K,N' (activations M x K, weights K x N) instead of a workload: "
       "simulate_gemm at avg_bits", _gemm_column),
    _P("hw", "hardware", _file_or_preset, _REQUIRED,
       "accelerator: a preset name or a YAML file (or give 'system')", _as_written, True),
    _P("system", "hardware", _optional(_file_or_preset), None,
       "multi-device system instead of 'hw': a system preset or YAML (docs/systems.md)",
       _as_written),
    _P("plan", "hardware", _optional(_plan), None,
       "parallelism plan on the system, like 'pp=4,tp=2,ep=8' (default: the system's "
       "default plan)"),
    _P("devices", "hardware", _optional(_number(1, 1 << 20, integer=True)), None,
       "use the first N devices of the system"),
    _P("method", "allocation", _method, "uniform",
       "bit-allocation method (accelsim.alloc registry)", always_column=True),
    _P("avg_bits", "allocation", _number(1, 16), _REQUIRED,
       "target average bits per routed expert", always_column=True),
    _P("levels", "allocation", _optional(_levels), None,
       "bit levels of the allocation, high to low (default: floor(avg_bits)+1, floor, "
       "floor-1)", _levels_column),
    _P("granularity", "allocation", _choice("expert", "layer"), "expert",
       "expert: bits per routed expert; layer: one bit-width per MoE layer's experts "
       "(fused MoE kernels)"),
    _P("signals", "allocation", _optional(_file), None,
       "NPZ file of expert signals for the allocation methods (default: synthetic, seeded)",
       _as_written),
    _P("activation_bits", "allocation", _optional(_number(1, 16, integer=True)), None,
       "activation bits (default: the accelerator's)"),
    _P("kv_bits", "allocation", _number(1, 16, integer=True), 16, "KV-cache bits"),
    _P("other_bits", "allocation", _optional(_number(1, 16, integer=True)), None,
       "bits of attention, shared experts and dense FFNs (default: the allocator's, 4)"),
    _P("group_size", "allocation", _optional(_number(1, 1 << 20, integer=True)), 128,
       "quantization group size along the input dimension (null: per channel)"),
    _P("memory_budget", "allocation", _optional(_quantity("size")), None,
       "weight-memory budget of the 'budget' method, like '24 GB'", _as_written),
    _P("latency_budget", "allocation", _optional(_quantity("time")), None,
       "step-latency budget of the 'budget' method, like '20 ms'", _as_written),
    _P("residency", "simulator", _residency, "hot-first",
       "where weights live: hot-first, offchip or must-fit"),
    _P("packing", "simulator", _choice("native", "dense"), "native",
       "weight storage: native pads widths to those the chip computes on, dense does not"),
    _P("dataflow", "simulator", _optional(_choice("weight_stationary", "output_stationary")),
       None, "force a dataflow (default: the fastest the array supports, per GEMM)"),
    _P("phase", "scenario", _choice("decode", "prefill"), "decode", "inference phase",
       always_column=True),
    _P("batch", "scenario", _number(1, 1 << 24, integer=True), 1, "sequences per step",
       always_column=True),
    _P("seq_len", "scenario", _number(1, 1 << 24, integer=True), 1,
       "prompt tokens per sequence (prefill)"),
    _P("context", "scenario", _number(0, 1 << 24, integer=True), 0,
       "cached tokens per sequence (decode)", always_column=True),
    _P("routing", "scenario", _routing, "uniform",
       "routing distribution: uniform, zipf:ALPHA, trace:FILE or freq:FILE"),
    _P("capacity_factor", "scenario", _optional(_number(1e-6, 1000)), None,
       "expert capacity factor (default: the model's)"),
    _P("seed", "point", _seed, None,
       "seed of the point's randomness: routing, synthetic signals, random allocations "
       "(default: the spec's seed)"),
]}


def _rule(name: str) -> Param | None:
    if name in PARAMS:
        return PARAMS[name]
    if name.startswith(OVERRIDE_PREFIX) and len(name) > len(OVERRIDE_PREFIX):
        return Param(name, "override", _override_value, _REQUIRED,
                     "accelerator override by key path")
    if name.startswith(SYSTEM_PREFIX) and len(name) > len(SYSTEM_PREFIX):
        return Param(name, "system_override", _override_value, _REQUIRED,
                     "system override by key path")
    return None


# ----------------------------------------------------------------------------- file schema


class _Block(Spec):
    grid: dict[str, list[Any]] | None = None
    zip: dict[str, list[Any]] | None = None


class _SweepFile(Spec):
    name: str = Field(default="sweep", min_length=1, max_length=128)
    description: str = ""
    seed: Bounded(int, 0, 2**31 - 1) = 0
    fixed: dict[str, Any] = Field(default_factory=dict)
    axes: list[_Block] = Field(default_factory=list)


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Point:
    """One point of a sweep.

    ``params`` holds every parameter (defaults included) as the evaluation uses it (files
    resolved); ``columns`` the values shown in the results table; ``seed`` the point's seed.
    """

    id: int
    params: Mapping[str, Any]
    columns: Mapping[str, Any]
    seed: int

    @property
    def overrides(self) -> dict[str, Any]:
        """Hardware overrides: key path (without ``hw.``) -> value."""
        n = len(OVERRIDE_PREFIX)
        return {k[n:]: v for k, v in self.params.items() if k.startswith(OVERRIDE_PREFIX)}

    @property
    def system_overrides(self) -> dict[str, Any]:
        """System overrides: key path (without ``system.``) -> value."""
        n = len(SYSTEM_PREFIX)
        return {k[n:]: v for k, v in self.params.items() if k.startswith(SYSTEM_PREFIX)}


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: its points in order and the results columns they fill."""

    name: str
    description: str
    file: str | None
    seed: int
    points: tuple[Point, ...]
    columns: tuple[str, ...]
    fingerprint: str = field(repr=False)

    def __len__(self) -> int:
        return len(self.points)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    return v


# ----------------------------------------------------------------------------- validation


@dataclass
class _Collected:
    """Values of one parameter as written, with where they were written."""

    where: str                      # e.g. 'axes[0].grid.avg_bits' or 'fixed.avg_bits'
    raw: list[Any]
    checked: list[Any]
    swept: bool


def _check_values(name: str, where: str, values: list[Any], swept: bool, base: Path,
                  file: str | None, problems: list[Problem]) -> _Collected | None:
    rule = _rule(name)
    if rule is None:
        choices = list(PARAMS) + [OVERRIDE_PREFIX + "cores.count"]
        hint = did_you_mean(name, choices)
        problems.append(Problem("unknown sweep parameter" + (hint or
                                " (hardware overrides start with 'hw.', e.g. "
                                "'hw.cores.mac_array.rows')"), file=file, key=where))
        return None
    if rule.group in ("override", "system_override"):
        try:
            parse_key_path(name[len(OVERRIDE_PREFIX if rule.group == "override"
                                    else SYSTEM_PREFIX):])
        except OverrideError as exc:
            problems.append(Problem(str(exc), file=file, key=where))
            return None
    checked, ok = [], True
    for i, v in enumerate(values):
        key = f"{where}[{i}]" if swept else where
        try:
            checked.append(rule.check(v, base))
        except ValueError as exc:
            problems.append(Problem(str(exc), file=file, key=key, value=v))
            ok = False
    if swept:
        seen: dict[str, int] = {}
        for i, c in enumerate(checked):
            k = json.dumps(_jsonable(c), default=str)
            if k in seen:
                problems.append(Problem(f"repeats item {seen[k]}; every value of a swept "
                                        "parameter must differ", file=file,
                                        key=f"{where}[{i}]", value=values[i]))
                ok = False
            seen.setdefault(k, i)
    return _Collected(where, list(values), checked, swept) if ok else None


def _blocks(spec: _SweepFile, base: Path, file: str | None,
            problems: list[Problem]) -> tuple[dict[str, _Collected], list[list[str]],
                                              list[str]]:
    """Check every value; return the collected parameters, the blocks' parameter names and
    their modes."""
    params: dict[str, _Collected] = {}
    blocks: list[list[str]] = []
    modes: list[str] = []

    def add(name: str, col: _Collected | None, where: str) -> bool:
        if name in params:
            problems.append(Problem(f"parameter '{name}' is already set at "
                                    f"{params[name].where}", file=file, key=where))
            return False
        if col is not None:
            params[name] = col
            return True
        return False

    for name, value in spec.fixed.items():
        add(name, _check_values(name, f"fixed.{name}", [value], False, base, file, problems),
            f"fixed.{name}")
    for b, block in enumerate(spec.axes):
        given = [m for m in ("grid", "zip") if getattr(block, m) is not None]
        if len(given) != 1:
            problems.append(Problem("each block of axes needs exactly one of 'grid' or 'zip'",
                                    file=file, key=f"axes[{b}]"))
            continue
        mode = given[0]
        lists: dict[str, list[Any]] = getattr(block, mode)
        if not lists:
            problems.append(Problem(f"'{mode}' names no parameter", file=file,
                                    key=f"axes[{b}].{mode}"))
            continue
        names = []
        for name, values in lists.items():
            where = f"axes[{b}].{mode}.{name}"
            if not values:
                problems.append(Problem("needs at least one value", file=file, key=where))
                continue
            if add(name, _check_values(name, where, values, True, base, file, problems), where):
                names.append(name)
        if mode == "zip":
            lengths = {n: len(lists[n]) for n in lists}
            if len(set(lengths.values())) > 1:
                problems.append(Problem(
                    "zip needs lists of equal length (" + ", ".join(
                        f"{n}: {k}" for n, k in lengths.items()) + ")", file=file,
                    key=f"axes[{b}].zip"))
                continue
        blocks.append(names)
        modes.append(mode)
    if "gemm" in params and "workload" in params:
        problems.append(Problem("a sweep simulates either a workload or one GEMM: give "
                                "'workload' or 'gemm', not both", file=file,
                                key=params["gemm"].where))
    named = set(spec.fixed) | {n for b in spec.axes for m in (b.grid, b.zip) if m for n in m}
    if "system" in named and "hw" in named:
        problems.append(Problem("a sweep runs on one chip ('hw') or on a system ('system'), "
                                "not both", file=file, key=params["system"].where
                                if "system" in params else "system"))
    for n in named:
        rule = _rule(n)
        if rule is not None and rule.group == "system_override" and "system" not in named:
            problems.append(Problem("a system override needs 'system'", file=file, key=n))
        if n in ("plan", "devices") and "system" not in named:
            problems.append(Problem(f"'{n}' needs 'system'", file=file, key=n))
        if (rule is not None and rule.group == "override" and "system" in named
                and "hw" not in named):
            problems.append(Problem("hardware overrides ('hw.') apply to 'hw'; with "
                                    "'system' override the system's keys ('system.')",
                                    file=file, key=n))
    for name, rule in PARAMS.items():
        if name == "workload" and "gemm" in named:
            continue
        if name == "hw" and "system" in named:
            continue
        if rule.default is _REQUIRED and name not in params and name not in named:
            alt = " (or 'gemm' for one GEMM)" if name == "workload" else ""
            problems.append(Problem(f"parameter '{name}' is required{alt}: give it in 'fixed' "
                                    "or in a block of 'axes'", file=file, key=name))
    return params, blocks, modes


def _combinations(params: dict[str, _Collected], blocks: list[list[str]],
                  modes: list[str]) -> list[dict[str, int]]:
    """Each point as {parameter: index of its value}, first block outermost."""
    per_block: list[list[dict[str, int]]] = []
    for names, mode in zip(blocks, modes):
        if not names:
            continue
        sizes = [len(params[n].raw) for n in names]
        if mode == "grid":
            rows = [dict(zip(names, idx)) for idx in itertools.product(*map(range, sizes))]
        else:
            rows = [{n: i for n in names} for i in range(sizes[0])]
        per_block.append(rows)
    fixed = {n: 0 for n, c in params.items() if not c.swept}
    out = []
    for combo in itertools.product(*per_block):
        d = dict(fixed)
        for part in combo:
            d.update(part)
        out.append(d)
    return out


def _cross_check(points: list[Point], params: dict[str, _Collected], file: str | None,
                 problems: list[Problem]) -> None:
    """Load every workload and accelerator, apply every override combination, check every
    allocation: all before any point runs."""
    from .allocation import check_allocation

    def where(name: str, value: Any) -> str:
        c = params.get(name)
        if c is None:
            return name
        if not c.swept:
            return c.where
        for i, v in enumerate(c.checked):
            if v == value:
                return f"{c.where}[{i}]"
        return c.where

    seen: set = set()
    models = {}
    for p in points:
        if p.params["gemm"] is not None:
            _check_gemm_point(p, file, where, problems, seen)
        wl = p.params["workload"]
        if wl is not None and ("wl", wl) not in seen:
            seen.add(("wl", wl))
            try:
                models[wl] = load_model_cached(wl)
            except ConfigError as exc:
                for q in exc.problems:
                    problems.append(_nest(q, file, where("workload", wl)))
        if p.params.get("system") is not None:
            sov = tuple(sorted(p.system_overrides.items(), key=lambda kv: kv[0]))
            skey = ("system", p.params["system"], sov, p.params.get("plan"),
                    p.params.get("devices"), wl)
            if skey not in seen:
                seen.add(skey)
                _check_system(p, sov, models.get(wl), file, where, problems)
            continue
        ov = tuple(sorted(p.overrides.items(), key=lambda kv: kv[0]))
        hkey = ("hw", p.params["hw"], ov)
        if hkey not in seen:
            seen.add(hkey)
            _check_hw(p, ov, file, where, problems)
        model = models.get(wl)
        akey = ("alloc", wl, p.params["method"], p.params["avg_bits"], p.params["levels"],
                p.params["signals"])
        if model is not None and akey not in seen:
            seen.add(akey)
            try:
                check_allocation(model, p.params)
            except ConfigError as exc:
                for q in exc.problems:
                    problems.append(_nest(q, file, where("signals", p.params["signals"])))


def _check_gemm_point(p: Point, file: str | None, where: Callable, problems: list[Problem],
                      seen: set) -> None:
    """A GEMM point has one weight matrix at ``avg_bits``: a whole number of bits, and no
    allocation method but ``uniform``."""
    bits, method = p.params["avg_bits"], p.params["method"]
    if float(bits) != int(bits) and ("gemm-bits", bits) not in seen:
        seen.add(("gemm-bits", bits))
        problems.append(Problem("a GEMM point needs a whole number of weight bits",
                                file=file, key=where("avg_bits", bits), value=bits))
    if method != "uniform" and ("gemm-method", method) not in seen:
        seen.add(("gemm-method", method))
        problems.append(Problem("a GEMM point has one weight matrix: the method must be "
                                "'uniform'", file=file, key=where("method", method),
                                value=method))


def _nest(q: Problem, file: str | None, key: str) -> Problem:
    """A problem of a file the spec names, reported at the spec key that names it."""
    inner = ": ".join(x for x in (q.file, q.key) if x)
    reason = f"{inner}: {q.reason}" if inner else q.reason
    return Problem(reason, file=file, key=key, value=q.value)


def _check_system(p: Point, ov: tuple, model, file: str | None, where: Callable,
                  problems: list[Problem]) -> None:
    """The system (with its overrides) loads, and the plan fits the model and the system."""
    from ..system.plan import check_plan, parse_plan
    from .sources import build_system
    src = p.params["system"]
    try:
        system = build_system(src, ov)
    except OverrideError as exc:
        key = SYSTEM_PREFIX + exc.args[1]
        problems.append(Problem(f"{p.columns['system']}: {exc.args[0]}", file=file,
                                key=where(key, p.params[key])))
        return
    except ConfigError as exc:
        for q in exc.problems:
            hit = [k for k, _ in ov if q.key == k or q.key.startswith(k + ".")]
            key = (where(SYSTEM_PREFIX + hit[0], p.params[SYSTEM_PREFIX + hit[0]]) if hit
                   else where("system", src))
            problems.append(_nest(q, file, key))
        return
    try:
        if p.params.get("devices") is not None:
            system = system.first(int(p.params["devices"]))
        if p.params.get("plan") is not None and model is not None:
            check_plan(parse_plan(p.params["plan"]), model, system.num_devices, system.name)
    except ConfigError as exc:
        name = "devices" if exc.problems[0].key == "devices" else "plan"
        for q in exc.problems:
            problems.append(Problem(q.reason, file=file, key=where(name, p.params[name]),
                                    value=p.params[name]))


def _check_hw(p: Point, ov: tuple, file: str | None, where: Callable,
              problems: list[Problem]) -> None:
    hw = p.params["hw"]
    try:
        raw, _ = raw_hw(hw)
    except ConfigError as exc:
        for q in exc.problems:
            problems.append(_nest(q, file, where("hw", hw)))
        return
    bad = False
    for key, value in ov:
        try:
            apply_overrides(raw, {key: value})
        except OverrideError as exc:
            name = OVERRIDE_PREFIX + key
            problems.append(Problem(f"{p.columns['hw']}: {exc}", file=file,
                                    key=where(name, p.params[name])))
            bad = True
    if bad:
        return
    try:
        build_hw(hw, ov)
    except ConfigError as exc:
        if not ov:
            for q in exc.problems:
                problems.append(_nest(q, file, where("hw", hw)))
            return
        # the overridden file is invalid: name the override whose key the problem is about,
        # else every override of this point
        keys = [k for k, _ in ov]
        forms = {k: {k, _indexed_path(raw, k)} for k in keys}
        for q in exc.problems:
            hit = [k for k in keys if any(q.key == f or q.key.startswith(f + ".")
                                          or q.key.startswith(f + "[") for f in forms[k])
                   ] or keys
            for k in hit:
                name = OVERRIDE_PREFIX + k
                problems.append(Problem(f"{p.columns['hw']}: {q.key or '(top level)'}: "
                                        f"{q.reason}", file=file,
                                        key=where(name, p.params[name]),
                                        value=p.params[name]))


def _indexed_path(raw: Mapping[str, Any], key: str) -> str:
    """``key`` with each ``[name=x]`` selector replaced by the list index it selects in
    ``raw`` (``memory[name=lpddr5].read_bandwidth`` -> ``memory[1].read_bandwidth``), the
    form validation errors use; ``key`` itself when it cannot be resolved."""
    try:
        parts = parse_key_path(key)
    except OverrideError:
        return key
    node: Any = raw
    out = ""
    for part in parts:
        if isinstance(part, tuple) and isinstance(node, list):
            attr, val = part
            idx = next((i for i, item in enumerate(node) if isinstance(item, Mapping)
                        and str(item.get(attr)) == str(val)), None)
            if idx is None:
                return key
            out += f"[{idx}]"
            node = node[idx]
        elif isinstance(part, int) and isinstance(node, list) and -len(node) <= part < len(node):
            out += f"[{part}]"
            node = node[part]
        elif isinstance(part, str) and isinstance(node, Mapping):
            out += ("." if out else "") + part
            node = node.get(part)
        else:
            return key
    return out


def _column_values(points: list[Point], names: list[str]) -> list[Point]:
    """A column whose values mix numbers and strings becomes strings (tidy, typed columns)."""
    mixed = []
    for n in names:
        kinds = {("num" if isinstance(v, (int, float)) and not isinstance(v, bool) else
                  type(v).__name__) for v in (p.columns[n] for p in points)
                 if v is not None}
        if len(kinds) > 1:
            mixed.append(n)
    if not mixed:
        return points
    return [Point(p.id, p.params, {k: (str(v) if k in mixed and v is not None else v)
                                   for k, v in p.columns.items()}, p.seed) for p in points]


def sweep_from_dict(data: Mapping[str, Any], *, file: str | None = None,
                    base_dir: str | os.PathLike | None = None) -> SweepSpec:
    """Validate a mapping (as read from a sweep YAML) and expand it into points.

    Relative file names in the spec are resolved against ``base_dir`` (default: the
    directory of ``file``, else the working directory). Raises :class:`ConfigError` with
    every problem found.
    """
    spec = validate(_SweepFile, data, file=file)
    base = Path(base_dir) if base_dir is not None else (
        Path(file).resolve().parent if file else Path.cwd())
    problems: list[Problem] = []
    params, blocks, modes = _blocks(spec, base, file, problems)
    if problems:
        raise ConfigError(_unique(problems))
    combos = _combinations(params, blocks, modes)
    if len(combos) > MAX_POINTS:
        raise ConfigError.single(f"the sweep has {len(combos):,} points, more than the limit "
                                 f"of {MAX_POINTS:,}", file=file, key="axes")
    names = _column_order(params)
    points = []
    for pid, combo in enumerate(combos):
        full = {n: r.default for n, r in PARAMS.items() if r.default is not _REQUIRED}
        full.setdefault("workload", None)        # a GEMM sweep has none
        full.setdefault("hw", None)              # a system sweep has none
        full.update({n: params[n].checked[i] for n, i in combo.items()})
        cols = {}
        for n in names:
            rule = _rule(n)
            c = params.get(n)
            raw = c.raw[combo[n]] if c is not None else rule.default
            cols[n] = None if raw is _REQUIRED else rule.column(raw, full[n])
        seed = full["seed"] if full.get("seed") is not None else spec.seed
        full["seed"] = seed
        cols["seed"] = seed
        points.append(Point(pid, full, cols, seed))
    _cross_check(points, params, file, problems)
    if problems:
        raise ConfigError(_unique(problems))
    points = _column_values(points, names)
    columns = ("point_id", *names, "seed")
    return SweepSpec(spec.name, spec.description, file, spec.seed, tuple(points), columns,
                     _fingerprint(points))


def _column_order(params: dict[str, _Collected]) -> list[str]:
    """Always-present columns, then every parameter the spec names, in PARAMS order, then
    overrides in the order written."""
    given = set(params)
    names = [n for n, r in PARAMS.items() if n != "seed" and (r.always_column or n in given)]
    names += [n for n in params if n not in PARAMS]
    return names


def _unique(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        k = (p.file, p.key, p.reason)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out


def _fingerprint(points: list[Point]) -> str:
    h = hashlib.sha256(str(SPEC_VERSION).encode())
    for p in points:
        h.update(json.dumps([p.id, p.seed, sorted((k, _jsonable(v)) for k, v in p.params.items())],
                            default=str, separators=(",", ":")).encode())
    return h.hexdigest()[:16]


def load_sweep(source: str | os.PathLike | Mapping[str, Any]) -> SweepSpec:
    """Load and validate a sweep spec from a YAML/JSON file or a mapping.

    Examples
    --------
    >>> spec = load_sweep({"fixed": {"workload": "mixtral-8x7b", "hw": "gemmini"},
    ...                    "axes": [{"grid": {"avg_bits": [4, 8]}}]})
    >>> spec.columns
    ('point_id', 'workload', 'hw', 'method', 'avg_bits', 'phase', 'batch', 'context', 'seed')
    """
    if isinstance(source, Mapping):
        return sweep_from_dict(source)
    return sweep_from_dict(read_mapping(source, what="sweep spec"), file=str(source))
