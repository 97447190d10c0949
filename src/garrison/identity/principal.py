"""Verified token -> ``Identity`` (ARCHITECTURE §9): a workload is its SPIFFE ID, a user is iss#sub.

No I/O. A SPIFFE ID is only a workload principal when it is valid and in *our* trust domain.
"""

from __future__ import annotations

import re

from garrison.identity.tokens import VerifiedToken
from garrison.pipeline.context import Identity

_MAX_SPIFFE_ID = 2048  # SPIFFE-ID §2.3
# SPIFFE-ID §2.2: path segments of [a-zA-Z0-9.-_], none empty (so no `//` and no trailing `/`);
# no percent-encoding, query or fragment (`%`, `?`, `#` are outside the class).
_PATH = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")


def workload_id(value: object, trust_domain: str) -> str | None:
    """``value`` if it is a valid SPIFFE ID with a path in ``trust_domain``, else None.

    The trust domain is compared exactly, so an upper-case one (SPIFFE-ID §2.1) never matches.
    """
    if not isinstance(value, str) or len(value) > _MAX_SPIFFE_ID:
        return None
    prefix = f"spiffe://{trust_domain}/"
    if not value.startswith(prefix):
        return None
    path = value[len(prefix) :]
    if _PATH.fullmatch(path) is None:
        return None
    # SPIFFE-ID §2.2: "MUST NOT include segments that are ... relative path modifiers".
    if any(seg in (".", "..") for seg in path.split("/")):
        return None
    return value


def identity_from_token(vt: VerifiedToken, trust_domain: str, *, workloads: bool = False) -> Identity:
    """§9: a ``sub`` that is a SPIFFE ID in our trust domain is that workload — but only from an
    issuer trusted to assert workload identities (``workloads``); anything else is a user.

    ``client_id`` is never used: a user token obtained through client X is not X's identity, and an
    external user IdP must not be able to mint a workload principal by choosing a ``sub``.
    """
    principal = workload_id(vt.sub, trust_domain) if workloads else None
    if principal is not None:
        kind = "workload"
    else:
        kind = "user"
        principal = f"{vt.iss}#{vt.sub}"
    return Identity(
        principal=principal,
        kind=kind,
        issuer=vt.issuer_name,
        subject=vt.sub,
        method="jwt",
        claims=vt.claims,
        scopes=vt.scopes,
        expires_at=vt.exp,
    )


__all__ = ["identity_from_token", "workload_id"]
