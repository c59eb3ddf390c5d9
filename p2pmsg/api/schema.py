"""A small validator for the JSON-Schema subset the API documents (pure, no I/O).

Why not ``jsonschema`` at run time: the request schemas in :mod:`.openapi` are the
documented contract, and this module checks requests against exactly those
schemas with messages that name the field (``members[0].device: expected 64 hex
digits``) and never echo a value. Supported keywords: ``type`` (one name or a
list), ``properties``, ``required``, ``additionalProperties: false``,
``minLength``/``maxLength``, ``pattern``, ``enum``, ``minimum``/``maximum``,
``items``, ``minItems``/``maxItems``, ``maxProperties``, ``$ref`` into
``#/components/schemas/`` and ``oneOf`` with a ``discriminator`` (the only form
of ``oneOf`` the API uses, so errors can name the variant). Anything else in a
schema is a bug in :mod:`.openapi` and raises ``KeyError`` at check time.

Call :func:`check` with the decoded JSON value; it raises :class:`ApiError` (400)
on the first violation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import ApiError

__all__ = ["check"]

_KNOWN = frozenset({
    "type", "properties", "required", "additionalProperties", "minLength", "maxLength",
    "pattern", "enum", "minimum", "maximum", "items", "minItems", "maxItems",
    "maxProperties", "$ref", "oneOf", "discriminator", "description", "example",
    "title", "format", "default", "nullable", "readOnly",
})
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
_PATTERNS: dict[str, re.Pattern[str]] = {}


def _pattern(p: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(p)
    if compiled is None:
        compiled = _PATTERNS[p] = re.compile(p)
    return compiled


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def _fail(path: str, problem: str) -> ApiError:
    return ApiError(400, f"{path or 'body'}: {problem}")


def check(value: Any, schema: Mapping[str, Any], components: Mapping[str, Any],
          path: str = "") -> None:
    """Raise :class:`ApiError` (400) unless ``value`` satisfies ``schema``.

    ``components`` is the OpenAPI ``components.schemas`` mapping ``$ref`` points into;
    ``path`` prefixes error messages (``""`` = the request body)."""
    unknown = set(schema) - _KNOWN
    if unknown:
        raise KeyError(f"unsupported schema keywords {sorted(unknown)}")
    if "$ref" in schema:
        name = schema["$ref"].rpartition("/")[2]
        check(value, components[name], components, path)
        return
    if "oneOf" in schema:
        _check_one_of(value, schema, components, path)
        return
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, n) for n in names):
            raise _fail(path, f"expected {' or '.join(names)}")
    if "enum" in schema and value not in schema["enum"]:
        raise _fail(path, "expected one of " + ", ".join(map(str, schema["enum"])))
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise _fail(path, f"shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise _fail(path, f"longer than {schema['maxLength']} characters")
        if "pattern" in schema and _pattern(schema["pattern"]).search(value) is None:
            raise _fail(path, schema.get("description") or "does not match the pattern")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise _fail(path, f"less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise _fail(path, f"greater than {schema['maximum']}")
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise _fail(path, f"fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise _fail(path, f"more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                check(item, schema["items"], components, f"{path}[{i}]")
    elif isinstance(value, dict):
        _check_object(value, schema, components, path)


def _check_object(value: dict[Any, Any], schema: Mapping[str, Any],
                  components: Mapping[str, Any], path: str) -> None:
    props: Mapping[str, Any] = schema.get("properties", {})
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise _fail(path, f"more than {schema['maxProperties']} fields")
    for name in schema.get("required", ()):
        if name not in value:
            raise _fail(_join(path, name), "required")
    for name, item in value.items():
        if name in props:
            check(item, props[name], components, _join(path, name))
        elif schema.get("additionalProperties", True) is False:
            raise _fail(path, f"unknown field {_safe_name(name)}")
        elif isinstance(schema.get("additionalProperties"), Mapping):
            check(item, schema["additionalProperties"], components, _join(path, "*"))


def _check_one_of(value: Any, schema: Mapping[str, Any], components: Mapping[str, Any],
                  path: str) -> None:
    disc = schema["discriminator"]
    field = disc["propertyName"]
    mapping: Mapping[str, str] = disc["mapping"]
    if not isinstance(value, dict):
        raise _fail(path, "expected object")
    tag = value.get(field)
    if not isinstance(tag, str) or tag not in mapping:
        raise _fail(_join(path, field), "expected one of " + ", ".join(mapping))
    check(value, {"$ref": mapping[tag]}, components, path)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _safe_name(name: str) -> str:
    """A field name as it may appear in a message: short and printable only."""
    if len(name) <= 40 and name.isascii() and name.isprintable():
        return repr(name)
    return "(unprintable or long name)"
