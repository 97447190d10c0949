"""``garrison cert issue|renew|revoke|inspect|list``: workload X.509-SVIDs.

The private key is generated here and never leaves this machine: only a CSR is sent. Issue goes
with a join token (``POST /v1/svids/join``) or as admin (``POST /v1/svids``); renew proves the
current SVID over mTLS (``POST /v1/svids/renew``) and replaces the files atomically.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from garrison.cli.api import (
    ApiClient,
    CliError,
    add_admin_args,
    add_config_arg,
    admin_client,
    target_from_args,
)
from garrison.errors import GarrisonError

if TYPE_CHECKING:  # cryptography is imported when a command runs, not when the parser is built
    from cryptography import x509

SVID_FILE = "svid.pem"
KEY_FILE = "key.pem"
BUNDLE_FILE = "bundle.pem"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cert", help="issue, renew, revoke, inspect and list workload SVIDs")
    csub = p.add_subparsers(dest="cert_command", required=True, metavar="ACTION")

    i = csub.add_parser("issue", help="get an SVID (key generated locally) with a join token or as admin")
    i.add_argument("--spiffe-id", required=True)
    i.add_argument("--out", required=True, help="directory for svid.pem, key.pem (0600), bundle.pem")
    i.add_argument("--join-token", help="a join token ('-' reads it from stdin); without it: admin")
    i.add_argument("--ttl", type=float, help="requested lifetime in seconds (admin issuance only)")
    add_admin_args(i)
    i.set_defaults(func=issue_command)

    r = csub.add_parser("renew", help="renew an SVID with a new key, authenticating with the current one")
    r.add_argument("--cert", required=True, help="the current SVID chain (svid.pem)")
    r.add_argument("--key", required=True, help="its private key (key.pem)")
    r.add_argument(
        "--out", help="directory for svid.pem, key.pem, bundle.pem (default: replace --cert/--key)"
    )
    add_config_arg(r)
    r.set_defaults(func=renew_command)

    v = csub.add_parser("revoke", help="revoke an SVID by serial, or every SVID of a SPIFFE ID (admin)")
    v.add_argument("serial", nargs="?", help="hex serial number")
    v.add_argument("--spiffe-id")
    v.add_argument("--reason", help="recorded with the revocation")
    add_admin_args(v)
    v.set_defaults(func=revoke_command)

    n = csub.add_parser("inspect", help="show an SVID file and whether it has a valid SVID shape (local)")
    n.add_argument("file")
    n.add_argument("--trust-domain", help="also require this trust domain")
    n.set_defaults(func=inspect_command)

    ls = csub.add_parser("list", help="list issued SVIDs (admin)")
    ls.add_argument("--spiffe-id")
    ls.add_argument("--valid", action="store_true", help="only unrevoked, unexpired SVIDs")
    add_admin_args(ls)
    ls.set_defaults(func=list_command)


# -- local key material -------------------------------------------------------------------------------
def new_key_and_csr(spiffe_id: str) -> tuple[bytes, str]:
    """A fresh P-256 key (PKCS#8 PEM) and a CSR carrying ``spiffe_id`` as its one URI SAN."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from garrison.identity.ca.spiffe_id import SpiffeId

    try:
        sid = str(SpiffeId(spiffe_id))
    except GarrisonError as e:
        raise CliError(f"--spiffe-id: {e}") from None
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(sid)]), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def _atomic_write(path: Path, data: bytes, mode: int) -> Path:
    """Write a sibling temp file with ``mode``; the caller renames it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return Path(tmp)


@dataclass(frozen=True, slots=True)
class SvidFiles:
    """Where an SVID lives on disk: its chain, its private key (0600) and the trust bundle."""

    cert: Path
    key: Path
    bundle: Path

    @classmethod
    def in_dir(cls, out: Path) -> SvidFiles:
        return cls(out / SVID_FILE, out / KEY_FILE, out / BUNDLE_FILE)


def write_svid_files(files: SvidFiles, svid: dict[str, Any], key_pem: bytes) -> None:
    """Replace each file atomically (temp file + rename), the key first; never a partial file."""
    chain, bundle = svid.get("chain_pem"), svid.get("bundle_pem")
    if not isinstance(chain, str) or not isinstance(bundle, str):
        raise CliError("the control plane's answer has no chain_pem/bundle_pem")
    plan = [
        (files.key, key_pem, 0o600),
        (files.cert, chain.encode(), 0o644),
        (files.bundle, bundle.encode(), 0o644),
    ]
    temps: list[tuple[Path, Path]] = []
    try:
        for dest, data, mode in plan:
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temps.append((_atomic_write(dest, data, mode), dest))
        for tmp, dest in temps:
            os.replace(tmp, dest)
    except OSError as e:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise CliError(f"cannot write {e.filename or files.cert.parent}: {e.strerror}") from None


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _print_svid(svid: dict[str, Any], files: SvidFiles) -> None:
    print(f"spiffe id: {svid.get('spiffe_id')}")
    print(f"serial:    {svid.get('serial')}")
    na = svid.get("not_after")
    if isinstance(na, int | float):
        print(f"expires:   {_when(na)}")
    print(f"files:     {files.cert}, {files.key} (0600), {files.bundle}")


# -- commands -----------------------------------------------------------------------------------------
def _join_token(value: str) -> str:
    if value == "-":
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise CliError("--join-token is empty")
    return value


def issue_command(args: argparse.Namespace) -> int:
    key_pem, csr = new_key_and_csr(args.spiffe_id)
    if args.join_token is not None:
        if args.ttl is not None:
            raise CliError("--ttl is for admin issuance; a join token gets the server's SVID lifetime")
        target = target_from_args(args)
        with ApiClient(target.base_url, target.ca_file) as api:
            svid = api.call(
                "POST", "/v1/svids/join", json_body={"join_token": _join_token(args.join_token), "csr": csr}
            )
    else:
        body: dict[str, Any] = {"csr": csr}
        if args.ttl is not None:
            if not math.isfinite(args.ttl) or args.ttl <= 0:
                raise CliError("--ttl must be a positive number of seconds")
            body["ttl_seconds"] = args.ttl
        with admin_client(args) as api:
            svid = api.call("POST", "/v1/svids", json_body=body)
    if not isinstance(svid, dict):
        raise CliError("the control plane's answer is not an SVID object")
    files = SvidFiles.in_dir(Path(args.out))
    write_svid_files(files, svid, key_pem)
    _print_svid(svid, files)
    return 0


def _load_chain(path: Path) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None
    except ValueError:
        raise CliError(f"{path} holds no PEM certificate") from None


def renew_command(args: argparse.Namespace) -> int:
    from garrison.identity.oauth.client_auth import svid_uri

    cert_path, key_path = Path(args.cert), Path(args.key)
    sid = svid_uri(_load_chain(cert_path)[0])
    if sid is None:
        raise CliError(f"{cert_path} is not an SVID: it has no single URI SAN")
    key_pem, csr = new_key_and_csr(sid)
    target = target_from_args(args)
    with ApiClient(target.base_url, target.ca_file, cert=(cert_path, key_path)) as api:
        svid = api.call("POST", "/v1/svids/renew", json_body={"csr": csr})
    if not isinstance(svid, dict):
        raise CliError("the control plane's answer is not an SVID object")
    # Without --out, the files named by --cert and --key are replaced in place.
    if args.out:
        files = SvidFiles.in_dir(Path(args.out))
    else:
        files = SvidFiles(cert_path, key_path, cert_path.parent / BUNDLE_FILE)
    write_svid_files(files, svid, key_pem)
    _print_svid(svid, files)
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    if (args.serial is None) == (args.spiffe_id is None):
        raise CliError("give either a SERIAL or --spiffe-id ID")
    body: dict[str, Any] = (
        {"serial": args.serial.lower().removeprefix("0x")} if args.serial else {"spiffe_id": args.spiffe_id}
    )
    if args.reason:
        body["reason"] = args.reason
    with admin_client(args) as api:
        doc = api.call("POST", "/v1/revocations", json_body=body)
    revoked = doc.get("revoked", []) if isinstance(doc, dict) else []
    for serial in revoked:
        print(f"revoked {serial}")
    return 0


def inspect_command(args: argparse.Namespace) -> int:
    from garrison.identity.ca.certs import serial_hex
    from garrison.identity.ca.svid import leaf_spiffe_id
    from garrison.identity.oauth.client_auth import svid_uri

    path = Path(args.file)
    certs = _load_chain(path)
    leaf = certs[0]
    nb, na = leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
    uri = svid_uri(leaf)
    print(f"spiffe id:  {uri or '(none)'}")
    print(f"serial:     {serial_hex(leaf)}")
    print(f"not before: {_when(nb)}")
    print(f"not after:  {_when(na)}{'  (EXPIRED)' if na < time.time() else ''}")
    print(f"issuer:     {leaf.issuer.rfc4514_string() or '(empty)'}")
    print(f"chain:      {len(certs)} certificate(s)")
    td = args.trust_domain
    if td is None and uri is not None and uri.startswith("spiffe://"):
        td = uri[len("spiffe://") :].split("/", 1)[0]
    try:
        leaf_spiffe_id(leaf, td or "")
    except GarrisonError as e:
        raise CliError(f"{path}: {e}") from None
    print("svid:       valid X509-SVID shape")
    return 0


def list_command(args: argparse.Namespace) -> int:
    params = {}
    if args.spiffe_id:
        params["spiffe_id"] = args.spiffe_id
    if args.valid:
        params["valid"] = "true"
    with admin_client(args) as api:
        doc = api.call("GET", "/v1/svids", params=params)
    rows = doc.get("svids", []) if isinstance(doc, dict) else []
    for s in rows:
        state = (
            "revoked"
            if s.get("revoked_at")
            else ("expired" if s.get("not_after", 0) < time.time() else "valid")
        )
        na = s.get("not_after")
        expiry = _when(na) if isinstance(na, int | float) else "?"
        print(f"{s.get('serial')}  {state:8}  {expiry}  {s.get('spiffe_id')}")
    print(f"{len(rows)} SVID(s)", file=sys.stderr)
    return 0


__all__ = ["SvidFiles", "add_parser", "new_key_and_csr", "write_svid_files"]
