"""``garrison token issue|introspect|revoke``: the OAuth endpoints, as an authenticated client.

Client authentication is either ``private_key_jwt`` (``--key``: an RFC 7523 §2.2 assertion signed
here with ``iss = sub = client_id``, ``aud`` = the issuer, a random ``jti``, 60 s life) or
``tls_client_auth`` (``--cert`` + ``--key``: RFC 8705 mTLS with the client's SVID). The access
token is printed to stdout only.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from garrison.cli.api import ApiClient, CliError, Target, add_config_arg, print_json, target_from_args

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 60


def _client_auth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--client-id", required=True, help="the client's SPIFFE ID")
    p.add_argument("--key", required=True, help="private key: signs the assertion, or the SVID's key")
    p.add_argument("--cert", help="SVID chain: authenticate with mTLS (tls_client_auth) instead")
    add_config_arg(p)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="get, introspect and revoke access tokens (as a client)")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    i = tsub.add_parser("issue", help="client credentials grant: print an access token")
    _client_auth_args(i)
    i.add_argument("--audience", help="the target service (default: the client's default audience)")
    i.add_argument("--scope", action="append", default=[], help="a scope to request (repeatable)")
    i.add_argument("--json", action="store_true", help="print the whole token response")
    i.set_defaults(func=issue_command)

    n = tsub.add_parser("introspect", help="RFC 7662: is a token active, and its claims")
    n.add_argument("token", help="the access token ('-' reads it from stdin)")
    _client_auth_args(n)
    n.set_defaults(func=introspect_command)

    r = tsub.add_parser("revoke", help="RFC 7009: revoke a token issued to this client")
    r.add_argument("token", help="the access token ('-' reads it from stdin)")
    _client_auth_args(r)
    r.set_defaults(func=revoke_command)


def _load_private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization

    try:
        data = path.read_bytes()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CliError(f"{path} holds no unencrypted PEM private key") from None


def _algorithm(key: Any, path: Path) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name)
        if alg is not None:
            return alg
    elif isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise CliError(f"{path}: unsupported key type for private_key_jwt (use EC P-256, RSA or Ed25519)")


def client_assertion(client_id: str, key_path: Path, audience: str, now: float | None = None) -> str:
    """RFC 7523 §2.2 / §3: a single-use JWT proving possession of the client's registered key."""
    import jwt

    key = _load_private_key(key_path)
    now = time.time() if now is None else now
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": secrets.token_urlsafe(24),
        "iat": int(now),
        "exp": int(now) + ASSERTION_LIFETIME,
    }
    return jwt.encode(claims, key, algorithm=_algorithm(key, key_path))


def _client(args: argparse.Namespace) -> tuple[ApiClient, dict[str, str]]:
    """An API client and the form fields that authenticate this OAuth client."""
    target: Target = target_from_args(args)
    if args.cert:
        api = ApiClient(target.base_url, target.ca_file, cert=(Path(args.cert), Path(args.key)))
        return api, {"client_id": args.client_id}
    form = {
        "client_id": args.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(args.client_id, Path(args.key), target.base_url),
    }
    return ApiClient(target.base_url, target.ca_file), form


def _token_arg(value: str) -> str:
    if value == "-":
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise CliError("the token is empty")
    return value


def issue_command(args: argparse.Namespace) -> int:
    api, form = _client(args)
    form["grant_type"] = "client_credentials"
    if args.audience:
        form["audience"] = args.audience
    if args.scope:
        form["scope"] = " ".join(args.scope)
    with api:
        doc = api.call("POST", "/oauth2/token", form=form)
    if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str):
        raise CliError("the token endpoint's answer has no access_token")
    if args.json:
        print_json(doc)
    else:
        print(doc["access_token"])
    return 0


def introspect_command(args: argparse.Namespace) -> int:
    token = _token_arg(args.token)
    api, form = _client(args)
    form["token"] = token
    with api:
        doc = api.call("POST", "/oauth2/introspect", form=form)
    print_json(doc)
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    token = _token_arg(args.token)
    api, form = _client(args)
    form["token"] = token
    with api:
        api.call("POST", "/oauth2/revoke", form=form)
    # RFC 7009 §2.2: the same answer whether or not the token was valid.
    print("revocation accepted")
    return 0


__all__ = ["add_parser", "client_assertion"]
