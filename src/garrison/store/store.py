"""``Store``: the CA's persistence over SQLAlchemy Core. SQLite (a file path) or PostgreSQL (a URL).

Every method is one transaction, and every database exception leaves this module (or engine.py,
at open) as ``StoreError``: SQLAlchemy is called nowhere else. Engines: engine.py; rows: rows.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

from sqlalchemy import Connection, Engine, case, func, or_, select, update

from garrison.store import rows, schema
from garrison.store.engine import make_engine, transaction
from garrison.store.errors import StoreError
from garrison.store.migrations import current_version, migrate
from garrison.store.records import (
    BundleRecord,
    CaKeyPurpose,
    CaKeyRecord,
    CaKeyState,
    IssueState,
    JoinTokenRecord,
    RedeemOutcome,
    SealedBlob,
    SvidRecord,
)
from garrison.store.sealed import Reseal, reseal_all

# ``join_tokens.used_by_serial`` of a token burned unused by a revocation of its SPIFFE ID.
BURNED = "revoked"


class Store:
    """Control-plane state. ``Store.open(path_or_url)`` connects and migrates; ``close()`` disposes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, target: str | os.PathLike[str], *, migrate: bool = True) -> Store:
        """A file path means SQLite (created 0600 if missing); ``postgresql+psycopg://...`` a server."""
        engine = make_engine(target)
        store = cls(engine)
        if migrate:
            store.migrate()
        return store

    def close(self) -> None:
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self._engine.url.render_as_string(hide_password=True)!r})"

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for other stores sharing this database (``SqlOAuthState``)."""
        return self._engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def _tx(self) -> AbstractContextManager[Connection]:
        return transaction(self._engine, "store")

    # -- schema ---------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply pending migrations in one transaction; returns the versions applied (often [])."""
        with self._tx() as conn:
            return migrate(conn)

    def schema_version(self) -> int:
        with self._tx() as conn:
            return current_version(conn)

    # -- meta -------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._tx() as conn:
            return conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == key)).scalar()

    def set_meta_once(self, key: str, value: str) -> str:
        """Insert ``key`` unless present; returns the stored value (the first writer wins)."""
        with self._tx() as conn:
            have = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == key)).scalar()
            if have is not None:
                return str(have)
            conn.execute(schema.meta.insert().values(key=key, value=value))
            return value

    # -- sealed blobs (KEK rotation) ---------------------------------------------------------------
    def reseal(self, reseal: Reseal) -> list[SealedBlob]:
        """Replace every KEK-sealed blob with ``reseal(blob)``, all in ONE transaction.

        Order: the meta ``kek_check`` first (a wrong KEK fails before any row is touched), then CA
        keys, then token signing keys. If ``reseal`` raises, the transaction rolls back and every
        blob stays as it was (sealed.py). Returns the blobs as they were, in that order.
        """
        with self._tx() as conn:
            return reseal_all(conn, reseal)

    # -- CA keys ----------------------------------------------------------------------------------
    def add_ca_key(self, rec: CaKeyRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                schema.ca_keys.insert().values(
                    id=rec.id,
                    purpose=rec.purpose.value,
                    parent_id=rec.parent_id,
                    sealed_key=rec.sealed_key,
                    cert_pem=rec.cert_pem,
                    csr_pem=rec.csr_pem,
                    not_before=rec.not_before,
                    not_after=rec.not_after,
                    state=rec.state.value,
                    created_at=rec.created_at,
                )
            )

    def get_ca_key(self, key_id: str) -> CaKeyRecord | None:
        with self._tx() as conn:
            r = conn.execute(select(schema.ca_keys).where(schema.ca_keys.c.id == key_id)).first()
            return rows.ca_key_record(r) if r is not None else None

    def list_ca_keys(self, states: Iterable[CaKeyState] | None = None) -> list[CaKeyRecord]:
        q = select(schema.ca_keys).order_by(schema.ca_keys.c.created_at, schema.ca_keys.c.id)
        if states is not None:
            q = q.where(schema.ca_keys.c.state.in_([s.value for s in states]))
        with self._tx() as conn:
            return [rows.ca_key_record(r) for r in conn.execute(q)]

    def install_ca_cert(
        self,
        key_id: str,
        cert_pem: str,
        not_before: float,
        not_after: float,
        *,
        state: CaKeyState,
        parent_id: str | None = None,
    ) -> None:
        """Attach the signed certificate to a pending key and move it to ``state``."""
        with self._tx() as conn:
            res = conn.execute(
                update(schema.ca_keys)
                .where(schema.ca_keys.c.id == key_id, schema.ca_keys.c.state == CaKeyState.PENDING.value)
                .values(
                    cert_pem=cert_pem,
                    not_before=not_before,
                    not_after=not_after,
                    state=state.value,
                    parent_id=parent_id,
                )
            )
            if res.rowcount != 1:
                raise StoreError(f"CA key {key_id} is not pending a certificate")

    def activate(self, key_id: str) -> None:
        """Atomically: the current intermediate retires and ``key_id`` (next) becomes current; if
        ``key_id`` hangs off a root that is not current, that root becomes current and the others retire.
        """
        c = schema.ca_keys.c
        inter = CaKeyPurpose.INTERMEDIATE.value
        with self._tx() as conn:
            parent = conn.execute(
                select(c.parent_id).where(
                    c.id == key_id, c.state == CaKeyState.NEXT.value, c.purpose == inter
                )
            ).scalar()
            if parent is None:
                raise StoreError(f"CA key {key_id} is not an intermediate in state 'next'")
            conn.execute(
                update(schema.ca_keys)
                .where(c.state == CaKeyState.CURRENT.value, c.purpose == inter)
                .values(state=CaKeyState.RETIRED.value)
            )
            conn.execute(update(schema.ca_keys).where(c.id == key_id).values(state=CaKeyState.CURRENT.value))
            conn.execute(
                update(schema.ca_keys)
                .where(
                    c.purpose == CaKeyPurpose.ROOT.value,
                    c.id != parent,
                    c.state == CaKeyState.CURRENT.value,
                )
                .values(state=CaKeyState.RETIRED.value)
            )
            conn.execute(update(schema.ca_keys).where(c.id == parent).values(state=CaKeyState.CURRENT.value))

    def signing_state(self) -> tuple[CaKeyRecord | None, BundleRecord | None]:
        """The current intermediate and the last published bundle, read in one transaction."""
        with self._tx() as conn:
            return self._signing_state(conn)

    @staticmethod
    def _signing_state(conn: Connection) -> tuple[CaKeyRecord | None, BundleRecord | None]:
        r = conn.execute(rows.Q_CURRENT_INTERMEDIATE).first()
        br = conn.execute(rows.Q_LATEST_BUNDLE).first()
        return (
            rows.ca_key_record(r) if r is not None else None,
            rows.bundle_record(br) if br is not None else None,
        )

    def issue(
        self,
        sign: Callable[[IssueState], SvidRecord],
        *,
        spiffe_id: str,
        join_token_hash: str | None = None,
        renewing: str | None = None,
        now: float = 0.0,
    ) -> RedeemOutcome:
        """One transaction per issuance: read the signing CA, the last bundle, the latest revocation
        of ``spiffe_id`` and (renewal) the presented SVID ``renewing``; let ``sign`` make the SVID
        from them (it may raise: nothing is written); burn the join token if one is given; mark the
        presented SVID renewed; record the new one. Returns ``REDEEMED`` when the SVID was recorded.

        Renewal vs revocation (review M1): the presented row is read ``FOR UPDATE`` on PostgreSQL
        and marked with a conditional UPDATE (unrevoked, not yet renewed), so a revocation and a
        renewal of the same SVID serialize; SQLite's ``BEGIN IMMEDIATE`` serializes every writer.
        """
        with self._tx() as conn:
            presented: SvidRecord | None = None
            if renewing is not None:
                q = select(schema.svids).where(schema.svids.c.serial == renewing)
                if conn.dialect.name == "postgresql":
                    q = q.with_for_update()
                r = conn.execute(q).first()
                if r is None:
                    return RedeemOutcome.PRESENTED_UNKNOWN
                presented = rows.svid_record(r)
            ca, bundle = self._signing_state(conn)
            rec = sign(IssueState(ca, bundle, self._id_revoked_at(conn, spiffe_id), presented))
            if join_token_hash is not None:
                outcome = self._consume(conn, join_token_hash, rec.spiffe_id, now, rec.serial)
                if outcome is not RedeemOutcome.REDEEMED:
                    return outcome
            if renewing is not None:
                c = schema.svids.c
                res = conn.execute(
                    update(schema.svids)
                    .where(c.serial == renewing, c.revoked_at.is_(None), c.renewed_by.is_(None))
                    .values(renewed_by=rec.serial)
                )
                if res.rowcount != 1:  # only if ``sign`` did not check what it was given
                    return (
                        RedeemOutcome.PRESENTED_REVOKED
                        if presented is not None and presented.renewed_by is None
                        else RedeemOutcome.PRESENTED_RENEWED
                    )
            self._insert_svid(conn, rec)
            return RedeemOutcome.REDEEMED

    @staticmethod
    def _id_revoked_at(conn: Connection, spiffe_id: str) -> float | None:
        at = conn.execute(rows.Q_ID_REVOKED_AT, {"sid": spiffe_id}).scalar()
        return float(at) if at is not None else None

    def id_revoked_at(self, spiffe_id: str) -> float | None:
        """When ``spiffe_id`` was last revoked as a whole (``revoke_spiffe_id``), or None."""
        with self._tx() as conn:
            return self._id_revoked_at(conn, spiffe_id)

    def svid_and_id_revocation(self, serial: str, spiffe_id: str) -> tuple[SvidRecord | None, float | None]:
        """An SVID's row and its ID's latest revocation, in one transaction (a peer's revocation check)."""
        with self._tx() as conn:
            r = conn.execute(select(schema.svids).where(schema.svids.c.serial == serial)).first()
            return (rows.svid_record(r) if r is not None else None, self._id_revoked_at(conn, spiffe_id))

    # -- SVIDs ------------------------------------------------------------------------------------
    def record_svid(self, rec: SvidRecord) -> None:
        with self._tx() as conn:
            self._insert_svid(conn, rec)

    @staticmethod
    def _insert_svid(conn: Connection, rec: SvidRecord) -> None:
        conn.execute(
            rows.Q_INSERT_SVID,
            {
                "serial": rec.serial,
                "spiffe_id": rec.spiffe_id,
                "ca_key_id": rec.ca_key_id,
                "not_before": rec.not_before,
                "not_after": rec.not_after,
                "issued_at": rec.issued_at,
                "revoked_at": rec.revoked_at,
                "renewed_by": rec.renewed_by,
                "revoked_via": rec.revoked_via,
            },
        )

    def get_svid(self, serial: str) -> SvidRecord | None:
        with self._tx() as conn:
            r = conn.execute(select(schema.svids).where(schema.svids.c.serial == serial)).first()
            return rows.svid_record(r) if r is not None else None

    def list_svids(self, *, spiffe_id: str | None = None, valid_at: float | None = None) -> list[SvidRecord]:
        """SVIDs (optionally of one ID, optionally only those unexpired at ``valid_at``), oldest first."""
        c = schema.svids.c
        q = select(schema.svids).order_by(c.issued_at, c.serial)
        if spiffe_id is not None:
            q = q.where(c.spiffe_id == spiffe_id)
        if valid_at is not None:
            q = q.where(c.not_after > valid_at)
        with self._tx() as conn:
            return [rows.svid_record(r) for r in conn.execute(q)]

    # -- join tokens ------------------------------------------------------------------------------
    def add_join_token(self, rec: JoinTokenRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                schema.join_tokens.insert().values(
                    token_hash=rec.token_hash,
                    spiffe_id=rec.spiffe_id,
                    created_at=rec.created_at,
                    expires_at=rec.expires_at,
                )
            )

    def redeem_join_token(
        self, token_hash: str, spiffe_id: str, now: float, svid: SvidRecord
    ) -> RedeemOutcome:
        """Mark the token used and record ``svid``, in one transaction, or neither."""
        with self._tx() as conn:
            outcome = self._consume(conn, token_hash, spiffe_id, now, svid.serial)
            if outcome is RedeemOutcome.REDEEMED:
                self._insert_svid(conn, svid)
            return outcome

    @staticmethod
    def _consume(conn: Connection, token_hash: str, spiffe_id: str, now: float, serial: str) -> RedeemOutcome:
        """The conditional UPDATE is the single-use guarantee: of two concurrent redeemers exactly one
        matches ``used_at IS NULL`` (PostgreSQL re-checks the row once the first commits; SQLite
        serializes writers), the other sees 0 rows and gets ``ALREADY_USED``."""
        res = conn.execute(
            rows.Q_CONSUME_TOKEN,
            {"h": token_hash, "now": now, "sid": spiffe_id, "used_at": now, "serial": serial},
        )
        if res.rowcount == 1:
            return RedeemOutcome.REDEEMED
        r = conn.execute(
            select(schema.join_tokens).where(schema.join_tokens.c.token_hash == token_hash)
        ).first()
        if r is None:
            return RedeemOutcome.UNKNOWN
        if r.used_at is not None:
            return RedeemOutcome.ALREADY_USED
        if r.expires_at <= now:
            return RedeemOutcome.EXPIRED
        if r.spiffe_id != spiffe_id:
            return RedeemOutcome.WRONG_SPIFFE_ID
        return RedeemOutcome.ALREADY_USED  # pragma: no cover - used between our UPDATE and SELECT

    def get_join_token(self, token_hash: str) -> JoinTokenRecord | None:
        c = schema.join_tokens.c
        with self._tx() as conn:
            r = conn.execute(select(schema.join_tokens).where(c.token_hash == token_hash)).first()
        if r is None:
            return None
        return JoinTokenRecord(
            r.token_hash, r.spiffe_id, r.created_at, r.expires_at, r.used_at, r.used_by_serial
        )

    # -- revocation -------------------------------------------------------------------------------
    def revoke_serial(self, serial: str, now: float, reason: str) -> bool:
        """Revoke one SVID; False if the serial is unknown or already revoked."""
        c = schema.svids.c
        with self._tx() as conn:
            res = conn.execute(
                update(schema.svids)
                .where(c.serial == serial, c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_via="serial")
            )
            if res.rowcount != 1:
                return False
            conn.execute(
                schema.revocations.insert().values(kind="serial", value=serial, revoked_at=now, reason=reason)
            )
            return True

    def revoke_spiffe_id(self, spiffe_id: str, now: float, reason: str, *, covered_below: float) -> list[str]:
        """Revoke ``spiffe_id`` as a whole: one ``revocations`` row (what the trust document lists),
        its unused join tokens burned, and every unexpired, unrevoked SVID of it marked; returns
        their serials.

        ``covered_below``: SVIDs with ``not_before`` below it are covered by the ID entry (the
        caller's rule, see ``identity.ca.revocation``) and marked ``revoked_via='spiffe_id'``, so
        they are not listed again by serial; any other (an SVID whose issuance raced this one) is
        marked ``'serial'`` and listed.

        PostgreSQL ordering (review M1/M5): the SVID rows are locked first, so an in-flight renewal
        (which holds its presented row) commits before we go on; the token UPDATE waits for in-flight
        redemptions; the final UPDATE then runs on a snapshot that includes what they recorded.
        """
        c = schema.svids.c
        live = (c.spiffe_id == spiffe_id, c.revoked_at.is_(None), c.not_after > now)
        jt = schema.join_tokens.c
        with self._tx() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(c.serial).where(*live).with_for_update()).all()
            conn.execute(
                update(schema.join_tokens)
                .where(jt.spiffe_id == spiffe_id, jt.used_at.is_(None))
                .values(used_at=now, used_by_serial=BURNED)
            )
            serials = list(conn.execute(select(c.serial).where(*live)).scalars())
            conn.execute(
                update(schema.svids)
                .where(*live)
                .values(
                    revoked_at=now,
                    revoked_via=case((c.not_before < covered_below, "spiffe_id"), else_="serial"),
                )
            )
            conn.execute(
                schema.revocations.insert().values(
                    kind="spiffe_id", value=spiffe_id, revoked_at=now, reason=reason
                )
            )
            return serials

    def revoked_serials(self, now: float) -> list[str]:
        """Serials revoked one by one and not yet expired (once expired, no listener accepts them
        anyway). SVIDs revoked as part of their SPIFFE ID are covered by ``revoked_ids``."""
        c = schema.svids.c
        q = (
            select(c.serial)
            .where(
                c.revoked_at.is_not(None),
                c.not_after > now,
                or_(c.revoked_via.is_(None), c.revoked_via != "spiffe_id"),
            )
            .order_by(c.serial)
        )
        with self._tx() as conn:
            return list(conn.execute(q).scalars())

    def revoked_ids(self, now: float) -> list[tuple[str, float]]:
        """``(spiffe_id, revoked_at)`` of each ID revoked as a whole (its latest revocation), while
        an unexpired SVID of it issued before (within 1 s: certificate times are whole seconds)
        exists: one entry per ID however many SVIDs it had."""
        rv, c = schema.revocations.c, schema.svids.c
        latest = (
            select(rv.value.label("spiffe_id"), func.max(rv.revoked_at).label("at"))
            .where(rv.kind == "spiffe_id")
            .group_by(rv.value)
            .subquery()
        )
        alive = (
            select(c.serial)
            .where(c.spiffe_id == latest.c.spiffe_id, c.not_after > now, c.issued_at < latest.c.at + 1)
            .exists()
        )
        q = select(latest.c.spiffe_id, latest.c.at).where(alive).order_by(latest.c.spiffe_id)
        with self._tx() as conn:
            return [(str(r.spiffe_id), float(r.at)) for r in conn.execute(q)]

    def revocation_count(self) -> int:
        with self._tx() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.revocations)).scalar_one())

    # -- trust bundle -----------------------------------------------------------------------------
    def publish_bundle(
        self, document_for: Callable[[int], str], ca_key_ids: Iterable[str], now: float
    ) -> BundleRecord:
        """Store the next bundle: ``document_for(sequence) -> str`` renders it with its sequence."""
        ids = tuple(ca_key_ids)
        c = schema.bundles.c
        with self._tx() as conn:
            last = conn.execute(select(func.max(c.sequence))).scalar()
            seq = int(last or 0) + 1
            doc = str(document_for(seq))
            conn.execute(
                schema.bundles.insert().values(
                    sequence=seq, published_at=now, document=doc, ca_key_ids=json.dumps(list(ids))
                )
            )
        return BundleRecord(seq, now, doc, ids)

    def first_bundle_covering(self, key_id: str) -> BundleRecord | None:
        """The earliest bundle of the latest unbroken run of bundles that cover ``key_id``."""
        c = schema.bundles.c
        found: BundleRecord | None = None
        with self._tx() as conn:
            for r in conn.execute(select(schema.bundles).order_by(c.sequence.desc())):
                rec = rows.bundle_record(r)
                if key_id not in rec.ca_key_ids:
                    break
                found = rec
        return found

    def latest_bundle(self) -> BundleRecord | None:
        c = schema.bundles.c
        with self._tx() as conn:
            r = conn.execute(select(schema.bundles).order_by(c.sequence.desc()).limit(1)).first()
        return rows.bundle_record(r) if r is not None else None


__all__ = ["Store"]
