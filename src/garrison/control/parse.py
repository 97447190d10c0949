"""Request and response plumbing of the control-plane API: bodies, fields, query values, the TLS peer.

Every limit and every refusal of malformed input is here, raised as ``ApiError``; the handlers in
``app`` see only checked values. No blocking I/O: bodies are read from the ASGI stream.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import anyio
from cryptography import x509
from starlette.requests import Request
from starlette.responses import Response

from garrison.control.errors import NO_STORE, ApiError, translate
from garrison.reasons import Reason

Handler = Callable[[Request], Awaitable[Response]]
MAX_BODY: Final = 64 * 1024
BODY_TIMEOUT: Final = 10.0


def json_response(doc: Any, status: int = 200, headers: Mapping[str, str] = NO_STORE) -> Response:
    return Response(
        json.dumps(doc, separators=(",", ":")).encode(), status, dict(headers), media_type="application/json"
    )


def peer_certificate(request: Request) -> x509.Certificate | None:
    """The TLS-verified client leaf certificate (ASGI TLS extension), or None."""
    tls = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    cached = request.scope.get("garrison.peer_cert")
    if cached is None:
        cached = x509.load_pem_x509_certificate(chain[0].encode())
        request.scope["garrison.peer_cert"] = cached
    return cached


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` (never buffered past it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(Reason.BODY_TOO_LARGE, f"the limit is {limit} bytes")
    size = 0
    chunks: list[bytes] = []
    # uvicorn has no body timeout: a client trickling a declared body would hold a task forever.
    with anyio.move_on_after(BODY_TIMEOUT) as waited:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(Reason.BODY_TOO_LARGE, f"the limit is {limit} bytes")
            chunks.append(chunk)
    if waited.cancelled_caught:
        raise ApiError(Reason.REQUEST_TIMEOUT, f"the body must arrive within {BODY_TIMEOUT:g} s")
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_json(request: Request, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    """A JSON object body (with only ``allowed`` members, if given); 415 / 413 / 400 otherwise."""
    if media_type(request) != "application/json":
        raise ApiError(Reason.UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json")
    raw = await read_body(request)
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(Reason.JSON_MALFORMED) from None
    if not isinstance(doc, dict):
        raise ApiError(Reason.VALIDATION_FAILED, "the body must be a JSON object")
    unknown = sorted(set(doc) - allowed) if allowed is not None else []
    if unknown:
        raise ApiError(Reason.VALIDATION_FAILED, f"unknown field(s): {', '.join(unknown)[:200]}")
    return doc


def field_str(
    doc: Mapping[str, Any], name: str, *, required: bool = True, max_len: int = 16_384
) -> str | None:
    v = doc.get(name)
    if v is None:
        if required:
            raise ApiError(Reason.VALIDATION_FAILED, f"{name} is required")
        return None
    if not isinstance(v, str) or not v or len(v) > max_len:
        raise ApiError(
            Reason.VALIDATION_FAILED, f"{name} must be a non-empty string of at most {max_len} chars"
        )
    return v


def field_seconds(doc: Mapping[str, Any], name: str) -> float | None:
    v = doc.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise ApiError(Reason.VALIDATION_FAILED, f"{name} must be a positive number of seconds")
    return float(v)


def query_bool(request: Request, name: str) -> bool:
    v = request.query_params.get(name)
    if v is None or v in ("false", "0"):
        return False
    if v in ("true", "1"):
        return True
    raise ApiError(Reason.VALIDATION_FAILED, f"{name} must be true or false")


def api(fn: Handler) -> Handler:
    """``/v1/*`` handler wrapper: any exception becomes its ``{"error", "message"}`` answer."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except Exception as exc:
            return translate(exc).response()

    return wrapper


__all__ = [
    "BODY_TIMEOUT",
    "MAX_BODY",
    "Handler",
    "api",
    "field_seconds",
    "field_str",
    "json_response",
    "media_type",
    "peer_certificate",
    "query_bool",
    "read_body",
    "read_json",
]
