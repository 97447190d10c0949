"""``CaKeyring``: the CA's keys and trust bundle over a ``Store`` and a KEK.

Key lifecycle: root, intermediates pending → next → current → retired. A next CA is published in
the bundle when it is created and becomes current only after that bundle has had ``refresh_hint``
seconds to reach every validator (spire#2704). Crypto is in ``certs`` (sans-IO); this does the
store calls. ``WorkloadCA`` (authority.py) adds issuance on top.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from garrison.identity.ca import certs
from garrison.identity.ca.bundle import DEFAULT_REFRESH_HINT, render_bundle
from garrison.identity.ca.errors import CaError
from garrison.identity.ca.join_tokens import DEFAULT_TTL
from garrison.identity.ca.sealing import WRONG_KEK, Kek
from garrison.identity.ca.spiffe_id import check_trust_domain
from garrison.identity.ca.svid import DEFAULT_SVID_TTL
from garrison.store import BundleRecord, CaKeyPurpose, CaKeyRecord, CaKeyState, Store

_KEK_CHECK = b"garrison kek check v1"
KEK_CHECK_CONTEXT = "garrison/meta/kek_check"  # meta row `kek_check`: a value sealed to detect a wrong KEK
LIVE_STATES = (CaKeyState.NEXT, CaKeyState.CURRENT, CaKeyState.RETIRED)


@dataclass(frozen=True, slots=True)
class CaSettings:
    trust_domain: str
    svid_ttl: float = DEFAULT_SVID_TTL
    intermediate_ttl: float = 30 * 86_400.0
    root_ttl: float = 10 * 365 * 86_400.0
    refresh_hint: int = DEFAULT_REFRESH_HINT
    join_token_ttl: float = DEFAULT_TTL

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        if not 0 < self.svid_ttl <= self.intermediate_ttl <= self.root_ttl:
            raise ValueError("need 0 < svid_ttl <= intermediate_ttl <= root_ttl")


def seal_context(key_id: str, purpose: CaKeyPurpose) -> str:
    return f"garrison/ca_keys/{key_id}/{purpose.value}"  # binds a sealed blob to its row


class CaKeyring:
    """CA keys and bundle. Thread-safe as far as the store is; memory holds only a cache of unsealed keys."""

    def __init__(
        self, store: Store, kek: Kek, settings: CaSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.settings = settings
        self._kek = kek
        self._clock = clock
        self._keys: dict[str, tuple[x509.Certificate, ec.EllipticCurvePrivateKey]] = {}
        self._check_kek()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(trust_domain={self.settings.trust_domain!r}, store={self.store!r})"

    def _check_kek(self) -> None:
        """Fail at open, with a clear message, if this KEK did not seal this store."""
        sealed = base64.b64encode(self._kek.seal(_KEK_CHECK, context=KEK_CHECK_CONTEXT)).decode()
        stored = self.store.set_meta_once("kek_check", sealed)
        if self._kek.unseal(base64.b64decode(stored), context=KEK_CHECK_CONTEXT) != _KEK_CHECK:
            raise CaError(WRONG_KEK)  # pragma: no cover - AEAD makes this unreachable

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    # -- key material ---------------------------------------------------------------------------
    def _new_key_record(
        self,
        key: ec.EllipticCurvePrivateKey,
        purpose: CaKeyPurpose,
        state: CaKeyState,
        now: float,
        *,
        cert: x509.Certificate | None = None,
        parent_id: str | None = None,
        csr_pem: str | None = None,
    ) -> CaKeyRecord:
        kid = certs.key_id(key.public_key())
        rec = CaKeyRecord(
            id=kid,
            purpose=purpose,
            state=state,
            created_at=now,
            parent_id=parent_id,
            sealed_key=self._kek.seal(certs.private_key_der(key), context=seal_context(kid, purpose)),
            cert_pem=certs.cert_pem(cert) if cert is not None else None,
            csr_pem=csr_pem,
            not_before=cert.not_valid_before_utc.timestamp() if cert is not None else None,
            not_after=cert.not_valid_after_utc.timestamp() if cert is not None else None,
        )
        self.store.add_ca_key(rec)
        return rec

    def unsealed(self, rec: CaKeyRecord) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        hit = self._keys.get(rec.id)
        if hit is not None:
            return hit
        if rec.sealed_key is None or rec.cert_pem is None:
            raise CaError(f"CA key {rec.id} has no private key here (offline root?) or no certificate")
        der = self._kek.unseal(rec.sealed_key, context=seal_context(rec.id, rec.purpose))
        pair = (certs.load_cert_pem(rec.cert_pem), certs.load_private_key_der(der))
        self._keys[rec.id] = pair
        return pair

    def _online_root(self) -> CaKeyRecord:
        roots = [
            r
            for r in self.store.list_ca_keys([CaKeyState.CURRENT])
            if r.purpose is CaKeyPurpose.ROOT and r.sealed_key is not None
        ]
        if not roots:
            raise CaError("no online root key: use make_intermediate_csr() and an external root")
        return roots[-1]

    # -- lifecycle --------------------------------------------------------------------------------
    def initialize(self, now: float | None = None) -> str:
        """Create a root and a first intermediate, publish the bundle, activate. Returns its id."""
        now = self._now(now)
        if self.store.list_ca_keys():
            raise CaError("the CA is already initialized")
        root_key = certs.new_key()
        root = certs.make_root(root_key, self.settings.trust_domain, now, self.settings.root_ttl)
        self._new_key_record(root_key, CaKeyPurpose.ROOT, CaKeyState.CURRENT, now, cert=root)
        kid = self._prepare(now, root_key, root)
        self.activate_next(now)
        return kid

    def _prepare(self, now: float, root_key: ec.EllipticCurvePrivateKey, root: x509.Certificate) -> str:
        key = certs.new_key()
        cert = certs.make_intermediate(
            key.public_key(), self.settings.trust_domain, root, root_key, now, self.settings.intermediate_ttl
        )
        rec = self._new_key_record(
            key,
            CaKeyPurpose.INTERMEDIATE,
            CaKeyState.NEXT,
            now,
            cert=cert,
            parent_id=certs.key_id(root_key.public_key()),
        )
        self.refresh_bundle(now)  # pre-publish: the next CA is in the bundle before it signs
        return rec.id

    def prepare_next(self, now: float | None = None, *, new_root: bool = False) -> str:
        """Create the next intermediate (under a new root if ``new_root``) and publish it."""
        now = self._now(now)
        if self.store.list_ca_keys([CaKeyState.NEXT]):
            raise CaError("a next CA is already prepared; activate it first")
        if new_root:
            root_key = certs.new_key()
            root = certs.make_root(root_key, self.settings.trust_domain, now, self.settings.root_ttl)
            self._new_key_record(root_key, CaKeyPurpose.ROOT, CaKeyState.NEXT, now, cert=root)
        else:
            root, root_key = self.unsealed(self._online_root())
        return self._prepare(now, root_key, root)

    def activate_next(self, now: float | None = None) -> str:
        """Make the next intermediate current, once its bundle has had time to propagate."""
        now = self._now(now)
        nxt = [
            r for r in self.store.list_ca_keys([CaKeyState.NEXT]) if r.purpose is CaKeyPurpose.INTERMEDIATE
        ]
        if not nxt:
            raise CaError("no next CA to activate")
        cur, bundle = self.store.signing_state()
        rec = nxt[0]
        if bundle is None or rec.id not in bundle.ca_key_ids or rec.parent_id not in bundle.ca_key_ids:
            raise CaError(f"CA {rec.id} is not in the published trust bundle yet")
        first = self.store.first_bundle_covering(rec.id) or bundle
        if cur is not None and now - first.published_at < self.settings.refresh_hint:
            raise CaError(
                f"CA {rec.id} was published {now - first.published_at:.1f}s ago; validators refresh every "
                f"{self.settings.refresh_hint}s, so it cannot sign yet"
            )
        self.store.activate(rec.id)
        self.refresh_bundle(now)
        return rec.id

    def make_intermediate_csr(self, now: float | None = None) -> str:
        """For an external (offline) root: a new intermediate key, sealed, and its CSR (PEM)."""
        now = self._now(now)
        key = certs.new_key()
        csr = certs.make_intermediate_csr(key, self.settings.trust_domain)
        pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        self._new_key_record(key, CaKeyPurpose.INTERMEDIATE, CaKeyState.PENDING, now, csr_pem=pem)
        return pem

    def install_intermediate(
        self, cert_pem: str, root_pem: str | None = None, now: float | None = None
    ) -> str:
        """Install the certificate an external root signed for a pending CSR; publish it (state next),
        and activate it at once if no CA is current (nothing signed yet, nothing to break)."""
        now = self._now(now)
        cert = certs.load_cert_pem(cert_pem)
        pending = [r for r in self.store.list_ca_keys([CaKeyState.PENDING])]
        rec = next(
            (
                r
                for r in pending
                if r.csr_pem and certs.spki(x509.load_pem_x509_csr(r.csr_pem.encode())) == certs.spki(cert)
            ),
            None,
        )
        if rec is None:
            raise CaError("this certificate matches no pending intermediate CSR")
        if not certs.is_signing_cert(cert):
            raise CaError("the intermediate certificate must have cA=true and keyCertSign (X509-SVID §4)")
        if not cert.not_valid_before_utc.timestamp() <= now < cert.not_valid_after_utc.timestamp():
            raise CaError("the intermediate certificate is not valid now")
        roots = [r for r in self.store.list_ca_keys() if r.purpose is CaKeyPurpose.ROOT and r.cert_pem]
        parent = next(
            (r for r in roots if certs.issued_by(cert, certs.load_cert_pem(r.cert_pem or ""))), None
        )
        if parent is None:
            if root_pem is None:
                raise CaError("unknown issuer: pass the external root certificate")
            root = certs.load_cert_pem(root_pem)
            if not certs.is_signing_cert(root) or not certs.issued_by(root, root):
                raise CaError("the root certificate must be a self-signed CA certificate")
            if not certs.issued_by(cert, root):
                raise CaError("the intermediate certificate was not issued by this root")
            pk = root.public_key()
            rid = (
                certs.key_id(pk) if isinstance(pk, ec.EllipticCurvePublicKey) else certs.spki(root).hex()[:32]
            )
            parent = CaKeyRecord(
                id=rid,
                purpose=CaKeyPurpose.ROOT,
                state=CaKeyState.CURRENT,
                created_at=now,
                cert_pem=certs.cert_pem(root),
                not_before=root.not_valid_before_utc.timestamp(),
                not_after=root.not_valid_after_utc.timestamp(),
            )
            self.store.add_ca_key(parent)
        self.store.install_ca_cert(
            rec.id,
            certs.cert_pem(cert),
            cert.not_valid_before_utc.timestamp(),
            cert.not_valid_after_utc.timestamp(),
            state=CaKeyState.NEXT,
            parent_id=parent.id,
        )
        self.refresh_bundle(now)
        if self.store.signing_state()[0] is None:
            self.activate_next(now)
        return rec.id

    def maintain(self, now: float | None = None) -> list[str]:
        """One tick of the control plane's CA loop; returns what it did (for the log).

        Prepares the next intermediate at half of the current one's life (online root only), makes
        it current at two thirds (never before its bundle had ``refresh_hint`` to propagate), and
        drops expired CAs from the bundle. SVIDs stay capped by the signing CA's life, so with these
        fractions no SVID is ever cut short by more than a third of an intermediate lifetime.
        """
        now = self._now(now)
        done: list[str] = []
        cur, _ = self.store.signing_state()
        if cur is not None and cur.not_before is not None and cur.not_after is not None:
            life = cur.not_after - cur.not_before
            has_next = bool(self.store.list_ca_keys([CaKeyState.NEXT]))
            if not has_next and now >= cur.not_before + life / 2:
                try:
                    done.append(f"prepared next CA {self.prepare_next(now)}")
                    has_next = True
                except CaError as e:
                    done.append(f"cannot prepare the next CA: {e}")
            if has_next and now >= cur.not_before + 2 * life / 3:
                try:
                    done.append(f"activated CA {self.activate_next(now)}")
                except CaError as e:
                    done.append(f"cannot activate the next CA yet: {e}")
        before = self.store.latest_bundle()
        after = self.refresh_bundle(now)
        if before is None or after.sequence != before.sequence:
            done.append(f"published trust bundle {after.sequence}")
        return done

    # -- bundle -----------------------------------------------------------------------------------
    def _covered(self, now: float) -> tuple[list[str], list[x509.Certificate]]:
        """CA ids the bundle must cover (live intermediates and their roots) and the roots' certs."""
        keys = {r.id: r for r in self.store.list_ca_keys()}
        ids: list[str] = []
        anchors: list[x509.Certificate] = []
        for r in keys.values():
            if r.purpose is not CaKeyPurpose.INTERMEDIATE or r.state not in LIVE_STATES or r.cert_pem is None:
                continue
            if r.not_after is not None and r.not_after <= now:
                continue  # expired: so is every SVID it signed
            ids.append(r.id)
            root = keys.get(r.parent_id or "")
            if root is not None and root.cert_pem is not None and root.id not in ids:
                ids.append(root.id)
                anchors.append(certs.load_cert_pem(root.cert_pem))
        return ids, anchors

    def refresh_bundle(self, now: float | None = None) -> BundleRecord:
        """Publish a new bundle (spiffe_sequence + 1) if the set of live CAs changed; else the last one."""
        now = self._now(now)
        ids, anchors = self._covered(now)
        last = self.store.latest_bundle()
        if last is not None and sorted(last.ca_key_ids) == sorted(ids):
            return last
        hint = self.settings.refresh_hint
        return self.store.publish_bundle(lambda seq: render_bundle(anchors, seq, hint), ids, now)

    def bundle_document(self) -> str:
        last = self.store.latest_bundle()
        if last is None:
            raise CaError("no trust bundle published: initialize the CA")
        return last.document


__all__ = ["KEK_CHECK_CONTEXT", "LIVE_STATES", "CaKeyring", "CaSettings", "seal_context"]
