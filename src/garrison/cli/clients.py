"""``garrison client register|list|remove``: OAuth clients of the control plane's token service.

A client is a workload (its SPIFFE ID is its ``client_id``) that authenticates with
``private_key_jwt`` (RFC 7523: a registered public key) or ``tls_client_auth`` (RFC 8705: its SVID).
Only public keys are ever sent; a private key given by mistake is reduced to its public half here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from garrison.cli.api import CliError, add_admin_args, admin_client, api_error, print_json

GRANTS = {
    "client-credentials": "client_credentials",
    "token-exchange": "urn:ietf:params:oauth:grant-type:token-exchange",
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("client", help="register, list and remove OAuth clients (admin)")
    csub = p.add_subparsers(dest="client_command", required=True, metavar="ACTION")

    r = csub.add_parser("register", help="register (or replace) a client")
    r.add_argument("--client-id", required=True, help="the workload's SPIFFE ID")
    how = r.add_mutually_exclusive_group(required=True)
    how.add_argument("--jwk-file", help="private_key_jwt with this public JWK (or JWK Set) JSON file")
    how.add_argument("--public-key-file", help="private_key_jwt with this PEM public key")
    how.add_argument("--tls", action="store_true", help="tls_client_auth: authenticates with its SVID")
    r.add_argument("--audience", action="append", required=True, help="a service its tokens may target")
    r.add_argument("--default-audience", help="audience used when a request names none")
    r.add_argument("--scope", action="append", default=[], help="a scope it may request (repeatable)")
    r.add_argument(
        "--grant", action="append", default=[], choices=sorted(GRANTS), help="extra grant (repeatable)"
    )
    add_admin_args(r)
    r.set_defaults(func=register_command)

    ls = csub.add_parser("list", help="list registered clients")
    ls.add_argument("--json", action="store_true", help="print the registrations as JSON")
    add_admin_args(ls)
    ls.set_defaults(func=list_command)

    rm = csub.add_parser("remove", help="remove a client")
    rm.add_argument("client_id")
    add_admin_args(rm)
    rm.set_defaults(func=remove_command)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None


def jwks_from_jwk_file(path: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(_read(path))
    except ValueError:
        raise CliError(f"{path} is not JSON (expected a JWK or a JWK Set)") from None
    keys = doc.get("keys") if isinstance(doc, dict) and "keys" in doc else [doc]
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        raise CliError(f'{path}: expected a JWK object or {{"keys": [JWK, ...]}}')
    for k in keys:
        if any(p in k for p in ("d", "p", "q", "dp", "dq", "qi", "k")):
            raise CliError(f"{path} holds private or symmetric key material: register the public key only")
    return keys


def jwk_from_pem(path: str) -> dict[str, Any]:
    """The public JWK of a PEM key (a private key is reduced to its public half; never sent)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    data = _read(path)
    try:
        pub: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            pub = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            raise CliError(f"{path} holds no PEM public key (nor an unencrypted private key)") from None
    jwk: dict[str, Any]
    if isinstance(pub, ec.EllipticCurvePublicKey):
        jwk = dict(ECAlgorithm.to_jwk(pub, as_dict=True))
        jwk["alg"] = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(pub.curve.name)
        if jwk["alg"] is None:
            raise CliError(f"{path}: EC curve {pub.curve.name} is not supported (use P-256)")
    elif isinstance(pub, rsa.RSAPublicKey):
        jwk = dict(RSAAlgorithm.to_jwk(pub, as_dict=True))
        jwk["alg"] = "RS256"
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        jwk = dict(OKPAlgorithm.to_jwk(pub, as_dict=True))
        jwk["alg"] = "EdDSA"
    else:
        raise CliError(f"{path}: unsupported key type {type(pub).__name__} (use EC P-256, RSA or Ed25519)")
    jwk["use"] = "sig"
    return jwk


def register_command(args: argparse.Namespace) -> int:
    doc: dict[str, Any] = {
        "client_id": args.client_id,
        "audiences": sorted(set(args.audience)),
        "scopes": sorted(set(args.scope)),
        "grant_types": sorted({GRANTS["client-credentials"], *(GRANTS[g] for g in args.grant)}),
    }
    if args.default_audience:
        doc["default_audience"] = args.default_audience
    if args.tls:
        doc["auth_method"] = "tls_client_auth"
    else:
        doc["auth_method"] = "private_key_jwt"
        doc["jwks"] = (
            jwks_from_jwk_file(args.jwk_file) if args.jwk_file else [jwk_from_pem(args.public_key_file)]
        )
    with admin_client(args) as api:
        r = api.send("PUT", "/v1/clients", json_body=doc)
        if r.status_code >= 400:
            raise api_error(r)
    verb = "registered" if r.status_code == 201 else "replaced"
    print(f"{verb} client {args.client_id} ({doc['auth_method']}, audiences {', '.join(doc['audiences'])})")
    return 0


def list_command(args: argparse.Namespace) -> int:
    with admin_client(args) as api:
        doc = api.call("GET", "/v1/clients")
    clients = doc.get("clients", []) if isinstance(doc, dict) else []
    if args.json:
        print_json(clients)
        return 0
    for c in clients:
        scopes = " ".join(c.get("scopes") or []) or "-"
        auds = ",".join(c.get("audiences") or [])
        print(f"{c.get('client_id')}  {c.get('auth_method')}  aud={auds}  scopes={scopes}")
    print(f"{len(clients)} client(s)", file=sys.stderr)
    return 0


def remove_command(args: argparse.Namespace) -> int:
    with admin_client(args) as api:
        api.call("DELETE", "/v1/clients", params={"client_id": args.client_id})
    print(f"removed client {args.client_id}")
    return 0


__all__ = ["add_parser", "jwk_from_pem", "jwks_from_jwk_file"]
