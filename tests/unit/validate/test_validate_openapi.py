"""OpenAPI 3.x: operations by method + path template, typed parameters, requestBody media types."""

from __future__ import annotations

from typing import Any

import pytest

from garrison.errors import ConfigError
from garrison.reasons import Reason
from garrison.validate import OpenApiSpec, ValidationError
from garrison.validate.media import media_type

DOC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/users/me": {"get": {"responses": {}}},
        "/users/{id}": {
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "format": "int32", "minimum": 1},
                }
            ],
            "get": {
                "parameters": [
                    {
                        "name": "fields",
                        "in": "query",
                        "schema": {"type": "array", "items": {"type": "string"}},
                    },
                    {
                        "name": "X-Api-Version",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "enum": ["1", "2"]},
                    },
                ],
                "responses": {},
            },
            "put": {
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/User"}}},
                },
                "responses": {},
            },
        },
        "/search": {
            "get": {
                "parameters": [
                    {
                        "name": "q",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 10},
                    },
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}},
                    {"name": "exact", "in": "query", "schema": {"type": "boolean"}},
                    {"$ref": "#/components/parameters/Page"},
                ],
                "responses": {},
            }
        },
    },
    "components": {
        "parameters": {"Page": {"name": "page", "in": "query", "schema": {"type": "number", "minimum": 0}}},
        "schemas": {
            "User": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "nick": {"type": "string", "nullable": True}},
            }
        },
    },
}
SPEC = OpenApiSpec(DOC, base_path="/api")
H = [(b"x-api-version", b"2")]


def check(method: str, path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] = H) -> str:
    op, values = SPEC.match(method, path)
    SPEC.check_params(op, values, query, headers)
    return op.template


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        pytest.param(
            "GET", "/api/users/me", "/users/me", id="should match a concrete path before a template"
        ),
        pytest.param("GET", "/api/users/42", "/users/{id}", id="should match a path template"),
        pytest.param("HEAD", "/api/users/42", "/users/{id}", id="should answer HEAD with the GET operation"),
    ],
)
def test_operation_matching(method: str, path: str, template: str) -> None:
    assert check(method, path) == template


@pytest.mark.parametrize(
    ("method", "path", "reason"),
    [
        pytest.param("GET", "/api/orders", Reason.NO_ROUTE, id="should 404 a path the API does not describe"),
        pytest.param("GET", "/users/42", Reason.NO_ROUTE, id="should 404 outside the base path"),
        pytest.param(
            "DELETE", "/api/users/42", Reason.METHOD_NOT_ALLOWED, id="should 405 an undescribed method"
        ),
        pytest.param("GET", "/api/users/42/x", Reason.NO_ROUTE, id="should not let a template span segments"),
    ],
)
def test_operation_not_found(method: str, path: str, reason: Reason) -> None:
    with pytest.raises(ValidationError) as info:
        SPEC.match(method, path)
    assert info.value.reason is reason


@pytest.mark.parametrize(
    ("path", "query", "headers", "message"),
    [
        pytest.param("/api/users/abc", b"", H, "path[id]: must be integer", id="should type path parameters"),
        pytest.param(
            "/api/users/0", b"", H, "path[id]: must be >= 1", id="should apply path parameter schema"
        ),
        pytest.param(
            "/api/users/99999999999", b"", H, "path[id]: must be <= 2147483647", id="int32 is bounded"
        ),
        pytest.param("/api/users/1", b"", [], "header[x-api-version]: is required", id="required header"),
        pytest.param(
            "/api/users/1",
            b"",
            [(b"x-api-version", b"3")],
            "header[x-api-version]: must be one of",
            id="header enum",
        ),
        pytest.param("/api/search", b"", H, "query[q]: is required", id="required query parameter"),
        pytest.param("/api/search", b"q=abc&limit=x", H, "query[limit]: must be integer", id="query integer"),
        pytest.param(
            "/api/search", b"q=abc&limit=101", H, "query[limit]: must be <= 100", id="query maximum"
        ),
        pytest.param(
            "/api/search", b"q=abc&exact=yes", H, "query[exact]: must be boolean", id="query boolean"
        ),
        pytest.param(
            "/api/search", b"q=abc&q=def", H, "query[q]: must not be repeated", id="parameter pollution"
        ),
        pytest.param(
            "/api/search", b"q=abc&page=-1", H, "query[page]: must be >= 0", id="referenced parameter"
        ),
        pytest.param("/api/search", b"q=%ff", H, "query: not valid UTF-8", id="bad percent-encoding"),
    ],
)
def test_parameter_errors(path: str, query: bytes, headers: list[tuple[bytes, bytes]], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        check("GET", path, query, headers)
    assert info.value.public.startswith(message)


def test_valid_parameters_pass() -> None:
    check("GET", "/api/search", b"q=abc&limit=10&exact=true&page=1.5")
    check("GET", "/api/users/7", b"fields=a&fields=b")


def test_request_body_schema_from_components_with_nullable() -> None:
    op, _ = SPEC.match("PUT", "/api/users/7")
    assert op.body_required and op.media is not None
    accepted, schema = op.media.lookup(media_type(b"application/json"))
    assert accepted and schema is not None
    schema.validate({"name": "a", "nick": None})
    with pytest.raises(ValidationError, match=r"\$: unexpected property 'x'"):
        schema.validate({"name": "a", "x": 1})
    assert op.media.lookup("text/plain") == (False, None)


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"openapi": "2.0", "paths": {}}, id="should refuse Swagger 2"),
        pytest.param({"openapi": "3.0.0", "paths": {"/a/{id}": {"get": {}}}}, id="undeclared path parameter"),
        pytest.param(
            {
                "openapi": "3.1.0",
                "paths": {
                    "/a": {
                        "get": {
                            "parameters": [
                                {
                                    "name": "f",
                                    "in": "query",
                                    "style": "deepObject",
                                    "schema": {"type": "object"},
                                }
                            ]
                        }
                    }
                },
            },
            id="should refuse unsupported parameter styles at load",
        ),
        pytest.param(
            {"openapi": "3.1.0", "paths": {"/a": {"get": {"parameters": [{"$ref": "other.yaml#/p"}]}}}},
            id="should refuse external references",
        ),
    ],
)
def test_bad_documents_are_config_errors(doc: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        OpenApiSpec(doc)


def test_unknown_query_parameters_can_be_denied() -> None:
    spec = OpenApiSpec(DOC, base_path="/api", unknown_query_denied=True)
    op, values = spec.match("GET", "/api/search")
    with pytest.raises(ValidationError, match=r"query\[debug\]: undeclared"):
        spec.check_params(op, values, b"q=a&debug=1", H)
