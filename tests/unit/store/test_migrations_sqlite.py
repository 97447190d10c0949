"""The migration contract (migration_contract.py) on SQLite files."""

from __future__ import annotations

import sys
from collections.abc import Callable
from itertools import count
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from migration_contract import *  # noqa: F403


@pytest.fixture
def new_db(tmp_path: Path) -> Callable[[], str]:
    n = count()
    return lambda: str(tmp_path / f"db{next(n)}.sqlite")
