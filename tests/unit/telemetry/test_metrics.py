"""GatewayMetrics: what a Prometheus scrape of its registry shows."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from garrison import __version__
from garrison.telemetry import metrics as metrics_mod
from garrison.telemetry.metrics import DURATION_BUCKETS, GatewayMetrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(m: GatewayMetrics) -> Samples:
    text = generate_latest(m.registry).decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def val(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def metrics(routes: list[str] | None = None) -> GatewayMetrics:
    return GatewayMetrics(routes=routes or [], process_metrics=False, clock=lambda: 1000.0)


def test_should_count_requests_by_route_and_status_class() -> None:
    m = metrics(routes=["api"])
    m.record_request("api", 200, 0.001, "pipeline", "allowed")
    m.record_request("api", 204, 0.001, "pipeline", "allowed")
    m.record_request("api", 403, 0.001, "authz", "policy_deny")
    m.record_request("", 404, 0.001, "route", "no_route")
    s = scrape(m)
    assert val(s, "garrison_requests_total", route="api", code_class="2xx") == 2
    assert val(s, "garrison_requests_total", route="api", code_class="4xx") == 1
    assert val(s, "garrison_requests_total", route="api", code_class="5xx") == 0
    assert val(s, "garrison_requests_total", route="none", code_class="4xx") == 1


def test_should_export_declared_routes_as_zero_before_any_request() -> None:
    s = scrape(metrics(routes=["a", "b"]))
    for route in ("a", "b", "none"):
        for cls in ("2xx", "3xx", "4xx", "5xx"):
            assert val(s, "garrison_requests_total", route=route, code_class=cls) == 0
        assert val(s, "garrison_request_duration_seconds_count", route=route) == 0
    assert not any(labels and dict(labels).get("code_class") == "1xx" for _, labels in s)


def test_should_count_one_enforce_decision_per_request_and_one_per_shadow_deny() -> None:
    m = metrics()
    m.record_request("api", 200, 0.001, "pipeline", "allowed")
    m.record_request("api", 200, 0.001, "pipeline", "allowed")
    m.record_request("api", 401, 0.001, "authn_jwt", "token_expired")
    m.record_shadow("authz", "policy_no_match")
    s = scrape(m)
    decisions = "garrison_decisions_total"
    assert val(s, decisions, stage="pipeline", reason="allowed", mode="enforce") == 2
    assert val(s, decisions, stage="authn_jwt", reason="token_expired", mode="enforce") == 1
    assert val(s, decisions, stage="authz", reason="policy_no_match", mode="shadow") == 1
    enforce = sum(v for (n, lb), v in s.items() if n == decisions and ("mode", "enforce") in lb)
    assert enforce == 3


def test_should_export_a_cumulative_duration_histogram_with_le_semantics() -> None:
    m = metrics()
    durations = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.2, 7.0]
    for d in durations:
        m.record_request("api", 200, d, "pipeline", "allowed")
    s = scrape(m)
    name = "garrison_request_duration_seconds"

    def bucket(le: str) -> float:
        return val(s, f"{name}_bucket", route="api", le=le)

    assert bucket("0.0005") == 2  # a value equal to the bound falls in that bucket
    assert bucket("0.001") == 3
    assert bucket("0.0025") == 3
    assert bucket("0.005") == 5
    assert bucket("0.25") == 6
    assert bucket("5.0") == 6
    assert bucket("+Inf") == 7
    les = [float(dict(lb)["le"]) for (n, lb) in s if n == f"{name}_bucket" and ("route", "api") in lb]
    assert sorted(les) == [*DURATION_BUCKETS, math.inf]
    counts = [bucket(str(le) if le != math.inf else "+Inf") for le in sorted(les)]
    assert counts == sorted(counts)
    assert val(s, f"{name}_count", route="api") == 7
    assert val(s, f"{name}_sum", route="api") == pytest.approx(sum(durations))


def test_should_count_upstream_errors_by_route_and_reason() -> None:
    m = metrics()
    m.record_upstream_error("api", "upstream_timeout")
    m.record_upstream_error("api", "upstream_timeout")
    m.record_upstream_error("", "upstream_connect_failed")
    s = scrape(m)
    assert val(s, "garrison_upstream_errors_total", route="api", reason="upstream_timeout") == 2
    assert val(s, "garrison_upstream_errors_total", route="none", reason="upstream_connect_failed") == 1


@dataclass
class FakeKeys:
    last_success_at: float | None
    fetch_failures: int
    key_count: int


class BrokenKeys:
    @property
    def last_success_at(self) -> float | None:
        raise RuntimeError("boom")

    fetch_failures = 0
    key_count = 0


def test_should_read_jwks_key_sources_at_scrape_time() -> None:
    m = metrics()
    idp = FakeKeys(last_success_at=940.0, fetch_failures=0, key_count=2)
    m.register_key_source("idp", idp)
    m.register_key_source("never", FakeKeys(None, 3, 0))
    m.register_key_source("broken", BrokenKeys())
    s = scrape(m)
    assert val(s, "garrison_jwks_key_age_seconds", issuer="idp") == 60.0
    assert val(s, "garrison_jwks_keys", issuer="idp") == 2
    assert val(s, "garrison_jwks_fetch_failures_total", issuer="idp") == 0
    assert val(s, "garrison_jwks_key_age_seconds", issuer="never") == math.inf
    assert val(s, "garrison_jwks_fetch_failures_total", issuer="never") == 3
    assert not any(("issuer", "broken") in lb for _, lb in s)

    idp.fetch_failures, idp.key_count = 4, 3  # values are live, not copied at registration
    m.unregister_key_source("never")
    s = scrape(m)
    assert val(s, "garrison_jwks_fetch_failures_total", issuer="idp") == 4
    assert val(s, "garrison_jwks_keys", issuer="idp") == 3
    assert not any(("issuer", "never") in lb for _, lb in s)

    m.set_key_sources({"idp2": idp})  # a reload: issuers gone from the config disappear
    s = scrape(m)
    assert val(s, "garrison_jwks_keys", issuer="idp2") == 3
    assert not any(("issuer", "idp") in lb for _, lb in s)


def test_should_export_drops_reloads_connections_and_build_info() -> None:
    clock = [1000.0]
    m = GatewayMetrics(process_metrics=False, clock=lambda: clock[0])

    @dataclass
    class Log:
        dropped: int

    s = scrape(m)
    assert val(s, "garrison_decision_records_dropped_total") == 0
    assert val(s, "garrison_config_last_reload_success_timestamp_seconds") == 1000.0
    m.watch_decision_log(Log(dropped=5))
    clock[0] = 1234.0
    m.record_reload(ok=True)
    m.record_reload(ok=False)
    m.record_reload(ok=False)
    m.connection_opened()
    m.connection_opened()
    m.connection_closed()
    s = scrape(m)
    assert val(s, "garrison_decision_records_dropped_total") == 5
    assert val(s, "garrison_config_reloads_total", result="ok") == 1
    assert val(s, "garrison_config_reloads_total", result="error") == 2
    assert val(s, "garrison_config_last_reload_success_timestamp_seconds") == 1234.0
    assert val(s, "garrison_connections_open") == 1
    assert val(s, "garrison_build_info", version=__version__) == 1


def test_should_keep_each_gateway_in_its_own_registry() -> None:
    a, b = metrics(), metrics()
    a.record_request("api", 200, 0.001, "pipeline", "allowed")
    assert val(scrape(a), "garrison_requests_total", route="api", code_class="2xx") == 1
    assert ("garrison_requests_total", frozenset({("route", "api"), ("code_class", "2xx")})) not in scrape(b)
    assert b"garrison_" not in generate_latest(REGISTRY)


def test_should_include_process_metrics_by_default() -> None:
    text = generate_latest(GatewayMetrics().registry).decode()
    assert "process_cpu_seconds_total" in text or "python_info" in text


def test_should_fold_routes_beyond_the_cap_into_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_mod, "MAX_ROUTES", 3)  # "" (unrouted) + 2
    m = metrics(routes=["a", "b"])
    for name in ("c", "d", "e"):
        m.record_request(name, 200, 0.001, "pipeline", "allowed")
    m.record_request("a", 200, 0.001, "pipeline", "allowed")
    s = scrape(m)
    assert val(s, "garrison_requests_total", route="other", code_class="2xx") == 3
    assert val(s, "garrison_requests_total", route="a", code_class="2xx") == 1
    assert val(s, "garrison_request_duration_seconds_count", route="other") == 3


def test_should_fold_label_pairs_beyond_the_cap_into_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_mod, "MAX_PAIRS", 2)
    m = metrics()
    for i in range(4):
        m.record_shadow("waf", f"r{i}")
    s = scrape(m)
    assert val(s, "garrison_decisions_total", stage="other", reason="other", mode="shadow") == 2


def test_should_reject_unsorted_buckets() -> None:
    with pytest.raises(ValueError, match="increasing"):
        GatewayMetrics(buckets=(0.1, 0.01), process_metrics=False)


def test_package_exports_are_pinned() -> None:
    import garrison.telemetry as telemetry

    assert sorted(telemetry.__all__) == sorted(
        [
            "DURATION_BUCKETS",
            "AdminServer",
            "AuditError",
            "AuditLog",
            "DecisionLog",
            "DecisionRecord",
            "DropCounter",
            "GatewayMetrics",
            "KeySource",
            "ShadowDenial",
            "decision_record",
            "hmac_value",
            "start_admin",
            "verify_log",
        ]
    )
    for name in telemetry.__all__:
        assert getattr(telemetry, name) is not None
