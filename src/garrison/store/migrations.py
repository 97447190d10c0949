"""An explicit, ordered migration list, applied in one transaction by ``Store.migrate()``.

Hand-rolled rather than alembic: one linear history, no autogenerate, no env.py, no extra
dependency. Rules: a shipped migration is never edited; its DDL is frozen text in ``ddl.py``; a new
one appends ``Migration(n + 1, ...)`` and ``schema.SCHEMA_VERSION`` follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, inspect, select, text

from garrison.store import ddl, schema
from garrison.store.errors import StoreError

# Any constant: serializes concurrent migrators on PostgreSQL (SQLite: BEGIN IMMEDIATE does it).
_PG_LOCK_KEY = 0x6761727269736F6E  # "garrison"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _run(statements: tuple[str, ...]) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        for stmt in ddl.render(statements, conn.dialect.name):
            conn.exec_driver_sql(stmt)

    return apply


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: CA keys, SVIDs, join tokens, revocations, bundles, meta", _run(ddl.V1)),
    Migration(2, "token service: assertion jtis, revoked jtis, signing keys, clients", _run(ddl.V2)),
    Migration(3, "revocation by SPIFFE ID as one entry; one renewal per SVID", _run(ddl.V3)),
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
    try:
        return int(raw)
    except ValueError:
        raise StoreError(f"the store's schema_version {str(raw)[:20]!r} is not a number") from None


def migrate(conn: Connection) -> list[int]:
    """Apply every pending migration on ``conn`` (inside the caller's transaction). Idempotent.

    A database newer than this code is refused before anything is touched: running old code on
    it could misread or overwrite what a newer version wrote.
    """
    if conn.dialect.name == "postgresql":
        # Held to commit: a second migrator waits here, then sees the new version and does nothing.
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
        if have == 0:
            conn.execute(schema.meta.insert().values(key="schema_version", value=str(LATEST)))
        else:
            conn.execute(
                schema.meta.update().where(schema.meta.c.key == "schema_version").values(value=str(LATEST))
            )
    return applied


__all__ = ["LATEST", "MIGRATIONS", "Migration", "current_version", "migrate"]
