"""The DDL of each shipped migration, frozen as text: never generated from ``schema.py``.

``schema.py`` describes the current shape and moves on; these strings are what version N created
and must stay byte-for-byte as shipped. ``{blob}`` and ``{serial}`` are the only dialect spellings.
"""

from __future__ import annotations

_SPELLINGS = {
    "sqlite": {"blob": "BLOB", "serial": "INTEGER"},
    "postgresql": {"blob": "BYTEA", "serial": "SERIAL"},
}

# v1: what ``schema.metadata.create_all`` made when schema.py held only these six tables.
V1 = (
    """CREATE TABLE bundles (
	sequence INTEGER NOT NULL,
	published_at FLOAT NOT NULL,
	document TEXT NOT NULL,
	ca_key_ids TEXT NOT NULL,
	PRIMARY KEY (sequence)
)""",
    """CREATE TABLE ca_keys (
	id VARCHAR(64) NOT NULL,
	purpose VARCHAR(16) NOT NULL,
	parent_id VARCHAR(64),
	sealed_key {blob},
	cert_pem TEXT,
	csr_pem TEXT,
	not_before FLOAT,
	not_after FLOAT,
	state VARCHAR(16) NOT NULL,
	created_at FLOAT NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(parent_id) REFERENCES ca_keys (id)
)""",
    """CREATE TABLE join_tokens (
	token_hash VARCHAR(64) NOT NULL,
	spiffe_id VARCHAR(2048) NOT NULL,
	created_at FLOAT NOT NULL,
	expires_at FLOAT NOT NULL,
	used_at FLOAT,
	used_by_serial VARCHAR(40),
	PRIMARY KEY (token_hash)
)""",
    """CREATE TABLE meta (
	"key" VARCHAR(64) NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY ("key")
)""",
    """CREATE TABLE revocations (
	id {serial} NOT NULL,
	kind VARCHAR(16) NOT NULL,
	value VARCHAR(2048) NOT NULL,
	revoked_at FLOAT NOT NULL,
	reason TEXT NOT NULL,
	PRIMARY KEY (id)
)""",
    """CREATE TABLE svids (
	serial VARCHAR(40) NOT NULL,
	spiffe_id VARCHAR(2048) NOT NULL,
	ca_key_id VARCHAR(64) NOT NULL,
	not_before FLOAT NOT NULL,
	not_after FLOAT NOT NULL,
	issued_at FLOAT NOT NULL,
	revoked_at FLOAT,
	PRIMARY KEY (serial),
	FOREIGN KEY(ca_key_id) REFERENCES ca_keys (id)
)""",
    "CREATE INDEX ix_svids_not_after ON svids (not_after)",
    "CREATE INDEX ix_svids_spiffe_id ON svids (spiffe_id)",
)

# v2: the token service's tables. IF NOT EXISTS because v1 databases opened by the control plane
# before v2 existed got the same tables, same shape, from SqlOAuthState/SqlClientRegistry.
V2 = (
    """CREATE TABLE IF NOT EXISTS oauth_assertion_jtis (
	client_id VARCHAR(2048) NOT NULL,
	jti VARCHAR(256) NOT NULL,
	expires_at FLOAT NOT NULL,
	PRIMARY KEY (client_id, jti)
)""",
    "CREATE INDEX IF NOT EXISTS ix_oauth_assertion_jtis_expires_at ON oauth_assertion_jtis (expires_at)",
    """CREATE TABLE IF NOT EXISTS oauth_revoked_jtis (
	jti VARCHAR(256) NOT NULL,
	expires_at FLOAT NOT NULL,
	PRIMARY KEY (jti)
)""",
    "CREATE INDEX IF NOT EXISTS ix_oauth_revoked_jtis_expires_at ON oauth_revoked_jtis (expires_at)",
    """CREATE TABLE IF NOT EXISTS oauth_signing_keys (
	kid VARCHAR(64) NOT NULL,
	alg VARCHAR(16) NOT NULL,
	state VARCHAR(16) NOT NULL,
	sealed_key {blob} NOT NULL,
	created_at FLOAT NOT NULL,
	state_since FLOAT NOT NULL,
	PRIMARY KEY (kid)
)""",
    """CREATE TABLE IF NOT EXISTS oauth_clients (
	client_id VARCHAR(2048) NOT NULL,
	registration TEXT NOT NULL,
	created_at FLOAT NOT NULL,
	updated_at FLOAT NOT NULL,
	PRIMARY KEY (client_id)
)""",
)


# v3: revocation by SPIFFE ID as one entry (not a serial list), one renewal per SVID.
# svids.renewed_by: the serial that superseded this SVID (set once, in the renewal's transaction).
# svids.revoked_via: 'serial' | 'spiffe_id' (NULL: revoked before v3, listed by serial).
V3 = (
    "ALTER TABLE svids ADD COLUMN renewed_by VARCHAR(40)",
    "ALTER TABLE svids ADD COLUMN revoked_via VARCHAR(16)",
    "CREATE INDEX ix_revocations_kind_value ON revocations (kind, value)",
)


def render(statements: tuple[str, ...], dialect: str) -> list[str]:
    """The statements spelled for ``dialect`` (``sqlite`` or ``postgresql``)."""
    try:
        spell = _SPELLINGS[dialect]
    except KeyError:
        raise ValueError(f"no DDL for dialect {dialect!r}") from None
    return [s.format(**spell) for s in statements]


__all__ = ["V1", "V2", "V3", "render"]
