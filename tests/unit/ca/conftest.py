from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ca_kit import NOW, new_ca

from garrison.identity.ca import Kek, WorkloadCA
from garrison.store import Store


@pytest.fixture
def kek() -> Kek:
    return Kek.generate()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "garrison.db")
    yield s
    s.close()


@pytest.fixture
def ca(store: Store, kek: Kek) -> WorkloadCA:
    ca = new_ca(store, kek)
    ca.initialize(now=NOW)
    return ca
