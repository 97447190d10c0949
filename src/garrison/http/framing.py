"""Message framing and Host checks over parsed request headers (RFC 9112 §6, §3.2). No I/O here.

llhttp (httptools) parses first and already rejects much (tests/unit/http/test_llhttp_behaviour.py pins
what); these checks cover what it lets through and hold even if it loosens. Header values are taken
as llhttp hands them: leading whitespace already removed, trailing whitespace kept.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from garrison.errors import HttpError
from garrison.reasons import Reason

Header = tuple[bytes, bytes]

# RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|"
#                         / "~" / DIGIT / ALPHA
_TCHAR: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_OWS: Final = b" \t"
_OWS_FIRST: Final = frozenset((b" ", b"\t"))
_DIGITS: Final = b"0123456789"
# A Content-Length of 18 digits is < 10**18 bytes; anything longer is absurd, and the body limit is
# enforced elsewhere. It also keeps int() away from huge inputs.
_MAX_CL_DIGITS: Final = 18
# RFC 3986 §3.2.2 reg-name, restricted to what DNS names and IPv4 literals use; "%" (pct-encoded) and
# sub-delims are refused: no real client sends them in Host.
_HOST_CHARS: Final = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._"
# Lower-case names that are valid tokens and not framing headers: the per-name token check is skipped
# for them (the common case). Anything else, including any upper-case spelling, takes the full check.
_COMMON_NAMES: Final = frozenset(
    (
        b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"authorization",
        b"content-type", b"cookie", b"connection", b"cache-control", b"pragma", b"origin", b"referer",
        b"traceparent", b"tracestate", b"x-request-id", b"if-none-match", b"if-modified-since",
        b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip",
        b"sec-fetch-mode", b"sec-fetch-site", b"sec-fetch-dest", b"upgrade-insecure-requests", b"te",
        b"expect", b"range", b"if-match", b"dnt", b"x-api-key", b"x-correlation-id",
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Framing:
    """How the request body is delimited: by ``content_length`` bytes, by chunks, or absent (both unset)."""

    content_length: int | None
    chunked: bool

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
    for name, value in headers:
        values.append(value)
        if value[:1] in _OWS_FIRST:
            # RFC 9112 §5.2: obs-fold (a line starting with whitespace) is rejected, not unfolded.
            raise HttpError(reason=Reason.FRAMING_OBS_FOLD)
        if name in _COMMON_NAMES:
            continue
        if not name or name.translate(None, _TCHAR):
            raise HttpError(reason=Reason.BAD_HEADER)  # RFC 9110 §5.1: field-name = token
        lname = name.lower()
        if lname == b"content-length":
            cl.append(value)
        elif lname == b"transfer-encoding":
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
    if b"," in value:
        raise HttpError(reason=Reason.FRAMING_DUPLICATE_CONTENT_LENGTH)  # "5, 5": a list is a duplicate
    if not value or value.translate(None, _DIGITS) or len(value) > _MAX_CL_DIGITS:
        raise HttpError(reason=Reason.FRAMING_BAD_CONTENT_LENGTH)  # RFC 9110 §8.6: Content-Length = 1*DIGIT
    return Framing(int(value), False)


def check_host(headers: list[Header], *, target_host: str | None = None) -> str:
    """The request's host: lower-case, port and one trailing dot removed. Raises ``HttpError(BAD_HOST)``.

    RFC 9112 §3.2: a request with no Host, more than one, or an invalid one gets 400. With an
    absolute-form target (``target_host`` from ``paths.target_host``), the two must name the same host.
    """
    found: bytes | None = None
    for name, value in headers:
        if len(name) == 4 and (name == b"host" or name.lower() == b"host"):
            if found is not None:
                raise HttpError(reason=Reason.BAD_HOST)
            found = value
    if found is None:
        raise HttpError(reason=Reason.BAD_HOST)
    host = parse_host(found.strip(_OWS))
    if target_host is not None and target_host != host:
        raise HttpError(reason=Reason.BAD_HOST)  # RFC 9112 §3.2.2: never route by one and forward the other
    return host


def parse_host(value: bytes) -> str:
    """``uri-host [ ":" port ]`` (RFC 9110 §7.2) -> lower-case host without port or trailing dot."""
    if value[:1] == b"[":
        end = value.find(b"]")
        literal, rest = value[1:end], value[end + 1 :]
        if end == -1 or (rest and not _is_port(rest)):
            raise HttpError(reason=Reason.BAD_HOST)
        try:
            # RFC 3986 §3.2.2: IP-literal = "[" IPv6address "]" (IPvFuture is refused)
            return str(ipaddress.IPv6Address(literal.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            raise HttpError(reason=Reason.BAD_HOST) from None
    host, sep, port = value.partition(b":")
    if sep and not _is_port(sep + port):
        raise HttpError(reason=Reason.BAD_HOST)
    if host[-1:] == b".":
        host = host[:-1]  # "example.com." is the same DNS name as "example.com"
    if not host or host.translate(None, _HOST_CHARS) or b".." in host or host[:1] in (b".", b"-"):
        raise HttpError(reason=Reason.BAD_HOST)
    return host.decode("ascii").lower()


def _is_port(colon_port: bytes) -> bool:
    """``":" 1*5DIGIT`` in 0-65535. RFC 3986 allows an empty port; we do not."""
    port = colon_port[1:]
    return (
        colon_port[:1] == b":"
        and 0 < len(port) <= 5
        and not port.translate(None, _DIGITS)
        and int(port) <= 65535
    )


__all__ = ["CHUNKED", "NO_BODY", "Framing", "check_framing", "check_host", "parse_host"]
