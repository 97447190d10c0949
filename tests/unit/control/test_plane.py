"""``ControlPlane`` without HTTP: opening, admin credentials, the trust document, maintenance."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
from cryptography import x509

from garrison.config.models import GarrisonConfig
from garrison.control.plane import ControlPlane, read_secret_file, write_secret_file
from garrison.errors import GarrisonError
from garrison.identity.ca import generate_kek_file

TD = "plane.test"
ADMIN_TOKEN = "gat_" + "x" * 40


def config(**cp: object) -> GarrisonConfig:
    return GarrisonConfig.model_validate(
        {
            "trust_domain": TD,
            "store": {},
            "control_plane": {"address": "127.0.0.1:18443", **cp},
            "services": {"orders": {}, "billing": {}},
        }
    )


@pytest.fixture
def plane(tmp_path: Path) -> ControlPlane:
    generate_kek_file(tmp_path / "kek.key")
    write_secret_file(tmp_path / "admin.token", ADMIN_TOKEN)
    p = ControlPlane.open(config(), tmp_path, initialize=True)
    yield p
    p.close()


def test_open_refuses_a_store_without_a_ca_and_says_what_to_do(tmp_path: Path) -> None:
    generate_kek_file(tmp_path / "kek.key")
    with pytest.raises(GarrisonError, match="garrison init"):
        ControlPlane.open(config(), tmp_path)


def test_open_without_the_kek_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GarrisonError, match="KEK file"):
        ControlPlane.open(config(), tmp_path, initialize=True)


def test_open_with_another_kek_is_refused(plane: ControlPlane, tmp_path: Path) -> None:
    plane.close()
    os.unlink(tmp_path / "kek.key")
    generate_kek_file(tmp_path / "kek.key")
    with pytest.raises(GarrisonError, match="KEK"):
        ControlPlane.open(config(), tmp_path)


def test_audiences_default_to_every_service(plane: ControlPlane) -> None:
    assert sorted(plane.audiences()) == [f"spiffe://{TD}/svc/billing", f"spiffe://{TD}/svc/orders"]
    assert plane.server_settings.issuer == "https://127.0.0.1:18443"


def test_admin_token_is_compared_by_hash(plane: ControlPlane) -> None:
    assert plane.is_admin_token(ADMIN_TOKEN)
    assert not plane.is_admin_token(ADMIN_TOKEN[:-1])
    assert not plane.is_admin_token("")
    assert ADMIN_TOKEN not in repr(plane.__dict__)


def test_admin_certificate_must_be_ours_unrevoked_and_in_the_admin_list(plane: ControlPlane) -> None:
    admin = plane.issue_credentials(f"spiffe://{TD}/garrison/admin")
    other = plane.issue_credentials(f"spiffe://{TD}/svc/orders")
    cert = x509.load_pem_x509_certificates(admin.chain_pem)[0]
    assert plane.is_admin_certificate(cert) == f"spiffe://{TD}/garrison/admin"
    assert plane.is_admin_certificate(x509.load_pem_x509_certificates(other.chain_pem)[0]) is None
    assert plane.is_admin_certificate(cert, now=admin.not_after + 1) is None  # expired
    plane.ca.revoke_serial(admin.serial)
    assert plane.is_admin_certificate(cert) is None


def test_server_credentials_carry_the_server_names(plane: ControlPlane) -> None:
    creds = plane.server_credentials()
    leaf = x509.load_pem_x509_certificates(creds.chain_pem)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}/garrison/control-plane"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert b"PRIVATE KEY" in creds.key_pem and b"PRIVATE KEY" not in repr(creds).encode()


def test_trust_document_lists_revocations(plane: ControlPlane) -> None:
    creds = plane.issue_credentials(f"spiffe://{TD}/svc/orders")
    doc = plane.trust_document()
    assert doc["version"] == 2 and doc["trust_domain"] == TD and doc["revoked_serials"] == []
    assert doc["revoked_ids"] == []
    assert doc["bundle"]["spiffe_sequence"] == doc["bundle_sequence"]
    plane.ca.revoke_serial(creds.serial)
    plane.oauth_state.revoke("jti-1", time.time() + 600, time.time())
    doc = plane.trust_document()
    assert doc["revoked_serials"] == [creds.serial] and doc["revoked_jtis"] == ["jti-1"]
    plane.issue_credentials(f"spiffe://{TD}/svc/billing")
    at = time.time() + 0.5
    plane.ca.revoke_spiffe_id(f"spiffe://{TD}/svc/billing", now=at)
    doc = plane.trust_document()
    assert doc["revoked_serials"] == [creds.serial]  # the ID's SVIDs are covered by its one entry
    assert doc["revoked_ids"] == [{"spiffe_id": f"spiffe://{TD}/svc/billing", "before": math.ceil(at)}]


def test_maintain_rotates_the_signing_key_when_due(plane: ControlPlane) -> None:
    kid = plane.ring.current.kid
    assert not any("signing key" in line for line in plane.maintain())
    assert plane.ring.current.kid == kid
    later = time.time() + plane.settings.signing_key_rotation_seconds + 1
    done = plane.maintain(later)
    assert any("rotated token signing key" in line for line in done)
    assert plane.ring.current.kid != kid and kid in {k.kid for k in plane.ring.keys}  # kept as previous


def test_jtis_are_pruned_by_maintain_not_by_token_requests(plane: ControlPlane) -> None:
    """A token request never runs the prune (it may be on the event loop, D24); maintain does."""
    now = time.time()
    st = plane.oauth_state
    assert st.use_jti("spiffe://x/c", "expired", now - 1, now - 120)
    assert st.use_jti("spiffe://x/c", "live", now + 600, now + 3600)  # far later: a prune would be due
    assert st.use_jti("spiffe://x/c", "third", now + 600, now + 7200)

    def count() -> int:
        with plane.store.engine.begin() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM oauth_assertion_jtis").scalar_one())

    assert count() == 3
    plane.maintain(now)
    assert count() == 2


def test_secret_files_are_owner_only(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "secret"
    write_secret_file(p, "s3cret")
    assert (p.stat().st_mode & 0o777) == 0o600 and read_secret_file(p) == "s3cret"
    p.chmod(0o644)
    with pytest.raises(GarrisonError, match="0600"):
        read_secret_file(p)
