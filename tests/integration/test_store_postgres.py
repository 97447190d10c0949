"""The store contract (tests/unit/store/store_contract.py) on the real PostgreSQL.

Each test gets its own schema (created and dropped here), so runs never see each other's rows.
Skips, saying why, only when PostgreSQL is not reachable.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "store"))

from store_contract import *  # noqa: F403
from store_contract import OpenStore

from garrison.store import Store

PG_URL = os.environ.get("GARRISON_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _admin_connect():  # type: ignore[no-untyped-def]
    import psycopg

    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(dsn, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="module")
def pg_available() -> None:
    try:
        _admin_connect().close()
    except Exception as e:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {e}")


@pytest.fixture
def open_store(pg_available: None) -> Iterator[OpenStore]:
    name = f"garrison_test_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    opened: list[Store] = []

    def open_() -> Store:
        s = Store.open(f"{PG_URL}?options=-csearch_path%3D{name}")
        opened.append(s)
        return s

    try:
        yield open_
    finally:
        for s in opened:
            s.close()
        with _admin_connect() as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def test_postgres_store_is_really_postgres(open_store: OpenStore) -> None:
    s = open_store()
    assert s.dialect == "postgresql"
    assert s.schema_version() == 1
