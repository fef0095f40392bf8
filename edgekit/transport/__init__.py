"""Transports run commands and move files on a device: SSH (paramiko) for boards and emulated devices,
local for the host CPU. Both share one API so the host is measured exactly as a device is."""

from edgekit.transport.base import PutResult, RunResult, Transport

__all__ = ["PutResult", "RunResult", "Transport"]
