"""The public surface of garrison.identity.ca and garrison.store is pinned (STYLE §9)."""

from __future__ import annotations

import importlib

import pytest

import garrison.identity.ca
import garrison.store


def test_ca_all_is_pinned() -> None:
    assert sorted(garrison.identity.ca.__all__) == [
        "CaError",
        "CaSettings",
        "CheckedCsr",
        "IssuedSvid",
        "JoinTokenError",
        "Kek",
        "RevocationList",
        "SealError",
        "SpiffeId",
        "SvidError",
        "TrustBundle",
        "WorkloadCA",
        "build_svid",
        "check_csr",
        "generate_kek_file",
        "leaf_spiffe_id",
        "parse_bundle",
        "render_bundle",
    ]


def test_store_all_is_pinned() -> None:
    assert sorted(garrison.store.__all__) == [
        "BundleRecord",
        "CaKeyPurpose",
        "CaKeyRecord",
        "CaKeyState",
        "IssueState",
        "JoinTokenRecord",
        "RedeemOutcome",
        "SCHEMA_VERSION",
        "Store",
        "StoreError",
        "SvidRecord",
    ]


@pytest.mark.parametrize("module", ["garrison.identity.ca", "garrison.store"])
def test_everything_exported_exists(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_new_errors_sit_in_the_garrison_tree() -> None:
    from garrison.errors import GarrisonError, IdentityError

    ca = garrison.identity.ca
    assert issubclass(ca.SvidError, IdentityError) and issubclass(ca.JoinTokenError, IdentityError)
    assert issubclass(ca.SealError, GarrisonError) and issubclass(ca.CaError, GarrisonError)
    assert issubclass(garrison.store.StoreError, GarrisonError)
