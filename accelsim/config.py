"""Shared machinery for every input file: safe YAML/JSON reading and validation into frozen
pydantic models, with every problem reported as ``file: key.path: reason (got value)``.

The pattern (STYLE.md #1-#3): read a file to a plain ``dict`` -> validate *everything*
(pydantic collects all errors) -> frozen model. Quantities with units are annotated types
(:func:`quantity`) so the same rules drive validation, error messages and the JSON schema.

Examples
--------
>>> from pydantic import Field
>>> class Level(Spec):
...     name: str
...     capacity_bytes: Quantity("size") = Field(alias="capacity")
>>> Level.model_validate({"name": "L1", "capacity": "64 KiB"}).capacity_bytes
65536.0
>>> try:
...     validate(Level, {"name": "L1", "capacty": "64 KiB"}, file="x.yaml")
... except ConfigError as e:
...     print(e)
x.yaml: capacity: field required
x.yaml: capacty: unknown key (did you mean 'capacity'?)
"""

from __future__ import annotations

import json
import math
import os
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Mapping, TypeVar, get_args, get_origin

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError,
                      ValidationInfo, WithJsonSchema)

from ._io import read_regular
from .errors import ConfigError, Problem, did_you_mean, format_key_path
from .units import EXAMPLES, QUANTITY_PATTERN, parse_quantity

__all__ = ["Spec", "Quantity", "read_mapping", "parse_document", "validate", "load_spec", "Bounded",
           "MAX_DOCUMENT_BYTES", "MAX_DEPTH", "MAX_ALIAS_NODES", "QUANTITY_BOUNDS"]

M = TypeVar("M", bound=BaseModel)


class Spec(BaseModel):
    """Base of every validated specification: frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              validate_default=False)


# ----------------------------------------------------------------------------- quantities

#: Physical bounds of every quantity (base units): a non-zero value outside them is a typo or
#: a unit slip, and near the lower end results stop being finite numbers (``5e-324 GB/s``
#: makes every transfer take infinite time). Documented in docs/bad-input.md.
QUANTITY_BOUNDS = {
    #  kind:             (smallest non-zero, largest)
    "size": (1.0, 2.0**60),               # 1 byte .. 1 EiB for one level
    "bandwidth": (1e3, 1e16),             # 1 kB/s .. 10 PB/s for one level or link
    "frequency": (1e3, 1e11),             # 1 kHz .. 100 GHz
    "time": (1e-15, 1.0),                 # 1 fs .. 1 s for one access or DMA setup
    # Landauer's bound, kT ln 2 = 2.9e-21 J per bit erased at 300 K, is the floor of both
    "energy": (1e-21, 1e-6),              # per MAC or vector op: 1 zJ .. 1 uJ
    "energy_per_byte": (1e-21, 1e-6),     # 1 zJ/B .. 1 uJ/B
    "power": (1e-9, 1e5),                 # 1 nW .. 100 kW for one chip
}
#: The bounds as written in messages and docs.
BOUND_TEXT = {"size": ("1 B", "1 EiB"), "bandwidth": ("1 kB/s", "10 PB/s"),
              "frequency": ("1 kHz", "100 GHz"), "time": ("1 fs", "1 s"),
              "energy": ("1e-6 fJ", "1 uJ"), "energy_per_byte": ("1e-6 fJ/B", "1 uJ/B"),
              "power": ("1 nW", "100 kW")}
#: Upper limits beyond which a value is certainly a typo (base units).
ABSURD = {k: hi for k, (lo, hi) in QUANTITY_BOUNDS.items()}


def _parse(kind: str, value: Any, info: ValidationInfo) -> float:
    clock = (info.context or {}).get("clock_hz") if info is not None else None
    return parse_quantity(value, kind, clock_hz=clock)


def _check_range(kind: str, allow_zero: bool, value: float) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError("must be > 0" if not allow_zero else "must be >= 0")
    lo, hi = QUANTITY_BOUNDS[kind]
    if value > hi:
        raise ValueError(f"is absurdly large for {kind.replace('_', ' ')} (at most "
                         f"{BOUND_TEXT[kind][1]})")
    if 0 < value < lo:
        raise ValueError(f"is absurdly small for {kind.replace('_', ' ')} (at least "
                         f"{BOUND_TEXT[kind][0]}" + (", or 0)" if allow_zero else ")"))
    return value


def Quantity(kind: str, *, allow_zero: bool = False) -> Any:
    """An annotated float field written in YAML as a string with a unit of ``kind``."""
    schema = {"type": "string", "pattern": QUANTITY_PATTERN,
              "description": f"{kind.replace('_', ' ')} with a unit, e.g. {EXAMPLES[kind]}"}
    return Annotated[float, BeforeValidator(partial(_parse, kind)),
                     AfterValidator(partial(_check_range, kind, allow_zero)),
                     WithJsonSchema(schema, mode="validation")]


def _no_bool(tp: type, value: Any) -> Any:
    # pydantic's lax mode reads ``true`` as 1; in a config file that is always a mistake
    if isinstance(value, bool):
        raise ValueError("must be an integer" if tp is int else "must be a number")
    return value


def _bounded(lo: float | None, hi: float | None, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be finite")
    if lo is not None and value < lo:
        raise ValueError(f"must be >= {lo:g}")
    if hi is not None and value > hi:
        raise ValueError(f"must be <= {hi:g}")
    return value


def Bounded(tp: type, lo: float | None = None, hi: float | None = None) -> Any:
    """``tp`` restricted to ``[lo, hi]`` (finite), with the bounds in the JSON schema."""
    extra: dict[str, Any] = {}
    if lo is not None:
        extra["minimum"] = lo
    if hi is not None:
        extra["maximum"] = hi
    from pydantic import Field
    return Annotated[tp, BeforeValidator(partial(_no_bool, tp)),
                     AfterValidator(partial(_bounded, lo, hi)), Field(json_schema_extra=extra)]


# ----------------------------------------------------------------------------- reading files


#: Limits of one YAML or JSON document (docs/bad-input.md): its size in bytes, how deep its
#: lists and mappings nest, and how many nodes its aliases (``*name``) may expand to in all.
MAX_DOCUMENT_BYTES = 16 * 2**20
MAX_DEPTH = 64
MAX_ALIAS_NODES = 100_000
#: Python refuses to convert longer digit strings to int (and so would every reader).
MAX_INT_DIGITS = 4300


def _yaml_error(reason: str, mark: Any) -> yaml.YAMLError:
    return yaml.constructor.ConstructorError(None, None, reason, mark)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate and non-scalar keys, nesting deeper than
    :data:`MAX_DEPTH` and aliases that expand to more than :data:`MAX_ALIAS_NODES` nodes (an
    "alias bomb" of a few hundred bytes can otherwise stand for 10^9 nodes)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._alias_nodes = 0
        self._open: list[str | None] = []    # anchors of the nodes being composed
        self._expanded: dict[int, tuple[int, int] | None] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.events.AliasEvent):
            mark = event.start_mark
            if event.anchor in self._open:
                raise _yaml_error("an alias refers to the list or mapping that contains it",
                                  mark)
            node = super().compose_node(parent, index)
            size, depth = self._expansion(node, mark)
            self._alias_nodes += size
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise _yaml_error(f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes",
                                  mark)
            if self._depth + depth > MAX_DEPTH:
                raise _yaml_error(f"nested deeper than {MAX_DEPTH} levels (through an alias)",
                                  mark)
            return node
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        self._open.append(anchor)
        try:
            if self._depth > MAX_DEPTH:
                raise _yaml_error(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.pop()

    def _expansion(self, node: yaml.Node, mark: Any) -> tuple[int, int]:
        """(nodes, depth) of ``node`` with every alias inside expanded (memoised)."""
        key = id(node)
        if key in self._expanded:
            done = self._expanded[key]
            return (1, 1) if done is None else done
        if isinstance(node, yaml.ScalarNode):
            return 1, 0
        self._expanded[key] = None
        children = (node.value if isinstance(node, yaml.SequenceNode)
                    else [n for pair in node.value for n in pair])
        size, depth = 1, 0
        for child in children:
            s, d = self._expansion(child, mark)
            size, depth = size + s, max(depth, d)
            if size > MAX_ALIAS_NODES:
                break
        self._expanded[key] = (size, depth + 1)
        return size, depth + 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(str(node.value)) > MAX_INT_DIGITS:
            raise _yaml_error(f"an integer of more than {MAX_INT_DIGITS:,} digits",
                              node.start_mark)
        return super().construct_yaml_int(node)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or mapping",
                key_node.start_mark)
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen[key] = loader.construct_object(value_node, deep=deep)
    return seen


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _construct_mapping)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if "could not determine a constructor for the tag" in str(problem):
        tag = str(problem).split("tag", 1)[1].strip().strip("'")
        return f"unsupported YAML tag {tag}{where} (tags are never executed)"
    return f"invalid YAML{where}: {problem}"


class _JsonProblem(ValueError):
    """A JSON document breaks one of the limits above (or has a duplicate key)."""


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _JsonProblem(f"duplicate key '{k}'")
        out[k] = v
    return out


def _json_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise _JsonProblem(f"an integer of more than {MAX_INT_DIGITS:,} digits")
    return int(text)


def _json_depth_ok(data: Any) -> bool:
    """Whether no list or mapping of ``data`` nests deeper than :data:`MAX_DEPTH`."""
    stack = [(data, 1)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, (dict, list)):
            if d > MAX_DEPTH:
                return False
            stack.extend((v, d + 1) for v in (x.values() if isinstance(x, dict) else x))
    return True


def parse_document(text: str, *, json_syntax: bool, file: str) -> Any:
    """Parse YAML or JSON text under one strictness (duplicate keys refused in both) and the
    limits :data:`MAX_DEPTH`, :data:`MAX_ALIAS_NODES` and :data:`MAX_INT_DIGITS`; any
    problem is a :class:`ConfigError` naming ``file``."""
    if json_syntax:
        try:
            data = json.loads(text, object_pairs_hook=_json_pairs, parse_int=_json_int)
        except json.JSONDecodeError as exc:
            raise ConfigError.single(
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                file=file) from None
        except _JsonProblem as exc:
            raise ConfigError.single(f"invalid JSON: {exc}", file=file) from None
        except RecursionError:
            raise ConfigError.single(f"invalid JSON: nested deeper than {MAX_DEPTH} levels",
                                     file=file) from None
        if not _json_depth_ok(data):
            raise ConfigError.single(f"invalid JSON: nested deeper than {MAX_DEPTH} levels",
                                     file=file)
        return data
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError.single(_yaml_problem(exc), file=file) from None
    except (ValueError, RecursionError, OverflowError) as exc:  # the scanner's own limits
        raise ConfigError.single(f"invalid YAML: {type(exc).__name__}", file=file) from None


def read_mapping(path: str | os.PathLike, *, what: str = "file") -> dict[str, Any]:
    """Read a YAML or JSON file whose top level must be a mapping.

    YAML is loaded with a safe loader (no ``!!python`` tags are ever constructed); in YAML and
    JSON alike duplicate keys are errors, and the document must respect
    :data:`MAX_DOCUMENT_BYTES`, :data:`MAX_DEPTH` and :data:`MAX_ALIAS_NODES`. Only a regular
    file is read (:func:`accelsim._io.read_regular`). Raises :class:`ConfigError` naming the
    file for a missing file, binary content, a syntax error, an empty file or a non-mapping
    top level.
    """
    name = str(path)
    raw = read_regular(path, what=what, limit=MAX_DOCUMENT_BYTES)
    if b"\x00" in raw:
        raise ConfigError.single("is binary, not a YAML or JSON text file", file=name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError.single("is not UTF-8 text", file=name) from None
    if not text.strip():
        raise ConfigError.single("file is empty", file=name)
    data = parse_document(text, json_syntax=Path(name).suffix.lower() == ".json", file=name)
    if data is None:
        raise ConfigError.single("file is empty", file=name)
    if not isinstance(data, dict):
        raise ConfigError.single(
            f"top level must be a mapping of keys to values, not a {type(data).__name__}",
            file=name)
    return data


# ----------------------------------------------------------------------------- validation

_TYPE_WORDS = {
    "int_type": "must be an integer", "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number", "float_type": "must be a number",
    "float_parsing": "must be a number", "string_type": "must be a string",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "list_type": "must be a list", "dict_type": "must be a mapping",
    "model_type": "must be a mapping", "model_attributes_type": "must be a mapping",
    "missing": "field required", "finite_number": "must be finite",
    "tuple_type": "must be a list",
}


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None,
                                                                     list[Any]]:
    """Follow ``loc`` through the model's fields; return the model class owning the last key
    and the loc with pydantic's union tags removed."""
    model: Any = root
    clean: list[Any] = []
    i = 0
    while i < len(loc):
        part = loc[i]
        clean.append(part)
        if i == len(loc) - 1:
            break
        nxt = None
        if isinstance(part, int):
            i += 1  # a list index: ``model`` already is the element type
            continue
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = None
            for fname, f in model.model_fields.items():
                if part in (fname, f.alias):
                    field = f
                    break
            nxt = field.annotation if field is not None else None
        else:
            nxt = model
        # unwrap containers and unions
        model, skip = _descend(nxt, loc[i + 1] if i + 1 < len(loc) else None)
        if skip:
            i += 1  # skip the union tag
            if i + 1 < len(loc) and isinstance(model, list):
                model = model[0]
        i += 1
    owner = model if isinstance(model, type) and issubclass(model, BaseModel) else None
    return owner, clean


def _descend(tp: Any, next_part: Any) -> tuple[Any, bool]:
    """Unwrap Optional/Annotated/list/dict around a model class; detect a union tag."""
    for _ in range(6):
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (list, tuple):
            return get_args(tp)[0], False
        if origin is dict:
            return get_args(tp)[1], False
        args = get_args(tp)
        if args and origin is not None:  # Union / Optional
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(models) == 1:
                tp = models[0]
                continue
            for m in models:
                tag_field = m.model_fields.get("kind")
                if tag_field is not None and next_part in get_args(tag_field.annotation):
                    return m, True
            return (models[0] if models else None), False
        break
    return tp, False


def _problems_from(exc: ValidationError, model: type[BaseModel], file: str | None,
                   prefix: tuple[Any, ...] = ()) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        owner, clean = _model_at(model, loc) if loc else (model, [])
        key = format_key_path([*prefix, *clean])
        etype = err.get("type", "")
        value = err.get("input")
        if etype == "extra_forbidden":
            choices: list[str] = []
            if owner is not None:
                choices = [f.alias or n for n, f in owner.model_fields.items()]
            problems.append(Problem("unknown key" + did_you_mean(str(clean[-1]), choices),
                                    file=file, key=key))
            continue
        if etype == "missing":
            problems.append(Problem("field required", file=file, key=key))
            continue
        msg = err.get("msg", "invalid")
        ctx = err.get("ctx") or {}
        if etype in ("value_error", "assertion_error"):
            inner = ctx.get("error")
            msg = (inner.problems[0].reason if isinstance(inner, ConfigError)
                   else str(inner) if inner is not None else msg.removeprefix("Value error, "))
        elif etype == "literal_error":
            expected = ctx.get("expected", "")
            msg = f"must be one of {expected}" + did_you_mean(str(value), [
                s.strip().strip("'") for s in str(expected).replace(" or ", ",").split(",")])
        elif etype == "union_tag_invalid":
            tags = str(ctx.get("expected_tags", ""))
            value = ctx.get("tag", value)
            key = format_key_path([*prefix, *clean, str(ctx.get("discriminator", "kind"))
                                   .strip("'")])
            msg = f"must be one of {tags}" + did_you_mean(str(value), [
                t.strip().strip("'") for t in tags.split(",")])
        elif etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            msg = msg.replace("Input should be", "must be")
        elif etype in ("too_short", "too_long"):
            n = ctx.get("min_length" if etype == "too_short" else "max_length")
            msg = (f"must have at least {n} item(s)" if etype == "too_short"
                   else f"must have at most {n} item(s)")
            if isinstance(value, str):
                msg = msg.replace("item(s)", "character(s)")
        elif etype in ("string_too_short", "string_too_long"):
            msg = msg.replace("String should have", "must have")
        elif etype in _TYPE_WORDS:
            msg = _TYPE_WORDS[etype]
        else:
            msg = msg.replace("Input should be", "must be").replace("Value error, ", "")
        problems.append(Problem(msg, file=file, key=key, value=value))
    return problems


def validate(model: type[M], data: Mapping[str, Any], *, file: str | None = None,
             context: dict[str, Any] | None = None, prefix: tuple[Any, ...] = ()) -> M:
    """Validate ``data`` into ``model``; every problem is collected into one ConfigError."""
    try:
        return model.model_validate(data, context=context or {})
    except ValidationError as exc:
        raise ConfigError(_problems_from(exc, model, file, prefix)) from None


def load_spec(model: type[M], path: str | os.PathLike, *, what: str = "file",
              context: dict[str, Any] | None = None) -> M:
    """:func:`read_mapping` then :func:`validate`."""
    return validate(model, read_mapping(path, what=what), file=str(path), context=context)
