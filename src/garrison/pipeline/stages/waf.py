"""Stage: the CRS-compatible WAF (garrison.waf) on a route. Sans-IO; the proxy buffers the body.

Where it runs: after authn/authz (unauthenticated traffic is refused before any rule runs) and before
request validation, the order ModSecurity has in front of an application. A request without a body is
inspected in ``check`` (in the chain, fast path included); one with a body is inspected once the proxy
has buffered it (``body_limit`` / ``validate_request``, the same protocol as RequestValidation), before
anything reaches the upstream.

Blocking: ``Deny(WAF_BLOCKED)`` (403) whose ``rule_id`` names the logged rule ids and the anomaly
score (``waf:942100,949110;score=5``), which is the decision record's ``rule``. Detection-only mode and
``shadow.waf`` make the same Deny a shadow record and forward the request.

Engines are compiled once per distinct rule set and settings (``EngineCache``) and shared by every
route; per-route paranoia level and exclusions are arguments of ``inspect``, not separate engines.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import Counter, OrderedDict
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, Self

from garrison.errors import ConfigError, GarrisonError
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import CONTINUE, Deny, Verdict
from garrison.reasons import Reason
from garrison.waf.config import RouteWaf, WafConfig
from garrison.waf.request import WafRequest, WafResult

if TYPE_CHECKING:  # the engine needs the optional `waf` extra; imported when a config has `waf:`
    from garrison.waf.engine import WafEngine

log = logging.getLogger("garrison.waf")

MAX_IDS_IN_RECORD = 8  # rule ids named in a decision record; more are counted ("+3")


def _framing(ctx: RequestContext) -> tuple[bool, int | None]:
    """(has a body, Content-Length), as the proxy will treat the request."""
    f = ctx.framing
    if f is not None:
        return bool(f.has_body), f.content_length
    length = ctx.header(b"content-length")
    n = int(length) if length is not None and length.isdigit() else None
    return bool(n) or ctx.header(b"transfer-encoding") is not None, n


def rule_label(result: WafResult) -> str:
    """The decision record's ``rule`` of a WAF verdict: logged rule ids (bounded) and the score."""
    ids = list(dict.fromkeys(m.rule_id for m in result.matches))
    shown = ",".join(map(str, ids[:MAX_IDS_IN_RECORD]))
    more = f"+{len(ids) - MAX_IDS_IN_RECORD}" if len(ids) > MAX_IDS_IN_RECORD else ""
    return f"waf:{shown}{more};score={result.anomaly_score}"


# -- engines, compiled once per rule set ---------------------------------------------------------


def _rule_files(cfg: WafConfig, base_dir: Path) -> list[Path]:
    rules = base_dir / cfg.rules_dir
    if not rules.exists():
        raise ConfigError(
            f"waf.rules_dir: {rules} does not exist (install the CRS with scripts/install-crs.sh,"
            " or point waf.rules_dir at a directory of CRS *.conf files)"
        )
    if rules.is_dir() and not any(rules.glob("*.conf")):
        raise ConfigError(f"waf.rules_dir: no *.conf rule files in {rules}")
    paths: list[Path] = []
    if cfg.crs_setup is not None:
        setup = base_dir / cfg.crs_setup
        if not setup.is_file():
            raise ConfigError(f"waf.crs_setup: {setup} is not a file")
        paths.append(setup)
    paths.append(rules)
    return paths


def _fingerprint(paths: Sequence[Path]) -> tuple[Hashable, ...]:
    """Every file the rules may read (``*.conf`` and the ``*.data`` of @pmFromFile), with mtime and size."""
    files: list[Path] = []
    for p in paths:
        files.extend(sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p])
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


class EngineCache:
    """Compiled engines keyed by rule files (+ mtimes) and settings; the ``keep`` newest are kept.

    Loading the CRS takes ~1-2 s (hyperscan databases come from their own on-disk cache), so a reload
    that leaves ``waf:`` and the rule files alone reuses the engine it already has.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self.loads = 0  # engines compiled (tests and operators can see a reload reused one)
        self._engines: OrderedDict[tuple[Hashable, ...], WafEngine] = OrderedDict()
        self._lock = threading.Lock()  # gateways on several loops (tests) may load at once

    def get(self, cfg: WafConfig, base_dir: Path) -> WafEngine:
        with self._lock:
            return self._get(cfg, base_dir)

    def _get(self, cfg: WafConfig, base_dir: Path) -> WafEngine:
        try:  # first: without the extra, that is the one thing to say
            import garrison.waf.engine  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"waf: the WAF engine is not installed ({exc.name} is missing): pip install 'garrison[waf]'"
            ) from None
        paths = _rule_files(cfg, base_dir)
        tx = cfg.engine_tx()
        try:
            key = (
                _fingerprint(paths),
                cfg.paranoia_level,
                cfg.inbound_anomaly_threshold,
                tuple(sorted(tx.items())),
            )
        except OSError as exc:
            raise ConfigError(f"waf: cannot read the rule files: {exc}") from None
        engine = self._engines.get(key)
        if engine is not None:
            self._engines.move_to_end(key)
            return engine
        engine = self._load(paths, cfg, tx)
        self.loads += 1
        self._engines[key] = engine
        while len(self._engines) > self.keep:
            self._engines.popitem(last=False)
        return engine

    @staticmethod
    def _load(paths: list[Path], cfg: WafConfig, tx: dict[str, str]) -> WafEngine:
        from garrison.waf.engine import WafEngine  # importable: checked by _get
        from garrison.waf.seclang import expand_paths

        try:
            engine = WafEngine.load(
                paths,
                paranoia_level=cfg.paranoia_level,
                inbound_threshold=cfg.inbound_anomaly_threshold,
                tx=tx,
            )
        except GarrisonError as exc:
            raise ConfigError(f"waf: {exc}") from None
        except Exception as exc:  # a rule the compiler cannot handle: name it, keep the old config
            raise ConfigError(f"waf: cannot load the rules in {cfg.rules_dir}: {exc}") from None
        n_rules = len(engine.ruleset.rules)
        if n_rules == 0:
            raise ConfigError(f"waf: no SecRule/SecAction in {cfg.rules_dir}")
        files = len(expand_paths(paths))
        unsupported = engine.unsupported
        log.info("waf: loaded %d rules from %d files (%s)", n_rules, files, cfg.rules_dir)
        if unsupported:
            log.warning(
                "waf: %d rule constructs are not supported and were ignored or disabled:\n  %s",
                len(unsupported),
                "\n  ".join(map(str, unsupported)),
            )
        return engine


ENGINES = EngineCache()  # shared by every config load of this process


def _excluded_ids(engine: WafEngine, cfg: WafConfig, route: RouteWaf | None, label: str) -> frozenset[int]:
    """Global exclusions (ids, tags resolved to ids) plus the route's: each must name a loaded rule."""
    rules = engine.ruleset.rules
    known = {r.id for r in rules}
    ids = set(cfg.exclusions.rule_ids)
    unknown = sorted(ids - known)
    if unknown:
        raise ConfigError(f"waf.exclusions.rule_ids: no loaded rule has id {unknown}")
    for tag in cfg.exclusions.tags:
        tagged = {r.id for r in rules if tag in r.tags}
        if not tagged:
            raise ConfigError(f"waf.exclusions.tags: no loaded rule has tag {tag!r}")
        ids |= tagged
    if route is not None:
        unknown = sorted(set(route.exclusions) - known)
        if unknown:
            raise ConfigError(f"{label}: waf.exclusions: no loaded rule has id {unknown}")
        ids.update(route.exclusions)
    return frozenset(ids)


# -- the stage -----------------------------------------------------------------------------------


class Waf(Stage):
    """The WAF on one route. ``stats`` counts inspected / blocked / would_block / oversize / errors."""

    name: ClassVar[str] = "waf"
    sync: ClassVar[bool] = True
    Config: ClassVar[type[RouteWaf]] = RouteWaf

    __slots__ = ("engine", "label", "max_body_bytes", "paranoia_level", "partial", "remove_ids", "stats")

    def __init__(
        self,
        engine: WafEngine,
        *,
        paranoia_level: int,
        remove_ids: frozenset[int] = frozenset(),
        max_body_bytes: int = 131_072,
        partial: bool = False,
        shadow: bool = False,
        label: str = "",
    ) -> None:
        super().__init__(shadow=shadow)
        self.engine = engine
        self.paranoia_level = paranoia_level
        self.remove_ids = remove_ids
        self.max_body_bytes = max_body_bytes
        self.partial = partial
        self.label = label
        self.stats: Counter[str] = Counter()

    @classmethod
    def build(
        cls, cfg: WafConfig, route: RouteWaf | None, *, engine: WafEngine, label: str, shadow: bool = False
    ) -> Self:
        """``shadow``: the route's ``shadow.waf``; detection-only mode (global or route) is shadow too."""
        mode = (route.mode if route is not None else None) or cfg.mode
        pl = (route.paranoia_level if route is not None else None) or cfg.paranoia_level
        return cls(
            engine,
            paranoia_level=pl,
            remove_ids=_excluded_ids(engine, cfg, route, label),
            max_body_bytes=cfg.max_body_bytes,
            partial=cfg.body_limit_action == "process_partial",
            shadow=shadow or mode == "detection_only",
            label=label,
        )

    def _oversize(self) -> Deny:
        self.stats["oversize"] += 1
        return Deny(
            Reason.BODY_TOO_LARGE,
            self.name,
            "waf:max_body_bytes",
            detail=f"body over the {self.max_body_bytes} bytes the WAF inspects",
        )

    def inspect(self, ctx: RequestContext, body: bytes) -> Deny | None:
        """Run the rules over the request; the Deny it earns (shadow or not), or None."""
        req = WafRequest(
            ctx.method,
            ctx.raw_target.decode("latin-1"),
            f"HTTP/{ctx.http_version}",
            tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in ctx.headers),
            body,
            remote_addr=ctx.client_ip,
        )
        result = self.engine.inspect(req, paranoia_level=self.paranoia_level, remove_rule_ids=self.remove_ids)
        self.stats["inspected"] += 1
        if not result.would_block:
            return None
        self.stats["would_block" if self.shadow else "blocked"] += 1
        first = next((m for m in result.matches if m.severity), None)
        return Deny(
            Reason.WAF_BLOCKED,
            self.name,
            rule_label(result),
            detail=first.msg[:200] if first is not None else "",
        )

    def check(self, ctx: RequestContext) -> Verdict:
        has_body, length = _framing(ctx)
        if has_body:
            if length is not None and length > self.max_body_bytes and not self.partial:
                return self._oversize()  # before reading a byte of it
            return CONTINUE  # inspected with its body (validate_request), before forwarding
        deny = self.inspect(ctx, b"")
        return CONTINUE if deny is None else deny

    def body_limit(self, ctx: RequestContext) -> int | None:
        """Bytes the proxy buffers before ``validate_request`` (None: no body to inspect).

        ``process_partial`` buffers up to the listener's limit (the proxy's own 413 beyond it): the
        first ``max_body_bytes`` are inspected, the whole body is forwarded.
        """
        if not _framing(ctx)[0]:
            return None
        return sys.maxsize if self.partial else self.max_body_bytes

    def validate_request(self, ctx: RequestContext, body: bytes) -> Deny | None:
        """Inspect the buffered body. A Deny to send, or None to forward (shadow: recorded, None).

        Fails closed: an engine error is a STAGE_ERROR deny (recorded only, in shadow mode).
        """
        deny: Deny | None = None
        try:
            if len(body) > self.max_body_bytes:
                if not self.partial:
                    deny = self._oversize()
                    if not self.shadow:
                        return deny
                    ctx.shadow_denials.append(deny)
                    deny = None
                body = body[: self.max_body_bytes]
            deny = self.inspect(ctx, body)
        except Exception:
            log.exception("waf failed on request %s", ctx.request_id)
            self.stats["errors"] += 1
            deny = Deny(Reason.STAGE_ERROR, self.name)
        if deny is not None and self.shadow:
            ctx.shadow_denials.append(deny)
            return None
        return deny

    def __repr__(self) -> str:
        return f"<Waf {self.label} pl={self.paranoia_level}{' shadow' if self.shadow else ''}>"


# -- more than one stage over one buffered body --------------------------------------------------


class BodyCheck(Protocol):
    """What the proxy's request-body path drives: RequestValidation, Waf, or BodyChecks of both."""

    @property
    def name(self) -> str: ...
    @property
    def shadow(self) -> bool: ...
    def body_limit(self, ctx: RequestContext) -> int | None: ...
    def validate_request(self, ctx: RequestContext, body: bytes) -> Deny | None: ...


class BodyChecks:
    """Several body checks in chain order over one buffered body (the WAF, then validation).

    The proxy buffers the largest limit any member asks for; each member checks its own limit and
    answers for itself, so a denial keeps its stage's name and reason. Only members that asked for
    the body of this request see it, and a shadowed member whose head check was already recorded is
    not judged twice.
    """

    __slots__ = ("checks", "name", "shadow")

    def __init__(self, checks: Sequence[BodyCheck]) -> None:
        self.checks = tuple(checks)
        self.name = "+".join(c.name for c in self.checks)
        self.shadow = all(c.shadow for c in self.checks)

    def _wanted(self, ctx: RequestContext) -> list[tuple[BodyCheck, int]]:
        out = []
        for c in self.checks:
            if c.shadow and any(d.stage == c.name for d in ctx.shadow_denials):
                continue
            limit = c.body_limit(ctx)
            if limit is not None:
                out.append((c, limit))
        return out

    def body_limit(self, ctx: RequestContext) -> int | None:
        limits = [limit for _, limit in self._wanted(ctx)]
        return max(limits) if limits else None

    def validate_request(self, ctx: RequestContext, body: bytes) -> Deny | None:
        for c, _ in self._wanted(ctx):
            deny = c.validate_request(ctx, body)
            if deny is not None:
                return deny
        return None

    def __repr__(self) -> str:
        return f"<BodyChecks {self.name}>"


def body_check(checks: Sequence[BodyCheck]) -> BodyCheck | None:
    """The one object the proxy drives for a route's request-body checks (None: there are none)."""
    if not checks:
        return None
    return checks[0] if len(checks) == 1 else BodyChecks(checks)


__all__ = ["ENGINES", "BodyCheck", "BodyChecks", "EngineCache", "Waf", "body_check", "rule_label"]
