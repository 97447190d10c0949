"""Signing key ring: overlapping rotation, JWKS contents, sealing at rest (memory and SQLite)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from oauth_kit import NO_PEER, NOW, Kit, make_kit
from verify_kit import gateway_verify, pyjwt_decode

from garrison.errors import KeySetError, SealError
from garrison.identity.ca import Kek
from garrison.identity.oauth import KeyState, MemoryOAuthState, SigningKeyRing, TokenResponse
from garrison.identity.oauth.sql_state import SqlOAuthState

PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "k"}


def issue(kit: Kit, now: float) -> str:
    r = kit.service.token_endpoint.handle(kit.orders.form(now, audience="payments"), NO_PEER, now)
    assert isinstance(r, TokenResponse), r
    return r.access_token


def test_jwks_publishes_next_current_previous_without_private_members() -> None:
    ring = SigningKeyRing.generate(NOW)
    assert [k.state for k in ring.keys] == [KeyState.NEXT, KeyState.CURRENT]
    ring.rotate(NOW + 1)
    jwks = ring.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [k.kid for k in ring.keys]
    assert [k.state for k in ring.keys] == [KeyState.NEXT, KeyState.CURRENT, KeyState.PREVIOUS]
    for jwk in jwks["keys"]:
        assert not PRIVATE & set(jwk)
        assert jwk["use"] == "sig" and jwk["alg"] == "ES256" and jwk["crv"] == "P-256"
    d = str(ring.current.private_key.private_numbers().private_value)  # type: ignore[union-attr]
    assert d not in repr(ring) + repr(ring.current) + repr(ring.keys)


def test_rotate_promotes_next_and_drops_the_old_previous() -> None:
    ring = SigningKeyRing.generate(NOW)
    first = ring.current.kid
    nxt = next(k.kid for k in ring.keys if k.state is KeyState.NEXT)
    assert ring.rotate(NOW + 1).kid == nxt
    ring.rotate(NOW + 2)
    assert first not in {k["kid"] for k in ring.jwks()["keys"]}


def test_token_signed_before_rotation_verifies_against_the_new_jwks(kit: Kit) -> None:
    raw = issue(kit, NOW)
    kit.service.ring.rotate(NOW + 360)
    assert gateway_verify(raw, kit.service.jwks(), NOW + 300).sub


def test_a_gateway_with_the_old_jwks_verifies_tokens_signed_after_rotation(kit: Kit) -> None:
    stale = kit.service.jwks()  # cached by a gateway before the rotation
    kit.service.ring.rotate(NOW + 360)
    raw = issue(kit, NOW + 400)
    assert gateway_verify(raw, stale, NOW + 400).sub  # the next key was pre-published


def test_issue_and_verify_across_many_rotations_has_zero_failures() -> None:
    now = NOW
    kit = make_kit(now)
    live: list[tuple[float, str]] = []
    failures = 0
    for _ in range(8):
        for _ in range(10):
            now += 40
            live.append((now, issue(kit, now)))
            jwks = kit.service.jwks()
            for _issued, tok in live:
                try:
                    gateway_verify(tok, jwks, now)
                except Exception:
                    failures += 1
            live = [(t, tok) for t, tok in live if t + 300 > now]
        kit.service.ring.rotate(now)
    assert failures == 0


def test_pyjwt_verifies_across_a_rotation() -> None:
    now = time.time()
    kit = make_kit(now)
    before = issue(kit, now)
    kit.service.ring.rotate(now)
    after = issue(kit, now)
    for raw in (before, after):
        assert pyjwt_decode(raw, kit.service.jwks(), "payments")["aud"] == "payments"


def test_rotation_sooner_than_the_token_lifetime_is_refused() -> None:
    ring = SigningKeyRing.generate(NOW, min_rotation_interval=360)
    with pytest.raises(KeySetError, match="refusing to rotate"):
        ring.rotate(NOW + 100)
    ring.rotate(NOW + 360)


@pytest.fixture(params=["memory", "sqlite"])
def key_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    if request.param == "memory":
        yield MemoryOAuthState()
        return
    state = SqlOAuthState.open(tmp_path / "garrison.db")
    yield state
    state.close()


def test_ring_survives_a_restart_sealed(key_store: MemoryOAuthState) -> None:
    kek = Kek.generate()
    ring = SigningKeyRing.open(key_store, kek, NOW)
    ring.rotate(NOW + 10)
    for rec in key_store.load_signing_keys():
        der = rec.sealed_key
        assert b"\x30\x81" not in der[:8] and rec.kid not in repr(der)  # not plaintext PKCS#8
    again = SigningKeyRing.open(key_store, kek, NOW + 20)
    assert again.jwks() == ring.jwks() and again.current.kid == ring.current.kid
    token = again.sign({"x": 1}, typ="at+jwt")
    assert token.count(".") == 2


def test_wrong_kek_gives_a_clear_error(key_store: MemoryOAuthState) -> None:
    SigningKeyRing.open(key_store, Kek.generate(), NOW)
    with pytest.raises(SealError, match="key-encryption key"):
        SigningKeyRing.open(key_store, Kek.generate(), NOW)


def test_a_sealed_key_moved_to_another_kid_fails() -> None:
    from dataclasses import replace

    store, kek = MemoryOAuthState(), Kek.generate()
    SigningKeyRing.open(store, kek, NOW)
    a, b = store.load_signing_keys()
    store.save_signing_keys([replace(a, sealed_key=b.sealed_key), b])
    with pytest.raises(SealError, match="tampered"):
        SigningKeyRing.open(store, kek, NOW)


def test_rs256_ring_is_supported_and_unknown_algs_refused() -> None:
    ring = SigningKeyRing.generate(NOW, alg="RS256")
    assert ring.jwks()["keys"][0]["kty"] == "RSA"
    with pytest.raises(ValueError, match="unsupported"):
        SigningKeyRing.generate(NOW, alg="HS256")
