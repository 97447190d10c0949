"""SqlClientRegistry on the store's own table (migration 2): no schema work of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from oauth_kit import ORDERS, p256, public_jwk

from garrison.errors import StoreError
from garrison.identity.ca import SpiffeId
from garrison.identity.oauth import AuthMethod, ClientRegistration
from garrison.identity.oauth.sql_clients import SqlClientRegistry
from garrison.store import Store, schema


def _reg(scopes: frozenset[str] = frozenset({"read"})) -> ClientRegistration:
    return ClientRegistration(
        SpiffeId(ORDERS), AuthMethod.PRIVATE_KEY_JWT, scopes, frozenset({"payments"}), (public_jwk(p256()),)
    )


def test_registrations_survive_a_restart(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    reg = SqlClientRegistry(store.engine, clock=lambda: 1.0)
    assert reg.register(_reg()) is True
    assert reg.register(_reg(frozenset({"read", "write"}))) is False  # replaced
    store.close()
    store = Store.open(tmp_path / "g.db")
    again = SqlClientRegistry(store.engine)
    got = again.get(ORDERS)
    assert got is not None and got.scopes == {"read", "write"}
    assert [r.client_id.value for r in again.list()] == [ORDERS]
    assert again.remove(ORDERS) and not again.remove(ORDERS) and again.get(ORDERS) is None
    store.close()


def test_the_table_comes_from_the_migrations_not_the_registry(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db", migrate=False)
    with pytest.raises(StoreError, match="no such table: oauth_clients"):
        SqlClientRegistry(store.engine)  # an unmigrated database is not silently patched up
    store.migrate()
    assert SqlClientRegistry(store.engine).list() == []
    store.close()


def test_a_row_edited_into_an_invalid_client_is_refused_by_name(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "g.db")
    with store.engine.begin() as conn:
        conn.execute(
            schema.oauth_clients.insert().values(
                client_id=ORDERS, registration='{"client_id": "not-spiffe"}', created_at=0.0, updated_at=0.0
            )
        )
    with pytest.raises(
        StoreError, match=r"stored registration of 'spiffe://example\.org/svc/orders' is invalid"
    ):
        SqlClientRegistry(store.engine)
    store.close()
