"""``WorkloadCA``: issues X.509-SVIDs (admin, join token, renewal) and revokes them.

Key lifecycle and the trust bundle are ``CaKeyring``'s (keyring.py); this class adds issuance. Every
issuance is one store transaction that reads the signing CA and the last published bundle, so it
never signs with a CA missing from that bundle (spire#2704). No crypto here: see ``svid``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from cryptography import x509

from garrison.identity.ca import certs, revocation
from garrison.identity.ca.certs import BACKDATE
from garrison.identity.ca.errors import CaError, JoinTokenError, SvidError
from garrison.identity.ca.join_tokens import check_ttl, hash_join_token, looks_like_join_token, new_join_token
from garrison.identity.ca.keyring import LIVE_STATES, CaKeyring, CaSettings
from garrison.identity.ca.revocation import RevocationList, id_revocation_before, issued_before
from garrison.identity.ca.spiffe_id import SpiffeId
from garrison.identity.ca.svid import CheckedCsr, IssuedSvid, build_svid, check_csr, leaf_spiffe_id
from garrison.store import CaKeyPurpose, IssueState, JoinTokenRecord, RedeemOutcome, SvidRecord


class WorkloadCA(CaKeyring):
    """The workload CA: ``CaKeyring`` plus issuance, renewal and revocation."""

    # -- issuance ---------------------------------------------------------------------------------
    def _signer(
        self,
        req: CheckedCsr,
        now: float,
        ttl: float | None,
        out: list[IssuedSvid],
        server_names: Sequence[str] = (),
    ) -> Callable[[IssueState], SvidRecord]:
        """The signing step run inside the store's issuance transaction (sees a consistent CA state)."""

        def sign(st: IssueState) -> SvidRecord:
            cur, bundle = st.ca, st.bundle
            if cur is None:
                raise CaError("no current intermediate CA: initialize or install one")
            # spire#2704: never sign with a CA that validators may not have in their bundle yet.
            if (
                bundle is None
                or cur.id not in bundle.ca_key_ids
                or (cur.parent_id or "") not in bundle.ca_key_ids
            ):
                raise CaError(f"refusing to sign: CA {cur.id} is not in the last published trust bundle")
            if st.presented is not None:
                _check_presented(st.presented, str(req.spiffe_id), st.id_revoked_at)
            at = now
            if st.id_revoked_at is not None:
                # An SVID issued after its ID's revocation must pass ``issued_before`` everywhere:
                # within the revocation's own second, issuance is lifted to the rounded-up ``before``.
                at = max(now, id_revocation_before(st.id_revoked_at))
            cert, key = self.unsealed(cur)
            ttl_ = self.settings.svid_ttl if ttl is None else ttl
            signed = build_svid(req, cert, key, at, ttl_, server_names)
            svid = replace(signed, bundle_document=bundle.document)
            out.append(svid)
            return SvidRecord(
                serial=svid.serial,
                spiffe_id=str(svid.spiffe_id),
                ca_key_id=cur.id,
                not_before=svid.certificate.not_valid_before_utc.timestamp(),
                not_after=svid.not_after,
                issued_at=now,
            )

        return sign

    def _issue(
        self,
        req: CheckedCsr,
        now: float,
        ttl: float | None,
        join_token: str | None = None,
        server_names: Sequence[str] = (),
        renewing: str | None = None,
    ) -> IssuedSvid:
        out: list[IssuedSvid] = []
        token_hash = hash_join_token(join_token) if join_token is not None else None
        outcome = self.store.issue(
            self._signer(req, now, ttl, out, server_names),
            spiffe_id=str(req.spiffe_id),
            join_token_hash=token_hash,
            renewing=renewing,
            now=now,
        )
        if outcome is RedeemOutcome.REDEEMED:
            return out[-1]
        if outcome in _PRESENTED_ERRORS:
            raise SvidError(_PRESENTED_ERRORS[outcome])
        raise JoinTokenError(
            {
                RedeemOutcome.UNKNOWN: "join token is not known",
                RedeemOutcome.EXPIRED: "join token has expired",
                RedeemOutcome.ALREADY_USED: "join token was already used",
                RedeemOutcome.WRONG_SPIFFE_ID: f"join token is not for {req.spiffe_id}",
            }[outcome]
        )

    def issue(
        self,
        csr: bytes | str,
        *,
        ttl: float | None = None,
        now: float | None = None,
        expect: str | None = None,
        server_names: Sequence[str] = (),
    ) -> IssuedSvid:
        """Admin issuance (already authorized by the caller). ``expect`` pins the SPIFFE ID;
        ``server_names`` adds DNS/IP SANs for a server certificate (see ``build_svid``)."""
        now = self._now(now)
        req = check_csr(csr, self.settings.trust_domain)
        if expect is not None and str(req.spiffe_id) != expect:
            raise SvidError(f"CSR is for {req.spiffe_id}, expected {expect}")
        return self._issue(req, now, ttl, server_names=server_names)

    def create_join_token(self, spiffe_id: str, *, ttl: float | None = None, now: float | None = None) -> str:
        """A one-time token for ``spiffe_id``'s first SVID. Returned once; only its hash is stored."""
        now = self._now(now)
        sid = SpiffeId(spiffe_id)
        if not sid.member_of(self.settings.trust_domain) or sid.is_root:
            raise SvidError(f"{sid} is not a workload ID in the trust domain {self.settings.trust_domain!r}")
        token = new_join_token()
        ttl = check_ttl(self.settings.join_token_ttl if ttl is None else ttl)
        self.store.add_join_token(JoinTokenRecord(hash_join_token(token), str(sid), now, now + ttl))
        return token

    def redeem_join_token(self, token: str, csr: bytes | str, now: float | None = None) -> IssuedSvid:
        """First SVID: the token must be known, unexpired, unused and bound to the CSR's SPIFFE ID.

        The SVID is signed first and recorded in the same transaction that burns the token, so a
        certificate leaves only if this caller won the token.
        """
        now = self._now(now)
        if not looks_like_join_token(token):
            raise JoinTokenError("join token is not known")  # no signing for malformed tokens
        return self._issue(check_csr(csr, self.settings.trust_domain), now, None, join_token=token)

    def renew(
        self, csr: bytes | str, presented_chain: Sequence[x509.Certificate] | bytes, now: float | None = None
    ) -> IssuedSvid:
        """Renewal authenticated by the current SVID (the mTLS peer chain, leaf first).

        The leaf must be an SVID this CA issued (signature by one of our intermediates, serial in
        the store), unexpired, unrevoked (by serial or by ID), not renewed before, and for the same
        SPIFFE ID as the CSR. One renewal per SVID: a stolen SVID yields one chain, not a tree.
        """
        now = self._now(now)
        chain = (
            certs.load_cert_chain(presented_chain)
            if isinstance(presented_chain, bytes)
            else list(presented_chain)
        )
        if not chain:
            raise SvidError("no client certificate presented")
        leaf = chain[0]
        leaf_id = leaf_spiffe_id(leaf, self.settings.trust_domain)
        ours = [
            r
            for r in self.store.list_ca_keys(LIVE_STATES)
            if r.purpose is CaKeyPurpose.INTERMEDIATE and r.cert_pem
        ]
        if not any(certs.issued_by(leaf, certs.load_cert_pem(r.cert_pem or "")) for r in ours):
            raise SvidError("presented certificate was not issued by this CA")
        serial = certs.serial_hex(leaf)
        if not (leaf.not_valid_before_utc.timestamp() <= now < leaf.not_valid_after_utc.timestamp()):
            raise SvidError("presented SVID has expired (or is not yet valid): bootstrap again")
        req = check_csr(csr, self.settings.trust_domain)
        if req.spiffe_id != leaf_id:
            raise SvidError(f"CSR is for {req.spiffe_id}, but the presented SVID is {leaf_id}")
        # Known, unrevoked, not renewed yet, its ID not revoked since: checked in the transaction
        # that records the new SVID (review M1), which also marks the presented one renewed.
        return self._issue(req, now, None, renewing=serial)

    # -- revocation -------------------------------------------------------------------------------
    def revoke_serial(self, serial: str, *, reason: str = "", now: float | None = None) -> bool:
        return self.store.revoke_serial(serial.lower(), self._now(now), reason)

    def revoke_spiffe_id(self, spiffe_id: str, *, reason: str = "", now: float | None = None) -> list[str]:
        """Revoke every SVID of ``spiffe_id`` issued until now (one trust-document entry) and burn
        its unused join tokens; returns the serials of the SVIDs that were live."""
        now = self._now(now)
        covered_below = id_revocation_before(now) - BACKDATE  # ``issued_before`` solved for notBefore
        return self.store.revoke_spiffe_id(str(SpiffeId(spiffe_id)), now, reason, covered_below=covered_below)

    def revocation_list(self, now: float | None = None) -> RevocationList:
        now = self._now(now)
        ids = {sid: id_revocation_before(at) for sid, at in self.store.revoked_ids(now)}
        return RevocationList(frozenset(self.store.revoked_serials(now)), now, ids)

    def is_revoked(self, cert: x509.Certificate) -> bool:
        """Is this (chain-verified) SVID revoked, by serial or by its SPIFFE ID? For the control
        plane's own checks; gateways apply the same rule to the trust document."""
        sid = revocation.svid_id_of(cert)
        rec, id_at = self.store.svid_and_id_revocation(certs.serial_hex(cert), sid or "")
        if rec is not None and rec.revoked_at is not None:
            return True
        return id_at is not None and issued_before(
            cert.not_valid_before_utc.timestamp(), id_revocation_before(id_at)
        )


_PRESENTED_ERRORS = {
    RedeemOutcome.PRESENTED_UNKNOWN: "presented certificate is not a known SVID",
    RedeemOutcome.PRESENTED_REVOKED: "presented SVID is revoked",
    RedeemOutcome.PRESENTED_RENEWED: (
        "presented SVID was already renewed: each SVID renews once; present the newest one"
    ),
}


def _check_presented(rec: SvidRecord, spiffe_id: str, id_revoked_at: float | None) -> None:
    """Renewal: the presented SVID's row, read (and locked) in the issuance transaction."""
    if rec.spiffe_id != spiffe_id:
        raise SvidError(_PRESENTED_ERRORS[RedeemOutcome.PRESENTED_UNKNOWN])
    if rec.revoked_at is not None:
        raise SvidError(_PRESENTED_ERRORS[RedeemOutcome.PRESENTED_REVOKED])
    if id_revoked_at is not None and issued_before(rec.not_before, id_revocation_before(id_revoked_at)):
        raise SvidError(f"presented SVID is revoked: {spiffe_id} was revoked after it was issued")
    if rec.renewed_by is not None:
        raise SvidError(_PRESENTED_ERRORS[RedeemOutcome.PRESENTED_RENEWED])


__all__ = ["CaSettings", "WorkloadCA"]
