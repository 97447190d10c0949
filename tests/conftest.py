from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.gateway import GatewayThread, Signer, base_config


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return Signer(tmp_path)


@pytest.fixture
def gateway(tmp_path: Path, signer: Signer) -> Iterator[GatewayThread]:
    log = tmp_path / "decisions.jsonl"
    gw = GatewayThread(tmp_path, lambda port: base_config(signer, port, log=log)).start()
    try:
        yield gw
    finally:
        gw.stop()
