"""The revocation list that gateways and sidecars pull with the bundle (ARCHITECTURE §9).

No I/O. Two kinds of entry, both dropped once nothing they cover can still be valid:

* ``serials``: SVIDs revoked one by one (lower-case hex);
* ``ids``: SPIFFE IDs revoked as a whole, ``{spiffe_id: before}``: an SVID of that ID issued
  before ``before`` (Unix seconds) is revoked. One entry however many SVIDs the ID had: a workload
  that renewed in a loop cannot inflate the list (review H2).

When was an SVID issued? A certificate only says ``notBefore``, which this CA sets to the issuance
time minus ``BACKDATE``, truncated to whole seconds. So issuance lies in ``[notBefore + BACKDATE,
notBefore + BACKDATE + 1)`` and the rule ``notBefore + BACKDATE < before`` (``issued_before``)
refuses every SVID that *may* have been issued before the revocation: fail closed. The ambiguity is
the 1 s of truncation; comparing ``notBefore`` alone would have refused SVIDs issued up to
``BACKDATE`` (10 s) *after* the revocation, e.g. the workload's fresh re-bootstrap. ``before`` is
the revocation time rounded *up* to a whole second, and the CA never gives an SVID of a revoked ID
a ``notBefore`` that the rule would refuse (``WorkloadCA`` lifts issuance to ``before``), so an SVID
issued after the revocation is always accepted. A certificate backdated more than ``BACKDATE``
(not one of ours) looks older, so it is refused too, never wrongly accepted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509

from garrison.identity.ca.certs import BACKDATE, serial_hex


def id_revocation_before(revoked_at: float) -> int:
    """The ``before`` of an ID revocation made at ``revoked_at``: whole seconds, rounded up."""
    return math.ceil(revoked_at)


def issued_before(not_before: float, before: float) -> bool:
    """May an SVID with this ``notBefore`` (Unix seconds) have been issued before ``before``?"""
    return not_before + BACKDATE < before


def svid_id_of(cert: x509.Certificate) -> str | None:
    """The SPIFFE ID of an X.509-SVID: its one URI SAN (X509-SVID §2), else None."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if len(uris) == 1 else None


@dataclass(frozen=True, slots=True)
class RevocationList:
    serials: frozenset[str]  # lower-case hex, as in the store
    generated_at: float
    ids: Mapping[str, int] = field(default_factory=dict)  # spiffe_id -> before

    def is_revoked(self, cert: x509.Certificate) -> bool:
        if serial_hex(cert) in self.serials:
            return True
        sid = svid_id_of(cert)
        before = self.ids.get(sid) if sid is not None else None
        return before is not None and issued_before(cert.not_valid_before_utc.timestamp(), before)

    def revoked_ids_document(self) -> list[dict[str, str | int]]:
        """The trust document's ``revoked_ids``: sorted by SPIFFE ID."""
        return [{"spiffe_id": sid, "before": self.ids[sid]} for sid in sorted(self.ids)]

    def to_document(self) -> str:
        return json.dumps(
            {
                "revoked_serials": sorted(self.serials),
                "revoked_ids": self.revoked_ids_document(),
                "generated_at": int(self.generated_at),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_document(cls, document: str | bytes) -> RevocationList:
        doc = json.loads(document)
        serials = doc.get("revoked_serials") if isinstance(doc, dict) else None
        if not isinstance(serials, list) or not all(isinstance(s, str) for s in serials):
            raise ValueError("revocation document has no 'revoked_serials' list of strings")
        ids: dict[str, int] = {}
        for e in doc.get("revoked_ids", []):
            if not isinstance(e, dict) or not isinstance(e.get("spiffe_id"), str):
                raise ValueError("revocation document: revoked_ids entries need a spiffe_id")
            b = e.get("before")
            if isinstance(b, bool) or not isinstance(b, int):
                raise ValueError("revocation document: revoked_ids entries need an integer before")
            ids[e["spiffe_id"]] = max(b, ids.get(e["spiffe_id"], b))
        return cls(frozenset(s.lower() for s in serials), float(doc.get("generated_at", 0)), ids)


__all__ = ["RevocationList", "id_revocation_before", "issued_before", "svid_id_of"]
