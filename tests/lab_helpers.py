"""What the lab tests share: a coordinator's holders, a teammate acting with labgrid's own client, and a folder
of lab target files put on EDGEKIT_TARGETS_DIR for a rig's lifetime."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from edgekit.lab import rig as lab_rig
from edgekit.lab.client import LabClient, lab_python


def holders(rig: lab_rig.Rig) -> dict[str, str | None]:
    return {p.name: p.holder for p in LabClient(rig.coordinator).places()}


def kick_held(rig: lab_rig.Rig) -> None:
    """Give back every place someone holds (a failing test leaves nothing held for the next)."""
    client = LabClient(rig.coordinator)
    for name, holder in holders(rig).items():
        if holder is not None:
            client.kick(name)


def teammate(rig: lab_rig.Rig, place: str, *verbs: str) -> None:
    """bob on host `other`, with labgrid's own client: `release --kick`, `acquire`, `release`."""
    env = {**os.environ, "LG_COORDINATOR": rig.coordinator, "LG_USERNAME": "bob", "LG_HOSTNAME": "other"}
    for verb in verbs:
        subprocess.run(
            [str(lab_python().parent / "labgrid-client"), "-p", place, *verb.split()],
            env=env,
            check=True,
            capture_output=True,
        )


@contextlib.contextmanager
def serving(started: lab_rig.Rig, targets: Path) -> Iterator[lab_rig.Rig]:
    """`started` with `targets` on EDGEKIT_TARGETS_DIR until the rig stops (the variable restored after)."""
    old = os.environ.get("EDGEKIT_TARGETS_DIR")
    os.environ["EDGEKIT_TARGETS_DIR"] = str(targets)
    try:
        yield started
    finally:
        started.stop()
        if old is None:
            os.environ.pop("EDGEKIT_TARGETS_DIR", None)
        else:
            os.environ["EDGEKIT_TARGETS_DIR"] = old
