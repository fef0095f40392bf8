"""The transport for a target: SSH for boards, phones, emulated devices and lab places, local for the host.

The concrete classes are imported here, on demand, so paramiko is loaded only for an SSH target. A local target's
work dir is pruned of earlier runs' leftovers here (a device's at connect). An emulated
device or a lab place must be made reachable first (`edgekit.emu.device.ensure_device`): this module only
connects to what the target says.
"""

from __future__ import annotations

from edgekit.errors import TargetError
from edgekit.target import Target, TransportKind
from edgekit.transport.base import Transport


def open_transport(target: Target) -> Transport:
    """A lazily connecting transport for the target (SSH or local). A local one's work dir is pruned now, as a
    device's is at connect (edgekit.transport.work_prune)."""
    if target.transport is TransportKind.LOCAL:
        from pathlib import Path

        from edgekit.transport.local import LocalTransport
        from edgekit.transport.work_prune import prune

        local = LocalTransport(target)
        prune(Path(local.work_dir))
        return local
    if target._lease is not None:
        from edgekit.transport.leased import LeasedSshTransport

        return LeasedSshTransport(target, target._lease)
    if target.lab is not None and not target.host:
        raise TargetError(
            f"lab target {target.name}: no place acquired yet",
            where=target.name,
            hint="edgekit.emu.device.ensure_device acquires one (edgekit deploy does)",
        )
    if target.emulated and not target.host:
        raise TargetError(
            f"emulated device {target.emulated.device} is not running",
            where=target.name,
            hint=f"edgekit emu up {target.emulated.device} (or call edgekit.emu.device.ensure_device)",
        )
    from edgekit.transport.ssh import SshTransport

    return SshTransport(target)
