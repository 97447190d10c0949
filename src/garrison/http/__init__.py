"""Sans-IO HTTP/1.1 hygiene: framing checks, header sets, request-target and path normalization.

Everything here takes bytes and returns values or raises ``HttpError`` with a Reason; no I/O, no
parser of its own (llhttp parses; these checks decide what a parsed request may mean).
"""

from garrison.http.framing import CHUNKED, NO_BODY, Framing, check_framing, check_host, parse_host
from garrison.http.headers import (
    FORWARDING_HEADERS,
    HOP_BY_HOP,
    IDENTITY_HEADERS,
    client_ip_from_forwarded,
    connection_options,
    is_spoofable,
    sanitize_request_headers,
)
from garrison.http.paths import normalize_path, split_target, target_host

__all__ = [
    "CHUNKED",
    "FORWARDING_HEADERS",
    "HOP_BY_HOP",
    "IDENTITY_HEADERS",
    "NO_BODY",
    "Framing",
    "check_framing",
    "check_host",
    "client_ip_from_forwarded",
    "connection_options",
    "is_spoofable",
    "normalize_path",
    "parse_host",
    "sanitize_request_headers",
    "split_target",
    "target_host",
]
