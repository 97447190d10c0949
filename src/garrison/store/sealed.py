"""Every KEK-sealed blob in the store, re-sealed in the caller's transaction (``Store.reseal``).

The store knows where sealed values live; what they mean (their seal contexts) and how to seal
them is the caller's (control/kek_rotation.py). Nothing here sees a KEK or a plaintext key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from sqlalchemy import Connection, select, update

from garrison.store import schema
from garrison.store.errors import StoreError
from garrison.store.records import SealedBlob, SealedKind

Reseal = Callable[[SealedBlob], bytes]


def reseal_all(conn: Connection, reseal: Reseal) -> list[SealedBlob]:
    """The meta ``kek_check`` first (a wrong KEK fails before any row is written), then CA keys, then
    token signing keys; rows read ``FOR UPDATE`` on PostgreSQL (SQLite holds the write lock)."""
    done: list[SealedBlob] = []
    m = schema.meta.c
    raw = conn.execute(select(m.value).where(m.key == "kek_check").with_for_update()).scalar()
    if raw is not None:
        try:
            blob = SealedBlob(SealedKind.KEK_CHECK, "kek_check", None, base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError):
            raise StoreError("the store's kek_check is not base64: the meta table is damaged") from None
        value = base64.b64encode(reseal(blob)).decode()
        conn.execute(update(schema.meta).where(m.key == "kek_check").values(value=value))
        done.append(blob)
    k = schema.ca_keys.c
    q = select(k.id, k.purpose, k.sealed_key).where(k.sealed_key.is_not(None)).order_by(k.id)
    for r in conn.execute(q.with_for_update()).all():
        blob = SealedBlob(SealedKind.CA_KEY, r.id, r.purpose, bytes(r.sealed_key))
        conn.execute(update(schema.ca_keys).where(k.id == r.id).values(sealed_key=reseal(blob)))
        done.append(blob)
    t = schema.oauth_signing_keys.c
    q2 = select(t.kid, t.sealed_key).order_by(t.kid)
    for r2 in conn.execute(q2.with_for_update()).all():
        blob = SealedBlob(SealedKind.SIGNING_KEY, r2.kid, None, bytes(r2.sealed_key))
        conn.execute(update(schema.oauth_signing_keys).where(t.kid == r2.kid).values(sealed_key=reseal(blob)))
        done.append(blob)
    return done


__all__ = ["Reseal", "reseal_all"]
