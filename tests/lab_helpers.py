"""What the lab tests share: a coordinator's holders, a teammate acting with labgrid's own client, a folder of lab
target files put on EDGEKIT_TARGETS_DIR for a rig's lifetime, a bare one-place rig a test may freeze, and the short
bounds of the tests that freeze the coordinator."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def frozen_pi5_lab(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[lab_rig.Rig]:
    """A bare rig with one place (pi5-a), for one test that may freeze its coordinator (a frozen coordinator may
    drop the exporter's stream): thawed and every place given back after; EDGEKIT_HOME the test's own."""
    lab_python()  # no .venv-lab: LabSetupError naming `make setup`
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    rig = lab_rig.start_bare(tmp_path_factory.mktemp("lab") / "rig", {"pi5-a": {"board": "pi5"}})
    try:
        yield rig
    finally:
        os.killpg(rig.pids[0], signal.SIGCONT)
        try:
            kick_held(rig)
        finally:
            rig.stop()


# The lab helper's bounds against a coordinator that does not answer (edgekit/lab/helper.py's CALL_S, CONNECT_S,
# LAST_TRY_S; helper_end.py's RETRY_GRACE_S): the tests that freeze it sit through them, again and again, and what
# they prove (an error, never a hang; "release pending" said once nothing answered in the grace; a SIGTERM ends the
# retries after one last try) does not depend on their length. A coordinator that answers does so in well under a
# second, even beside the emulated devices' work on the other core.
FROZEN_BOUNDS = {"EDGEKIT_LAB_CALL_S": "5", "EDGEKIT_LAB_CONNECT_S": "5", "EDGEKIT_LAB_LAST_TRY_S": "1"}
SHORT_GRACE = {"EDGEKIT_LAB_RETRY_GRACE_S": "2"}  # only where the coordinator stays frozen through the grace


def short_bounds(monkeypatch: pytest.MonkeyPatch, grace: bool = False) -> None:
    """FROZEN_BOUNDS (and SHORT_GRACE) for the helpers this test starts."""
    for name, value in {**FROZEN_BOUNDS, **(SHORT_GRACE if grace else {})}.items():
        monkeypatch.setenv(name, value)
