"""KEK rotation (control/kek_rotation.py, ``garrison kek rotate``): every sealed blob moves to the
new KEK in one transaction, or none does."""

from __future__ import annotations

import sys
from pathlib import Path

import jwt
import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "ca"))

from ca_kit import NOW, TD, WEB, make_csr

from garrison.cli.main import main
from garrison.config.loader import load_config
from garrison.control.kek_rotation import rotate_kek
from garrison.control.plane import ControlPlane
from garrison.identity.ca import CaSettings, Kek, SealError, WorkloadCA, generate_kek_file
from garrison.identity.oauth.signing_keys import SigningKeyRing
from garrison.identity.oauth.sql_state import SqlOAuthState
from garrison.store import Store, StoreError, schema

WRONG_KEK = "the key-encryption key does not open this store"
MAGIC = b"gs1\x00"


def blobs(store: Store) -> dict[str, bytes]:
    """Every sealed value in the database, as stored."""
    with store.engine.connect() as conn:
        out = {
            f"ca:{r.id}": bytes(r.sealed_key) for r in conn.execute(select(schema.ca_keys)) if r.sealed_key
        }
        out |= {f"sk:{r.kid}": bytes(r.sealed_key) for r in conn.execute(select(schema.oauth_signing_keys))}
        check = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == "kek_check")).scalar()
    out["kek_check"] = str(check).encode()
    return out


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "g.db")


@pytest.fixture
def old(store: Store) -> Kek:
    """A store with a CA (root + intermediate), an SVID and a signing key ring, all under ``old``."""
    kek = Kek.generate()
    ca = WorkloadCA(store, kek, CaSettings(TD))
    ca.initialize(now=NOW)
    ca.issue(make_csr([WEB]), now=NOW)
    SigningKeyRing.open(SqlOAuthState(store.engine), kek, NOW).rotate(NOW + 1)
    return kek


def test_after_rotation_the_store_opens_with_the_new_kek_only(store: Store, old: Kek) -> None:
    new = Kek.generate()
    state = SqlOAuthState(store.engine)
    kids = [k.kid for k in SigningKeyRing.open(state, old, NOW).keys]
    before = blobs(store)
    done = rotate_kek(store, old, new)
    assert (done.kek_check, done.ca_keys, done.signing_keys) == (True, 2, 3)
    assert new.key_id.hex() in done.summary() and old.key_id.hex() in done.summary()
    after = blobs(store)
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)
    assert all(v.startswith(MAGIC + new.key_id) for k, v in after.items() if k != "kek_check")

    ca = WorkloadCA(store, new, CaSettings(TD))  # no cached keys: unseals from the database
    assert ca.issue(make_csr([WEB]), now=NOW + 60).serial
    ring = SigningKeyRing.open(state, new, NOW)
    assert [k.kid for k in ring.keys] == kids
    token = ring.sign({"sub": WEB}, typ="at+jwt")
    assert jwt.decode(token, ring.current.private_key.public_key(), algorithms=["ES256"])["sub"] == WEB

    with pytest.raises(SealError, match=WRONG_KEK):
        WorkloadCA(store, old, CaSettings(TD))
    with pytest.raises(SealError, match=WRONG_KEK):
        SigningKeyRing.open(state, old, NOW)


def test_a_wrong_old_kek_is_refused_and_nothing_changes(store: Store, old: Kek) -> None:
    before = blobs(store)
    with pytest.raises(SealError, match=f"nothing was changed: old KEK: {WRONG_KEK}"):
        rotate_kek(store, Kek.generate(), Kek.generate())
    assert blobs(store) == before
    WorkloadCA(store, old, CaSettings(TD)).issue(make_csr([WEB]), now=NOW)


def test_a_crash_mid_way_leaves_the_store_readable_with_the_old_kek(store: Store, old: Kek) -> None:
    before = blobs(store)
    seen: list[str] = []

    def crash_after_three(blob: object) -> None:
        seen.append(repr(blob))
        if len(seen) == 3:  # the KEK check and both CA keys re-sealed, in the open transaction
            raise RuntimeError("simulated crash")

    new = Kek.generate()
    with pytest.raises(RuntimeError, match="simulated crash"):
        rotate_kek(store, old, new, progress=crash_after_three)
    assert blobs(store) == before
    assert WorkloadCA(store, old, CaSettings(TD)).issue(make_csr([WEB]), now=NOW).serial
    SigningKeyRing.open(SqlOAuthState(store.engine), old, NOW)
    with pytest.raises(SealError, match=WRONG_KEK):
        WorkloadCA(store, new, CaSettings(TD))
    assert len(seen) == 3 and "gs1" not in "".join(seen)  # progress sees names, never blobs


def test_a_tampered_blob_stops_the_rotation_after_earlier_rows_were_resealed(store: Store, old: Kek) -> None:
    last = max(k for k in blobs(store) if k.startswith("sk:"))[3:]
    with store.engine.begin() as conn:
        t = schema.oauth_signing_keys
        bad = bytes(conn.execute(select(t.c.sealed_key).where(t.c.kid == last)).scalar_one())
        conn.execute(t.update().where(t.c.kid == last).values(sealed_key=bad[:-1] + bytes([bad[-1] ^ 1])))
    before = blobs(store)
    with pytest.raises(SealError, match=r"nothing was changed: old KEK: .*failed authentication"):
        rotate_kek(store, old, Kek.generate())
    assert blobs(store) == before


def test_rotating_to_the_same_kek_is_refused(store: Store, old: Kek) -> None:
    with pytest.raises(SealError, match="the new KEK is the one in use"):
        rotate_kek(store, old, Kek(old._key))


CONFIG = """
trust_domain: {td}
store:
  url: garrison.db
  kek: {{file: {kek}}}
control_plane:
  admin_token_file: null
  audit_log: null
"""


def test_cli_rotates_and_the_control_plane_opens_with_the_new_kek_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "garrison.yaml"
    cfg.write_text(CONFIG.format(td=TD, kek="kek.key"))
    old = generate_kek_file(tmp_path / "kek.key")
    ControlPlane.open(load_config(cfg), tmp_path, initialize=True).close()
    old_file = (tmp_path / "kek.key").read_bytes()

    argv = ["kek", "rotate", "-c", str(cfg), "--new-kek-file", str(tmp_path / "kek.key")]
    assert main(argv) == 1
    assert "is the KEK file the config already uses" in capsys.readouterr().err
    assert main(["kek", "rotate", "-c", str(cfg), "--new-kek-file", str(tmp_path / "none.key")]) == 2
    assert "cannot open KEK file" in capsys.readouterr().err

    assert (
        main(["kek", "rotate", "-c", str(cfg), "--new-kek-file", str(tmp_path / "new.key"), "--generate"])
        == 0
    )
    out = capsys.readouterr().out
    new = Kek.from_file(tmp_path / "new.key")
    assert f"to KEK {new.key_id.hex()}" in out and "set store.kek.file" in out
    assert (tmp_path / "kek.key").read_bytes() == old_file  # the old KEK file is never written
    assert (tmp_path / "new.key").stat().st_mode & 0o777 == 0o600

    with pytest.raises(SealError, match=WRONG_KEK):
        ControlPlane.open(load_config(cfg), tmp_path)
    cfg.write_text(CONFIG.format(td=TD, kek="new.key"))
    plane = ControlPlane.open(load_config(cfg), tmp_path)
    try:
        assert plane.issue_credentials(WEB).serial
    finally:
        plane.close()
    assert old.key_id != new.key_id


def test_a_damaged_kek_check_is_a_store_error_and_nothing_changes(store: Store, old: Kek) -> None:
    with store.engine.begin() as conn:
        conn.execute(schema.meta.update().where(schema.meta.c.key == "kek_check").values(value="not base64!"))
    before = blobs(store)
    with pytest.raises(StoreError, match="kek_check is not base64: the meta table is damaged"):
        rotate_kek(store, old, Kek.generate())
    assert blobs(store) == before
