"""Request-target splitting and the one path normalization, done before any match (ARCHITECTURE §2, §9).

The normalized path is both matched and forwarded upstream, so every backend sees exactly what the
router and the policy saw. Pure functions; no I/O here, nothing compiled per request.
"""

from __future__ import annotations

from typing import Final

from garrison.errors import HttpError
from garrison.reasons import Reason

# RFC 3986 §2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
_UNRESERVED: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
# RFC 3986 §3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@"; plus "/" between segments.
# ";" (a sub-delim) is left out: it starts a path parameter, which is stripped (slow path).
_FAST_OK: Final = _UNRESERVED + b"!$&'()*+,=:@/"
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
# Maps every byte outside _FAST_OK to "%", which the fast path refuses: one C-level pass, no Python loop.
_FAST_MARK: Final = bytes(b if b in _FAST_OK else 0x25 for b in range(256))


def _byte_actions() -> tuple[str | None, ...]:
    """What a raw (not percent-encoded) path byte becomes: itself, ``%XX``, ``/``, or None (reject)."""
    table: list[str | None] = []
    for b in range(256):
        if b in _FAST_OK or b == 0x3B:  # ";" is kept here; parameters are cut per segment later
            table.append(chr(b))
        elif b == 0x5C:
            # A raw backslash is read as "/" (IIS, some Java and Windows servers do the same). The
            # normalized path is what goes upstream, so the upstream sees "/" too: no split view.
            table.append("/")
        elif b <= 0x20 or b == 0x7F:
            table.append(None)  # RFC 3986 §2: CTLs and SP are never allowed raw
        else:
            # Printable gaps ('"<>?#[]^`{|}') and non-ASCII bytes: percent-encode (RFC 3986 §2.1, §6.2.2.1:
            # equivalent for any compliant server, and keeps the output plain ASCII).
            table.append(f"%{b:02X}")
    return tuple(table)


_RAW: Final = _byte_actions()


def _escape_actions() -> tuple[str | Reason, ...]:
    """What ``%XX`` becomes, by the decoded byte: the char (unreserved), ``%XX`` upper-cased, or a Reason."""
    table: list[str | Reason] = []
    for b in range(256):
        if b in _UNRESERVED:
            table.append(chr(b))  # RFC 3986 §6.2.2.2: decode percent-encoded unreserved characters
        elif b in (0x2F, 0x5C):
            table.append(Reason.PATH_ENCODED_SLASH)  # %2F / %5C: a segment boundary a backend may decode
        elif b < 0x20 or b == 0x7F:
            table.append(Reason.PATH_INVALID)  # %00 (truncation), %0D%0A (splitting), other CTLs
        else:
            table.append(f"%{b:02X}")  # RFC 3986 §6.2.2.1: upper-case the hex digits
    return tuple(table)


_ESCAPE: Final = _escape_actions()


def split_target(raw_target: bytes) -> tuple[bytes, bytes]:
    """Split a request-target into (raw path, raw query without '?').

    Origin-form (RFC 9112 §3.2.1) must start with "/"; absolute-form (§3.2.2) gives its path and query
    (an empty path becomes "/"); its host is read with :func:`target_host`. Asterisk-form (§3.2.4),
    authority-form (§3.2.3) and any fragment raise ``HttpError(PATH_INVALID)``.
    """
    if raw_target[:1] != b"/":
        return _split_absolute(raw_target)[1:]
    if 0x23 in raw_target:  # "#"; an int test is a plain memchr, a bytes one is several times slower
        raise HttpError(reason=Reason.PATH_INVALID)  # RFC 9112 §3.2: a request-target has no fragment
    path, _, query = raw_target.partition(b"?")
    return path, query


def target_host(raw_target: bytes) -> str | None:
    """Host (lower-case, no port) of an absolute-form target, or None for origin-form.

    RFC 9112 §3.2.2: a server receiving absolute-form MUST use this host and ignore Host; pass it to
    ``check_host(..., target_host=...)``, which requires the two to agree.
    """
    if raw_target[:1] == b"/":
        return None
    return _split_absolute(raw_target)[0]


def _split_absolute(raw_target: bytes) -> tuple[str, bytes, bytes]:
    from garrison.http.framing import parse_host  # framing owns host syntax; imported late: no cycle

    scheme, sep, rest = raw_target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https") or 0x23 in rest:
        # "*" (asterisk-form), "host:443" (authority-form) and anything else land here.
        raise HttpError(reason=Reason.PATH_INVALID)
    cut = len(rest)
    for delim in (b"/", b"?"):
        i = rest.find(delim)
        if i != -1 and i < cut:
            cut = i
    authority, path_query = rest[:cut], rest[cut:]
    if b"@" in authority:
        raise HttpError(reason=Reason.PATH_INVALID)  # RFC 9110 §4.2.4: userinfo is not allowed in http(s)
    try:
        host = parse_host(authority)
    except HttpError:
        raise HttpError(reason=Reason.PATH_INVALID) from None
    path, _, query = path_query.partition(b"?")
    return host, path or b"/", query


def normalize_path(raw_path: bytes) -> str:
    """Normalize a raw path once; the result is matched and forwarded. Raises ``HttpError``.

    - percent-encoded unreserved characters are decoded and every other escape upper-cased
      (RFC 3986 §6.2.2.1-2); ``%2F``/``%5C`` raise PATH_ENCODED_SLASH, an invalid escape or an encoded
      control (``%00``, ``%0A``) PATH_INVALID; an escape is decoded once only (``%252e`` stays ``%252e``);
    - raw control characters and space raise PATH_INVALID; other bytes outside RFC 3986 ``pchar``
      (``"<>[]^`{|}``, non-ASCII) are percent-encoded; a raw backslash is read, and forwarded, as ``/``;
    - ``;params`` are cut from every segment, empty segments collapsed (``//`` -> ``/``);
    - dot segments are removed (RFC 3986 §5.2.4), including those spelled ``%2e``; a ``..`` above the
      root raises PATH_TRAVERSAL (never clamped);
    - a trailing slash is kept; the empty path is ``/``. Case is kept (case is the router's business).
    """
    # Fast path: only pchar bytes, no ';' '%' '\' and no "/." or "//"; the path is returned unchanged.
    path = raw_path.translate(_FAST_MARK).decode("latin-1")
    if "%" not in path and "/." not in path and "//" not in path and path[:1] == "/":
        return path
    if not raw_path:
        return "/"
    if raw_path[:1] not in (b"/", b"\\"):
        raise HttpError(reason=Reason.PATH_INVALID)  # RFC 9112 §3.2.1: origin-form starts with "/"
    return _remove_dot_segments(_decode(raw_path))


def _decode(raw_path: bytes) -> str:
    """Validate bytes and escapes; decode unreserved escapes; map raw bytes per ``_RAW``."""
    out: list[str] = []
    first, *escaped = raw_path.split(b"%")
    _append_raw(out, first)
    for part in escaped:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            raise HttpError(reason=Reason.PATH_INVALID)  # RFC 3986 §2.1: pct-encoded = "%" HEXDIG HEXDIG
        action = _ESCAPE[int(part[:2], 16)]
        if isinstance(action, Reason):
            raise HttpError(reason=action)
        out.append(action)
        _append_raw(out, part[2:])
    return "".join(out)


def _append_raw(out: list[str], chunk: bytes) -> None:
    if not chunk.translate(None, _FAST_OK):
        out.append(chunk.decode("ascii"))
        return
    for b in chunk:
        action = _RAW[b]
        if action is None:
            raise HttpError(reason=Reason.PATH_INVALID)
        out.append(action)


def _remove_dot_segments(decoded: str) -> str:
    """RFC 3986 §5.2.4 over segments whose ``;params`` are cut; empty segments dropped."""
    kept: list[str] = []
    segments = decoded.split("/")
    last = len(segments) - 1
    trailing_slash = False
    for i, seg in enumerate(segments):
        if ";" in seg:
            seg = seg[: seg.index(";")]  # "/admin;x=1" and "/..;/" are read as "/admin" and "/../"
        if seg in ("", ".", ".."):
            if seg == "..":
                if not kept:
                    raise HttpError(reason=Reason.PATH_TRAVERSAL)  # above the root: reject, never clamp
                kept.pop()
            trailing_slash = i == last  # "/a/", "/a/." and "/a/b/.." all end in "/"
            continue
        if seg[0] == "." and _is_disguised_dot_segment(seg):
            raise HttpError(reason=Reason.PATH_INVALID)
        kept.append(seg)
    if not kept:
        return "/"
    return "/" + "/".join(kept) + ("/" if trailing_slash else "")


def _is_disguised_dot_segment(seg: str) -> bool:
    """True for "..%3Bx" and the like: a backend that decodes, then cuts ";params", reads a dot segment."""
    head = seg.split("%3B", 1)[0]
    return head in (".", "..") and head != seg


__all__ = ["normalize_path", "split_target", "target_host"]
