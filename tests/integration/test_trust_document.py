"""``parse_trust_document``: what the gateway accepts from ``/v1/trust`` (sans-IO, a real control plane's
document as the starting point). Every refusal names the defect; nothing here touches a socket."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from garrison.config.models import GarrisonConfig
from garrison.control.plane import ControlPlane, write_secret_file
from garrison.identity.ca import generate_kek_file
from garrison.identity.ca.certs import serial_hex
from garrison.proxy.trust import TrustDocumentError, parse_trust_document

TD = "example.org"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    d: Path = tmp_path_factory.mktemp("cp")
    generate_kek_file(d / "kek.key")
    write_secret_file(d / "admin.token", "t" * 43)
    cfg = GarrisonConfig.model_validate(
        {"trust_domain": TD, "store": {}, "control_plane": {"address": "127.0.0.1:1"}, "services": {"a": {}}}
    )
    p = ControlPlane.open(cfg, d, initialize=True)
    yield p
    p.close()


@pytest.fixture
def doc(plane: ControlPlane) -> dict[str, Any]:
    return plane.trust_document()


def _body(d: dict[str, Any]) -> bytes:
    return json.dumps(d).encode()


def test_a_real_document_parses(plane: ControlPlane, doc: dict[str, Any]) -> None:
    creds = plane.issue_credentials(f"spiffe://{TD}/svc/a")
    plane.ca.revoke_serial(creds.serial)
    doc = plane.trust_document()
    doc["revoked_jtis"] = ["j1", "j2"]
    st = parse_trust_document(_body(doc), TD, 1000.0)
    assert st.sequence == doc["bundle_sequence"] and st.fetched_at == 1000.0
    assert creds.serial in st.revoked_serials and st.revoked_jtis == frozenset({"j1", "j2"})
    assert st.anchors_pem == plane.trust_anchors_pem()
    assert [serial_hex(c) for c in st.anchors]  # real certificates
    assert "revoked_serials=1" in repr(st)


def test_revoked_ids_parse(plane: ControlPlane) -> None:
    sid = f"spiffe://{TD}/svc/b"
    plane.issue_credentials(sid)
    at = time.time() + 0.5
    plane.ca.revoke_spiffe_id(sid, now=at)
    doc = plane.trust_document()
    assert doc["revoked_ids"] == [{"spiffe_id": sid, "before": math.ceil(at)}]
    st = parse_trust_document(_body(doc), TD, 0.0)
    assert st.revoked_ids == {sid: math.ceil(at)} and "revoked_ids=1" in repr(st)
    twice = {**doc, "revoked_ids": [{"spiffe_id": sid, "before": 5}, {"spiffe_id": sid, "before": 9}]}
    assert parse_trust_document(_body(twice), TD, 0.0).revoked_ids == {sid: 9}  # the later one


def test_a_version_1_document_is_still_read(doc: dict[str, Any]) -> None:
    old = {k: v for k, v in doc.items() if k != "revoked_ids"} | {"version": 1}
    assert parse_trust_document(_body(old), TD, 0.0).revoked_ids == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 3}, "version"),
        ({"version": "2"}, "version"),
        ({"version": True}, "version"),
        ({"trust_domain": "evil.example"}, "trust domain 'evil.example'"),
        ({"bundle_sequence": -1}, "bundle_sequence"),
        ({"bundle_sequence": "3"}, "bundle_sequence"),
        ({"bundle": "x"}, "bundle is not an object"),
        ({"bundle": {"keys": []}}, "no X.509 authority"),
        ({"bundle": {"nokeys": 1}}, "no 'keys' array"),
        ({"revoked_serials": "ab"}, "revoked_serials is not a list"),
        ({"revoked_serials": [12]}, "revoked_serials holds a value"),
        ({"revoked_serials": ["ABCD"]}, "not lower-case hex"),
        ({"revoked_serials": ["zz"]}, "not lower-case hex"),
        ({"revoked_jtis": [None]}, "revoked_jtis holds a value"),
        ({"revoked_jtis": ["x" * 300]}, "revoked_jtis holds a value"),
        ({"revoked_jtis": [""]}, "revoked_jtis holds a value"),
        ({"generated_at": "now"}, "generated_at"),
        ({"revoked_ids": {}}, "revoked_ids is not a list"),
        ({"revoked_ids": ["spiffe://x/y"]}, "not {spiffe_id, before}"),
        ({"revoked_ids": [{"spiffe_id": "spiffe://x/y"}]}, "not {spiffe_id, before}"),
        ({"revoked_ids": [{"spiffe_id": "spiffe://x/y", "before": 1, "x": 2}]}, "not {spiffe_id, before}"),
        ({"revoked_ids": [{"spiffe_id": "https://x/y", "before": 1}]}, "not a SPIFFE ID"),
        ({"revoked_ids": [{"spiffe_id": "spiffe://" + "a" * 2048, "before": 1}]}, "not a SPIFFE ID"),
        ({"revoked_ids": [{"spiffe_id": "spiffe://x/y", "before": 1.5}]}, "before that is not"),
        ({"revoked_ids": [{"spiffe_id": "spiffe://x/y", "before": True}]}, "before that is not"),
        ({"revoked_ids": [{"spiffe_id": "spiffe://x/y", "before": -1}]}, "before that is not"),
    ],
)
def test_defects_are_refused(doc: dict[str, Any], change: dict[str, Any], message: str) -> None:
    with pytest.raises(TrustDocumentError, match=message):
        parse_trust_document(_body({**doc, **change}), TD, 0.0)


def test_missing_fields_are_refused(doc: dict[str, Any]) -> None:
    for name in (
        "version",
        "trust_domain",
        "bundle_sequence",
        "bundle",
        "revoked_serials",
        "revoked_jtis",
        "revoked_ids",  # required from version 2: missing would silently un-revoke every ID
    ):
        d = dict(doc)
        del d[name]
        with pytest.raises(TrustDocumentError):
            parse_trust_document(_body(d), TD, 0.0)


def test_sequences_must_agree(doc: dict[str, Any]) -> None:
    bad = {**doc, "bundle": {**doc["bundle"], "spiffe_sequence": doc["bundle_sequence"] + 1}}
    with pytest.raises(TrustDocumentError, match="spiffe_sequence"):
        parse_trust_document(_body(bad), TD, 0.0)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"null",
        b"\xff\xfe{}",
        '{"a": 1}'.encode("utf-16"),
        b'{"version": 1, "version": 1}',  # duplicate names: refused, not last-one-wins
        b'{"version": NaN}',
    ],
)
def test_not_a_strict_json_object(body: bytes) -> None:
    with pytest.raises(TrustDocumentError, match="not a JSON object"):
        parse_trust_document(body, TD, 0.0)


def test_bad_certificate_in_bundle(doc: dict[str, Any]) -> None:
    keys = [{**doc["bundle"]["keys"][0], "x5c": ["bm90IGEgY2VydA=="]}]
    with pytest.raises(TrustDocumentError, match="unparsable x5c"):
        parse_trust_document(_body({**doc, "bundle": {**doc["bundle"], "keys": keys}}), TD, 0.0)
