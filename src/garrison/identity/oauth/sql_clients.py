"""Registered OAuth clients in the control-plane database (``ClientRegistry`` over SQLAlchemy Core).

A registration is stored as its JSON form and re-validated (``ClientRegistration.__post_init__``)
whenever it is read back, so a row edited by hand can never smuggle in an invalid client. Reads are
served from a copy-on-write cache keyed by a version counter bumped on every write by this process;
other processes' writes are seen after ``refresh()`` (the control plane is one process today).
The table is ``garrison.store.schema.oauth_clients``, created by the store's migration 2.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Engine, delete, select

from garrison.errors import StoreError
from garrison.identity.ca.spiffe_id import SpiffeId
from garrison.identity.oauth.clients import AuthMethod, ClientRegistration
from garrison.store.engine import transaction
from garrison.store.schema import oauth_clients  # created by migration 2; registration_to_json() rows


def registration_to_json(reg: ClientRegistration) -> dict[str, Any]:
    """The registration as a JSON object (the API's and the table's form). No private material."""
    out: dict[str, Any] = {
        "client_id": reg.client_id.value,
        "auth_method": reg.auth_method.value,
        "scopes": sorted(reg.scopes),
        "audiences": sorted(reg.audiences),
        "grant_types": sorted(reg.grant_types),
    }
    if reg.jwks:
        out["jwks"] = [dict(j) for j in reg.jwks]
    if reg.default_audience is not None:
        out["default_audience"] = reg.default_audience
    return out


_FIELDS = frozenset(
    {"client_id", "auth_method", "scopes", "audiences", "grant_types", "jwks", "default_audience"}
)


def registration_from_json(doc: Any) -> ClientRegistration:
    """Parse and check a registration; ``ValueError`` with a specific message on any defect."""
    if not isinstance(doc, dict):
        raise ValueError("a client registration must be a JSON object")
    unknown = set(doc) - _FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}")

    def strings(name: str, default: list[str] | None = None) -> frozenset[str]:
        v = doc.get(name, default)
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValueError(f"{name} must be a list of strings")
        return frozenset(v)

    cid = doc.get("client_id")
    if not isinstance(cid, str):
        raise ValueError("client_id must be a SPIFFE ID string")
    try:
        sid = SpiffeId(cid)
    except Exception as e:  # IdentityError with the precise defect
        raise ValueError(f"client_id: {e}") from None
    try:
        method = AuthMethod(str(doc.get("auth_method")))
    except ValueError:
        raise ValueError(f"auth_method must be one of {[m.value for m in AuthMethod]}") from None
    jwks = doc.get("jwks", [])
    if not isinstance(jwks, list) or not all(isinstance(j, dict) for j in jwks):
        raise ValueError("jwks must be a list of JWK objects")
    default_aud = doc.get("default_audience")
    if default_aud is not None and not isinstance(default_aud, str):
        raise ValueError("default_audience must be a string")
    kwargs: dict[str, Any] = {}
    if "grant_types" in doc:
        kwargs["grant_types"] = strings("grant_types")
    try:
        return ClientRegistration(
            client_id=sid,
            auth_method=method,
            scopes=strings("scopes", []),
            audiences=strings("audiences"),
            jwks=tuple(jwks),
            default_audience=default_aud,
            **kwargs,
        )
    except ValueError:
        raise
    except Exception as e:  # KeySetError from a bad JWK: say which
        raise ValueError(f"jwks: {e}") from None


class SqlClientRegistry:
    """``ClientRegistry`` on the store's engine: ``get`` is a dict lookup; writes are one transaction."""

    def __init__(self, engine: Engine, *, clock: Any = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, ClientRegistration] = {}
        self.refresh()  # the table is the store's (migration 2): Store.open has created it

    def _tx(self) -> AbstractContextManager[Connection]:
        return transaction(self._engine, "client registry: store")

    def refresh(self) -> None:
        """Reload every registration from the database (skipping, and naming, invalid rows)."""
        with self._tx() as conn:
            rows = conn.execute(select(oauth_clients.c.client_id, oauth_clients.c.registration)).all()
        fresh: dict[str, ClientRegistration] = {}
        for cid, raw in rows:
            try:
                fresh[cid] = registration_from_json(json.loads(raw))
            except ValueError as e:
                raise StoreError(
                    f"client registry: stored registration of {cid[:100]!r} is invalid: {e}"
                ) from e
        with self._lock:
            self._cache = fresh

    def get(self, client_id: str) -> ClientRegistration | None:
        return self._cache.get(client_id)

    def list(self) -> list[ClientRegistration]:
        return [self._cache[k] for k in sorted(self._cache)]

    def register(self, reg: ClientRegistration) -> bool:
        """Create or replace; True if it was new."""
        now = float(self._clock())
        doc = json.dumps(registration_to_json(reg), sort_keys=True)
        cid = reg.client_id.value
        t = oauth_clients
        with self._lock:
            with self._tx() as conn:
                have = conn.execute(select(t.c.client_id).where(t.c.client_id == cid)).scalar()
                if have is None:
                    conn.execute(
                        t.insert().values(client_id=cid, registration=doc, created_at=now, updated_at=now)
                    )
                else:
                    conn.execute(
                        t.update().where(t.c.client_id == cid).values(registration=doc, updated_at=now)
                    )
            self._cache = {**self._cache, cid: reg}
        return have is None

    def remove(self, client_id: str) -> bool:
        """Delete; True if it existed."""
        with self._lock:
            with self._tx() as conn:
                n = conn.execute(delete(oauth_clients).where(oauth_clients.c.client_id == client_id)).rowcount
            self._cache = {k: v for k, v in self._cache.items() if k != client_id}
        return bool(n)

    def __repr__(self) -> str:
        return f"<SqlClientRegistry {len(self._cache)} clients>"


__all__ = ["SqlClientRegistry", "oauth_clients", "registration_from_json", "registration_to_json"]
