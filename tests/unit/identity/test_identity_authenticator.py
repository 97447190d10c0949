"""JwtAuthenticator: Authorization parsing, issuer choice, cache, unknown-kid refetch, verdicts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from identity_kit import AUD, ISS, NOW, Kit, claims, mint

from garrison.config.models import Issuer, StaticKey
from garrison.errors import ConfigError
from garrison.identity.authenticator import JwtAuthenticator
from garrison.identity.jwks import KeyProvider, StaticKeyProvider
from garrison.identity.keys import KeySet, parse_jwks
from garrison.identity.tokens import TokenVerifier
from garrison.pipeline.context import RequestContext
from garrison.pipeline.verdicts import CONTINUE, SKIP, Deny, Verdict
from garrison.reasons import Reason

TD = "prod.example"


def ctx(*auth: bytes, now: float = NOW) -> RequestContext:
    headers = [(b"host", b"api.example.com"), *((b"authorization", v) for v in auth)]
    return RequestContext(
        method="GET", raw_target=b"/x", headers=headers, client_addr="10.0.0.1", request_id="r1", now=now
    )


def run(authn: JwtAuthenticator, c: RequestContext, allowed: tuple[str, ...] | None = None) -> Verdict:
    return asyncio.run(authn.authenticate(c, allowed))


def bearer(token: str) -> bytes:
    return b"Bearer " + token.encode()


@pytest.fixture
def authn(kit: Kit) -> JwtAuthenticator:
    other = kit.issuer(kit.rs256, name="partner", issuer="https://partner.example", audiences=[AUD])
    return JwtAuthenticator.build([kit.issuer(kit.es256, kit.eddsa, workload_identities=True), other], TD)


# -- the Authorization header --------------------------------------------------------------------
def test_no_authorization_header_is_not_our_credential(authn: JwtAuthenticator) -> None:
    assert run(authn, ctx()) is SKIP


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"Basic dXNlcjpwYXNz", id="basic"),
        pytest.param(b'Digest username="u", realm="r"', id="digest"),
        pytest.param(b"ApiKey abc123", id="api-key-scheme"),
    ],
)
def test_another_scheme_is_not_our_credential(authn: JwtAuthenticator, value: bytes) -> None:
    assert run(authn, ctx(value)) is SKIP


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"Bearer", id="bearer-without-token"),
        pytest.param(b"Bearer ", id="bearer-with-empty-token"),
        pytest.param(b"Bearer  eyJ.eyJ.sig", id="two-spaces"),
        pytest.param(b"Bearer\teyJ.eyJ.sig", id="tab-separator"),
        pytest.param(b"Bearer eyJ.eyJ.sig extra", id="two-tokens"),
        pytest.param(b"Bearer eyJ.eyJ.sig,eyJ.eyJ.sig", id="comma-list"),
        pytest.param(b"Bearer eyJ.eyJ.s\xc3\xa9", id="non-ascii"),
        pytest.param(b"Bearer =abc", id="leading-padding"),
        pytest.param(b"Bearer abc=def", id="padding-in-the-middle"),
        pytest.param(b"Bearer\x00eyJ", id="nul"),
        pytest.param(b"", id="empty-value"),
        pytest.param(b" Bearer x.y.z", id="leading-space"),
    ],
)
def test_should_deny_because_the_bearer_credential_is_malformed(
    authn: JwtAuthenticator, value: bytes
) -> None:
    verdict = run(authn, ctx(value))
    assert isinstance(verdict, Deny)
    assert (verdict.reason, verdict.stage) == (Reason.TOKEN_MALFORMED, "authn")


def test_should_deny_because_several_authorization_headers_are_sent(
    authn: JwtAuthenticator, kit: Kit
) -> None:
    token = bearer(mint(kit.es256))
    verdict = run(authn, ctx(token, token))
    assert isinstance(verdict, Deny)
    assert verdict.reason is Reason.TOKEN_MALFORMED


@pytest.mark.parametrize("scheme", [b"Bearer", b"bearer", b"BEARER", b"bEaReR"])
def test_the_scheme_is_case_insensitive(authn: JwtAuthenticator, kit: Kit, scheme: bytes) -> None:
    c = ctx(scheme + b" " + mint(kit.es256).encode())
    assert run(authn, c) is CONTINUE
    assert c.identity is not None


# -- issuer choice ---------------------------------------------------------------------------------
def test_the_issuer_is_picked_by_iss(authn: JwtAuthenticator, kit: Kit) -> None:
    c = ctx(bearer(mint(kit.rs256, claims(iss="https://partner.example"))))
    assert run(authn, c) is CONTINUE
    assert c.identity is not None
    assert c.identity.issuer == "partner"
    assert c.identity.principal == "https://partner.example#user-42"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(claims(iss="https://evil.example"), Reason.TOKEN_BAD_ISSUER, id="unknown-iss"),
        pytest.param(claims(iss=["https://idp.example.com"]), Reason.TOKEN_BAD_ISSUER, id="iss-not-a-string"),
        pytest.param(
            {k: v for k, v in claims().items() if k != "iss"}, Reason.TOKEN_MISSING_CLAIM, id="no-iss"
        ),
    ],
)
def test_should_deny_because_the_issuer_is_not_configured(
    authn: JwtAuthenticator, kit: Kit, payload: dict[str, Any], reason: Reason
) -> None:
    verdict = run(authn, ctx(bearer(mint(kit.es256, payload))))
    assert isinstance(verdict, Deny)
    assert verdict.reason is reason


def test_a_partner_key_cannot_sign_for_the_main_issuer(authn: JwtAuthenticator, kit: Kit) -> None:
    verdict = run(authn, ctx(bearer(mint(kit.rs256))))  # iss = main issuer, signed with partner key
    assert isinstance(verdict, Deny)
    assert verdict.reason in (Reason.TOKEN_BAD_ALGORITHM, Reason.TOKEN_UNKNOWN_KEY)


def test_should_deny_because_the_issuer_is_not_allowed_on_the_route(
    authn: JwtAuthenticator, kit: Kit
) -> None:
    token = bearer(mint(kit.es256))
    for _ in range(2):  # first a cache miss, then a cache hit: both paths check the route's issuers
        verdict = run(authn, ctx(token), ("partner",))
        assert isinstance(verdict, Deny)
        assert verdict.reason is Reason.TOKEN_BAD_ISSUER
        assert run(authn, ctx(token), ("idp",)) is CONTINUE


# -- outcome -----------------------------------------------------------------------------------------
def test_a_valid_user_token_sets_the_identity(authn: JwtAuthenticator, kit: Kit) -> None:
    c = ctx(bearer(mint(kit.eddsa)))
    assert run(authn, c) is CONTINUE
    assert c.identity is not None
    assert (c.identity.principal, c.identity.kind, c.identity.method) == (f"{ISS}#user-42", "user", "jwt")
    assert c.identity.scopes == {"orders:read", "orders:write"}


def test_a_valid_workload_token_sets_the_spiffe_identity(authn: JwtAuthenticator, kit: Kit) -> None:
    c = ctx(bearer(mint(kit.es256, claims(sub="spiffe://prod.example/svc/microservice2"))))
    assert run(authn, c) is CONTINUE
    assert c.identity is not None
    assert (c.identity.principal, c.identity.kind) == ("spiffe://prod.example/svc/microservice2", "workload")


def test_an_issuer_not_trusted_for_workloads_yields_a_user(kit: Kit) -> None:
    """An external user IdP choosing sub=<our SPIFFE ID> must not become that workload."""
    users_only = JwtAuthenticator.build([kit.issuer(kit.es256)], TD)
    c = ctx(bearer(mint(kit.es256, claims(sub="spiffe://prod.example/svc/microservice2"))))
    assert run(users_only, c) is CONTINUE
    assert c.identity is not None
    assert c.identity.kind == "user"
    assert c.identity.principal == f"{ISS}#spiffe://prod.example/svc/microservice2"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(lambda k: mint(k.attacker), Reason.TOKEN_BAD_SIGNATURE, id="bad-signature"),
        pytest.param(lambda k: mint(k.es256, claims(exp=NOW - 61)), Reason.TOKEN_EXPIRED, id="expired"),
        pytest.param(
            lambda k: mint(k.es256, claims(aud="x")), Reason.TOKEN_BAD_AUDIENCE, id="wrong-audience"
        ),
        pytest.param(lambda k: mint(k.es256, kid="nope"), Reason.TOKEN_UNKNOWN_KEY, id="unknown-kid"),
        pytest.param(lambda k: "abc.def", Reason.TOKEN_MALFORMED, id="not-a-jwt"),
    ],
)
def test_failures_are_denials_whose_detail_never_holds_the_token(
    authn: JwtAuthenticator, kit: Kit, make: Callable[[Kit], str], reason: Reason
) -> None:
    token = make(kit)
    verdict = run(authn, ctx(bearer(token)))
    assert isinstance(verdict, Deny)
    assert (verdict.reason, verdict.stage, verdict.status) == (reason, "authn", 401)
    assert verdict.detail
    assert token not in verdict.detail
    assert all(part not in verdict.detail for part in token.split(".") if len(part) > 8)


# -- cache ---------------------------------------------------------------------------------------------
def _count_verifies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = TokenVerifier.verify_parsed

    def counting(self: TokenVerifier, *args: Any) -> Any:
        calls[0] += 1
        return original(self, *args)

    monkeypatch.setattr(TokenVerifier, "verify_parsed", counting)
    return calls


def test_a_cache_hit_skips_verification(
    authn: JwtAuthenticator, kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_verifies(monkeypatch)
    token = bearer(mint(kit.es256))
    first, second = ctx(token), ctx(token, now=NOW + 100)
    assert run(authn, first) is CONTINUE
    assert run(authn, second) is CONTINUE
    assert calls[0] == 1
    assert second.identity is first.identity


def test_the_cache_expires_at_exp_then_the_verifier_decides(
    authn: JwtAuthenticator, kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_verifies(monkeypatch)
    token = bearer(mint(kit.es256, claims(exp=NOW + 10)))
    assert run(authn, ctx(token)) is CONTINUE
    assert run(authn, ctx(token, now=NOW + 10 + 30)) is CONTINUE  # past exp, within leeway: re-verified
    verdict = run(authn, ctx(token, now=NOW + 10 + 61))
    assert isinstance(verdict, Deny)
    assert verdict.reason is Reason.TOKEN_EXPIRED
    assert calls[0] == 3


def test_the_cache_is_bounded(kit: Kit) -> None:
    authn = JwtAuthenticator.build([kit.issuer(kit.es256)], TD, cache_size=5)
    for i in range(20):
        assert run(authn, ctx(bearer(mint(kit.es256, claims(jti=str(i)))))) is CONTINUE
    assert len(authn.cache) == 5


# -- keys that arrive late or rotate ------------------------------------------------------------------
class FakeProvider:
    """A provider whose key set the test swaps; counts refetches."""

    def __init__(self, keys: KeySet | None, on_change: Callable[[KeySet], None]) -> None:
        self._keys = keys
        self.next_keys: KeySet | None = None
        self.refetches: list[str | None] = []
        self.on_change = on_change
        self.last_success_at: float | None = None
        self.fetch_failures = 0
        self.fetches = 0

    @property
    def key_count(self) -> int:
        return 0 if self._keys is None else len(self._keys)

    def keys(self) -> KeySet | None:
        return self._keys

    async def refetch_for_unknown_kid(self, kid: str | None) -> bool:
        self.refetches.append(kid)
        if self.next_keys is None:
            return False
        self._keys, self.next_keys = self.next_keys, None
        self.on_change(self._keys)
        return kid is None or kid in self._keys

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _with_fake(kit: Kit, keys: KeySet | None) -> tuple[JwtAuthenticator, FakeProvider]:
    made: list[FakeProvider] = []

    def factory(issuer: Issuer, on_change: Callable[[KeySet], None]) -> KeyProvider:
        made.append(FakeProvider(keys, on_change))
        return made[0]

    iss = Issuer(name="idp", issuer=ISS, audiences=[AUD], jwks_url="https://idp.example.com/jwks")
    return JwtAuthenticator.build([iss], TD, provider_factory=factory), made[0]


def _keyset(*jwks: dict[str, Any]) -> KeySet:
    return parse_jwks(json.dumps({"keys": list(jwks)}), ["ES256"])


def test_an_unknown_kid_triggers_one_refetch_then_verifies(kit: Kit) -> None:
    authn, provider = _with_fake(kit, _keyset(kit.es256.jwk(kid="old")))
    provider.next_keys = _keyset(kit.es256.jwk(kid="old"), kit.es256.jwk(kid="new"))
    assert run(authn, ctx(bearer(mint(kit.es256, kid="new")))) is CONTINUE
    assert provider.refetches == ["new"]


def test_an_unknown_kid_still_unknown_after_refetch_is_denied(kit: Kit) -> None:
    authn, provider = _with_fake(kit, _keyset(kit.es256.jwk(kid="old")))
    verdict = run(authn, ctx(bearer(mint(kit.es256, kid="random"))))
    assert isinstance(verdict, Deny)
    assert verdict.reason is Reason.TOKEN_UNKNOWN_KEY
    assert provider.refetches == ["random"]


def test_no_keys_yet_is_a_503_not_an_exception(kit: Kit) -> None:
    authn, provider = _with_fake(kit, None)
    verdict = run(authn, ctx(bearer(mint(kit.es256))))
    assert isinstance(verdict, Deny)
    assert (verdict.reason, verdict.status) == (Reason.KEYS_UNAVAILABLE, 503)
    provider.next_keys = _keyset(kit.es256.jwk())
    assert run(authn, ctx(bearer(mint(kit.es256)))) is CONTINUE


def test_other_failures_do_not_trigger_a_refetch(kit: Kit) -> None:
    authn, provider = _with_fake(kit, _keyset(kit.es256.jwk()))
    run(authn, ctx(bearer(mint(kit.attacker))))
    run(authn, ctx(bearer(mint(kit.es256, claims(exp=0)))))
    assert provider.refetches == []


def test_a_key_set_change_evicts_that_issuers_cached_tokens(kit: Kit) -> None:
    authn, provider = _with_fake(kit, _keyset(kit.es256.jwk()))
    token = bearer(mint(kit.es256))
    assert run(authn, ctx(token)) is CONTINUE
    assert len(authn.cache) == 1
    provider.on_change(_keyset(kit.attacker.jwk(kid="rotated")))
    assert len(authn.cache) == 0


# -- build -------------------------------------------------------------------------------------------
def test_two_issuers_with_the_same_iss_are_a_config_error(kit: Kit) -> None:
    with pytest.raises(ConfigError, match="same iss"):
        JwtAuthenticator.build([kit.issuer(kit.es256), kit.issuer(kit.es256, name="again")], TD)


def test_an_unusable_static_key_is_a_config_error(kit: Kit) -> None:
    bad = kit.issuer(kit.es256, keys=[StaticKey(pem="garbage")])
    with pytest.raises(ConfigError, match=r"issuers\.idp\.keys"):
        JwtAuthenticator.build([bad], TD)


def test_static_issuers_get_a_static_provider(authn: JwtAuthenticator) -> None:
    assert all(isinstance(p, StaticKeyProvider) for p in authn.providers.values())
    asyncio.run(authn.start())
    assert authn.providers["idp"].key_count == 2
    asyncio.run(authn.close())
    assert "idp" in repr(authn)
