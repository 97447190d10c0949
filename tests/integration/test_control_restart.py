"""A control plane closed and reopened (SQLite and PostgreSQL) has every piece of its state: CA,
bundle sequence, signing kids, clients, revoked jtis and used assertion jtis. Without its KEK it
refuses to start, with an error that names the KEK."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from garrison.cli.main import main
from garrison.config.loader import parse_config
from garrison.config.models import GarrisonConfig
from garrison.control.plane import ControlPlane
from garrison.identity.ca import Kek, SealError, SpiffeId, generate_kek_file
from garrison.identity.oauth import ASSERTION_TYPE, AuthMethod, ClientAuthContext, ClientRegistration
from garrison.identity.oauth.access_tokens import TokenResponse
from garrison.identity.oauth.errors import ErrorResponse

TD = "restart.test"
CLIENT = f"spiffe://{TD}/svc/billing"
AUDIENCE = f"spiffe://{TD}/svc/orders"
PG_URL = os.environ.get("GARRISON_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NO_PEER = ClientAuthContext()


def _admin_connect() -> psycopg.Connection[Any]:

    return psycopg.connect(
        PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, connect_timeout=3
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """``garrison.db`` (next to the config), or a throwaway PostgreSQL schema dropped afterwards
    (a schema, not a database: CREATE/DROP DATABASE cost seconds on a busy server)."""
    if request.param == "sqlite":
        yield "garrison.db"
        return
    try:
        admin = _admin_connect()
    except Exception as e:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {e}")
    name = f"garrison_restart_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{name}"
    finally:
        with _admin_connect() as admin:
            admin.execute(f'DROP SCHEMA "{name}" CASCADE')


def config(store_url: str, kek_file: str = "kek.key") -> GarrisonConfig:
    return parse_config(
        f"""
trust_domain: {TD}
services: {{orders: {{}}}}
store: {{url: "{store_url}", kek: {{file: {kek_file}}}}}
control_plane: {{admin_token_file: null, audit_log: null}}
"""
    )


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def token_form(
    plane: ControlPlane, key: ec.EllipticCurvePrivateKey, now: float, **extra: str
) -> dict[str, str]:
    claims = {"iss": CLIENT, "sub": CLIENT, "aud": plane.settings.base_url, "exp": int(now) + 60}
    assertion = jwt.encode({**claims, "jti": uuid.uuid4().hex}, key, algorithm="ES256")
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion, **extra}


def facts(plane: ControlPlane, now: float) -> dict[str, Any]:
    reg = plane.clients.get(CLIENT)
    return {
        "anchors": plane.trust_anchors_pem(),
        "bundle": plane.store.latest_bundle(),
        "kids": [(k.kid, k.state.value) for k in plane.ring.keys],
        "jwks": plane.tokens.jwks(),
        "client": None if reg is None else (reg.scopes, reg.audiences, reg.jwks),
        "revoked_jtis": plane.tokens.revoked_jtis(now),
        "svids": [(s.serial, s.spiffe_id, s.revoked_at) for s in plane.store.list_svids()],
    }


def test_all_state_survives_close_and_reopen(tmp_path: Path, store_url: str) -> None:
    generate_kek_file(tmp_path / "kek.key")
    clock = Clock()
    plane = ControlPlane.open(config(store_url), tmp_path, clock=clock, initialize=True)
    ckey = ec.generate_private_key(ec.SECP256R1())
    try:
        workload = plane.issue_credentials(f"spiffe://{TD}/svc/orders")
        plane.issue_credentials(f"spiffe://{TD}/svc/billing")
        plane.ca.revoke_serial(workload.serial, reason="test", now=clock.now)
        jwk = dict(ECAlgorithm.to_jwk(ckey.public_key(), as_dict=True))
        plane.clients.register(
            ClientRegistration(
                SpiffeId(CLIENT),
                AuthMethod.PRIVATE_KEY_JWT,
                frozenset({"read"}),
                frozenset({AUDIENCE}),
                (jwk,),
            )
        )
        old_token = plane.tokens.token_endpoint.handle(
            token_form(plane, ckey, clock.now, grant_type="client_credentials", audience=AUDIENCE),
            NO_PEER,
            clock.now,
        )
        assert isinstance(old_token, TokenResponse)
        clock.now += plane.server_settings.min_rotation_interval + 1
        plane.rotate_signing_key()
        used = token_form(plane, ckey, clock.now, grant_type="client_credentials", audience=AUDIENCE)
        minted = plane.tokens.token_endpoint.handle(used, NO_PEER, clock.now)
        assert isinstance(minted, TokenResponse)
        revoked = plane.tokens.revocation.handle(
            token_form(plane, ckey, clock.now, token=minted.access_token), NO_PEER, clock.now
        )
        assert not isinstance(revoked, ErrorResponse)
        before = facts(plane, clock.now)
    finally:
        plane.close()
    assert before["revoked_jtis"] == {
        jwt.decode(minted.access_token, options={"verify_signature": False})["jti"]
    }
    assert len(before["kids"]) == 3 and before["client"] is not None

    plane = ControlPlane.open(config(store_url), tmp_path, clock=clock)
    try:
        assert facts(plane, clock.now) == before  # same CA, bundle sequence, kids, clients, revocations
        replay = plane.tokens.token_endpoint.handle(used, NO_PEER, clock.now)  # the used assertion
        assert isinstance(replay, ErrorResponse) and replay.body()["error"] == "invalid_client"
        fresh = plane.tokens.token_endpoint.handle(
            token_form(plane, ckey, clock.now, grant_type="client_credentials", audience=AUDIENCE),
            NO_PEER,
            clock.now,
        )
        assert isinstance(fresh, TokenResponse)
        verifier_keys = {k["kid"]: k for k in plane.tokens.jwks()["keys"]}
        old_kid = jwt.get_unverified_header(old_token.access_token)["kid"]
        assert old_kid in verifier_keys  # a token signed before the restart and the rotation verifies
        assert plane.initialized and plane.issue_credentials(f"spiffe://{TD}/svc/orders").serial
    finally:
        plane.close()


def test_without_its_kek_the_control_plane_refuses_to_open(tmp_path: Path, store_url: str) -> None:
    generate_kek_file(tmp_path / "kek.key")
    ControlPlane.open(config(store_url), tmp_path, initialize=True).close()
    other = generate_kek_file(tmp_path / "other.key")
    with pytest.raises(
        SealError, match=rf"key-encryption key does not open this store.*{other.key_id.hex()}"
    ):
        ControlPlane.open(config(store_url, "other.key"), tmp_path)
    with pytest.raises(SealError, match=r"cannot open KEK file .*missing\.key: No such file"):
        ControlPlane.open(config(store_url, "missing.key"), tmp_path)
    assert repr(Kek.from_file(tmp_path / "other.key")) == f"Kek(id={other.key_id.hex()})"


def test_the_cli_reports_a_wrong_or_missing_kek_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_kek_file(tmp_path / "kek.key")
    generate_kek_file(tmp_path / "other.key")
    ControlPlane.open(config("garrison.db"), tmp_path, initialize=True).close()
    secret = (tmp_path / "kek.key").read_text().strip()

    def point_at(kek_file: str) -> str:
        (tmp_path / "garrison.yaml").write_text(
            f"trust_domain: {TD}\nstore: {{url: garrison.db, kek: {{file: {kek_file}}}}}\n"
            "control_plane: {address: '127.0.0.1:1', admin_token_file: null, audit_log: null}\n"
        )
        return str(tmp_path / "garrison.yaml")

    done = subprocess.run(  # a real process: what an operator sees
        [sys.executable, "-m", "garrison.cli.main", "control-plane", "-c", point_at("other.key")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr and secret not in done.stderr + done.stdout
    assert "the key-encryption key does not open this store" in done.stderr

    assert main(["control-plane", "-c", point_at("missing.key")]) != 0  # in-process: nothing escapes
    err = capsys.readouterr().err
    assert "cannot open KEK file" in err and "missing.key" in err and "Traceback" not in err
