"""The store contract on SQLite (a temporary file), plus SQLite-only facts (WAL, file mode)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from store_contract import *  # noqa: F403
from store_contract import OpenStore

from garrison.store import Store, StoreError


@pytest.fixture
def open_store(tmp_path: Path) -> OpenStore:
    return lambda: Store.open(tmp_path / "garrison.db")


def test_sqlite_file_is_0600_in_wal_mode_with_foreign_keys_and_synchronous_normal(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "g.db")
    assert stat.S_IMODE((tmp_path / "g.db").stat().st_mode) == 0o600
    with s._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL: safe in WAL mode
    s.close()


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        Store.open("mysql://x/y")


def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store.open(tmp_path / "no" / "such" / "dir.db")
