"""X.509-SVID issuance throughput on the embedded default (SQLite file, WAL), one thread.

    .venv/bin/python bench/bench_ca.py [--n 2000] [--repeat 3] [--store PATH_OR_URL]

Printed per line: issuances per second of CPU time (``time.thread_time``: other load on this
shared machine inflates it far less than wall time) and of wall time, best of ``--repeat`` runs:

- ``baseline: raw sign``: ``cryptography`` builds and ECDSA-P256-signs an SVID-shaped certificate
  (the floor: no CSR parsing, no database);
- ``sans-IO issue``: ``check_csr`` + ``build_svid`` (CSR parsed, its signature verified, policy
  checks, sign) — what issuance costs without the store;
- ``issue (sign + store)``: ``WorkloadCA.issue`` — one transaction reading the signing CA and the
  last bundle, signing, and recording the SVID;
- ``join token (create + redeem)``: ``create_join_token`` then ``redeem_join_token`` — two
  transactions, the second burning the token and recording the SVID.

Target (issue 3): ≥ 500 SVIDs/s on one core for ``issue (sign + store)``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from garrison.identity.ca import CaSettings, Kek, WorkloadCA, build_svid, check_csr
from garrison.store import Store

TD = "bench.local"
SID = f"spiffe://{TD}/svc/bench"


def _csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SID)]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def _rate(fn: Callable[[], object], n: int, repeat: int) -> tuple[float, float]:
    best_cpu = best_wall = 0.0
    for _ in range(repeat):
        c0, w0 = time.thread_time(), time.perf_counter()
        for _ in range(n):
            fn()
        cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
        best_cpu = max(best_cpu, n / cpu)
        best_wall = max(best_wall, n / wall)
    return best_cpu, best_wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--store", default=None, help="SQLite path or PostgreSQL URL (default: a temp file)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(args.store or Path(tmp) / "bench.db")
        ca = WorkloadCA(store, Kek.generate(), CaSettings(TD))
        ca.initialize()
        csr = _csr()
        req = check_csr(csr, TD)
        cur, _ = store.signing_state()
        assert cur is not None
        cert, key = ca.unsealed(cur)
        now = time.time()
        leaf_pk = req.public_key

        def raw_sign() -> object:
            return (
                x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(cert.subject)
                .public_key(leaf_pk)
                .serial_number(x509.random_serial_number())
                .not_valid_before(cert.not_valid_before_utc)
                .not_valid_after(cert.not_valid_after_utc)
                .add_extension(
                    x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SID)]), critical=True
                )
                .sign(key, hashes.SHA256())
            )

        def sans_io() -> object:
            return build_svid(check_csr(csr, TD), cert, key, now)

        def issue() -> object:
            return ca.issue(csr)

        def join() -> object:
            return ca.redeem_join_token(ca.create_join_token(SID), csr)

        for fn in (raw_sign, sans_io, issue, join):  # warm caches (compiled SQL, unsealed key)
            for _ in range(50):
                fn()
        rows = [
            ("baseline: raw sign", raw_sign),
            ("sans-IO issue (CSR check + sign)", sans_io),
            ("issue (sign + store)", issue),
            ("join token (create + redeem)", join),
        ]
        print(f"store: {store!r}  n={args.n} repeat={args.repeat}  python {sys.version.split()[0]}")
        print(f"{'what':36} {'/s (CPU)':>10} {'/s (wall)':>10} {'vs raw sign (CPU)':>18}")
        base = 0.0
        for name, fn in rows:
            cpu, wall = _rate(fn, args.n, args.repeat)
            base = base or cpu
            print(f"{name:36} {cpu:10.0f} {wall:10.0f} {base / cpu:17.2f}x")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
