"""Token service throughput: client_credentials tokens/s with private_key_jwt, one core.

Measures the full sans-IO path (form parse, assertion verify, jti replay store, token sign) and,
in the same run, a baseline of raw ES256 sign + verify with ``cryptography``. Assertions are
pre-signed outside the timed loop (a client's cost, not the server's).

    .venv/bin/python bench/bench_tokens.py [--n 3000] [--repeat 3] [--sql PATH] [--url URL]

``--sql PATH`` adds a run with ``SqlOAuthState`` on a SQLite file (the embedded default);
``--url`` one on any store URL, e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/bench``.
Either is migrated to the current store schema: give it a scratch file or database, never a
live control plane's (the jti rows written expire two minutes later and are pruned by a writer).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from garrison.identity.ca import SpiffeId
from garrison.identity.oauth import (
    ASSERTION_TYPE,
    AuthMethod,
    ClientAuthContext,
    ClientRegistration,
    MemoryClientRegistry,
    MemoryOAuthState,
    ServerSettings,
    SigningKeyRing,
    TokenResponse,
    TokenService,
)

ISSUER = "https://cp.example.org"
CLIENT = "spiffe://example.org/svc/orders"


def baseline(n: int) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key()
    msg = b"x" * 300
    ecdsa = ec.ECDSA(hashes.SHA256())
    t0 = time.perf_counter()
    for _ in range(n):
        sig = key.sign(msg, ecdsa)  # token sign
        pub.verify(sig, msg, ecdsa)  # assertion verify
    return n / (time.perf_counter() - t0)


def service(state: Any) -> tuple[TokenService, ec.EllipticCurvePrivateKey]:
    ckey = ec.generate_private_key(ec.SECP256R1())
    jwk = dict(ECAlgorithm.to_jwk(ckey.public_key(), as_dict=True))
    reg = ClientRegistration(
        SpiffeId(CLIENT), AuthMethod.PRIVATE_KEY_JWT, frozenset({"read"}), frozenset({"payments"}), (jwk,)
    )
    now = time.time()
    svc = TokenService(
        ServerSettings(ISSUER, frozenset({"payments"})),
        SigningKeyRing.generate(now),
        MemoryClientRegistry([reg]),
        replay=state,
        revocations=state,
    )
    return svc, ckey


def run(n: int, state: Any) -> tuple[float, dict[str, float]]:
    svc, ckey = service(state)
    now = time.time()
    forms = [
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": jwt.encode(
                {"iss": CLIENT, "sub": CLIENT, "aud": ISSUER, "exp": int(now) + 120, "jti": uuid.uuid4().hex},
                ckey,
                algorithm="ES256",
            ),
            "audience": "payments",
        }
        for _ in range(n)
    ]
    ctx = ClientAuthContext()
    endpoint = svc.token_endpoint
    t0 = time.perf_counter()
    for f in forms:
        r = endpoint.handle(f, ctx, now)
        if not isinstance(r, TokenResponse):
            raise SystemExit(f"unexpected {r!r}")
    rate = n / (time.perf_counter() - t0)

    # Where the time goes: each part alone, per call.
    from garrison.identity.oauth.form import Form

    parts: dict[str, float] = {}
    m = min(n, 1000)
    fs = [Form(f) for f in forms[:m]]
    auth = svc.authenticator
    fresh, _ = service(MemoryOAuthState())
    fresh_auth = fresh.authenticator
    # re-register the same client key in the fresh service
    fresh_auth._registry = auth._registry
    t0 = time.perf_counter()
    for form in fs:
        fresh_auth.authenticate(form, ctx, now)
    parts["client auth (parse + ES256 verify + claims + jti)"] = (time.perf_counter() - t0) / m * 1e6
    t0 = time.perf_counter()
    for _ in range(m):
        svc.minter.mint(
            sub=CLIENT, client_id=CLIENT, audience="payments", scopes=frozenset({"read"}), now=now
        )
    parts["mint (claims + PyJWT ES256 sign)"] = (time.perf_counter() - t0) / m * 1e6
    return rate, parts


def run_sql(target: str, n: int, repeat: int) -> list[float]:
    """Token rates with ``SqlOAuthState`` on ``target`` (a SQLite path or a store URL)."""
    from garrison.identity.oauth.sql_state import SqlOAuthState

    state = SqlOAuthState.open(target)
    try:
        return [run(n, state)[0] for _ in range(repeat)]
    finally:
        state.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="tokens per timed run")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per store; the median is shown")
    ap.add_argument("--sql", metavar="PATH", help="also run with SqlOAuthState on this SQLite path")
    ap.add_argument("--url", help="also run with SqlOAuthState on this store URL (PostgreSQL or SQLite)")
    args = ap.parse_args()
    base = baseline(args.n)
    print(f"baseline raw ES256 sign+verify (cryptography): {base:8.0f} /s  ({1e6 / base:.0f} us each)")
    rate, parts = run(args.n, MemoryOAuthState())
    print(f"client_credentials + private_key_jwt (memory): {rate:8.0f} tokens/s  ({1e6 / rate:.0f} us each)")
    for name, us in parts.items():
        print(f"    {name:52s} {us:6.0f} us")
    print(f"  ratio to baseline: {rate / base:.2f}")
    for label, target in (("SQLite", args.sql), ("URL", args.url)):
        if target:
            rates = run_sql(target, args.n, args.repeat)
            print(
                f"client_credentials + private_key_jwt ({label} jti store): {statistics.median(rates):8.0f}"
                f" tokens/s median of {' '.join(f'{r:.0f}' for r in rates)}"
            )


if __name__ == "__main__":
    main()
