"""JSON Schema (draft 2020-12) compiled once at load with fastjsonschema; per request only the call.

fastjsonschema generates Python code for drafts 04-07. A 2020-12 schema is rewritten to its draft-07
equivalent where one exists (``prefixItems``, ``dependentRequired``/``dependentSchemas``, ``$ref``
with sibling keywords); keywords with no equivalent (``unevaluated*``, ``$dynamicRef``,
``min/maxContains``, ...) and any ``$ref`` outside the document are a ``ConfigError`` at load, never
silently ignored and never fetched. OpenAPI 3.0 dialect (``nullable``, boolean ``exclusiveMinimum``,
``format: int32/int64``) is rewritten the same way. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import fastjsonschema

from garrison.errors import ConfigError
from garrison.validate.errors import ValidationError, excerpt, schema_message

DRAFT7: Final = "http://json-schema.org/draft-07/schema#"
_UNSUPPORTED: Final = frozenset(
    {
        "unevaluatedProperties",
        "unevaluatedItems",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "minContains",
        "maxContains",
        "$anchor",
        "$vocabulary",
    }
)
_SCHEMA_MAPS: Final = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE: Final = (
    "additionalProperties",
    "additionalItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "items",
)
_SCHEMA_LISTS: Final = ("allOf", "anyOf", "oneOf", "prefixItems")
_OPENAPI_ONLY: Final = ("discriminator", "xml", "externalDocs", "example", "nullable")
_INT_FORMATS: Final = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def to_draft7(schema: Any, *, openapi30: bool = False, where: str = "#") -> Any:
    """A draft-07 schema equivalent to ``schema`` (2020-12, or OpenAPI 3.0 when ``openapi30``)."""
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, Mapping):
        raise ConfigError(f"schema at {where}: must be an object or a boolean")
    bad = sorted(_UNSUPPORTED & schema.keys())
    if bad:
        raise ConfigError(f"schema at {where}: keyword {bad[0]!r} is not supported (no draft-07 equivalent)")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        sub = f"{where}/{key}"
        if key in _SCHEMA_MAPS:
            _need(isinstance(value, Mapping), sub, "must be an object")
            out[key] = {k: to_draft7(v, openapi30=openapi30, where=f"{sub}/{k}") for k, v in value.items()}
        elif key in _SCHEMA_LISTS:
            _need(isinstance(value, list), sub, "must be an array")
            out[key] = [to_draft7(v, openapi30=openapi30, where=f"{sub}/{i}") for i, v in enumerate(value)]
        elif key in _SCHEMA_ONE:
            out[key] = to_draft7(value, openapi30=openapi30, where=sub)
        elif key == "dependencies":
            out[key] = {
                k: v if isinstance(v, list) else to_draft7(v, openapi30=openapi30, where=f"{sub}/{k}")
                for k, v in value.items()
            }
        elif key == "$ref":
            _need(
                isinstance(value, str) and value.startswith("#"),
                sub,
                "only references inside the document (#/...) are allowed; nothing is fetched",
            )
            out[key] = value
        elif key == "$schema" or (openapi30 and key in _OPENAPI_ONLY):
            continue
        else:
            out[key] = value
    _rewrite_2020(out)
    if openapi30:
        _rewrite_openapi30(schema, out)
    if out.get("type") == "integer" and out.get("format") in _INT_FORMATS:
        lo, hi = _INT_FORMATS[out["format"]]
        out.setdefault("minimum", lo)
        out.setdefault("maximum", hi)
    if "$ref" in out and len(out) > 1:  # 2020-12 applies $ref's siblings; draft-07 would ignore them
        out["allOf"] = [{"$ref": out.pop("$ref")}, *out.get("allOf", [])]
    return out


def _need(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"schema at {where}: {what}")


def _rewrite_2020(out: dict[str, Any]) -> None:
    if "prefixItems" in out:
        rest = out.pop("items", None)
        out["items"] = out.pop("prefixItems")
        if rest is not None:
            out["additionalItems"] = rest
    dependencies: dict[str, Any] = dict(out.pop("dependencies", {}))
    dependencies.update(out.pop("dependentRequired", {}))
    dependencies.update(out.pop("dependentSchemas", {}))
    if dependencies:
        out["dependencies"] = dependencies


def _rewrite_openapi30(src: Mapping[str, Any], out: dict[str, Any]) -> None:
    if src.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    for bound in ("Minimum", "Maximum"):  # OpenAPI 3.0 / draft-04: boolean exclusiveMinimum
        flag = out.get(f"exclusive{bound}")
        if isinstance(flag, bool):
            del out[f"exclusive{bound}"]
            if flag and bound.lower() in out:
                out[f"exclusive{bound}"] = out.pop(bound.lower())


def _refuse_remote(uri: str) -> Any:
    raise ConfigError(f"remote $ref {excerpt(uri)} refused: schemas are never fetched")


Check = Callable[[Any], Any]


class CompiledSchema:
    """One schema, compiled. ``validate(value)`` raises ``ValidationError`` naming the path and rule."""

    __slots__ = ("_check", "label")

    def __init__(
        self,
        schema: Any,
        *,
        label: str = "schema",
        openapi30: bool = False,
        formats: bool = True,
        root_extra: Mapping[str, Any] | None = None,
    ) -> None:
        """``root_extra``: already-translated keys added to the root (an OpenAPI ``components``)."""
        self.label = label
        draft7 = to_draft7(schema, openapi30=openapi30)
        if root_extra:
            draft7 = {"allOf": [draft7], **root_extra}
        if isinstance(draft7, dict):
            draft7 = {"$schema": DRAFT7, **draft7}
        refuse = dict.fromkeys(("http", "https", "file", "ftp", "urn", ""), _refuse_remote)
        try:
            self._check: Check = fastjsonschema.compile(
                draft7, handlers=refuse, use_default=False, use_formats=formats
            )
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            raise ConfigError(f"{label}: invalid schema: {exc}") from None

    def validate(self, value: Any, prefix: str = "$") -> None:
        try:
            self._check(value)
        except fastjsonschema.JsonSchemaValueException as exc:
            path = prefix + (exc.name or "data")[4:]
            message = schema_message(exc.rule or "", exc.rule_definition, exc.value, exc.definition)
            raise ValidationError(
                f"{excerpt(path, 96)}: {message}", rule=exc.rule or "schema", path=excerpt(path, 96)
            ) from None

    def __repr__(self) -> str:
        return f"<CompiledSchema {self.label}>"


__all__ = ["DRAFT7", "CompiledSchema", "to_draft7"]
