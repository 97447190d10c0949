"""SPIFFE IDs as values: ``SpiffeId(str)`` either raises ``IdentityError`` or is valid for life.

No I/O. Rules from SPIFFE-ID (standards/SPIFFE-ID.md) §2; the checklist rows ID1–ID6 are tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from garrison.errors import IdentityError

_SCHEME = "spiffe://"
MAX_ID_BYTES = 2048  # SPIFFE-ID §2.3: "MUST support SPIFFE URIs up to 2048 bytes"
MAX_TRUST_DOMAIN_BYTES = 255  # SPIFFE-ID §2.3: trust domain <= 255 bytes
_TD_CHARS = re.compile(r"[a-z0-9._-]+")  # SPIFFE-ID §2.1
_SEGMENT_CHARS = re.compile(r"[A-Za-z0-9._-]+")  # SPIFFE-ID §2.2


def _invalid(value: str, why: str) -> IdentityError:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return IdentityError(f"invalid SPIFFE ID {shown!r}: {why}")


def check_trust_domain(td: str, *, value: str | None = None) -> None:
    """SPIFFE-ID §2.1: raise ``IdentityError`` unless ``td`` is a valid trust domain name."""
    shown = td if value is None else value
    if not td:
        raise _invalid(shown, "the trust domain is empty")  # §2.1: "MUST NOT be empty"
    if "@" in td:
        raise _invalid(shown, "userinfo is not allowed in the trust domain")  # §2.1
    if ":" in td:
        raise _invalid(shown, "a port is not allowed in the trust domain")  # §2.1
    if "%" in td:
        raise _invalid(shown, "percent-encoding is not allowed in the trust domain")  # §2.1
    if "?" in td or "#" in td:
        raise _invalid(shown, "a query or fragment is not allowed")  # §2 / ID1
    if td.lower() != td:
        raise _invalid(shown, "the trust domain must be lower-case")  # §2.1: "MUST be lowercase"
    if _TD_CHARS.fullmatch(td) is None:
        raise _invalid(shown, "the trust domain may only contain a-z 0-9 . - _")
    if len(td.encode()) > MAX_TRUST_DOMAIN_BYTES:
        raise _invalid(shown, f"the trust domain is longer than {MAX_TRUST_DOMAIN_BYTES} bytes")


def _check_path(path: str, value: str) -> None:
    """SPIFFE-ID §2.2: '' (the trust domain itself) or '/seg(/seg)*' with safe, non-relative segments."""
    if not path:
        return
    if "?" in path or "#" in path:
        raise _invalid(value, "a query or fragment is not allowed")  # §2: MUST NOT include
    if "%" in path:
        raise _invalid(value, "percent-encoding is not allowed in the path")  # §2.2
    if path.endswith("/"):
        raise _invalid(value, "the path has a trailing '/'")  # §2.2: no trailing '/'
    for seg in path[1:].split("/"):
        if not seg:
            raise _invalid(value, "the path has an empty segment")  # §2.2
        if seg in (".", ".."):
            raise _invalid(value, "the path has a '.' or '..' segment")  # §2.2: relative modifiers
        if _SEGMENT_CHARS.fullmatch(seg) is None:
            raise _invalid(value, "path segments may only contain A-Z a-z 0-9 . - _")


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A valid SPIFFE ID (SPIFFE-ID §2). ``str(sid)`` is the canonical form; equality is exact.

    The scheme must be written ``spiffe://`` and the trust domain in lower case: an upper-case form
    is refused rather than folded (§2.1 "MUST be lowercase"), so no two strings name one workload.
    """

    value: str
    trust_domain: str = field(init=False, repr=False, compare=False)
    path: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        value = self.value
        if not isinstance(value, str):
            raise TypeError("SpiffeId takes a str")
        if len(value.encode()) > MAX_ID_BYTES:
            raise _invalid(value, f"longer than {MAX_ID_BYTES} bytes")  # §2.3
        if not value.startswith(_SCHEME):
            raise _invalid(value, "the scheme must be 'spiffe://'")  # §2: scheme MUST be spiffe
        rest = value[len(_SCHEME) :]
        td, slash, path = rest.partition("/")
        check_trust_domain(td, value=value)
        _check_path(slash + path, value)
        object.__setattr__(self, "trust_domain", td)
        object.__setattr__(self, "path", slash + path)

    @classmethod
    def from_parts(cls, trust_domain: str, path: str) -> SpiffeId:
        """``spiffe://<trust_domain><path>``; ``path`` is '' or starts with '/'."""
        if path and not path.startswith("/"):
            path = "/" + path
        return cls(f"{_SCHEME}{trust_domain}{path}")

    @property
    def is_root(self) -> bool:
        """True for the trust domain's own ID (no path): never a workload (X509-SVID §2)."""
        return not self.path

    def member_of(self, trust_domain: str) -> bool:
        return self.trust_domain == trust_domain

    def __str__(self) -> str:
        return self.value


__all__ = ["MAX_ID_BYTES", "MAX_TRUST_DOMAIN_BYTES", "SpiffeId", "check_trust_domain"]
