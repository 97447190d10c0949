"""Telemetry: Prometheus metrics, per-request decision records, the admin listener, the audit log.

Nothing here runs pydantic or formats text on the request path; see each module's docstring for its cost.
"""

from garrison.telemetry.admin import AdminServer, start_admin
from garrison.telemetry.audit import AuditError, AuditLog, hmac_value, verify_log
from garrison.telemetry.decisions import DecisionLog, DecisionRecord, ShadowDenial, decision_record
from garrison.telemetry.metrics import DURATION_BUCKETS, DropCounter, GatewayMetrics, KeySource

__all__ = [
    "DURATION_BUCKETS",
    "AdminServer",
    "AuditError",
    "AuditLog",
    "DecisionLog",
    "DecisionRecord",
    "DropCounter",
    "GatewayMetrics",
    "KeySource",
    "ShadowDenial",
    "decision_record",
    "hmac_value",
    "start_admin",
    "verify_log",
]
