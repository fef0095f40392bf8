"""Holding lab places against a real labgrid coordinator and exporter on 127.0.0.1 (edgekit/lab/rig.py's bare
rig: NetworkServices with no board behind them, nothing is deployed): what the holder helper does when edgekit is
killed, when it is signalled or killed itself, and when the coordinator restarts under a hold."""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_helpers import holders, kick_held, teammate

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


def wait_for(what: str, done: object, timeout_s: float = 10.0) -> float:
    """Seconds until `done()` is true (AssertionError naming `what` after timeout_s)."""
    start = time.monotonic()
    while not done():  # type: ignore[operator]
        assert time.monotonic() - start < timeout_s, what
        time.sleep(0.1)
    return time.monotonic() - start


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
        kick_held(rig)


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
        kick_held(rig)


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
        kick_held(rig)

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
        kick_held(rig)


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


def test_a_coordinator_back_within_the_connect_bound_is_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator down when a run gave its place back and up again 3 s later, within the helper's connect
    bound: the helper's one new session failed at once (`the coordinator cannot be reached`), and edgekit said
    `not released` of a place the coordinator would have answered for. It now tries again within the bound and
    finds what the restart did (the hold gone: the place lost, the restart named). The bound is 30 s here, not the
    default 10 s: the restart's own start-up (seconds on a loaded machine) must land inside it (review r17 #8)."""
    monkeypatch.setenv("EDGEKIT_LAB_CONNECT_S", "30")  # the helper, a child process, reads it
    solo = lab_rig.start_bare(tmp_path / "rig", {"solo-a": {"board": "solo"}})
    said: list[str] = []
    try:
        lease = LabClient(solo.coordinator).hold(LabSpec(tags={"board": "solo"}, wait_s=20), say=said.append)
        try:
            lab_rig._stop_group(solo.pids[0])
            back = threading.Timer(3.0, lab_rig.start_coordinator, (solo,))
            back.start()
            try:
                lease.release("solo-a")  # the end of the run
            finally:
                back.join()
            assert not any("was not released:" in s or "cannot be reached" in s for s in said), said
            lost = lease.lost.get("solo-a")
            assert lost is not None and "the coordinator's connection dropped" in lost, (lost, said)
        finally:
            lease.close()
    finally:
        solo.stop()


def test_an_endless_or_huge_wait_is_refused_as_bad_input(tmp_path: Path) -> None:
    """`lab.wait_s: .inf` (or 1e300) was accepted and ended in an internal OverflowError when the wait began
    ('ensure: unexpected OverflowError'); `edgekit targets` showed the target as fine. It is a TargetError
    naming the field now (exit 2), from the file and from --set alike."""
    from edgekit.errors import TargetError
    from edgekit.target import load_target

    path = tmp_path / "lab-forever.yaml"
    for value in (".inf", "1e300", ".nan", "86401"):
        path.write_text(f"lab: {{coordinator: '127.0.0.1:1', tags: {{board: pi4}}, wait_s: {value}}}\n")
        with pytest.raises(TargetError, match=r"lab\.wait_s") as refused:
            load_target(path)
        assert refused.value.exit_code == 2
    path.write_text("lab: {coordinator: '127.0.0.1:1', tags: {board: pi4}, wait_s: 86400}\n")
    assert load_target(path).lab.wait_s == 86400  # type: ignore[union-attr]
    with pytest.raises(TargetError, match=r"lab\.wait_s.*--set"):
        load_target(path, ["lab.wait_s=inf"])


def test_a_place_name_or_service_edgekit_would_refuse_in_a_target_file_is_refused(
    rig: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coordinator takes any place name from anyone who reaches it (labgrid has no authentication), and the
    board target was built without the Target checks: a place named '../../escaped' became the name of the
    run's local folder (runs/<stamp>/../../escaped) and of its folder on the board, removed with rm -rf; a
    NetworkService username '-oProxyCommand=...' went to ssh. Both are refused now, by deploy and by the nightly,
    and the place is given back."""
    from edgekit.lab import spread as spread_module
    from edgekit.lab.acquire import acquire_target
    from edgekit.lab.errors import LabError
    from edgekit.lab.spread import spread
    from edgekit.target import Target

    exporters = [
        lab_rig.add_service(
            rig,
            "evil1",
            "../../escaped",
            {"address": "127.0.0.1", "username": "pi", "port": 22},
            {"board": "evil"},
        ),
        lab_rig.add_service(
            rig,
            "evil2",
            "evil-b",
            {"address": "127.0.0.1", "username": "-oProxyCommand=touch /tmp/owned", "port": 22},
            {"board": "evil2"},
        ),
    ]
    try:
        for board, said in (
            ("evil", r"place '\.\./\.\./escaped' of the lab is refused: its name: "),
            ("evil2", r"place 'evil-b' of the lab is refused: its NetworkService's username: "),
        ):
            template = Target.model_validate(
                {"name": f"lab-{board}", "lab": {"coordinator": rig.coordinator, "tags": {"board": board}}}
            )
            with pytest.raises(LabError, match=said):
                acquire_target(template)
            assert holders(rig)["../../escaped"] is None and holders(rig)["evil-b"] is None  # given back

        target = tmp_path / "lab-evil.yaml"
        target.write_text(f"lab: {{coordinator: '{rig.coordinator}', tags: {{board: evil}}, wait_s: 5}}\n")
        recipe = tmp_path / "tiny.yaml"
        recipe.write_text((REPO / "recipes" / "tiny.yaml").read_text())
        deployed: list[str] = []
        lines: list[str] = []
        monkeypatch.setattr(spread_module, "_convert", lambda _recipe, _log: [])
        done = spread(
            [recipe], [str(target)], lines.append, deploy_one=lambda _r, t, _a: deployed.append(t.name)
        )  # type: ignore[arg-type]
        assert deployed == [] and done.board_type == {}, lines
        # never acquired: the night says why this target got no place (tests/test_lab_refused.py: a good place of
        # the same tag is waited for instead)
        assert any(
            "no place tonight: " in m and "'../../escaped' of the lab is refused: its name" in m
            for m in lines
        ), lines
        assert holders(rig)["../../escaped"] is None
    finally:
        for pid in exporters:
            lab_rig._stop_group(pid)
        client = LabClient(rig.coordinator)
        kick_held(rig)
        env = {**os.environ, "LG_COORDINATOR": rig.coordinator}
        for place in ("../../escaped", "evil-b"):
            subprocess.run(
                [str(lab_python().parent / "labgrid-client"), "-p", place, "delete"],
                env=env,
                capture_output=True,
            )
        assert "evil-b" not in {p.name for p in client.places()}


def test_a_live_edgekit_whose_pid_this_host_cannot_see_is_never_released_as_stale(rig: lab_rig.Rig) -> None:
    """Two edgekits sharing a host name but not a PID namespace (containers with the host's name, two CI jobs on
    one runner): the second looked up the first's PID in its own /proc, found it gone, and released the first's
    live hold as 'held by a dead edgekit', then took the board. A holder now names its machine, boot and PID
    namespace: one whose PID cannot be looked up from here (another namespace, or the older form that does not
    say) is never judged dead; one of this namespace whose process is gone still is."""
    import socket

    from typer.testing import CliRunner

    from edgekit.cli import app
    from edgekit.lab.errors import LabWaitTimeout

    here = os.environ.get("LG_HOSTNAME", socket.gethostname())
    user = getpass.getuser()
    start = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]
    in_a_container = (
        f"{user}.edgekit-1-{int(start) + 7}"  # the review's repro: pid 1 of another PID namespace
    )

    def elsewhere() -> str:  # the same in the new form: this machine and boot, another PID namespace
        from edgekit.lab.helper import identity

        return f"{user}.edgekit-999999-{start}-{identity().rsplit('n', 1)[0]}n12345"

    lgc = str(lab_python().parent / "labgrid-client")
    env = {**os.environ, "LG_COORDINATOR": rig.coordinator, "LG_HOSTNAME": here}
    client = LabClient(rig.coordinator)
    try:
        for make in (lambda: in_a_container, elsewhere):
            holder = make()
            subprocess.run(
                [lgc, "-p", "pi5-a", "acquire"],
                env={**env, "LG_USERNAME": holder},
                check=True,
                capture_output=True,
            )
            said: list[str] = []
            with pytest.raises(LabWaitTimeout):
                client.hold(LabSpec(tags={"board": "pi5"}, wait_s=2), say=said.append)
            assert holders(rig)["pi5-a"] == f"{here}/{holder}", said
            assert not any("dead edgekit" in s for s in said), said
            listing = CliRunner().invoke(app, ["lab", "-x", rig.coordinator], terminal_width=250)
            assert listing.exit_code == 0 and "STALE" not in listing.output, listing.output
            refused = CliRunner().invoke(app, ["lab", "release", "pi5-a", "-x", rig.coordinator])
            assert "not a dead edgekit of this host" in str(refused.exception), refused.output
            client.kick("pi5-a")

        from edgekit.lab.helper import identity

        dead_here = f"{user}.edgekit-999999-{start}-{identity()}"  # this namespace, its process gone
        subprocess.run(
            [lgc, "-p", "pi5-a", "acquire"],
            env={**env, "LG_USERNAME": dead_here},
            check=True,
            capture_output=True,
        )
        said = []
        lease = client.hold(LabSpec(tags={"board": "pi5"}, wait_s=10), say=said.append)
        try:
            assert any("held by a dead edgekit" in s and dead_here in s for s in said), said
        finally:
            lease.close()
    finally:
        kick_held(rig)
