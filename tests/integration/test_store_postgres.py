"""The store and migration contracts (tests/unit/store/) on the real PostgreSQL, plus the replay
store's single-use guarantee under concurrency there.

Each test gets its own schemas (created and dropped here), so runs never see each other's rows.
Skips, saying why, only when PostgreSQL is not reachable.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "store"))

from migration_contract import *  # noqa: F403
from store_contract import *  # noqa: F403
from store_contract import OpenStore

from garrison.identity.oauth.sql_state import SqlOAuthState
from garrison.store import SCHEMA_VERSION, Store

PG_URL = os.environ.get("GARRISON_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _admin_connect() -> psycopg.Connection[Any]:

    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(dsn, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="module")
def pg_available() -> None:
    try:
        _admin_connect().close()
    except Exception as e:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {e}")


@pytest.fixture
def new_db(pg_available: None) -> Iterator[Callable[[], str]]:
    """Each call: a new empty schema, as a store URL whose search_path is that schema."""
    names: list[str] = []

    def new() -> str:
        name = f"garrison_test_{uuid.uuid4().hex[:12]}"
        with _admin_connect() as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        names.append(name)
        return f"{PG_URL}?options=-csearch_path%3D{name}"

    try:
        yield new
    finally:
        with _admin_connect() as conn:
            for name in names:
                conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def open_store(new_db: Callable[[], str]) -> Iterator[OpenStore]:
    target = new_db()
    opened: list[Store] = []

    def open_() -> Store:
        s = Store.open(target)
        opened.append(s)
        return s

    try:
        yield open_
    finally:
        for s in opened:
            s.close()


def test_postgres_store_is_really_postgres(open_store: OpenStore) -> None:
    s = open_store()
    assert s.dialect == "postgresql"
    assert s.schema_version() == SCHEMA_VERSION


def test_assertion_jti_is_single_use_under_concurrency(new_db: Callable[[], str]) -> None:
    """RFC 7523 §3 on PostgreSQL: of 8 simultaneous uses of one jti, exactly one is accepted."""
    target, n = new_db(), 8
    states = [SqlOAuthState.open(target) for _ in range(n)]
    barrier = threading.Barrier(n)
    wins: list[bool] = []

    def use(s: SqlOAuthState) -> None:
        barrier.wait()
        wins.append(s.use_jti("spiffe://example.org/svc/a", "same-jti", 2e9, 1.9e9))

    threads = [threading.Thread(target=use, args=(s,)) for s in states]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert sorted(wins) == [False] * (n - 1) + [True]
        assert not states[0].use_jti("spiffe://example.org/svc/a", "same-jti", 2e9, 1.9e9 + 1)
        assert states[0].use_jti("spiffe://example.org/svc/a", "same-jti", 3e9, 2e9 + 1)  # expired: reusable
    finally:
        for s in states:
            s.close()
