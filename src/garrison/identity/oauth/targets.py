"""The one target service a token is for: RFC 8707 ``resource`` / RFC 8693 ``audience`` -> ``aud``.

RFC 9068 §3: the AS "MUST NOT issue a JWT access token if the authorization granted ... would be
ambiguous", so exactly one distinct target is accepted. No I/O.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from garrison.identity.oauth.clients import ClientRegistration
from garrison.identity.oauth.errors import ErrorCode, OAuthError
from garrison.identity.oauth.form import Form


def _invalid(description: str, detail: str = "") -> OAuthError:
    return OAuthError(ErrorCode.INVALID_TARGET, description, detail)


def resolve_target(form: Form, reg: ClientRegistration, known: frozenset[str]) -> str:
    """The requested audience, checked against the client's allowed audiences and the known services."""
    for r in form.all("resource"):
        # RFC 8707 §2: "MUST be an absolute URI ... MUST NOT include a fragment component".
        parts = urlsplit(r)
        if not parts.scheme or parts.fragment or "#" in r:
            raise _invalid("resource must be an absolute URI without a fragment")
    targets = set(form.all("resource")) | set(form.all("audience"))
    if len(targets) > 1:
        raise _invalid("exactly one target service per token")
    if not targets:
        # RFC 9068 §3: no resource requested -> a default resource indicator in aud.
        default = reg.default_audience
        if default is None and len(reg.audiences) == 1:
            (default,) = reg.audiences
        if default is None:
            raise _invalid("a resource or audience is required for this client")
        target = default
    else:
        (target,) = targets
    if target not in known:
        raise _invalid("unknown target service", f"{target[:100]!r} is not a known audience")
    if target not in reg.audiences:
        raise _invalid("target service not allowed for this client", f"{reg.client_id} -> {target[:100]!r}")
    return target


__all__ = ["resolve_target"]
