"""The token service's state in the control-plane database (SQLAlchemy Core; SQLite or PostgreSQL).

The tables below are a proposal for ``store/schema.py`` + migration 2; until the store adopts them,
``SqlOAuthState.create_tables()`` creates them (``checkfirst``). SQLAlchemy errors leave this module
as ``StoreError``. Engines come from ``garrison.store.engine.make_engine``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy.exc
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    select,
)

from garrison.errors import StoreError
from garrison.identity.oauth.state import SealedSigningKey
from garrison.store.engine import describe_error, make_engine

metadata = MetaData()

oauth_assertion_jtis = Table(
    "oauth_assertion_jtis",  # RFC 7523 §3 replay cache: (client, jti) until the assertion expires
    metadata,
    Column("client_id", String(2048), nullable=False),
    Column("jti", String(256), nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    PrimaryKeyConstraint("client_id", "jti"),
)

oauth_revoked_jtis = Table(
    "oauth_revoked_jtis",  # RFC 7009: revoked access tokens until exp + gateway leeway
    metadata,
    Column("jti", String(256), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
)

oauth_signing_keys = Table(
    "oauth_signing_keys",  # the ring; private keys sealed with the KEK (never plaintext)
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("state_since", Float, nullable=False),
)

MAX_JTI_CHARS = 256


class SqlOAuthState:
    """``ReplayStore``, ``RevocationStore``, ``SigningKeyStore`` on one engine; one transaction per call."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, target: str | os.PathLike[str]) -> SqlOAuthState:
        """A SQLite path or a PostgreSQL URL, as for ``Store.open``; creates the tables if missing."""
        state = cls(make_engine(target))
        state.create_tables()
        return state

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise StoreError(f"oauth state: store error ({describe_error(e)})") from e

    def create_tables(self) -> None:
        with self._tx() as conn:
            metadata.create_all(conn, checkfirst=True)

    # -- ReplayStore --------------------------------------------------------------------------
    def use_jti(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        if len(jti) > MAX_JTI_CHARS:
            return False  # never stored, so never accepted: fail closed
        t = oauth_assertion_jtis
        try:
            with self._engine.begin() as conn:
                conn.execute(delete(t).where(t.c.expires_at < now))
                conn.execute(t.insert().values(client_id=client_id, jti=jti, expires_at=expires_at))
            return True
        except sqlalchemy.exc.IntegrityError:
            return False  # the primary key says: already used
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise StoreError(f"oauth state: store error ({describe_error(e)})") from e

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


__all__ = ["SqlOAuthState", "metadata", "oauth_assertion_jtis", "oauth_revoked_jtis", "oauth_signing_keys"]
