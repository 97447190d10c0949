"""``garrison join-token create``: a one-time token a new workload trades for its first SVID.

The token goes to stdout only (so it can be piped or captured), its expiry to stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from garrison.cli.api import CliError, add_admin_args, admin_client


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("join-token", help="create join tokens for new workloads")
    jsub = p.add_subparsers(dest="join_command", required=True, metavar="ACTION")
    c = jsub.add_parser("create", help="create a one-time join token for a SPIFFE ID (prints it)")
    c.add_argument("spiffe_id", help="the SPIFFE ID the token may obtain an SVID for")
    c.add_argument("--ttl", type=float, help="seconds the token stays valid (default: the server's)")
    add_admin_args(c)
    c.set_defaults(func=create_command)


def create_command(args: argparse.Namespace) -> int:
    body: dict[str, object] = {"spiffe_id": args.spiffe_id}
    if args.ttl is not None:
        if not math.isfinite(args.ttl) or args.ttl <= 0:
            raise CliError("--ttl must be a positive number of seconds")
        body["ttl_seconds"] = args.ttl
    with admin_client(args) as api:
        doc = api.call("POST", "/v1/join-tokens", json_body=body)
    token = doc.get("join_token") if isinstance(doc, dict) else None
    if not isinstance(token, str):
        raise CliError("the control plane's answer has no join_token")
    expires = doc.get("expires_at")
    print(token)
    sys.stdout.flush()
    if isinstance(expires, int | float):
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
        print(f"join token for {doc.get('spiffe_id')} expires {when}", file=sys.stderr)
    return 0


__all__ = ["add_parser", "create_command"]
