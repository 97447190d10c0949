"""The revoked-serial list that gateways and sidecars pull with the bundle (ARCHITECTURE §9).

No I/O. Only serials revoked *and not yet expired* are listed, so the list stays as small as the
set of live SVIDs; short TTLs remain the main defence, the list covers the window until expiry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography import x509

from garrison.identity.ca.certs import serial_hex


@dataclass(frozen=True, slots=True)
class RevocationList:
    serials: frozenset[str]  # lower-case hex, as in the store
    generated_at: float

    def is_revoked(self, cert: x509.Certificate) -> bool:
        return serial_hex(cert) in self.serials

    def to_document(self) -> str:
        return json.dumps(
            {"revoked_serials": sorted(self.serials), "generated_at": int(self.generated_at)},
            separators=(",", ":"),
        )

    @classmethod
    def from_document(cls, document: str | bytes) -> RevocationList:
        doc = json.loads(document)
        serials = doc.get("revoked_serials") if isinstance(doc, dict) else None
        if not isinstance(serials, list) or not all(isinstance(s, str) for s in serials):
            raise ValueError("revocation document has no 'revoked_serials' list of strings")
        return cls(frozenset(s.lower() for s in serials), float(doc.get("generated_at", 0)))


__all__ = ["RevocationList"]
