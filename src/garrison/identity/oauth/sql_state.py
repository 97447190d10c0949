"""The token service's state in the control-plane database (SQLAlchemy Core; SQLite or PostgreSQL).

The tables are ``garrison.store.schema``'s (migration 2 creates them). SQLAlchemy and sqlite3
errors leave this module as ``StoreError``. Engines come from ``garrison.store.engine.make_engine``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import cast

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, delete, select

from garrison.errors import StoreBusy, StoreError
from garrison.identity.oauth.state import SealedSigningKey
from garrison.store.engine import describe_error, make_engine, transaction
from garrison.store.migrations import migrate
from garrison.store.schema import oauth_assertion_jtis, oauth_revoked_jtis, oauth_signing_keys

MAX_JTI_CHARS = 256
PRUNE_INTERVAL = 60.0  # seconds between deletes of expired assertion jtis
MAX_OWN_CONNECTIONS = 32  # threads with a SQLite connection of their own for ``use_jti``

# RFC 7523 §3 single use, in one statement: the primary key refuses a live (client, jti); a row
# whose assertion has expired (not yet pruned) is taken over, as the in-memory store forgets it.
# Of two concurrent users exactly one gets rowcount 1 (SQLite serializes writers; PostgreSQL
# waits for the first insert to commit, then evaluates the WHERE on the committed row).
_USE_JTI = (
    "INSERT INTO oauth_assertion_jtis (client_id, jti, expires_at) VALUES ({p}, {p}, {p}) "
    "ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE oauth_assertion_jtis.expires_at < {p}"
)


class SqlOAuthState:
    """``ReplayStore``, ``RevocationStore``, ``SigningKeyStore`` on one engine; one transaction per call."""

    def __init__(self, engine: Engine, *, prune_on_use: bool = True) -> None:
        """``prune_on_use=False``: ``use_jti`` never deletes expired rows itself; the owner calls
        ``prune_jtis`` (the control plane's maintenance tick, off the event loop)."""
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._use_jti_sql = _USE_JTI.format(p="?" if engine.dialect.paramstyle == "qmark" else "%s")
        self._prune_on_use = prune_on_use
        self._next_prune = float("-inf")
        # .db: this thread's own sqlite3 connection (``use_jti``); .busy_ms: its bounded lock wait
        self._own = threading.local()
        self._owned: list[sqlite3.Connection] = []
        self._owned_lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, target: str | os.PathLike[str]) -> SqlOAuthState:
        """A SQLite path or a PostgreSQL URL, as for ``Store.open``; migrates the schema if needed."""
        state = cls(make_engine(target))
        try:
            state.create_tables()
        except BaseException:
            state.close()
            raise
        return state

    def close(self) -> None:
        with self._owned_lock:
            self._closed = True
            owned, self._owned = self._owned, []
        for db in owned:
            db.close()
        self._engine.dispose()

    def _tx(self) -> AbstractContextManager[Connection]:
        return transaction(self._engine, "oauth state: store")

    def create_tables(self) -> None:
        """Bring the schema to the latest version (``Store.open`` already did, so usually a no-op).

        Kept for callers that hold only an engine; the tables themselves belong to migration 2.
        """
        with self._tx() as conn:
            migrate(conn)

    # -- ReplayStore --------------------------------------------------------------------------
    def use_jti(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """True once per live (client, jti); the row is committed before this returns True."""
        if len(jti) > MAX_JTI_CHARS:
            return False  # never stored, so never accepted: fail closed
        if self._prune_on_use and now >= self._next_prune:
            self._next_prune = now + PRUNE_INTERVAL
            self._prune_jtis(now)
        params = (client_id, jti, expires_at, now)
        if self._sqlite:
            return self._use_jti_sqlite(params)
        with self._tx() as conn:
            return conn.exec_driver_sql(self._use_jti_sql, params).rowcount == 1

    def _use_jti_sqlite(self, params: tuple[str, str, float, float]) -> bool:
        """The hot path on the embedded default: one autocommit statement on this thread's own
        sqlite3 connection (set up by the engine's connect hook, then detached from the pool: no
        checkout and no reset per call, ~20 µs), no SQLAlchemy execution layer. Committed when
        ``execute`` returns; WAL + synchronous=NORMAL survives a process crash."""
        db = self._thread_connection()
        if db is None:
            return self._use_jti_pooled(params)
        try:
            return self._execute_use_jti(db, params)
        except StoreBusy:
            raise  # nothing was written; the connection is fine
        except StoreError:
            self._drop_thread_connection(db)  # the next call starts on a fresh connection
            raise

    def bounded_waits(self, milliseconds: int) -> None:
        """From now on, this thread's ``use_jti`` waits at most ``milliseconds`` for SQLite's write
        lock, then raises ``StoreBusy`` (nothing written) instead of waiting up to the engine's
        10 s. For a caller on an event loop, which must not stall: it retries off the loop."""
        self._own.busy_ms = milliseconds
        db: sqlite3.Connection | None = getattr(self._own, "db", None)
        if db is not None:
            db.execute(f"PRAGMA busy_timeout={int(milliseconds)}")

    def _use_jti_pooled(self, params: tuple[str, str, float, float]) -> bool:
        try:
            raw = self._engine.raw_connection()
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise StoreError(f"oauth state: store unavailable ({describe_error(e)})") from e
        try:
            return self._execute_use_jti(cast(sqlite3.Connection, raw.driver_connection), params)
        finally:
            raw.close()

    def _execute_use_jti(self, db: sqlite3.Connection, params: tuple[str, str, float, float]) -> bool:
        try:
            n = db.execute(self._use_jti_sql, params).rowcount
            if db.in_transaction:  # pragma: no cover - only if a caller left a transaction open
                db.commit()
            return bool(n == 1)
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:  # and its extended codes
                raise StoreBusy(f"oauth state: store busy ({e})") from e
            raise StoreError(f"oauth state: store error ({type(e).__name__}: {e})") from e
        except sqlite3.Error as e:
            raise StoreError(f"oauth state: store error ({type(e).__name__}: {e})") from e

    def _thread_connection(self) -> sqlite3.Connection | None:
        """This thread's own connection (opened on first use), or None past ``MAX_OWN_CONNECTIONS``."""
        db: sqlite3.Connection | None = getattr(self._own, "db", None)
        if db is not None:
            return db
        with self._owned_lock:
            if self._closed:
                raise StoreError("oauth state: closed")
            if len(self._owned) >= MAX_OWN_CONNECTIONS:  # many short-lived threads: use the pool
                return None
            try:
                raw = self._engine.raw_connection()
            except sqlalchemy.exc.SQLAlchemyError as e:
                raise StoreError(f"oauth state: store unavailable ({describe_error(e)})") from e
            db = cast(sqlite3.Connection, raw.driver_connection)  # (None once detached)
            raw.detach()  # this thread's from now on; closed by ``close``
            self._owned.append(db)
        busy_ms = getattr(self._own, "busy_ms", None)
        if busy_ms is not None:
            db.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        self._own.db = db
        return db

    def _drop_thread_connection(self, db: sqlite3.Connection) -> None:
        self._own.db = None
        with self._owned_lock:
            if db in self._owned:
                self._owned.remove(db)
        db.close()

    def prune_jtis(self, now: float) -> None:
        """Delete the assertion jtis whose assertions have expired (they can no longer be replayed)."""
        self._prune_jtis(now)

    def _prune_jtis(self, now: float) -> None:
        t = oauth_assertion_jtis
        with self._tx() as conn:
            conn.execute(delete(t).where(t.c.expires_at < now))

    # -- RevocationStore ----------------------------------------------------------------------
    def revoke(self, jti: str, expires_at: float, now: float) -> None:
        t = oauth_revoked_jtis
        with self._tx() as conn:
            conn.execute(delete(t).where(t.c.expires_at < now))
            have = conn.execute(select(t.c.expires_at).where(t.c.jti == jti)).scalar()
            if have is None:
                conn.execute(t.insert().values(jti=jti, expires_at=expires_at))
            elif have < expires_at:
                conn.execute(t.update().where(t.c.jti == jti).values(expires_at=expires_at))

    def is_revoked(self, jti: str, now: float) -> bool:
        t = oauth_revoked_jtis
        with self._tx() as conn:
            at = conn.execute(select(t.c.expires_at).where(t.c.jti == jti)).scalar()
        return at is not None and at >= now

    def revoked_jtis(self, now: float) -> frozenset[str]:
        t = oauth_revoked_jtis
        with self._tx() as conn:
            return frozenset(conn.execute(select(t.c.jti).where(t.c.expires_at >= now)).scalars())

    # -- SigningKeyStore ----------------------------------------------------------------------
    def load_signing_keys(self) -> list[SealedSigningKey]:
        t = oauth_signing_keys
        with self._tx() as conn:
            rows = conn.execute(select(t).order_by(t.c.created_at, t.c.kid)).all()
        return [
            SealedSigningKey(r.kid, r.alg, r.state, bytes(r.sealed_key), r.created_at, r.state_since)
            for r in rows
        ]

    def save_signing_keys(self, keys: Sequence[SealedSigningKey]) -> None:
        t = oauth_signing_keys
        with self._tx() as conn:
            conn.execute(delete(t))
            if keys:
                conn.execute(
                    t.insert(),
                    [
                        {
                            "kid": k.kid,
                            "alg": k.alg,
                            "state": k.state,
                            "sealed_key": k.sealed_key,
                            "created_at": k.created_at,
                            "state_since": k.state_since,
                        }
                        for k in keys
                    ],
                )

    def __repr__(self) -> str:
        return f"SqlOAuthState({self._engine.url.render_as_string(hide_password=True)!r})"


__all__ = [
    "MAX_JTI_CHARS",
    "PRUNE_INTERVAL",
    "SqlOAuthState",
    "oauth_assertion_jtis",
    "oauth_revoked_jtis",
    "oauth_signing_keys",
]
