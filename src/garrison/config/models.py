"""pydantic models of garrison.yaml. Validated once at load; nothing here runs per request.

Top-level keys follow ARCHITECTURE §9. Every model forbids unknown keys, so a typo is an error
that names its key path, not a silently ignored setting.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from garrison.dlp.models import DlpConfig
from garrison.validate.models import ValidateConfig
from garrison.waf.config import RouteWaf, WafConfig

_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"
Name = Annotated[str, Field(pattern=_NAME)]
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")  # SPIFFE-ID §2.1: lower-case letters, digits, '.', '-', '_'
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address must be HOST:PORT, got {value!r}")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"address host must be an IP literal or localhost, got {host!r}") from None
    return value


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not an IP network in CIDR form: {value!r}") from None
    return value


Address = Annotated[str, AfterValidator(_parse_address)]
Cidr = Annotated[str, AfterValidator(_check_cidr)]


class TlsFiles(Model):
    cert_file: str
    key_file: str
    client_ca_file: str | None = Field(None, description="Verify client certificates against this CA bundle")
    require_client_cert: bool = False
    client_trust_bundle: bool = Field(
        False,
        description="Verify client certificates against the control plane's trust bundle (pulled every"
        " `control_plane.bundle_refresh_seconds`) and refuse revoked SVIDs; needs `control_plane`",
    )


class Limits(Model):
    max_header_bytes: int = Field(16_384, ge=1024, le=1_048_576, description="Request line + headers")
    max_headers: int = Field(100, ge=8, le=1000)
    max_uri_bytes: int = Field(8192, ge=256, le=65_536)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=0)
    header_timeout: float = Field(10.0, gt=0, description="Seconds to receive the request head")
    body_timeout: float = Field(30.0, gt=0, description="Seconds allowed between body chunks")
    idle_timeout: float = Field(60.0, gt=0, description="Seconds a keep-alive connection may sit idle")
    upstream_connect_timeout: float = Field(5.0, gt=0)
    upstream_timeout: float = Field(30.0, gt=0, description="Seconds to wait for the upstream response head")
    max_connections: int = Field(10_000, ge=1)


class Listener(Model):
    name: Name = Field("edge", description="Listener name (reload keeps listeners by name)")
    address: Address = Field("127.0.0.1:8080", description="HOST:PORT to bind; port 0 picks a free port")
    tls: TlsFiles | None = None
    limits: Limits = Limits()
    trusted_proxies: list[Cidr] = Field(
        default_factory=list,
        description="CIDRs whose X-Forwarded-For/Forwarded headers are believed; empty = trust none",
    )


class StaticKey(Model):
    """A verification key given inline: a PEM file, inline PEM, or a JWK object."""

    kid: str | None = None
    pem_file: str | None = None
    pem: str | None = None
    jwk: dict[str, object] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> StaticKey:
        if sum(x is not None for x in (self.pem_file, self.pem, self.jwk)) != 1:
            raise ValueError("give exactly one of pem_file, pem, jwk")
        return self


ALLOWED_ALGS = Literal[
    "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"
]


class Issuer(Model):
    """A trusted token issuer. Keys come from exactly one of: jwks_url, discovery, keys."""

    name: Name
    issuer: str = Field(description="The exact `iss` value tokens carry")
    audiences: list[str] = Field(min_length=1, description="Accepted `aud` values (one must match)")
    algorithms: list[ALLOWED_ALGS] = Field(["ES256"], min_length=1)
    jwks_url: str | None = None
    discovery: bool = Field(False, description="Find jwks_uri at {issuer}/.well-known/openid-configuration")
    keys: list[StaticKey] = Field(default_factory=list)
    typ: str | None = Field(None, description="Required JOSE `typ`, e.g. at+jwt (RFC 9068)")
    workload_identities: bool = Field(
        False,
        description="Trust this issuer to assert workloads: a `sub` that is a SPIFFE ID in our trust domain"
        " becomes that service's principal. Off: every subject is a user (iss#sub)",
    )
    leeway_seconds: float = Field(60.0, ge=0, le=600)
    max_token_lifetime_seconds: float | None = Field(None, gt=0)
    jwks_refresh_seconds: float = Field(300.0, ge=5)
    jwks_min_refetch_seconds: float = Field(
        10.0, ge=0, description="Least time between fetches triggered by an unknown kid"
    )
    jwks_timeout_seconds: float = Field(5.0, gt=0)
    insecure_allow_http_jwks: bool = Field(False, description="Permit an http:// JWKS URL (tests, loopback)")
    jwks_ca_file: str | None = Field(
        None, description="Verify the JWKS/discovery server against these PEM CAs instead of the system store"
    )
    revocations: bool = Field(
        False,
        description="Refuse tokens whose `jti` the control plane lists as revoked (RFC 7009), pulled every"
        " `control_plane.bundle_refresh_seconds`; for the control plane's own issuer",
    )

    @model_validator(mode="after")
    def _key_source(self) -> Issuer:
        n = (self.jwks_url is not None) + self.discovery + bool(self.keys)
        if n != 1:
            raise ValueError("give exactly one key source: jwks_url, discovery: true, or keys")
        url = self.jwks_url or (self.issuer if self.discovery else None)
        if url and not url.startswith("https://") and not self.insecure_allow_http_jwks:
            raise ValueError("JWKS must be fetched over https (set insecure_allow_http_jwks for tests)")
        return self


class Service(Model):
    """A workload. Its principal is its SPIFFE ID (ARCHITECTURE §9)."""

    spiffe_id: str | None = Field(None, description="Default spiffe://<trust_domain>/svc/<name>")
    upstream: str | None = Field(
        None, description="http://host:port of the service (for routes that name it)"
    )


class RouteShadow(Model):
    authn: bool = False
    authz: bool = False
    rate_limit: bool = False
    # `validate` would shadow BaseModel.validate: the attribute is validate_, the YAML key validate.
    validate_: bool = Field(
        False, alias="validate", description="Record request-validation failures; forward the request"
    )
    waf: bool = Field(False, description="Record what the WAF would block; forward the request")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RouteConfig(Model):
    name: Name
    path: str = Field(description="Exact path, or a prefix ending in /** (e.g. /api/**)")
    methods: list[str] = Field(default_factory=lambda: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    host: str | None = Field(None, description="Match only this Host (case-insensitive); default any")
    upstream: str | None = None
    service: str | None = Field(None, description="Name in `services:`; its upstream is used")
    public: bool = Field(False, description="Skip authentication and the default deny")
    issuers: list[str] | None = Field(None, description="Issuers accepted here; default all")
    strip_prefix: str | None = None
    shadow: RouteShadow = RouteShadow()
    security_headers: bool = True
    mask_upstream_errors: bool = True
    validate_: ValidateConfig | None = Field(
        None, alias="validate", description="Request validation (JSON Schema / OpenAPI, JSON limits)"
    )
    dlp: DlpConfig | None = Field(None, description="Response DLP: redaction and error-page masking")
    waf: RouteWaf | None = Field(None, description="This route's WAF settings (default: top-level `waf:`)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with /")
        body = v[:-3] if v.endswith("/**") else v
        if "*" in body or "//" in v or "/./" in v or "/../" in v or "%" in v or "\\" in v or ";" in v:
            raise ValueError("must be a normalized path; only a trailing /** wildcard is allowed")
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        up = [m.upper() for m in v]
        bad = sorted(set(up) - HTTP_METHODS)
        if bad:
            raise ValueError(f"unknown method(s) {bad}")
        return up

    @model_validator(mode="after")
    def _target(self) -> RouteConfig:
        if (self.upstream is None) == (self.service is None):
            raise ValueError("give exactly one of upstream or service")
        return self


class UserRef(Model):
    issuer: str = Field(description="Issuer name (from `issuers:`)")
    subject: str


class PolicyFrom(Model):
    """Who a rule is about. Every kind listed here is an alternative: any one admits the principal."""

    services: list[str] = Field(default_factory=list, description="Service names or SPIFFE IDs")
    users: list[UserRef] = Field(default_factory=list)
    authenticated: bool = Field(False, description="Any authenticated principal")
    any: bool = Field(False, description="Anyone, authenticated or not (deny rules, public routes)")
    issuers: list[str] = Field(default_factory=list, description="Principal's token came from one of these")


class PolicyWhen(Model):
    claims: dict[str, str | int | bool | list[str | int | bool]] = Field(default_factory=dict)
    scopes: list[str] = Field(default_factory=list, description="All of these scopes are required")
    source_cidrs: list[Cidr] = Field(default_factory=list, description="Client IP in one of these networks")


class PolicyRule(Model):
    """One allow or deny rule. Explicit deny > allow > default deny."""

    name: Name
    effect: Literal["allow", "deny"] = "allow"
    routes: list[str] = Field(default_factory=list, description="Route names; empty = any route")
    paths: list[str] = Field(default_factory=list, description="Exact paths or prefixes ending in /**")
    methods: list[str] = Field(default_factory=list, description="Empty = any method")
    from_: PolicyFrom = Field(alias="from")
    when: PolicyWhen = PolicyWhen()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        return RouteConfig._methods(v)

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        return [RouteConfig._path(p) for p in v]

    @model_validator(mode="after")
    def _who(self) -> PolicyRule:
        f = self.from_
        if not (f.services or f.users or f.authenticated or f.any or f.issuers):
            raise ValueError("`from` must name services, users, issuers, authenticated or any")
        return self


RateKey = Annotated[str, Field(pattern=r"^(client_ip|subject|route|claim:[A-Za-z0-9_.:-]+)$")]


class RateLimitRule(Model):
    name: Name
    routes: list[str] = Field(default_factory=list, description="Route names; empty = every route")
    key: list[RateKey] = Field(["client_ip"], min_length=1, description="Bucket key parts")
    rate: float = Field(gt=0, description="Tokens added per second")
    burst: int = Field(gt=0, description="Bucket capacity")
    stage: Literal["pre_auth", "post_auth"] | None = Field(
        None, description="Default: pre_auth when keyed only by client_ip, else post_auth"
    )
    backend: Literal["local"] = "local"
    max_keys: int = Field(100_000, ge=1, description="Buckets kept; least recently used dropped beyond")


class Admin(Model):
    address: Address = Field("127.0.0.1:9901", description="HOST:PORT of /metrics, /healthz, /readyz")


class DecisionLog(Model):
    path: str | None = Field(
        None, description="File for JSON-lines decision records; '-' = stderr; none = off"
    )
    queue_size: int = Field(
        65_536, ge=1024, description="Records buffered before new ones are dropped (counted)"
    )


class Telemetry(Model):
    admin: Admin | None = Admin()
    decision_log: DecisionLog = DecisionLog()


class Paths(Model):
    case_sensitive: bool = True
    reject_case_ambiguous: bool = Field(
        True, description="400 when the case-folded path matches a different route than the exact one"
    )


class KekSource(Model):
    """Where the key-encryption key comes from: exactly one of ``file``, ``env``, ``command``."""

    file: str | None = Field(None, description="A file (mode 0600) holding the base64 KEK")
    env: str | None = Field(None, description="An environment variable holding the base64 KEK")
    command: list[str] | None = Field(None, description="A command that prints the base64 KEK (KMS hook)")

    @model_validator(mode="after")
    def _one(self) -> KekSource:
        if (self.file is not None) + (self.env is not None) + (self.command is not None) != 1:
            raise ValueError("give exactly one of file, env, command")
        if self.command is not None and not self.command:
            raise ValueError("command must not be empty")
        return self


class StoreConfig(Model):
    """Control-plane state. Relative paths resolve against the config file's directory."""

    url: str = Field(
        "garrison.db", description="SQLite file path, or a postgresql+psycopg://user@host/db URL"
    )
    kek: KekSource = Field(KekSource(file="kek.key"), description="Key-encryption key for keys at rest")


class ControlPlaneConfig(Model):
    """The control plane (CA, token service, trust distribution) and how data planes reach it.

    Relative paths resolve against the config file's directory.
    """

    address: Address = Field("127.0.0.1:8443", description="HOST:PORT the control-plane API listens on")
    url: str | None = Field(
        None,
        description="Base URL data planes and the CLI use (default https://<address>); also the token issuer",
    )
    ca_file: str = Field("ca/bundle.pem", description="PEM trust anchors that verify the control plane")
    server_names: list[str] = Field(
        ["localhost", "127.0.0.1"], min_length=1, description="DNS names / IPs in the API's TLS certificate"
    )
    admins: list[str] = Field(
        default_factory=list,
        description="SPIFFE IDs whose SVIDs may call admin operations (default spiffe://<td>/garrison/admin)",
    )
    admin_token_file: str | None = Field(
        "admin.token", description="File holding the admin bearer token (its hash is what the server keeps)"
    )
    audiences: list[str] = Field(
        default_factory=list,
        description="Audiences access tokens may name; default: every service's SPIFFE ID",
    )
    svid_ttl_seconds: float = Field(3600.0, ge=60, le=86_400 * 7)
    join_token_ttl_seconds: float = Field(600.0, ge=10, le=86_400)
    access_token_ttl_seconds: float = Field(300.0, ge=10, le=3600)
    signing_key_rotation_seconds: float = Field(
        86_400.0, ge=60, description="Token signing key rotation period (next → current → previous)"
    )
    bundle_refresh_seconds: float = Field(
        5.0, ge=1, le=300, description="How often data planes pull the trust bundle and revocations"
    )
    maintain_seconds: float = Field(5.0, ge=0.5, le=300, description="Period of the CA/key maintenance tick")
    audit_log: str | None = Field("audit.log", description="Hash-chained audit log of admin actions")

    @model_validator(mode="after")
    def _url(self) -> ControlPlaneConfig:
        if self.url is not None and not self.url.startswith("https://"):
            raise ValueError("url must be https:// (the control plane is only served over TLS)")
        return self

    @property
    def base_url(self) -> str:
        return (self.url or f"https://{self.address}").rstrip("/")


class GarrisonConfig(Model):
    """The whole of garrison.yaml."""

    trust_domain: str = Field(
        "garrison.local", description="SPIFFE trust domain: workloads are spiffe://<td>/svc/<name>"
    )
    listeners: list[Listener] = Field(
        default_factory=lambda: [Listener()], min_length=1, description="Addresses the gateway serves on"
    )
    issuers: list[Issuer] = Field(default_factory=list, description="Trusted token issuers")
    services: dict[str, Service] = Field(default_factory=dict, description="Workloads by short name")
    routes: list[RouteConfig] = Field(
        default_factory=list, description="What the gateway forwards; no overlaps"
    )
    policies: list[PolicyRule] = Field(default_factory=list, description="Authorization rules (default deny)")
    rate_limits: list[RateLimitRule] = Field(default_factory=list, description="Token-bucket limits")
    paths: Paths = Field(Paths(), description="Path matching")
    telemetry: Telemetry = Field(Telemetry(), description="Admin listener (metrics) and decision log")
    store: StoreConfig | None = Field(None, description="Control-plane state (SQLite or PostgreSQL) and KEK")
    waf: WafConfig | None = Field(None, description="CRS-compatible WAF on every route (none: no WAF)")
    control_plane: ControlPlaneConfig | None = Field(
        None, description="The control plane: where it listens, how data planes reach and trust it"
    )

    @field_validator("trust_domain")
    @classmethod
    def _td(cls, v: str) -> str:
        if not _TRUST_DOMAIN.match(v) or len(v) > 255:
            raise ValueError(
                "trust domain must be lower-case letters, digits, '.', '-', '_' (SPIFFE-ID §2.1)"
            )
        return v

    @model_validator(mode="after")
    def _references(self) -> GarrisonConfig:
        def dupes(names: list[str]) -> list[str]:
            return sorted(n for n, c in Counter(names).items() if c > 1)

        for what, names in (
            ("listeners", [x.name for x in self.listeners]),
            ("issuers", [x.name for x in self.issuers]),
            ("routes", [x.name for x in self.routes]),
            ("policies", [x.name for x in self.policies]),
            ("rate_limits", [x.name for x in self.rate_limits]),
        ):
            if d := dupes(names):
                raise ValueError(f"{what}: duplicate name(s) {d}")
        issuer_names = {i.name for i in self.issuers}
        route_names = {r.name for r in self.routes}
        for r in self.routes:
            if r.service is not None:
                svc = self.services.get(r.service)
                if svc is None:
                    raise ValueError(f"route {r.name!r}: unknown service {r.service!r}")
                if svc.upstream is None:
                    raise ValueError(f"route {r.name!r}: service {r.service!r} has no upstream")
            for i in r.issuers or ():
                if i not in issuer_names:
                    raise ValueError(f"route {r.name!r}: unknown issuer {i!r}")
        for p in self.policies:
            for rn in p.routes:
                if rn not in route_names:
                    raise ValueError(f"policy {p.name!r}: unknown route {rn!r}")
            for s in p.from_.services:
                if not s.startswith("spiffe://") and s not in self.services:
                    raise ValueError(f"policy {p.name!r}: unknown service {s!r}")
            for u in p.from_.users:
                if u.issuer not in issuer_names:
                    raise ValueError(f"policy {p.name!r}: unknown issuer {u.issuer!r}")
            for i in p.from_.issuers:
                if i not in issuer_names:
                    raise ValueError(f"policy {p.name!r}: unknown issuer {i!r}")
        for rl in self.rate_limits:
            for rn in rl.routes:
                if rn not in route_names:
                    raise ValueError(f"rate limit {rl.name!r}: unknown route {rn!r}")
        if self.control_plane is None:
            for li in self.listeners:
                if li.tls is not None and li.tls.client_trust_bundle:
                    raise ValueError(
                        f"listener {li.name!r}: client_trust_bundle needs a control_plane section"
                    )
            for iss in self.issuers:
                if iss.revocations:
                    raise ValueError(f"issuer {iss.name!r}: revocations needs a control_plane section")
        return self

    def spiffe_id(self, service: str) -> str:
        """The SPIFFE ID of a service named in `services:` (or the default form)."""
        svc = self.services.get(service)
        if svc is not None and svc.spiffe_id:
            return svc.spiffe_id
        return f"spiffe://{self.trust_domain}/svc/{service}"


__all__ = [
    "HTTP_METHODS",
    "Admin",
    "ControlPlaneConfig",
    "DecisionLog",
    "GarrisonConfig",
    "Issuer",
    "KekSource",
    "Limits",
    "Listener",
    "Paths",
    "PolicyFrom",
    "PolicyRule",
    "PolicyWhen",
    "RateLimitRule",
    "RouteConfig",
    "RouteShadow",
    "Service",
    "StaticKey",
    "StoreConfig",
    "Telemetry",
    "TlsFiles",
    "UserRef",
]
