"""The workload CA (ARCHITECTURE §3): SPIFFE IDs, sealed CA keys, X.509-SVIDs, join tokens,
trust bundles and revocation. Stateful parts go through ``garrison.store``; the rest is sans-IO."""

from garrison.identity.ca.authority import CaSettings, WorkloadCA
from garrison.identity.ca.bundle import TrustBundle, parse_bundle, render_bundle
from garrison.identity.ca.errors import CaError, JoinTokenError, SealError, SvidError
from garrison.identity.ca.revocation import RevocationList
from garrison.identity.ca.sealing import Kek, generate_kek_file
from garrison.identity.ca.spiffe_id import SpiffeId
from garrison.identity.ca.svid import CheckedCsr, IssuedSvid, build_svid, check_csr, leaf_spiffe_id

__all__ = [
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
