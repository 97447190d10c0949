"""JSON Schema (2020-12) validation with precise, bounded messages."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from garrison.errors import ConfigError
from garrison.validate import EXCERPT_CHARS, CompiledSchema, RequestValidator, ValidateConfig, ValidationError
from garrison.validate.errors import excerpt

ORDER = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["customer", "items"],
    "properties": {
        "customer": {"type": "string", "maxLength": 40},
        "note": {"type": "string"},
        "items": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/item"}},
        "pair": {"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
        "email": {"type": "string", "format": "email"},
        "card": {"type": "object", "dependentRequired": {"number": ["expiry"]}},
    },
    "$defs": {
        "item": {
            "type": "object",
            "required": ["sku", "qty"],
            "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z0-9]{4,12}$"},
                "qty": {"type": "integer", "minimum": 1},
            },
        }
    },
}
SCHEMA = CompiledSchema(ORDER)
GOOD = {"customer": "ada", "items": [{"sku": "ABCD", "qty": 1}]}


def with_(**kw: object) -> dict[str, object]:
    return {**GOOD, **kw}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(with_(customer=1), "$.customer: must be string", id="should name a type error"),
        pytest.param(
            {"items": GOOD["items"]}, "$: missing required property 'customer'", id="missing required"
        ),
        pytest.param(with_(extra=1), "$: unexpected property 'extra'", id="should refuse extra fields"),
        pytest.param(
            with_(items=[{"sku": "ABCD", "qty": 1}] * 3 + [{"sku": "ABCD", "qty": 0}]),
            "$.items[3].qty: must be >= 1",
            id="should name the array index and the rule",
        ),
        pytest.param(with_(items=[]), "$.items: must have at least 1 items", id="minItems"),
        pytest.param(
            with_(items=[{"sku": "x", "qty": 1}]), "$.items[0].sku: must match pattern", id="pattern"
        ),
        pytest.param(with_(pair=["a", "b"]), "$.pair[1]: must be integer", id="prefixItems is translated"),
        pytest.param(
            with_(pair=["a", 1, 2]), "$.pair: has more items than allowed", id="items false after prefix"
        ),
        pytest.param(with_(email="nope"), "$.email: must be a valid email", id="format is asserted"),
        pytest.param(
            with_(card={"number": "1"}), "$.card: must satisfy", id="dependentRequired is translated"
        ),
    ],
)
def test_schema_errors_name_path_and_rule(value: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        SCHEMA.validate(value)
    assert info.value.public.startswith(message)


def test_valid_value_passes() -> None:
    SCHEMA.validate(GOOD)


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"unevaluatedProperties": False}, id="should refuse unevaluatedProperties at load"),
        pytest.param({"$ref": "https://example.com/s.json"}, id="should refuse a remote ref at load"),
        pytest.param({"properties": {"a": {"$dynamicRef": "#x"}}}, id="should refuse dynamicRef nested"),
        pytest.param({"type": "nope"}, id="should refuse an invalid schema"),
    ],
)
def test_unsupported_schema_is_a_config_error(schema: object) -> None:
    with pytest.raises(ConfigError):
        CompiledSchema(schema)


def test_ref_siblings_apply_as_in_2020_12() -> None:
    s = CompiledSchema(
        {"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n", "minimum": 5}}}
    )
    with pytest.raises(ValidationError, match=r"\$\.a: must be >= 5"):
        s.validate({"a": 1})


def test_message_never_echoes_more_than_the_excerpt() -> None:
    huge_key = "k" * 1_000_000
    with pytest.raises(ValidationError) as info:
        SCHEMA.validate({**GOOD, huge_key: 1})
    assert len(info.value.public) < 3 * EXCERPT_CHARS + 40
    assert "k" * (EXCERPT_CHARS + 1) not in info.value.public


def test_excerpt_escapes_control_characters() -> None:
    assert excerpt('a\nb\x00\x1b"') == 'a\\u000ab\\u0000\\u001b\\"'
    assert excerpt("x" * 100) == "x" * EXCERPT_CHARS + "…"


def validator(tmp_path: Path, **kw: object) -> RequestValidator:
    (tmp_path / "order.json").write_text(json.dumps(ORDER))
    cfg = ValidateConfig.model_validate({"json_schema": "order.json", "max_body_bytes": 4096, **kw})
    return RequestValidator.from_config(cfg, base_dir=tmp_path)


JSON_CT = [(b"content-type", b"application/json; charset=utf-8")]


@pytest.mark.parametrize(
    ("headers", "length", "rule", "status"),
    [
        pytest.param(
            JSON_CT, 5000, "max_body_bytes", 413, id="should refuse an oversized Content-Length early"
        ),
        pytest.param([(b"content-type", b"text/plain")], 10, "content_type", 400, id="wrong content type"),
        pytest.param([], 10, "content_type", 400, id="missing content type"),
    ],
)
def test_head_checks(
    tmp_path: Path, headers: list[tuple[bytes, bytes]], length: int, rule: str, status: int
) -> None:
    with pytest.raises(ValidationError) as info:
        validator(tmp_path).check_head("POST", "/o", b"", headers, has_body=True, content_length=length)
    assert info.value.rule == rule and info.value.reason.status == status


def test_head_says_json_body_must_be_buffered(tmp_path: Path) -> None:
    v = validator(tmp_path)
    assert v.check_head("POST", "/o", b"", JSON_CT, has_body=True, content_length=10) is True
    assert v.check_head("GET", "/o", b"", [], has_body=False, content_length=None) is False


def test_body_required_when_configured(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="body is required"):
        validator(tmp_path, require_body=True).check_head(
            "POST", "/o", b"", [], has_body=False, content_length=None
        )


def test_oversized_buffered_body_is_413(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        validator(tmp_path).check_body("POST", "/o", JSON_CT, b" " * 5000)
    assert info.value.reason.status == 413


def test_400_body_never_echoes_a_1mb_string(tmp_path: Path) -> None:
    v = validator(tmp_path, max_body_bytes=2_000_000, max_string_bytes=2_000_000)
    body = json.dumps({"customer": "\n" + "A" * 1_000_000, "items": GOOD["items"]}).encode()
    with pytest.raises(ValidationError) as info:
        v.check_body("POST", "/o", JSON_CT, body)
    assert info.value.public == "$.customer: must be at most 40 characters long"
    body = json.dumps({**GOOD, "\x1b" + "B" * 1_000_000: 1}).encode()
    with pytest.raises(ValidationError) as info:
        v.check_body("POST", "/o", JSON_CT, body)
    assert len(info.value.public) <= 40 + EXCERPT_CHARS + 8 and "\x1b" not in info.value.public


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00", b"[" * 10_000, b'{"customer": 1}', b"\xff" * 100, b'{"a":1,"a":1}', b"null", b"1e999999"],
)
def test_body_errors_are_validation_errors(tmp_path: Path, body: bytes) -> None:
    v = validator(tmp_path)
    with contextlib.suppress(ValidationError):
        v.check_body("POST", "/o", JSON_CT, body)
