"""Rate limits answer 429 with Retry-After; shadow mode records would-deny and lets the request pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.gateway import GatewayThread, Signer, base_config

LIMITS = """
rate_limits:
  - name: per-subject
    routes: [ms1-getdata]
    key: [subject]
    rate: 0.001
    burst: 3
  - name: per-ip
    routes: [public]
    key: [client_ip]
    rate: 0.001
    burst: 2
"""


@pytest.fixture
def limited(tmp_path: Path, signer: Signer) -> Iterator[GatewayThread]:
    gw = GatewayThread(tmp_path, lambda p: base_config(signer, p, extra=LIMITS)).start()
    try:
        yield gw
    finally:
        gw.stop()


def test_per_subject_limit_is_429_with_retry_after(limited: GatewayThread, signer: Signer) -> None:
    url = limited.url + "/microservice1/getData"
    ms2 = {"Authorization": f"Bearer {signer.svc('microservice2')}"}
    assert [httpx.get(url, headers=ms2).status_code for _ in range(3)] == [200, 200, 200]
    r = httpx.get(url, headers=ms2)
    assert r.status_code == 429
    assert r.json()["error"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    # another principal has its own bucket (denied by policy, but not rate-limited)
    other = httpx.get(url, headers={"Authorization": f"Bearer {signer.svc('microservice3')}"})
    assert other.status_code == 403


def test_pre_auth_limit_by_client_ip(limited: GatewayThread) -> None:
    codes = [httpx.get(limited.url + "/public/x").status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]


SHADOW = """
  - name: shadowed
    path: /shadow/**
    service: microservice1
    shadow: {authn: true, authz: true}
"""


def test_shadow_mode_passes_without_identity_and_records_would_deny(tmp_path: Path, signer: Signer) -> None:
    log = tmp_path / "d.jsonl"

    def cfg(p: int) -> str:
        return base_config(signer, p, log=log).replace("routes:\n", "routes:\n" + SHADOW.lstrip("\n"), 1)

    gw = GatewayThread(tmp_path, cfg).start()
    try:
        bad = httpx.get(gw.url + "/shadow/x", headers={"Authorization": "Bearer forged.token.here"})
        assert bad.status_code == 200
        assert "x-garrison-principal" not in bad.json()["headers"]  # no identity it failed to prove
        good = httpx.get(
            gw.url + "/shadow/x", headers={"Authorization": f"Bearer {signer.svc('microservice2')}"}
        )
        assert good.status_code == 200
        metrics = httpx.get(gw.admin_url + "/metrics").text
        assert 'mode="shadow"' in metrics
    finally:
        gw.stop()
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert records[0]["decision"] == "allow"
    assert {s["stage"] for s in records[0]["shadow"]} == {"authn", "authz"}
    assert records[1]["shadow"] == [{"stage": "authz", "reason": "policy_no_match", "rule": None}]
