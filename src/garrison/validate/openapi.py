"""OpenAPI 3.0/3.1 request validation, compiled at load: operation by method + path template,
typed path/query/header/cookie parameters, the ``requestBody`` media types and JSON schemas.

OpenAPI 3.1 §4.8.2: concrete paths are matched before templated ones. Parameter values arrive as
strings and are coerced to the schema's type (``integer``, ``number``, ``boolean``, arrays of those)
before the schema runs; ``style: form``/``simple`` only. Anything unsupported is a ``ConfigError`` at
load. No I/O here: the document is passed in already read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from garrison.errors import ConfigError
from garrison.reasons import Reason
from garrison.validate.errors import ValidationError
from garrison.validate.media import MediaTypes
from garrison.validate.schema import CompiledSchema, to_draft7

_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_INT: Final = re.compile(r"-?(?:0|[1-9][0-9]{0,30})")
_NUM: Final = re.compile(r"-?(?:0|[1-9][0-9]{0,30})(?:\.[0-9]{1,30})?(?:[eE][+-]?[0-9]{1,3})?")
_SCALARS: Final = ("string", "integer", "number", "boolean")
MAX_QUERY_FIELDS: Final = 256


@dataclass(frozen=True, slots=True)
class Param:
    name: str  # header and cookie names as matched: headers lower-cased
    location: str  # path | query | header | cookie
    required: bool
    kind: str  # string | integer | number | boolean | array
    item_kind: str  # for arrays
    explode: bool
    schema: CompiledSchema | None

    @property
    def label(self) -> str:
        return f"{self.location}[{self.name}]"


@dataclass(frozen=True, slots=True)
class Operation:
    """One compiled operation. ``media`` is None when the operation declares no ``requestBody``."""

    method: str
    template: str
    operation_id: str
    params: tuple[Param, ...]
    media: MediaTypes | None
    body_required: bool


_Methods = dict[str, Operation]


class OpenApiSpec:
    """A compiled OpenAPI document: ``match`` an operation, then ``check_params`` / ``media``."""

    __slots__ = ("base_path", "exact", "label", "templated", "unknown_query_denied")

    def __init__(
        self,
        doc: Mapping[str, Any],
        *,
        label: str = "openapi",
        base_path: str = "",
        formats: bool = True,
        unknown_query_denied: bool = False,
    ) -> None:
        self.label = label
        self.base_path = base_path
        self.unknown_query_denied = unknown_query_denied
        version = str(doc.get("openapi", ""))
        if not re.fullmatch(r"3\.[01]\.\d+", version):
            raise ConfigError(
                f"{label}: only OpenAPI 3.0.x and 3.1.x documents are supported, got {version!r}"
            )
        c = _Compiler(doc, label=label, formats=formats, openapi30=version.startswith("3.0"))
        self.exact: dict[str, _Methods] = {}
        templated: list[tuple[tuple[int, int], re.Pattern[str], tuple[str, ...], _Methods]] = []
        for template, item in (doc.get("paths") or {}).items():
            if not isinstance(template, str) or not template.startswith("/") or not isinstance(item, Mapping):
                raise ConfigError(f"{label}: paths: {template!r} must start with / and map to a Path Item")
            methods = {m.upper(): c.operation(template, m, item) for m in _METHODS if m in item}
            names = re.findall(r"\{([^{}/]+)\}", template)
            if not names:
                self.exact[template] = methods
                continue
            pattern = _template_regex(template)
            literal = len(re.sub(r"\{[^{}/]+\}", "", template))
            templated.append(((len(names), -literal), re.compile(pattern), tuple(names), methods))
        templated.sort(key=lambda t: t[0])
        self.templated = tuple((rx, names, methods) for _, rx, names, methods in templated)

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]]:
        """The operation for ``method`` + ``path`` and its raw path values; 404/405 as ValidationError."""
        if self.base_path:
            if not (path == self.base_path or path.startswith(self.base_path + "/")):
                raise ValidationError(
                    "path is not described by the API", rule="no_operation", reason=Reason.NO_ROUTE
                )
            path = path[len(self.base_path) :] or "/"
        values: dict[str, str] = {}
        methods = self.exact.get(path)
        if methods is None:
            for rx, names, candidate in self.templated:
                m = rx.fullmatch(path)
                if m is not None:
                    methods, values = candidate, dict(zip(names, m.groups(), strict=True))
                    break
            else:
                raise ValidationError(
                    "path is not described by the API", rule="no_operation", reason=Reason.NO_ROUTE
                )
        op = methods.get(method) or (methods.get("GET") if method == "HEAD" else None)
        if op is None:
            raise ValidationError(
                "method is not described for this path", rule="no_operation", reason=Reason.METHOD_NOT_ALLOWED
            )
        return op, values

    def check_params(
        self, op: Operation, path_values: Mapping[str, str], query: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Validate every declared parameter; raise ValidationError for the first that fails."""
        query_pairs = _parse_query(query)
        if self.unknown_query_denied:
            declared = {p.name for p in op.params if p.location == "query"}
            for k, _ in query_pairs:
                if k not in declared:
                    raise ValidationError(
                        f"query[{k}]: undeclared parameter", rule="unknown_parameter", path=f"query[{k}]"
                    )
        cookies: list[tuple[str, str]] | None = None
        for p in op.params:
            if p.location == "path":
                raw = [unquote(path_values[p.name], errors="strict")] if p.name in path_values else []
            elif p.location == "query":
                raw = [v for k, v in query_pairs if k == p.name]
            elif p.location == "header":
                key = p.name.encode("latin-1")
                raw = [v.decode("latin-1").strip() for k, v in headers if k == key]
            else:
                if cookies is None:
                    cookies = _parse_cookies(headers)
                raw = [v for k, v in cookies if k == p.name]
            _check_param(p, raw)


def _template_regex(template: str) -> str:
    parts = re.split(r"(\{[^{}/]+\})", template)
    return "".join("([^/]+)" if part.startswith("{") else re.escape(part) for part in parts)


def _parse_query(query: bytes) -> list[tuple[str, str]]:
    if not query:
        return []
    try:
        return parse_qsl(
            query.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise ValidationError(
            "query: not valid UTF-8 form encoding, or too many fields", rule="query", path="query"
        ) from None


def _parse_cookies(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in headers:
        if k == b"cookie":
            for pair in v.decode("latin-1").split(";"):
                name, _, value = pair.strip().partition("=")
                out.append((name, value))
    return out


def _coerce(raw: str, kind: str, label: str) -> Any:
    if kind == "integer" and _INT.fullmatch(raw):
        return int(raw)
    if kind == "number" and _NUM.fullmatch(raw):
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    if kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    if kind == "string":
        return raw
    raise ValidationError(f"{label}: must be {kind}", rule="type", path=label)


def _check_param(p: Param, raw: list[str]) -> None:
    if not raw:
        if p.required:
            raise ValidationError(f"{p.label}: is required", rule="required", path=p.label)
        return
    if p.kind == "array":
        items = raw if (p.location == "query" and p.explode) else [x for v in raw for x in v.split(",")]
        value: Any = [_coerce(x, p.item_kind, p.label) for x in items]
    else:
        if len(raw) > 1:  # parameter pollution: two values where one is declared
            raise ValidationError(f"{p.label}: must not be repeated", rule="repeated", path=p.label)
        value = _coerce(raw[0], p.kind, p.label)
    if p.schema is not None:
        p.schema.validate(value, prefix=p.label)


class _Compiler:
    """Turns Operation Objects into ``Operation``s; resolves local ``$ref`` of parameters and bodies."""

    def __init__(self, doc: Mapping[str, Any], *, label: str, formats: bool, openapi30: bool) -> None:
        self.doc = doc
        self.label = label
        self.formats = formats
        self.openapi30 = openapi30
        schemas = ((doc.get("components") or {}).get("schemas")) or {}
        translated = {
            k: to_draft7(v, openapi30=openapi30, where=f"#/components/schemas/{k}")
            for k, v in schemas.items()
        }
        self.root_extra = {"components": {"schemas": translated}} if translated else None

    def deref(self, obj: Any, where: str) -> Any:
        for _ in range(16):
            if not (isinstance(obj, Mapping) and "$ref" in obj):
                return obj
            ref = obj["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/"):
                raise ConfigError(f"{self.label}: {where}: only local references (#/...) are supported")
            target: Any = self.doc
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, Mapping) or part not in target:
                    raise ConfigError(f"{self.label}: {where}: unresolvable reference {ref!r}")
                target = target[part]
            obj = target
        raise ConfigError(f"{self.label}: {where}: reference chain too long")

    def schema(self, schema: Any, where: str) -> CompiledSchema:
        return CompiledSchema(
            schema,
            label=f"{self.label}: {where}",
            openapi30=self.openapi30,
            formats=self.formats,
            root_extra=self.root_extra,
        )

    def operation(self, template: str, method: str, item: Mapping[str, Any]) -> Operation:
        where = f"paths.{template}.{method}"
        op = item[method]
        if not isinstance(op, Mapping):
            raise ConfigError(f"{self.label}: {where}: must be an Operation Object")
        merged: dict[tuple[str, str], Param] = {}
        for i, raw in enumerate([*(item.get("parameters") or []), *(op.get("parameters") or [])]):
            p = self.param(self.deref(raw, f"{where}.parameters[{i}]"), f"{where}.parameters[{i}]")
            merged[(p.location, p.name)] = p  # operation-level overrides path-level (OpenAPI §4.8.10)
        declared = {name for loc, name in merged if loc == "path"}
        missing = set(re.findall(r"\{([^{}/]+)\}", template)) - declared
        if missing:
            raise ConfigError(f"{self.label}: {where}: path parameter(s) {sorted(missing)} not declared")
        body = self.deref(op.get("requestBody"), f"{where}.requestBody")
        media: MediaTypes | None = None
        if body is not None:
            content = body.get("content") or {}
            media = MediaTypes(
                {
                    mt: (
                        self.schema(spec["schema"], f"{where}.requestBody.{mt}")
                        if isinstance(spec, Mapping) and "schema" in spec and MediaTypes.is_json(mt)
                        else None
                    )
                    for mt, spec in content.items()
                }
            )
        return Operation(
            method.upper(),
            template,
            str(op.get("operationId", f"{method.upper()} {template}")),
            tuple(merged.values()),
            media,
            bool(body and body.get("required")),
        )

    def param(self, raw: Any, where: str) -> Param:
        if (
            not isinstance(raw, Mapping)
            or "name" not in raw
            or raw.get("in") not in ("path", "query", "header", "cookie")
        ):
            raise ConfigError(
                f"{self.label}: {where}: a parameter needs name and in (path/query/header/cookie)"
            )
        location, name = raw["in"], str(raw["name"])
        if "content" in raw or raw.get("style") not in (None, "form", "simple"):
            raise ConfigError(
                f"{self.label}: {where}: only schema parameters in form/simple style are supported"
            )
        schema = self.deref(raw.get("schema", {}), where)
        kind = schema.get("type", "string") if isinstance(schema, Mapping) else "string"
        item_kind = "string"
        if kind == "array":
            items = self.deref(schema.get("items", {}), where)
            item_kind = items.get("type", "string") if isinstance(items, Mapping) else "string"
        if kind not in (*_SCALARS, "array") or item_kind not in _SCALARS:
            raise ConfigError(f"{self.label}: {where}: parameter type {kind!r} is not supported")
        return Param(
            name=name.lower() if location == "header" else name,
            location=location,
            required=bool(raw.get("required")) or location == "path",
            kind=kind,
            item_kind=item_kind,
            explode=bool(raw.get("explode", location in ("query", "cookie"))),
            schema=self.schema(schema, where) if schema else None,
        )


__all__ = ["OpenApiSpec", "Operation", "Param"]
