"""`garrison ca init|status|csr|install`: the CA's keys; an intermediate signed by an external root.

The root key may live offline (issue 3): `ca csr` creates a new intermediate key (sealed in the
store) and prints its CSR for the external root to sign; `ca install` takes the signed certificate
(and the root certificate, the first time) and publishes it in the trust bundle before it signs
anything. These run on the control plane's machine, against its store, with its KEK.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from garrison.control.plane import ControlPlane


def _open(config: str) -> tuple[ControlPlane, Path]:
    # Imported here: main.py builds every command's parser, and these cost ~1 s at start-up.
    from garrison.config.loader import load_config
    from garrison.control.plane import ControlPlane

    path = Path(config)
    base = path.resolve().parent
    return ControlPlane.open(load_config(path), base, require_ca=False), base


def _status(args: argparse.Namespace) -> int:
    plane, _ = _open(args.config)
    try:
        now = time.time()
        rows = plane.store.list_ca_keys()
        bundle = plane.store.latest_bundle()
        print(f"trust domain {plane.trust_domain}; bundle sequence {bundle.sequence if bundle else 'none'}")
        for r in sorted(rows, key=lambda r: (r.purpose.value, r.created_at)):
            if r.not_after is not None:
                days = (r.not_after - now) / 86_400
                validity = f"expires in {days:.1f} days" if days > 0 else "expired"
            else:
                validity = "no certificate yet (CSR pending)"
            print(f"{r.purpose.value:12} {r.state.value:8} {r.id}  {validity}")
        if not plane.initialized:
            print("no current intermediate: install one with `garrison ca install`", file=sys.stderr)
            return 1
        return 0
    finally:
        plane.close()


def _init(args: argparse.Namespace) -> int:
    """A CA in a store that has none: an online root (default), or a CSR for an external one."""
    plane, base = _open(args.config)
    try:
        if plane.store.list_ca_keys():
            print("the CA is already initialized in this store (see `garrison ca status`)", file=sys.stderr)
            return 1
        if args.external_root:
            pem = plane.ca.make_intermediate_csr()
            plane.audit.append("ca.intermediate_csr", actor="cli")
        else:
            kid = plane.ca.initialize()
            plane.audit.append("ca.initialize", actor="cli", ca_key_id=kid)
            ca_file = base / plane.settings.ca_file
            ca_file.parent.mkdir(parents=True, exist_ok=True)
            ca_file.write_bytes(plane.trust_anchors_pem())
            print(f"CA initialized with an online root; intermediate {kid} signs; anchors in {ca_file}")
            return 0
    finally:
        plane.close()
    return _write_csr(pem, args.out)


def _write_csr(pem: str, out: str | None) -> int:
    if out:
        Path(out).write_text(pem)
        print(
            f"wrote {out}: have your root sign it as a CA certificate (cA=true, keyCertSign),"
            " then run `garrison ca install`",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(pem)
    return 0


def _csr(args: argparse.Namespace) -> int:
    plane, _ = _open(args.config)
    try:
        pem = plane.ca.make_intermediate_csr()
        plane.audit.append("ca.intermediate_csr", actor="cli")
    finally:
        plane.close()
    if args.out:
        Path(args.out).write_text(pem)
        print(
            f"wrote {args.out}: have your root sign it as a CA certificate (cA=true, keyCertSign),"
            " then run `garrison ca install`",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(pem)
    return 0


def _install(args: argparse.Namespace) -> int:
    plane, base = _open(args.config)
    try:
        cert_pem = Path(args.cert).read_text()
        root_pem = Path(args.root).read_text() if args.root else None
        kid = plane.ca.install_intermediate(cert_pem, root_pem)
        plane.audit.append("ca.intermediate_installed", actor="cli", ca_key_id=kid)
        active = plane.initialized
        if active:
            ca_file = base / plane.settings.ca_file
            ca_file.parent.mkdir(parents=True, exist_ok=True)
            ca_file.write_bytes(plane.trust_anchors_pem())
    finally:
        plane.close()
    state = "current (signing)" if active else "published as next"
    print(f"installed intermediate {kid}: {state}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ca = sub.add_parser("ca", help="workload CA: init, status, intermediate CSR for an offline root, install")
    csub = ca.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    st = csub.add_parser("status", help="list the CA keys and the trust bundle sequence")
    st.add_argument("-c", "--config", default="garrison.yaml")
    st.set_defaults(func=_status)
    ini = csub.add_parser(
        "init", help="create the CA in a store without one (online root, or --external-root)"
    )
    ini.add_argument("-c", "--config", default="garrison.yaml")
    ini.add_argument("--external-root", action="store_true", help="only an intermediate key and its CSR")
    ini.add_argument("--out", help="with --external-root: write the CSR here instead of stdout")
    ini.set_defaults(func=_init)
    cs = csub.add_parser("csr", help="create a new intermediate key and print its CSR (PEM)")
    cs.add_argument("-c", "--config", default="garrison.yaml")
    cs.add_argument("--out", help="write the CSR here instead of stdout")
    cs.set_defaults(func=_csr)
    ins = csub.add_parser("install", help="install an intermediate certificate signed by an external root")
    ins.add_argument("-c", "--config", default="garrison.yaml")
    ins.add_argument("--cert", required=True, help="the signed intermediate certificate (PEM)")
    ins.add_argument("--root", help="the external root certificate (PEM), needed the first time")
    ins.set_defaults(func=_install)


__all__ = ["add_parser"]
