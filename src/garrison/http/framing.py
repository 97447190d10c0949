"""Message framing and Host checks over parsed request headers (RFC 9112 §6, §3.2). No I/O here.

llhttp (httptools) parses first and already rejects much (tests/unit/http/test_llhttp_behaviour.py pins
what); these checks cover what it lets through and hold even if it loosens. Header values are taken
as llhttp hands them: leading whitespace already removed, trailing whitespace kept.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from garrison.errors import HttpError
from garrison.reasons import Reason

Header = tuple[bytes, bytes]

# RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|"
#                         / "~" / DIGIT / ALPHA
_TCHAR: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_OWS: Final = b" \t"
_OWS_FIRST: Final = frozenset((b" ", b"\t"))
# A Content-Length of 18 digits is < 10**18 bytes; anything longer is absurd, and the body limit is
# enforced elsewhere. It also keeps int() away from huge inputs.
_MAX_CL_DIGITS: Final = 18
# RFC 3986 §3.2.2 reg-name, restricted to what DNS names and IPv4 literals use (dot-separated non-empty
# labels); "%" (pct-encoded) and sub-delims are refused: no real client sends them in Host.
_HOST_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
# Lower-case names known to be valid tokens, by framing role (0: none, 1: Content-Length, 2:
# Transfer-Encoding). A name found here skips the per-name token check (the common case); any other
# name, including any upper-case spelling, is checked, lower-cased and looked up again.
_ORDINARY, _CONTENT_LENGTH, _TRANSFER_ENCODING = 0, 1, 2
_KNOWN_NAMES: Final[dict[bytes, int]] = dict.fromkeys(
    (
        b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"authorization",
        b"content-type", b"cookie", b"connection", b"cache-control", b"pragma", b"origin", b"referer",
        b"traceparent", b"tracestate", b"x-request-id", b"if-none-match", b"if-modified-since",
        b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip",
        b"sec-fetch-mode", b"sec-fetch-site", b"sec-fetch-dest", b"upgrade-insecure-requests", b"te",
        b"expect", b"range", b"if-match", b"dnt", b"x-api-key", b"x-correlation-id",
    ),
    _ORDINARY,
) | {b"content-length": _CONTENT_LENGTH, b"transfer-encoding": _TRANSFER_ENCODING}  # fmt: skip


#: Lower-case names that are valid tokens with no framing role (neither Content-Length nor
#: Transfer-Encoding): the fast path of a request's header checks.
ORDINARY_NAMES: Final = frozenset(n for n, role in _KNOWN_NAMES.items() if role == _ORDINARY)


@dataclass(frozen=True, slots=True)
class Framing:
    """How the request body is delimited: by ``content_length`` bytes, by chunks, or absent (both unset)."""

    content_length: int | None
    chunked: bool

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def __repr__(self) -> str:
        if self.chunked:
            return "<Framing chunked>"
        if self.content_length is None:
            return "<Framing none>"
        return f"<Framing content-length={self.content_length}>"


NO_BODY: Final = Framing(None, False)
CHUNKED: Final = Framing(None, True)


def check_framing(headers: list[Header], *, http_version: str = "1.1") -> Framing:
    """Validate every header line and decide the body framing. Raises ``HttpError`` with a FRAMING_* reason.

    Exactly one well-formed Content-Length, or exactly one ``Transfer-Encoding: chunked``, or neither.
    """
    cl: list[bytes] = []
    te: list[bytes] = []
    values: list[bytes] = []
    append, known, ows_first = values.append, _KNOWN_NAMES.get, _OWS_FIRST  # locals: this loop is hot
    for name, value in headers:
        append(value)
        if value[:1] in ows_first:
            # RFC 9112 §5.2: obs-fold (a line starting with whitespace) is rejected, not unfolded.
            raise HttpError(reason=Reason.FRAMING_OBS_FOLD)
        role = known(name)
        if role is None:
            if not name or name.translate(None, _TCHAR):
                raise HttpError(reason=Reason.BAD_HEADER)  # RFC 9110 §5.1: field-name = token
            role = known(name.lower(), _ORDINARY)
        if role == _CONTENT_LENGTH:
            cl.append(value)
        elif role == _TRANSFER_ENCODING:
            te.append(value)
    blob = b"".join(values)
    if 13 in blob or 10 in blob or 0 in blob:
        # RFC 9110 §5.5: CR, LF and NUL are never valid in a field value (header splitting, truncation).
        # Other CTLs are refused by llhttp (pinned in test_llhttp_behaviour.py).
        raise HttpError(reason=Reason.BAD_HEADER)
    if not cl and not te:
        return NO_BODY
    if cl and te:
        # RFC 9112 §6.1: a message with both "ought to be handled as an error"; the classic smuggling vector.
        raise HttpError(reason=Reason.FRAMING_CL_TE)
    if te:
        if http_version != "1.1":
            # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message: treat the framing as faulty.
            raise HttpError(reason=Reason.FRAMING_BAD_TRANSFER_ENCODING)
        if len(te) > 1 or te[0].strip(_OWS).lower() != b"chunked":
            # RFC 9112 §6.1, §7: chunked must be the final coding; we accept it only as the sole one
            # ("gzip, chunked" and "chunked, chunked" are refused: we never decode transfer codings).
            raise HttpError(reason=Reason.FRAMING_BAD_TRANSFER_ENCODING)
        return CHUNKED
    if len(cl) > 1:
        # RFC 9112 §6.3 item 5 allows merging identical values; a security gateway does not.
        raise HttpError(reason=Reason.FRAMING_DUPLICATE_CONTENT_LENGTH)
    value = cl[0].strip(_OWS)
    if 0x2C in value:
        raise HttpError(reason=Reason.FRAMING_DUPLICATE_CONTENT_LENGTH)  # "5, 5": a list is a duplicate
    if not value.isdigit() or len(value) > _MAX_CL_DIGITS:  # bytes.isdigit: ASCII digits only
        raise HttpError(reason=Reason.FRAMING_BAD_CONTENT_LENGTH)  # RFC 9110 §8.6: Content-Length = 1*DIGIT
    return Framing(int(value), False)


def check_host(headers: list[Header], *, target_host: str | None = None) -> str:
    """The request's host: lower-case, port and one trailing dot removed. Raises ``HttpError(BAD_HOST)``.

    RFC 9112 §3.2: a request with no Host, more than one, or an invalid one gets 400. With an
    absolute-form target (``target_host`` from ``paths.target_host``), the two must name the same host.
    """
    found: bytes | None = None
    for name, value in headers:
        if name == b"host" or (len(name) == 4 and name.lower() == b"host"):
            if found is not None:
                raise HttpError(reason=Reason.BAD_HOST)
            found = value
    if found is None:
        raise HttpError(reason=Reason.BAD_HOST)
    host = parse_host(found)
    if target_host is not None and target_host != host:
        raise HttpError(reason=Reason.BAD_HOST)  # RFC 9112 §3.2.2: never route by one and forward the other
    return host


def parse_host(value: bytes) -> str:
    """``uri-host [ ":" port ]`` (RFC 9110 §7.2), surrounding OWS ignored -> lower-case host without port
    or trailing dot. Raises ``HttpError(BAD_HOST)``."""
    host = _parse_host(value)
    if host is None:
        raise HttpError(reason=Reason.BAD_HOST)
    return host


@lru_cache(maxsize=1024)  # Host values repeat across requests; the bound caps what a client can make it hold
def _parse_host(value: bytes) -> str | None:
    try:
        text = value.decode("ascii").strip(" \t")
    except UnicodeDecodeError:
        return None
    if text[:1] == "[":
        literal, bracket, port = text[1:].partition("]")
        if not bracket or (port and not _is_port(port)):
            return None
        try:
            # RFC 3986 §3.2.2: IP-literal = "[" IPv6address "]" (IPvFuture is refused)
            return str(ipaddress.IPv6Address(literal))
        except ValueError:
            return None
    host, colon, port = text.partition(":")
    if colon and not _is_port(colon + port):
        return None
    if host[-1:] == ".":
        host = host[:-1]  # "example.com." is the same DNS name as "example.com"
    return host.lower() if _HOST_NAME.fullmatch(host) else None


def _is_port(colon_port: str) -> bool:
    """``":" 1*5DIGIT`` in 0-65535. RFC 3986 allows an empty port; we do not."""
    port = colon_port[1:]
    return colon_port[:1] == ":" and 0 < len(port) <= 5 and port.isdigit() and int(port) <= 65535


__all__ = ["CHUNKED", "NO_BODY", "ORDINARY_NAMES", "Framing", "check_framing", "check_host", "parse_host"]
