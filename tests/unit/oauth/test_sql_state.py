"""SqlOAuthState on SQLite: single use of assertion jtis (RFC 7523 §3) that survives restarts and
concurrency, lazy pruning, and the schema coming from the store's migrations."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from oauth_kit import NOW, ORDERS
from sqlalchemy import func, select

import garrison.identity.oauth.sql_state as sql_state
from garrison.errors import StoreBusy, StoreError
from garrison.identity.oauth.sql_state import MAX_JTI_CHARS, PRUNE_INTERVAL, SqlOAuthState
from garrison.store import SCHEMA_VERSION, Store, schema


def _rows(s: SqlOAuthState) -> int:
    with s._engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.oauth_assertion_jtis)).scalar_one())


@pytest.fixture
def state(tmp_path: Path) -> SqlOAuthState:
    return SqlOAuthState.open(tmp_path / "g.db")


def test_open_migrates_a_fresh_file_to_the_store_schema(tmp_path: Path) -> None:
    SqlOAuthState.open(tmp_path / "g.db").close()
    s = Store.open(tmp_path / "g.db")
    assert s.schema_version() == SCHEMA_VERSION and s.migrate() == []
    s.close()


def test_create_tables_is_a_harmless_repeat(state: SqlOAuthState) -> None:
    assert state.use_jti(ORDERS, "j", NOW + 60, NOW)
    state.create_tables()
    state.create_tables()
    assert not state.use_jti(ORDERS, "j", NOW + 60, NOW)


def test_a_replayed_assertion_is_refused_even_after_a_restart(tmp_path: Path) -> None:
    s = SqlOAuthState.open(tmp_path / "g.db")
    assert s.use_jti(ORDERS, "once", NOW + 60, NOW)
    s.close()  # the row was committed when use_jti returned True
    s = SqlOAuthState.open(tmp_path / "g.db")
    assert not s.use_jti(ORDERS, "once", NOW + 60, NOW + 1)
    assert s.use_jti("spiffe://example.org/svc/other", "once", NOW + 60, NOW + 1)  # per client
    s.close()


def test_an_expired_jti_is_reusable_before_any_prune(state: SqlOAuthState) -> None:
    assert state.use_jti(ORDERS, "j", NOW + 10, NOW)
    assert not state.use_jti(ORDERS, "j", NOW + 10, NOW + 10)  # expiry instant: still live
    assert state.use_jti(ORDERS, "j", NOW + 100, NOW + 11)  # taken over, no prune ran (< interval)
    assert not state.use_jti(ORDERS, "j", NOW + 100, NOW + 12)  # and single use again


def test_expired_rows_are_pruned_at_most_once_per_interval(state: SqlOAuthState) -> None:
    assert state.use_jti(ORDERS, "a", NOW + 1, NOW)  # first call prunes (nothing) and arms the timer
    assert state.use_jti(ORDERS, "b", NOW + 2, NOW + 5)
    assert _rows(state) == 2  # "a" expired, but no prune before NOW + PRUNE_INTERVAL
    assert state.use_jti(ORDERS, "c", NOW + PRUNE_INTERVAL + 60, NOW + PRUNE_INTERVAL)
    assert _rows(state) == 1  # a and b pruned, c kept


def test_an_oversized_jti_is_refused_and_never_stored(state: SqlOAuthState) -> None:
    assert not state.use_jti(ORDERS, "x" * (MAX_JTI_CHARS + 1), NOW + 60, NOW)
    assert _rows(state) == 0


def test_concurrent_replays_from_separate_processes_succeed_exactly_once(tmp_path: Path) -> None:
    """Separate engines (as separate control-plane processes would have) race on one jti."""
    n = 6
    states = [SqlOAuthState.open(tmp_path / "g.db") for _ in range(n)]
    barrier = threading.Barrier(n)
    wins: list[bool] = []

    def use(s: SqlOAuthState) -> None:
        barrier.wait()
        wins.append(s.use_jti(ORDERS, "race", NOW + 60, NOW))

    threads = [threading.Thread(target=use, args=(s,)) for s in states]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for s in states:
        s.close()
    assert sorted(wins) == [False] * (n - 1) + [True]


def _in_threads(n: int, fn: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors


def test_threads_use_their_own_connections_and_close_releases_them(tmp_path: Path) -> None:
    s = SqlOAuthState.open(tmp_path / "g.db")
    _in_threads(4, lambda i: [s.use_jti(ORDERS, f"t{i}-{k}", NOW + 60, NOW) for k in range(3)])
    owned = list(s._owned)
    assert len(owned) == 4 and len({id(db) for db in owned}) == 4
    # single use holds across the threads' connections: every jti is already taken
    assert not any(s.use_jti(ORDERS, f"t{i}-{k}", NOW + 60, NOW) for i in range(4) for k in range(3))
    s.close()
    assert s._owned == []
    for db in owned:
        with pytest.raises(sqlite3.ProgrammingError):
            db.execute("SELECT 1")


def test_past_the_connection_cap_threads_share_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_state, "MAX_OWN_CONNECTIONS", 1)
    s = SqlOAuthState.open(tmp_path / "g.db")
    wins: list[bool] = []
    _in_threads(3, lambda i: wins.append(s.use_jti(ORDERS, "shared", NOW + 60, NOW)))
    assert sorted(wins) == [False, False, True] and len(s._owned) == 1
    s.close()


def test_a_failed_connection_is_replaced_on_the_next_call(state: SqlOAuthState) -> None:
    assert state.use_jti(ORDERS, "a", NOW + 60, NOW)
    [db] = state._owned
    db.close()  # the thread's connection dies under it
    with pytest.raises(StoreError, match="oauth state: store error"):
        state.use_jti(ORDERS, "b", NOW + 60, NOW)
    assert state._owned == []
    assert state.use_jti(ORDERS, "b", NOW + 60, NOW) and not state.use_jti(ORDERS, "a", NOW + 60, NOW)
    state.close()


def test_bounded_waits_give_store_busy_and_write_nothing(tmp_path: Path) -> None:
    s = SqlOAuthState(SqlOAuthState.open(tmp_path / "g.db")._engine, prune_on_use=False)
    s.bounded_waits(50)
    holder = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(StoreBusy):
        s.use_jti(ORDERS, "j", NOW + 60, NOW)
    assert time.monotonic() - started < 2
    holder.execute("ROLLBACK")
    holder.close()
    assert s.use_jti(ORDERS, "j", NOW + 60, NOW), "nothing was written by the busy attempt"
    assert not s.use_jti(ORDERS, "j", NOW + 60, NOW)
    s.close()


def test_a_closed_state_refuses_instead_of_reopening(state: SqlOAuthState) -> None:
    assert state.use_jti(ORDERS, "a", NOW + 60, NOW)
    state.close()
    with pytest.raises(StoreError, match="closed"):
        state.use_jti(ORDERS, "b", NOW + 60, NOW)
    assert state._owned == []


def test_without_prune_on_use_only_prune_jtis_deletes(tmp_path: Path) -> None:
    s = SqlOAuthState(SqlOAuthState.open(tmp_path / "g.db")._engine, prune_on_use=False)
    assert s.use_jti(ORDERS, "old", NOW - 10, NOW - 100)
    assert s.use_jti(ORDERS, "new", NOW + PRUNE_INTERVAL * 10, NOW + PRUNE_INTERVAL * 2)
    assert _rows(s) == 2, "use_jti never prunes here"
    s.prune_jtis(NOW + PRUNE_INTERVAL * 3)
    assert _rows(s) == 1
    s.close()


def test_a_broken_store_is_a_store_error_not_a_driver_error(state: SqlOAuthState) -> None:
    with state._engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE oauth_assertion_jtis")
    with pytest.raises(StoreError, match=r"oauth state: store (error|unavailable) .*no such table"):
        state.use_jti(ORDERS, "j", NOW + 60, NOW)


def test_revocations_survive_a_restart_and_expire(tmp_path: Path) -> None:
    s = SqlOAuthState.open(tmp_path / "g.db")
    s.revoke("tok", NOW + 60, NOW)
    s.close()
    s = SqlOAuthState.open(tmp_path / "g.db")
    assert s.is_revoked("tok", NOW + 60) and s.revoked_jtis(NOW) == {"tok"}
    assert not s.is_revoked("tok", NOW + 61) and s.revoked_jtis(NOW + 61) == frozenset()
    assert "g.db" in repr(s)
    s.close()
