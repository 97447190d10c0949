"""The store as garrison shipped it at schema version 1, to build real v1 databases in tests.

A verbatim copy of schema.py's tables at v1 and of migration 1 (``metadata.create_all`` then the
``schema_version`` row); plus ``describe``, which reduces a database's shape to comparable values.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
)

metadata = MetaData()
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
Table(
    "ca_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("parent_id", String(64), ForeignKey("ca_keys.id"), nullable=True),
    Column("sealed_key", LargeBinary, nullable=True),
    Column("cert_pem", Text, nullable=True),
    Column("csr_pem", Text, nullable=True),
    Column("not_before", Float, nullable=True),
    Column("not_after", Float, nullable=True),
    Column("state", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
)
Table(
    "svids",
    metadata,
    Column("serial", String(40), primary_key=True),
    Column("spiffe_id", String(2048), nullable=False),
    Column("ca_key_id", String(64), ForeignKey("ca_keys.id"), nullable=False),
    Column("not_before", Float, nullable=False),
    Column("not_after", Float, nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Index("ix_svids_spiffe_id", "spiffe_id"),
    Index("ix_svids_not_after", "not_after"),
)
Table(
    "join_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("spiffe_id", String(2048), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Column("used_by_serial", String(40), nullable=True),
)
Table(
    "revocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("value", String(2048), nullable=False),
    Column("revoked_at", Float, nullable=False),
    Column("reason", Text, nullable=False),
)
Table(
    "bundles",
    metadata,
    Column("sequence", Integer, primary_key=True, autoincrement=False),
    Column("published_at", Float, nullable=False),
    Column("document", Text, nullable=False),
    Column("ca_key_ids", Text, nullable=False),
)
V1_TABLES = frozenset(metadata.tables)


def create_v1(engine: Engine) -> None:
    """Exactly what v1's ``Store.open`` did to an empty database."""
    with engine.begin() as conn:
        metadata.create_all(conn, checkfirst=False)
        conn.execute(meta.insert().values(key="schema_version", value="1"))


def describe(engine: Engine) -> dict[str, Any]:
    """Tables → columns (name, type, nullable, default kind), primary key, foreign keys, indexes."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        insp = inspect(conn)
        for name in sorted(insp.get_table_names()):
            cols = [
                (c["name"], str(c["type"]), c["nullable"], c.get("default") is not None)
                for c in insp.get_columns(name)
            ]
            fks = sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in insp.get_foreign_keys(name)
            )
            ixs = sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(name)
            )
            pk = tuple(insp.get_pk_constraint(name)["constrained_columns"])
            out[name] = {"columns": cols, "pk": pk, "fks": fks, "indexes": ixs}
    return out


def dump(engine: Engine, tables: frozenset[str] = V1_TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables``, sorted: to show that a migration left the data alone."""
    md = MetaData()
    md.reflect(engine, only=sorted(tables))
    with engine.connect() as conn:
        return {
            name: sorted(tuple(r) for r in conn.execute(select(md.tables[name]))) for name in sorted(tables)
        }
