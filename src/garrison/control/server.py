"""Serves the control-plane API over TLS (uvicorn, httptools) and runs the maintenance tick.

Owns the listening socket, the TLS contexts (server SVID + client-certificate trust anchors, both
rotated without a restart) and the maintain thread. The connection protocol (LIST, head limits,
the TLS extension) is ``protocol.ControlHttpProtocol``. Never logs requests (access logs off) nor
key material.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import uvicorn
from starlette.applications import Starlette

from garrison.config.models import ControlPlaneConfig
from garrison.control.app import build_app
from garrison.control.lock import RunningLock
from garrison.control.plane import AuditSink, ControlPlane, NullAudit, ServerCredentials, resolve
from garrison.control.protocol import ControlHttpProtocol
from garrison.errors import GarrisonError
from garrison.telemetry.admin import split_address

log = logging.getLogger("garrison.control.server")

GRACEFUL_SHUTDOWN_SECONDS: Final = 5
MAX_CONCURRENCY: Final = 1024  # connections + tasks; beyond it uvicorn answers 503 at once
KEEP_ALIVE_SECONDS: Final = 5


# -- TLS contexts that follow rotation ---------------------------------------------------------------
class ServingTls:
    """The server's SSLContexts. A handshake gets the newest one through ``sni_callback``.

    OpenSSL calls the servername callback on every ClientHello (with ``None`` when the client sent
    no SNI); switching ``SSLObject.context`` there changes the certificate *and* the trust store
    that verifies the client. ``refresh`` (maintain thread) builds a new context when the trust
    bundle's sequence changes or the serving SVID has passed half its life.
    """

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self._dir = Path(tempfile.mkdtemp(prefix="garrison-cp-tls-"))
        os.chmod(self._dir, 0o700)
        self._lock = threading.Lock()
        self.sequence = -1
        self.renew_at = 0.0
        self.serial = ""
        self.current = self._build()
        self.listener = self.current
        self.listener.sni_callback = self._pick

    def _build(self) -> ssl.SSLContext:
        last = self.plane.store.latest_bundle()
        creds = self.plane.server_credentials()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_OPTIONAL  # endpoints that need a client certificate demand it
        ctx.load_verify_locations(cadata=self.plane.trust_anchors_pem().decode())
        self._load(ctx, creds)
        ctx.set_alpn_protocols(["http/1.1"])
        # No session resumption: a resumed session skips client-certificate verification against
        # the current anchors (the ticket keys belong to the first context and never rotate).
        ctx.options |= ssl.OP_NO_TICKET
        ctx.num_tickets = 0
        now = self.plane.clock()
        self.sequence = last.sequence if last is not None else -1
        self.renew_at = now + (creds.not_after - now) / 2
        self.serial = creds.serial
        return ctx

    def _load(self, ctx: ssl.SSLContext, creds: ServerCredentials) -> None:
        # ssl can only load a key from a file: 0600 files in a 0700 directory, deleted once loaded.
        cert, key = self._dir / "server.pem", self._dir / "server.key"
        for path, data in ((cert, creds.chain_pem), (key, creds.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        try:
            ctx.load_cert_chain(cert, key)
        finally:
            key.unlink(missing_ok=True)
            cert.unlink(missing_ok=True)

    def _pick(self, sslobj: ssl.SSLObject, server_name: str | None, listener: ssl.SSLContext) -> None:
        ctx = self.current
        if ctx is not listener:
            sslobj.context = ctx

    def refresh(self, now: float | None = None) -> bool:
        """Rebuild when the bundle moved or the certificate is half-way through its life."""
        now = self.plane.clock() if now is None else now
        last = self.plane.store.latest_bundle()
        seq = last.sequence if last is not None else -1
        if seq == self.sequence and now < self.renew_at:
            return False
        with self._lock:
            ctx = self._build()
            self.current = ctx
        log.info("control-plane TLS context renewed: bundle %s, server SVID %s", self.sequence, self.serial)
        return True

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<ServingTls bundle={self.sequence} serial={self.serial}>"


# -- the server --------------------------------------------------------------------------------------
class ControlPlaneServer:
    """The API on ``host:port`` (default: ``control_plane.address``; port 0 = a free port, see ``port``)."""

    def __init__(self, plane: ControlPlane, host: str | None = None, port: int | None = None) -> None:
        dhost, dport = split_address(plane.settings.address)
        self.plane = plane
        self.host = host if host is not None else dhost
        self.port = port if port is not None else dport
        self.tls: ServingTls | None = None
        self.app: Starlette | None = None
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None
        self._main: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._maintainer: threading.Thread | None = None
        self._running: RunningLock | None = None

    async def start(self) -> None:
        quiet = logging.getLogger("uvicorn.error")  # its start/stop chatter; our own log says it
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)
        # One running control plane per store, and no KEK rotation under it (control/lock.py).
        self._running = RunningLock(self.plane.store, "a second control plane")
        await asyncio.to_thread(self._running.acquire)
        tls = self.tls = await asyncio.to_thread(ServingTls, self.plane)
        self.app = build_app(self.plane)
        config = uvicorn.Config(
            self.app,
            http=ControlHttpProtocol,
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # nothing in front of the control plane may rewrite client or scheme
            date_header=True,
            ssl_context_factory=lambda _config, _default: tls.listener,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            limit_concurrency=MAX_CONCURRENCY,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        config.load()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when proto says TCP;
        # without it every response waits ~40 ms for the client's delayed ACK (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.setblocking(False)
            server = uvicorn.Server(config)
            server.lifespan = config.lifespan_class(config)
            await server.startup(sockets=[sock])
        except BaseException:
            sock.close()
            tls.close()
            raise
        self._sock, self._server = sock, server
        self.port = sock.getsockname()[1]
        self._main = asyncio.create_task(server.main_loop())
        self._stop.clear()
        self._maintainer = threading.Thread(
            target=self._maintain_loop, name="garrison-cp-maintain", daemon=True
        )
        self._maintainer.start()
        log.info("control plane listening on %s:%d (%s)", self.host, self.port, self.plane.settings.base_url)

    def _maintain_loop(self) -> None:
        period = self.plane.settings.maintain_seconds
        while not self._stop.wait(period):
            self.maintain_once()

    def maintain_once(self) -> None:
        """One tick: ``plane.maintain()`` then TLS refresh. Errors are logged, never fatal."""
        try:
            for line in self.plane.maintain():
                log.info("maintain: %s", line)
        except Exception as exc:
            log.error("maintain failed: %s: %s", type(exc).__name__, exc)
        try:
            if self.tls is not None:
                self.tls.refresh()
        except Exception as exc:
            log.error("TLS context refresh failed: %s: %s", type(exc).__name__, exc)

    async def stop(self) -> None:
        if self._running is not None:
            self._running.release()
            self._running = None
        self._stop.set()
        server, main = self._server, self._main
        if server is not None and main is not None:
            server.should_exit = True
            await main
            await server.shutdown(sockets=[self._sock] if self._sock is not None else None)
        if self._maintainer is not None:
            await asyncio.to_thread(self._maintainer.join, 30)
        if self.tls is not None:
            self.tls.close()
        self._server = self._main = self._sock = self._maintainer = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<ControlPlaneServer {self.host}:{self.port} {'running' if self._server else 'stopped'}>"


def open_audit(plane_dir: Path, audit_log: str | None) -> tuple[AuditSink, Callable[[], None]]:
    """The hash-chained audit log if ``garrison.telemetry.audit`` is available, else ``NullAudit``."""
    if audit_log is None:
        return NullAudit(), lambda: None
    try:
        from garrison.telemetry.audit import AuditLog
    except ImportError:
        log.warning("garrison.telemetry.audit is not available: admin actions are not audited")
        return NullAudit(), lambda: None
    audit = AuditLog.open(resolve(plane_dir, audit_log))
    return audit, audit.close


async def serve(config_path: Path) -> int:
    """``garrison control-plane -c FILE``: serve until SIGTERM/SIGINT, then stop gracefully."""
    from garrison.config.loader import load_config

    try:
        config = load_config(config_path)
        base_dir = Path(config_path).resolve().parent
        settings = config.control_plane
        audit, close_audit = open_audit(base_dir, (settings or ControlPlaneConfig()).audit_log)
        try:
            plane = await asyncio.to_thread(ControlPlane.open, config, base_dir, audit=audit)
        except BaseException:
            close_audit()
            raise
    except GarrisonError as exc:
        print(f"garrison control-plane: {exc}", file=sys.stderr)
        return 1
    server = ControlPlaneServer(plane)
    if server.port == 0:
        log.warning("control_plane.address has port 0: the issuer %s will not match", plane.settings.base_url)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        await server.start()
        started = time.monotonic()
        await done.wait()
        log.info("control plane stopping after %.0fs", time.monotonic() - started)
        await server.stop()
    except OSError as exc:
        print(
            f"garrison control-plane: cannot listen on {server.host}:{server.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        plane.close()
        close_audit()
    return 0


__all__ = ["ControlPlaneServer", "ServingTls", "open_audit", "serve"]
