"""Path normalization and request-target splitting: the bypass table, then properties."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from garrison.errors import HttpError
from garrison.http.paths import normalize_path, split_target, target_host
from garrison.reasons import Reason


def reason_of(raw: bytes) -> Reason:
    with pytest.raises(HttpError) as caught:
        normalize_path(raw)
    return caught.value.reason


# -- the bypass list: each spelling either normalizes to the protected path or is refused -------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"/admin", "/admin", id="plain-path-is-unchanged"),
        pytest.param(b"/api/v1/items", "/api/v1/items", id="clean-path-takes-fast-path"),
        pytest.param(b"//admin", "/admin", id="double-slash-collapses"),
        pytest.param(b"/a//b///c", "/a/b/c", id="runs-of-slashes-collapse"),
        pytest.param(b"/./admin", "/admin", id="dot-segment-removed"),
        pytest.param(b"/%61dmin", "/admin", id="encoded-unreserved-letter-decoded"),
        pytest.param(b"/%7Euser", "/~user", id="encoded-tilde-decoded"),
        pytest.param(b"/public/../admin", "/admin", id="dot-dot-inside-root-resolved"),
        pytest.param(b"/admin;x=1", "/admin", id="path-parameter-stripped"),
        pytest.param(b"/admin;", "/admin", id="empty-path-parameter-stripped"),
        pytest.param(b"/admin;x=1/y", "/admin/y", id="parameter-stripped-in-middle-segment"),
        pytest.param(b"/public/..;/admin", "/admin", id="tomcat-dot-dot-semicolon-resolved"),
        pytest.param(b"/;x/admin", "/admin", id="segment-of-only-parameters-dropped"),
        pytest.param(b"/ADMIN", "/ADMIN", id="case-is-kept-for-the-router"),
        pytest.param(b"/a/%2E./admin", "/admin", id="mixed-encoded-dot-dot-resolved"),
        pytest.param(b"/a/%2e%2e/admin", "/admin", id="encoded-dot-dot-inside-root-resolved"),
        pytest.param(b"/a/.%2e/b", "/b", id="half-encoded-dot-dot-resolved"),
        pytest.param(b"\\admin", "/admin", id="leading-backslash-read-as-slash"),
        pytest.param(b"/public\\..\\admin", "/admin", id="backslash-dot-dot-resolved"),
        pytest.param(b"/a/", "/a/", id="trailing-slash-kept"),
        pytest.param(b"/a/.", "/a/", id="trailing-dot-leaves-slash"),
        pytest.param(b"/a/b/..", "/a/", id="trailing-dot-dot-leaves-slash"),
        pytest.param(b"/a/..", "/", id="dot-dot-to-root"),
        pytest.param(b"/a/;x", "/a/", id="trailing-parameter-segment-leaves-slash"),
        pytest.param(b"", "/", id="empty-path-is-root"),
        pytest.param(b"/", "/", id="root"),
        pytest.param(b"/a%3fb", "/a%3Fb", id="reserved-escape-upper-cased"),
        pytest.param(b"/a%3Bb", "/a%3Bb", id="encoded-semicolon-is-data-not-a-parameter"),
        pytest.param(b"/%252e%252e/admin", "/%252e%252e/admin", id="double-encoding-decoded-once-only"),
        pytest.param(b"/a{b}|c", "/a%7Bb%7D%7Cc", id="printable-non-pchar-percent-encoded"),
        pytest.param("/café".encode(), "/caf%C3%A9", id="non-ascii-percent-encoded"),
        pytest.param(b"/.well-known/jwks.json", "/.well-known/jwks.json", id="dot-prefixed-name-kept"),
        pytest.param(b"/a/...", "/a/...", id="three-dots-is-a-name"),
        pytest.param(b"/a..b/c", "/a..b/c", id="dots-inside-a-name-kept"),
        pytest.param(b"/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,=", id="sub-delims-colon-at-kept"),
    ],
)
def test_normalizes(raw: bytes, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"/public/..%2fadmin", Reason.PATH_ENCODED_SLASH, id="encoded-slash-lower"),
        pytest.param(b"/a%2Fb", Reason.PATH_ENCODED_SLASH, id="encoded-slash-upper"),
        pytest.param(b"/a%5cb", Reason.PATH_ENCODED_SLASH, id="encoded-backslash"),
        pytest.param(b"/..", Reason.PATH_TRAVERSAL, id="dot-dot-above-root"),
        pytest.param(b"/a/../..", Reason.PATH_TRAVERSAL, id="second-dot-dot-above-root"),
        pytest.param(b"/%2e%2e/admin", Reason.PATH_TRAVERSAL, id="encoded-dot-dot-above-root"),
        pytest.param(b"/..;/admin", Reason.PATH_TRAVERSAL, id="dot-dot-with-parameter-above-root"),
        pytest.param(b"\\..\\admin", Reason.PATH_TRAVERSAL, id="backslash-dot-dot-above-root"),
        pytest.param(b"/a%zz", Reason.PATH_INVALID, id="non-hex-escape"),
        pytest.param(b"/a%4", Reason.PATH_INVALID, id="truncated-escape"),
        pytest.param(b"/a%", Reason.PATH_INVALID, id="bare-percent"),
        pytest.param(b"/%u002e%u002e/admin", Reason.PATH_INVALID, id="iis-unicode-escape"),
        pytest.param(b"/a%00.json", Reason.PATH_INVALID, id="encoded-nul"),
        pytest.param(b"/a%0d%0aSet-Cookie:x", Reason.PATH_INVALID, id="encoded-crlf"),
        pytest.param(b"/a\x00", Reason.PATH_INVALID, id="raw-nul"),
        pytest.param(b"/a b", Reason.PATH_INVALID, id="raw-space"),
        pytest.param(b"/a\tb", Reason.PATH_INVALID, id="raw-tab"),
        pytest.param(b"/a\x7f", Reason.PATH_INVALID, id="raw-del"),
        pytest.param(b"admin", Reason.PATH_INVALID, id="no-leading-slash"),
        pytest.param(b"/..%3bx/admin", Reason.PATH_INVALID, id="dot-dot-hidden-behind-encoded-semicolon"),
        pytest.param(b"/a/.%3B/b", Reason.PATH_INVALID, id="dot-hidden-behind-encoded-semicolon"),
    ],
)
def test_refuses(raw: bytes, reason: Reason) -> None:
    assert reason_of(raw) is reason


def test_fast_path_returns_an_equal_string_for_clean_paths() -> None:
    assert normalize_path(b"/api/v1/items/42") == "/api/v1/items/42"


# -- split_target and target_host --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path", "query"),
    [
        pytest.param(b"/a/b?x=1&y=2", b"/a/b", b"x=1&y=2", id="origin-form-with-query"),
        pytest.param(b"/a/b", b"/a/b", b"", id="origin-form-without-query"),
        pytest.param(b"/a?", b"/a", b"", id="empty-query"),
        pytest.param(b"/a?b?c", b"/a", b"b?c", id="second-question-mark-belongs-to-query"),
        pytest.param(b"http://example.com/a?q", b"/a", b"q", id="absolute-form"),
        pytest.param(b"HTTPS://Example.com:8443/a", b"/a", b"", id="absolute-form-scheme-any-case"),
        pytest.param(b"http://example.com", b"/", b"", id="absolute-form-empty-path-is-root"),
        pytest.param(b"http://example.com?q=1", b"/", b"q=1", id="absolute-form-query-without-path"),
        pytest.param(b"http://[::1]:8080/a", b"/a", b"", id="absolute-form-ipv6"),
    ],
)
def test_split_target(raw: bytes, path: bytes, query: bytes) -> None:
    assert split_target(raw) == (path, query)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"*", id="asterisk-form"),
        pytest.param(b"example.com:443", id="authority-form"),
        pytest.param(b"/a#frag", id="fragment-in-origin-form"),
        pytest.param(b"http://example.com/a#frag", id="fragment-in-absolute-form"),
        pytest.param(b"ftp://example.com/a", id="other-scheme"),
        pytest.param(b"http://user:pw@example.com/a", id="userinfo"),
        pytest.param(b"http:///a", id="absolute-form-without-host"),
        pytest.param(b"http://exa mple.com/a", id="absolute-form-bad-host"),
        pytest.param(b"", id="empty-target"),
    ],
)
def test_split_target_refuses(raw: bytes) -> None:
    with pytest.raises(HttpError) as caught:
        split_target(raw)
    assert caught.value.reason is Reason.PATH_INVALID


def test_target_host_of_absolute_form_is_lower_case_without_port() -> None:
    assert target_host(b"http://API.Example.com:8080/x") == "api.example.com"
    assert target_host(b"/x") is None


# -- properties ----------------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    ["/", "//", ".", "..", "a", "B", "%2e", "%2E", "%2f", "%5c", "%41", "%7e", "%3f", "%3b", "%25", "%",
     "%zz", "%0", ";", ";x=1", "\\", "~", "-", "é", " ", "?", "{", ":", "@", "%00", "%C3%A9"]
)  # fmt: skip
_RAW_PATHS = st.lists(_PIECES, max_size=12).map(lambda parts: ("/" + "".join(parts)).encode())


def _normalized_or_none(raw: bytes) -> str | None:
    try:
        return normalize_path(raw)
    except HttpError:
        return None


@settings(max_examples=300, deadline=None)
@given(_RAW_PATHS)
def test_normalize_is_idempotent(raw: bytes) -> None:
    once = _normalized_or_none(raw)
    if once is not None:
        assert normalize_path(once.encode("ascii")) == once


@settings(max_examples=300, deadline=None)
@given(_RAW_PATHS)
def test_output_has_no_ambiguous_spelling(raw: bytes) -> None:
    out = _normalized_or_none(raw)
    if out is None:
        return
    assert out.startswith("/")
    assert out.isascii()
    for bad in ("//", "/./", "/../", ";", "\\"):
        assert bad not in out
    assert not out.endswith(("/.", "/.."))
    assert re.fullmatch(r"(%[0-9A-F]{2}|[A-Za-z0-9\-._~!$&'()*+,=:@/])*", out), out


@settings(max_examples=300, deadline=None)
@given(_RAW_PATHS)
def test_output_never_decodes_to_a_dot_segment(raw: bytes) -> None:
    # A backend that percent-decodes once and then cuts ";params" must not see "." or "..".
    out = _normalized_or_none(raw)
    if out is None:
        return
    decoded = unquote(out)
    assert "/../" not in decoded + "/"
    for segment in decoded.split("/"):
        assert segment.split(";")[0] not in (".", "..")
