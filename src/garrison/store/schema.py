"""The control-plane schema (SQLAlchemy Core, no ORM). Times are epoch seconds (float, UTC).

This is the current shape; ``migrations.py`` (with the frozen DDL in ``ddl.py``) is the history that
builds it, and a test checks that a migrated database has exactly these tables, columns and indexes.
Change both together, bumping SCHEMA_VERSION. Nothing creates tables from this metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 3
metadata = MetaData()

# -- v1: the CA -------------------------------------------------------------------------------------
# Key/value facts about the store itself: schema_version, kek_check.
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# CA keys: purpose root|intermediate; state pending (CSR out) | next | current | retired.
# sealed_key is NULL for a root kept offline (only its certificate is here).
ca_keys = Table(
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

# Issued X.509-SVIDs. serial is lower-case hex (up to 160 bits: too wide for BIGINT).
svids = Table(
    "svids",
    metadata,
    Column("serial", String(40), primary_key=True),
    Column("spiffe_id", String(2048), nullable=False),
    Column("ca_key_id", String(64), ForeignKey("ca_keys.id"), nullable=False),
    Column("not_before", Float, nullable=False),
    Column("not_after", Float, nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("renewed_by", String(40), nullable=True),  # v3: the serial that renewed it (once only)
    Column("revoked_via", String(16), nullable=True),  # v3: serial | spiffe_id; NULL: revoked before v3
    Index("ix_svids_spiffe_id", "spiffe_id"),
    Index("ix_svids_not_after", "not_after"),
)

# Join tokens: only the SHA-256 of the token is stored, never the token.
join_tokens = Table(
    "join_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("spiffe_id", String(2048), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Column("used_by_serial", String(40), nullable=True),
)

# Revocation events (kind serial|spiffe_id); svids.revoked_at is the per-certificate state.
revocations = Table(
    "revocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("value", String(2048), nullable=False),
    Column("revoked_at", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_revocations_kind_value", "kind", "value"),  # v3: the latest revocation of an ID
)

# Every published trust bundle: sequence is the SPIFFE bundle's spiffe_sequence.
bundles = Table(
    "bundles",
    metadata,
    Column("sequence", Integer, primary_key=True, autoincrement=False),
    Column("published_at", Float, nullable=False),
    Column("document", Text, nullable=False),
    Column("ca_key_ids", Text, nullable=False),  # JSON list of the CA keys the bundle covers
)

# -- v2: the token service (identity/oauth/sql_state.py, sql_clients.py) ---------------------------
# RFC 7523 §3 replay cache: a (client, jti) pair is refused until the assertion expires.
oauth_assertion_jtis = Table(
    "oauth_assertion_jtis",
    metadata,
    Column("client_id", String(2048), nullable=False),
    Column("jti", String(256), nullable=False),
    Column("expires_at", Float, nullable=False),
    PrimaryKeyConstraint("client_id", "jti"),
    Index("ix_oauth_assertion_jtis_expires_at", "expires_at"),
)

# RFC 7009: revoked access tokens, kept until exp + gateway leeway.
oauth_revoked_jtis = Table(
    "oauth_revoked_jtis",
    metadata,
    Column("jti", String(256), primary_key=True),
    Column("expires_at", Float, nullable=False),
    Index("ix_oauth_revoked_jtis_expires_at", "expires_at"),
)

# The token signing key ring; private keys sealed with the KEK (never plaintext).
oauth_signing_keys = Table(
    "oauth_signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("state_since", Float, nullable=False),
)

# Registered OAuth clients: the registration's JSON form, re-validated on every read.
oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(2048), primary_key=True),
    Column("registration", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

__all__ = [
    "SCHEMA_VERSION",
    "bundles",
    "ca_keys",
    "join_tokens",
    "meta",
    "metadata",
    "oauth_assertion_jtis",
    "oauth_clients",
    "oauth_revoked_jtis",
    "oauth_signing_keys",
    "revocations",
    "svids",
]
