"""Trust distribution, data-plane side: pull ``GET {control_plane}/v1/trust`` and hold the last good state.

The control plane publishes one document (trust anchors, revoked SVID serials, SPIFFE IDs revoked
as a whole, revoked token ``jti``s; see ``ControlPlane.trust_document``). The gateway fetches it
over HTTPS (server verified against ``control_plane.ca_file``) every ``bundle_refresh_seconds``
and swaps in a ``TrustState``.

Invariants (the same as the JWKS provider's): reads never block and only ever see the last *good*
state; a failed fetch, a garbage, an empty or an older (lower ``bundle_sequence``) document never
replaces it; at start, when something depends on it, the first fetch is awaited with a bounded retry
and failing it is a startup error (fail closed: no listener accepts SVIDs it cannot check).
``parse_trust_document`` is sans-IO; ``TrustPuller`` is the I/O edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from garrison.config.models import ControlPlaneConfig, GarrisonConfig
from garrison.errors import ConfigError, GarrisonError, IdentityError
from garrison.identity.ca.bundle import parse_bundle
from garrison.identity.jwks import ca_context
from garrison.identity.keys import strict_json_object

log = logging.getLogger("garrison.trust")

TRUST_DOCUMENT_VERSION = 2  # 2 added revoked_ids; a version-1 document (no revoked_ids) is still read
SUPPORTED_VERSIONS = (1, TRUST_DOCUMENT_VERSION)
TRUST_PATH = "/v1/trust"
MAX_TRUST_BYTES = 4 << 20
MAX_LIST_ENTRIES = 1_000_000
MAX_JTI_CHARS = 256
MAX_SPIFFE_ID_CHARS = 2048
START_TIMEOUT_SECONDS = 10.0
_SERIAL = re.compile(r"[0-9a-f]{1,64}")
_HEADERS = {"accept": "application/json", "accept-encoding": "identity"}


class TrustDocumentError(GarrisonError):
    """A trust document that is not what the control plane publishes (it is ignored)."""


@dataclass(frozen=True, slots=True, eq=False)
class TrustState:
    """One validated trust document. Immutable: readers hold a reference, the puller swaps it whole."""

    sequence: int
    anchors: tuple[x509.Certificate, ...]
    anchors_pem: bytes
    revoked_serials: frozenset[str]
    revoked_jtis: frozenset[str]
    generated_at: float
    fetched_at: float
    # SPIFFE ID -> before: an SVID of that ID whose notBefore + BACKDATE < before is revoked
    # (``identity.ca.revocation.issued_before``).
    revoked_ids: Mapping[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"<TrustState seq={self.sequence} anchors={len(self.anchors)} "
            f"revoked_serials={len(self.revoked_serials)} revoked_ids={len(self.revoked_ids)} "
            f"revoked_jtis={len(self.revoked_jtis)}>"
        )


def _int_field(doc: dict[str, Any], name: str) -> int:
    v = doc.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TrustDocumentError(f"trust document: {name} is not a non-negative integer")
    return v


def _str_list(
    doc: dict[str, Any], name: str, pattern: re.Pattern[str] | None, max_chars: int
) -> frozenset[str]:
    v = doc.get(name)
    if not isinstance(v, list):
        raise TrustDocumentError(f"trust document: {name} is not a list")
    if len(v) > MAX_LIST_ENTRIES:
        raise TrustDocumentError(f"trust document: {name} has more than {MAX_LIST_ENTRIES} entries")
    for item in v:
        if not isinstance(item, str) or not item or len(item) > max_chars:
            raise TrustDocumentError(f"trust document: {name} holds a value that is not a short string")
        if pattern is not None and pattern.fullmatch(item) is None:
            raise TrustDocumentError(f"trust document: {name} holds {item[:70]!r}, not lower-case hex")
    return frozenset(v)


def _revoked_ids(doc: dict[str, Any], version: int) -> dict[str, int]:
    """``revoked_ids``: a list of ``{"spiffe_id": "spiffe://...", "before": <int>}``, exactly those
    keys. Required from version 2 (a missing list would silently un-revoke every revoked ID)."""
    if version < 2 and "revoked_ids" not in doc:
        return {}
    v = doc.get("revoked_ids")
    if not isinstance(v, list):
        raise TrustDocumentError("trust document: revoked_ids is not a list")
    if len(v) > MAX_LIST_ENTRIES:
        raise TrustDocumentError(f"trust document: revoked_ids has more than {MAX_LIST_ENTRIES} entries")
    out: dict[str, int] = {}
    for e in v:
        if not isinstance(e, dict) or set(e) != {"spiffe_id", "before"}:
            raise TrustDocumentError(
                "trust document: revoked_ids holds an entry that is not {spiffe_id, before}"
            )
        sid, before = e["spiffe_id"], e["before"]
        if not isinstance(sid, str) or not sid.startswith("spiffe://") or len(sid) > MAX_SPIFFE_ID_CHARS:
            raise TrustDocumentError("trust document: revoked_ids holds a spiffe_id that is not a SPIFFE ID")
        if isinstance(before, bool) or not isinstance(before, int) or before < 0:
            raise TrustDocumentError("trust document: revoked_ids holds a before that is not an integer ≥ 0")
        out[sid] = max(before, out.get(sid, before))  # a repeated ID: the later revocation covers more
    return out


def parse_trust_document(body: bytes, trust_domain: str, now: float) -> TrustState:
    """Validate a ``/v1/trust`` body strictly; raise ``TrustDocumentError`` saying what is wrong."""
    try:
        doc = strict_json_object(body)
    except ValueError as exc:  # includes UnicodeDecodeError and duplicate names
        raise TrustDocumentError(f"trust document is not a JSON object: {exc}") from None
    version = doc.get("version")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise TrustDocumentError(f"trust document version {str(version)[:20]!r} is not supported")
    if doc.get("trust_domain") != trust_domain:
        got = str(doc.get("trust_domain"))[:100]
        raise TrustDocumentError(f"trust document is for trust domain {got!r}, not {trust_domain!r}")
    sequence = _int_field(doc, "bundle_sequence")
    bundle_doc = doc.get("bundle")
    if not isinstance(bundle_doc, dict):
        raise TrustDocumentError("trust document: bundle is not an object")
    try:  # re-serialized: parse_bundle takes the document text (duplicates were refused above)
        bundle = parse_bundle(json.dumps(bundle_doc))
    except (IdentityError, ValueError, TypeError) as exc:
        raise TrustDocumentError(f"trust document: bundle: {exc}") from None
    if not bundle.authorities:
        raise TrustDocumentError(
            "trust document: bundle has no X.509 authority (refusing an empty trust set)"
        )
    if bundle.sequence is not None and bundle.sequence != sequence:
        raise TrustDocumentError(
            f"trust document: bundle_sequence {sequence} != spiffe_sequence {bundle.sequence}"
        )
    serials = _str_list(doc, "revoked_serials", _SERIAL, 64)
    jtis = _str_list(doc, "revoked_jtis", None, MAX_JTI_CHARS)
    ids = _revoked_ids(doc, int(version))
    gen = doc.get("generated_at")
    if isinstance(gen, bool) or not isinstance(gen, int | float):
        raise TrustDocumentError("trust document: generated_at is not a number")
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in bundle.authorities)
    return TrustState(sequence, bundle.authorities, pem, serials, jtis, float(gen), now, ids)


class TrustPuller:
    """Keeps a ``TrustState`` fresh from the control plane. Reads (``state``, ``revoked_*``) never block.

    ``subscribe(fn)``: ``fn(state)`` runs on the loop after each accepted document whose anchors or
    revocations changed (listeners rebuild their TLS contexts, and cut revoked clients, there).
    """

    EMPTY: frozenset[str] = frozenset()
    NO_IDS: Mapping[str, int] = MappingProxyType({})

    def __init__(
        self,
        settings: ControlPlaneConfig,
        trust_domain: str,
        base_dir: Path,
        *,
        verify: ssl.SSLContext | None = None,
        timeout: float = 5.0,
        max_bytes: int = MAX_TRUST_BYTES,
    ) -> None:
        self.url = settings.base_url + TRUST_PATH
        self.trust_domain = trust_domain
        self.refresh_seconds = settings.bundle_refresh_seconds
        self.ca_file = _resolve(base_dir, settings.ca_file)
        self.key = self.key_for(settings, trust_domain, base_dir)  # same key: reused across a reload
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._fixed_verify = verify is not None
        self._ca_digest = self._read_ca_digest()
        ctx = verify if verify is not None else ca_context(self.ca_file, what="control_plane.ca_file")
        self._client = self._new_client(ctx)
        self.state: TrustState | None = None
        self.revoked_serials: frozenset[str] = self.EMPTY  # hot path: one attribute read, one set lookup
        self.revoked_jtis: frozenset[str] = self.EMPTY
        self.revoked_ids: Mapping[str, int] = self.NO_IDS  # SPIFFE ID -> before (one dict lookup)
        self.last_success_at: float | None = None
        self.fetches = 0
        self.fetch_failures = 0
        self.rejected_documents = 0
        self._consecutive_failures = 0
        self._subscribers: list[Callable[[TrustState], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()  # noqa: S311 - jitter only

    def _new_client(self, ctx: ssl.SSLContext) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout), follow_redirects=False, trust_env=False, verify=ctx
        )

    def _read_ca_digest(self) -> bytes:
        try:
            return hashlib.sha256(self.ca_file.read_bytes()).digest()
        except OSError:
            return b""

    async def _reload_ca_file(self) -> None:
        """While fetches fail: if ``ca_file`` changed (the control plane moved to a new root and the
        operator updated the file), verify the control plane with its new content from now on."""
        digest = self._read_ca_digest()
        if self._fixed_verify or not digest or digest == self._ca_digest:
            return
        try:
            ctx = ca_context(self.ca_file, what="control_plane.ca_file")
        except ConfigError as exc:
            log.warning("keeping the previous control-plane CAs: %s", exc)
            return
        old, self._client, self._ca_digest = self._client, self._new_client(ctx), digest
        await old.aclose()
        log.info("control_plane.ca_file %s changed: reloaded", self.ca_file)

    @classmethod
    def from_config(cls, cfg: GarrisonConfig, base_dir: Path) -> TrustPuller:
        if cfg.control_plane is None:
            raise ConfigError("trust distribution needs a control_plane section")
        return cls(cfg.control_plane, cfg.trust_domain, base_dir)

    @staticmethod
    def key_for(settings: ControlPlaneConfig, trust_domain: str, base_dir: Path) -> tuple[object, ...]:
        return (
            settings.base_url,
            str(_resolve(base_dir, settings.ca_file)),
            settings.bundle_refresh_seconds,
            trust_domain,
        )

    @staticmethod
    def needed_by(cfg: GarrisonConfig) -> bool:
        """Does anything in ``cfg`` depend on the trust document?"""
        return any(li.tls is not None and li.tls.client_trust_bundle for li in cfg.listeners) or any(
            i.revocations for i in cfg.issuers
        )

    @property
    def sequence(self) -> int | None:
        s = self.state
        return None if s is None else s.sequence

    def subscribe(self, fn: Callable[[TrustState], None]) -> None:
        self._subscribers.append(fn)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, *, wait: float | None = None) -> None:
        """First fetch, retried for up to ``wait`` seconds (default ``START_TIMEOUT_SECONDS``);
        ``ConfigError`` if none succeeded. Then the background refresh loop runs until ``close``.
        """
        wait = START_TIMEOUT_SECONDS if wait is None else wait
        deadline = time.monotonic() + wait
        delay = 0.2
        while not await self.fetch_once():
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConfigError(
                    f"cannot get the trust document from {self.url} (tried for {wait:.0f}s; see the log);"
                    " client certificates and token revocations cannot be checked without it"
                )
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 2.0)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="trust-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._next_delay())
            await self.fetch_once()

    def _next_delay(self) -> float:
        r = self.refresh_seconds
        if self._consecutive_failures == 0:
            return float(r * self._rng.uniform(0.9, 1.0))  # never later than the promised interval
        return float(min(r, 0.5 * 2 ** min(self._consecutive_failures, 10)) * self._rng.uniform(0.5, 1.0))

    # -- one fetch -------------------------------------------------------------------------------
    async def fetch_once(self) -> bool:
        """Fetch, validate and (if good and not older) install the document. False on any failure."""
        self.fetches += 1
        if self._consecutive_failures:
            await self._reload_ca_file()
        try:
            async with asyncio.timeout(self._timeout):  # one deadline for the whole fetch
                body = await self._get()
            state = parse_trust_document(body, self.trust_domain, time.time())
            old = self.state
            if old is not None and state.sequence < old.sequence:
                raise TrustDocumentError(
                    f"trust document has bundle_sequence {state.sequence}, older than {old.sequence}"
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # built for failure: nothing here may kill the refresh loop
            self.fetch_failures += 1
            self._consecutive_failures += 1
            if isinstance(exc, TrustDocumentError):
                self.rejected_documents += 1
            log.warning(
                "trust document fetch from %s failed (%d in a row; keeping %s): %s: %s",
                self.url,
                self._consecutive_failures,
                repr(self.state) if self.state is not None else "nothing",
                type(exc).__name__,
                exc,
            )
            return False
        self._install(state, old)
        return True

    def _install(self, state: TrustState, old: TrustState | None) -> None:
        self.state = state
        self.revoked_serials = state.revoked_serials
        self.revoked_jtis = state.revoked_jtis
        self.revoked_ids = state.revoked_ids
        self.last_success_at = state.fetched_at
        if self._consecutive_failures:
            log.info(
                "trust document from %s fetched again after %d failures", self.url, self._consecutive_failures
            )
        self._consecutive_failures = 0
        if old is not None and old.anchors_pem == state.anchors_pem:
            if (
                old.revoked_serials == state.revoked_serials
                and old.revoked_jtis == state.revoked_jtis
                and old.revoked_ids == state.revoked_ids
            ):
                return
            log.info("revocations now %r", state)
        else:
            log.info("trust bundle now %r", state)
        for fn in list(self._subscribers):
            try:
                fn(state)
            except Exception:
                log.exception("trust state subscriber failed")

    async def _get(self) -> bytes:
        async with self._client.stream("GET", self.url, headers=_HEADERS) as resp:
            if resp.status_code != 200:
                raise TrustDocumentError(f"HTTP {resp.status_code} from {self.url}")
            if resp.headers.get("content-encoding", "identity").lower() != "identity":
                raise TrustDocumentError("compressed trust document refused")
            length = resp.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self._max_bytes:
                raise TrustDocumentError(f"trust document of {length} bytes exceeds {self._max_bytes}")
            body = bytearray()
            async for chunk in resp.aiter_raw():
                body += chunk
                if len(body) > self._max_bytes:
                    raise TrustDocumentError(f"trust document exceeds {self._max_bytes} bytes")
            return bytes(body)

    def __repr__(self) -> str:
        return f"<TrustPuller {self.url} {self.state!r} failures={self.fetch_failures}>"


def _resolve(base_dir: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


__all__ = [
    "MAX_TRUST_BYTES",
    "TrustDocumentError",
    "TrustPuller",
    "TrustState",
    "parse_trust_document",
]
