"""Engines for the store: SQLite (a file path: WAL, foreign keys, ``BEGIN IMMEDIATE``) or PostgreSQL.

SQLite takes the write lock at BEGIN, so two writers never deadlock on a lock upgrade;
``synchronous=NORMAL`` in WAL mode survives process crashes (an OS crash may lose the last commits).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from garrison.store.errors import StoreError

_BUSY_TIMEOUT_MS = 10_000


def _set_wal(cur: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried: while another connection converts a new database to
    WAL, SQLite answers "database is locked" at once, without calling the busy handler."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        # busy_timeout first: switching a new database to WAL takes a lock, and without the timeout a
        # second process opening it at the same moment fails at once with "database is locked".
        cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        _set_wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across process crashes
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def describe_error(e: sqlalchemy.exc.SQLAlchemyError) -> str:
    orig = getattr(e, "orig", None)
    text = str(orig if orig is not None else e).strip().splitlines()
    return f"{type(orig if orig is not None else e).__name__}: {text[0] if text else ''}"


def make_engine(target: str | os.PathLike[str]) -> Engine:
    """A file path means SQLite (created 0600 if missing); ``postgresql+psycopg://...`` a server."""
    raw = os.fspath(target)
    try:
        if "://" in raw:
            url = make_url(raw)
            if url.get_backend_name() == "sqlite":
                return sqlite_engine(raw)
            if url.get_backend_name() == "postgresql":
                return create_engine(url, pool_pre_ping=True)
            raise StoreError(f"unsupported store URL scheme {url.drivername!r}")
        path = Path(raw).resolve()
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        return sqlite_engine(f"sqlite+pysqlite:///{path}")
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise StoreError(f"cannot open store: {describe_error(e)}") from e
    except OSError as e:
        raise StoreError(f"cannot create store file {raw}: {e.strerror}") from e


@contextmanager
def transaction(engine: Engine, what: str = "store") -> Iterator[Connection]:
    """One transaction on ``engine``; every database exception leaves as ``StoreError`` naming ``what``."""
    try:
        with engine.begin() as conn:
            yield conn
    except sqlalchemy.exc.IntegrityError as e:
        raise StoreError(f"{what}: constraint violated ({describe_error(e)})") from e
    except sqlalchemy.exc.OperationalError as e:
        raise StoreError(f"{what} unavailable ({describe_error(e)})") from e
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise StoreError(f"{what} error ({describe_error(e)})") from e


__all__ = ["describe_error", "make_engine", "sqlite_engine", "transaction"]
