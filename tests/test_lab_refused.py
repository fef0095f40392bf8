"""Places edgekit refuses and places it could not give back, against a real labgrid coordinator and exporters on
127.0.0.1 (edgekit/lab/rig.py's bare rig: NetworkServices with no board behind them; nothing is deployed): a free
place whose NetworkService edgekit refuses is never taken over a good one of the same tag; a release the
coordinator does not answer is retried; a waiting line names a reservation's owner; a port 0 stays 0."""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lab_helpers import holders, kick_held, short_bounds, teammate

from edgekit.lab import rig as lab_rig
from edgekit.lab.client import LabClient, lab_python

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_rig.Rig]:
    lab_python()  # no .venv-lab: LabSetupError naming `make setup`
    started = lab_rig.start_bare(tmp_path_factory.mktemp("lab") / "rig", {"pi5-a": {"board": "pi5"}})
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def free_lab(rig: lab_rig.Rig) -> Iterator[lab_rig.Rig]:
    yield rig
    kick_held(rig)


def _delete(rig: lab_rig.Rig, *places: str) -> None:
    env = {**os.environ, "LG_COORDINATOR": rig.coordinator}
    for place in places:
        subprocess.run(
            [str(lab_python().parent / "labgrid-client"), "-p", place, "delete"], env=env, capture_output=True
        )


def _release_once_waiting(
    rig: lab_rig.Rig, place: str, lines: list[str]
) -> tuple[Callable[[str], None], threading.Thread]:
    """A `say` that keeps edgekit's lines in `lines`, and the teammate's release of `place` it starts once edgekit
    said it is waiting for a free place (it was a fixed 4 s, the most of what the test waited)."""
    waiting = threading.Event()

    def say(line: str) -> None:
        lines.append(line)
        if "waiting for a free place" in line:
            waiting.set()

    def run() -> None:
        waiting.wait(timeout=60)  # never said: edgekit's own wait (30 s) fails the test first
        teammate(rig, place, "release")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return say, thread


def test_a_free_place_edgekit_refuses_is_skipped_for_a_good_one_of_its_tag(
    free_lab: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pi5-0's NetworkService address is '192.168.1..23' (edgekit refuses it), pi5-a is held by a teammate for a
    few seconds. edgekit acquired the free pi5-0 (it sorts first), then refused it: `FAILED ensure: ... pi5-0 ...
    is refused`, exit 1, every deploy to board=pi5 while pi5-a was about to free up; the nightly said `no place
    tonight`. Now a place edgekit refuses is skipped as one whose exporter is down is (said with why), edgekit
    waits for pi5-a, and a target whose every place is refused is a named error before any work."""
    from edgekit.lab import spread as spread_module
    from edgekit.lab.acquire import acquire_target, check_matchable
    from edgekit.lab.errors import LabError
    from edgekit.lab.spread import spread
    from edgekit.target import Target

    rig = free_lab
    pid = lab_rig.add_service(
        rig, "bad1", "pi5-0", {"address": "192.168.1..23", "username": "pi", "port": 22}, {"board": "pi5"}
    )
    try:
        template = Target.model_validate(
            {
                "name": "lab-pi5",
                "lab": {"coordinator": rig.coordinator, "tags": {"board": "pi5"}, "wait_s": 30},
            }
        )
        check_matchable(template)  # pi5-a is good: nothing to refuse before the work
        teammate(rig, "pi5-a", "acquire")
        said: list[str] = []
        say, releaser = _release_once_waiting(rig, "pi5-a", said)
        board = acquire_target(template, say)
        releaser.join()
        try:
            assert board.name == "pi5-a", said
            assert holders(rig)["pi5-0"] is None
            assert any(
                "waiting for a free place" in s and "pi5-0" in s and "refused" in s and "192.168.1..23" in s
                for s in said
            ), said
        finally:
            board._lease.close()
        assert holders(rig)["pi5-a"] is None

        only_bad = Target.model_validate(
            {"name": "lab-pi5-0", "lab": {"coordinator": rig.coordinator, "place": "pi5-0"}}
        )
        for check in (check_matchable, acquire_target):
            with pytest.raises(LabError, match=r"pi5-0.*refused.*NetworkService's address") as raised:
                check(only_bad)
            assert raised.value.exit_code == 1
        assert holders(rig)["pi5-0"] is None

        # the nightly: it waits for pi5-a too, and runs its recipe there
        target = tmp_path / "lab-pi5.yaml"
        target.write_text(f"lab: {{coordinator: '{rig.coordinator}', tags: {{board: pi5}}, wait_s: 30}}\n")
        recipe = tmp_path / "tiny.yaml"
        recipe.write_text((REPO / "recipes" / "tiny.yaml").read_text())
        monkeypatch.setattr(spread_module, "_convert", lambda _recipe, _log: [])
        teammate(rig, "pi5-a", "acquire")
        deployed: list[str] = []
        lines: list[str] = []
        say, releaser = _release_once_waiting(rig, "pi5-a", lines)
        done = spread([recipe], [str(target)], say, deploy_one=lambda _r, t, _a: deployed.append(t.name))  # type: ignore[arg-type]
        releaser.join()
        assert deployed == ["pi5-a"], lines
        assert not done.unavailable, lines
        assert holders(rig)["pi5-0"] is None and holders(rig)["pi5-a"] is None
    finally:
        lab_rig._stop_group(pid)
        kick_held(rig)
        _delete(rig, "pi5-0")


def test_a_network_service_port_0_is_refused_and_only_a_missing_port_is_22(free_lab: lab_rig.Rig) -> None:
    """An exporter's NetworkService with `port: 0` became port 22 (`int(port or 22)`): the deploy connected to
    another service than the one the exporter named. 0 is refused now, as a target file's port 0 is; only a
    NetworkService without a port gets ssh's 22 (labgrid's own default)."""
    from edgekit.lab.acquire import acquire_target, check_matchable
    from edgekit.lab.errors import LabError
    from edgekit.target import Target

    rig = free_lab
    user = getpass.getuser()
    pids = [
        lab_rig.add_service(
            rig, "port0", "p-zero", {"address": "127.0.0.1", "username": user, "port": 0}, {"board": "p0"}
        ),
        lab_rig.add_service(
            rig, "portless", "p-none", {"address": "127.0.0.1", "username": user}, {"board": "pn"}
        ),
    ]
    try:
        by_name = {p.name: p for p in LabClient(rig.coordinator).places()}
        assert by_name["p-zero"].service is not None and by_name["p-zero"].service.port == 0
        assert by_name["p-none"].service is not None and by_name["p-none"].service.port == 22
        zero = Target.model_validate(
            {"name": "lab-p0", "lab": {"coordinator": rig.coordinator, "place": "p-zero"}}
        )
        for check in (check_matchable, acquire_target):
            with pytest.raises(
                LabError, match=r"p-zero.*refused: its NetworkService's port: .*greater than or equal to 1"
            ):
                check(zero)
        assert holders(rig)["p-zero"] is None
        portless = Target.model_validate(
            {"name": "lab-pn", "lab": {"coordinator": rig.coordinator, "place": "p-none"}}
        )
        board = acquire_target(portless)
        try:
            assert (board.host, board.port) == ("127.0.0.1", 22)
        finally:
            board._lease.close()
    finally:
        for pid in pids:
            lab_rig._stop_group(pid)
        kick_held(rig)
        _delete(rig, "p-zero", "p-none")


def test_a_place_waited_for_names_its_reservations_owner_or_why_labgrid_would_not_give_it(
    free_lab: lab_rig.Rig,
) -> None:
    """While waiting and at the timeout edgekit printed labgrid's reservation token (`pi5-a held by reservation
    RPEXP9TUDR`), stored in the run, and `held by reservation None` for a place the coordinator would not give for
    another reason (its resource held through another place: AcquirePlace said so and the words were dropped). It
    names the reservation's owner now, and the coordinator's words otherwise."""
    from edgekit.lab.errors import LabWaitTimeout
    from edgekit.target import LabSpec

    rig = free_lab
    env = {**os.environ, "LG_COORDINATOR": rig.coordinator, "LG_USERNAME": "bob", "LG_HOSTNAME": "other"}
    lgc = str(lab_python().parent / "labgrid-client")
    # pi5-twin matches pi5-a's NetworkService: while pi5-a is held, the coordinator will not give pi5-twin
    LabClient(rig.coordinator).define([("pi5-twin", ["rig/pi5-a/NetworkService"], {"board": "twin"})])
    try:
        teammate(rig, "pi5-a", "acquire")
        said: list[str] = []
        with pytest.raises(LabWaitTimeout) as raised:
            LabClient(rig.coordinator).hold(
                LabSpec(tags={"board": "twin"}, wait_s=3), say=said.append
            ).close()
        text = str(raised.value)
        assert "reservation None" not in text and "None" not in " ".join(said), (text, said)
        assert "pi5-twin" in text and "Failed to acquire resources for place pi5-twin" in text, text
        teammate(rig, "pi5-a", "release")

        reserve = subprocess.run(
            [lgc, "reserve", "name=pi5-a"], env=env, capture_output=True, text=True, check=True
        )
        token = next(
            line.split("'")[1] for line in reserve.stdout.splitlines() if line.startswith("Reservation '")
        )
        deadline = time.monotonic() + 10
        while not any(p.reservation for p in LabClient(rig.coordinator).places() if p.name == "pi5-a"):
            assert time.monotonic() < deadline, "the reservation was never allocated"
            time.sleep(0.2)
        said.clear()
        with pytest.raises(LabWaitTimeout) as raised:
            LabClient(rig.coordinator).hold(LabSpec(tags={"board": "pi5"}, wait_s=3), say=said.append).close()
        text = str(raised.value)
        assert token not in text and token not in " ".join(said), (text, said)
        assert "pi5-a held by a reservation of other/bob" in text, text
        assert any("pi5-a held by a reservation of other/bob" in s for s in said), said
        subprocess.run([lgc, "cancel-reservation", token], env=env, capture_output=True, check=True)
    finally:
        kick_held(rig)
        _delete(rig, "pi5-twin")


def test_a_release_the_frozen_coordinator_never_answered_is_retried_after_edgekit_is_done(
    free_lab: lab_rig.Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator frozen (SIGSTOP) while edgekit gave its place back: `warning: pi5-a was not released: the
    coordinator cannot be reached ...`, exit 0, and the place stayed held by an edgekit that had exited: a teammate
    on another host waited for it until it timed out (only this host can tell that edgekit is gone). The helper
    now keeps trying for a bounded time after edgekit is done (it leaves edgekit's way, in a session of its own),
    edgekit says so with its pid, what teammates see meanwhile and the command that frees the place; the place is
    given back once the coordinator answers again."""
    from edgekit.target import LabSpec

    short_bounds(monkeypatch, grace=True)  # frozen through the first attempt and the grace: nothing answers
    rig = free_lab
    said: list[str] = []
    lease = LabClient(rig.coordinator).hold(LabSpec(tags={"board": "pi5"}, wait_s=10), say=said.append)
    assert [p.name for p in lease.places] == ["pi5-a"]
    coordinator = rig.pids[0]  # its process group
    os.killpg(coordinator, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        lease.close()
        closed_s = time.monotonic() - t0
    finally:
        os.killpg(coordinator, signal.SIGCONT)
    pending = [s for s in said if "pi5-a" in s and "release pending" in s]
    assert pending, said
    assert f"pid {lease.proc.pid}" in pending[0] and "edgekit lab release pi5-a" in pending[0], pending
    assert "up to 10 min" in pending[0] and "teammates" in pending[0], pending
    assert closed_s < 60, closed_s  # edgekit does not wait for it
    deadline = time.monotonic() + 90
    while holders(rig)["pi5-a"] is not None:
        assert time.monotonic() < deadline, f"pi5-a still held by {holders(rig)['pi5-a']}: {said}"
        time.sleep(1)
    assert lease.proc.wait(timeout=30) == 0  # done once the place is back
