"""``RunningLock``: one exclusive holder per store — a running control plane, or a KEK rotation.

A KEK rotation re-seals every key in one transaction; a control plane running meanwhile would go on
sealing new keys (signing-key or CA rotation) under the old KEK, and after a restart no KEK would
open the store. The running server holds this lock; ``garrison kek rotate`` refuses unless it gets
it. SQLite: ``flock`` on ``<db>.lock`` beside the database; PostgreSQL: a session advisory lock held
on one connection.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy import Connection, text

from garrison.errors import StoreError
from garrison.store import Store

_PG_RUNNING_KEY = 0x67617272756E6E67  # "garrunng": not the migration lock's key


class RunningLock:
    def __init__(self, store: Store, what: str) -> None:
        self._store = store
        self._what = what
        self._fd: int | None = None
        self._conn: Connection | None = None

    def acquire(self) -> None:
        """Take the lock now or raise ``StoreError`` saying who may hold it."""
        busy = (
            f"another garrison process holds this store ({self._what} refused):"
            " stop the running control plane first"
        )
        if self._store.dialect == "sqlite":
            db = self._store.engine.url.database
            if not db:
                return  # an in-memory database: nothing else can open it
            path = Path(db).with_name(Path(db).name + ".lock")
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreError(busy) from None
            self._fd = fd
            return
        conn = self._store.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _PG_RUNNING_KEY}).scalar()
        conn.commit()
        if not got:
            conn.close()
            raise StoreError(busy)
        self._conn = conn

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_RUNNING_KEY})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> RunningLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["RunningLock"]
