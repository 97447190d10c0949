"""garrison.yaml models of the WAF: the top-level ``waf:`` section and per-route ``routes[].waf``.

Validated once at load. The top-level section says which rules run and how they score; a route may
only narrow or relax that for itself (paranoia level, rule exclusions, detection-only mode).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Where Debian's ``modsecurity-crs`` package (scripts/install-crs.sh) puts the CRS 3.3 rules.
DEFAULT_RULES_DIR = "/usr/share/modsecurity-crs/rules"
#: Every method garrison routes: CRS's 911100 refuses methods outside ``tx.allowed_methods``, and the
#: routes' own ``methods`` lists already decide which of these a path accepts.
ROUTED_METHODS = "GET HEAD POST PUT PATCH DELETE OPTIONS"

Mode = Literal["blocking", "detection_only"]


def _exclusion_ids(v: list[int]) -> list[int]:
    bad = [i for i in v if not 1 <= i <= 9_999_999]
    if bad:
        raise ValueError(f"not a rule id: {bad}")
    return sorted(set(v))


class WafExclusions(BaseModel):
    """Rules removed for every route: by id (``942100``) or by tag (``attack-sqli``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule_ids: list[int] = Field(default_factory=list, description="Rule ids never run")
    tags: list[str] = Field(default_factory=list, description="Rules carrying one of these tags never run")

    @field_validator("rule_ids")
    @classmethod
    def _ids(cls, v: list[int]) -> list[int]:
        return _exclusion_ids(v)


class WafConfig(BaseModel):
    """The CRS-compatible WAF (OWASP Core Rule Set in anomaly-scoring mode), run on every route that
    does not turn it off. Relative paths resolve against the directory of garrison.yaml.

    Bodies over ``max_body_bytes`` are refused (413) unless ``body_limit_action`` is ``process_partial``
    (then only the first ``max_body_bytes`` are inspected, the ModSecurity ``ProcessPartial`` trade-off:
    an attacker can pad a payload past the limit).
    """

    # Not garrison.config.models.Model: config/models.py imports this module (no import cycle).
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules_dir: str = Field(
        DEFAULT_RULES_DIR,
        description="Directory of CRS `*.conf` rule files (loaded in name order), or one file",
    )
    crs_setup: str | None = Field(
        None,
        description="crs-setup.conf loaded before the rules (e.g. /etc/modsecurity/crs/crs-setup.conf);"
        " none: garrison presets what the CRS needs",
    )
    paranoia_level: int = Field(1, ge=1, le=4, description="CRS paranoia level (1 = fewest false positives)")
    inbound_anomaly_threshold: int = Field(
        5, ge=1, description="Inbound anomaly score at which a request is blocked (CRS default 5)"
    )
    mode: Mode = Field(
        "blocking", description="blocking: 403 waf_blocked; detection_only: record and forward"
    )
    max_body_bytes: int = Field(
        131_072, ge=0, le=64 * 1024 * 1024, description="Request body bytes inspected"
    )
    body_limit_action: Literal["reject", "process_partial"] = Field(
        "reject", description="A larger body: reject (413), or inspect only its first max_body_bytes"
    )
    exclusions: WafExclusions = Field(WafExclusions(), description="Rules removed on every route")
    tx: dict[str, str] = Field(
        default_factory=dict,
        description="TX variables preset before the rules run (crs-setup knobs, e.g. allowed_methods);"
        f" allowed_methods defaults to {ROUTED_METHODS!r}",
    )

    @field_validator("tx")
    @classmethod
    def _tx(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not k or not all(c.isalnum() or c in "_." for c in k):
                raise ValueError(f"not a TX variable name: {k!r}")
        return {k.lower(): val for k, val in v.items()}

    def engine_tx(self) -> dict[str, str]:
        """The TX preset handed to the engine: garrison's defaults, then the configured ``tx``."""
        tx = {"allowed_methods": ROUTED_METHODS}
        if self.crs_setup is None:
            # CRS 901001 refuses every request when crs-setup did not run; it only tests that
            # tx.crs_setup_version exists, and the CRS documents presetting it instead.
            tx["crs_setup_version"] = "1"
        tx.update(self.tx)
        return tx


class RouteWaf(BaseModel):
    """The WAF on one route. Without this key a route runs the top-level ``waf:`` settings as they are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run the WAF on this route (needs a top-level `waf:` section)")
    paranoia_level: int | None = Field(None, ge=1, le=4, description="Default: `waf.paranoia_level`")
    exclusions: list[int] = Field(
        default_factory=list, description="Rule ids removed on this route only (on top of `waf.exclusions`)"
    )
    mode: Mode | None = Field(None, description="Default: `waf.mode`")

    @field_validator("exclusions")
    @classmethod
    def _ids(cls, v: list[int]) -> list[int]:
        return _exclusion_ids(v)


__all__ = ["DEFAULT_RULES_DIR", "ROUTED_METHODS", "RouteWaf", "WafConfig", "WafExclusions"]
