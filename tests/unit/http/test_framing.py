"""Framing (RFC 9112 §6) and Host (RFC 9112 §3.2) checks over parsed headers."""

from __future__ import annotations

import pytest

from garrison.errors import HttpError
from garrison.http.framing import CHUNKED, NO_BODY, Framing, check_framing, check_host, parse_host
from garrison.reasons import Reason

Headers = list[tuple[bytes, bytes]]
BASE: Headers = [(b"host", b"example.com"), (b"user-agent", b"test"), (b"accept", b"*/*")]


def framing_reason(headers: Headers, **kwargs: str) -> Reason:
    with pytest.raises(HttpError) as caught:
        check_framing(headers, **kwargs)
    return caught.value.reason


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param([], NO_BODY, id="no-body-headers-means-no-body"),
        pytest.param([(b"content-length", b"0")], Framing(0, False), id="zero-length"),
        pytest.param([(b"content-length", b"42")], Framing(42, False), id="content-length"),
        pytest.param([(b"Content-Length", b"42")], Framing(42, False), id="content-length-any-case"),
        pytest.param([(b"content-length", b"42 ")], Framing(42, False), id="content-length-trailing-ows"),
        pytest.param([(b"content-length", b"007")], Framing(7, False), id="content-length-leading-zeros"),
        pytest.param(
            [(b"content-length", b"9" * 18)], Framing(10**18 - 1, False), id="content-length-18-digits"
        ),
        pytest.param([(b"transfer-encoding", b"chunked")], CHUNKED, id="chunked"),
        pytest.param([(b"Transfer-Encoding", b"CHUNKED")], CHUNKED, id="chunked-any-case"),
        pytest.param([(b"transfer-encoding", b"chunked \t")], CHUNKED, id="chunked-trailing-ows"),
    ],
)
def test_accepts(extra: Headers, expected: Framing) -> None:
    assert check_framing(BASE + extra) == expected


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        pytest.param(
            [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")],
            Reason.FRAMING_CL_TE,
            id="cl-and-te-both-present",
        ),
        pytest.param(
            [(b"transfer-encoding", b"chunked"), (b"Content-Length", b"5")],
            Reason.FRAMING_CL_TE,
            id="te-then-cl-any-case",
        ),
        pytest.param(
            [(b"content-length", b"5"), (b"content-length", b"5")],
            Reason.FRAMING_DUPLICATE_CONTENT_LENGTH,
            id="duplicate-identical-content-length",
        ),
        pytest.param(
            [(b"content-length", b"5"), (b"Content-Length", b"6")],
            Reason.FRAMING_DUPLICATE_CONTENT_LENGTH,
            id="duplicate-different-content-length",
        ),
        pytest.param(
            [(b"content-length", b"5, 5")], Reason.FRAMING_DUPLICATE_CONTENT_LENGTH, id="content-length-list"
        ),
        pytest.param(
            [(b"content-length", b"")], Reason.FRAMING_BAD_CONTENT_LENGTH, id="empty-content-length"
        ),
        pytest.param(
            [(b"content-length", b"+5")], Reason.FRAMING_BAD_CONTENT_LENGTH, id="signed-content-length"
        ),
        pytest.param(
            [(b"content-length", b"-1")], Reason.FRAMING_BAD_CONTENT_LENGTH, id="negative-content-length"
        ),
        pytest.param(
            [(b"content-length", b"0x10")], Reason.FRAMING_BAD_CONTENT_LENGTH, id="hex-content-length"
        ),
        pytest.param(
            [(b"content-length", b"1 2")], Reason.FRAMING_BAD_CONTENT_LENGTH, id="space-inside-length"
        ),
        pytest.param(
            [(b"content-length", b"\xd9\xa1")], Reason.FRAMING_BAD_CONTENT_LENGTH, id="non-ascii-digit"
        ),
        pytest.param(
            [(b"content-length", b"1" * 19)],
            Reason.FRAMING_BAD_CONTENT_LENGTH,
            id="absurdly-long-content-length",
        ),
        pytest.param(
            [(b"transfer-encoding", b"gzip, chunked")],
            Reason.FRAMING_BAD_TRANSFER_ENCODING,
            id="gzip-then-chunked",
        ),
        pytest.param(
            [(b"transfer-encoding", b"chunked, chunked")],
            Reason.FRAMING_BAD_TRANSFER_ENCODING,
            id="chunked-twice-in-one-header",
        ),
        pytest.param(
            [(b"transfer-encoding", b"xchunked")], Reason.FRAMING_BAD_TRANSFER_ENCODING, id="xchunked"
        ),
        pytest.param(
            [(b"transfer-encoding", b"chunked;q=1")],
            Reason.FRAMING_BAD_TRANSFER_ENCODING,
            id="chunked-with-parameter",
        ),
        pytest.param(
            [(b"transfer-encoding", b",chunked")],
            Reason.FRAMING_BAD_TRANSFER_ENCODING,
            id="empty-list-element",
        ),
        pytest.param(
            [(b"transfer-encoding", b"gzip"), (b"transfer-encoding", b"chunked")],
            Reason.FRAMING_BAD_TRANSFER_ENCODING,
            id="two-transfer-encoding-headers",
        ),
        pytest.param(
            [(b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"chunked")],
            Reason.FRAMING_BAD_TRANSFER_ENCODING,
            id="two-identical-transfer-encoding-headers",
        ),
        pytest.param([(b"transfer-encoding", b"")], Reason.FRAMING_BAD_TRANSFER_ENCODING, id="empty-te"),
        pytest.param(
            [(b"transfer-encoding", b"identity")], Reason.FRAMING_BAD_TRANSFER_ENCODING, id="identity"
        ),
        pytest.param([(b"x-a", b"b\r\nx-injected: 1")], Reason.BAD_HEADER, id="crlf-in-value"),
        pytest.param([(b"x-a", b"b\nc")], Reason.BAD_HEADER, id="lf-in-value"),
        pytest.param([(b"x-a", b"b\rc")], Reason.BAD_HEADER, id="cr-in-value"),
        pytest.param([(b"x-a", b"b\x00c")], Reason.BAD_HEADER, id="nul-in-value"),
        pytest.param([(b"authorization", b"Bearer x\r\n")], Reason.BAD_HEADER, id="crlf-in-common-header"),
        pytest.param([(b"x a", b"b")], Reason.BAD_HEADER, id="space-in-name"),
        pytest.param([(b"x-a:", b"b")], Reason.BAD_HEADER, id="colon-in-name"),
        pytest.param([(b"x(a)", b"b")], Reason.BAD_HEADER, id="delimiter-in-name"),
        pytest.param([(b"", b"b")], Reason.BAD_HEADER, id="empty-name"),
        pytest.param([(b"x-\xffa", b"b")], Reason.BAD_HEADER, id="non-ascii-name"),
        pytest.param([(b"x-a", b" folded")], Reason.FRAMING_OBS_FOLD, id="value-starts-with-space"),
        pytest.param([(b"x-a", b"\tfolded")], Reason.FRAMING_OBS_FOLD, id="value-starts-with-tab"),
        pytest.param(
            [(b"transfer-encoding", b" chunked")], Reason.FRAMING_OBS_FOLD, id="folded-transfer-encoding"
        ),
    ],
)
def test_refuses(extra: Headers, reason: Reason) -> None:
    assert framing_reason(BASE + extra) is reason


def test_transfer_encoding_in_http_1_0_is_faulty_framing() -> None:
    # RFC 9112 §6.1; llhttp accepts it (test_llhttp_behaviour.py), so this check is ours.
    headers = [*BASE, (b"transfer-encoding", b"chunked")]
    assert framing_reason(headers, http_version="1.0") is Reason.FRAMING_BAD_TRANSFER_ENCODING
    assert check_framing(headers, http_version="1.1") == CHUNKED


def test_content_length_in_http_1_0_is_accepted() -> None:
    assert check_framing([(b"content-length", b"3")], http_version="1.0") == Framing(3, False)


def test_obs_text_in_a_value_is_allowed() -> None:
    assert check_framing([(b"x-name", "Zoë".encode("latin-1"))]) == NO_BODY


def test_framing_repr_names_the_framing() -> None:
    assert repr(Framing(3, False)) == "<Framing content-length=3>"
    assert repr(CHUNKED) == "<Framing chunked>"
    assert repr(NO_BODY) == "<Framing none>"


# -- Host --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host"),
    [
        pytest.param(b"example.com", "example.com", id="name"),
        pytest.param(b"API.Example.COM", "api.example.com", id="lower-cased"),
        pytest.param(b"example.com:8443", "example.com", id="port-removed"),
        pytest.param(b"example.com.", "example.com", id="trailing-dot-removed"),
        pytest.param(b"example.com ", "example.com", id="trailing-ows-ignored"),
        pytest.param(b"10.0.0.1:80", "10.0.0.1", id="ipv4"),
        pytest.param(b"[::1]:8080", "::1", id="ipv6-with-port"),
        pytest.param(b"[2001:DB8::1]", "2001:db8::1", id="ipv6-canonical"),
        pytest.param(b"my_host", "my_host", id="underscore"),
    ],
)
def test_check_host(value: bytes, host: str) -> None:
    assert check_host([(b"accept", b"*/*"), (b"Host", value)]) == host


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([], id="missing"),
        pytest.param([(b"host", b"a.com"), (b"host", b"a.com")], id="duplicated-identical"),
        pytest.param([(b"host", b"a.com"), (b"HOST", b"b.com")], id="duplicated-any-case"),
        pytest.param([(b"host", b"")], id="empty"),
        pytest.param([(b"host", b"a.com:")], id="empty-port"),
        pytest.param([(b"host", b"a.com:99999")], id="port-out-of-range"),
        pytest.param([(b"host", b"a.com:80x")], id="port-not-digits"),
        pytest.param([(b"host", b"a.com:1:2")], id="two-ports"),
        pytest.param([(b"host", b"user@a.com")], id="userinfo"),
        pytest.param([(b"host", b"a.com/evil")], id="path-in-host"),
        pytest.param([(b"host", b"a..com")], id="empty-label"),
        pytest.param([(b"host", b".a.com")], id="leading-dot"),
        pytest.param([(b"host", b"a com")], id="space"),
        pytest.param([(b"host", b"::1")], id="ipv6-without-brackets"),
        pytest.param([(b"host", b"[::1")], id="unclosed-bracket"),
        pytest.param([(b"host", b"[nothex]")], id="bad-ipv6"),
        pytest.param([(b"host", b"[::1]x")], id="junk-after-ipv6"),
        pytest.param([(b"host", b"a%2ecom")], id="percent-encoded"),
    ],
)
def test_check_host_refuses(headers: Headers) -> None:
    with pytest.raises(HttpError) as caught:
        check_host(headers)
    assert caught.value.reason is Reason.BAD_HOST


def test_absolute_form_host_must_agree_with_host_header() -> None:
    headers = [(b"host", b"public.example.com")]
    assert check_host(headers, target_host="public.example.com") == "public.example.com"
    with pytest.raises(HttpError) as caught:
        check_host(headers, target_host="admin.internal")
    assert caught.value.reason is Reason.BAD_HOST


def test_parse_host_is_the_shared_syntax() -> None:
    assert parse_host(b"Example.com:1") == "example.com"
