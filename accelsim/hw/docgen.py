"""The accelerator YAML reference (``docs/hwconfig-reference.md``), generated from the schema.

:func:`schema_markdown` walks :func:`accelsim.hw.hw_schema` (the JSON Schema the loader
validates against, keys as written in YAML) section by section and writes one table per
mapping: every key with its type or unit, default, bounds and meaning. Because it is generated,
the reference cannot miss a key or state a wrong bound; ``tests/test_docs.py`` checks that the
committed file is the current output. Regenerate it with the command in :data:`REGENERATE`
(from the repository root)::

    python -c "from accelsim.hw.docgen import schema_markdown; \\
               print(schema_markdown(), end='')" > docs/hwconfig-reference.md

Where the schema is silent the validated classes of :mod:`accelsim.hw.spec` fill in: defaults
made by a factory (``weight_bits: [8]``), whether a quantity may be zero (asked of the field's
own validator), and the meaning of keys without a ``description`` (:data:`MEANINGS`, in
:mod:`accelsim.hw.meanings`; a key missing there is an error, so a new key cannot go
undocumented).

Examples
--------
>>> text = schema_markdown()
>>> text.startswith("# Accelerator YAML reference")
True
>>> "| `read_bandwidth` |" in text
True
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from .load import hw_schema
from .meanings import MEANINGS

__all__ = ["MEANINGS", "REGENERATE", "SECTION_TEXT", "schema_markdown"]

REGENERATE = ("python -c \"from accelsim.hw.docgen import schema_markdown; "
              "print(schema_markdown(), end='')\" > docs/hwconfig-reference.md")


#: Lead text of sections whose class has no docstring in the schema.
SECTION_TEXT: dict[str, str] = {
    "Cores": "The cores of the chip; all are identical.",
    "Dma": "DMA engines that move tiles between memory levels.",
    "Source": "A citation for numbers in the file.",
}

_QUANTITY = re.compile(r"^(?P<kind>[a-z][a-z ]*?) with a unit, e\.g\. (?P<example>.+)$")
_BASE_UNIT = {"size": "B", "bandwidth": "B/s", "frequency": "Hz", "time": "s",
              "energy": "J", "energy_per_byte": "J/B", "power": "W"}


# ----------------------------------------------------------------------------- the walk


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _children(prop: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(suffix, $def name) of every mapping a property holds: ``""`` for a nested mapping,
    ``"[i]"`` for the items of a list."""
    if "$ref" in prop:
        yield "", _ref_name(prop["$ref"])
    for alt in prop.get("anyOf", []):
        yield from _children(alt)
    for alt in prop.get("oneOf", []):
        yield from _children(alt)
    if prop.get("type") == "array" and isinstance(prop.get("items"), Mapping):
        for suffix, name in _children(prop["items"]):
            yield "[i]" + suffix, name


def _sections(schema: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(key path, class name, object schema) of every mapping, depth first in key order."""
    defs = schema.get("$defs", {})
    out: list[tuple[str, str, Mapping[str, Any]]] = []

    def visit(path: str, name: str, obj: Mapping[str, Any]) -> None:
        out.append((path, name, obj))
        for key, prop in obj.get("properties", {}).items():
            for suffix, child in _children(prop):
                visit(f"{path}.{key}{suffix}" if path else f"{key}{suffix}", child,
                      defs[child])

    visit("", "Accelerator", schema)
    return out


# ----------------------------------------------------------------------------- the classes


def _model(name: str):
    from . import spec
    return getattr(spec, name)


def _field(model, key: str):
    for fname, info in model.model_fields.items():
        if (info.alias or fname) == key:
            return info
    raise KeyError(f"{model.__name__} has no field for YAML key {key!r}")


def _zero_allowed(model, key: str, kind: str) -> bool:
    """Does the field's own validator accept a zero quantity?"""
    from typing import Annotated

    from pydantic import TypeAdapter, ValidationError
    info = _field(model, key)
    tp = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    try:
        TypeAdapter(tp).validate_python(f"0 {_BASE_UNIT[kind]}")
    except ValidationError:
        return False
    return True


def _factory_default(model, key: str) -> Any:
    from pydantic_core import PydanticUndefined
    info = _field(model, key)
    if info.default_factory is None:
        return PydanticUndefined
    return info.get_default(call_default_factory=True)


# ----------------------------------------------------------------------------- formatting


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e7):
        return f"{int(v):,}"
    return f"{v:g}"


def _limit(kind: str, value: float) -> str:
    """A round, parseable text for a base-unit limit (``2**60`` -> ``1024 PiB``)."""
    if kind == "size":
        steps = [("PiB", 2.0**50), ("TiB", 2.0**40), ("GiB", 2.0**30), ("MiB", 2.0**20),
                 ("KiB", 2.0**10), ("B", 1.0)]
    else:
        unit = _BASE_UNIT[kind]
        steps = [(p + unit, f) for p, f in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6),
                                             ("k", 1e3), ("", 1.0), ("m", 1e-3), ("u", 1e-6),
                                             ("n", 1e-9), ("p", 1e-12))]
    for unit, f in steps:
        if value >= f:
            return f"{value / f:g} {unit}"
    return f"{value:g} {_BASE_UNIT[kind]}"


def _quantity(prop: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, example) of a string-with-unit property (or of its non-null alternative)."""
    for p in [prop, *prop.get("anyOf", [])]:
        m = _QUANTITY.match(str(p.get("description", "")))
        if m and p.get("type") == "string":
            return m["kind"].replace(" ", "_"), m["example"]
    return None


def _type_text(prop: Mapping[str, Any], anchors: Mapping[str, str]) -> str:
    q = _quantity(prop)
    if q is not None:
        kind, example = q
        text = f"{kind.replace('_', ' ')} (e.g. {_code_example(example)})"
        return text + (" or null" if _nullable(prop) else "")
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "$ref" in prop:
        return f"mapping ([{_ref_name(prop['$ref'])}](#{anchors[_ref_name(prop['$ref'])]}))"
    if "oneOf" in prop:
        kinds = [_ref_name(a["$ref"]) for a in prop["oneOf"] if "$ref" in a]
        links = ", ".join(f"[{k}](#{anchors[k]})" for k in kinds)
        disc = prop.get("discriminator", {}).get("propertyName", "kind")
        return f"mapping, one of {links} (by `{disc}`)"
    if "anyOf" in prop:
        alts = [a for a in prop["anyOf"] if a.get("type") != "null"]
        text = " or ".join(_type_text(a, anchors) for a in alts)
        return text + (" or null" if _nullable(prop) else "")
    t = prop.get("type")
    if t == "array":
        return f"list of {_type_text(prop.get('items', {}), anchors)}"
    if t == "object":
        vals = prop.get("additionalProperties")
        return f"mapping of {_type_text(vals, anchors)}" if isinstance(vals, Mapping) else "mapping"
    return {"integer": "integer", "number": "number", "string": "string",
            "boolean": "boolean"}.get(t, str(t))


def _code_example(example: str) -> str:
    return ", ".join(f"`{e.strip(chr(39))}`" for e in example.split(" or "))


def _nullable(prop: Mapping[str, Any]) -> bool:
    return any(a.get("type") == "null" for a in prop.get("anyOf", []))


def _range(p: Mapping[str, Any]) -> str:
    lo, hi = p.get("minimum"), p.get("maximum")
    if lo is not None and hi is not None:
        return f"{_num(lo)} to {_num(hi)}"
    if lo is not None:
        return f">= {_num(lo)}"
    if hi is not None:
        return f"<= {_num(hi)}"
    return ""


def _bounds_text(model, key: str, prop: Mapping[str, Any]) -> str:
    q = _quantity(prop)
    if q is not None:
        from ..config import ABSURD
        kind = q[0]
        low = ">= 0" if _zero_allowed(model, key, kind) else "> 0"
        return f"{low}, <= {_limit(kind, ABSURD[kind])}" if kind in ABSURD else low
    parts = []
    for p in [prop, *prop.get("anyOf", [])]:
        if _range(p):
            parts.append(_range(p))
        if "minLength" in p or "maxLength" in p:
            lo, hi = p.get("minLength"), p.get("maxLength")
            parts.append(f"{lo or 0} to {hi} characters" if hi is not None
                         else f">= {lo} characters")
        if p.get("type") == "array":
            if "minItems" in p:
                parts.append(f">= {p['minItems']} item" + ("s" if p["minItems"] > 1 else ""))
            items = p.get("items", {})
            if isinstance(items, Mapping) and _range(items):
                parts.append(f"each {_range(items)}")
        vals = p.get("additionalProperties")
        if isinstance(vals, Mapping) and _range(vals):
            parts.append(f"values {_range(vals)}")
    return "; ".join(parts)


def _default_text(model, key: str, prop: Mapping[str, Any], required: bool) -> str:
    from pydantic import BaseModel
    if required:
        return "required"
    if "default" in prop:
        value = prop["default"]
        if value is None:
            return "none"
        q = _quantity(prop)
        if q is not None and isinstance(value, (int, float)):
            return f"`{_limit(q[0], value) if value else '0 ' + _BASE_UNIT[q[0]]}`"
        if isinstance(value, str):
            return f"`{value}`" if value else '`""`'
        if not isinstance(value, list):
            return f"`{_num(value)}`"
    else:
        value = _factory_default(model, key)
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`" if value else "`[]`"
    if isinstance(value, BaseModel):
        return "all defaults"
    return "none"


def _meaning(name: str, key: str, prop: Mapping[str, Any]) -> str:
    desc = prop.get("description")
    if desc and not _QUANTITY.match(desc):
        return " ".join(desc.split())
    try:
        return MEANINGS[(name, key)]
    except KeyError:
        raise KeyError(f"{name}.{key} has no description: add Field(description=...) in "
                       f"accelsim/hw/spec.py or an entry in accelsim.hw.meanings.MEANINGS"
                       ) from None


def _cell(text: str) -> str:
    return re.sub(r"(?<!\\)\|", r"\\|", text)


# ----------------------------------------------------------------------------- the page


def _markdown(docstring: str) -> str:
    """One paragraph of markdown from a docstring (reST ````code```` -> ``code``)."""
    return re.sub(r"``([^`]+)``", r"`\1`", " ".join(docstring.split()))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped,
    spaces to ``-``."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def _kind_label(obj: Mapping[str, Any]) -> str:
    const = obj.get("properties", {}).get("kind", {}).get("const")
    return f" (kind {const})" if const else ""


def _heading(path: str, name: str, obj: Mapping[str, Any]) -> str:
    if not path:
        return "Top level"
    return f"{path}{_kind_label(obj)}: {name}"


def schema_markdown() -> str:
    """The accelerator YAML reference as markdown, generated from :func:`hw_schema`.

    One section per mapping of the file (key paths such as ``cores.mac_array`` and
    ``memory[i]``), each a table of its keys: type or unit, default, bounds, meaning.

    Examples
    --------
    >>> "## cores.mac_array: MacArray" in schema_markdown()
    True
    """
    schema = hw_schema()
    sections = _sections(schema)
    anchors: dict[str, str] = {}
    for path, name, obj in sections:
        anchors.setdefault(name, _slug(_heading(path, name, obj)))
    lines = [
        "# Accelerator YAML reference",
        "",
        "<!-- Generated by accelsim/hw/docgen.py from accelsim.hw.hw_schema(); do not edit.",
        f"Regenerate: {REGENERATE} -->",
        "",
        ("Every key of an accelerator file (`hwconfigs/*.yaml`), generated from the schema "
         "the loader validates against. What the keys mean for the simulator (cycle rules of "
         "each arithmetic kind, memory scopes and residency, the energy model) and how the "
         "packaged presets were derived is explained in [hwconfig.md](hwconfig.md). "
         "`accelsim hw schema` prints the same schema as JSON Schema for editors."),
        "",
        ("- **Quantities** are strings with a unit (`'224 MiB'`, `'1.6 TB/s'`, `'400 MHz'`); "
         "per-cycle units (`B/cycle`, `cycles`) are converted with the file's `clock`. The "
         "bounds column gives the range in the same units; values past the upper limit are "
         "rejected as typos."),
        ("- **Unknown keys are errors** (with a did-you-mean); every problem of a file is "
         "reported at once as `file: key.path: reason (got value)`."),
        ("- **none** as a default means the key may be left out (or written `null`) and the "
         "meaning column says what applies then."),
        "",
        "Sections: " + " · ".join(f"[{p or 'top level'}{_kind_label(o)}]"
                                  f"(#{_slug(_heading(p, n, o))})" for p, n, o in sections),
        "",
    ]
    for path, name, obj in sections:
        lines += _section(path, name, obj, anchors)
    return "\n".join(lines).rstrip("\n") + "\n"


def _section(path: str, name: str, obj: Mapping[str, Any], anchors: Mapping[str, str]
             ) -> list[str]:
    model = _model(name)
    out = [f"## {_heading(path, name, obj)}", ""]
    lead = obj.get("description") or SECTION_TEXT.get(name)
    if lead:
        out += [_markdown(lead), ""]
    out += ["| key | type | default | bounds | meaning |", "|---|---|---|---|---|"]
    required = set(obj.get("required", []))
    for key, prop in obj.get("properties", {}).items():
        cells = [f"`{key}`", _type_text(prop, anchors),
                 _default_text(model, key, prop, key in required),
                 _bounds_text(model, key, prop), _meaning(name, key, prop)]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return out + [""]
