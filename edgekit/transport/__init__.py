"""Transports run commands and move files on a device: SSH (paramiko) for boards and emulated devices,
local for the host CPU. Both share one API so the host is measured exactly as a device is.

Get one with `edgekit.transport.open_transport(target)`; the concrete classes load lazily (paramiko is only
imported for SSH targets).
"""

from typing import TYPE_CHECKING, Any

from edgekit.transport.base import PutResult, RunResult, Transport, sha256_file
from edgekit.transport.open import open_transport

if TYPE_CHECKING:
    from edgekit.transport.local import LocalTransport
    from edgekit.transport.ssh import SshTransport

__all__ = [
    "LocalTransport",
    "PutResult",
    "RunResult",
    "SshTransport",
    "Transport",
    "open_transport",
    "sha256_file",
]


def __getattr__(name: str) -> Any:
    if name == "SshTransport":
        from edgekit.transport.ssh import SshTransport

        return SshTransport
    if name == "LocalTransport":
        from edgekit.transport.local import LocalTransport

        return LocalTransport
    raise AttributeError(name)
