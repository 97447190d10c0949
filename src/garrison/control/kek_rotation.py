"""KEK rotation: re-seal every blob in the store under a new key-encryption key, in one transaction.

Each blob is opened with the old KEK (so a wrong old KEK fails on the first one, the meta
``kek_check``, before anything is written), sealed under the new KEK with the same context, and
opened again with the new KEK before it is written back. Any failure rolls everything back. Run it
with the control plane stopped: a running one keeps sealing new keys under the old KEK.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from garrison.identity.ca.errors import SealError
from garrison.identity.ca.keyring import KEK_CHECK_CONTEXT
from garrison.identity.ca.keyring import seal_context as ca_seal_context
from garrison.identity.ca.sealing import Kek
from garrison.identity.oauth.signing_keys import seal_context as signing_seal_context
from garrison.store import CaKeyPurpose, Store
from garrison.store.records import SealedBlob, SealedKind


@dataclass(frozen=True, slots=True)
class KekRotation:
    """What a rotation re-sealed. KEK ids name keys without revealing them."""

    old_kek_id: str
    new_kek_id: str
    kek_check: bool
    ca_keys: int
    signing_keys: int

    def summary(self) -> str:
        check = "the KEK check, " if self.kek_check else ""
        return (
            f"re-sealed {check}{self.ca_keys} CA key(s) and {self.signing_keys} token signing key(s)"
            f" from KEK {self.old_kek_id} to KEK {self.new_kek_id}"
        )


def seal_context(blob: SealedBlob) -> str:
    """The AEAD context the blob was sealed with: the same function the sealing module uses."""
    if blob.kind is SealedKind.CA_KEY:
        return ca_seal_context(blob.key, CaKeyPurpose(blob.purpose or ""))
    if blob.kind is SealedKind.SIGNING_KEY:
        return signing_seal_context(blob.key)
    return KEK_CHECK_CONTEXT


def rotate_kek(
    store: Store, old: Kek, new: Kek, *, progress: Callable[[SealedBlob], None] | None = None
) -> KekRotation:
    """Re-seal everything from ``old`` to ``new``; ``SealError`` (nothing changed) on any failure.

    ``progress`` is called after each blob is re-sealed, inside the transaction (an exception
    from it rolls the rotation back, like any other).
    """
    if old.key_id == new.key_id:
        raise SealError(f"the new KEK is the one in use (KEK {old.key_id.hex()}); nothing to rotate")

    def reseal(blob: SealedBlob) -> bytes:
        ctx = seal_context(blob)
        try:
            plain = old.unseal(blob.blob, context=ctx)
        except SealError as e:
            raise SealError(f"cannot rotate the KEK, nothing was changed: old KEK: {e}") from None
        out = new.seal(plain, context=ctx)
        if new.unseal(out, context=ctx) != plain:  # pragma: no cover - AEAD round trip
            raise SealError(f"cannot rotate the KEK, nothing was changed: {ctx} did not round-trip")
        if progress is not None:
            progress(blob)
        return out

    done = store.reseal(reseal)
    kinds = [b.kind for b in done]
    return KekRotation(
        old_kek_id=old.key_id.hex(),
        new_kek_id=new.key_id.hex(),
        kek_check=SealedKind.KEK_CHECK in kinds,
        ca_keys=kinds.count(SealedKind.CA_KEY),
        signing_keys=kinds.count(SealedKind.SIGNING_KEY),
    )


__all__ = ["KEK_CHECK_CONTEXT", "KekRotation", "rotate_kek", "seal_context"]
