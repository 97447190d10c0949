from __future__ import annotations

from pathlib import Path

import pytest

from garrison.waf import WafEngine

CRS3_SETUP = Path("/etc/modsecurity/crs/crs-setup.conf")
CRS3_RULES = Path("/usr/share/modsecurity-crs/rules")


@pytest.fixture(scope="session")
def crs3_pl1() -> WafEngine:
    if not CRS3_RULES.is_dir():
        pytest.skip("CRS 3.3 rules not installed (run scripts/install-crs.sh)")
    return WafEngine.load([CRS3_SETUP, CRS3_RULES], paranoia_level=1)
