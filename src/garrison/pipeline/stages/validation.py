"""Stage: request validation (JSON Schema / OpenAPI, JSON-bomb limits). Sans-IO; the proxy buffers.

``check`` (in the chain) validates what needs no body: operation, path/query/header parameters,
Content-Length against the limit, Content-Type. When ``body_limit(ctx)`` is not None the proxy buffers
at most that many bytes and calls ``validate_request(ctx, body)`` before forwarding anything.
A Deny's ``detail`` is the safe public message (bounded excerpt of input, control chars escaped); the
proxy puts it in the error body of validation denials (and only those). Its reason comes from the
failed rule (``reason_for``): 415 for a Content-Type, ``json_*`` for limits and syntax, else
``validation_failed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import CONTINUE, Deny, Verdict
from garrison.validate.errors import ValidationError, reason_for
from garrison.validate.models import ValidateConfig
from garrison.validate.validator import RequestValidator


def _framing(ctx: RequestContext) -> tuple[bool, int | None]:
    """(has a body, Content-Length) from the hygiene stage's framing, or from the headers."""
    f = ctx.framing
    if f is not None:
        return bool(f.has_body), f.content_length
    length = ctx.header(b"content-length")
    n = int(length) if length is not None and length.isdigit() else None
    return bool(n) or ctx.header(b"transfer-encoding") is not None, n


class RequestValidation(Stage):
    name: ClassVar[str] = "validate"
    sync: ClassVar[bool] = True
    Config: ClassVar[type[ValidateConfig]] = ValidateConfig

    __slots__ = ("validator",)

    def __init__(self, validator: RequestValidator, *, shadow: bool = False) -> None:
        super().__init__(shadow=shadow)
        self.validator = validator

    @classmethod
    def build(
        cls, cfg: ValidateConfig, *, base_dir: Path = Path(), route: str = "", shadow: bool = False
    ) -> Self:
        return cls(
            RequestValidator.from_config(cfg, base_dir=base_dir, label=f"route {route}"), shadow=shadow
        )

    def _deny(self, err: ValidationError) -> Deny:
        return Deny(reason_for(err), self.name, f"validate:{err.rule}", detail=err.public)

    def check(self, ctx: RequestContext) -> Verdict:
        has_body, length = _framing(ctx)
        try:
            self.validator.check_head(
                ctx.method, ctx.path, ctx.query, ctx.headers, has_body=has_body, content_length=length
            )
        except ValidationError as err:
            return self._deny(err)
        return CONTINUE

    def body_limit(self, ctx: RequestContext) -> int | None:
        """Bytes the proxy must buffer for ``validate_request``; None: stream the body as today.

        Call after the chain continued (``check`` passed), so this never raises for a valid head.
        """
        has_body, length = _framing(ctx)
        try:
            needed = (
                self.validator.check_head(
                    ctx.method, ctx.path, b"", [*ctx.headers], has_body=has_body, content_length=length
                )
                if has_body
                else False
            )
        except ValidationError:
            needed = True  # let validate_request produce the denial with the buffered body
        return self.validator.max_body_bytes if needed else None

    def validate_request(self, ctx: RequestContext, body: bytes) -> Deny | None:
        """Validate the buffered body. A Deny to send, or None to forward (shadow: recorded, None)."""
        try:
            self.validator.check_body(ctx.method, ctx.path, ctx.headers, body)
        except ValidationError as err:
            deny = self._deny(err)
            if self.shadow:
                ctx.shadow_denials.append(deny)
                return None
            return deny
        return None

    def __repr__(self) -> str:
        return f"<RequestValidation {self.validator.label}{' shadow' if self.shadow else ''}>"


__all__ = ["RequestValidation"]
