"""An explicit, ordered migration list, applied in one transaction by ``Store.migrate()``.

Hand-rolled rather than alembic (docs in the report): one linear history, no autogenerate, no
env.py, no extra dependency at import time. Rules: a shipped migration is never edited; a new one
appends ``Migration(n + 1, ...)`` written as explicit DDL, and ``schema.SCHEMA_VERSION`` follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, inspect, select, text

from garrison.store import schema
from garrison.store.errors import StoreError

# Any constant: serializes concurrent migrators on PostgreSQL (SQLite: BEGIN IMMEDIATE does it).
_PG_LOCK_KEY = 0x6761727269736F6E  # "garrison"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    # v1 *is* the first shape of schema.py; from v2 on, migrations carry their own DDL.
    schema.metadata.create_all(conn, checkfirst=False)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: CA keys, SVIDs, join tokens", _v1_initial),
)
LATEST = MIGRATIONS[-1].version
if schema.SCHEMA_VERSION != LATEST:  # pragma: no cover - a developer error caught by any test run
    raise RuntimeError("schema.SCHEMA_VERSION must follow the migration list")


def current_version(conn: Connection) -> int:
    """0 for an empty database, else the ``schema_version`` recorded in ``meta``."""
    if not inspect(conn).has_table("meta"):
        return 0
    raw = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).scalar()
    if raw is None:
        return 0
    return int(raw)


def migrate(conn: Connection) -> list[int]:
    """Apply every pending migration on ``conn`` (inside the caller's transaction). Idempotent."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    have = current_version(conn)
    if have > LATEST:
        raise StoreError(
            f"the database schema is version {have}, newer than this garrison understands ({LATEST}); "
            "upgrade garrison"
        )
    applied: list[int] = []
    for m in MIGRATIONS:
        if m.version <= have:
            continue
        m.apply(conn)
        applied.append(m.version)
    if applied:
        values = {"key": "schema_version", "value": str(LATEST)}
        if have == 0:
            conn.execute(schema.meta.insert().values(**values))
        else:
            conn.execute(
                schema.meta.update().where(schema.meta.c.key == "schema_version").values(value=str(LATEST))
            )
    return applied


__all__ = ["LATEST", "MIGRATIONS", "Migration", "current_version", "migrate"]
