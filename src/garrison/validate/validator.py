"""The per-route request validator: limits, media types, OpenAPI parameters, JSON body schema.

Built once at load from ``ValidateConfig`` (reading the schema file is the only I/O, at load).
Per request: ``check_head`` (no body needed) then, if it says so, ``check_body`` on the buffered body.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from garrison.errors import ConfigError
from garrison.reasons import Reason
from garrison.validate.errors import ValidationError
from garrison.validate.json_limits import JsonLimits, parse_json
from garrison.validate.media import MediaTypes, media_type
from garrison.validate.models import ValidateConfig
from garrison.validate.openapi import OpenApiSpec
from garrison.validate.schema import CompiledSchema

Headers = list[tuple[bytes, bytes]]


def load_document(path: Path) -> Any:
    """A JSON or YAML file (schema or OpenAPI document). Load time only."""
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot load {path}: {exc}") from None


class RequestValidator:
    """One route's compiled validation. Methods raise ``ValidationError`` (reason + safe message)."""

    __slots__ = ("label", "limits", "max_body_bytes", "media", "require_body", "spec")

    def __init__(
        self,
        *,
        limits: JsonLimits,
        max_body_bytes: int,
        media: MediaTypes | None,
        spec: OpenApiSpec | None = None,
        require_body: bool = False,
        label: str = "validate",
    ) -> None:
        self.limits = limits
        self.max_body_bytes = max_body_bytes
        self.media = media
        self.spec = spec
        self.require_body = require_body
        self.label = label

    @classmethod
    def from_config(
        cls, cfg: ValidateConfig, *, base_dir: Path = Path(), label: str = "validate"
    ) -> RequestValidator:
        limits = JsonLimits(cfg.max_depth, cfg.max_elements, cfg.max_string_bytes)
        spec: OpenApiSpec | None = None
        schema: CompiledSchema | None = None
        if cfg.openapi is not None:
            doc = load_document(base_dir / cfg.openapi)
            if not isinstance(doc, dict):
                raise ConfigError(f"{label}: {cfg.openapi}: not an OpenAPI document")
            spec = OpenApiSpec(
                doc,
                label=f"{label}: {cfg.openapi}",
                base_path=cfg.base_path,
                formats=cfg.assert_formats,
                unknown_query_denied=cfg.unknown_query_params == "deny",
            )
        elif cfg.json_schema is not None:
            schema = CompiledSchema(
                load_document(base_dir / cfg.json_schema),
                label=f"{label}: {cfg.json_schema}",
                formats=cfg.assert_formats,
            )
        media = MediaTypes({t: schema if MediaTypes.is_json(t) else None for t in cfg.content_types})
        return cls(
            limits=limits,
            max_body_bytes=cfg.max_body_bytes,
            media=None if spec else media,
            spec=spec,
            require_body=cfg.require_body,
            label=label,
        )

    def _media_for(
        self, method: str, path: str, query: bytes | None, headers: Headers
    ) -> tuple[MediaTypes | None, bool]:
        if self.spec is None:
            return self.media, self.require_body
        op, values = self.spec.match(method, path)
        if query is not None:
            self.spec.check_params(op, values, query, headers)
        return op.media, op.body_required

    def check_head(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: Headers,
        *,
        has_body: bool,
        content_length: int | None,
    ) -> bool:
        """Everything that needs no body. True when the body must be buffered and passed to ``check_body``."""
        if content_length is not None and content_length > self.max_body_bytes:
            raise ValidationError(
                "request body too large", rule="max_body_bytes", reason=Reason.BODY_TOO_LARGE
            )
        media, required = self._media_for(method, path, query, headers)
        if not has_body:
            if required:
                raise ValidationError("$: request body is required", rule="required_body")
            return False
        mt = media_type(_first(headers, b"content-type"))
        accepted, _ = media.lookup(mt) if media is not None else (False, None)
        if not accepted:
            raise ValidationError("unsupported Content-Type for this request", rule="content_type")
        return MediaTypes.is_json(mt)

    def check_body(self, method: str, path: str, headers: Headers, body: bytes) -> Any:
        """Validate the buffered body (after ``check_head`` said True). Returns the parsed JSON value."""
        if len(body) > self.max_body_bytes:
            raise ValidationError(
                "request body too large", rule="max_body_bytes", reason=Reason.BODY_TOO_LARGE
            )
        media, required = self._media_for(method, path, None, headers)
        if not body:
            if required:
                raise ValidationError("$: request body is required", rule="required_body")
            return None
        mt = media_type(_first(headers, b"content-type"))
        accepted, schema = media.lookup(mt) if media is not None else (False, None)
        if not accepted:
            raise ValidationError("unsupported Content-Type for this request", rule="content_type")
        if not MediaTypes.is_json(mt):
            return None
        value = parse_json(body, self.limits)
        if schema is not None:
            schema.validate(value)
        return value

    def __repr__(self) -> str:
        kind = "openapi" if self.spec else "schema"
        return f"<RequestValidator {self.label} {kind} max={self.max_body_bytes}>"


def _first(headers: Headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


__all__ = ["RequestValidator", "load_document"]
