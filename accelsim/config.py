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

from .errors import ConfigError, Problem, did_you_mean, format_key_path
from .units import EXAMPLES, QUANTITY_PATTERN, parse_quantity

__all__ = ["Spec", "Quantity", "read_mapping", "validate", "load_spec", "Bounded"]

M = TypeVar("M", bound=BaseModel)


class Spec(BaseModel):
    """Base of every validated specification: frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              validate_default=False)


# ----------------------------------------------------------------------------- quantities

#: Upper limits beyond which a value is certainly a typo (base units).
ABSURD = {
    "size": 2.0**60,             # 1 EiB
    "bandwidth": 1e16,           # 10 PB/s for one level
    "frequency": 1e11,           # 100 GHz
    "time": 1.0,                 # 1 s for one access or DMA setup
    "energy": 1e-6,              # 1 uJ for one MAC
    "energy_per_byte": 1e-6,     # 1 uJ per byte
    "power": 1e5,                # 100 kW for one chip
}


def _parse(kind: str, value: Any, info: ValidationInfo) -> float:
    clock = (info.context or {}).get("clock_hz") if info is not None else None
    return parse_quantity(value, kind, clock_hz=clock)


def _check_range(kind: str, allow_zero: bool, value: float) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError("must be > 0" if not allow_zero else "must be >= 0")
    if value > ABSURD[kind]:
        raise ValueError(f"is absurdly large for {kind.replace('_', ' ')}")
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen[key] = loader.construct_object(value_node, deep=deep)
    return seen


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _construct_mapping)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if "could not determine a constructor for the tag" in str(problem):
        tag = str(problem).split("tag", 1)[1].strip().strip("'")
        return f"unsupported YAML tag {tag}{where} (tags are never executed)"
    return f"invalid YAML{where}: {problem}"


def read_mapping(path: str | os.PathLike, *, what: str = "file") -> dict[str, Any]:
    """Read a YAML or JSON file whose top level must be a mapping.

    YAML is loaded with a safe loader (no ``!!python`` tags are ever constructed), and
    duplicate keys are errors. Raises :class:`ConfigError` naming the file for a missing
    file, binary content, a syntax error, an empty file or a non-mapping top level.
    """
    p = Path(path)
    name = str(path)
    if not p.exists():
        raise ConfigError.single(f"no such {what}", file=name)
    if p.is_dir():
        raise ConfigError.single(f"is a directory, expected a {what}", file=name)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError.single(f"cannot read: {exc.strerror}", file=name) from None
    if b"\x00" in raw:
        raise ConfigError.single("is binary, not a YAML or JSON text file", file=name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError.single("is not UTF-8 text", file=name) from None
    if not text.strip():
        raise ConfigError.single("file is empty", file=name)
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError.single(
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                file=name) from None
    else:
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            raise ConfigError.single(_yaml_problem(exc), file=name) from None
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
