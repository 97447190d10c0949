"""The workload CA: join tokens, renewal, revocation, trust bundle and CA rotation, by behaviour."""

from __future__ import annotations

import json

import pytest
from ca_kit import DB, NOW, TD, WEB, make_csr, new_ca
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from garrison.errors import IdentityError
from garrison.identity.ca import (
    CaError,
    CaSettings,
    IssuedSvid,
    JoinTokenError,
    Kek,
    RevocationList,
    SvidError,
    WorkloadCA,
    parse_bundle,
)
from garrison.identity.ca import certs as c
from garrison.identity.ca.join_tokens import hash_join_token, looks_like_join_token
from garrison.store import CaKeyPurpose, CaKeyState, Store


# -- join tokens --------------------------------------------------------------------------------------
def test_join_token_gives_a_first_svid_and_is_stored_hashed(ca: WorkloadCA, store: Store) -> None:
    token = ca.create_join_token(WEB, now=NOW)
    assert looks_like_join_token(token)
    rec = store.get_join_token(hash_join_token(token))
    assert rec is not None and rec.spiffe_id == WEB and rec.expires_at == NOW + 600
    with store._engine.connect() as conn:  # the token itself is nowhere in the database
        dump = "\n".join(str(r) for r in conn.exec_driver_sql("SELECT * FROM join_tokens"))
    assert token not in dump
    svid = ca.redeem_join_token(token, make_csr([WEB]), now=NOW + 5)
    assert str(svid.spiffe_id) == WEB


def test_join_token_replay_is_refused(ca: WorkloadCA) -> None:
    token = ca.create_join_token(WEB, now=NOW)
    ca.redeem_join_token(token, make_csr([WEB]), now=NOW)
    with pytest.raises(JoinTokenError, match="already used"):
        ca.redeem_join_token(token, make_csr([WEB]), now=NOW + 1)


def test_expired_join_token_is_refused(ca: WorkloadCA) -> None:
    token = ca.create_join_token(WEB, ttl=60, now=NOW)
    with pytest.raises(JoinTokenError, match="expired"):
        ca.redeem_join_token(token, make_csr([WEB]), now=NOW + 60)


def test_csr_for_another_spiffe_id_than_the_token_is_refused(ca: WorkloadCA) -> None:
    token = ca.create_join_token(WEB, now=NOW)
    with pytest.raises(JoinTokenError, match=f"not for {DB}"):
        ca.redeem_join_token(token, make_csr([DB]), now=NOW)
    assert ca.store.list_svids(spiffe_id=DB) == []
    ca.redeem_join_token(token, make_csr([WEB]), now=NOW)  # the token was not burnt by the attempt


@pytest.mark.parametrize(
    "token", ["gjt_" + "A" * 43, "", "gjt_short", "x" * 47], ids=["unknown", "empty", "short", "no-prefix"]
)
def test_unknown_or_malformed_join_token_is_refused(ca: WorkloadCA, token: str) -> None:
    with pytest.raises(JoinTokenError, match="not known"):
        ca.redeem_join_token(token, make_csr([WEB]), now=NOW)
    assert ca.store.list_svids() == []


@pytest.mark.parametrize(
    "sid",
    [f"spiffe://{TD}", "spiffe://other.org/svc/web", f"spiffe://{TD}/a/../b"],
    ids=["trust-domain-root", "other-trust-domain", "dotdot"],
)
def test_join_tokens_only_for_workload_ids_of_our_trust_domain(ca: WorkloadCA, sid: str) -> None:
    with pytest.raises(IdentityError):
        ca.create_join_token(sid, now=NOW)


@pytest.mark.parametrize("ttl", [0, -1, 86_401])
def test_join_token_ttl_is_bounded(ca: WorkloadCA, ttl: float) -> None:
    with pytest.raises(ValueError, match="TTL"):
        ca.create_join_token(WEB, ttl=ttl, now=NOW)


# -- renewal ---------------------------------------------------------------------------------------------
@pytest.fixture
def first(ca: WorkloadCA) -> IssuedSvid:
    return ca.redeem_join_token(ca.create_join_token(WEB, now=NOW), make_csr([WEB]), now=NOW)


def test_renewal_with_the_current_svid(ca: WorkloadCA, first: IssuedSvid) -> None:
    renewed = ca.renew(make_csr([WEB]), first.chain_pem, now=NOW + 1800)
    assert renewed.spiffe_id == first.spiffe_id and renewed.serial != first.serial
    assert renewed.not_after == NOW + 1800 + 3600


def test_renewal_with_an_expired_svid_is_refused(ca: WorkloadCA, first: IssuedSvid) -> None:
    with pytest.raises(SvidError, match="expired"):
        ca.renew(make_csr([WEB]), [first.certificate], now=first.not_after)


def test_renewal_with_a_revoked_svid_is_refused(ca: WorkloadCA, first: IssuedSvid) -> None:
    assert ca.revoke_spiffe_id(WEB, reason="compromised", now=NOW + 1) == [first.serial]
    with pytest.raises(SvidError, match="revoked"):
        ca.renew(make_csr([WEB]), [first.certificate], now=NOW + 2)


def test_renewal_for_another_spiffe_id_is_refused(ca: WorkloadCA, first: IssuedSvid) -> None:
    with pytest.raises(SvidError, match="CSR is for"):
        ca.renew(make_csr([DB]), [first.certificate], now=NOW + 10)


def test_renewal_with_an_svid_from_another_ca_is_refused(ca: WorkloadCA, tmp_path: object) -> None:
    other_store = Store.open(f"{tmp_path}/other.db")
    other = new_ca(other_store)
    other.initialize(now=NOW)
    foreign = other.issue(make_csr([WEB]), now=NOW)
    other_store.close()
    with pytest.raises(SvidError, match="not issued by this CA"):
        ca.renew(make_csr([WEB]), [foreign.certificate], now=NOW + 10)


def test_renewal_with_a_ca_certificate_is_refused(ca: WorkloadCA, first: IssuedSvid) -> None:
    with pytest.raises(SvidError, match="not an SVID"):
        ca.renew(make_csr([WEB]), [first.intermediates[0]], now=NOW + 10)


def test_renewal_with_no_certificate_is_refused(ca: WorkloadCA) -> None:
    with pytest.raises(SvidError, match="no client certificate"):
        ca.renew(make_csr([WEB]), [], now=NOW)


def test_renewal_with_an_unrecorded_svid_is_refused(ca: WorkloadCA, store: Store) -> None:
    """A certificate signed with our key but absent from the store (e.g. a restored backup) is refused."""
    svid = ca.issue(make_csr([WEB]), now=NOW)
    with store._engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM svids")
    with pytest.raises(SvidError, match="not a known SVID"):
        ca.renew(make_csr([WEB]), [svid.certificate], now=NOW + 10)


# -- revocation -------------------------------------------------------------------------------------
def test_revoked_serials_are_exported_for_gateways(ca: WorkloadCA) -> None:
    a = ca.issue(make_csr([WEB]), now=NOW)
    b = ca.issue(make_csr([DB]), now=NOW)
    assert ca.revoke_serial(a.serial.upper(), reason="test", now=NOW)
    rl = ca.revocation_list(NOW + 1)
    assert rl.is_revoked(a.certificate) and not rl.is_revoked(b.certificate)
    again = RevocationList.from_document(rl.to_document())
    assert again.serials == rl.serials == {a.serial}
    assert ca.revocation_list(a.not_after + 1).serials == frozenset()  # expired: off the list


# -- bundle -------------------------------------------------------------------------------------------
def test_bundle_follows_the_spiffe_format(ca: WorkloadCA) -> None:
    doc = json.loads(ca.bundle_document())
    assert doc["spiffe_sequence"] >= 1 and doc["spiffe_refresh_hint"] == 5
    for jwk in doc["keys"]:
        assert jwk["use"] == "x509-svid" and "kid" not in jwk and len(jwk["x5c"]) == 1
        assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"


def test_refresh_without_change_keeps_the_sequence(ca: WorkloadCA) -> None:
    before = ca.store.latest_bundle()
    assert ca.refresh_bundle(NOW + 1) == before


def test_every_bundle_change_increments_the_sequence(ca: WorkloadCA) -> None:
    """B2: the sequence changes whenever the contents do (a new CA, an expired CA dropped), and
    only then: activation moves no CA in or out of the bundle."""
    first = parse_bundle(ca.bundle_document())
    ca.prepare_next(NOW + 100, new_root=True)
    added = parse_bundle(ca.bundle_document())
    assert added.sequence == first.sequence + 1  # type: ignore[operator]
    assert len(added.authorities) == len(first.authorities) + 1
    ca.activate_next(NOW + 200)
    assert parse_bundle(ca.bundle_document()).sequence == added.sequence
    retired = ca.store.list_ca_keys([CaKeyState.RETIRED])
    old_end = max(r.not_after or 0 for r in retired if r.purpose is CaKeyPurpose.INTERMEDIATE)
    ca.refresh_bundle(old_end + 1)  # the retired intermediate (and its root) expired: dropped
    dropped = parse_bundle(ca.bundle_document())
    assert dropped.sequence == added.sequence + 1  # type: ignore[operator]
    assert len(dropped.authorities) == len(first.authorities)


# -- rotation: spire#2704 ------------------------------------------------------------------------------
def _anchored(svid: IssuedSvid, bundle_doc: str) -> bool:
    inter = svid.intermediates[0]
    if not c.issued_by(svid.certificate, inter):
        return False
    return any(c.issued_by(inter, root) for root in parse_bundle(bundle_doc).authorities)


@pytest.mark.parametrize("new_root", [False, True], ids=["same-root", "new-root"])
def test_next_ca_is_published_before_it_signs(ca: WorkloadCA, new_root: bool) -> None:
    nxt = ca.prepare_next(NOW + 100, new_root=new_root)
    published = ca.store.latest_bundle()
    assert published is not None and nxt in published.ca_key_ids
    svid = ca.issue(make_csr(), now=NOW + 101)  # still signed by the current CA
    assert c.key_id(svid.intermediates[0].public_key()) != nxt  # type: ignore[arg-type]
    with pytest.raises(CaError, match="cannot sign yet"):
        ca.activate_next(NOW + 101)  # validators have not refreshed yet
    ca.activate_next(NOW + 105)
    svid = ca.issue(make_csr(), now=NOW + 106)
    assert c.key_id(svid.intermediates[0].public_key()) == nxt  # type: ignore[arg-type]
    assert _anchored(svid, published.document)  # the bundle published *before* activation suffices


def test_no_svid_is_ever_signed_by_a_ca_absent_from_the_last_published_bundle(ca: WorkloadCA) -> None:
    """Property over a sequence of rotations: each SVID chains to the bundle published before it
    was signed, and old SVIDs stay valid under every later bundle while they live."""
    t = NOW
    issued: list[IssuedSvid] = []
    for i in range(6):
        for _ in range(3):
            t += 1
            before = ca.bundle_document()
            svid = ca.issue(make_csr(), now=t)
            assert _anchored(svid, before), f"round {i}: signed by a CA not in the published bundle"
            issued.append(svid)
        ca.prepare_next(t, new_root=(i % 2 == 1))
        t += 10
        ca.activate_next(t)
        for old in issued:
            if old.not_after > t:
                assert _anchored(old, ca.bundle_document())


def test_signing_refuses_a_current_ca_missing_from_the_bundle(ca: WorkloadCA, store: Store) -> None:
    """Forge the spire#2704 state (a current CA not in the last bundle): the CA must refuse to sign."""
    store.publish_bundle(lambda seq: "{}", [], NOW)
    with pytest.raises(CaError, match="not in the last published trust bundle"):
        ca.issue(make_csr(), now=NOW + 1)


def test_activation_requires_publication(ca: WorkloadCA, store: Store) -> None:
    nxt = ca.prepare_next(NOW + 1)
    store.publish_bundle(lambda seq: "{}", [], NOW + 2)  # a later bundle dropped it
    with pytest.raises(CaError, match="not in the published trust bundle"):
        ca.activate_next(NOW + 100)
    assert store.get_ca_key(nxt).state is CaKeyState.NEXT  # type: ignore[union-attr]


def test_only_one_next_ca_at_a_time(ca: WorkloadCA) -> None:
    ca.prepare_next(NOW + 1)
    with pytest.raises(CaError, match="already prepared"):
        ca.prepare_next(NOW + 2)


def test_initialize_twice_is_refused(ca: WorkloadCA) -> None:
    with pytest.raises(CaError, match="already initialized"):
        ca.initialize(now=NOW)


def test_issue_before_initialize_is_refused(store: Store, kek: Kek) -> None:
    with pytest.raises(CaError, match="no current intermediate"):
        WorkloadCA(store, kek, CaSettings(TD)).issue(make_csr(), now=NOW)


# -- offline root ------------------------------------------------------------------------------------
def _external_root() -> tuple[x509.Certificate, object]:
    key = c.new_key()
    return c.make_root(key, "corp root", NOW - 100, 10 * 365 * 86400), key


def _sign_csr(csr_pem: str, root: x509.Certificate, root_key: object) -> str:
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    pk = csr.public_key()
    return c.cert_pem(
        c.make_intermediate(pk, TD, root, root_key, NOW, 30 * 86400)  # type: ignore[arg-type]
    )


def test_offline_root_intermediate_csr_and_install(store: Store, kek: Kek) -> None:
    ca = WorkloadCA(store, kek, CaSettings(TD))
    csr_pem = ca.make_intermediate_csr(now=NOW)
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    bc = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True and bc.path_length == 0
    root, root_key = _external_root()
    with pytest.raises(CaError, match="pass the external root"):
        ca.install_intermediate(_sign_csr(csr_pem, root, root_key), now=NOW)
    kid = ca.install_intermediate(_sign_csr(csr_pem, root, root_key), c.cert_pem(root), now=NOW)
    assert store.get_ca_key(kid).state is CaKeyState.CURRENT  # type: ignore[union-attr]
    svid = ca.issue(make_csr(), now=NOW + 1)
    assert _anchored(svid, ca.bundle_document())
    assert all(r.sealed_key is None for r in store.list_ca_keys() if r.purpose.value == "root")
    with pytest.raises(CaError, match="no online root"):
        ca.prepare_next(NOW + 2)


def test_install_refuses_a_certificate_for_another_key(store: Store, kek: Kek) -> None:
    ca = WorkloadCA(store, kek, CaSettings(TD))
    ca.make_intermediate_csr(now=NOW)
    root, root_key = _external_root()
    stranger = c.make_intermediate(c.new_key().public_key(), TD, root, root_key, NOW, 86400)  # type: ignore[arg-type]
    with pytest.raises(CaError, match="matches no pending"):
        ca.install_intermediate(c.cert_pem(stranger), c.cert_pem(root), now=NOW)


def test_install_refuses_a_leaf_certificate(store: Store, kek: Kek) -> None:
    ca = WorkloadCA(store, kek, CaSettings(TD))
    csr = x509.load_pem_x509_csr(ca.make_intermediate_csr(now=NOW).encode())
    root, root_key = _external_root()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(root.subject)
        .public_key(csr.public_key())
        .serial_number(5)
        .not_valid_before(c.ts(NOW - 10))
        .not_valid_after(c.ts(NOW + 86400))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(CaError, match="cA=true"):
        ca.install_intermediate(pem, c.cert_pem(root), now=NOW)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="svid_ttl"):
        CaSettings(TD, svid_ttl=7200, intermediate_ttl=3600)
    with pytest.raises(Exception, match="lower-case"):
        CaSettings("Example.org")


def test_maintain_rotates_at_half_and_two_thirds_and_svids_always_verify(ca: WorkloadCA) -> None:
    """Drive the CA loop across three intermediate lifetimes with one tick every 6 h: every SVID
    chains to the bundle published before that tick, and the next CA is always published first."""
    day = 86_400.0
    t = NOW
    actions: list[str] = []
    csr = make_csr()
    while t < NOW + 3 * 30 * day:
        t += 6 * 3600
        before = ca.bundle_document()
        actions += ca.maintain(t)
        svid = ca.issue(csr, now=t)
        assert _anchored(svid, before)
        assert svid.not_after - t >= 3600 - 1  # never cut short: rotation happens well before expiry
    prepared = [a for a in actions if a.startswith("prepared")]
    activated = [a for a in actions if a.startswith("activated")]
    assert len(prepared) >= 3 and len(activated) >= 3
    assert actions.index(prepared[0]) < actions.index(activated[0])


def test_maintain_with_an_offline_root_reports_instead_of_rotating(store: Store, kek: Kek) -> None:
    ca = WorkloadCA(store, kek, CaSettings(TD))
    csr_pem = ca.make_intermediate_csr(now=NOW)
    root, root_key = _external_root()
    ca.install_intermediate(_sign_csr(csr_pem, root, root_key), c.cert_pem(root), now=NOW)
    actions = ca.maintain(NOW + 20 * 86_400)
    assert any("no online root" in a for a in actions)


# -- server certificates (admin issuance only) ----------------------------------------------------------
def test_admin_issuance_adds_server_names_beside_the_one_uri_san(ca: WorkloadCA) -> None:
    import ipaddress

    svid = ca.issue(make_csr([WEB]), now=NOW, server_names=("127.0.0.1", "cp.example.org", "::1"))
    san = svid.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [WEB]  # still exactly one URI SAN
    assert san.get_values_for_type(x509.DNSName) == ["cp.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


@pytest.mark.parametrize("name", ["-bad.example", "a..b", "spiffe://x/y", "a" * 64 + ".example", ""])
def test_server_names_that_are_neither_ip_nor_dns_are_refused(ca: WorkloadCA, name: str) -> None:
    with pytest.raises(SvidError, match="neither an IP literal nor a DNS name"):
        ca.issue(make_csr([WEB]), now=NOW, server_names=(name,))


def test_a_workload_csr_cannot_ask_for_server_names(ca: WorkloadCA) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(WEB), x509.DNSName("bank.example")]),
            critical=True,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    token = ca.create_join_token(WEB, now=NOW)
    with pytest.raises(SvidError, match="only carry one URI SAN"):
        ca.redeem_join_token(token, csr, now=NOW)
