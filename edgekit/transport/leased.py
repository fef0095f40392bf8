"""The SSH transport of an acquired lab place: the same transport and host-key rules as any board, and closing
it gives the place back to the lab (edgekit/lab/acquire.py puts the lease on the target)."""

from __future__ import annotations

from typing import Protocol

from edgekit.target import Target
from edgekit.transport.ssh import SshTransport


class Releasable(Protocol):
    """What the transport needs of a lab lease (edgekit.lab.lease.Lease)."""

    def release(self, name: str) -> None: ...

    @property
    def lost(self) -> dict[str, str]: ...


class LeasedSshTransport(SshTransport):
    def __init__(self, target: Target, lease: Releasable) -> None:
        super().__init__(target)
        self.lease = lease

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.lease.release(self.target.name)

    def lost_hold(self) -> str | None:
        """After close(): who holds the place now when it was taken from this run before it ended."""
        return self.lease.lost.get(self.target.name)
