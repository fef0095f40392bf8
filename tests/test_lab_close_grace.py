"""Lease.close against a real labgrid coordinator frozen with SIGSTOP through the whole close (edgekit/lab/rig.py's
bare rig: nothing is deployed): the "release pending" grace is sat through once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_helpers import frozen_pi5_lab, short_bounds

from edgekit.lab import rig as lab_rig
from edgekit.lab.client import LabClient
from edgekit.target import LabSpec


@pytest.fixture
def lab(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[lab_rig.Rig]:
    """One per test, thawed and every place given back after (lab_helpers.frozen_pi5_lab)."""
    yield from frozen_pi5_lab(tmp_path_factory, tmp_path, monkeypatch)


def test_lease_close_sits_through_the_release_pending_grace_once(
    lab: lab_rig.Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator frozen through the whole close: edgekit waits RETRY_GRACE_S for the helper's first retries,
    says `release pending`, and returns. Lease.close ends the helper twice (its release's end, then its own), and
    the second sat through the grace again. Measured from the helper's failed release (`was not released`), the
    close now takes one grace, not two (a grace long enough that two are clearly over the bound under load)."""
    short_bounds(monkeypatch)  # CALL_S 5 s: the release fails fast
    grace = 6.0
    monkeypatch.setenv("EDGEKIT_LAB_RETRY_GRACE_S", f"{grace:g}")
    said: list[tuple[float, str]] = []
    lease = LabClient(lab.coordinator).hold(
        LabSpec(tags={"board": "pi5"}, wait_s=10), say=lambda s: said.append((time.monotonic(), s))
    )
    os.killpg(lab.pids[0], signal.SIGSTOP)
    lease.close()
    closed = time.monotonic()
    failed = [t for t, s in said if "pi5-a was not released" in s]
    pending = [t for t, s in said if "release pending" in s]
    assert failed and len(pending) == 1, said
    assert lease.proc.poll() is None, said  # left retrying on its own
    assert closed - failed[0] < grace * 1.5, (closed - failed[0], said)  # twice: 2 graces and more
    assert closed - pending[0] < grace / 2, (closed - pending[0], said)
    lease.proc.kill()
    lease.proc.wait(timeout=30)
