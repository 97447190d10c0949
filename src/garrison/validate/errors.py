"""Safe, bounded error messages for request validation. Input is only ever echoed as a short excerpt.

``ValidationError.public`` is built from the schema (operator-written) and at most ``EXCERPT_CHARS``
of input with control characters escaped; it is safe to show a client. Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from garrison.errors import GarrisonError
from garrison.reasons import Reason

EXCERPT_CHARS: Final = 64
MAX_MESSAGE_CHARS: Final = 240
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\"\\]")


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return "\\" + c if c in '"\\' else f"\\u{ord(c):04x}"


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """At most ``limit`` characters of ``value`` (``…`` marks a cut), control characters escaped."""
    text = value if isinstance(value, str) else repr(value)
    cut = len(text) > limit
    text = _UNSAFE.sub(_escape, text[:limit])
    return text + "…" if cut else text


class ValidationError(GarrisonError):
    """A request failed validation. ``public`` is the safe message; ``path`` the JSON path or parameter.

    ``rule`` names the violated rule (``type``, ``minimum``, ``max_depth``, ...) for the decision log.
    """

    default_reason = Reason.BAD_REQUEST

    def __init__(self, public: str, *, rule: str, path: str = "$", reason: Reason | None = None) -> None:
        if len(public) > MAX_MESSAGE_CHARS:
            public = public[: MAX_MESSAGE_CHARS - 1] + "…"
        super().__init__(public, reason)
        self.public = public
        self.rule = rule
        self.path = path


def _fmt(value: Any) -> str:
    """A schema value (operator-written) rendered compactly and bounded."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except ValueError:  # circular (cannot come from JSON/YAML, but never raise from a formatter)
        text = repr(value)
    return excerpt(text)


def _type_name(t: Any) -> str:
    return " or ".join(t) if isinstance(t, list) else str(t)


def schema_message(rule: str, rule_def: Any, value: Any, definition: Any) -> str:
    """The rule part of a message (``must be >= 1``) from a failed keyword. Input appears excerpted only."""
    match rule:
        case "type":
            return f"must be {_type_name(rule_def)}"
        case "required":
            missing = [k for k in rule_def if not isinstance(value, dict) or k not in value]
            return f"missing required property '{excerpt(missing[0] if missing else rule_def)}'"
        case "minimum":
            return f"must be >= {_fmt(rule_def)}"
        case "maximum":
            return f"must be <= {_fmt(rule_def)}"
        case "exclusiveMinimum":
            return f"must be > {_fmt(rule_def)}"
        case "exclusiveMaximum":
            return f"must be < {_fmt(rule_def)}"
        case "multipleOf":
            return f"must be a multiple of {_fmt(rule_def)}"
        case "minLength":
            return f"must be at least {rule_def} characters long"
        case "maxLength":
            return f"must be at most {rule_def} characters long"
        case "minItems":
            return f"must have at least {rule_def} items"
        case "maxItems":
            return f"must have at most {rule_def} items"
        case "minProperties":
            return f"must have at least {rule_def} properties"
        case "maxProperties":
            return f"must have at most {rule_def} properties"
        case "uniqueItems":
            return "must contain unique items"
        case "pattern":
            return f"must match pattern {_fmt(rule_def)}"
        case "format":
            return f"must be a valid {excerpt(rule_def)}"
        case "enum":
            return f"must be one of {_fmt(rule_def)}"
        case "const":
            return f"must equal {_fmt(rule_def)}"
        case "additionalProperties":
            extra = _extra_property(value, definition)
            return f"unexpected property '{excerpt(extra)}'" if extra is not None else "unexpected property"
        case "additionalItems" | "items":
            return "has more items than allowed"
        case "not":
            return "must not match the excluded schema"
        case _:
            return f"must satisfy '{excerpt(rule, 32)}'"


def _extra_property(value: Any, definition: Any) -> str | None:
    if not isinstance(value, dict) or not isinstance(definition, dict):
        return None
    known = definition.get("properties") or {}
    patterns = [re.compile(p) for p in (definition.get("patternProperties") or {})]
    for key in value:
        if key not in known and not any(p.search(key) for p in patterns):
            return str(key)
    return None


# The client-facing code of a failed rule. Errors raised with an explicit reason (413, 404, 405) keep it.
_REASON_BY_RULE: Final[dict[str, Reason]] = {
    "content_type": Reason.UNSUPPORTED_MEDIA_TYPE,
    "max_depth": Reason.JSON_TOO_DEEP,
    "max_elements": Reason.JSON_TOO_LARGE,
    "max_string_bytes": Reason.JSON_TOO_LARGE,
    "json": Reason.JSON_MALFORMED,
    "duplicate_key": Reason.JSON_MALFORMED,
}


def reason_for(err: ValidationError) -> Reason:
    """The reason code a client sees for ``err``: from its rule, unless it was raised with a specific one."""
    if err.reason is not Reason.BAD_REQUEST:
        return err.reason
    return _REASON_BY_RULE.get(err.rule, Reason.VALIDATION_FAILED)


def error_body(err: ValidationError | str, reason: Reason | str, request_id: str) -> bytes:
    """The 400/413/415 body: ``{"error": code, "request_id": id, "detail": safe message}``."""
    detail = err.public if isinstance(err, ValidationError) else err
    return json.dumps(
        {"error": str(reason), "request_id": request_id, "detail": detail},
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()


__all__ = ["EXCERPT_CHARS", "ValidationError", "error_body", "excerpt", "reason_for", "schema_message"]
