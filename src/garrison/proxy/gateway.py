"""The gateway role: listeners + admin + telemetry + hot reload, around the pipeline engine.

Reload (SIGHUP or a change of the config file): the new file is validated and compiled first; only
then are the runtimes swapped, atomically per listener. A bad file keeps the old config running and
the reason is logged. Requests in flight finish on the config they started with.
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
from garrison.config.models import GarrisonConfig, Listener
from garrison.errors import ConfigError, GarrisonError
from garrison.identity.authenticator import JwtAuthenticator
from garrison.pipeline.context import RequestContext
from garrison.proxy.build import LimiterCache, build_runtimes
from garrison.proxy.runtime import Runtime
from garrison.proxy.server import GatewayServer
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


def ssl_context_for(listener: Listener) -> ssl.SSLContext | None:
    tls = listener.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(tls.client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"listener {listener.name!r}: cannot load TLS files: {exc}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


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
    async def _compile(self, cfg: GarrisonConfig) -> tuple[dict[str, Runtime], JwtAuthenticator]:
        authn = JwtAuthenticator.build(cfg.issuers, cfg.trust_domain)
        try:
            runtimes = build_runtimes(
                cfg,
                pools=self.pools,
                observe=self.observe,
                authenticators=(authn,),
                limiter_cache=self.limiters,
                generation=self.generation + 1,
                base_dir=self.config_path.parent if self.config_path is not None else None,
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
        runtimes, authn = await self._compile(self.config)
        self.generation += 1
        self.authn = authn
        self._register_key_sources(authn)
        self.metrics.declare_routes(r.name for r in self.config.routes)
        try:
            for listener in self.config.listeners:
                server = GatewayServer(runtimes[listener.name], ssl_context=ssl_context_for(listener))
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
                runtimes, authn = await self._compile(cfg)
            except GarrisonError as exc:
                log.error("config reload rejected; the running config stays in force:\n%s", exc)
                self.metrics.record_reload(False)
                return False
            self.generation += 1
            for name, server in self.servers.items():
                server.swap(runtimes[name])
            old, self.authn, self.config = self.authn, authn, cfg
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
        await asyncio.sleep(OLD_AUTHN_GRACE_SECONDS)
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
        for t in list(self._retired):
            t.cancel()
        if self.authn is not None:
            await self.authn.close()
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


__all__ = ["Gateway", "serve", "ssl_context_for"]
