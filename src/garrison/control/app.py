"""The control-plane HTTP API (Starlette): authorization and the calls on ``ControlPlane``.

Every decision is the ``ControlPlane``'s (CA, token service, registry); this module turns HTTP into
calls on it. Blocking work (store, signing) runs in the thread pool so one slow transaction never
stalls the event loop; the token endpoint on SQLite is the measured exception (D24). The TLS peer
certificate arrives, already chain-verified, in the ASGI TLS extension
(``scope["extensions"]["tls"]``, filled by ``protocol.ControlHttpProtocol``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs

from cryptography import x509
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from garrison.control.errors import NO_STORE, ApiError, translate
from garrison.control.openapi import ROUTES, openapi_document
from garrison.control.parse import (
    Handler,
    api,
    field_seconds,
    field_str,
    json_response,
    media_type,
    peer_certificate,
    query_bool,
    read_body,
    read_json,
)
from garrison.control.plane import ControlPlane
from garrison.errors import IdentityError, KeySetError, StoreBusy
from garrison.identity.ca.certs import serial_hex
from garrison.identity.ca.svid import IssuedSvid
from garrison.identity.oauth.client_auth import ClientAuthContext, svid_uri
from garrison.identity.oauth.sql_clients import registration_from_json, registration_to_json
from garrison.reasons import Reason

log = logging.getLogger("garrison.control.api")

MAX_FORM_FIELDS: Final = 32
CACHEABLE: Final = {"Cache-Control": "public, max-age=60"}  # JWKS, metadata, bundle: new keys pre-publish
SERIAL: Final = re.compile(r"[0-9a-fA-F]{1,64}")
_SERVER_ERROR: Final = b'{"error":"server_error"}'
INLINE_LOCK_WAIT_MS: Final = 50  # on the event loop, SQLite's write lock is waited for this long at most


def svid_object(plane: ControlPlane, svid: IssuedSvid) -> dict[str, Any]:
    """The API's SVID object, with the roots of the bundle that was current when it was signed."""
    return {
        "spiffe_id": str(svid.spiffe_id),
        "serial": svid.serial,
        "not_after": svid.not_after,
        "chain_pem": svid.chain_pem.decode(),
        "bundle_pem": plane.trust_anchors_pem(svid.bundle_document or None).decode(),
    }


# -- the API ----------------------------------------------------------------------------------------
class ControlPlaneApi:
    """The handlers, bound to one ``ControlPlane``. ``endpoints`` is the route table."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.endpoints = ROUTES
        # client_credentials requests run on the event loop with the embedded SQLite store: their
        # work is CPU (verify, sign: ~150 µs) plus one local autocommit insert, and the thread-pool
        # hop cost ~90 µs (~15%) of a token request (D24). The insert waits at most
        # INLINE_LOCK_WAIT_MS for SQLite's write lock on the loop; past that the request is redone
        # in the pool (nothing was written). Other grants, and a network database, use the pool.
        self.inline_tokens = plane.store.engine.dialect.name == "sqlite"
        self._loop_waits_bounded = False
        self.openapi_bytes = json.dumps(
            openapi_document(self.endpoints, plane.settings.base_url), separators=(",", ":")
        ).encode()

    # -- authorization ------------------------------------------------------------------------------
    async def admin(self, request: Request) -> str:
        """The admin actor (``"admin-token"`` or the SVID's SPIFFE ID); 403 ``admin_required`` otherwise.

        A presented but wrong bearer token is refused even if a client certificate is also present.
        Every admin call is audited, so none is served while the audit log is down (503).
        """
        self.check_audit()
        auth = request.headers.get("authorization")
        if auth is not None:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer" and value.strip() and self.plane.is_admin_token(value.strip()):
                return "admin-token"
            raise ApiError(Reason.ADMIN_REQUIRED)
        cert = peer_certificate(request)
        if cert is not None:
            actor = await run_in_threadpool(self.plane.is_admin_certificate, cert)
            if actor is not None:
                return actor
        raise ApiError(Reason.ADMIN_REQUIRED)

    def audit(self, action: str, actor: str, **fields: Any) -> None:
        """Record an action. Fail closed: an audit write error answers 503 (``AuditError`` is a
        ``StoreError``), and ``check_audit`` then refuses every audited call until the log is fixed."""
        self.plane.audit.append(action, actor=actor, **fields)

    def check_audit(self) -> None:
        """Refuse an audited call up front when the audit log can take no more records."""
        problem = getattr(self.plane.audit, "problem", None)
        if problem is not None:
            log.error("refusing an audited request: audit log %s", problem)
            raise ApiError(Reason.STORE_UNAVAILABLE, "the audit log is unavailable")

    # -- public -----------------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def openapi(self, request: Request) -> Response:
        return Response(self.openapi_bytes, 200, CACHEABLE, media_type="application/json")

    async def metadata(self, request: Request) -> Response:
        body = self.plane.tokens.metadata.body_bytes
        return Response(body, 200, CACHEABLE, media_type="application/json")

    async def jwks(self, request: Request) -> Response:
        return json_response(self.plane.tokens.jwks(), headers=CACHEABLE)

    async def bundle(self, request: Request) -> Response:
        doc = await run_in_threadpool(self.plane.ca.bundle_document)
        return Response(doc.encode(), 200, CACHEABLE, media_type="application/json")

    async def trust(self, request: Request) -> Response:
        return json_response(await run_in_threadpool(self.plane.trust_document))

    # -- OAuth2 (RFC 6749 §5 bodies from the token service) ------------------------------------------
    async def _oauth(self, request: Request, call: Callable[..., Any], inline: bool = False) -> Response:
        try:
            if media_type(request) != "application/x-www-form-urlencoded":
                return _oauth_error(400, "send Content-Type: application/x-www-form-urlencoded")
            raw = await read_body(request)
            try:
                form = parse_qs(
                    raw.decode("utf-8", "strict"),
                    keep_blank_values=True,
                    strict_parsing=bool(raw),
                    max_num_fields=MAX_FORM_FIELDS,
                )
            except (UnicodeDecodeError, ValueError):
                return _oauth_error(400, "malformed form body")
            ctx = ClientAuthContext(peer_certificate(request))
            if inline and form.get("grant_type") == ["client_credentials"]:
                if not self._loop_waits_bounded:  # this is the loop's thread: bound its lock waits
                    self.plane.oauth_state.bounded_waits(INLINE_LOCK_WAIT_MS)
                    self._loop_waits_bounded = True
                try:
                    resp = call(form, ctx, self.plane.clock())
                except StoreBusy:
                    resp = await run_in_threadpool(call, form, ctx, self.plane.clock())
            else:
                resp = await run_in_threadpool(call, form, ctx, self.plane.clock())
            return json_response(resp.body(), resp.status, resp.headers)
        except ApiError as exc:
            return _oauth_error(exc.status, exc.reason.message)
        except Exception:
            log.exception("token service request failed")
            return Response(_SERVER_ERROR, 500, NO_STORE, media_type="application/json")

    async def token(self, request: Request) -> Response:
        return await self._oauth(request, self.plane.tokens.token_endpoint.handle, self.inline_tokens)

    async def introspect(self, request: Request) -> Response:
        return await self._oauth(request, self.plane.tokens.introspection.handle)

    async def revoke_token(self, request: Request) -> Response:
        return await self._oauth(request, self.plane.tokens.revocation.handle)

    # -- SVIDs ---------------------------------------------------------------------------------------
    async def join(self, request: Request) -> Response:
        self.check_audit()  # a join burns its token: never without a record of it
        doc = await read_json(request, frozenset({"join_token", "csr"}))
        token = field_str(doc, "join_token", max_len=256) or ""
        csr = field_str(doc, "csr") or ""

        def work() -> dict[str, Any]:
            svid = self.plane.ca.redeem_join_token(token, csr)
            self.audit("svid.join", "join-token", spiffe_id=str(svid.spiffe_id), serial=svid.serial)
            return svid_object(self.plane, svid)

        return json_response(await run_in_threadpool(work), 201)

    async def renew(self, request: Request) -> Response:
        cert = peer_certificate(request)
        if cert is None:
            raise ApiError(
                Reason.CLIENT_CERT_REQUIRED, "present the current SVID as the TLS client certificate"
            )
        doc = await read_json(request, frozenset({"csr"}))
        csr = field_str(doc, "csr") or ""

        def work() -> dict[str, Any]:
            return svid_object(self.plane, self.plane.ca.renew(csr, [cert]))

        try:
            return json_response(await run_in_threadpool(work), 201)
        except Exception as exc:  # a refused renewal is 403: the caller's own credential failed
            raise translate(exc, refusal_status=403) from None

    async def list_svids(self, request: Request) -> Response:
        await self.admin(request)
        sid = request.query_params.get("spiffe_id")
        valid = query_bool(request, "valid")

        def work() -> list[dict[str, Any]]:
            now = self.plane.clock()
            recs = self.plane.store.list_svids(spiffe_id=sid, valid_at=now if valid else None)
            return [
                {
                    "serial": r.serial,
                    "spiffe_id": r.spiffe_id,
                    "not_before": r.not_before,
                    "not_after": r.not_after,
                    "issued_at": r.issued_at,
                    "revoked_at": r.revoked_at,
                    "revoke_reason": None,  # not kept on the SVID record (see the revocations table)
                }
                for r in recs
                if not (valid and r.revoked_at is not None)
            ]

        return json_response({"svids": await run_in_threadpool(work)})

    async def issue_svid(self, request: Request) -> Response:
        actor = await self.admin(request)
        doc = await read_json(request, frozenset({"csr", "ttl_seconds", "server_names"}))
        csr = field_str(doc, "csr") or ""
        ttl = field_seconds(doc, "ttl_seconds")
        names = doc.get("server_names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) and 0 < len(n) <= 253 for n in names):
            raise ApiError(
                Reason.VALIDATION_FAILED, "server_names must be a list of DNS names or IP addresses"
            )

        def work() -> dict[str, Any]:
            try:
                svid = self.plane.ca.issue(csr, ttl=ttl, server_names=tuple(names))
            except ValueError as exc:  # a server name that is neither a DNS name nor an IP
                raise ApiError(Reason.VALIDATION_FAILED, str(exc)) from None
            self.audit("svid.issue", actor, spiffe_id=str(svid.spiffe_id), serial=svid.serial)
            return svid_object(self.plane, svid)

        return json_response(await run_in_threadpool(work), 201)

    async def revoke_svids(self, request: Request) -> Response:
        actor = await self.admin(request)
        doc = await read_json(request, frozenset({"serial", "spiffe_id", "reason"}))
        serial = field_str(doc, "serial", required=False, max_len=64)
        sid = field_str(doc, "spiffe_id", required=False, max_len=2048)
        reason = field_str(doc, "reason", required=False, max_len=200) or ""
        if (serial is None) == (sid is None):
            raise ApiError(Reason.VALIDATION_FAILED, "give exactly one of serial, spiffe_id")

        def work() -> list[str]:
            if serial is not None:
                if not SERIAL.fullmatch(serial):
                    raise ApiError(Reason.VALIDATION_FAILED, "serial must be hexadecimal")
                canon = format(int(serial, 16), "x")
                done = [canon] if self.plane.ca.revoke_serial(canon, reason=reason) else []
            else:
                try:
                    done = self.plane.ca.revoke_spiffe_id(sid or "", reason=reason)
                except IdentityError as exc:
                    raise ApiError(Reason.VALIDATION_FAILED, f"spiffe_id: {exc}") from None
            if done and serial is not None:
                self.audit("svid.revoke", actor, serials=done, spiffe_id=sid, reason=reason)
            elif sid is not None:
                # Bounded however many SVIDs the ID had (review H2: the 64 KiB record cap). Written
                # even when none was live: the ID revocation is recorded and its join tokens burned.
                digest = hashlib.sha256("\n".join(sorted(done)).encode()).hexdigest()
                self.audit(
                    "svid.revoke", actor, spiffe_id=sid, count=len(done), serials_sha256=digest, reason=reason
                )
            return done

        revoked = await run_in_threadpool(work)
        if not revoked:
            raise ApiError(Reason.NOT_FOUND, "no unrevoked, unexpired SVID matched")
        return json_response({"revoked": revoked})

    async def join_tokens(self, request: Request) -> Response:
        actor = await self.admin(request)
        doc = await read_json(request, frozenset({"spiffe_id", "ttl_seconds"}))
        sid = field_str(doc, "spiffe_id", max_len=2048) or ""
        ttl = field_seconds(doc, "ttl_seconds")

        def work() -> dict[str, Any]:
            now = self.plane.clock()
            try:
                token = self.plane.ca.create_join_token(sid, ttl=ttl, now=now)
            except (IdentityError, ValueError) as exc:  # bad SPIFFE ID or TTL: the text names the defect
                raise ApiError(Reason.VALIDATION_FAILED, str(exc)) from None
            expires = now + (ttl if ttl is not None else self.plane.settings.join_token_ttl_seconds)
            self.audit("join_token.create", actor, spiffe_id=sid, expires_at=expires)
            return {"join_token": token, "spiffe_id": sid, "expires_at": expires}

        return json_response(await run_in_threadpool(work), 201)

    # -- OAuth clients ---------------------------------------------------------------------------------
    async def list_clients(self, request: Request) -> Response:
        await self.admin(request)
        cid = request.query_params.get("client_id")
        if cid is not None:
            reg = self.plane.clients.get(cid)
            if reg is None:
                raise ApiError(Reason.NOT_FOUND, "no such client")
            regs = [reg]
        else:
            regs = self.plane.clients.list()
        return json_response({"clients": [registration_to_json(r) for r in regs]})

    async def put_client(self, request: Request) -> Response:
        actor = await self.admin(request)
        doc = await read_json(request)  # registration_from_json names unknown fields itself
        try:
            reg = registration_from_json(doc)
        except ValueError as exc:  # the message names the field and its defect
            raise ApiError(Reason.VALIDATION_FAILED, str(exc)) from None

        def work() -> bool:
            created = self.plane.clients.register(reg)
            self.audit(
                "client.register",
                actor,
                client_id=reg.client_id.value,
                auth_method=reg.auth_method.value,
                created=created,
            )
            return created

        created = await run_in_threadpool(work)
        return json_response(registration_to_json(reg), 201 if created else 200)

    async def delete_client(self, request: Request) -> Response:
        actor = await self.admin(request)
        cid = request.query_params.get("client_id")
        if not cid:
            raise ApiError(Reason.VALIDATION_FAILED, "client_id query parameter is required")

        def work() -> bool:
            gone = self.plane.clients.remove(cid)
            if gone:
                self.audit("client.remove", actor, client_id=cid)
            return gone

        if not await run_in_threadpool(work):
            raise ApiError(Reason.NOT_FOUND, "no such client")
        return Response(status_code=204, headers=NO_STORE)

    async def rotate_signing_key(self, request: Request) -> Response:
        actor = await self.admin(request)

        def work() -> str:
            try:
                kid = self.plane.rotate_signing_key()
            except KeySetError as exc:  # too soon: the text says how long the current key has signed
                raise ApiError(Reason.CONFLICT, str(exc)) from None
            self.audit("signing_key.rotate", actor, current_kid=kid)
            return kid

        return json_response({"current_kid": await run_in_threadpool(work)})


def _oauth_error(status: int, description: str) -> Response:
    # RFC 6749 §5.2 body for transport-level defects the token service never sees.
    return json_response({"error": "invalid_request", "error_description": description}, status)


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        return translate(exc).response()
    if exc.status_code == 405:
        return ApiError(Reason.METHOD_NOT_ALLOWED, headers=dict(exc.headers or {})).response()
    if exc.status_code == 404:
        return ApiError(Reason.NOT_FOUND).response()
    return ApiError(Reason.BAD_REQUEST).response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    return translate(exc).response()


def _dispatch(handlers: dict[str, Handler]) -> Handler:
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch


class RefuseRevokedPeers:
    """ASGI middleware: a connection presenting a revoked SVID is refused on every endpoint.

    The TLS layer verified the chain but knows nothing of revocation; this looks the serial up in
    the store. ``/oauth2/*`` answer RFC 6749 ``invalid_client`` (401); everything else 403
    ``svid_revoked``. Without it a revoked workload could still get tokens by tls_client_auth.
    """

    def __init__(self, app: Any, plane: ControlPlane) -> None:
        self.app = app
        self.plane = plane

    def _refusal(self, cert: x509.Certificate) -> Reason | None:
        """Why this chain-verified peer certificate may not be used here, or None.

        It must be an SVID this CA issued (its serial recorded, for the same SPIFFE ID): a
        certificate from another intermediate under a shared root is never usable — and could
        not be revoked either. Then revocation, by serial or by SPIFFE ID since its issuance.
        """
        rec = self.plane.store.get_svid(serial_hex(cert))
        if rec is None or rec.spiffe_id != svid_uri(cert):
            return Reason.CLIENT_CERT_UNKNOWN
        return Reason.SVID_REVOKED if self.plane.ca.is_revoked(cert) else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            chain = (scope.get("extensions") or {}).get("tls", {}).get("client_cert_chain") or []
            if chain:
                cert = x509.load_pem_x509_certificate(chain[0].encode())
                scope["garrison.peer_cert"] = cert
                refusal = await run_in_threadpool(self._refusal, cert)
                if refusal is not None:
                    if scope.get("path", "").startswith("/oauth2/"):
                        doc = {"error": "invalid_client", "error_description": refusal.message}
                        body = json.dumps(doc)
                        status = 401
                    else:
                        body = json.dumps({"error": refusal.value, "message": refusal.message})
                        status = refusal.status
                    await Response(body.encode(), status, NO_STORE, media_type="application/json")(
                        scope, receive, send
                    )
                    return
        await self.app(scope, receive, send)


def build_app(plane: ControlPlane) -> Starlette:
    """The Starlette app of ``plane``'s API. Routes come from ``openapi.ROUTES`` only."""
    api_ = ControlPlaneApi(plane)
    by_path: dict[str, dict[str, Handler]] = {}
    for ep in api_.endpoints:
        bound: Handler = getattr(api_, ep.handler)
        # /oauth2/* answer RFC 6749 bodies themselves; every other handler gets the /v1 error mapping.
        handler = bound if ep.body == "form" else api(bound)
        for method in ep.methods:
            by_path.setdefault(ep.path, {})[method] = handler
    # One Route per path, so a 405 names every method of the path in its Allow header.
    routes = [Route(path, _dispatch(handlers), methods=list(handlers)) for path, handlers in by_path.items()]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
        middleware=[Middleware(RefuseRevokedPeers, plane=plane)],
    )
    app.state.api = api_
    return app


__all__ = ["ControlPlaneApi", "build_app", "svid_object"]
