"""Store behaviour every backend must have. Imported by test_store_sqlite.py (SQLite, tmp file) and
tests/integration/test_store_postgres.py (the real PostgreSQL), which each provide ``open_store``:
a callable that opens a new ``Store`` on the same database (so restarts can be tested)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import inspect

sys.path.insert(0, str(Path(__file__).parents[1] / "ca"))

from ca_kit import DB, NOW, TD, WEB, make_csr

from garrison.identity.ca import CaSettings, JoinTokenError, Kek, SealError, SvidError, WorkloadCA
from garrison.store import (
    SCHEMA_VERSION,
    CaKeyPurpose,
    CaKeyRecord,
    CaKeyState,
    JoinTokenRecord,
    RedeemOutcome,
    Store,
    StoreError,
    SvidRecord,
    schema,
)

OpenStore = Callable[[], Store]


@pytest.fixture
def store(open_store: OpenStore) -> Iterator[Store]:
    s = open_store()
    yield s
    s.close()


@pytest.fixture
def kek() -> Kek:
    return Kek.generate()


@pytest.fixture
def ca(store: Store, kek: Kek) -> WorkloadCA:
    ca = WorkloadCA(store, kek, CaSettings(TD))
    ca.initialize(now=NOW)
    return ca


def _key(kid: str = "k1") -> CaKeyRecord:
    return CaKeyRecord(kid, CaKeyPurpose.ROOT, CaKeyState.CURRENT, NOW, sealed_key=b"x", cert_pem="pem")


def _svid(serial: str, spiffe_id: str = WEB, not_after: float = NOW + 3600) -> SvidRecord:
    return SvidRecord(serial, spiffe_id, "k1", NOW - 10, not_after, NOW)


# -- schema and migrations ------------------------------------------------------------------------
def test_migrate_is_idempotent(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    assert store.migrate() == []
    assert store.migrate() == []


def test_migrated_tables_match_the_declared_schema(store: Store) -> None:
    with store._engine.connect() as conn:
        insp = inspect(conn)
        for table in schema.metadata.sorted_tables:
            got = {c["name"] for c in insp.get_columns(table.name)}
            assert got == {c.name for c in table.columns}, table.name


def test_a_newer_schema_is_refused(open_store: OpenStore) -> None:
    s = open_store()
    with s._engine.begin() as conn:
        conn.execute(schema.meta.update().where(schema.meta.c.key == "schema_version").values(value="999"))
    s.close()
    with pytest.raises(StoreError, match="newer than this garrison"):
        open_store()


# -- rows -------------------------------------------------------------------------------------------
def test_ca_keys_round_trip_and_activation(store: Store) -> None:
    store.add_ca_key(_key("root"))
    inter = CaKeyRecord(
        "i1", CaKeyPurpose.INTERMEDIATE, CaKeyState.NEXT, NOW, parent_id="root", sealed_key=b"\0\1"
    )
    store.add_ca_key(inter)
    assert store.get_ca_key("i1") == inter
    store.activate("i1")
    assert store.get_ca_key("i1").state is CaKeyState.CURRENT  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="not an intermediate in state 'next'"):
        store.activate("i1")


def test_duplicate_primary_key_is_a_store_error(store: Store) -> None:
    store.add_ca_key(_key())
    with pytest.raises(StoreError, match="constraint"):
        store.add_ca_key(_key())


def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(StoreError, match="constraint"):
        store.record_svid(_svid("aa"))  # ca_key_id "k1" does not exist


def test_revocation_by_serial_and_by_spiffe_id(store: Store) -> None:
    store.add_ca_key(_key())
    for serial, sid in (("01", WEB), ("02", WEB), ("03", DB)):
        store.record_svid(_svid(serial, sid))
    store.record_svid(_svid("04", WEB, not_after=NOW - 1))  # already expired
    assert store.revoke_serial("03", NOW, "key compromise")
    assert not store.revoke_serial("03", NOW, "again")
    assert not store.revoke_serial("ff", NOW, "unknown")
    assert sorted(store.revoke_spiffe_id(WEB, NOW, "decommissioned", covered_below=NOW)) == ["01", "02"]
    assert store.revoked_serials(NOW) == ["03"]  # 01 and 02 are covered by the ID entry
    assert store.revoked_ids(NOW) == [(WEB, NOW)]
    assert store.get_svid("01").revoked_via == "spiffe_id"  # type: ignore[union-attr]
    assert store.revoked_serials(NOW + 7200) == [] and store.revoked_ids(NOW + 7200) == []  # expired
    assert store.revocation_count() == 2


def test_revocation_by_spiffe_id_lists_uncovered_svids_by_serial(store: Store) -> None:
    """An SVID whose notBefore the ID rule would not refuse (its issuance raced the revocation)
    is listed by serial, so nothing revoked in the store is accepted by a gateway."""
    store.add_ca_key(_key())
    store.record_svid(_svid("01"))  # not_before NOW - 10
    assert store.revoke_spiffe_id(WEB, NOW, "", covered_below=NOW - 20) == ["01"]
    assert store.revoked_serials(NOW) == ["01"]


def test_revocation_by_spiffe_id_burns_its_unused_join_tokens(store: Store) -> None:
    store.add_ca_key(_key())
    store.add_join_token(JoinTokenRecord("h-web", WEB, NOW, NOW + 600))
    store.add_join_token(JoinTokenRecord("h-db", DB, NOW, NOW + 600))
    store.revoke_spiffe_id(WEB, NOW, "", covered_below=NOW)
    burned = store.get_join_token("h-web")
    assert burned is not None and burned.used_at == NOW and burned.used_by_serial == "revoked"
    assert store.get_join_token("h-db").used_at is None  # type: ignore[union-attr]
    assert store.redeem_join_token("h-web", WEB, NOW + 1, _svid("aa")) is RedeemOutcome.ALREADY_USED
    assert store.get_svid("aa") is None


def test_bundle_sequence_increments(store: Store) -> None:
    a = store.publish_bundle(lambda seq: f"doc{seq}", ["x"], NOW)
    b = store.publish_bundle(lambda seq: f"doc{seq}", ["x", "y"], NOW + 1)
    assert (a.sequence, b.sequence) == (1, 2)
    assert store.latest_bundle() == b and b.document == "doc2"
    assert store.first_bundle_covering("x") == a
    assert store.first_bundle_covering("y") == b
    assert store.first_bundle_covering("z") is None


# -- join tokens: single use, atomically --------------------------------------------------------------
def test_join_token_redeems_once(store: Store) -> None:
    store.add_ca_key(_key())
    store.add_join_token(JoinTokenRecord("h", WEB, NOW, NOW + 600))
    assert store.redeem_join_token("h", WEB, NOW, _svid("01")) is RedeemOutcome.REDEEMED
    assert store.redeem_join_token("h", WEB, NOW, _svid("02")) is RedeemOutcome.ALREADY_USED
    assert store.get_svid("02") is None  # the loser's SVID was never recorded
    assert store.get_join_token("h").used_by_serial == "01"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("token", "sid", "at", "outcome"),
    [
        ("h", WEB, NOW + 600, RedeemOutcome.EXPIRED),
        ("h", DB, NOW, RedeemOutcome.WRONG_SPIFFE_ID),
        ("nope", WEB, NOW, RedeemOutcome.UNKNOWN),
    ],
    ids=["expired", "other-spiffe-id", "unknown"],
)
def test_join_token_refusals(store: Store, token: str, sid: str, at: float, outcome: RedeemOutcome) -> None:
    store.add_ca_key(_key())
    store.add_join_token(JoinTokenRecord("h", WEB, NOW, NOW + 600))
    assert store.redeem_join_token(token, sid, at, _svid("01", sid)) is outcome
    assert store.get_svid("01") is None


def test_join_token_replay_under_concurrency_succeeds_exactly_once(ca: WorkloadCA) -> None:
    """Attack: N threads race to redeem one token; exactly one SVID leaves the CA."""
    token = ca.create_join_token(WEB, now=NOW)
    csrs = [make_csr([WEB]) for _ in range(8)]
    barrier = threading.Barrier(len(csrs))
    wins: list[str] = []
    losses: list[str] = []

    def redeem(csr: bytes) -> None:
        barrier.wait()
        try:
            wins.append(ca.redeem_join_token(token, csr, now=NOW).serial)
        except JoinTokenError as e:
            losses.append(str(e))

    threads = [threading.Thread(target=redeem, args=(c,)) for c in csrs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1, (wins, losses)
    assert losses == ["join token was already used"] * (len(csrs) - 1)
    assert [r.serial for r in ca.store.list_svids(spiffe_id=WEB)] == wins


# -- the CA on this backend ----------------------------------------------------------------------------
def test_state_survives_a_restart(open_store: OpenStore, kek: Kek) -> None:
    s1 = open_store()
    ca1 = WorkloadCA(s1, kek, CaSettings(TD))
    ca1.initialize(now=NOW)
    first = ca1.redeem_join_token(ca1.create_join_token(WEB, now=NOW), make_csr([WEB]), now=NOW)
    bundle = ca1.bundle_document()
    s1.close()

    s2 = open_store()
    ca2 = WorkloadCA(s2, kek, CaSettings(TD))
    assert ca2.bundle_document() == bundle
    renewed = ca2.renew(make_csr([WEB]), [first.certificate], now=NOW + 1800)
    assert renewed.intermediates[0] == first.intermediates[0]
    s2.close()


def test_wrong_kek_on_reopen_is_a_clear_error(open_store: OpenStore, kek: Kek) -> None:
    s1 = open_store()
    WorkloadCA(s1, kek, CaSettings(TD)).initialize(now=NOW)
    s1.close()
    s2 = open_store()
    with pytest.raises(SealError, match="the key-encryption key does not open this store"):
        WorkloadCA(s2, Kek.generate(), CaSettings(TD))
    s2.close()


def test_sealed_keys_are_not_readable_in_the_database(store: Store, ca: WorkloadCA) -> None:
    for rec in store.list_ca_keys():
        if rec.sealed_key is not None:
            assert b"PRIVATE KEY" not in rec.sealed_key and rec.sealed_key.startswith(b"gs1\0")


def test_sealed_blob_swapped_between_rows_is_refused(store: Store, kek: Kek) -> None:
    ca = WorkloadCA(store, kek, CaSettings(TD))
    ca.initialize(now=NOW)
    root = next(r for r in store.list_ca_keys() if r.purpose is CaKeyPurpose.ROOT)
    inter = next(r for r in store.list_ca_keys() if r.purpose is CaKeyPurpose.INTERMEDIATE)
    with store._engine.begin() as conn:
        conn.execute(
            schema.ca_keys.update().where(schema.ca_keys.c.id == inter.id).values(sealed_key=root.sealed_key)
        )
    fresh = WorkloadCA(store, kek, CaSettings(TD))  # no cached keys
    with pytest.raises(SealError, match="moved from another record"):
        fresh.issue(make_csr(), now=NOW)


def test_tampered_sealed_key_in_the_database_is_refused(store: Store, kek: Kek) -> None:
    WorkloadCA(store, kek, CaSettings(TD)).initialize(now=NOW)
    inter = next(r for r in store.list_ca_keys() if r.purpose is CaKeyPurpose.INTERMEDIATE)
    assert inter.sealed_key is not None
    tampered = inter.sealed_key[:-1] + bytes([inter.sealed_key[-1] ^ 1])
    with store._engine.begin() as conn:
        conn.execute(
            schema.ca_keys.update().where(schema.ca_keys.c.id == inter.id).values(sealed_key=tampered)
        )
    with pytest.raises(SealError, match="tampered"):
        WorkloadCA(store, kek, CaSettings(TD)).issue(make_csr(), now=NOW)
    assert store.list_svids() == []  # nothing recorded


def test_renewal_with_a_revoked_svid_is_refused(ca: WorkloadCA) -> None:
    svid = ca.issue(make_csr([WEB]), now=NOW)
    assert ca.revoke_serial(svid.serial, reason="test", now=NOW)
    with pytest.raises(SvidError, match="revoked"):
        ca.renew(make_csr([WEB]), [svid.certificate], now=NOW + 60)
    assert svid.serial in ca.revocation_list(NOW + 60).serials


def test_a_missing_table_is_a_store_error(store: Store) -> None:
    """SQLite says OperationalError, PostgreSQL ProgrammingError: both leave as StoreError."""
    with store._engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE bundles")
    with pytest.raises(StoreError):
        store.latest_bundle()


def test_database_errors_become_store_errors(store: Store) -> None:
    store.close()
    bad = Store(sqlalchemy.create_engine("sqlite:////nonexistent-dir/x.db"))
    with pytest.raises(StoreError, match="unavailable"):
        bad.latest_bundle()
