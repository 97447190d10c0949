"""``garrison init DIR``: a working control plane + gateway setup in one directory.

Creates the KEK and admin token (0600), the store with an initialized CA and token signing keys,
the trust anchors clients verify the control plane with, and a commented garrison.yaml that
``garrison up`` runs as is. Refuses to touch a directory that already holds a setup: losing a KEK
or overwriting a store loses every key sealed in it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

from garrison.cli.api import CliError

CONFIG = "garrison.yaml"
DB = "garrison.db"
KEK = "kek.key"
ADMIN_TOKEN = "admin.token"  # noqa: S105 - a file name
CA_BUNDLE = "ca/bundle.pem"
CA_CSR = "ca/intermediate.csr"
AUDIT_LOG = "audit.log"
EXAMPLE_SERVICE = "api"
EXAMPLE_CLIENT = "client"
_WILDCARDS = {"0.0.0.0", "::", "[::]", ""}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="create a new control plane + gateway setup in DIR")
    p.add_argument("dir", help="directory to create (or an empty one)")
    p.add_argument("--trust-domain", default="garrison.local", help="SPIFFE trust domain")
    p.add_argument("--gateway-address", default="127.0.0.1:8080", help="HOST:PORT of the gateway")
    p.add_argument(
        "--control-plane-address", default="127.0.0.1:8443", help="HOST:PORT of the control-plane API"
    )
    p.add_argument("--admin-address", default=None, help="HOST:PORT of the gateway's metrics/health listener")
    p.add_argument(
        "--external-root",
        action="store_true",
        help="no online root: write an intermediate CSR (ca/intermediate.csr) for your offline root to"
        " sign, then run `garrison ca install`",
    )
    p.set_defaults(func=init_command)


def split_address(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"{what} must be HOST:PORT with a port from 1 to 65535, got {value!r}")
    return host, int(port)


def _free_admin_port(host: str, start: int = 9901, tries: int = 50) -> int:
    """The first port from ``start`` that can be bound now: a default unlikely to clash."""
    for port in range(start, start + tries):
        with socket.socket() as s:
            try:
                s.bind((host or "127.0.0.1", port))
            except OSError:
                continue
            return port
    return start


def _reachable(address: str, what: str) -> tuple[str, str]:
    """(host as written in a URL, bare host) that reach ``address`` from this machine."""
    host, port = split_address(address, what)
    if host in _WILDCARDS:
        host = "127.0.0.1"  # a wildcard bind is reached on loopback from this machine
    bare = host.strip("[]")
    return (f"[{bare}]" if ":" in bare else bare) + f":{port}", bare


def _server_names(control_plane: str) -> list[str]:
    """The API certificate's names: the defaults plus the host clients will use, if another."""
    names = ["localhost", "127.0.0.1"]
    bare = _reachable(control_plane, "--control-plane-address")[1]
    return names if bare in names else [*names, bare]


def render_config(
    *,
    trust_domain: str,
    gateway: str,
    control_plane: str,
    admin: str,
    upstream: str = "http://127.0.0.1:9000",
) -> str:
    """The commented garrison.yaml ``init`` writes; it must pass ``garrison config check``."""
    base = "https://" + _reachable(control_plane, "--control-plane-address")[0]
    gateway_url = "http://" + _reachable(gateway, "--gateway-address")[0]
    names = ", ".join(f'"{n}"' for n in _server_names(control_plane))
    api_id = f"spiffe://{trust_domain}/svc/{EXAMPLE_SERVICE}"
    client_id = f"spiffe://{trust_domain}/svc/{EXAMPLE_CLIENT}"
    url_line = "" if base == f"https://{control_plane}" else f'  url: "{base}"\n'
    return f"""\
# garrison.yaml — written by `garrison init`. Relative paths are relative to this file.
# Run everything with:  garrison up -c {CONFIG}
# Reference of every key: garrison config reference

# Workloads are named spiffe://<trust_domain>/<path>; this is the domain this setup vouches for.
trust_domain: {trust_domain}

# Control-plane state: the CA, token signing keys, clients and revocations, sealed with the KEK.
# The KEK file must stay 0600 and must never be lost: without it nothing in the store opens.
store:
  url: {DB}
  kek:
    file: {KEK}

# The control-plane API (CA, OAuth token service, trust bundle). Clients and the gateway verify it
# with ca_file; admin commands authenticate with the token in admin_token_file (0600).
control_plane:
  address: "{control_plane}"
{url_line}  server_names: [{names}]  # in the API's TLS certificate
  ca_file: {CA_BUNDLE}
  admin_token_file: {ADMIN_TOKEN}
  audit_log: {AUDIT_LOG}

# Where the gateway accepts requests.
listeners:
  - name: edge
    address: "{gateway}"

# Token issuers the gateway trusts. `garrison` is this control plane: its access tokens are
# RFC 9068 JWTs (typ at+jwt) whose subject is the calling workload's SPIFFE ID; the gateway
# fetches its keys over TLS verified with our CA and refuses tokens the control plane revoked.
issuers:
  - name: garrison
    issuer: {base}
    jwks_url: {base}/oauth2/jwks
    jwks_ca_file: {CA_BUNDLE}
    audiences: ["{api_id}"]
    typ: at+jwt
    workload_identities: true
    revocations: true

# Workloads by short name; `{EXAMPLE_SERVICE}` is {api_id}. Point upstream at the real service.
services:
  {EXAMPLE_SERVICE}:
    upstream: {upstream}

# What the gateway forwards. Every route is authenticated and default-deny unless `public: true`.
routes:
  - name: {EXAMPLE_SERVICE}
    path: /{EXAMPLE_SERVICE}/**
    service: {EXAMPLE_SERVICE}
    issuers: [garrison]

# Who may call what. Anything not allowed here is denied (403).
# Register the example client with:
#   garrison client register -c {CONFIG} --client-id {client_id} \\
#     --public-key-file client-public.pem --audience {api_id}
# then call the service through the gateway with a token from the control plane:
#   TOKEN=$(garrison token issue -c {CONFIG} --client-id {client_id} --key client-key.pem)
#   curl -H "Authorization: Bearer $TOKEN" {gateway_url}/{EXAMPLE_SERVICE}/
policies:
  - name: {EXAMPLE_CLIENT}-calls-{EXAMPLE_SERVICE}
    routes: [{EXAMPLE_SERVICE}]
    from:
      services: ["{client_id}"]

# /metrics, /healthz and /readyz of the gateway (keep it off public interfaces).
telemetry:
  admin:
    address: "{admin}"
"""


def _create_dir(d: Path) -> None:
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)
    except OSError as e:
        raise CliError(f"cannot create {d}: {e.strerror}") from None


def _create_private_file(p: Path) -> None:
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.close(fd)


def init_command(args: argparse.Namespace) -> int:
    from garrison.config.loader import load_config, parse_config
    from garrison.control.plane import ControlPlane, write_secret_file
    from garrison.errors import ConfigError
    from garrison.identity.ca import generate_kek_file

    d = Path(args.dir)
    split_address(args.gateway_address, "--gateway-address")
    split_address(args.control_plane_address, "--control-plane-address")
    if args.admin_address is not None:
        split_address(args.admin_address, "--admin-address")
        admin = args.admin_address
    else:
        gw_host = split_address(args.gateway_address, "--gateway-address")[0]
        host = "127.0.0.1" if gw_host in _WILDCARDS else gw_host
        admin = f"{host}:{_free_admin_port(host)}"
    for name in (CONFIG, DB, KEK, ADMIN_TOKEN):
        if (d / name).exists():
            raise CliError(
                f"{d / name} already exists: {d} already holds a garrison setup; refusing to overwrite it"
                " (choose another directory)"
            )
    text = render_config(
        trust_domain=args.trust_domain,
        gateway=args.gateway_address,
        control_plane=args.control_plane_address,
        admin=admin,
    )
    try:  # before creating anything: a bad option must not leave a directory or a KEK behind
        parse_config(text, source="the generated garrison.yaml")
    except ConfigError as e:
        raise CliError(f"these options do not make a valid config: {e}") from None
    _create_dir(d)
    created: list[Path] = []
    try:
        (d / CONFIG).write_text(text)
        created.append(d / CONFIG)
        cfg = load_config(d / CONFIG)
        generate_kek_file(d / KEK)
        created.append(d / KEK)
        write_secret_file(d / ADMIN_TOKEN, secrets.token_urlsafe(32) + "\n")
        created.append(d / ADMIN_TOKEN)
        _create_private_file(d / DB)
        created.append(d / DB)
        external = bool(getattr(args, "external_root", False))
        plane = ControlPlane.open(cfg, d, initialize=not external, require_ca=not external)
        try:
            csr = plane.ca.make_intermediate_csr() if external else None
            anchors = None if external else plane.trust_anchors_pem()
            signing_kid = plane.ring.current.kid
        finally:
            plane.close()
        (d / "ca").mkdir(exist_ok=True)
        if anchors is not None:
            (d / CA_BUNDLE).write_bytes(anchors)
            created.append(d / CA_BUNDLE)
        if csr is not None:
            (d / CA_CSR).write_text(csr)
            created.append(d / CA_CSR)
    except BaseException:
        for p in reversed(created):
            p.unlink(missing_ok=True)
        for extra in ("-wal", "-shm", "-journal"):
            (d / (DB + extra)).unlink(missing_ok=True)
        raise
    cfg_path = d / CONFIG
    print(f"created {d}/ (mode 0700) for trust domain {cfg.trust_domain}:")
    ca_state = "intermediate CSR pending" if external else "CA initialized"
    rows = [
        (cfg_path, "configuration: edit services, routes and policies"),
        (d / KEK, "key-encryption key (0600): back it up; without it the store cannot be opened"),
        (d / ADMIN_TOKEN, "admin bearer token (0600)"),
        (d / DB, f"store (0600): {ca_state}, token signing key {signing_kid}"),
        (d / CA_CSR, "intermediate CSR: have your offline root sign it (cA=true, keyCertSign)")
        if external
        else (d / CA_BUNDLE, "trust anchors that verify the control plane"),
    ]
    width = max(len(str(p)) for p, _ in rows)
    for p, what in rows:
        print(f"  {p!s:<{width}}  {what}")
    print("next:")
    if external:
        print(f"  garrison ca install -c {cfg_path} --cert intermediate.pem --root root.pem")
    print(f"  garrison up -c {cfg_path}")
    print(f"  garrison join-token create -c {cfg_path} spiffe://{cfg.trust_domain}/svc/{EXAMPLE_SERVICE}")
    sys.stdout.flush()
    return 0


__all__ = ["add_parser", "init_command", "render_config", "split_address"]
