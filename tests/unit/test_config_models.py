"""garrison.yaml validation: every bad value is refused with its key path (sans-IO, no files)."""

from __future__ import annotations

import pytest

from garrison.config import parse_config
from garrison.errors import ConfigError

ROUTE = "routes: [{name: r, path: /x, upstream: 'http://127.0.0.1:1'}]\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("listeners: [{address: '1.2.3.4'}]", "listeners[0].address", id="address-without-port"),
        pytest.param("listeners: [{address: 'example.com:80'}]", "IP literal", id="address-hostname"),
        pytest.param("listeners: [{trusted_proxies: ['10.0.0.0/33']}]", "CIDR", id="bad-cidr"),
        pytest.param("listeners: []", "listeners", id="no-listener"),
        pytest.param(
            "routes: [{name: r, path: /x/**/y, upstream: 'http://127.0.0.1:1'}]",
            "trailing /**",
            id="wildcard-inside",
        ),
        pytest.param(
            "routes: [{name: r, path: /a/../b, upstream: 'http://127.0.0.1:1'}]",
            "normalized",
            id="dot-dot-route",
        ),
        pytest.param("routes: [{name: r, path: /x}]", "exactly one of upstream or service", id="no-target"),
        pytest.param(ROUTE + "routes2: 1", "routes2", id="unknown-top-key"),
        pytest.param(
            ROUTE + "policies: [{name: p, from: {}}]", "must name services", id="policy-without-who"
        ),
        pytest.param(
            ROUTE + "policies: [{name: p, routes: [nope], from: {any: true}}]",
            "unknown route",
            id="policy-unknown-route",
        ),
        pytest.param(
            "issuers: [{name: i, issuer: x, audiences: [a], jwks_url: 'http://idp/jwks'}]",
            "https",
            id="jwks-over-http",
        ),
        pytest.param(
            "issuers: [{name: i, issuer: x, audiences: [a]}]",
            "exactly one key source",
            id="issuer-without-keys",
        ),
        pytest.param(
            "issuers: [{name: i, issuer: x, audiences: [], keys: [{pem: k}]}]", "audiences", id="no-audience"
        ),
        pytest.param(
            "issuers: [{name: i, issuer: x, audiences: [a], algorithms: [HS256], keys: [{pem: k}]}]",
            "algorithms",
            id="hmac-algorithm",
        ),
        pytest.param(
            "issuers: [{name: i, issuer: x, audiences: [a], algorithms: [none], keys: [{pem: k}]}]",
            "algorithms",
            id="alg-none",
        ),
        pytest.param("rate_limits: [{name: r, rate: 1, burst: 1, key: [ip]}]", "key", id="bad-rate-key"),
        pytest.param(ROUTE + "x: [", "invalid YAML", id="broken-yaml"),
    ],
)
def test_bad_config_is_refused_with_its_key_path(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert message in str(exc.value)


def test_duplicate_yaml_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'routes'"):
        parse_config(ROUTE + ROUTE)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"routes: duplicate name\(s\) \['r'\]"):
        parse_config(
            "routes: [{name: r, path: /x, upstream: 'http://127.0.0.1:1'}, {name: r, path: /y, upstream: 'http://127.0.0.1:1'}]"
        )


def test_an_empty_file_is_a_valid_deny_everything_config() -> None:
    cfg = parse_config("")
    assert cfg.routes == [] and cfg.policies == []
