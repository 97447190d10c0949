"""The validation stage: head checks in the chain, body checks through validate_request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from garrison.http.framing import Framing
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stages.validation import RequestValidation
from garrison.pipeline.verdicts import CONTINUE, Deny
from garrison.reasons import Reason
from garrison.validate import ValidateConfig, error_body

API = {
    "openapi": "3.1.0",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/orders/{id}": {
            "parameters": [{"name": "id", "in": "path", "schema": {"type": "integer"}}],
            "post": {
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["qty"],
                                "properties": {"qty": {"type": "integer", "minimum": 1}},
                            }
                        }
                    },
                },
                "responses": {},
            },
        }
    },
}


@pytest.fixture
def stage(tmp_path: Path) -> RequestValidation:
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(API))
    cfg = ValidateConfig(openapi="api.yaml", max_body_bytes=1000)
    return RequestValidation.build(cfg, base_dir=tmp_path, route="orders")


def ctx(path: str, body_len: int | None, ct: bytes = b"application/json") -> RequestContext:
    c = RequestContext(
        method="POST",
        raw_target=path.encode(),
        headers=[(b"content-type", ct)],
        client_addr="127.0.0.1",
        request_id="r1",
        now=0.0,
    )
    c.path = path
    c.framing = Framing(body_len, False)
    return c


def test_valid_request_passes_head_and_body(stage: RequestValidation) -> None:
    c = ctx("/orders/1", 9)
    assert stage.check(c) is CONTINUE
    assert stage.body_limit(c) == 1000
    assert stage.validate_request(c, b'{"qty":1}') is None


@pytest.mark.parametrize(
    ("path", "length", "ct", "reason"),
    [
        pytest.param(
            "/orders/x", 9, b"application/json", Reason.VALIDATION_FAILED, id="should deny a mistyped path id"
        ),
        pytest.param(
            "/orders/1", 5000, b"application/json", Reason.BODY_TOO_LARGE, id="should 413 before buffering"
        ),
        pytest.param(
            "/orders/1", 9, b"text/xml", Reason.UNSUPPORTED_MEDIA_TYPE, id="should 415 the wrong content type"
        ),
        pytest.param(
            "/orders/1", None, b"application/json", Reason.VALIDATION_FAILED, id="should require the body"
        ),
    ],
)
def test_head_denials(
    stage: RequestValidation, path: str, length: int | None, ct: bytes, reason: Reason
) -> None:
    v = stage.check(ctx(path, length, ct))
    assert isinstance(v, Deny) and v.reason is reason and v.stage == "validate"


def test_body_denial_carries_a_safe_message(stage: RequestValidation) -> None:
    c = ctx("/orders/1", 9)
    deny = stage.validate_request(c, b'{"qty":0}')
    assert deny is not None and deny.rule_id == "validate:minimum" and deny.detail == "$.qty: must be >= 1"
    body = json.loads(error_body(deny.detail, deny.reason, c.request_id))
    assert body == {"error": "validation_failed", "request_id": "r1", "detail": "$.qty: must be >= 1"}


def test_shadow_records_instead_of_denying(tmp_path: Path, stage: RequestValidation) -> None:
    shadow = RequestValidation(stage.validator, shadow=True)
    c = ctx("/orders/1", 9)
    assert shadow.validate_request(c, b'{"qty":0}') is None
    assert [d.reason for d in c.shadow_denials] == [Reason.VALIDATION_FAILED]


def test_no_buffering_without_a_body(stage: RequestValidation) -> None:
    assert stage.body_limit(ctx("/orders/1", None)) is None
