"""One running control plane per store; no KEK rotation under a running one (the reviewer's M3)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from garrison.cli.main import main
from garrison.control.server import ControlPlaneServer
from garrison.errors import StoreError
from support.control import ControlPlaneThread


def test_kek_rotation_is_refused_while_the_control_plane_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "new-kek.key"
    with ControlPlaneThread(tmp_path) as cp:
        argv = ["kek", "rotate", "-c", str(cp.config_path), "--new-kek-file", str(new), "--generate"]
        assert main(argv) != 0
        assert "stop the running control plane first" in capsys.readouterr().err
        assert not new.exists()  # nothing generated, nothing re-sealed
        with cp.client() as c:  # and the running plane is untouched
            assert c.get("/v1/trust").status_code == 200
    assert main(argv) == 0  # stopped: the rotation goes through
    assert new.exists()


def test_a_second_control_plane_on_the_same_store_is_refused(tmp_path: Path) -> None:
    with ControlPlaneThread(tmp_path) as cp:
        second = ControlPlaneServer(cp.plane, "127.0.0.1", 0)
        with pytest.raises(StoreError, match="another garrison process holds this store"):
            asyncio.run(second.start())
        with cp.client() as c:
            assert c.get("/healthz").status_code == 200
