"""A release the coordinator did not answer, retried by the lab helper after edgekit is done, against a real labgrid
coordinator frozen with SIGSTOP (edgekit/lab/rig.py's bare rig: NetworkServices with no board behind them; nothing
is deployed): a coordinator only paused a moment is no "release pending", and a SIGTERM to the helper in its
retries ends it at once, leaving the labgrid-client command that frees the place by hand in its log."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_helpers import FROZEN_BOUNDS, holders, kick_held, short_bounds

from edgekit.lab import rig as lab_rig
from edgekit.lab.client import LabClient, lab_python
from edgekit.target import LabSpec


@pytest.fixture
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_rig.Rig]:
    """One per test: a frozen coordinator may drop the exporter's stream (its place then has no service)."""
    lab_python()  # no .venv-lab: LabSetupError naming `make setup`
    started = lab_rig.start_bare(tmp_path_factory.mktemp("lab") / "rig", {"pi5-a": {"board": "pi5"}})
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def lab(rig: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[lab_rig.Rig]:
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    try:
        yield rig
    finally:
        os.killpg(rig.pids[0], signal.SIGCONT)
        kick_held(rig)


def test_a_coordinator_paused_a_moment_is_no_release_pending(
    lab: lab_rig.Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator paused through the release (SIGSTOP), resumed a moment after the helper's first attempt
    failed: edgekit said `release pending: the lab helper keeps trying for up to 10 min ... teammates see pi5-a
    held` though the helper's next try gave it back a few seconds later. edgekit now waits a short bounded time
    for the retries' answer and says the place was released."""
    short_bounds(monkeypatch)  # the grace stays the product's: the later try has to answer within it
    said: list[str] = []
    coordinator = lab.pids[0]

    def say(line: str) -> None:
        said.append(line)
        if "was not released" in line:  # the first attempt failed: the coordinator answers again 2 s later
            threading.Timer(2.0, os.killpg, (coordinator, signal.SIGCONT)).start()

    lease = LabClient(lab.coordinator).hold(LabSpec(tags={"board": "pi5"}, wait_s=10), say=say)
    os.killpg(coordinator, signal.SIGSTOP)
    lease.close()
    assert any("was not released" in s for s in said), said  # the coordinator did miss the first attempt
    assert not any("release pending" in s for s in said), said
    assert any("pi5-a released on a later try" in s for s in said), said
    assert holders(lab)["pi5-a"] is None
    assert lease.proc.wait(timeout=30) == 0


@pytest.mark.parametrize("moment", ["between-tries", "opening-a-session"])
def test_a_sigterm_to_the_helper_retrying_a_release_ends_it_and_says_how_to_free_the_place(
    lab: lab_rig.Rig, tmp_path: Path, moment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kill PID` or `systemctl stop` of a helper retrying a release the frozen coordinator did not answer: it
    ignored SIGTERM and went on for up to 10 min. It now makes one last quick attempt and exits within a few
    seconds, its log saying the place may still be held and the labgrid-client command that frees it; that
    command does, once the coordinator answers. `moment`: the SIGTERM comes between two tries (just after the
    first retry failed: the helper pauses 4 s before the next), or in the middle of one (a new session to the frozen
    coordinator being opened: half-way through the next try's CONNECT_S)."""
    short_bounds(monkeypatch, grace=True)
    said: list[str] = []
    lease = LabClient(lab.coordinator).hold(LabSpec(tags={"board": "pi5"}, wait_s=10), say=said.append)
    holder = holders(lab)["pi5-a"]
    assert holder is not None
    os.killpg(lab.pids[0], signal.SIGSTOP)
    lease.close()
    pending = [s for s in said if "release pending" in s]
    assert pending and lease.proc.poll() is None, said  # retrying on its own
    log = tmp_path / "home" / "lab" / f"helper-{lease.proc.pid}.log"
    deadline = time.monotonic() + 60
    while "release failed again" not in (log.read_text() if log.exists() else ""):  # the first retry's end
        assert time.monotonic() < deadline and lease.proc.poll() is None, said
        time.sleep(0.1)
    if moment == "opening-a-session":  # the 4 s pause, then half of the next try's session opening
        time.sleep(4.0 + float(FROZEN_BOUNDS["EDGEKIT_LAB_CONNECT_S"]) / 2)
    t0 = time.monotonic()
    os.kill(lease.proc.pid, signal.SIGTERM)
    try:
        code = lease.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        lease.proc.kill()
        pytest.fail("the helper went on retrying after SIGTERM")
    assert time.monotonic() - t0 < 10 and code == 0
    assert str(log) in pending[0], pending
    text = log.read_text()
    assert f"pi5-a may still be held by {holder} after SIGTERM" in text, text
    command = re.search(r"release it by hand: (.*labgrid-client .*)$", text, re.M)
    assert command is not None, text
    assert f"-x {lab.coordinator} -p pi5-a release" in command[1], text
    assert any("may still be held" in s and "labgrid-client" in s for s in said), (
        said
    )  # edgekit still listened
    os.killpg(lab.pids[0], signal.SIGCONT)
    assert holders(lab)["pi5-a"] == holder  # nobody gave it back
    words = shlex.split(command[1])
    env = dict(os.environ) | dict(w.split("=", 1) for w in words if re.match(r"^LG_\w+=", w))
    argv = [str(lab_python().parent / "labgrid-client")] + words[words.index("labgrid-client") + 1 :]
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=60)
    assert holders(lab)["pi5-a"] is None
