"""Request validation (ARCHITECTURE §2.8): JSON-bomb limits, JSON Schema and OpenAPI, safe 400s. Sans-IO."""

from garrison.validate.errors import EXCERPT_CHARS, ValidationError, error_body, excerpt, reason_for
from garrison.validate.json_limits import JsonLimits, check_limits, parse_json
from garrison.validate.media import MediaTypes, media_type
from garrison.validate.models import ValidateConfig
from garrison.validate.openapi import OpenApiSpec, Operation, Param
from garrison.validate.schema import CompiledSchema, to_draft7
from garrison.validate.validator import RequestValidator, load_document

__all__ = [
    "EXCERPT_CHARS",
    "CompiledSchema",
    "JsonLimits",
    "MediaTypes",
    "OpenApiSpec",
    "Operation",
    "Param",
    "RequestValidator",
    "ValidateConfig",
    "ValidationError",
    "check_limits",
    "error_body",
    "excerpt",
    "load_document",
    "media_type",
    "parse_json",
    "reason_for",
    "to_draft7",
]
