"""``issuers[].jwks_ca_file`` and adding/removing ``control_plane`` by reload (real control plane)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from garrison.config.models import Issuer
from garrison.errors import ConfigError
from garrison.identity.authenticator import default_provider_factory
from garrison.proxy.gateway import Gateway
from garrison.proxy.trust import TrustPuller
from integration.trust_kit import REFRESH
from support.control import ControlPlaneThread, running_control_plane
from support.gateway import LIMITS, GatewayThread


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    (tmp_path / "cp").mkdir(mode=0o700)
    with running_control_plane(tmp_path / "cp") as plane:
        yield plane


def _issuer(cp: ControlPlaneThread, ca_file: str, *, revocations: bool = False) -> Issuer:
    return Issuer.model_validate(
        {
            "name": "cp",
            "issuer": cp.base_url,
            "jwks_url": f"{cp.base_url}/oauth2/jwks",
            "jwks_ca_file": ca_file,
            "audiences": ["x"],
            "revocations": revocations,
        }
    )


async def _fetch(issuer: Issuer, base_dir: Path) -> int:
    provider = default_provider_factory(base_dir)(issuer, lambda keys: None)
    try:
        await provider.start()
        return provider.key_count
    finally:
        await provider.close()


def test_jwks_server_is_verified_with_jwks_ca_file(cp: ControlPlaneThread, tmp_path: Path) -> None:
    (tmp_path / "cp.pem").write_bytes(cp.ca_file.read_bytes())
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other.pem"))
    assert asyncio.run(_fetch(_issuer(cp, "cp.pem"), tmp_path)) >= 1  # relative to the config's directory
    # another CA: the control plane's certificate does not verify, no keys are taken
    assert asyncio.run(_fetch(_issuer(cp, "other.pem"), tmp_path)) == 0
    with pytest.raises(ConfigError, match=r"issuers\.cp\.jwks_ca_file: cannot load"):
        default_provider_factory(tmp_path)(_issuer(cp, "missing.pem"), lambda keys: None)


def _yaml(cp: ControlPlaneThread, upstream: int, *, with_cp: bool) -> str:
    section = (
        f'control_plane: {{url: "{cp.base_url}", ca_file: "{cp.ca_file}", bundle_refresh_seconds: {REFRESH}}}'
        if with_cp
        else ""
    )
    return f"""
trust_domain: {cp.trust_domain}
listeners: [{{name: plain, address: "127.0.0.1:0", limits: {LIMITS}}}]
issuers:
  - name: cp
    issuer: "{cp.base_url}"
    jwks_url: "{cp.base_url}/oauth2/jwks"
    jwks_ca_file: "{cp.ca_file}"
    audiences: ["spiffe://{cp.trust_domain}/svc/billing"]
    revocations: {str(with_cp).lower()}
services:
  billing: {{upstream: "http://127.0.0.1:{upstream}"}}
routes:
  - {{name: public, path: /public/**, service: billing, public: true}}
telemetry: {{admin: null}}
{section}
"""


def test_reload_adds_and_removes_the_control_plane(cp: ControlPlaneThread, tmp_path: Path) -> None:
    gwdir = tmp_path / "gw"
    gwdir.mkdir()
    gw = GatewayThread(gwdir, lambda port: _yaml(cp, port, with_cp=False)).start()
    try:
        gateway = gw.gateway
        assert gateway is not None and gateway.trust is None  # nothing needs it: no pulling
        assert gw.reload(_yaml(cp, gw.upstream_port, with_cp=True))
        puller = _trust(gateway)
        assert puller is not None and puller.state is not None  # fetched before the swap
        assert gw.reload(_yaml(cp, gw.upstream_port, with_cp=False))
        assert _trust(gateway) is None
        assert gw.call(puller.fetch_once()) is False  # the old puller was closed
    finally:
        gw.stop()


def _trust(gateway: Gateway) -> TrustPuller | None:
    return gateway.trust  # read through a call: mypy would narrow the attribute across the reload


def test_puller_rereads_a_changed_ca_file(cp: ControlPlaneThread, tmp_path: Path) -> None:
    """The control plane's CA changed (a new root): once the operator updates ca_file, pulls resume."""
    assert cp.config.control_plane is not None
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))  # not the control plane's CA
    settings = cp.config.control_plane.model_copy(update={"ca_file": "ca.pem"})

    async def scenario() -> tuple[bool, bool, int | None]:
        puller = TrustPuller(settings, cp.trust_domain, tmp_path)
        try:
            first = await puller.fetch_once()  # the server's certificate does not verify
            (tmp_path / "ca.pem").write_bytes(cp.ca_file.read_bytes())
            second = await puller.fetch_once()
            return first, second, puller.sequence
        finally:
            await puller.close()

    first, second, sequence = asyncio.run(scenario())
    assert (first, second) == (False, True) and sequence is not None
