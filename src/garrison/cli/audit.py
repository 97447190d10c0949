"""`garrison audit verify FILE [--expect-last HASH] [--expect-count N] [--json]`.

Prints one line; exits 0 if the chain (and the anchor, if given) holds, 1 if it does not (tampered,
truncated, incomplete), 2 if the file cannot be read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from garrison.telemetry.audit import verify_log

EXIT_OK, EXIT_TAMPERED, EXIT_UNREADABLE = 0, 1, 2


def _hash(value: str) -> str:
    v = value.strip().lower()
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise argparse.ArgumentTypeError("must be a SHA-256 hex digest (64 hex characters)")
    return v


def _count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError("must be a non-negative integer")
    return n


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``audit verify`` on the ``add_subparsers()`` object of the ``garrison`` parser."""
    a = subparsers.add_parser("audit", help="check the tamper-evident audit log")
    asub = a.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    v = asub.add_parser(
        "verify",
        help="verify the hash chain; with an anchor, also detect records removed from the end",
        description="Verify an audit log's hash chain. Edits, insertions, deletions and reordering are"
        " reported at the first line where the chain breaks. Records removed from the END leave a valid"
        " chain: pass the count and last hash printed by an earlier run (kept elsewhere) to detect that.",
    )
    v.add_argument("file", help="the audit log (JSON lines)")
    v.add_argument(
        "--expect-last", type=_hash, metavar="HASH", help="anchor: a hash printed by an earlier run"
    )
    v.add_argument(
        "--expect-count", type=_count, metavar="N", help="anchor: the record count printed by an earlier run"
    )
    v.add_argument("--json", action="store_true", help="print the result as one JSON object")
    v.set_defaults(func=verify_command)
    return a


def verify_command(args: argparse.Namespace) -> int:
    try:
        r = verify_log(args.file, expect_last=args.expect_last, expect_count=args.expect_count)
    except OSError as exc:
        print(f"garrison: error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.json:
        print(json.dumps(dataclasses.asdict(r), sort_keys=True))
    elif r.ok:
        anchor = (
            "anchor matches"
            if r.anchored
            else "NOT anchored: records removed from the end cannot be detected without"
            " --expect-count/--expect-last; keep this count and hash elsewhere"
        )
        print(f"{args.file}: ok: {r.count} records, last hash {r.last_hash} ({anchor})")
    else:
        print(f"{args.file}: FAILED: {r.problem}")
    return EXIT_OK if r.ok else EXIT_TAMPERED


__all__ = ["add_parser", "verify_command"]
