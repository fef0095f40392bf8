"""Holding lab places against a real labgrid coordinator and exporter on 127.0.0.1 (edgekit/lab/rig.py's bare
rig: NetworkServices with no board behind them, nothing is deployed): what the holder helper does when edgekit is
killed, when it is signalled or killed itself, and when the coordinator restarts under a hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekit.lab import rig as lab_rig
from edgekit.lab.client import LabClient, lab_python
from edgekit.target import LabSpec

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_rig.Rig]:
    lab_python()  # no .venv-lab: LabSetupError naming `make setup`
    places = {f"pi4-{c}": {"board": "pi4"} for c in "abc"} | {"pi5-a": {"board": "pi5"}}
    started = lab_rig.start_bare(tmp_path_factory.mktemp("lab") / "rig", places)
    try:
        yield started
    finally:
        started.stop()


def holders(rig: lab_rig.Rig) -> dict[str, str | None]:
    return {p.name: p.holder for p in LabClient(rig.coordinator).places()}


def wait_for(what: str, done: object, timeout_s: float = 10.0) -> float:
    """Seconds until `done()` is true (AssertionError naming `what` after timeout_s)."""
    start = time.monotonic()
    while not done():  # type: ignore[operator]
        assert time.monotonic() - start < timeout_s, what
        time.sleep(0.1)
    return time.monotonic() - start


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


def free_all(rig: lab_rig.Rig) -> None:
    """Whatever a failing test left held, given back (the next test starts from a free lab)."""
    client = LabClient(rig.coordinator)
    for name, holder in holders(rig).items():
        if holder is not None:
            client.kick(name)


def test_a_killed_edgekit_gives_back_every_place_its_helper_held(rig: lab_rig.Rig) -> None:
    """A nightly holds every free place of a type through one helper; edgekit SIGKILLed (the OOM killer): the
    helper released the first place, then died on BrokenPipeError telling the dead edgekit so, and the others
    stayed held under its name. Every place is given back now."""
    child = textwrap.dedent(
        f"""
        import os, signal
        from edgekit.lab.client import LabClient
        from edgekit.target import LabSpec
        lease = LabClient({rig.coordinator!r}).hold(LabSpec(tags={{"board": "pi4"}}, wait_s=20), count=0)
        print(",".join(p.name for p in lease.places), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, check=False
        )
        assert out.returncode == -signal.SIGKILL, out.stderr
        assert out.stdout.strip() == "pi4-a,pi4-b,pi4-c", out.stderr
        wait_for(
            f"every place given back: {holders(rig)}",
            lambda: all(holders(rig)[p] is None for p in ("pi4-a", "pi4-b", "pi4-c")),
        )
    finally:
        free_all(rig)


def test_a_sigterm_to_the_helper_keeps_the_places_until_edgekit_gives_them_back(rig: lab_rig.Rig) -> None:
    """systemd's stop sends SIGTERM to every process of the unit: the helper gave every place back at once, while
    edgekit waited up to 30 s for its agents to stop on those boards, and edgekit never noticed (the run was not
    failed). The helper holding places now ignores SIGTERM: the places stay held until edgekit gives them back."""
    said: list[str] = []
    lease = LabClient(rig.coordinator).hold(LabSpec(tags={"board": "pi5"}, wait_s=20), say=said.append)
    try:
        ours = holders(rig)["pi5-a"]
        assert ours is not None and ".edgekit-" in ours
        os.kill(lease.proc.pid, signal.SIGTERM)
        time.sleep(1.5)
        assert lease.proc.poll() is None and holders(rig)["pi5-a"] == ours
        lease.release("pi5-a")  # what closing the run's transport does
        assert holders(rig)["pi5-a"] is None and lease.lost == {} and "pi5-a" in lease.release_s, said
        assert not any("warning" in s for s in said), said
    finally:
        lease.close()
        free_all(rig)


def test_a_helper_killed_outright_is_found_out_when_the_place_is_given_back(rig: lab_rig.Rig) -> None:
    """The helper SIGKILLed (or OOM-killed) while edgekit measured: Lease.release returned without a word and the
    run was ok, even when a teammate had taken the board meanwhile. Now the coordinator is asked: a place taken
    is lost (the run fails with place_lost, said), one still ours is given back."""
    said: list[str] = []
    client = LabClient(rig.coordinator)
    lease = client.hold(LabSpec(tags={"board": "pi5"}, wait_s=20), say=said.append)
    try:
        lease.proc.kill()
        lease.proc.wait()
        teammate(rig, "pi5-a", "release --kick", "acquire")
        lease.release("pi5-a")
        assert lease.lost["pi5-a"].startswith(
            "now held by other/bob; the lab helper holding it was killed (SIGKILL)"
        )
        assert any("pi5-a was taken from this run before it ended" in s for s in said), said
        assert holders(rig)["pi5-a"] == "other/bob"  # still the teammate's
    finally:
        lease.close()
        free_all(rig)

    said.clear()
    lease = client.hold(LabSpec(tags={"board": "pi5"}, wait_s=20), say=said.append)
    try:
        lease.proc.kill()
        lease.proc.wait()
        time.sleep(0.5)
        assert holders(rig)["pi5-a"] is not None  # the hold outlives its helper
        lease.release("pi5-a")
        assert lease.lost == {} and holders(rig)["pi5-a"] is None, said
        assert any("it was still this run's: released" in s for s in said), said
    finally:
        lease.close()
        free_all(rig)


def test_a_coordinator_restart_under_a_hold_is_a_lost_place(tmp_path: Path) -> None:
    """labgrid 26's coordinator forgets every hold when it starts: after a restart the board was free (anyone's)
    while edgekit measured on it; edgekit's release then waited 20 s on the dead session and said the place 'may
    still be held' (`edgekit lab release` it), and the run was not failed. The helper now opens a new session
    and finds the hold gone: the place is lost (free now, the restart named), at once."""
    solo = lab_rig.start_bare(tmp_path / "rig", {"solo-a": {"board": "solo"}})
    said: list[str] = []
    try:
        lease = LabClient(solo.coordinator).hold(LabSpec(tags={"board": "solo"}, wait_s=20), say=said.append)
        try:
            wait_for(  # the coordinator saves its places every 15 s: the place outlives the restart
                "places.yaml saved with the hold",
                lambda: (
                    "solo-a" in (solo.root / "places.yaml").read_text()
                    if (solo.root / "places.yaml").exists()
                    else False
                ),
                timeout_s=40,
            )
            lab_rig._stop_group(solo.pids[0])
            lab_rig.start_coordinator(solo)
            assert holders(solo)["solo-a"] is None  # the restart dropped the hold
            start = time.monotonic()
            lease.release("solo-a")  # the end of the run
            assert time.monotonic() - start < 15.0, said
            lost = lease.lost.get("solo-a")
            assert lost is not None and lost.startswith("free now; the coordinator's connection dropped"), (
                said
            )
            assert lease.lost == {"solo-a": lost} and "solo-a" not in lease.release_s
            assert any("solo-a was taken from this run before it ended" in s for s in said), said
            assert not any("may still be held" in s or "did not answer" in s for s in said), said
        finally:
            lease.close()
    finally:
        solo.stop()
