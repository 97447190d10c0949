"""Form parameters of a token-service request (RFC 6749 §3.2), checked before any grant logic.

No I/O: the HTTP layer parses ``application/x-www-form-urlencoded`` and hands a mapping here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

from garrison.identity.oauth.errors import ErrorCode, OAuthError

FormInput = Mapping[str, str | Sequence[str]]
# RFC 8707 §2 `resource` and RFC 8693 §2.1 `audience` may be repeated; every other parameter
# "MUST NOT be included more than once" (RFC 6749 §3.2).
REPEATABLE: Final = frozenset({"resource", "audience"})
MAX_VALUE_CHARS: Final = 16 * 1024 + 64  # a token plus slack; longer values are refused unread
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


class Form:
    """Validated parameters: each one a tuple of values; names and values are plain strings."""

    __slots__ = ("_params",)

    def __init__(self, raw: FormInput) -> None:
        params: dict[str, tuple[str, ...]] = {}
        for name, value in raw.items():
            values = (value,) if isinstance(value, str) else tuple(value)
            if not all(isinstance(v, str) for v in values):
                raise OAuthError(ErrorCode.INVALID_REQUEST, "parameter values must be strings")
            if any(len(v) > MAX_VALUE_CHARS for v in values):
                raise OAuthError(ErrorCode.INVALID_REQUEST, f"parameter {name[:40]} is too long")
            if len(values) > 1 and name not in REPEATABLE:
                raise OAuthError(ErrorCode.INVALID_REQUEST, f"parameter {name[:40]} is repeated")
            # RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted".
            values = tuple(v for v in values if v)
            if values:
                params[name] = values
        self._params = params

    def get(self, name: str) -> str | None:
        v = self._params.get(name)
        return v[0] if v else None

    def require(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise OAuthError(ErrorCode.INVALID_REQUEST, f"missing parameter {name}")
        return v

    def all(self, name: str) -> tuple[str, ...]:
        return self._params.get(name, ())

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __repr__(self) -> str:  # names only: values may be tokens or assertions
        return f"<Form {sorted(self._params)}>"


def parse_scope(value: str | None) -> frozenset[str] | None:
    """RFC 6749 §3.3 scope string -> set; None when absent. A malformed token is ``invalid_scope``."""
    if value is None:
        return None
    tokens = value.split(" ")
    if not all(SCOPE_TOKEN.fullmatch(t) for t in tokens):
        raise OAuthError(ErrorCode.INVALID_SCOPE, "malformed scope")
    return frozenset(tokens)


def format_scope(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))


__all__ = ["REPEATABLE", "SCOPE_TOKEN", "Form", "FormInput", "format_scope", "parse_scope"]
