"""The `garrison` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.gateway import Signer, base_config

GARRISON = [sys.executable, "-m", "garrison.cli.main"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GARRISON, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    signer = Signer(tmp_path)
    p = tmp_path / "garrison.yaml"
    p.write_text(base_config(signer, 9))
    return p


def test_config_check_accepts_a_good_file(config_file: Path) -> None:
    r = run("config", "check", str(config_file))
    assert r.returncode == 0, r.stderr
    assert "ok (4 routes, 2 policies, 1 issuers)" in r.stdout


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(lambda t: t + "\nbogus: 1\n", "bogus: Extra inputs are not permitted", id="unknown-key"),
        pytest.param(
            lambda t: t.replace("path: /admin/**", "path: /microservice1/**"),
            "overlap",
            id="overlapping-routes",
        ),
        pytest.param(
            lambda t: t.replace("services: [microservice2]", "services: [ghost]"),
            "unknown service 'ghost'",
            id="unknown-service",
        ),
        pytest.param(
            lambda t: t.replace("    methods: [GET]\n", "    methods: [FETCH]\n", 1),
            "unknown method",
            id="bad-method",
        ),
        pytest.param(
            lambda t: t.replace("trust_domain: test.local", "trust_domain: Test.Local"),
            "trust_domain",
            id="bad-trust-domain",
        ),
    ],
)
def test_config_check_names_the_problem(config_file: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    config_file.write_text(mutate(config_file.read_text()))
    r = run("config", "check", str(config_file))
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_config_error_names_the_line(config_file: Path) -> None:
    text = config_file.read_text().replace("    public: true\n", "    public: maybe\n", 1)
    config_file.write_text(text)
    r = run("config", "check", str(config_file))
    line = next(i + 1 for i, x in enumerate(text.splitlines()) if "public: maybe" in x)
    assert f"garrison.yaml:{line}: routes[2].public" in r.stderr


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    r = run("gateway", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert "no such file" in r.stderr and "Traceback" not in r.stderr


def test_config_schema_is_json_schema() -> None:
    r = run("config", "schema")
    schema = json.loads(r.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert {"routes", "policies", "issuers", "listeners"} <= set(schema["properties"])


def test_policy_explain_shows_decision_and_rule(config_file: Path, tmp_path: Path) -> None:
    signer = Signer(tmp_path, kid="k1")
    config_file.write_text(base_config(signer, 9))
    ok = run(
        "policy",
        "explain",
        str(config_file),
        "--path",
        "/microservice1/getData",
        "--token",
        signer.svc("microservice2"),
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ms2-reads-ms1: MATCH" in ok.stdout and "decision: ALLOW" in ok.stdout
    no = run(
        "policy",
        "explain",
        str(config_file),
        "--path",
        "/microservice1/getData",
        "--token",
        signer.svc("microservice3"),
    )
    assert no.returncode == 1
    assert "DENY 403" in no.stdout and "default deny" in no.stdout
    anon = run("policy", "explain", str(config_file), "--path", "/microservice1/getData")
    assert "DENY 401 authn_required" in anon.stdout


def test_demo_exits_zero_when_every_step_matched() -> None:
    r = subprocess.run([*GARRISON, "demo"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "MISMATCH" not in r.stdout
    assert "steps matched" in r.stdout and "curl" in r.stdout
