"""Control-plane persistence (ARCHITECTURE §7): SQLAlchemy Core, SQLite by default, PostgreSQL by URL."""

from garrison.store.errors import StoreError
from garrison.store.migrations import LATEST as SCHEMA_VERSION
from garrison.store.records import (
    BundleRecord,
    CaKeyPurpose,
    CaKeyRecord,
    CaKeyState,
    IssueState,
    JoinTokenRecord,
    RedeemOutcome,
    SvidRecord,
)
from garrison.store.store import Store

__all__ = [
    "SCHEMA_VERSION",
    "BundleRecord",
    "CaKeyPurpose",
    "CaKeyRecord",
    "CaKeyState",
    "IssueState",
    "JoinTokenRecord",
    "RedeemOutcome",
    "Store",
    "StoreError",
    "SvidRecord",
]
