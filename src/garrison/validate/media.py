"""Request media types: which Content-Types a body may have, and which schema (if any) checks it."""

from __future__ import annotations

from collections.abc import Mapping

from garrison.validate.schema import CompiledSchema


def media_type(content_type: bytes | None) -> str:
    """``application/json`` from ``Application/JSON; charset=utf-8``; ``""`` when absent."""
    if not content_type:
        return ""
    return content_type.split(b";", 1)[0].strip().decode("latin-1").lower()


class MediaTypes:
    """Accepted media types (exact, ``type/*``, ``*/*``), each with its body schema or None (not JSON)."""

    __slots__ = ("by_type",)

    def __init__(self, by_type: Mapping[str, CompiledSchema | None]) -> None:
        self.by_type = {k.lower(): v for k, v in by_type.items()}

    @staticmethod
    def is_json(mt: str) -> bool:
        """RFC 8259 §11 ``application/json`` and RFC 6839 §3.1 ``+json`` suffixes."""
        mt = mt.lower()
        return mt == "application/json" or mt.endswith("+json")

    def lookup(self, mt: str) -> tuple[bool, CompiledSchema | None]:
        """(accepted, schema). The most specific declared range wins (OpenAPI §4.8.14)."""
        by = self.by_type
        for key in (mt, mt.split("/", 1)[0] + "/*", "*/*"):
            if key in by:
                return True, by[key]
        return False, None

    def __repr__(self) -> str:
        return f"<MediaTypes {sorted(self.by_type)}>"


__all__ = ["MediaTypes", "media_type"]
