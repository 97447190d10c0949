"""Migration behaviour every backend must have. Imported by test_migrations_sqlite.py and
tests/integration/test_store_postgres.py, which provide ``new_db``: a callable returning the target
(SQLite path or PostgreSQL URL) of a new, empty database each time it is called."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select, text

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "ca"))

from ca_kit import NOW, TD, WEB, make_csr
from v1_schema import V1_TABLES, create_v1, describe, dump

from garrison.identity.ca import CaSettings, Kek, WorkloadCA
from garrison.identity.oauth.sql_state import SqlOAuthState
from garrison.store import SCHEMA_VERSION, Store, StoreError, schema
from garrison.store.engine import make_engine

NewDb = Callable[[], str]
V2_TABLES = {"oauth_assertion_jtis", "oauth_revoked_jtis", "oauth_signing_keys", "oauth_clients"}


def test_schema_version_is_3() -> None:
    assert SCHEMA_VERSION == 3


def test_a_fresh_database_gets_the_latest_version(new_db: NewDb) -> None:
    s = Store.open(new_db())
    try:
        assert s.schema_version() == SCHEMA_VERSION
        assert set(describe(s.engine)) == set(schema.metadata.tables) == V1_TABLES | V2_TABLES
    finally:
        s.close()


def test_migrated_shape_equals_schema_py(new_db: NewDb) -> None:
    """Columns, types, nullability, keys and index names: the frozen DDL builds what schema.py says."""
    migrated = Store.open(new_db())
    reference = make_engine(new_db())
    try:
        schema.metadata.create_all(reference)
        assert describe(migrated.engine) == {k: v for k, v in describe(reference).items()}
    finally:
        migrated.close()
        reference.dispose()


def test_frozen_v1_ddl_equals_what_v1_created(new_db: NewDb) -> None:
    """Migration 1 is frozen text now; it must build exactly what v1's create_all built."""
    from garrison.store.migrations import MIGRATIONS

    old, new = make_engine(new_db()), make_engine(new_db())
    try:
        create_v1(old)
        with new.begin() as conn:
            MIGRATIONS[0].apply(conn)
        assert set(describe(old)) == V1_TABLES
        assert describe(new) == describe(old)
    finally:
        old.dispose()
        new.dispose()


def _v1_with_a_ca(
    target: str, scratch: str, kek: Kek
) -> tuple[dict[str, list[tuple[object, ...]]], str, str, str]:
    """A v1 database as v1 garrison left it: a CA, an SVID, a join token, a revocation.

    Today's CA writes columns v1 did not have, so it runs on a ``scratch`` database and the rows
    are copied, v1 columns only, into the v1 database at ``target``."""
    s = Store.open(scratch)
    ca = WorkloadCA(s, kek, CaSettings(TD))
    ca.initialize(now=NOW)
    svid = ca.issue(make_csr([WEB]), now=NOW)
    ca.create_join_token(WEB, now=NOW)
    revoked = ca.issue(make_csr([WEB]), now=NOW).serial
    ca.revoke_serial(revoked, reason="test", now=NOW)
    bundle = ca.bundle_document()
    engine = make_engine(target)
    create_v1(engine)
    v1 = MetaData()
    v1.reflect(engine, only=sorted(V1_TABLES))
    with s.engine.connect() as src, engine.begin() as dst:
        for name in ("ca_keys", "svids", "join_tokens", "revocations", "bundles", "meta"):
            table = v1.tables[name]
            rows_ = [
                dict(r._mapping)
                for r in src.execute(select(*[schema.metadata.tables[name].c[c.name] for c in table.c]))
            ]
            if name == "ca_keys":  # roots first: intermediates reference them
                rows_.sort(key=lambda r: r["parent_id"] is not None)
            if name == "meta":
                rows_ = [r for r in rows_ if r["key"] != "schema_version"]
            for r in rows_:
                dst.execute(table.insert().values(**r))
    s.close()
    data = dump(engine)
    engine.dispose()
    return data, bundle, svid.serial, revoked


def test_v1_database_upgrades_with_its_data_intact(new_db: NewDb) -> None:
    target, kek = new_db(), Kek.generate()
    before, bundle, serial, revoked = _v1_with_a_ca(target, new_db(), kek)
    s = Store.open(target)
    try:
        assert s.schema_version() == SCHEMA_VERSION
        after = dump(s.engine)
        after["meta"] = [r for r in after["meta"] if r[0] != "schema_version"]
        before["meta"] = [r for r in before["meta"] if r[0] != "schema_version"]
        n_v1 = len(before["svids"][0])  # v3 added columns at the end, NULL for existing rows
        assert all(r[n_v1:] == (None,) * (len(r) - n_v1) for r in after["svids"])
        after["svids"] = [r[:n_v1] for r in after["svids"]]
        assert after == before
        assert set(describe(s.engine)) >= V2_TABLES
        ca = WorkloadCA(s, kek, CaSettings(TD))  # same KEK check, same keys, same bundle
        assert ca.bundle_document() == bundle
        assert s.get_svid(serial) is not None
        assert s.revoked_serials(NOW) == [revoked]  # revoked before v3 (revoked_via NULL): still listed
        assert ca.issue(make_csr([WEB]), now=NOW + 60).serial
        assert s.migrate() == []
    finally:
        s.close()
    reference = make_engine(new_db())
    upgraded = make_engine(target)
    try:
        Store(reference).migrate()
        assert describe(upgraded) == describe(reference)  # an upgraded v1 is a fresh v3
    finally:
        reference.dispose()
        upgraded.dispose()


def test_v1_database_that_already_has_oauth_tables_upgrades(new_db: NewDb) -> None:
    """Before migration 2, the control plane created the OAuth tables itself on v1 databases."""
    target = new_db()
    engine = make_engine(target)
    create_v1(engine)
    with engine.begin() as conn:
        schema.metadata.create_all(
            conn, tables=[schema.metadata.tables[t] for t in sorted(V2_TABLES)], checkfirst=False
        )
        conn.execute(schema.oauth_revoked_jtis.insert().values(jti="kept", expires_at=NOW + 60))
    engine.dispose()
    s = Store.open(target)
    try:
        assert s.schema_version() == SCHEMA_VERSION
        assert SqlOAuthState(s.engine).revoked_jtis(NOW) == {"kept"}
    finally:
        s.close()


def test_a_newer_database_is_refused_and_left_alone(new_db: NewDb) -> None:
    target = new_db()
    Store.open(target).close()
    engine = make_engine(target)
    with engine.begin() as conn:
        conn.execute(schema.meta.update().where(schema.meta.c.key == "schema_version").values(value="4"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"version 4, newer than this garrison understands \(3\)"):
        Store.open(target)
    with pytest.raises(StoreError, match="newer than this garrison"):
        SqlOAuthState.open(target)
    engine = make_engine(target)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar() == "4"
    engine.dispose()


def test_a_garbled_schema_version_is_a_clear_error(new_db: NewDb) -> None:
    target = new_db()
    Store.open(target).close()
    engine = make_engine(target)
    with engine.begin() as conn:
        conn.execute(schema.meta.update().where(schema.meta.c.key == "schema_version").values(value="two"))
    engine.dispose()
    with pytest.raises(StoreError, match="schema_version 'two' is not a number"):
        Store.open(target)


def test_concurrent_migrators_do_not_conflict(new_db: NewDb) -> None:
    """Several processes starting at once on an empty database: one migrates, the others wait."""
    target, n = new_db(), 4
    barrier = threading.Barrier(n)
    results: list[list[int]] = []
    errors: list[BaseException] = []
    stores = [Store.open(target, migrate=False) for _ in range(n)]

    def migrate(s: Store) -> None:
        barrier.wait()
        try:
            results.append(s.migrate())
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert errors == [], [repr(e) for e in errors]
        assert sorted(results) == [[], [], [], [1, 2, 3]]
        assert stores[0].schema_version() == SCHEMA_VERSION
    finally:
        for s in stores:
            s.close()
