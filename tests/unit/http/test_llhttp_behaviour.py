"""What llhttp (via httptools) rejects by itself, and what it lets through to our checks.

The server parses with httptools. These tests pin its strictness: if an upgrade loosens a rejection,
a test here fails. For everything it lets through, the same test shows which garrison check catches
it (framing, Host, target and path), so the two layers are tested as one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools
import pytest

from garrison.errors import HttpError
from garrison.http.framing import check_framing, check_host
from garrison.http.paths import normalize_path, split_target, target_host
from garrison.reasons import Reason


@dataclass
class Parsed:
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    headers_complete: bool = False
    messages: int = 0
    version: str = ""
    method: bytes = b""

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        (self.trailers if self.headers_complete else self.headers).append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.headers_complete = True

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.messages += 1


def parse(raw: bytes, *, bytewise: bool = False) -> Parsed:
    """Feed raw bytes to a fresh llhttp request parser; raises httptools.HttpParserError."""
    parsed = Parsed()
    parser = httptools.HttpRequestParser(parsed)
    for chunk in [raw[i : i + 1] for i in range(len(raw))] if bytewise else [raw]:
        parser.feed_data(chunk)
    parsed.version = parser.get_http_version()
    parsed.method = parser.get_method()
    return parsed


def garrison_verdict(p: Parsed) -> Reason | None:
    """Our hygiene checks in the order the server runs them; None if the request passes them all."""
    try:
        check_framing(p.headers, http_version=p.version)
        check_host(p.headers, target_host=target_host(p.url))
        normalize_path(split_target(p.url)[0])
    except HttpError as e:
        return e.reason
    return None


def req(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + body


POST = "POST / HTTP/1.1\nHost: a\n"
CHUNKED = POST + "Transfer-Encoding: chunked\n\n"

# -- rejected by llhttp itself -------------------------------------------------------------------------

REJECTED = [
    pytest.param(
        req(POST + "Content-Length: 5\nTransfer-Encoding: chunked\n\n", b"0\r\n\r\n"), id="cl-then-te"
    ),
    pytest.param(
        req(POST + "Transfer-Encoding: chunked\nContent-Length: 5\n\n", b"0\r\n\r\n"), id="te-then-cl"
    ),
    pytest.param(
        req("POST / HTTP/1.0\nTransfer-Encoding: chunked\nContent-Length: 3\n\n"), id="te-and-cl-http-1.0"
    ),
    pytest.param(
        req(POST + "Content-Length: 5\nContent-Length: 5\n\n", b"hello"), id="duplicate-cl-identical"
    ),
    pytest.param(
        req(POST + "Content-Length: 5\ncontent-length: 6\n\n", b"hello!"), id="duplicate-cl-differing"
    ),
    pytest.param(req(POST + "Content-Length: 5, 5\n\n", b"hello"), id="cl-list"),
    pytest.param(req(POST + "Content-Length: +5\n\n", b"hello"), id="cl-plus-sign"),
    pytest.param(req(POST + "Content-Length: -5\n\n", b"hello"), id="cl-negative"),
    pytest.param(req(POST + "Content-Length: 0x5\n\n", b"hello"), id="cl-hex"),
    pytest.param(req(POST + "Content-Length: \n\n", b"hello"), id="cl-empty"),
    pytest.param(req(POST + "Content-Length: 1 2\n\n", b"hello"), id="cl-space-inside"),
    pytest.param(req(POST + "Content-Length: 99999999999999999999999\n\n"), id="cl-overflow"),
    pytest.param(req(POST + "Transfer-Encoding: chunked, chunked\n\n", b"0\r\n\r\n"), id="te-chunked-twice"),
    pytest.param(req(POST + "Transfer-Encoding: chunked, gzip\n\n", b"0\r\n\r\n"), id="te-chunked-not-last"),
    pytest.param(req(POST + "Transfer-Encoding: xchunked\n\n", b"0\r\n\r\n"), id="te-xchunked"),
    pytest.param(req(POST + "Transfer-Encoding: gzip\n\n", b"abc"), id="te-without-chunked"),
    pytest.param(req(POST + "Transfer-Encoding: identity\n\n", b"abc"), id="te-identity"),
    pytest.param(req(POST + "Transfer-Encoding: chunked;q=1\n\n", b"0\r\n\r\n"), id="te-with-parameter"),
    pytest.param(req(POST + "Transfer-Encoding: chunked\t\n\n", b"0\r\n\r\n"), id="te-trailing-tab"),
    pytest.param(req(POST + "Transfer-Encoding: \n\n", b"0\r\n\r\n"), id="te-empty"),
    pytest.param(
        req(POST + "Transfer-Encoding: chunked\nTransfer-Encoding: gzip\n\n", b"0\r\n\r\n"),
        id="second-te-after-chunked",
    ),
    pytest.param(req(CHUNKED, b"ZZ\r\nhello\r\n0\r\n\r\n"), id="chunk-size-not-hex"),
    pytest.param(req(CHUNKED, b"FFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"), id="chunk-size-overflow"),
    pytest.param(req(CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n"), id="chunk-size-negative"),
    pytest.param(req(CHUNKED, b"0x5\r\nhello\r\n0\r\n\r\n"), id="chunk-size-0x-prefix"),
    pytest.param(req(CHUNKED, b"5 \r\nhello\r\n0\r\n\r\n"), id="chunk-size-trailing-space"),
    pytest.param(req(CHUNKED, b"5\nhello\n0\n\n"), id="chunk-size-bare-lf"),
    pytest.param(req(CHUNKED, b"5\r\nhello\n0\r\n\r\n"), id="chunk-data-bare-lf"),
    pytest.param(req(CHUNKED, b"5\r\nhelloXX0\r\n\r\n"), id="chunk-data-longer-than-size"),
    pytest.param(req(CHUNKED, b"5;\x01\r\nhello\r\n0\r\n\r\n"), id="chunk-extension-ctl"),
    pytest.param(req(CHUNKED, b"0\r\nContent-Length: 5\r\n\r\n"), id="content-length-trailer"),
    pytest.param(req("GET / HTTP/1.1\nHost: a\nX-A: b\n c\n\n"), id="obs-fold-space"),
    pytest.param(req("GET / HTTP/1.1\nHost: a\nX-A: b\n\tc\n\n"), id="obs-fold-tab"),
    pytest.param(req(POST + "Transfer-Encoding: gzip,\n chunked\n\n", b"0\r\n\r\n"), id="obs-fold-in-te"),
    pytest.param(b"GET / HTTP/1.1\nHost: a\n\n", id="bare-lf-line-endings"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", id="bare-lf-after-header"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\n", id="bare-lf-ending-head"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", id="bare-cr"),
    pytest.param(req("GET / HTTP/1.1\nHost : a\n\n"), id="space-before-colon"),
    pytest.param(req("GET / HTTP/1.1\nHost\t: a\n\n"), id="tab-before-colon"),
    pytest.param(
        req(POST + "Transfer-Encoding : chunked\nContent-Length: 5\n\n", b"hello"), id="te-space-colon"
    ),
    pytest.param(req("GET / HTTP/1.1\nHost: a\nX-A: b\x00c\n\n"), id="nul-in-value"),
    pytest.param(req("GET / HTTP/1.1\nHost: a\nX-A: b\x01c\n\n"), id="ctl-in-value"),
    pytest.param(req("GET / HTTP/1.1\nHost: a\nX-A: b\x7fc\n\n"), id="del-in-value"),
    pytest.param(req(POST + "Transfer-Encoding: \x0bchunked\n\n"), id="vertical-tab-in-te"),
    pytest.param(req("GET / HTTP/1.1\nHost: a\nX(A): b\n\n"), id="delimiter-in-name"),
    pytest.param(req("GET / HTTP/1.1\nHost: a\n: b\n\n"), id="empty-name"),
    pytest.param(req("GET / HTTP/1.1\nHost: a\nXA\n\n"), id="header-without-colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX\xffA: b\r\n\r\n", id="non-ascii-name"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX\x00A: b\r\n\r\n", id="nul-in-name"),
    pytest.param(req("GET / HTTP/1.1\n Host: a\n\n"), id="whitespace-before-first-header"),
    pytest.param(req("GET / HTTP/1.2\nHost: a\n\n"), id="http-1.2"),
    pytest.param(req("GET / http/1.1\nHost: a\n\n"), id="lower-case-protocol"),
    pytest.param(req("get / HTTP/1.1\nHost: a\n\n"), id="lower-case-method"),
    pytest.param(req("FOO / HTTP/1.1\nHost: a\n\n"), id="unknown-method"),
    pytest.param(req("GET /a b HTTP/1.1\nHost: a\n\n"), id="space-in-target"),
    pytest.param(req("GET /a\tb HTTP/1.1\nHost: a\n\n"), id="tab-in-target"),
    pytest.param(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", id="non-ascii-in-target"),
    pytest.param(req("GET /\x01 HTTP/1.1\nHost: a\n\n"), id="ctl-in-target"),
    pytest.param(req("GET /a\x7fb HTTP/1.1\nHost: a\n\n"), id="del-in-target"),
    pytest.param(b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", id="cr-in-target"),
    pytest.param(req("GET a/b HTTP/1.1\nHost: a\n\n"), id="target-without-slash"),
    pytest.param(req("GET ?a HTTP/1.1\nHost: a\n\n"), id="target-query-only"),
]


@pytest.mark.parametrize("raw", REJECTED)
def test_llhttp_rejects(raw: bytes) -> None:
    with pytest.raises(httptools.HttpParserError) as caught:
        parse(raw)
    assert not isinstance(caught.value, httptools.HttpParserUpgrade)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            req("GET / HTTP/1.1\nHost: a\nConnection: upgrade\nUpgrade: websocket\n\n"), id="upgrade"
        ),
        pytest.param(req("CONNECT example.com:443 HTTP/1.1\nHost: a\n\n"), id="connect"),
    ],
)
def test_llhttp_signals_upgrade_and_connect_by_exception(raw: bytes) -> None:
    # The server must catch HttpParserUpgrade itself and refuse: we do not tunnel.
    with pytest.raises(httptools.HttpParserUpgrade):
        parse(raw)


# -- let through by llhttp, caught by garrison ---------------------------------------------------------

LET_THROUGH = [
    pytest.param(
        req(POST + "Transfer-Encoding: gzip, chunked\n\n", b"0\r\n\r\n"),
        Reason.FRAMING_BAD_TRANSFER_ENCODING,
        id="te-gzip-then-chunked",
    ),
    pytest.param(
        req(POST + "Transfer-Encoding: gzip\nTransfer-Encoding: chunked\n\n", b"0\r\n\r\n"),
        Reason.FRAMING_BAD_TRANSFER_ENCODING,
        id="two-te-headers-chunked-last",
    ),
    pytest.param(
        req(POST + "Transfer-Encoding: ,chunked\n\n", b"0\r\n\r\n"),
        Reason.FRAMING_BAD_TRANSFER_ENCODING,
        id="te-empty-element-then-chunked",
    ),
    pytest.param(
        req("POST / HTTP/1.0\nHost: a\nTransfer-Encoding: chunked\n\n", b"0\r\n\r\n"),
        Reason.FRAMING_BAD_TRANSFER_ENCODING,
        id="te-in-http-1.0",
    ),
    pytest.param(
        req(POST + "Content-Length: 18446744073709551614\n\n"),
        Reason.FRAMING_BAD_CONTENT_LENGTH,
        id="cl-just-below-2-to-the-64",
    ),
    pytest.param(req("GET / HTTP/1.1\n\n"), Reason.BAD_HOST, id="missing-host"),
    pytest.param(req("GET / HTTP/1.1\nHost: a\nHost: b\n\n"), Reason.BAD_HOST, id="duplicate-host"),
    pytest.param(req("GET / HTTP/1.1\nHost: a/b\n\n"), Reason.BAD_HOST, id="slash-in-host"),
    pytest.param(
        req("GET http://b/x HTTP/1.1\nHost: a\n\n"), Reason.BAD_HOST, id="absolute-form-host-mismatch"
    ),
    pytest.param(req("OPTIONS * HTTP/1.1\nHost: a\n\n"), Reason.PATH_INVALID, id="asterisk-form"),
    pytest.param(req("GET /a#b HTTP/1.1\nHost: a\n\n"), Reason.PATH_INVALID, id="fragment-in-target"),
    pytest.param(req("GET /a%00b HTTP/1.1\nHost: a\n\n"), Reason.PATH_INVALID, id="encoded-nul-in-target"),
    pytest.param(req("GET /..%2fadmin HTTP/1.1\nHost: a\n\n"), Reason.PATH_ENCODED_SLASH, id="encoded-slash"),
    pytest.param(req("GET /../admin HTTP/1.1\nHost: a\n\n"), Reason.PATH_TRAVERSAL, id="traversal"),
]


@pytest.mark.parametrize(("raw", "reason"), LET_THROUGH)
def test_llhttp_lets_through_and_garrison_refuses(raw: bytes, reason: Reason) -> None:
    parsed = parse(raw)  # llhttp accepts...
    assert garrison_verdict(parsed) is reason  # ...and our checks do not


def test_clean_request_passes_both_layers() -> None:
    parsed = parse(req(POST + "Content-Length: 5\n\n", b"hello"))
    assert (parsed.body, parsed.messages, parsed.version) == (b"hello", 1, "1.1")
    assert garrison_verdict(parsed) is None


# -- let through, and handled elsewhere (documented facts the server relies on) -----------------------


@pytest.mark.parametrize(
    ("raw", "version"),
    [
        pytest.param(req("GET / HTTP/2.0\nHost: a\n\n"), "2.0", id="http-2.0-request-line"),
        pytest.param(req("GET /\n\n"), "0.9", id="http-0.9-request-line"),
        pytest.param(req("GET / HTTP/1.0\n\n"), "1.0", id="http-1.0"),
    ],
)
def test_llhttp_accepts_versions_the_server_must_check(raw: bytes, version: str) -> None:
    # The server answers anything but 1.0/1.1 with VERSION_NOT_SUPPORTED.
    assert parse(raw).version == version


def test_llhttp_removes_leading_ows_and_keeps_trailing_space() -> None:
    parsed = parse(req("GET / HTTP/1.1\nHost: a\nX-A:\t b \n\n"))
    assert (b"x-a", b"b ") in parsed.headers
    parsed = parse(req(POST + "Content-Length: 5 \n\n", b"hello"))
    assert (b"content-length", b"5 ") in parsed.headers
    assert check_framing(parsed.headers).content_length == 5


def test_llhttp_accepts_any_case_chunked_and_trailing_space() -> None:
    for te in ("CHUNKED", "chunked "):
        parsed = parse(req(POST + f"Transfer-Encoding: {te}\n\n", b"5\r\nhello\r\n0\r\n\r\n"))
        assert parsed.body == b"hello"
        assert check_framing(parsed.headers).chunked


def test_llhttp_accepts_leading_zeros_in_content_length() -> None:
    parsed = parse(req(POST + "Content-Length: 0005\n\n", b"hello"))
    assert parsed.body == b"hello"
    assert check_framing(parsed.headers).content_length == 5


def test_llhttp_accepts_a_2_to_the_64_minus_1_chunk_size() -> None:
    # Not an overflow for llhttp: the body-size limit (enforced while streaming) must stop it.
    parsed = parse(req(CHUNKED, b"FFFFFFFFFFFFFFFF\r\nhello"))
    assert parsed.body == b"hello"
    assert parsed.messages == 0


def test_llhttp_accepts_chunk_extensions_and_passes_no_callback_for_them() -> None:
    parsed = parse(req(CHUNKED, b'5;a="b"\r\nhello\r\n0\r\n\r\n'))
    assert (parsed.body, parsed.messages) == (b"hello", 1)


def test_llhttp_delivers_trailers_through_on_header_after_headers_complete() -> None:
    # The server must not read these as request headers (they come after on_headers_complete).
    parsed = parse(req(CHUNKED, b"0\r\nX-Garrison-Principal: evil\r\n\r\n"))
    assert parsed.trailers == [(b"x-garrison-principal", b"evil")]
    assert parsed.messages == 1


def test_llhttp_accepts_obs_text_in_values() -> None:
    parsed = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\xffc\r\n\r\n")
    assert (b"x-a", b"b\xffc") in parsed.headers
    assert garrison_verdict(parsed) is None


def test_llhttp_treats_underscore_names_as_ordinary_headers() -> None:
    parsed = parse(req(POST + "Transfer_Encoding: chunked\nContent-Length: 5\n\n", b"hello"))
    assert parsed.body == b"hello"  # framed by Content-Length; Transfer_Encoding is stripped as spoofable
    assert check_framing(parsed.headers).content_length == 5


def test_llhttp_accepts_lenient_request_line_spacing_and_leading_crlf() -> None:
    assert parse(req("GET  / HTTP/1.1\nHost: a\n\n")).url == b"/"
    assert parse(req("\nGET /x HTTP/1.1\nHost: a\n\n")).url == b"/x"


def test_llhttp_passes_unusual_target_characters_to_normalization() -> None:
    parsed = parse(req('GET /a\\b{c}|d^e`"<> HTTP/1.1\nHost: a\n\n'))
    assert parsed.url == b'/a\\b{c}|d^e`"<>'
    assert normalize_path(split_target(parsed.url)[0]) == "/a/b%7Bc%7D%7Cd%5Ee%60%22%3C%3E"


def test_llhttp_passes_absolute_form_unchanged() -> None:
    parsed = parse(req("GET http://a:8080/x?y HTTP/1.1\nHost: a\n\n"))
    assert parsed.url == b"http://a:8080/x?y"
    assert garrison_verdict(parsed) is None


def test_llhttp_url_and_headers_arrive_whole_when_fed_byte_by_byte() -> None:
    parsed = parse(req("GET /abc?d HTTP/1.1\nHost: abc\nX-Long-Name: value value\n\n"), bytewise=True)
    assert parsed.url == b"/abc?d"  # on_url may fire in pieces: the server must concatenate
    assert parsed.headers == [(b"host", b"abc"), (b"x-long-name", b"value value")]


def test_llhttp_parses_pipelined_requests_as_separate_messages() -> None:
    parsed = parse(req("GET /a HTTP/1.1\nHost: a\n\nGET /b HTTP/1.1\nHost: a\n\n"))
    assert parsed.messages == 2
