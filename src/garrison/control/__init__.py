"""The control plane (ARCHITECTURE §1, §3): ``ControlPlane`` wiring (plane.py), its HTTP API and server."""

from garrison.control.plane import ControlPlane, ServerCredentials

__all__ = ["ControlPlane", "ServerCredentials"]
