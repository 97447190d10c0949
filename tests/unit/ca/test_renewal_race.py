"""Renewal vs revocation (review M1) and one renewal per SVID (review H2), on SQLite and PostgreSQL.

The presented SVID is checked in the transaction that records the new one, so a revocation cannot
land between the check and the issuance; a revocation running *during* that transaction waits for
it and then covers the SVID it recorded. Each SVID renews once: a stolen SVID yields one chain.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ca_kit import NOW, WEB, make_csr, new_ca

from garrison.identity.ca import IssuedSvid, JoinTokenError, Kek, SvidError, WorkloadCA
from garrison.identity.ca.revocation import issued_before
from garrison.store import IssueState, Store, SvidRecord

sys.path.insert(0, str(Path(__file__).parent))

PG_URL = os.environ.get("GARRISON_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(
        PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, connect_timeout=3
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store.open(tmp_path / "garrison.db")
        yield s
        s.close()
        return
    try:
        admin = _pg_admin()
    except Exception as e:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {e}")
    name = f"garrison_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE SCHEMA "{name}"')
    s = Store.open(f"{PG_URL}?options=-csearch_path%3D{name}")
    try:
        yield s
    finally:
        s.close()
        admin.execute(f'DROP SCHEMA "{name}" CASCADE')
        admin.close()


@pytest.fixture
def ca(store: Store) -> WorkloadCA:
    ca = new_ca(store, Kek.generate())
    ca.initialize(now=NOW)
    return ca


@pytest.fixture
def first(ca: WorkloadCA) -> IssuedSvid:
    return ca.issue(make_csr([WEB]), now=NOW + 1)


def test_a_revocation_landing_between_check_and_issue_refuses_the_renewal(
    ca: WorkloadCA, first: IssuedSvid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's probe: the admin revokes the ID after ``renew``'s own checks, just before the
    issuance transaction. Before the fix the new SVID was recorded unrevoked."""
    real_issue = ca.store.issue

    def racing_issue(sign: Callable[[IssueState], SvidRecord], **kw: Any) -> Any:
        assert ca.revoke_spiffe_id(WEB, reason="compromised", now=NOW + 100) == [first.serial]
        return real_issue(sign, **kw)

    monkeypatch.setattr(ca.store, "issue", racing_issue)
    with pytest.raises(SvidError, match="revoked"):
        ca.renew(make_csr([WEB]), [first.certificate], now=NOW + 100)
    assert [r.serial for r in ca.store.list_svids(spiffe_id=WEB)] == [first.serial]


def test_a_revocation_during_the_renewal_transaction_covers_the_new_svid(
    ca: WorkloadCA, first: IssuedSvid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The revocation starts while the renewal's transaction is open (presented row locked): it
    waits, then revokes what the renewal recorded. On PostgreSQL this needs the revocation to lock
    the ID's rows before its UPDATE (a READ COMMITTED UPDATE alone would not see the new row)."""
    real_signer = ca._signer
    revoker: list[threading.Thread] = []
    blocked: list[bool] = []

    def signer(*a: Any, **kw: Any) -> Callable[[IssueState], SvidRecord]:
        sign = real_signer(*a, **kw)

        def slow_sign(st: IssueState) -> SvidRecord:
            t = threading.Thread(target=ca.revoke_spiffe_id, args=(WEB,), kwargs={"now": NOW + 100})
            t.start()
            t.join(0.5)
            blocked.append(t.is_alive())  # the revocation waits for this transaction
            revoker.append(t)
            return sign(st)

        return slow_sign

    monkeypatch.setattr(ca, "_signer", signer)
    new = ca.renew(make_csr([WEB]), [first.certificate], now=NOW + 100)
    revoker[0].join(10)
    assert blocked == [True] and not revoker[0].is_alive()
    rec = ca.store.get_svid(new.serial)
    assert rec is not None and rec.revoked_at == NOW + 100
    assert ca.is_revoked(new.certificate) and ca.is_revoked(first.certificate)
    assert ca.revocation_list(NOW + 101).is_revoked(new.certificate)  # what gateways get


def test_each_svid_renews_once(ca: WorkloadCA, first: IssuedSvid) -> None:
    second = ca.renew(make_csr([WEB]), [first.certificate], now=NOW + 10)
    with pytest.raises(SvidError, match="already renewed: each SVID renews once"):
        ca.renew(make_csr([WEB]), [first.certificate], now=NOW + 11)
    third = ca.renew(make_csr([WEB]), [second.certificate], now=NOW + 12)  # the chain goes on
    assert ca.store.get_svid(first.serial).renewed_by == second.serial  # type: ignore[union-attr]
    assert ca.store.get_svid(second.serial).renewed_by == third.serial  # type: ignore[union-attr]
    assert len(ca.store.list_svids(spiffe_id=WEB)) == 3


def test_concurrent_renewals_with_one_svid_yield_one_svid(ca: WorkloadCA, first: IssuedSvid) -> None:
    n = 6
    barrier = threading.Barrier(n)
    won: list[str] = []
    refused: list[str] = []

    def renew() -> None:
        barrier.wait()
        try:
            won.append(ca.renew(make_csr([WEB]), [first.certificate], now=NOW + 10).serial)
        except SvidError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=renew) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(refused) == n - 1
    assert all("already renewed" in e for e in refused)
    assert len(ca.store.list_svids(spiffe_id=WEB)) == 2


def test_renewal_after_its_id_was_revoked_is_refused(ca: WorkloadCA, first: IssuedSvid) -> None:
    ca.revoke_spiffe_id(WEB, now=NOW + 50)
    with pytest.raises(SvidError, match="revoked"):
        ca.renew(make_csr([WEB]), [first.certificate], now=NOW + 60)


def test_svids_of_a_revoked_id_issued_before_are_revoked_after_are_not(ca: WorkloadCA) -> None:
    """The 1 s edge: ``before`` is the revocation rounded up; an SVID issued within that second
    after the revocation gets its notBefore lifted so that it passes; one issued before fails."""
    at = NOW + 100.4
    early = ca.issue(make_csr([WEB]), now=NOW + 100.2)
    ca.revoke_spiffe_id(WEB, now=at)
    token = ca.create_join_token(WEB, now=NOW + 100.5)
    late = ca.redeem_join_token(token, make_csr([WEB]), now=NOW + 100.6)  # re-bootstrap
    later = ca.issue(make_csr([WEB]), now=NOW + 130)
    rl = ca.revocation_list(NOW + 131)
    assert rl.ids == {WEB: math.ceil(at)} and rl.serials == frozenset()
    assert rl.is_revoked(early.certificate) and ca.is_revoked(early.certificate)
    assert not rl.is_revoked(late.certificate) and not ca.is_revoked(late.certificate)
    assert not rl.is_revoked(later.certificate) and not ca.is_revoked(later.certificate)
    assert late.certificate.not_valid_before_utc.timestamp() == math.ceil(at) - 10
    renewed = ca.renew(make_csr([WEB]), [late.certificate], now=NOW + 140)  # the new chain renews
    assert not rl.is_revoked(renewed.certificate)


def test_the_rule_is_fail_closed_within_the_truncated_second() -> None:
    # notBefore = floor(issued - 10): issued in [notBefore + 10, notBefore + 11).
    assert issued_before(NOW - 10, NOW + 1)  # issued in [NOW, NOW + 1): before NOW + 1
    assert not issued_before(NOW - 10, NOW)  # issued at NOW or later: not before NOW


def test_a_join_token_from_before_the_revocation_is_burned(ca: WorkloadCA) -> None:
    leaked = ca.create_join_token(WEB, now=NOW)
    ca.issue(make_csr([WEB]), now=NOW + 1)
    ca.revoke_spiffe_id(WEB, now=NOW + 10)
    with pytest.raises(JoinTokenError, match="already used"):
        ca.redeem_join_token(leaked, make_csr([WEB]), now=NOW + 20)
    fresh = ca.create_join_token(WEB, now=NOW + 30)  # a new bootstrap after the revocation works
    assert not ca.is_revoked(ca.redeem_join_token(fresh, make_csr([WEB]), now=NOW + 31).certificate)
