"""Stage (response side): DLP redaction of JSON bodies and masking of leaky error pages. Sans-IO.

The proxy asks ``body_limit(ctx, head)`` once the response head is in; when not None it buffers up to
that many bytes and calls ``transform_response(ctx, head, body)``: new bytes (``head`` already carries
the matching Content-Length/Content-Type) or None to send the original. Never raises on odd bodies.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar, Self

from garrison.dlp.leaks import LeakDetector
from garrison.dlp.models import DlpConfig
from garrison.dlp.redact import Redactor
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import ResponseHead, Stage
from garrison.pipeline.verdicts import CONTINUE, Verdict
from garrison.reasons import Reason

_STALE = frozenset({b"content-length", b"transfer-encoding", b"etag", b"content-md5", b"digest"})
_STREAM_TYPES = ("text/event-stream", "application/x-ndjson", "application/jsonl", "multipart/")


def _header(head: ResponseHead, name: bytes) -> bytes | None:
    for k, v in head.headers:
        if k == name:
            return v
    return None


def _media(head: ResponseHead) -> str:
    ct = _header(head, b"content-type") or b""
    return ct.split(b";", 1)[0].strip().decode("latin-1").lower()


def _is_json(mt: str) -> bool:
    return mt == "application/json" or mt.endswith("+json")


class ResponseDlp(Stage):
    """Per-route response protection. ``stats`` counts outcomes (redacted, masked, oversize, ...)."""

    name: ClassVar[str] = "dlp"
    sync: ClassVar[bool] = True
    enforcing: ClassVar[bool] = False
    Config: ClassVar[type[DlpConfig]] = DlpConfig

    __slots__ = ("detector", "max_body_bytes", "redactor", "stats", "streaming")

    def __init__(
        self,
        redactor: Redactor,
        detector: LeakDetector | None,
        *,
        max_body_bytes: int = 1_048_576,
        streaming: bool = False,
    ) -> None:
        super().__init__()
        self.redactor = redactor
        self.detector = detector
        self.max_body_bytes = max_body_bytes
        self.streaming = streaming
        self.stats: Counter[str] = Counter()

    @classmethod
    def build(cls, cfg: DlpConfig) -> Self:
        redactor = Redactor(
            cards=cfg.redact_cards, fields=cfg.fields, patterns=cfg.patterns, replacement=cfg.replacement
        )
        detector = LeakDetector(cfg.leak_scan_bytes) if cfg.mask_error_pages else None
        return cls(redactor, detector, max_body_bytes=cfg.max_body_bytes, streaming=cfg.streaming)

    def check(self, ctx: RequestContext) -> Verdict:
        return CONTINUE

    def body_limit(self, ctx: RequestContext, head: ResponseHead) -> int | None:
        """Bytes to buffer for ``transform_response``, or None: stream the response untouched."""
        if ctx.method == "HEAD" or head.status in (204, 304) or head.status < 200:
            return None
        encoding = _header(head, b"content-encoding")
        if encoding is not None and encoding.strip().lower() != b"identity":
            self.stats["encoded_untouched"] += 1  # compressed: we never decode; nothing to inspect
            return None
        mt = _media(head)
        wanted = (self.redactor.active and _is_json(mt)) or (self.detector is not None and head.status >= 400)
        if not wanted:
            return None
        length = _header(head, b"content-length")
        if length is None or mt.startswith(_STREAM_TYPES):
            if not self.streaming:
                self.stats["streaming_untouched"] += 1
                return None
        elif not length.strip().isdigit() or int(length) > self.max_body_bytes:
            self.stats["oversize_untouched"] += 1
            return None
        return self.max_body_bytes

    def transform_response(self, ctx: RequestContext, head: ResponseHead, body: bytes) -> bytes | None:
        """The body to send instead (``head`` updated), or None to send ``body`` as it is."""
        if len(body) > self.max_body_bytes:
            self.stats["oversize_untouched"] += 1
            return None
        if self.detector is not None and head.status >= 400:
            kind = self.detector.find(body)
            if kind is not None:
                self.stats[f"masked_{kind}"] += 1
                new = b'{"error":"%s","request_id":"%s"}' % (
                    Reason.UPSTREAM_ERROR_MASKED.value.encode(),
                    ctx.request_id.encode(),
                )
                self._set_body(head, new, b"application/json")
                return new
        if not (self.redactor.active and _is_json(_media(head))):
            return None
        redacted = self.redactor.redact(body)
        if redacted is None:
            return None
        self.stats["redacted"] += 1
        self._set_body(head, redacted, None)
        return redacted

    @staticmethod
    def _set_body(head: ResponseHead, body: bytes, content_type: bytes | None) -> None:
        kept = [
            (k, v)
            for k, v in head.headers
            if k not in _STALE and (content_type is None or k != b"content-type")
        ]
        if content_type is not None:
            kept.append((b"content-type", content_type))
        kept.append((b"content-length", str(len(body)).encode()))
        head.headers[:] = kept

    def __repr__(self) -> str:
        return f"<ResponseDlp {self.redactor!r} leaks={self.detector is not None}>"


__all__ = ["ResponseDlp"]
