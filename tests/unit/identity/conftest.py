"""The identity unit tests' session fixture: keys are generated once."""

from __future__ import annotations

import pytest
from identity_kit import Kit, make_kit


@pytest.fixture(scope="session")
def kit() -> Kit:
    return make_kit()
