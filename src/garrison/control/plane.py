"""``ControlPlane``: the CA, the token service, client registry and audit wired on one store.

Everything the control-plane API, the CLI and ``garrison up`` do goes through this object (or the
libraries it holds); it does no HTTP. Built from garrison.yaml's ``store:`` and ``control_plane:``
sections; relative paths resolve against the config file's directory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from garrison.config.models import ControlPlaneConfig, GarrisonConfig, KekSource, StoreConfig
from garrison.identity.ca import CaSettings, Kek, WorkloadCA
from garrison.identity.ca.bundle import parse_bundle
from garrison.identity.ca.certs import serial_hex
from garrison.identity.ca.errors import CaError, SealError
from garrison.identity.ca.spiffe_id import SpiffeId
from garrison.identity.oauth import ServerSettings, TokenService
from garrison.identity.oauth.signing_keys import SigningKeyRing
from garrison.identity.oauth.sql_clients import SqlClientRegistry
from garrison.identity.oauth.sql_state import SqlOAuthState
from garrison.store import Store

log = logging.getLogger("garrison.control")

CONTROL_PLANE_PATH = "/garrison/control-plane"
ADMIN_PATH = "/garrison/admin"
TRUST_DOCUMENT_VERSION = 2


class AuditSink(Protocol):
    """Where admin actions are recorded (``telemetry.audit.AuditLog``). Values must not be secrets."""

    def append(self, action: str, **fields: Any) -> Any: ...


class NullAudit:
    def append(self, action: str, **fields: Any) -> None:
        return None


def resolve(base_dir: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def load_kek(src: KekSource, base_dir: Path) -> Kek:
    if src.file is not None:
        return Kek.from_file(resolve(base_dir, src.file))
    if src.env is not None:
        return Kek.from_env(src.env)
    assert src.command is not None
    return Kek.from_command(src.command)


def store_target(cfg: StoreConfig, base_dir: Path) -> str:
    return cfg.url if "://" in cfg.url else str(resolve(base_dir, cfg.url))


def hash_admin_token(token: str) -> bytes:
    return hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class ServerCredentials:
    """A certificate chain and its private key, PEM (the key unencrypted: write it 0600 only)."""

    chain_pem: bytes
    key_pem: bytes
    not_after: float
    serial: str

    def __repr__(self) -> str:
        return f"<ServerCredentials serial={self.serial} not_after={self.not_after:.0f}>"


class ControlPlane:
    """The control plane's state and operations, minus HTTP. Thread-safe as far as its parts are."""

    def __init__(
        self,
        config: GarrisonConfig,
        base_dir: Path,
        store: Store,
        kek: Kek,
        *,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.settings: ControlPlaneConfig = config.control_plane or ControlPlaneConfig()
        self.base_dir = base_dir
        self.store = store
        self.clock = clock
        self.audit: AuditSink = audit if audit is not None else NullAudit()
        s = self.settings
        self.trust_domain = config.trust_domain
        self.ca = WorkloadCA(
            store,
            kek,
            CaSettings(
                trust_domain=config.trust_domain,
                svid_ttl=s.svid_ttl_seconds,
                join_token_ttl=s.join_token_ttl_seconds,
            ),
            clock=clock,
        )
        # Its tables come with the store's migrations; expired jtis are pruned by ``maintain``, never
        # inside a token request (a prune of a minute's jtis took 0.6 s; D24).
        self.oauth_state = SqlOAuthState(store.engine, prune_on_use=False)
        self.clients = SqlClientRegistry(store.engine, clock=clock)
        self.server_settings = ServerSettings(
            issuer=s.base_url,
            audiences=frozenset(self.audiences()),
            access_token_ttl=s.access_token_ttl_seconds,
        )
        self.ring = SigningKeyRing.open(
            self.oauth_state,
            kek,
            clock(),
            min_rotation_interval=self.server_settings.min_rotation_interval,
        )
        self.tokens = TokenService(
            self.server_settings,
            self.ring,
            self.clients,
            replay=self.oauth_state,
            revocations=self.oauth_state,
        )
        self.admins = frozenset(s.admins or [f"spiffe://{config.trust_domain}{ADMIN_PATH}"])
        self._admin_token_hash: bytes | None = None
        if s.admin_token_file is not None:
            p = resolve(base_dir, s.admin_token_file)
            if p.exists():
                self._admin_token_hash = hash_admin_token(read_secret_file(p))
        self._maintain_lock = threading.Lock()
        self._anchors: tuple[str, bytes] | None = None  # (bundle document, its roots as PEM)

    # -- lifecycle ----------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        config: GarrisonConfig,
        base_dir: Path,
        *,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = time.time,
        initialize: bool = False,
        require_ca: bool = True,
    ) -> ControlPlane:
        """Open the store with the KEK; ``initialize`` creates the CA if the store has none.

        ``require_ca=False`` opens a store whose CA is still waiting for an externally signed
        intermediate (``garrison ca csr`` / ``ca install``). A wrong KEK, a missing KEK file or an
        uninitialized store raise ``GarrisonError``s with a message that says what to do.
        """
        store_cfg = config.store or StoreConfig()
        kek = load_kek(store_cfg.kek, base_dir)
        store = Store.open(store_target(store_cfg, base_dir))
        try:
            plane = cls(config, base_dir, store, kek, audit=audit, clock=clock)
            if not plane.initialized:
                if initialize:
                    plane.ca.initialize()
                elif require_ca:
                    raise CaError(
                        "the CA has no current intermediate in this store: run `garrison init`, or"
                        " `garrison ca install` for an externally signed intermediate"
                    )
            return plane
        except BaseException:
            store.close()
            raise

    @property
    def initialized(self) -> bool:
        return self.store.signing_state()[0] is not None

    def close(self) -> None:
        self.store.close()

    def __repr__(self) -> str:
        return f"<ControlPlane {self.trust_domain} {self.settings.base_url} {self.store!r}>"

    # -- identities ---------------------------------------------------------------------------------
    def audiences(self) -> list[str]:
        s = self.settings
        if s.audiences:
            return list(s.audiences)
        auds = [self.config.spiffe_id(name) for name in self.config.services]
        return auds or [f"spiffe://{self.config.trust_domain}/svc/default"]

    @property
    def control_plane_id(self) -> str:
        return f"spiffe://{self.trust_domain}{CONTROL_PLANE_PATH}"

    def is_admin_token(self, presented: str) -> bool:
        want = self._admin_token_hash
        return want is not None and hmac.compare_digest(want, hash_admin_token(presented))

    def is_admin_certificate(self, cert: x509.Certificate, now: float | None = None) -> str | None:
        """The admin SPIFFE ID of a chain-verified peer certificate, or None.

        Admin only if the SVID is one this CA issued and still records as unexpired, and it is not
        revoked, by serial or by its SPIFFE ID (``WorkloadCA.is_revoked``).
        """
        from garrison.identity.oauth.client_auth import svid_uri

        now = self.clock() if now is None else now
        uri = svid_uri(cert)
        if uri is None or uri not in self.admins:
            return None
        rec = self.store.get_svid(serial_hex(cert))
        if rec is None or rec.spiffe_id != uri or rec.revoked_at is not None or rec.not_after <= now:
            return None
        if self.ca.is_revoked(cert):
            return None
        return uri

    def issue_credentials(
        self, spiffe_id: str, *, server_names: tuple[str, ...] = (), ttl: float | None = None
    ) -> ServerCredentials:
        """A fresh key and SVID for ``spiffe_id`` (admin issuance in-process: ``up``, ``init``)."""
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(SpiffeId(spiffe_id)))]),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        svid = self.ca.issue(
            csr.public_bytes(serialization.Encoding.PEM), ttl=ttl, server_names=server_names
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return ServerCredentials(svid.chain_pem, key_pem, svid.not_after, svid.serial)

    def server_credentials(self) -> ServerCredentials:
        """The control plane's own serving certificate: its SPIFFE ID plus ``server_names``."""
        return self.issue_credentials(self.control_plane_id, server_names=tuple(self.settings.server_names))

    def trust_anchors_pem(self, bundle_document: str | None = None) -> bytes:
        """The roots of a trust bundle, PEM: what verifies SVIDs and the control plane.

        ``bundle_document``: that SPIFFE bundle (an ``IssuedSvid``'s, say); default the latest
        published one (a store read). The PEM of the last document asked for is kept, so handing
        the bundle out with every SVID costs a string comparison, not a parse.
        """
        doc = self.ca.bundle_document() if bundle_document is None else bundle_document
        cached = self._anchors
        if cached is not None and cached[0] == doc:
            return cached[1]
        bundle = parse_bundle(doc)
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in bundle.authorities)
        self._anchors = (doc, pem)
        return pem

    # -- distribution -----------------------------------------------------------------------------
    def trust_document(self, now: float | None = None) -> dict[str, Any]:
        """What data planes pull every ``bundle_refresh_seconds`` (ARCHITECTURE §9 Revocations).

        ``bundle`` is the SPIFFE bundle (JWK set with x5c); ``revoked_serials`` the lower-case hex
        serials of SVIDs revoked one by one and unexpired; ``revoked_ids`` one entry
        ``{"spiffe_id", "before"}`` per SPIFFE ID revoked as a whole (an SVID of it issued before
        ``before`` is revoked: ``identity.ca.revocation``); ``revoked_jtis`` the revoked
        access-token ``jti``s still inside their lifetime.

        Version 2 since ``revoked_ids``: a version-1 gateway ignores unknown keys, so it would
        accept this document and miss every ID revocation (their serials are no longer listed);
        it refuses version 2 instead, loudly, and keeps its last good state.
        """
        now = self.clock() if now is None else now
        last = self.store.latest_bundle()
        if last is None:
            raise CaError("no trust bundle published: initialize the CA")
        revoked = self.ca.revocation_list(now)
        return {
            "version": TRUST_DOCUMENT_VERSION,
            "trust_domain": self.trust_domain,
            "bundle_sequence": last.sequence,
            "bundle": json.loads(last.document),
            "revoked_serials": sorted(revoked.serials),
            "revoked_ids": revoked.revoked_ids_document(),
            "revoked_jtis": sorted(self.tokens.revoked_jtis(now)),
            "refresh_seconds": self.settings.bundle_refresh_seconds,
            "generated_at": int(now),
        }

    # -- maintenance ------------------------------------------------------------------------------
    def maintain(self, now: float | None = None) -> list[str]:
        """One maintenance tick: CA rotation and bundle, signing-key rotation when due, and the
        expired assertion jtis pruned."""
        now = self.clock() if now is None else now
        with self._maintain_lock:
            self.oauth_state.prune_jtis(now)
            done = self.ca.maintain(now)
            age = now - self.ring.current.state_since
            if age >= self.settings.signing_key_rotation_seconds:
                new = self.ring.rotate(now)
                done.append(f"rotated token signing key: current kid {new.kid}")
            for line in done:
                self.audit.append("maintain", detail=line)
            return done

    def rotate_signing_key(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        with self._maintain_lock:
            return self.ring.rotate(now).kid


def read_secret_file(path: Path) -> str:
    """A secret from a file that only its owner may read (same rule as the KEK file)."""
    try:
        st = path.stat()
    except OSError as e:
        raise SealError(f"cannot read {path}: {e.strerror}") from None
    if st.st_mode & 0o077:
        raise SealError(f"{path} has mode {st.st_mode & 0o777:04o}; it must be 0600 or stricter")
    value = path.read_text().strip()
    if not value:
        raise SealError(f"{path} is empty")
    return value


def write_secret_file(path: Path, value: str | bytes) -> None:
    """Create ``path`` with mode 0600 (never wider, even for a moment) and write ``value``."""
    data = value.encode() if isinstance(value, str) else value
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def trust_summary(doc: Mapping[str, Any]) -> str:
    return (
        f"bundle {doc.get('bundle_sequence')}: {len(doc.get('revoked_serials', []))} revoked SVIDs,"
        f" {len(doc.get('revoked_jtis', []))} revoked tokens"
    )


__all__ = [
    "ADMIN_PATH",
    "CONTROL_PLANE_PATH",
    "AuditSink",
    "ControlPlane",
    "NullAudit",
    "ServerCredentials",
    "load_kek",
    "read_secret_file",
    "resolve",
    "store_target",
    "trust_summary",
    "write_secret_file",
]
