"""Revocation by SPIFFE ID (review H2, M5) on a real control plane and a real gateway.

One revoked ID is one trust-document entry and one bounded audit record, however many SVIDs it
had; its SVIDs are refused by the gateway on every request and by the control plane; its unused
join tokens are burned; a fresh bootstrap after the revocation works; an SVID renews once.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from garrison.store import schema
from integration.trust_kit import KeptAlive, Mesh, running_mesh, wait_for
from support.control import ControlPlaneThread, issue_svid, make_csr, running_control_plane


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    with running_control_plane(tmp_path / "cp") as cp:
        yield cp


def _revoke_id(cp: ControlPlaneThread, sid: str) -> httpx.Response:
    with cp.client() as c:
        return c.post(
            "/v1/revocations", json={"spiffe_id": sid, "reason": "compromised"}, headers=cp.admin_headers
        )


def _audit_records(cp: ControlPlaneThread, action: str) -> list[dict[str, Any]]:
    out = []
    for line in cp.audit_path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("action") == action:
            out.append(rec)
    return out


def test_revoking_an_id_with_thousands_of_svids_is_one_entry_and_one_small_audit_record(
    cp: ControlPlaneThread,
) -> None:
    """The reviewer's probe 2, without its 40 s renewal loop: 2,000 live SVID rows of one ID (the
    serial list would exceed the audit log's 64 KiB record cap and grow the trust document by 88 KB)."""
    sid = cp.spiffe_id("svc/orders")
    real = issue_svid(cp, sid)
    plane = cp.plane
    cur, _ = plane.store.signing_state()
    assert cur is not None
    now = plane.clock()
    rows = [
        {
            "serial": f"{0xA0000000 + i:x}",
            "spiffe_id": sid,
            "ca_key_id": cur.id,
            "not_before": now - 10,
            "not_after": now + 3600,
            "issued_at": now,
            "revoked_at": None,
        }
        for i in range(2000)
    ]
    with plane.store.engine.begin() as conn:
        conn.execute(insert(schema.svids), rows)
    baseline = len(json.dumps(plane.trust_document()))

    r = _revoke_id(cp, sid)
    assert r.status_code == 200, r.text
    revoked = r.json()["revoked"]
    assert len(revoked) == 2001 and real.serial in revoked

    rec = _audit_records(cp, "svid.revoke")[-1]
    assert rec["count"] == 2001 and rec["spiffe_id"] == sid and rec["reason"] == "compromised"
    assert rec["serials_sha256"] == hashlib.sha256("\n".join(sorted(revoked)).encode()).hexdigest()
    assert "serials" not in rec
    assert cp.audit.problem is None

    doc = plane.trust_document()
    assert doc["version"] == 2 and doc["revoked_serials"] == []
    assert [e["spiffe_id"] for e in doc["revoked_ids"]] == [sid]
    assert len(json.dumps(doc)) - baseline < 200  # one entry, not 2,001 serials
    with cp.client() as c:
        assert c.get("/v1/trust").json()["revoked_ids"] == doc["revoked_ids"]


def test_an_svid_renews_once(cp: ControlPlaneThread) -> None:
    sid = cp.spiffe_id("svc/orders")
    svid = issue_svid(cp, sid)
    with cp.client(svid) as c:
        first = c.post("/v1/svids/renew", json={"csr": make_csr(sid)[1]})
        again = c.post("/v1/svids/renew", json={"csr": make_csr(sid)[1]})
    assert first.status_code == 201, first.text
    assert again.status_code == 403
    body = again.json()
    assert "already renewed" in json.dumps(body) and "Traceback" not in again.text
    assert len(cp.plane.store.list_svids(spiffe_id=sid)) == 2


def test_a_join_token_from_before_the_revocation_is_refused_after_it(cp: ControlPlaneThread) -> None:
    """The reviewer's probe 6: a token left in a CI log re-bootstraps the revoked workload."""
    sid = cp.spiffe_id("svc/orders")
    issue_svid(cp, sid)
    leaked = cp.join_token(sid, ttl=3600)
    assert _revoke_id(cp, sid).status_code == 200
    with cp.client() as c:
        r = c.post("/v1/svids/join", json={"join_token": leaked, "csr": make_csr(sid)[1]})
    assert r.status_code == 401 and r.json()["error"] == "join_token_invalid"
    assert len(cp.plane.store.list_svids(spiffe_id=sid)) == 1
    fresh = issue_svid(cp, sid)  # a token made after the revocation bootstraps it again
    assert not cp.plane.ca.is_revoked(fresh.certificate)


def test_the_control_plane_refuses_svids_of_a_revoked_id(cp: ControlPlaneThread) -> None:
    admin = issue_svid(cp, cp.admin_id)
    assert cp.plane.is_admin_certificate(admin.certificate) == cp.admin_id
    assert _revoke_id(cp, cp.admin_id).status_code == 200
    assert cp.plane.is_admin_certificate(admin.certificate) is None
    with cp.client(admin) as c:
        r = c.post("/v1/svids/renew", json={"csr": make_csr(cp.admin_id)[1]})
        listed = c.get("/v1/svids")
    assert r.status_code == 403 and r.json()["error"] == "svid_revoked"
    assert listed.status_code == 403 and listed.json()["error"] == "svid_revoked"


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    with running_mesh(tmp_path, require_client_cert=True) as m:
        yield m


def test_the_gateway_refuses_every_svid_of_a_revoked_id_and_accepts_a_fresh_one(mesh: Mesh) -> None:
    one, two, billing = mesh.svid("orders"), mesh.svid("orders"), mesh.svid("billing")
    kept = KeptAlive(mesh.gateway.port("mtls"), mesh.tls(one))
    try:
        assert kept.get("/public/a")[0] == 200
        assert _revoke_id(mesh.cp, one.spiffe_id).status_code == 200
        wait_for(lambda: one.spiffe_id in mesh.trust.revoked_ids, what="ID revocation pulled")
        assert one.serial not in mesh.trust.revoked_serials  # covered by the one ID entry
        # An already-open idle connection is cut when the revocation arrives, or, if a request is on
        # its way at that moment, that request is refused and the connection closed.
        try:
            status, body, closing = kept.get("/public/b")
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            pass
        else:
            assert (status, body.get("error"), closing) == (403, "svid_revoked", True)
    finally:
        kept.close()
    for svid in (one, two):
        with mesh.client(svid) as c:
            r = c.get("/public/c")
        assert r.status_code == 403 and r.json()["error"] == "svid_revoked"
    with mesh.client(billing) as c:
        assert c.get("/public/d").status_code == 200  # another ID is untouched
    fresh = mesh.svid("orders")  # re-bootstrap right after the revocation (same second, often)
    with mesh.client(fresh) as c:
        assert c.get("/public/e").status_code == 200


def test_revoking_an_id_with_only_a_join_token_burns_it_and_is_audited(cp: ControlPlaneThread) -> None:
    sid = cp.spiffe_id("svc/not-yet-running")
    leaked = cp.join_token(sid, ttl=3600)
    r = _revoke_id(cp, sid)
    assert r.status_code == 404 and r.json()["error"] == "not_found"  # no live SVID matched
    rec = _audit_records(cp, "svid.revoke")[-1]
    assert (rec["spiffe_id"], rec["count"]) == (sid, 0) and leaked not in json.dumps(rec)
    with cp.client() as c:
        r = c.post("/v1/svids/join", json={"join_token": leaked, "csr": make_csr(sid)[1]})
    assert r.status_code == 401 and r.json()["error"] == "join_token_invalid"
