"""The SSH transport of an acquired place: the same transport and host-key rules as any board, and closing
it gives the place back to the lab."""

from __future__ import annotations

from edgekit.lab.client import Lease
from edgekit.target import Target
from edgekit.transport.ssh import SshTransport


class LeasedSshTransport(SshTransport):
    def __init__(self, target: Target, lease: Lease) -> None:
        super().__init__(target)
        self.lease = lease

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.lease.release(self.target.name)
