"""garrison.yaml models for request validation (per route ``validate:``). Validated once at load."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ValidateConfig(BaseModel):
    """Per-route request validation. With neither ``json_schema`` nor ``openapi``, only limits apply.

    File paths are relative to the directory of garrison.yaml.
    """

    # Not garrison.config.models.Model: config/models.py imports this module (no import cycle).
    model_config = ConfigDict(extra="forbid", frozen=True)

    json_schema: str | None = Field(
        None, description="JSON Schema file (draft 2020-12, JSON or YAML) for the body"
    )
    openapi: str | None = Field(None, description="OpenAPI 3.0/3.1 document (JSON or YAML)")
    base_path: str = Field("", description="Prefix of request paths before the OpenAPI paths (e.g. /api/v1)")
    max_body_bytes: int = Field(1_048_576, ge=0, description="Larger bodies get 413 before buffering")
    max_depth: int = Field(32, ge=1, le=1000, description="JSON nesting depth")
    max_elements: int = Field(10_000, ge=1, description="JSON values in one body (containers + scalars)")
    max_string_bytes: int = Field(65_536, ge=1, description="Longest JSON string, as sent")
    content_types: list[str] = Field(
        default_factory=lambda: ["application/json"],
        description="Accepted body media types with json_schema (OpenAPI: the operation's requestBody)",
    )
    require_body: bool = Field(False, description="json_schema mode: a request without a body is a 400")
    assert_formats: bool = Field(True, description="Enforce `format` (email, date-time, uuid, ...)")
    unknown_query_params: Literal["allow", "deny"] = Field(
        "allow", description="OpenAPI: undeclared query keys"
    )

    @field_validator("content_types")
    @classmethod
    def _media_types(cls, v: list[str]) -> list[str]:
        out = [t.strip().lower() for t in v]
        for t in out:
            if t.count("/") != 1 or ";" in t or not t.split("/")[0] or not t.split("/")[1]:
                raise ValueError(f"not a media type without parameters: {t!r}")
        return out

    @field_validator("base_path")
    @classmethod
    def _base(cls, v: str) -> str:
        if v and (not v.startswith("/") or v.endswith("/")):
            raise ValueError("must start with / and not end with / (or be empty)")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ValidateConfig:
        if self.json_schema is not None and self.openapi is not None:
            raise ValueError("give at most one of json_schema or openapi")
        return self


__all__ = ["ValidateConfig"]
