"""Path tricks get the decision of the path they normalize to, or a 400 — never a bypass.

/admin/** allows only user `root`; microservice2 holds a valid token but no admin rule.
"""

from __future__ import annotations

import pytest

from support.gateway import GatewayThread, Signer
from support.raw import exchange, status_of


def _get(gw: GatewayThread, target: str, token: str) -> int:
    req = f"GET {target} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    resp, _ = exchange(gw.port, req.encode())
    return status_of(resp)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param("/admin/users", 403, id="plain-admin-denied"),
        pytest.param("//admin/users", 403, id="double-slash"),
        pytest.param("/./admin/users", 403, id="dot-segment"),
        pytest.param("/%61dmin/users", 403, id="percent-encoded-letter"),
        pytest.param("/%2561dmin/users", 404, id="double-encoding-not-decoded-twice"),
        pytest.param("/public/..%2fadmin/users", 400, id="encoded-slash"),
        pytest.param("/public/%2e%2e/admin/users", 403, id="encoded-dot-dot"),
        pytest.param("/public/../admin/users", 403, id="dot-dot-from-public"),
        pytest.param("/admin;x=1/users", 403, id="semicolon-params"),
        pytest.param("/ADMIN/users", 400, id="case-variant-is-ambiguous"),
        pytest.param("/Admin/users", 400, id="mixed-case-variant"),
        pytest.param("/public/../../admin", 400, id="traversal-above-root"),
        pytest.param("/public\\..\\admin/users", 403, id="backslashes"),
        pytest.param("/admin/users#frag", 400, id="fragment"),
    ],
)
def test_admin_decision_cannot_be_bypassed(
    gateway: GatewayThread, signer: Signer, target: str, expected: int
) -> None:
    assert _get(gateway, target, signer.svc("microservice2")) == expected


def test_admin_allowed_for_root_via_normalized_path(gateway: GatewayThread, signer: Signer) -> None:
    assert _get(gateway, "//admin/./users", signer.token("root")) == 200


def test_upstream_receives_the_normalized_path(gateway: GatewayThread) -> None:
    import json

    resp, _ = exchange(
        gateway.port,
        b"GET //public/./a/%7Eb;jsessionid=1?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    assert status_of(resp) == 200
    body = json.loads(resp.split(b"\r\n\r\n", 1)[1])
    assert body["path"] == "/public/a/~b?q=1"
