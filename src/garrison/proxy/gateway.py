"""The gateway role: listeners + admin + telemetry + hot reload, around the pipeline engine.

Reload (SIGHUP or a change of the config file): the new file is validated and compiled first; only
then are the runtimes swapped, atomically per listener. A bad file keeps the old config running and
the reason is logged. Requests in flight finish on the config they started with.

Trust distribution: when a listener has ``client_trust_bundle`` or an issuer ``revocations``, the
gateway pulls the control plane's trust document (``proxy.trust``) before it listens (failing that is
a startup error) and keeps it fresh. The puller lives across reloads while ``control_plane`` keeps
the same URL, CA file and interval; otherwise a reload starts a new one (and is rejected if its
first fetch fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import ssl
import time
from pathlib import Path

from garrison.config.loader import load_config
from garrison.config.models import GarrisonConfig, Listener, TlsFiles
from garrison.errors import ConfigError, GarrisonError
from garrison.identity.authenticator import JwtAuthenticator
from garrison.pipeline.context import RequestContext
from garrison.proxy.build import LimiterCache, build_runtimes
from garrison.proxy.runtime import Runtime
from garrison.proxy.server import GatewayServer
from garrison.proxy.trust import TrustPuller, TrustState
from garrison.proxy.upstream import Pools
from garrison.reasons import Reason
from garrison.telemetry.admin import AdminServer, start_admin
from garrison.telemetry.decisions import DecisionLog, decision_record
from garrison.telemetry.metrics import GatewayMetrics

log = logging.getLogger("garrison.gateway")

OLD_AUTHN_GRACE_SECONDS = 30.0  # old JWKS providers stay up this long after a reload for in-flight requests


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _server_context(name: str, tls: TlsFiles, anchors_pem: bytes | None, bundle: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(tls.client_ca_file)
        if anchors_pem:
            ctx.load_verify_locations(cadata=anchors_pem.decode("ascii"))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"listener {name!r}: cannot load TLS files: {exc}") from None
    if tls.client_ca_file or bundle:
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    if bundle:
        # No session resumption: a resumed session skips chain verification, so it could outlive
        # the anchors it was verified against.
        ctx.options |= ssl.OP_NO_TICKET
        ctx.num_tickets = 0
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def ssl_context_for(listener: Listener) -> ssl.SSLContext | None:
    """The TLS context of a listener with fixed files (``client_trust_bundle`` ones use ``BundleTls``)."""
    tls = listener.tls
    if tls is None:
        return None
    return _server_context(listener.name, tls, None, False)


class BundleTls:
    """A listener whose client certificates are verified against the control plane's trust bundle.

    The server is created with ``base`` (which trusts no client CA at all: fail closed). Its
    ``sni_callback`` runs for every new handshake (with or without SNI) and moves the connection to
    ``current``, the context built from the latest anchors, so a new bundle applies to the next
    connection while connections already open keep theirs (their SVIDs are re-checked against the
    revocation list on every request).
    """

    def __init__(self, listener: Listener, state: TrustState) -> None:
        assert listener.tls is not None
        self.name = listener.name
        self._tls = listener.tls
        self.base = _server_context(self.name, self._tls, None, True)
        self.current = _server_context(self.name, self._tls, state.anchors_pem, True)
        self.sequence = state.sequence
        self._anchors_pem = state.anchors_pem
        self.base.sni_callback = self._pick

    def _pick(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        sslobj.context = self.current

    def update(self, state: TrustState) -> None:
        """New anchors for new connections. A context that cannot be built keeps the previous one."""
        if state.anchors_pem == self._anchors_pem:
            return
        try:
            self.current = _server_context(self.name, self._tls, state.anchors_pem, True)
        except ConfigError as exc:
            log.error("listener %s keeps trust bundle %d: %s", self.name, self.sequence, exc)
            return
        self.sequence = state.sequence
        self._anchors_pem = state.anchors_pem
        log.info(
            "listener %s: client certificates now verified against trust bundle %d", self.name, self.sequence
        )


class Gateway:
    """One gateway process (one worker). ``start`` binds; ``reload`` swaps config; ``stop`` drains."""

    def __init__(self, config: GarrisonConfig, *, config_path: str | Path | None = None) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.metrics = GatewayMetrics()
        self.decisions = DecisionLog.from_config(config.telemetry.decision_log)
        self.metrics.watch_decision_log(self.decisions)
        self.pools = Pools()
        self.limiters = LimiterCache()
        self.servers: dict[str, GatewayServer] = {}
        self.admin: AdminServer | None = None
        self.authn: JwtAuthenticator | None = None
        self.trust: TrustPuller | None = None
        self._bundle_tls: dict[str, BundleTls] = {}
        self.generation = 0
        self._fingerprint = b""
        self._watch_task: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()
        self._reload_lock = asyncio.Lock()
        self.ready = False

    # -- telemetry per request -----------------------------------------------------------------
    def observe(self, ctx: RequestContext, status: int, duration: float) -> None:
        deny = ctx.decision
        m = self.metrics
        route = ctx.route
        if deny is None:
            m.record_request("" if route is None else route.name, status, duration, "pipeline", "allowed")
        else:
            m.record_request("" if route is None else route.name, status, duration, deny.stage, deny.reason)
        if ctx.shadow_denials:
            for d in ctx.shadow_denials:
                m.record_shadow(d.stage, d.reason)
        self.decisions.record(decision_record(ctx, status, duration))

    def _upstream_error(self, route: str, reason: Reason) -> None:
        self.metrics.record_upstream_error(route, str(reason))

    def _reject(self, reason: Reason, client_ip: str, request_id: str) -> None:
        """A request refused while parsing (no RequestContext yet): still one record, one count."""
        self.metrics.record_request("", reason.status, 0.0, "hygiene", str(reason))
        self.decisions.record(
            (
                time.time(),
                request_id,
                "",
                "",
                "",
                reason.status,
                "hygiene",
                str(reason),
                None,
                None,
                client_ip,
                0.0,
                (),
            )
        )

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        """The config file's directory: relative paths in the config resolve against it."""
        return self.config_path.parent if self.config_path is not None else Path.cwd()

    async def _trust_for(self, cfg: GarrisonConfig) -> TrustPuller | None:
        """The puller ``cfg`` needs: the running one if its settings are unchanged, else a new one
        whose first fetch succeeded (``ConfigError`` otherwise), or None if nothing needs it."""
        if not TrustPuller.needed_by(cfg):
            return None
        if cfg.control_plane is None:  # the config model refuses this already; -O must not change that
            raise ConfigError("client_trust_bundle and issuer revocations need a control_plane section")
        if self.trust is not None and self.trust.key == TrustPuller.key_for(
            cfg.control_plane, cfg.trust_domain, self.base_dir
        ):
            return self.trust
        puller = TrustPuller.from_config(cfg, self.base_dir)
        try:
            await puller.start()
        except BaseException:
            await puller.close()
            raise
        return puller

    def _trust_changed(self, state: TrustState) -> None:
        for bt in self._bundle_tls.values():
            bt.update(state)
        # Every TLS listener refuses revoked SVIDs, whichever CA file it verifies clients with.
        for name, server in self.servers.items():
            if n := server.cut_revoked(state.revoked_serials, state.revoked_ids):
                log.info("listener %s: closed %d idle connection(s) of revoked SVIDs", name, n)

    def _use_trust(self, trust: TrustPuller | None) -> TrustPuller | None:
        """Make ``trust`` the gateway's puller; return the one it replaces (to close), if any."""
        old = self.trust
        if trust is old:
            return None
        self.trust = trust
        if trust is not None:
            trust.subscribe(self._trust_changed)
            if trust.state is not None:
                self._trust_changed(trust.state)
        for server in self.servers.values():  # plain-TCP listeners have no peer serial: no effect
            server.trust = trust
        self.metrics.set_trust_source(trust)
        return old

    async def _compile(
        self, cfg: GarrisonConfig, trust: TrustPuller | None
    ) -> tuple[dict[str, Runtime], JwtAuthenticator]:
        authn = JwtAuthenticator.build(
            cfg.issuers, cfg.trust_domain, base_dir=self.base_dir, revocations=trust
        )
        try:
            runtimes = build_runtimes(
                cfg,
                pools=self.pools,
                observe=self.observe,
                authenticators=(authn,),
                limiter_cache=self.limiters,
                generation=self.generation + 1,
                base_dir=self.base_dir,
            )
        except BaseException:
            await authn.close()
            raise
        for rt in runtimes.values():
            rt.on_upstream_error = self._upstream_error
            rt.on_reject = self._reject
        await authn.start()
        return runtimes, authn

    def _register_key_sources(self, authn: JwtAuthenticator) -> None:
        self.metrics.set_key_sources(authn.providers)  # issuers dropped by a reload disappear

    async def start(self) -> None:
        trust = await self._trust_for(self.config)  # fail closed: no listener before the first document
        try:
            runtimes, authn = await self._compile(self.config, trust)
        except BaseException:
            if trust is not None:
                await trust.close()
            raise
        self._use_trust(trust)
        self.generation += 1
        self.authn = authn
        self._register_key_sources(authn)
        self.metrics.declare_routes(r.name for r in self.config.routes)
        try:
            for listener in self.config.listeners:
                ssl_context = None
                if listener.tls is not None and listener.tls.client_trust_bundle:
                    if trust is None or trust.state is None:  # pragma: no cover - needed_by() saw it
                        raise ConfigError(f"listener {listener.name!r}: no trust bundle")
                    bt = self._bundle_tls[listener.name] = BundleTls(listener, trust.state)
                    ssl_context = bt.base
                else:
                    ssl_context = ssl_context_for(listener)
                server = GatewayServer(runtimes[listener.name], ssl_context=ssl_context)
                server.trust = trust  # revoked SVIDs are refused on every TLS listener
                server.on_connection_opened = self.metrics.connection_opened
                server.on_connection_closed = self.metrics.connection_closed
                host, port = _split(listener.address)
                await server.start(host, port)
                self.servers[listener.name] = server
            if self.config.telemetry.admin is not None:
                self.admin = await start_admin(
                    self.config.telemetry.admin.address, self.metrics.registry, lambda: self.ready
                )
        except OSError as exc:
            await self.stop(grace=0)
            raise ConfigError(f"cannot listen: {exc.strerror or exc}") from None
        if self.config_path is not None:
            self._fingerprint = self._read_fingerprint()
        self.ready = True
        log.info(
            "gateway up: %s; admin %s",
            ", ".join(f"{n}=127.0.0.1:{s.port}" for n, s in self.servers.items()),
            self.admin.port if self.admin else "off",
        )

    def port(self, listener: str | None = None) -> int:
        name = listener or next(iter(self.servers))
        return self.servers[name].port

    async def reload(self, cfg: GarrisonConfig | None = None) -> bool:
        """Validate, compile, then swap. Returns False (old config kept, reason logged) on any error."""
        async with self._reload_lock:
            try:
                if cfg is None:
                    if self.config_path is None:
                        raise ConfigError("no config file to reload from")
                    cfg = load_config(self.config_path)
                old_listeners = {(x.name, x.address, x.tls) for x in self.config.listeners}
                new_listeners = {(x.name, x.address, x.tls) for x in cfg.listeners}
                if old_listeners != new_listeners:
                    raise ConfigError("listener names, addresses or TLS changed: these need a restart")
                trust = await self._trust_for(cfg)
                try:
                    runtimes, authn = await self._compile(cfg, trust)
                except BaseException:
                    if trust is not None and trust is not self.trust:
                        await trust.close()
                    raise
            except GarrisonError as exc:
                log.error("config reload rejected; the running config stays in force:\n%s", exc)
                self.metrics.record_reload(False)
                return False
            self.generation += 1
            old_trust = self._use_trust(trust)
            for name, server in self.servers.items():
                server.swap(runtimes[name])
            old, self.authn, self.config = self.authn, authn, cfg
            if old_trust is not None:
                await old_trust.close()  # its last state stays readable by requests still in flight
            self._register_key_sources(authn)
            self.metrics.declare_routes(r.name for r in cfg.routes)
            if old is not None:
                t = asyncio.get_running_loop().create_task(self._retire(old))
                self._retired.add(t)
                t.add_done_callback(self._retired.discard)
            self.metrics.record_reload(True)
            log.info("config reloaded (generation %d)", self.generation)
            return True

    async def _retire(self, authn: JwtAuthenticator) -> None:
        try:
            await asyncio.sleep(OLD_AUTHN_GRACE_SECONDS)
        finally:  # also when stop() cancels the wait: its JWKS clients must not leak
            await authn.close()

    def _read_fingerprint(self) -> bytes:
        assert self.config_path is not None
        try:
            return hashlib.sha256(self.config_path.read_bytes()).digest()
        except OSError:
            return b""

    async def watch(self, interval: float = 1.0) -> None:
        """Reload when the config file's content changes (polling: works on every filesystem)."""
        while True:
            await asyncio.sleep(interval)
            fp = self._read_fingerprint()
            if fp and fp != self._fingerprint:
                self._fingerprint = fp
                await self.reload()

    def start_watching(self, interval: float = 1.0) -> None:
        if self.config_path is not None and self._watch_task is None:
            self._watch_task = asyncio.get_running_loop().create_task(self.watch(interval))

    async def stop(self, grace: float = 10.0) -> None:
        self.ready = False
        if self._watch_task is not None:
            self._watch_task.cancel()
        await asyncio.gather(*(s.shutdown(grace) for s in self.servers.values()))
        self.pools.close()
        if self.admin is not None:
            await self.admin.close()
        retired = list(self._retired)
        for t in retired:
            t.cancel()
        await asyncio.gather(*retired, return_exceptions=True)
        if self.authn is not None:
            await self.authn.close()
        if self.trust is not None:
            await self.trust.close()
        await asyncio.get_running_loop().run_in_executor(None, self.decisions.close)


async def serve(config_path: str | Path, *, watch: bool = True) -> int:
    """Run a gateway until SIGTERM/SIGINT; SIGHUP reloads the config and reopens the decision log."""
    cfg = load_config(config_path)
    gw = Gateway(cfg, config_path=config_path)
    await gw.start()
    if watch:
        gw.start_watching()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    pending: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        gw.decisions.reopen()
        task = loop.create_task(gw.reload())
        pending.add(task)
        task.add_done_callback(pending.discard)

    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        loop.add_signal_handler(signal.SIGINT, stopping.set)
    await stopping.wait()
    log.info("shutting down: draining in-flight requests")
    await gw.stop()
    return 0


__all__ = ["BundleTls", "Gateway", "serve", "ssl_context_for"]
