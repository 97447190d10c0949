"""garrison.yaml models for response protection (per route ``dlp:``). Validated once at load."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DlpConfig(BaseModel):
    """Per-route response DLP: redaction in JSON bodies and masking of leaky error pages."""

    # Not garrison.config.models.Model: config/models.py imports this module (no import cycle).
    model_config = ConfigDict(extra="forbid", frozen=True)

    redact_cards: bool = Field(True, description="Mask Luhn-valid card numbers (13-19 digits), keep last 4")
    fields: list[str] = Field(
        default_factory=list, description="Field names whose values are redacted, any depth, case-insensitive"
    )
    patterns: list[str] = Field(default_factory=list, description="Python regexes redacted in JSON strings")
    replacement: str = Field("[REDACTED]", max_length=64)
    mask_error_pages: bool = Field(True, description="Replace error responses that leak stack traces/SQL")
    streaming: bool = Field(False, description="Also buffer chunked (streaming) responses, up to the cap")
    max_body_bytes: int = Field(1_048_576, ge=0, description="Larger bodies pass untouched (and are counted)")
    leak_scan_bytes: int = Field(65_536, ge=256, description="Error pages: scan at most this many bytes")

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                rx = re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid pattern {p!r}: {exc}") from None
            if rx.search(""):
                raise ValueError(f"pattern {p!r} matches the empty string")
        return v

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: list[str]) -> list[str]:
        if any(not f.strip() for f in v):
            raise ValueError("field names must not be empty")
        return v


__all__ = ["DlpConfig"]
