"""Compile a validated GarrisonConfig into per-listener Runtimes: router, chains, limiters, policy index.

Everything expensive happens here, once per load; the request path only reads what this builds.
Any problem is a ConfigError naming what is wrong, so a bad reload keeps the old config running.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

from garrison.config.models import GarrisonConfig, RateLimitRule, RouteConfig
from garrison.errors import ConfigError, GarrisonError
from garrison.pipeline.chain import Chain
from garrison.pipeline.context import RequestContext
from garrison.pipeline.route import Route, Upstream
from garrison.pipeline.router import Router
from garrison.pipeline.stage import Stage
from garrison.pipeline.stages.authn import Authenticator, Authn
from garrison.pipeline.stages.authz import Authz
from garrison.pipeline.stages.dlp import ResponseDlp
from garrison.pipeline.stages.forward import Forward
from garrison.pipeline.stages.hygiene import Hygiene
from garrison.pipeline.stages.ratelimit import KeyFn, RateLimit
from garrison.pipeline.stages.response import SecurityHeaders
from garrison.pipeline.stages.routing import Routing
from garrison.pipeline.stages.validation import RequestValidation
from garrison.pipeline.stages.waf import ENGINES, Waf, body_check
from garrison.policy.compiler import compile_policies
from garrison.policy.index import PolicyIndex
from garrison.proxy.runtime import Observer, Runtime
from garrison.proxy.upstream import Pools
from garrison.ratelimit.bucket import TokenBucketLimiter
from garrison.ratelimit.keys import build_key_fn


class RouteChain(Chain):
    """A route's chain, plus the stages the proxy drives around the bodies (found once, at load).

    ``validation`` (the WAF, then request validation, in chain order) may need the request body
    buffered before forwarding; ``dlp`` the response body before sending. A route with validation or
    DLP never takes the proxy's fast path (``buffers``); the WAF judges a body-less request in the
    chain, so it keeps it.
    """

    __slots__ = ("buffers", "dlp", "validation")

    def __init__(self, name: str, stages: tuple[Stage, ...]) -> None:
        super().__init__(name, stages)
        checks = [s for s in stages if isinstance(s, Waf | RequestValidation)]
        self.validation = body_check(checks)
        self.dlp = next((s for s in stages if isinstance(s, ResponseDlp)), None)
        self.buffers = any(isinstance(s, RequestValidation) for s in checks) or self.dlp is not None


@dataclass
class LimiterCache:
    """Buckets survive a reload when their rule is unchanged (a reload must not reset everyone's quota)."""

    limiters: dict[tuple[Hashable, ...], TokenBucketLimiter] = field(default_factory=dict)

    def get(self, rule: RateLimitRule) -> TokenBucketLimiter:
        key = (rule.name, rule.rate, rule.burst, rule.max_keys, tuple(rule.key))
        lim = self.limiters.get(key)
        if lim is None:
            lim = self.limiters[key] = TokenBucketLimiter(rule.rate, rule.burst, rule.max_keys)
        return lim

    def retain(self, rules: list[RateLimitRule]) -> None:
        keep = {(r.name, r.rate, r.burst, r.max_keys, tuple(r.key)) for r in rules}
        for k in list(self.limiters):
            if k not in keep:
                del self.limiters[k]


def _key_with_fallback(fn: KeyFn) -> KeyFn:
    """A key part that cannot be formed (anonymous subject, absent claim) falls back to the client IP."""

    def key(ctx: RequestContext) -> Hashable:
        k = fn(ctx)
        return ("ip", ctx.client_ip) if k is None else k

    return key


def _rate_stage(
    rules: list[RateLimitRule], route: RouteConfig, phase: str, cache: LimiterCache
) -> RateLimit | None:
    picked = []
    for rule in rules:
        if rule.routes and route.name not in rule.routes:
            continue
        rule_phase = rule.stage or ("pre_auth" if rule.key == ["client_ip"] else "post_auth")
        if rule_phase != phase:
            continue
        picked.append((rule.name, cache.get(rule), _key_with_fallback(build_key_fn(list(rule.key)))))
    if not picked:
        return None
    return RateLimit(tuple(picked), shadow=route.shadow.rate_limit)


def build_routes(
    cfg: GarrisonConfig,
    *,
    policy: PolicyIndex,
    authenticators: tuple[Authenticator, ...],
    limiter_cache: LimiterCache,
    base_dir: Path | None = None,
) -> list[Route]:
    """Routes with their chains. Files named in ``validate:`` are read relative to ``base_dir`` (cwd)."""
    base = base_dir if base_dir is not None else Path.cwd()
    waf = cfg.waf
    waf_engine = None  # one engine for every route (and kept across reloads that leave waf: alone)
    if waf is not None and any(rc.waf is None or rc.waf.enabled for rc in cfg.routes):
        waf_engine = ENGINES.get(waf, base)
    routes = []
    for rc in cfg.routes:
        target = rc.upstream
        if target is None:
            assert rc.service is not None
            target = cfg.services[rc.service].upstream
        try:
            upstream = Upstream.parse(target or "")
        except ValueError as exc:
            raise ConfigError(f"route {rc.name!r}: {exc}") from None
        stages: list[Stage] = []
        if (s := _rate_stage(cfg.rate_limits, rc, "pre_auth", limiter_cache)) is not None:
            stages.append(s)
        stages.append(
            Authn(
                authenticators,
                public=rc.public,
                allowed_issuers=tuple(rc.issuers) if rc.issuers is not None else None,
                shadow=rc.shadow.authn,
            )
        )
        stages.append(Authz(policy, route_name=rc.name, public=rc.public, shadow=rc.shadow.authz))
        if (s := _rate_stage(cfg.rate_limits, rc, "post_auth", limiter_cache)) is not None:
            stages.append(s)
        if rc.waf is not None and rc.waf.enabled and waf is None:
            raise ConfigError(f"route {rc.name!r}: waf needs a top-level waf: section")
        if waf is not None and waf_engine is not None and (rc.waf is None or rc.waf.enabled):
            # After authn/authz, before validation: where ModSecurity sits in front of an application.
            label = f"route {rc.name!r}"
            stages.append(Waf.build(waf, rc.waf, engine=waf_engine, label=label, shadow=rc.shadow.waf))
        if rc.validate_ is not None:  # after authn/authz: unauthenticated junk never reaches the parser
            stages.append(
                RequestValidation.build(
                    rc.validate_, base_dir=base, route=rc.name, shadow=rc.shadow.validate_
                )
            )
        stages.append(Forward())
        if rc.security_headers:
            stages.append(SecurityHeaders())
        if rc.dlp is not None:
            stages.append(ResponseDlp.build(rc.dlp))
        pattern, prefix = (rc.path[:-3], True) if rc.path.endswith("/**") else (rc.path, False)
        routes.append(
            Route(
                name=rc.name,
                pattern=pattern,
                prefix=prefix,
                methods=frozenset(rc.methods),
                host=rc.host.lower() if rc.host else None,
                upstream=upstream,
                service=rc.service,
                public=rc.public,
                issuers=tuple(rc.issuers) if rc.issuers is not None else None,
                strip_prefix=rc.strip_prefix,
                security_headers=rc.security_headers,
                mask_upstream_errors=rc.mask_upstream_errors,
                chain=RouteChain(rc.name, tuple(stages)),
            )
        )
    return routes


def build_runtimes(
    cfg: GarrisonConfig,
    *,
    pools: Pools,
    observe: Observer,
    authenticators: tuple[Authenticator, ...],
    limiter_cache: LimiterCache | None = None,
    generation: int = 0,
    base_dir: Path | None = None,
) -> dict[str, Runtime]:
    """One Runtime per listener (they share routes and the policy index; limits differ).

    ``base_dir``: the config file's directory, against which relative file paths resolve (default cwd).
    """
    cache = limiter_cache or LimiterCache()
    try:
        policy = compile_policies(cfg)
        routes = build_routes(
            cfg, policy=policy, authenticators=authenticators, limiter_cache=cache, base_dir=base_dir
        )
        router = Router(
            routes,
            case_sensitive=cfg.paths.case_sensitive,
            reject_case_ambiguous=cfg.paths.reject_case_ambiguous,
        )
    except ConfigError:
        raise
    except GarrisonError as exc:
        raise ConfigError(str(exc)) from None
    cache.retain(cfg.rate_limits)
    out = {}
    for listener in cfg.listeners:
        trusted = tuple(ipaddress.ip_network(c, strict=False) for c in listener.trusted_proxies)
        pre = Chain(
            f"{listener.name}:pre",
            (
                Hygiene(trusted_proxies=trusted, max_body_bytes=listener.limits.max_body_bytes),
                Routing(router),
            ),
        )
        out[listener.name] = Runtime(
            config=cfg,
            limits=listener.limits,
            pre=pre,
            router=router,
            pools=pools,
            observe=observe,
            generation=generation,
        )
    return out


__all__ = ["LimiterCache", "RouteChain", "build_routes", "build_runtimes"]
