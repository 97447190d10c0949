"""Row ↔ record mapping, and the statements of the issuance path built once at import."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Row, bindparam, func, select, update

from garrison.store import schema
from garrison.store.records import BundleRecord, CaKeyPurpose, CaKeyRecord, CaKeyState, SvidRecord

# Statements on the issuance path, built once (SQLAlchemy then only looks up its compiled form).
Q_CURRENT_INTERMEDIATE = select(schema.ca_keys).where(
    schema.ca_keys.c.state == CaKeyState.CURRENT.value,
    schema.ca_keys.c.purpose == CaKeyPurpose.INTERMEDIATE.value,
)
Q_LATEST_BUNDLE = select(schema.bundles).order_by(schema.bundles.c.sequence.desc()).limit(1)
Q_INSERT_SVID = schema.svids.insert()
Q_ID_REVOKED_AT = select(func.max(schema.revocations.c.revoked_at)).where(
    schema.revocations.c.kind == "spiffe_id", schema.revocations.c.value == bindparam("sid")
)
Q_CONSUME_TOKEN = (
    update(schema.join_tokens)
    .where(
        schema.join_tokens.c.token_hash == bindparam("h"),
        schema.join_tokens.c.used_at.is_(None),
        schema.join_tokens.c.expires_at > bindparam("now"),
        schema.join_tokens.c.spiffe_id == bindparam("sid"),
    )
    .values(used_at=bindparam("used_at"), used_by_serial=bindparam("serial"))
)


def ca_key_record(r: Row[Any]) -> CaKeyRecord:
    return CaKeyRecord(
        id=r.id,
        purpose=CaKeyPurpose(r.purpose),
        state=CaKeyState(r.state),
        created_at=r.created_at,
        parent_id=r.parent_id,
        sealed_key=bytes(r.sealed_key) if r.sealed_key is not None else None,
        cert_pem=r.cert_pem,
        csr_pem=r.csr_pem,
        not_before=r.not_before,
        not_after=r.not_after,
    )


def svid_record(r: Row[Any]) -> SvidRecord:
    return SvidRecord(
        serial=r.serial,
        spiffe_id=r.spiffe_id,
        ca_key_id=r.ca_key_id,
        not_before=r.not_before,
        not_after=r.not_after,
        issued_at=r.issued_at,
        revoked_at=r.revoked_at,
        renewed_by=r.renewed_by,
        revoked_via=r.revoked_via,
    )


def bundle_record(r: Row[Any]) -> BundleRecord:
    return BundleRecord(r.sequence, r.published_at, r.document, tuple(json.loads(r.ca_key_ids)))


__all__ = [
    "Q_CONSUME_TOKEN",
    "Q_CURRENT_INTERMEDIATE",
    "Q_INSERT_SVID",
    "Q_LATEST_BUNDLE",
    "bundle_record",
    "ca_key_record",
    "svid_record",
]
