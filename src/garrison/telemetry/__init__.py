"""Telemetry: Prometheus metrics, per-request decision records, the admin listener.

Nothing here runs pydantic or formats text on the request path; see each module's docstring for its cost.
"""

from garrison.telemetry.admin import AdminServer, start_admin
from garrison.telemetry.decisions import DecisionLog, DecisionRecord, ShadowDenial, decision_record
from garrison.telemetry.metrics import DURATION_BUCKETS, DropCounter, GatewayMetrics, KeySource

__all__ = [
    "DURATION_BUCKETS",
    "AdminServer",
    "DecisionLog",
    "DecisionRecord",
    "DropCounter",
    "GatewayMetrics",
    "KeySource",
    "ShadowDenial",
    "decision_record",
    "start_admin",
]
