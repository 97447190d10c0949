"""``WorkloadCA``: issues X.509-SVIDs (admin, join token, renewal) and revokes them.

Key lifecycle and the trust bundle are ``CaKeyring``'s (keyring.py); this class adds issuance. Every
issuance is one store transaction that reads the signing CA and the last published bundle, so it
never signs with a CA missing from that bundle (spire#2704). No crypto here: see ``svid``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cryptography import x509

from garrison.identity.ca import certs
from garrison.identity.ca.errors import CaError, JoinTokenError, SvidError
from garrison.identity.ca.join_tokens import check_ttl, hash_join_token, looks_like_join_token, new_join_token
from garrison.identity.ca.keyring import LIVE_STATES, CaKeyring, CaSettings
from garrison.identity.ca.revocation import RevocationList
from garrison.identity.ca.spiffe_id import SpiffeId
from garrison.identity.ca.svid import CheckedCsr, IssuedSvid, build_svid, check_csr, leaf_spiffe_id
from garrison.store import BundleRecord, CaKeyPurpose, CaKeyRecord, JoinTokenRecord, RedeemOutcome, SvidRecord


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
    ) -> Callable[[CaKeyRecord | None, BundleRecord | None], SvidRecord]:
        """The signing step run inside the store's issuance transaction (sees a consistent CA state)."""

        def sign(cur: CaKeyRecord | None, bundle: BundleRecord | None) -> SvidRecord:
            if cur is None:
                raise CaError("no current intermediate CA: initialize or install one")
            # spire#2704: never sign with a CA that validators may not have in their bundle yet.
            if (
                bundle is None
                or cur.id not in bundle.ca_key_ids
                or (cur.parent_id or "") not in bundle.ca_key_ids
            ):
                raise CaError(f"refusing to sign: CA {cur.id} is not in the last published trust bundle")
            cert, key = self.unsealed(cur)
            svid = build_svid(
                req, cert, key, now, self.settings.svid_ttl if ttl is None else ttl, server_names
            )
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
    ) -> IssuedSvid:
        out: list[IssuedSvid] = []
        token_hash = hash_join_token(join_token) if join_token is not None else None
        outcome = self.store.issue(
            self._signer(req, now, ttl, out, server_names), join_token_hash=token_hash, now=now
        )
        if outcome is RedeemOutcome.REDEEMED:
            return out[-1]
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
        the store), unexpired, unrevoked, and for the same SPIFFE ID as the CSR.
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
        rec = self.store.get_svid(certs.serial_hex(leaf))
        if rec is None or rec.spiffe_id != str(leaf_id):
            raise SvidError("presented certificate is not a known SVID")
        if rec.revoked_at is not None:
            raise SvidError("presented SVID is revoked")
        if not (leaf.not_valid_before_utc.timestamp() <= now < leaf.not_valid_after_utc.timestamp()):
            raise SvidError("presented SVID has expired (or is not yet valid): bootstrap again")
        req = check_csr(csr, self.settings.trust_domain)
        if req.spiffe_id != leaf_id:
            raise SvidError(f"CSR is for {req.spiffe_id}, but the presented SVID is {leaf_id}")
        return self._issue(req, now, None)

    # -- revocation -------------------------------------------------------------------------------
    def revoke_serial(self, serial: str, *, reason: str = "", now: float | None = None) -> bool:
        return self.store.revoke_serial(serial.lower(), self._now(now), reason)

    def revoke_spiffe_id(self, spiffe_id: str, *, reason: str = "", now: float | None = None) -> list[str]:
        return self.store.revoke_spiffe_id(str(SpiffeId(spiffe_id)), self._now(now), reason)

    def revocation_list(self, now: float | None = None) -> RevocationList:
        now = self._now(now)
        return RevocationList(frozenset(self.store.revoked_serials(now)), now)


__all__ = ["CaSettings", "WorkloadCA"]
