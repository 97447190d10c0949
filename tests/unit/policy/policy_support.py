"""Config and identity builders shared by the policy tests."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from garrison.config.models import GarrisonConfig
from garrison.pipeline.context import Identity

CORP_ISS = "https://idp.corp.example"
PARTNER_ISS = "https://partner.example"

BASE_YAML = """
trust_domain: garrison.local
issuers:
  - {name: corp, issuer: "https://idp.corp.example", audiences: [garrison], keys: [{pem: unused}]}
  - {name: partner, issuer: "https://partner.example", audiences: [garrison], keys: [{pem: unused}]}
  - {name: mesh, issuer: "https://garrison.local", audiences: [garrison], keys: [{pem: unused}]}
services:
  microservice1: {upstream: "http://127.0.0.1:9001"}
  microservice2: {}
  microservice3: {}
  billing: {spiffe_id: "spiffe://prod.example/ns/billing/sa/api"}
routes:
  - {name: ms1-getdata, path: /microservice1/getData, service: microservice1}
  - {name: api, path: /api/**, upstream: "http://127.0.0.1:9002"}
  - {name: health, path: /health, upstream: "http://127.0.0.1:9003", public: true}
"""
_BASE = yaml.safe_load(BASE_YAML)


def config(policies_yaml: str = "", **extra: Any) -> GarrisonConfig:
    """The base config plus a `policies:` block written as YAML, as an operator would."""
    data = copy.deepcopy(_BASE)
    data["policies"] = yaml.safe_load(policies_yaml) or []
    data.update(extra)
    return GarrisonConfig.model_validate(data)


def workload(
    name: str,
    *,
    td: str = "garrison.local",
    claims: dict[str, Any] | None = None,
    scopes: tuple[str, ...] = (),
) -> Identity:
    """A workload proved by a token from the mesh's own issuer: its principal is its SPIFFE ID."""
    return Identity(
        principal=f"spiffe://{td}/svc/{name}",
        kind="workload",
        issuer="mesh",
        subject=f"spiffe://{td}/svc/{name}",
        method="jwt",
        claims=claims or {},
        scopes=frozenset(scopes),
    )


def user(
    subject: str,
    *,
    issuer: str = "corp",
    iss: str = CORP_ISS,
    claims: dict[str, Any] | None = None,
    scopes: tuple[str, ...] = (),
) -> Identity:
    return Identity(
        principal=f"{iss}#{subject}",
        kind="user",
        issuer=issuer,
        subject=subject,
        method="jwt",
        claims=claims or {},
        scopes=frozenset(scopes),
    )
