"""Lab targets against the real engine: a labgrid coordinator and exporter on 127.0.0.1 (labgrid 26 in .venv-lab)
whose places are emulated boards (edgekit/lab/rig.py: pi4-a and pi4-b run pi4-emu's python, pi5-a pi5-emu's),
each behind an OpenSSH server of its own. Acquire, deploy, release; concurrent runs; a place held by someone
else; an edgekit killed mid-run."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from lab_helpers import holders, serving
from typer.testing import CliRunner

from edgekit.cli import app
from edgekit.errors import TargetError, UsageError
from edgekit.lab import rig as lab_rig
from edgekit.lab.client import LabClient, lab_python
from edgekit.lab.errors import LabWaitTimeout, NoMatchingPlace
from edgekit.lab.place import Place, holder_text
from edgekit.target import parse_inline

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_rig.Rig]:
    if not Path(REPO / ".venv-lab/bin/python").exists() and "EDGEKIT_LAB_PYTHON" not in os.environ:
        lab_python()  # raises LabSetupError naming `make setup`
    root = tmp_path_factory.mktemp("lab")
    started = lab_rig.start(root / "rig", lab_rig.default_places(pi4=2, pi5=1))
    targets = root / "targets"
    targets.mkdir()
    (targets / "lab.yaml").write_text(
        f"# the team's lab defaults: lab:TAG=VALUE targets start from these\nlab: {{coordinator: '{started.coordinator}', "
        f"wait_s: 60}}\nkey: {started.client_key}\naccept_new: true\nruntimes: [ai_edge_litert, ncnn]\n"
        "benchmark_cap: {threads: [1], repeat: 2, warmup: 0, samples: 2}\n"
    )
    (targets / "lab-strict.yaml").write_text(
        f"lab: {{coordinator: '{started.coordinator}', tags: {{board: pi4}}}}\nkey: {started.client_key}\n"
    )
    with serving(started, targets) as served:
        yield served


def wait_free(rig: lab_rig.Rig, place: str, timeout_s: float = 20.0) -> float:
    """Seconds from the call to the start of the poll that saw `place` free: each poll is a fresh labgrid helper
    process (seconds on a loaded machine), so a bound on it means "released within the bound, plus one poll"."""
    start = time.monotonic()
    while (asked := time.monotonic() - start) < timeout_s:
        if holders(rig)[place] is None:
            return asked
        time.sleep(0.2)
    raise AssertionError(f"{place} still held by {holders(rig)[place]} after {timeout_s} s")


def test_inline_spec_and_holder_wording() -> None:
    assert parse_inline("lab:board=pi4:rack=2") == (
        {"tags": {"board": "pi4", "rack": "2"}},
        "lab-board-pi4-rack-2",
    )
    assert parse_inline("lab:name=pi4-03")[0] == {"tags": {}, "place": "pi4-03"}
    for twice in ("lab:board=pi4:board=pi5", "lab:name=pi4-a:name=pi4-b"):  # the last one silently won
        with pytest.raises(TargetError, match="given twice"):
            parse_inline(twice)
    place = Place("pi4-a", {}, "ws1/alice.edgekit-4242-99", 130.0, "", None)
    assert holder_text(place) == "ws1/alice (edgekit pid 4242) for 2 min"
    assert place.edgekit_pid == 4242


def test_a_lab_targets_runs_are_looked_for_under_its_places(tmp_path: Path) -> None:
    """Runs of `--target lab:board=pi4` are stored under the place they took (pi4-a): `runs --target
    lab:board=pi4` said only "no runs" (a new lab user looked there, as docs/lab.md then said)."""
    from edgekit.target import lab_stored_note

    assert lab_stored_note("lab:board=pi4") is not None and lab_stored_note("pi4") is None
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    from edgekit.store import open_store

    with open_store(store):  # an empty store
        pass
    shown = CliRunner().invoke(
        app, ["runs", "--target", "lab:board=pi4", "--store", store], terminal_width=250
    )
    said = " ".join(shown.output.split())
    assert "no runs on lab:board=pi4" in said and "stored under the place each ran on" in said, said


def test_an_unreachable_coordinator_is_a_named_error() -> None:
    from edgekit.lab.errors import LabError

    with pytest.raises(LabError, match="cannot reach the labgrid coordinator"):
        LabClient("127.0.0.1:1").places()


def test_a_place_name_or_tag_starting_with_a_dash_is_never_an_option_of_the_helper() -> None:
    """`targets check "lab:name=-h"` reached labgrid's helper as its option -h: its usage text, exit 1. A place's
    name is checked as a target's name now (TargetError, exit 2), and the helper gets OPTION=VALUE words: a tag
    value `-h` is the tag's, and the coordinator is asked."""
    from edgekit.lab.errors import LabError
    from edgekit.target.lab_spec import LabSpec

    env = {**os.environ, "LG_COORDINATOR": "127.0.0.1:1"}
    for spec in ("lab:name=-h", "lab:name=--version"):
        out = subprocess.run(
            [sys.executable, "-m", "edgekit", "targets", "check", spec],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert out.returncode == 2, (spec, out.stdout, out.stderr)
        assert (
            "TargetError" in out.stderr
            and "lab.place: " in out.stderr
            and "is not a place name" in out.stderr
        )
        assert "usage:" not in out.stderr, out.stderr
    avoiding = LabSpec(tags={"board": "-h"}, wait_s=0)
    avoiding._avoid = frozenset({"-h"})  # another target's place
    unchecked = LabSpec.model_construct(place="-h", tags={}, wait_s=0, coordinator=None)  # past the schema
    for spec in (avoiding, unchecked):
        with pytest.raises(LabError, match="cannot reach the labgrid coordinator"):
            LabClient("127.0.0.1:1").hold(spec).close()


def test_a_malformed_coordinator_address_is_bad_input(tmp_path: Path) -> None:
    """`--coordinator 127.0.0.1:notaport` went to labgrid and came back as "cannot reach the coordinator",
    exit 1: a typo read as a lab that is down. The option, $LG_COORDINATOR and a target's lab.coordinator
    are now checked as HOST[:PORT] (port 1-65535), exit 2 naming the expected form; a bare HOST gets labgrid's
    port (gRPC would have tried 443)."""
    from edgekit.errors import TargetError
    from edgekit.target import load_target

    env = {k: v for k, v in os.environ.items() if k != "LG_COORDINATOR"}
    cases = [
        (["lab", "--coordinator", "127.0.0.1:notaport"], env, "--coordinator: '127.0.0.1:notaport'"),
        (["lab", "release", "pi4-a", "-x", "labgrid.lab:0"], env, "--coordinator: 'labgrid.lab:0'"),
        (["lab", "-x", "host:70000"], env, "'host:70000'"),
        (["lab", "-x", "a b:20408"], env, "'a b:20408'"),
        (["lab"], {**env, "LG_COORDINATOR": "lab:port"}, "$LG_COORDINATOR: 'lab:port'"),
    ]
    for argv, run_env, said in cases:
        out = subprocess.run(
            [sys.executable, "-m", "edgekit", *argv], capture_output=True, text=True, env=run_env, timeout=120
        )
        assert out.returncode == 2, (argv, out.stdout, out.stderr)
        assert said in out.stderr and "expected HOST[:PORT]" in out.stderr, (argv, out.stderr)
        assert "cannot reach" not in out.stderr, out.stderr

    for bad in ("127.0.0.1:notaport", "h:0", "h:65536", "h:", "a b", "h:-1"):
        path = tmp_path / "lab-bad.yaml"
        path.write_text(f"lab: {{coordinator: '{bad}'}}\n")
        with pytest.raises(TargetError, match=r"lab\.coordinator: .*expected HOST\[:PORT\]"):
            load_target(path)
    for good, address in (
        ("labgrid.lab", "labgrid.lab:20408"),
        ("10.0.0.5:65535", "10.0.0.5:65535"),
        ("[::1]:1", "[::1]:1"),
    ):
        path = tmp_path / "lab-good.yaml"
        path.write_text(f"lab: {{coordinator: '{good}'}}\n")
        lab = load_target(path).lab
        assert lab is not None and lab.address() == address


def test_places_list_tags_and_network_services(rig: lab_rig.Rig) -> None:
    places = {p.name: p for p in LabClient(rig.coordinator).places()}
    assert set(places) == {"pi4-a", "pi4-b", "pi5-a"}
    assert places["pi5-a"].tags == {"board": "pi5", "cpu": "cortex-a76"}
    service = places["pi4-b"].service
    assert service is not None and (service.address, service.port) == ("127.0.0.1", rig.ports["pi4-b"])
    shown = CliRunner().invoke(app, ["lab", "--target", "lab:board=pi4"], terminal_width=250)
    assert shown.exit_code == 0 and "pi4-a" in shown.output and "pi5-a" not in shown.output, shown.output
    # a tag no place carries showed an empty table, exit 0: now what deploy says (exit 2)
    none = CliRunner().invoke(app, ["lab", "--target", "lab:board=pi9"], terminal_width=250)
    assert isinstance(none.exception, NoMatchingPlace) and "pi4-a" in (none.exception.hint or ""), none.output


def test_deploy_acquires_a_place_measures_and_releases_it(rig: lab_rig.Rig, tmp_path: Path) -> None:
    from edgekit.convert.pipeline import convert_recipe
    from edgekit.deploy import DeployOptions, deploy
    from edgekit.formats import Format
    from edgekit.lab.acquire import known_hosts_for
    from edgekit.recipe import load_recipe

    recipe = load_recipe(TINY)
    arts = convert_recipe(recipe, (Format.NCNN_FP32,), keep_going=True)  # the format quickest to convert
    said: list[str] = []
    options = DeployOptions(host=False, threads=(1,), repeat=2, warmup=0, samples=2)
    result = deploy(recipe, ["lab:board=pi5"], options, said.append, artifacts=arts)
    run = result.runs[0]
    assert run.status == "ok", run.error
    assert run.target == "pi5-a"  # recorded under the place it got, not the lab target's name
    assert {m.artifact for m in run.agent.measurements if m.status == "ok"} == {"ncnn-fp32"}
    assert run.agent.facts_before.emulated and "cortex-a76" in (run.agent.facts_before.emulator or "")
    assert run.emulated  # labelled by what the device is, not by the lab target's file: not board latency
    assert (
        run.emulated_as == "board" and not run.counting
    )  # a qemu machine reached as a lab board cannot count
    from edgekit.report import build
    from edgekit.report.markdown import render
    from edgekit.store import open_store

    with open_store(
        f"sqlite:///{tmp_path / 'lab.sqlite'}"
    ) as store:  # the summary says why, not counting: false
        store.record(result)
        md = render(build(store))
    assert "pi5-a: not counted (a qemu machine reached as a plain or lab board, which cannot count)" in md, md
    assert "emulated.counting: false" not in md, md
    assert any("lab: acquired pi5-a" in s for s in said)
    assert holders(rig)["pi5-a"] is None  # released when the transport closed
    assert rig.host_key("pi5-a") in known_hosts_for("pi5-a").read_text()  # pinned on first use (opted in)


def test_unknown_host_key_refused_unless_the_lab_target_opts_in(rig: lab_rig.Rig) -> None:
    from edgekit.emu.device import ensure_device
    from edgekit.errors import HostKeyError
    from edgekit.target import load_target
    from edgekit.transport import open_transport

    target = ensure_device(load_target("lab-strict"))
    assert target.name in ("pi4-a", "pi4-b") and not target.accept_new
    transport = open_transport(target)
    with pytest.raises(HostKeyError, match="unknown host key"):
        transport.connect()
    transport.close()
    assert holders(rig)[target.name] is None


def test_a_changed_key_is_refused_even_when_the_lab_target_pins_first_keys(rig: lab_rig.Rig) -> None:
    from edgekit.emu.device import ensure_device
    from edgekit.errors import HostKeyError
    from edgekit.lab.acquire import known_hosts_for
    from edgekit.target import load_target
    from edgekit.transport import open_transport

    # pi4-a's own file says pi4-b's key: a board swapped behind the same place name
    known_hosts_for("pi4-a").write_text(f"[127.0.0.1]:{rig.ports['pi4-a']} {rig.host_key('pi4-b')}\n")
    target = ensure_device(load_target("lab:name=pi4-a"))
    assert target.accept_new and target.known_hosts == known_hosts_for("pi4-a")
    with open_transport(target) as transport, pytest.raises(HostKeyError, match="host key CHANGED"):
        transport.connect()
    assert holders(rig)["pi4-a"] is None
    known_hosts_for("pi4-a").unlink()


def test_a_place_held_by_someone_else_makes_edgekit_wait_then_time_out(rig: lab_rig.Rig) -> None:
    from edgekit.emu.device import ensure_device
    from edgekit.target import load_target

    client_env = {**os.environ, "LG_COORDINATOR": rig.coordinator, "LG_USERNAME": "bob"}
    lgc = str(lab_python().parent / "labgrid-client")
    subprocess.run([lgc, "-p", "pi5-a", "acquire"], env=client_env, check=True, capture_output=True)
    try:
        # (when, what): the wait itself is bounded, not the labgrid helpers' start-up (seconds under load)
        said: list[tuple[float, str]] = []
        start = time.monotonic()
        with pytest.raises(LabWaitTimeout, match=r"no free place with board=pi5.*pi5-a held by \S+/bob"):
            ensure_device(
                load_target("lab:board=pi5", ["lab.wait_s=2"]), lambda s: said.append((time.monotonic(), s))
            )
        raised = time.monotonic()
        assert raised - start >= 2.0
        waiting = [
            at
            for at, s in said
            if "waiting for a free place with board=pi5" in s and "held by" in s and "/bob" in s
        ]
        assert waiting, said
        assert raised - waiting[0] < 8.0, said  # lab.wait_s=2, not the lab.yaml's 60 s
        refused = CliRunner().invoke(app, ["lab", "release", "pi5-a", "-x", rig.coordinator])
        assert isinstance(refused.exception, UsageError) and "not a dead edgekit" in str(refused.exception)
    finally:
        subprocess.run([lgc, "-p", "pi5-a", "release"], env=client_env, check=True, capture_output=True)
    with pytest.raises(NoMatchingPlace, match="no place of the lab matches board=pi9"):
        ensure_device(load_target("lab:board=pi9"))


def test_a_lab_target_no_place_matches_or_without_its_key_is_bad_input_before_any_work(
    rig: lab_rig.Rig, tmp_path: Path
) -> None:
    """`--target lab:board=pi9` converted the recipe, then failed as one target (exit 1, "no place matches tags
    {'board': 'pi9'} names -"); a lab target whose key file is missing acquired a place, then failed. Both are
    bad input, said before converting (exit 2)."""
    (tmp_path / "lab-nokey.yaml").write_text(
        f"lab: {{coordinator: '{rig.coordinator}', tags: {{board: pi4}}}}\nkey: {tmp_path / 'absent_key'}\n"
    )
    env = {**os.environ, "EDGEKIT_TARGETS_DIR": str(tmp_path), "EDGEKIT_STORE": str(tmp_path / "s.sqlite")}
    (tmp_path / "lab.yaml").write_text(f"lab: {{coordinator: '{rig.coordinator}'}}\nkey: {rig.client_key}\n")
    for target, says in (
        (
            "lab:board=pi9",
            "no place of the lab matches board=pi9: no place has board=pi9 (did you mean board=pi",
        ),
        ("lab:bord=pi4", "no place has a tag 'bord' (did you mean board?)"),
        ("lab-nokey", "key file not found"),
    ):
        before = holders(rig)
        out = subprocess.run(
            [sys.executable, "-m", "edgekit", "deploy", str(TINY), "--target", target, "--no-host"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        said = " ".join(out.stderr.split())
        assert out.returncode == 2 and says in said, out.stderr + out.stdout
        assert "convert:" not in out.stderr + out.stdout and holders(rig) == before


HOLD_SCRIPT = """
import json, sys, time
from edgekit.emu.device import ensure_device
from edgekit.target import load_target
target = ensure_device(load_target(sys.argv[1]), lambda m: print(json.dumps({"said": m}), flush=True))
print(json.dumps({"place": target.name, "t0": time.time(), "helper": target._lease.proc.pid}), flush=True)
time.sleep(float(sys.argv[2]))
print(json.dumps({"t1": time.time()}), flush=True)  # still held here: released by close()
target._lease.close()
"""


WAIT_SCRIPT = """
import json, sys, threading, time
from edgekit.emu.device import ensure_device
from edgekit.target import load_target
said = lambda m: print(json.dumps({"said": m}), flush=True)
outcome = {}
finished = threading.Event()  # not Thread.is_alive: wrong after a join that Ctrl-C interrupted (CPython 3.11)
def session():  # as edgekit deploy does: the place is acquired in a target's thread, Ctrl-C lands in the main one
    try:
        ensure_device(load_target(sys.argv[1]), said)
        outcome["error"] = None
    except BaseException as exc:
        outcome["error"] = type(exc).__name__
    finished.set()
thread = threading.Thread(target=session, daemon=True)
thread.start()
try:
    while not finished.wait(0.1):
        pass
except KeyboardInterrupt:
    t = time.monotonic()
    finished.wait(30)
    print(json.dumps({"session": outcome.get("error"), "after_s": round(time.monotonic() - t, 2)}), flush=True)
"""


def read_until(proc: subprocess.Popen[str], key: str) -> dict[str, object]:
    """The first JSON line of the hold script that has `key` (progress lines in between are skipped)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if key in event:
            return event  # type: ignore[no-any-return]
    raise AssertionError(f"the hold script ended without {key!r}")


def test_concurrent_edgekit_runs_never_share_a_place(rig: lab_rig.Rig, tmp_path: Path) -> None:
    script = tmp_path / "hold.py"
    script.write_text(HOLD_SCRIPT)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), "lab:board=pi5", "1.0"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    spans = []
    for proc in procs:
        out, _ = proc.communicate(timeout=90)
        first, second = (json.loads(line) for line in out.splitlines()[-2:])
        spans.append((first["t0"], second["t1"], first["place"]))
    spans.sort()
    assert {s[2] for s in spans} == {"pi5-a"}
    for (_a0, a1, _), (b0, _b1, _) in itertools.pairwise(spans):
        assert b0 > a1, spans  # one place, three runs: one after the other, never together


def test_killed_edgekit_leaves_no_place_acquired(rig: lab_rig.Rig, tmp_path: Path) -> None:
    script = tmp_path / "hold.py"
    script.write_text(HOLD_SCRIPT)
    # SIGKILL of edgekit's whole process group: its holder (in a session of its own by then) sees its stdin
    # close and releases
    proc = subprocess.Popen(
        [sys.executable, str(script), "lab:board=pi5", "300"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    read_until(proc, "place")
    assert holders(rig)["pi5-a"] is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert wait_free(rig, "pi5-a") < 5.0
    # SIGKILL of edgekit and its holder together (power loss): the next edgekit on this host releases the stale hold
    proc = subprocess.Popen(
        [sys.executable, str(script), "lab:board=pi5", "300"], stdout=subprocess.PIPE, text=True
    )
    held = read_until(proc, "helper")
    os.kill(int(str(held["helper"])), signal.SIGKILL)
    proc.kill()
    proc.communicate()
    time.sleep(0.5)
    assert ".edgekit-" in (holders(rig)["pi5-a"] or "")
    listing = CliRunner().invoke(app, ["lab", "-x", rig.coordinator], terminal_width=250)
    assert "STALE" in listing.output, listing.output
    from edgekit.emu.device import ensure_device
    from edgekit.target import load_target

    said: list[str] = []
    target = ensure_device(load_target("lab:board=pi5"), said.append)
    try:
        assert target.name == "pi5-a"
        # the holder it released is named (it read `None` after the release had cleared it)
        assert any("held by a dead edgekit (" in s and ".edgekit-" in s and "released" in s for s in said), (
            said
        )
    finally:
        target._lease.close()
    assert holders(rig)["pi5-a"] is None


def test_a_place_kicked_from_edgekit_and_taken_by_a_teammate_stays_theirs(rig: lab_rig.Rig) -> None:
    """A teammate kicks edgekit off a place mid-run and takes it: edgekit's release at the end of its run released
    the teammate's hold (labgrid's ReleasePlace frees whoever holds the place), and the run said nothing. Now
    edgekit releases only its own hold, and says the place was taken from it before the run ended."""
    from edgekit.emu.device import ensure_device
    from edgekit.target import load_target

    client_env = {
        **os.environ,
        "LG_COORDINATOR": rig.coordinator,
        "LG_USERNAME": "bob",
        "LG_HOSTNAME": "other",
    }
    lgc = str(lab_python().parent / "labgrid-client")
    said: list[str] = []
    target = ensure_device(load_target("lab:board=pi5"), said.append)
    try:
        assert target.name == "pi5-a"
        subprocess.run(
            [lgc, "-p", "pi5-a", "release", "--kick"], env=client_env, check=True, capture_output=True
        )
        subprocess.run([lgc, "-p", "pi5-a", "acquire"], env=client_env, check=True, capture_output=True)
        target._lease.release("pi5-a")  # what closing the run's transport does
        assert holders(rig)["pi5-a"] == "other/bob"
        assert any("pi5-a was taken from this run" in s and "other/bob" in s for s in said), said
    finally:
        target._lease.close()
        subprocess.run([lgc, "-p", "pi5-a", "release"], env=client_env, capture_output=True)
    assert holders(rig)["pi5-a"] is None


def test_a_place_kicked_mid_deploy_fails_the_run_and_keeps_its_measurements(rig: lab_rig.Rig) -> None:
    """A teammate kicks edgekit off the place while its agent measures and takes the board: the run was stored as
    ok (only a warning at release), its figures possibly measured beside someone else's work and its route
    shipped on them. Now the run keeps what it measured, is failed (the deploy exits 1), records who holds the
    place, and its route says the figures may have shared the board."""
    from edgekit.convert.pipeline import convert_recipe
    from edgekit.deploy import DeployOptions, deploy
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe
    from edgekit.route_deploy import routes_for_deploy

    client_env = {
        **os.environ,
        "LG_COORDINATOR": rig.coordinator,
        "LG_USERNAME": "bob",
        "LG_HOSTNAME": "other",
    }
    lgc = str(lab_python().parent / "labgrid-client")
    recipe = load_recipe(TINY)
    arts = convert_recipe(recipe, (Format.NCNN_FP32,), keep_going=True)
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if line == "pi5-a: run ...":  # the agent is about to measure: the teammate takes the board
            for verb in (["release", "--kick"], ["acquire"]):
                subprocess.run([lgc, "-p", "pi5-a", *verb], env=client_env, check=True, capture_output=True)

    options = DeployOptions(host=False, threads=(1,), repeat=2, warmup=0, samples=2)
    try:
        result = deploy(recipe, ["lab:board=pi5"], options, say, artifacts=arts)
        assert holders(rig)["pi5-a"] == "other/bob"  # still the teammate's
    finally:
        subprocess.run([lgc, "-p", "pi5-a", "release"], env=client_env, capture_output=True)
    run = result.runs[0]
    assert "pi5-a: run ..." in said, said
    assert run.status == "failed" and not result.ok
    assert run.place_lost == "now held by other/bob"
    assert "was taken from this run before it ended" in (run.error or ""), run.error
    assert [m.artifact for m in run.agent.measurements if m.status == "ok"] == ["ncnn-fp32"]  # kept
    (route,) = routes_for_deploy(result)
    assert any("may have shared the board" in c for c in route.caveats), route.caveats


def test_a_coordinator_gone_while_edgekit_waits_is_said_at_once(rig: lab_rig.Rig, tmp_path: Path) -> None:
    """The coordinator stopped while edgekit waited for a place: edgekit went on reading labgrid's cached view of
    the lab (the holder's time still counting) until its wait ran out, 10 minutes later, and then blamed the
    holder. Now the helper checks the coordinator on every poll: a named LabError within seconds."""
    import threading

    from edgekit.emu.device import ensure_device
    from edgekit.lab.errors import LabError
    from edgekit.target import load_target

    solo = lab_rig.start(tmp_path / "rig", [lab_rig.RigPlace("solo-a", "pi5-emu", {"board": "solo"})])
    try:
        client_env = {**os.environ, "LG_COORDINATOR": solo.coordinator, "LG_USERNAME": "bob"}
        lgc = str(lab_python().parent / "labgrid-client")
        subprocess.run([lgc, "-p", "solo-a", "acquire"], env=client_env, check=True, capture_output=True)
        said: list[str] = []
        failed: list[BaseException] = []

        def wait() -> None:
            try:
                target = ensure_device(
                    load_target("lab:board=solo", [f"lab.coordinator={solo.coordinator}", "lab.wait_s=600"]),
                    said.append,
                )
                target._lease.close()
            except BaseException as exc:  # noqa: BLE001 - the test reads it
                failed.append(exc)

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        deadline = time.monotonic() + 60
        while not any("waiting for a free place" in s for s in said) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any("waiting for a free place" in s for s in said), said
        lab_rig._stop_group(solo.pids[0])  # the coordinator
        start = time.monotonic()
        waiter.join(timeout=90)
        assert not waiter.is_alive() and time.monotonic() - start < 45
        assert failed and isinstance(failed[0], LabError), failed
        assert "coordinator" in str(failed[0]) and "lost while waiting" in str(failed[0]), failed[0]
    finally:
        solo.stop()


def test_ctrl_c_while_waiting_releases_nothing_it_did_not_take(rig: lab_rig.Rig, tmp_path: Path) -> None:
    script = tmp_path / "hold.py"
    script.write_text(HOLD_SCRIPT)
    wait_script = tmp_path / "wait.py"
    wait_script.write_text(WAIT_SCRIPT)
    other = subprocess.Popen(
        [sys.executable, str(script), "lab:board=pi5", "60"], stdout=subprocess.PIPE, text=True
    )
    read_until(other, "place")
    first_holder = holders(rig)["pi5-a"]
    # a terminal's Ctrl-C: SIGINT to the waiting edgekit's process group (its holder helper is in it while waiting)
    waiter = subprocess.Popen(
        [sys.executable, str(wait_script), "lab:board=pi5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    said = read_until(waiter, "said")
    while "waiting for a free place" not in str(said["said"]):
        said = read_until(waiter, "said")
    os.killpg(waiter.pid, signal.SIGINT)
    ended = read_until(waiter, "session")
    waiter.communicate(timeout=30)
    assert ended["session"] == "Interrupted" and float(str(ended["after_s"])) < 5.0, (
        ended
    )  # the wait ended at once
    assert holders(rig)["pi5-a"] == first_holder  # still the first run's
    other.kill()
    other.communicate(timeout=30)
    assert wait_free(rig, "pi5-a") < 5.0


def test_nightly_spreads_the_matrix_over_every_free_place(rig: lab_rig.Rig, tmp_path: Path) -> None:
    from edgekit.nightly import run_nightly

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    text = TINY.read_text().replace(
        "formats: [tflite-fp32, tflite-fp16, tflite-dynamic, tflite-int8, ncnn-fp32, ncnn-fp16, ncnn-int8]",
        "formats: [ncnn-fp32]",
    )
    for name in ("tiny-a", "tiny-b"):
        (recipes / f"{name}.yaml").write_text(text.replace("name: tiny\n", f"name: {name}\n"))
    store = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    said: list[str] = []
    summary = tmp_path / "nightly.md"
    outcome = run_nightly([recipes], ["lab:board=pi4"], store_url=store, markdown=summary, log=said.append)
    done = outcome.lab
    assert done is not None and not outcome.failures, outcome.failures
    assert done.board_type == {"pi4-a": "lab:board=pi4", "pi4-b": "lab:board=pi4"}  # every free pi4
    assert sorted(j for b in ("pi4-a", "pi4-b") for j in done.jobs.get(b, [])) == [
        "tiny-a.yaml",
        "tiny-b.yaml",
    ]
    assert done.deploy_s < sum(done.board_seconds.values())  # the boards worked at the same time
    assert all(h is None for h in holders(rig).values())  # every place given back
    from edgekit.store import open_store

    with open_store(store) as st:
        stored = st.load_many(outcome.run_ids.values())
    boards = {r.target for result in stored.values() for r in result.runs}
    assert boards <= {"pi4-a", "pi4-b"} and boards
    assert any(line.startswith("lab: 2 board(s)") for line in outcome.lab_lines)
    assert any("lab:board=pi4: 2 board(s)" in line for line in outcome.lab_lines)
    assert (
        "## Lab: boards and board types" in summary.read_text()
        and "pi4-a (lab:board=pi4)" in summary.read_text()
    )
    listing = CliRunner().invoke(app, ["lab", "--store", store], terminal_width=200)
    assert listing.exit_code == 0, listing.output
    for place in ("pi4-a", "pi4-b", "pi5-a"):
        assert place in listing.output
    assert "free" in listing.output and "Cortex" in listing.output
    # at 80 columns, beside the boards' last-run facts, every ssh address is still whole (it was cut to
    # 'user@127.0.0.1:2…'; the other columns fold instead)
    narrow = CliRunner().invoke(app, ["lab", "--store", store], terminal_width=80)
    assert narrow.exit_code == 0, narrow.output
    for place in LabClient(rig.coordinator).places():
        assert place.service is not None
        assert f"{place.service.username}@127.0.0.1:{place.service.port}" in narrow.output, narrow.output


def test_a_board_slower_than_its_siblings_is_flagged_with_clocks_and_temperature() -> None:
    from edgekit.lab.boards import board_spread
    from edgekit.results import AgentResult, CpuFreq, DeployResult, DeviceFacts, Measurement, TargetRun

    def run(board: str, ms: float, temp: float) -> TargetRun:
        facts = DeviceFacts(
            machine="aarch64",
            cpu_model="Cortex-A72",
            cores=4,
            python="3.11",
            temperature_c=temp,
            freqs=[CpuFreq(cpu=0, governor="ondemand", cur_khz=600000, max_khz=1800000)],
        )
        m = Measurement(
            artifact="tflite-fp32",
            format="tflite-fp32",
            runtime="ai_edge_litert",
            threads=1,
            status="ok",
            samples_ms=[ms, ms * 1.01, ms * 0.99],
        )
        return TargetRun(
            target=board,
            kind="ssh",
            emulated=False,
            status="ok",
            agent=AgentResult(started_at="2026-12-01T00:00:00", facts_before=facts, measurements=[m]),
        )

    result = DeployResult(
        recipe="tiny",
        recipe_path="tiny.yaml",
        recipe_sha256="0",
        started_at="2026-12-01T00:00:00",
        runs=[run("pi4-a", 10.0, 50), run("pi4-b", 10.4, 52), run("pi4-c", 13.0, 81)],
    )
    found = board_spread([result], dict.fromkeys(("pi4-a", "pi4-b", "pi4-c"), "board=pi4"))
    assert [s.board for s in found.slow] == ["pi4-c"]
    line = found.slow[0].line()
    assert "27 % slower" in line and "ondemand 600-600 MHz (max 1800 MHz)" in line and "81 °C" in line
    from edgekit.lab.boards import _type_lines

    per_type = _type_lines(found.medians, ["pi4-a", "pi4-b", "pi4-c"], {("tiny", "tflite-fp32", 1)})
    assert per_type == ["tiny tflite-fp32 x1: 10.40 ms median over 3 boards (10.00-13.00, spread 30 %)"]


def test_a_place_whose_exporter_is_gone_is_skipped_not_acquired(rig: lab_rig.Rig) -> None:
    """pi5-z's exporter went down; pi5-a is held by a teammate. edgekit acquired the free pi5-z and then failed
    ("pi5-z has no available NetworkService"), exit 1, while pi5-a was about to free up. Now a place without an
    available NetworkService is no candidate: edgekit waits for pi5-a (saying pi5-z is skipped), and a target
    whose every place lacks one is a named error naming them, before any work."""
    from edgekit.emu.device import check_available, ensure_device
    from edgekit.lab.errors import NoReachablePlace
    from edgekit.target import load_target

    lgc = str(lab_python().parent / "labgrid-client")
    env = {**os.environ, "LG_COORDINATOR": rig.coordinator, "LG_USERNAME": "bob"}
    exporter = lab_rig.add_exporter(rig, "rack2", "pi5-z", rig.ports["pi5-a"], {"board": "pi5"})
    try:
        lab_rig._stop_group(exporter)  # the exporter host goes down: its NetworkService with it
        deadline = time.monotonic() + 20
        while any(p.service for p in LabClient(rig.coordinator).places() if p.name == "pi5-z"):
            assert time.monotonic() < deadline, "pi5-z's NetworkService outlived its exporter"
            time.sleep(0.2)
        subprocess.run([lgc, "-p", "pi5-a", "acquire"], env=env, check=True, capture_output=True)
        said: list[str] = []
        got: list[object] = []

        def acquire() -> None:
            try:
                got.append(ensure_device(load_target("lab:board=pi5", ["lab.wait_s=30"]), said.append))
            except BaseException as exc:  # noqa: BLE001 - the test reads it
                got.append(exc)

        import threading

        waiter = threading.Thread(target=acquire, daemon=True)
        waiter.start()
        deadline = time.monotonic() + 30
        while not any("skipped" in s for s in said) and waiter.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any(
            "waiting for a free place" in s and "/bob" in s and "skipped" in s and "pi5-z" in s for s in said
        ), (
            said,
            got,
        )
        assert holders(rig)["pi5-z"] is None  # never acquired
        subprocess.run([lgc, "-p", "pi5-a", "release"], env=env, check=True, capture_output=True)
        waiter.join(timeout=30)
        target = got[0]
        assert not isinstance(target, BaseException), target
        assert target.name == "pi5-a"  # type: ignore[attr-defined]
        target._lease.close()  # type: ignore[attr-defined]
        for name in ("lab:name=pi5-z", "lab:board=pi5:name=pi5-z"):
            with pytest.raises(NoReachablePlace, match=r"pi5-z.*no available NetworkService.*exporter"):
                check_available(load_target(name))  # before any work
            with pytest.raises(NoReachablePlace, match=r"pi5-z"):
                ensure_device(load_target(name))
        assert holders(rig)["pi5-z"] is None
    finally:
        subprocess.run([lgc, "-p", "pi5-a", "release"], env=env, capture_output=True)
        subprocess.run([lgc, "-p", "pi5-z", "delete"], env=env, capture_output=True)
    assert "pi5-z" not in holders(rig)


def test_an_unanswering_or_unknown_coordinator_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket that accepts and never answers said "cannot reach the coordinator at 127.0.0.1:PORT: " (an empty
    cause); a host name that does not resolve said labgrid's bare "Could not connect to coordinator"."""
    import socket

    from edgekit.lab.errors import LabError

    monkeypatch.setenv(
        "EDGEKIT_LAB_CONNECT_S", "2"
    )  # the helper's bound, named in what it says (10 s by default)

    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        address = f"127.0.0.1:{mute.getsockname()[1]}"
        shown = CliRunner().invoke(app, ["lab", "-x", address], terminal_width=250)
    said = " ".join(str(shown.exception).split())
    assert isinstance(shown.exception, LabError), shown.output
    assert "no answer within 2 s" in said and "does not answer as a labgrid coordinator" in said, said
    with pytest.raises(LabError, match=r"host name 'nosuchhost\.invalid' could not be resolved"):
        LabClient("nosuchhost.invalid:20408").places()
    with pytest.raises(LabError, match="Connection refused"):
        LabClient("127.0.0.1:1").places()


def test_host_or_port_in_a_lab_target_is_refused(rig: lab_rig.Rig, tmp_path: Path) -> None:
    """`host:` and `port:` in a lab target were silently replaced by the place's NetworkService."""
    from edgekit.emu.device import check_available
    from edgekit.target import load_target

    path = tmp_path / "lab-fixed.yaml"
    path.write_text(f"lab: {{coordinator: '{rig.coordinator}', tags: {{board: pi4}}}}\nhost: 10.0.0.9\n")
    with pytest.raises(TargetError, match=r"`host:` in a lab target: .*NetworkService") as refused:
        check_available(load_target(path))
    assert refused.value.exit_code == 2 and str(path) in str(refused.value)
    with pytest.raises(TargetError, match=r"`port:` in a lab target"):
        check_available(load_target("lab:board=pi4", ["port=2222"]))
    env = {**os.environ, "EDGEKIT_STORE": str(tmp_path / "s.sqlite")}
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(TINY), "--target", str(path), "--no-host"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2 and "`host:` in a lab target" in " ".join(out.stderr.split()), out.stderr
    assert "convert:" not in out.stderr + out.stdout


def test_two_lab_targets_of_one_run_never_take_the_same_place(rig: lab_rig.Rig) -> None:
    """`--target lab:board=pi5 --target lab:name=pi5-a` (one pi5 place) ran both on pi5-a, one after the other:
    the stored run listed `pi5-a, pi5-a, host`. The second is now refused: every place it could take is held by
    this same edgekit."""
    from edgekit.emu.device import ensure_device
    from edgekit.lab.errors import SamePlaceTwice
    from edgekit.target import load_target

    first = ensure_device(load_target("lab:board=pi5"))
    try:
        assert first.name == "pi5-a"
        start = time.monotonic()
        with pytest.raises(SamePlaceTwice, match=r"\(pi5-a\) is already held by this edgekit"):
            ensure_device(load_target("lab:name=pi5-a"))
        assert time.monotonic() - start < 10.0  # at once, not after lab.wait_s
    finally:
        first._lease.close()
    assert holders(rig)["pi5-a"] is None


def _fake_deploy(log: list[tuple[str, str, float, float]], pause_s: float) -> Callable[..., object]:
    """A stand-in for one recipe's deploy on a board (the boards' measuring is test_nightly_spreads...'s): what ran
    where and when, as a DeployResult the store takes."""
    from datetime import UTC, datetime

    from edgekit.results import DeployResult, TargetRun

    def deploy_one(recipe: object, target: object, _arts: object) -> DeployResult:
        t0 = time.monotonic()
        time.sleep(pause_s)
        log.append((target.name, recipe.name, t0, time.monotonic()))  # type: ignore[attr-defined]
        return DeployResult(
            recipe=recipe.name,  # type: ignore[attr-defined]
            recipe_path=f"{recipe.name}.yaml",  # type: ignore[attr-defined]
            recipe_sha256="0",
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            runs=[TargetRun(target=target.name, kind="ssh", emulated=True, status="ok")],  # type: ignore[attr-defined]
            ok=True,
        )

    return deploy_one


def _small_recipes(folder: Path, names: Sequence[str]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    text = TINY.read_text().replace(
        "formats: [tflite-fp32, tflite-fp16, tflite-dynamic, tflite-int8, ncnn-fp32, ncnn-fp16, ncnn-int8]",
        "formats: [ncnn-fp32]",
    )
    for name in names:
        (folder / f"{name}.yaml").write_text(text.replace("name: tiny\n", f"name: {name}\n"))
    return [folder / f"{name}.yaml" for name in names]


def test_a_lab_nightly_converts_first_and_never_holds_a_board_idle_for_another_type(
    rig: lab_rig.Rig, tmp_path: Path
) -> None:
    """The nightly acquired every lab target one after another and converted only once it held them all: with
    pi5-a held by a teammate, pi4-a and pi4-b sat acquired and idle for up to wait_s, then through the cold
    conversions. Now the conversions come first, and each lab target's boards work as soon as they are acquired:
    the pi4 boards finish (and are given back) while pi5-a is still waited for."""
    import threading

    from edgekit.lab.spread import spread

    recipes = _small_recipes(tmp_path / "recipes", ("tiny-a", "tiny-b", "tiny-c"))
    lgc = str(lab_python().parent / "labgrid-client")
    env = {**os.environ, "LG_COORDINATOR": rig.coordinator, "LG_USERNAME": "bob"}
    subprocess.run([lgc, "-p", "pi5-a", "acquire"], env=env, check=True, capture_output=True)
    said: list[tuple[float, str]] = []
    ran: list[tuple[str, str, float, float]] = []

    def bob_lets_go() -> None:  # once both pi4 boards gave their place back
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if sum("queue empty, released" in m and "pi4-" in m for _, m in said) == 2:
                break
            time.sleep(0.2)
        subprocess.run([lgc, "-p", "pi5-a", "release"], env=env, capture_output=True)

    teammate = threading.Thread(target=bob_lets_go, daemon=True)
    teammate.start()
    try:
        done = spread(
            recipes,
            ["lab:board=pi4", "lab:board=pi5"],
            lambda m: said.append((time.monotonic(), m)),
            deploy_one=_fake_deploy(ran, 0.3),  # type: ignore[arg-type]
            night=0,
        )
    finally:
        teammate.join(timeout=130)
        subprocess.run([lgc, "-p", "pi5-a", "release"], env=env, capture_output=True)
    assert not done.unavailable, done.unavailable
    assert set(done.board_type) == {"pi4-a", "pi4-b", "pi5-a"}
    first_acquiring = min(t for t, m in said if "lab: acquiring" in m)
    assert all(
        t < first_acquiring for t, m in said if ": convert: " in m
    )  # converted before holding any board
    pi5_acquired = next(t for t, m in said if m.startswith("lab: lab:board=pi5: acquired"))
    pi4_runs = [r for r in ran if r[0].startswith("pi4-")]
    assert len(pi4_runs) == 3 and all(end < pi5_acquired for *_, end in pi4_runs), (ran, said)
    assert sorted(r[1] for r in ran if r[0] == "pi5-a") == ["tiny-a", "tiny-b", "tiny-c"]
    assert any("waiting for a free place with board=pi5" in m for _, m in said)
    assert all(
        isinstance(done.results[p], object) and not isinstance(done.results[p], Exception) for p in recipes
    )
    assert all(h is None for h in holders(rig).values())


@pytest.mark.parametrize("night", [0, 2])
def test_ctrl_c_in_a_lab_nightly_keeps_and_records_what_finished(
    night: int, rig: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C in a lab nightly said "releasing every place; tonight's runs are not recorded" and then "what
    was finished is kept (cache, store)": the store gained nothing. Now each recipe that finished is recorded,
    the one running is said as dropped, and the night ends interrupted (exit 130) with every place released.
    The night is fixed (the queue's first recipe turns with the date; night 2 starts at tiny-c, the last in
    sorted order, whose finished result was thrown away). The board still deploying keeps its place while the
    night waits for it (its agent would run on under a teammate otherwise), then every place is released."""
    import _thread
    import threading

    from edgekit.lab import night as night_module
    from edgekit.nightly import run_nightly
    from edgekit.store import open_store

    _small_recipes(tmp_path / "recipes", ("tiny-a", "tiny-b", "tiny-c"))
    _night_of(monkeypatch, night)
    # long enough for a labgrid-client look at the holders on a loaded machine (3 s: CI saw none made in time)
    monkeypatch.setattr(night_module, "STOP_WAIT_S", 8.0)
    ran: list[tuple[str, str, float, float]] = []
    finished = _fake_deploy(ran, 0.2)
    hang = threading.Event()
    calls: list[str] = []
    held_while_deploying: list[str | None] = []
    said: list[str] = []

    def deploy_one(recipe: object, target: object, arts: object) -> object:
        calls.append(recipe.name)  # type: ignore[attr-defined]
        if len(calls) == 2:  # the second recipe: Ctrl-C while it runs on the board
            _thread.interrupt_main()
            waited = time.monotonic() + 8
            while not any("waiting up to" in m for m in said) and time.monotonic() < waited:
                time.sleep(0.1)  # until the night is waiting for this board
            held_while_deploying.append(holders(rig)["pi5-a"])
            hang.wait(60)
        return finished(recipe, target, arts)

    monkeypatch.setattr(night_module, "_deploy_one", deploy_one)
    store = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    try:
        outcome = run_nightly([tmp_path / "recipes"], ["lab:board=pi5"], store_url=store, log=said.append)
    finally:
        hang.set()
    assert calls[0] == ["tiny-a", "tiny-b", "tiny-c"][night]
    assert outcome.interrupted and outcome.exit_code == 130
    assert any("waiting up to 8 s for" in m and f"{calls[1]}.yaml on pi5-a" in m for m in said), said
    assert held_while_deploying and "edgekit" in (held_while_deploying[0] or ""), held_while_deploying
    kept = next(m for m in said if "keeping what finished" in m)
    assert (
        "keeping what finished: 1 recipe(s)" in kept
        and f"dropped, not finished: {calls[1]}.yaml on pi5-a" in kept
    )
    assert "not recorded" not in " ".join(said)
    assert not outcome.failures, outcome.failures  # a recipe no board finished is not run, not failed
    assert not any(m.startswith("deploying ") for m in said)  # the boards deployed; the loop only records
    with open_store(store) as st:
        stored = st.load_many(outcome.run_ids.values())
    assert [r.recipe for r in stored.values()] == [calls[0]], (outcome.run_ids, said)
    assert [run.target for r in stored.values() for run in r.runs] == ["pi5-a"]
    assert all(h is None for h in holders(rig).values())


def test_a_misspelt_tag_is_named_with_the_nearest_one_the_lab_has() -> None:
    """NoMatchingPlace listed the places' names only: a misspelt tag (`bord=pi4`) or value (`board=pi44`) gets
    the nearest tag the lab has, and the places are listed with their tags."""
    from edgekit.lab.acquire import _tag_typo
    from edgekit.lab.errors import no_matching_place
    from edgekit.lab.place import Place

    places = [Place(n, {"board": n[:3]}, None, None, "", None) for n in ("pi4-01", "pi5-01")]
    assert _tag_typo({"bord": "pi4"}, places) == "no place has a tag 'bord' (did you mean board?)"
    assert _tag_typo({"board": "pi44"}, places) == "no place has board=pi44 (did you mean board=pi4?)"
    assert _tag_typo({"name": "pi4-01"}, places) == ""  # `name` is the place's name, a tag of every place
    assert _tag_typo({"board": "pi4", "room": "b"}, places).startswith("no place has a tag 'room'")
    error = no_matching_place("board=pi44", ["pi4-01 (board=pi4)"], "127.0.0.1:1", "no place has board=pi44")
    assert "pi4-01 (board=pi4)" in str(error) and str(error).count("no place has board=pi44") == 1


def _no_conversion(monkeypatch: pytest.MonkeyPatch, fails: Sequence[str] = ()) -> None:
    """The spread's conversions stood in for (its thread logic is under test, not the converters): a recipe
    named in `fails` raises."""
    from edgekit.lab import spread as spread_module

    def convert(recipe: object, _log: object) -> list[object]:
        if recipe.name in fails:  # type: ignore[attr-defined]
            raise RuntimeError(f"{recipe.name} does not convert")  # type: ignore[attr-defined]
        return []

    monkeypatch.setattr(spread_module, "_convert", convert)


def _night_of(monkeypatch: pytest.MonkeyPatch, night: int) -> None:
    """The queue's starting recipe turns with the date: a test fixes the night (run_nightly passes none)."""
    from edgekit.lab import spread as spread_module

    order = spread_module._tonights_order
    monkeypatch.setattr(spread_module, "_tonights_order", lambda todo, _night: order(todo, night))


def _interrupted_night(
    monkeypatch: pytest.MonkeyPatch,
    deploy_one: Callable[..., object],
    tmp_path: Path,
    targets: list[str],
    hang: Any,
) -> tuple[Any, list[str], str]:
    """run_nightly over plain boards spread as a lab's (_plain_lab_night), `hang` set when it returns (a stand-in
    deploy waits on it after its Ctrl-C): the outcome, what was said, the store's URL."""
    from edgekit.nightly import run_nightly

    _plain_lab_night(monkeypatch, deploy_one)
    said: list[str] = []
    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    try:
        outcome = run_nightly([tmp_path / "recipes"], targets, store_url=store, log=said.append)
    finally:
        hang.set()
    return outcome, said, store


def _plain_lab_night(monkeypatch: pytest.MonkeyPatch, deploy_one: Callable[..., object]) -> None:
    """run_nightly spreading plain boards (pi4-emu, pi5-emu: never started, the deploy is a stand-in) as it
    spreads a lab's places: the thread and recording logic without labgrid."""
    from edgekit import nightly as nightly_module
    from edgekit.lab import night as night_module

    monkeypatch.setattr(nightly_module, "_has_lab", lambda _targets: True)
    monkeypatch.setattr(night_module, "_deploy_one", deploy_one)
    monkeypatch.setattr(night_module, "STOP_WAIT_S", 1.0)


@pytest.mark.parametrize("night", [0, 1, 2])
def test_ctrl_c_keeps_a_finished_recipe_whichever_the_queue_started_with(
    night: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """settle() turned the last recipe's result into an Interrupted, then spread() counted no finished
    DeployResult and raised KeyboardInterrupt: when the recipe that finished was the last in sorted order (the
    queue starts at a recipe that turns with the date: night 2 of 3 recipes starts at tiny-c), nothing was
    recorded. Every night of the turn now records the one that finished."""
    import _thread
    import threading

    from edgekit.store import open_store

    _small_recipes(tmp_path / "recipes", ("tiny-a", "tiny-b", "tiny-c"))
    _no_conversion(monkeypatch)
    _night_of(monkeypatch, night)
    ran: list[tuple[str, str, float, float]] = []
    finished, hang, calls = _fake_deploy(ran, 0.0), threading.Event(), []

    def deploy_one(recipe: object, target: object, arts: object) -> object:
        calls.append(recipe.name)  # type: ignore[attr-defined]
        if len(calls) == 2:
            _thread.interrupt_main()
            hang.wait(30)
        return finished(recipe, target, arts)

    outcome, said, store = _interrupted_night(monkeypatch, deploy_one, tmp_path, ["pi4-emu"], hang)
    assert calls[0] == ["tiny-a", "tiny-b", "tiny-c"][night]
    assert outcome.interrupted and outcome.exit_code == 130 and not outcome.failures, (outcome.failures, said)
    with open_store(store) as st:
        assert [r.recipe for r in st.load_many(outcome.run_ids.values()).values()] == [calls[0]], said
    assert sum("not run (the night was interrupted)" in m for m in said) == 2, said


def test_ctrl_c_keeps_the_only_recipe_of_a_night_finished_on_one_board_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-recipe night interrupted after one board type finished it (the other still deploying) recorded
    nothing: the only recipe is the last one. Its finished board's run is recorded now."""
    import _thread
    import threading

    from edgekit.store import open_store

    _small_recipes(tmp_path / "recipes", ("tiny-a",))
    _no_conversion(monkeypatch)
    ran: list[tuple[str, str, float, float]] = []
    finished, pi5_done, hang = _fake_deploy(ran, 0.0), threading.Event(), threading.Event()

    def deploy_one(recipe: object, target: object, arts: object) -> object:
        if target.name == "pi5-emu":  # type: ignore[attr-defined]
            try:
                return finished(recipe, target, arts)
            finally:
                pi5_done.set()
        pi5_done.wait(30)
        time.sleep(0.2)
        _thread.interrupt_main()
        hang.wait(30)
        return finished(recipe, target, arts)

    outcome, said, store = _interrupted_night(monkeypatch, deploy_one, tmp_path, ["pi4-emu", "pi5-emu"], hang)
    assert outcome.interrupted and outcome.exit_code == 130 and not outcome.failures, (outcome.failures, said)
    with open_store(store) as st:
        stored = list(st.load_many(outcome.run_ids.values()).values())
    assert [(r.recipe, [run.target for run in r.runs]) for r in stored] == [("tiny-a", ["pi5-emu"])], said
    kept = next(m for m in said if "keeping what finished" in m)
    assert (
        "0 recipe(s) on every board type, 1 on some" in kept
        and "dropped, not finished: tiny-a.yaml on pi4-emu" in kept
    )


def test_a_deploy_raising_on_one_board_is_a_failed_run_beside_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deploy that raised on pi4 was kept with setdefault, said nowhere, then overwritten by pi5's result:
    the failure vanished (and what the deploy had measured, attached to the error, with it). Now it is said at
    once, the recipe's result carries pi4's failed run (its measurements kept), and the night fails."""
    from edgekit.errors import AgentError
    from edgekit.nightly import run_nightly
    from edgekit.results import TargetRun
    from edgekit.store import open_store

    _small_recipes(tmp_path / "recipes", ("tiny-a", "tiny-b", "tiny-c"))
    _no_conversion(monkeypatch)
    ran: list[tuple[str, str, float, float]] = []
    finished = _fake_deploy(ran, 0.0)

    def deploy_one(recipe: object, target: object, arts: object) -> object:
        name, board = recipe.name, target.name  # type: ignore[attr-defined]
        if board == "pi4-emu" and name == "tiny-a":
            raise RuntimeError("boom on pi4")
        if board == "pi4-emu" and name == "tiny-b":  # raised after measuring: the measurements ride along
            error = AgentError("compare failed", where="pi4-emu")
            measured = finished(recipe, target, arts)
            error.result = measured  # type: ignore[attr-defined]
            raise error
        if name == "tiny-c":  # raises on every board: the recipe's result is the error
            raise AgentError(f"no luck on {board}")
        return finished(recipe, target, arts)

    _plain_lab_night(monkeypatch, deploy_one)
    said: list[str] = []
    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    outcome = run_nightly([tmp_path / "recipes"], ["pi4-emu", "pi5-emu"], store_url=store, log=said.append)
    assert "pi4-emu: tiny-a.yaml: deploy failed: RuntimeError: boom on pi4" in said
    files = {Path(p).name: why for p, why in outcome.failures.items()}
    assert files["tiny-a.yaml"] == "on pi4-emu: RuntimeError: boom on pi4"
    assert "on pi4-emu: " in files["tiny-b.yaml"] and "compare failed" in files["tiny-b.yaml"]
    assert "on pi4-emu: " in files["tiny-c.yaml"] and "on pi5-emu: " in files["tiny-c.yaml"]
    assert outcome.exit_code == 1 and not outcome.interrupted
    with open_store(store) as st:
        stored = {r.recipe: r for r in st.load_many(outcome.run_ids.values()).values()}
    assert set(stored) == {"tiny-a", "tiny-b"}  # tiny-c: every board raised, nothing measured to record

    def runs(recipe: str) -> dict[str, TargetRun]:
        return {run.target: run for run in stored[recipe].runs}

    assert runs("tiny-a")["pi5-emu"].status == "ok" and runs("tiny-a")["pi4-emu"].status == "failed"
    assert "RuntimeError: boom on pi4" in (runs("tiny-a")["pi4-emu"].error or "")
    assert runs("tiny-b")["pi4-emu"].status == "failed" and "compare failed" in (
        runs("tiny-b")["pi4-emu"].error or ""
    )
    assert not stored["tiny-a"].ok and not stored["tiny-b"].ok


def test_after_ctrl_c_an_error_stays_an_error_not_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe that raised on pi4 and was still to run on pi5 when Ctrl-C came, and one whose conversion
    failed, were both rewritten to "not run ... before a board finished it": the real errors were hidden."""
    import _thread
    import threading

    from edgekit.lab.errors import NotRun
    from edgekit.lab.spread import spread

    recipes = _small_recipes(tmp_path / "recipes", ("tiny-a", "tiny-b", "tiny-c"))
    _no_conversion(monkeypatch, fails=("tiny-c",))
    hang, calls = threading.Event(), []

    def deploy_one(recipe: object, target: object, _arts: object) -> object:
        calls.append((target.name, recipe.name))  # type: ignore[attr-defined]
        if target.name == "pi4-emu":  # type: ignore[attr-defined]
            raise RuntimeError(f"boom: {recipe.name}")  # type: ignore[attr-defined]
        _thread.interrupt_main()  # pi5-emu's first recipe: Ctrl-C while it runs
        hang.wait(30)
        raise AssertionError("dropped: never reached the results")

    monkeypatch.setattr("edgekit.lab.night.STOP_WAIT_S", 1.0)
    said: list[str] = []
    try:
        done = spread(recipes, ["pi4-emu", "pi5-emu"], said.append, deploy_one=deploy_one, night=0)  # type: ignore[arg-type]
    finally:
        hang.set()
    assert done.interrupted
    assert ("pi4-emu", "tiny-c") not in calls and (
        "pi5-emu",
        "tiny-c",
    ) not in calls  # not converted: no board
    assert "does not convert" in str(done.results[recipes[2]])  # the conversion's own error, not "not run"
    raised = [p for p in recipes[:2] if ("pi4-emu", p.stem) in calls]
    assert raised and all(f"on pi4-emu: RuntimeError: boom: {p.stem}" in str(done.results[p]) for p in raised)
    assert all(isinstance(done.results[p], NotRun) for p in recipes[:2] if p not in raised)
    assert "tiny-c.yaml: not converted, sent to no board: RuntimeError: tiny-c does not convert" in said


def test_ctrl_c_waits_for_a_board_still_deploying_and_keeps_what_it_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy() runs in a worker thread, where no Ctrl-C arrives: the places were released while benchmarks
    ran on them. The boards still deploying are now waited for (up to STOP_WAIT_S, said) and what they finish is
    kept; one that outlasts the wait is dropped and no longer changes the outcome board_lines reads."""
    import _thread
    import threading

    from edgekit.lab.spread import spread
    from edgekit.results import DeployResult

    recipes = _small_recipes(tmp_path / "recipes", ("tiny-a", "tiny-b"))
    _no_conversion(monkeypatch)
    ran: list[tuple[str, str, float, float]] = []
    finished, late, late_done = _fake_deploy(ran, 0.0), threading.Event(), threading.Event()
    pi5_started = threading.Event()

    def deploy_one(recipe: object, target: object, arts: object) -> object:
        if target.name == "pi4-emu":  # type: ignore[attr-defined]
            pi5_started.wait(30)
            _thread.interrupt_main()
            time.sleep(0.5)  # finishes within the wait
            return finished(recipe, target, arts)
        pi5_started.set()
        late.wait(30)  # outlasts the wait
        try:
            return finished(recipe, target, arts)
        finally:
            late_done.set()

    monkeypatch.setattr("edgekit.lab.night.STOP_WAIT_S", 2.0)
    said: list[str] = []
    start = time.monotonic()
    try:
        done = spread(recipes, ["pi4-emu", "pi5-emu"], said.append, deploy_one=deploy_one, night=0)  # type: ignore[arg-type]
    finally:
        late.set()
    assert 1.5 < time.monotonic() - start < 10
    assert any(
        "waiting up to 2 s for tiny-a.yaml on pi4-emu, tiny-a.yaml on pi5-emu to stop (each board's agent is told to"
        in m
        for m in said
    ), said
    kept = next(m for m in said if "keeping what finished" in m)
    assert "1 on some" in kept and "dropped, not finished: tiny-a.yaml on pi5-emu" in kept, kept
    got = done.results[recipes[0]]
    assert isinstance(got, DeployResult) and [r.target for r in got.runs] == ["pi4-emu"]
    jobs, seconds = {k: list(v) for k, v in done.jobs.items()}, dict(done.board_seconds)
    assert late_done.wait(10)
    time.sleep(0.2)
    assert done.jobs == jobs == {"pi4-emu": ["tiny-a.yaml"]} and done.board_seconds == seconds  # unchanged


def test_a_target_named_twice_is_one_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--targets lab-pi4,lab-pi4` shared one queue (the second's SamePlaceTwice emptied it: every recipe
    ended "no board ran this recipe"); `pi4,pi4` ran two workers on one board at once. Each target is now taken
    once, in order, and said; a board named by name and by file is one board of the spread."""
    from edgekit.lab.spread import spread
    from edgekit.nightly import run_nightly

    _small_recipes(tmp_path / "recipes", ("tiny-a", "tiny-b"))
    _no_conversion(monkeypatch)
    ran: list[tuple[str, str, float, float]] = []
    _plain_lab_night(monkeypatch, _fake_deploy(ran, 0.05))
    said: list[str] = []
    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    outcome = run_nightly([tmp_path / "recipes"], ["pi4-emu", "pi4-emu"], store_url=store, log=said.append)
    assert not outcome.failures and len(outcome.run_ids) == 2
    assert sorted((b, r) for b, r, *_ in ran) == [("pi4-emu", "tiny-a"), ("pi4-emu", "tiny-b")]
    assert "pi4-emu: named 2 times in the targets: measured once" in said
    ran.clear()
    recipes = sorted((tmp_path / "recipes").glob("*.yaml"))
    done = spread(
        recipes,
        ["pi4-emu", str(REPO / "targets" / "pi4-emu.yaml")],
        said.append,
        deploy_one=_fake_deploy(ran, 0.05),  # type: ignore[arg-type]
    )
    assert len(ran) == 2 and all(isinstance(done.results[p], object) for p in recipes)
    assert any("the board pi4-emu is named twice: measured once" in m for m in said)


def test_a_lab_target_whose_acquiring_raises_a_non_lab_error_gets_no_place_and_the_night_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError (labgrid's helper not starting) in a lab target's thread killed it silently: no reason in
    `unavailable`, its queue never given up. It is now why that target got no place tonight, said."""
    from edgekit.lab import night as night_module
    from edgekit.lab import spread as spread_module
    from edgekit.results import DeployResult

    class NoHelper:
        def __init__(self, _address: str) -> None:
            pass

        def hold(self, *_a: object, **_k: object) -> object:
            raise OSError(8, "Exec format error")

        def places(self, *_a: object, **_k: object) -> object:  # the look before acquiring (refused places)
            raise OSError(8, "Exec format error")

    monkeypatch.setattr(spread_module, "check_matchable", lambda _t: None)
    monkeypatch.setattr(night_module, "LabClient", NoHelper)
    recipes = _small_recipes(tmp_path / "recipes", ("tiny-a", "tiny-b"))
    _no_conversion(monkeypatch)
    ran: list[tuple[str, str, float, float]] = []
    said: list[str] = []
    done = spread_module.spread(
        recipes,
        ["lab:board=pi4", "pi5-emu"],
        said.append,
        deploy_one=_fake_deploy(ran, 0.0),  # type: ignore[arg-type]
    )
    assert (
        "OSError" in done.unavailable["lab:board=pi4"]
        and "Exec format error" in done.unavailable["lab:board=pi4"]
    )
    assert any(m.startswith("lab: lab:board=pi4: no place tonight: OSError") for m in said), said
    assert all(isinstance(done.results[p], DeployResult) for p in recipes)


def test_nothing_converted_acquires_no_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recipe whose conversion raised still went to the boards (a KeyError per board); with nothing
    converted, the night acquired places to run nothing on them."""
    from edgekit.lab import night as night_module
    from edgekit.lab import spread as spread_module

    asked: list[str] = []

    class Client:
        def __init__(self, address: str) -> None:
            asked.append(address)

    monkeypatch.setattr(spread_module, "check_matchable", lambda _t: None)
    monkeypatch.setattr(night_module, "LabClient", Client)
    recipes = _small_recipes(tmp_path / "recipes", ("tiny-a", "tiny-b"))
    _no_conversion(monkeypatch, fails=("tiny-a", "tiny-b"))
    said: list[str] = []
    done = spread_module.spread(recipes, ["lab:board=pi4"], said.append, deploy_one=_fake_deploy([], 0.0))  # type: ignore[arg-type]
    assert not asked and "lab: no recipe converted: no place acquired" in said
    assert all(isinstance(done.results[p], RuntimeError) for p in recipes)


def test_a_boards_deploy_gets_the_nights_stop_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """The night's Ctrl-C reaches each board's deploy (DeployOptions.stop, which stops its agent: the deploy's own
    test), through the worker thread that runs it."""
    import threading

    from edgekit import deploy as deploy_module
    from edgekit.lab import night as night_module

    got: list[object] = []
    monkeypatch.setattr(
        deploy_module, "deploy", lambda recipe, targets, opts, artifacts: got.append(opts.stop)
    )
    stopping = threading.Event()

    def worker() -> None:
        night_module._NIGHT.stop = stopping  # as Night.work sets it
        night_module._deploy_one(object(), object(), [])  # type: ignore[arg-type]

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    night_module._deploy_one(object(), object(), [])  # type: ignore[arg-type]  # another thread: no night
    assert got == [stopping, None]


def _measuring_deploy(log: list[tuple[str, str, float, float]]) -> Callable[..., object]:
    """_fake_deploy whose run carries one ok measurement: the board counts as measured in the store."""
    from datetime import UTC, datetime

    from edgekit.results import AgentResult, DeviceFacts, Measurement

    plain = _fake_deploy(log, 0.0)

    def deploy_one(recipe: object, target: object, arts: object) -> object:
        result = plain(recipe, target, arts)
        facts = DeviceFacts(machine="aarch64", cores=4, python="3.11", emulated=True)
        measured = Measurement(
            artifact="ncnn-fp32", format="ncnn-fp32", runtime="ncnn", threads=1, status="ok", samples_ms=[1.0]
        )
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for run in result.runs:  # type: ignore[attr-defined]
            run.agent = AgentResult(started_at=now, facts_before=facts, measurements=[measured])
        return result

    return deploy_one


def test_a_lab_board_that_got_no_recipe_is_no_target_never_measured(
    rig: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One recipe, two free pi4 places: one board ran it, its sibling found the queue empty ("queue empty,
    released") and on a fresh store was "pi4-b: has never produced a measurement", the night failing (exit 1)
    although every board was healthy. A board that took no recipe is no target of the night: said idle in its
    board line, not never measured."""
    from edgekit.lab import night as night_module
    from edgekit.nightly import run_nightly

    _small_recipes(tmp_path / "recipes", ("tiny-a",))
    _no_conversion(monkeypatch)
    ran: list[tuple[str, str, float, float]] = []
    monkeypatch.setattr(night_module, "_deploy_one", _measuring_deploy(ran))
    said: list[str] = []
    store = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    outcome = run_nightly([tmp_path / "recipes"], ["lab:board=pi4"], store_url=store, log=said.append)
    done = outcome.lab
    assert done is not None and set(done.board_type) == {"pi4-a", "pi4-b"}, said
    assert len(ran) == 1, ran
    idle = ({"pi4-a", "pi4-b"} - {ran[0][0]}).pop()
    assert f"{idle}: queue empty, released" in " ".join(said), said
    assert not outcome.never_measured, (outcome.never_measured, said)
    assert not any("never produced a measurement" in m for m in said), said
    assert outcome.exit_code == 0, said
    line = next(m for m in outcome.lab_lines if m.strip().startswith(f"{idle} (lab:board=pi4)"))
    assert "0 recipe(s)" in line and "idle" in line, line
    assert all(h is None for h in holders(rig).values())


def test_a_board_the_ctrl_c_stopped_is_an_interrupted_run_not_a_failed_deploy(
    rig: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C in a lab nightly stops the board still deploying (its deploy raises Interrupted, what it measured
    attached): the night said "pi5-a: tiny-b.yaml: deploy failed: edgekit deploy: interrupted ...", counted it as
    a failed deploy ("1 deploy failed, interrupted"), and the "keeping what finished" line named it nowhere. It is
    now recorded as an interrupted run, said as stopped, not finished, and no deploy failed."""
    import _thread

    from edgekit.errors import Interrupted
    from edgekit.lab import night as night_module
    from edgekit.nightly import run_nightly
    from edgekit.nightly_outcome import verdict
    from edgekit.store import open_store

    _small_recipes(tmp_path / "recipes", ("tiny-a", "tiny-b"))
    _no_conversion(monkeypatch)
    _night_of(monkeypatch, 0)
    ran: list[tuple[str, str, float, float]] = []
    measuring = _measuring_deploy(ran)

    def deploy_one(recipe: object, target: object, arts: object) -> object:
        result = measuring(recipe, target, arts)
        if recipe.name == "tiny-a":  # type: ignore[attr-defined]
            return result
        _thread.interrupt_main()  # Ctrl-C while tiny-b runs on the board
        assert night_module._NIGHT.stop.wait(
            20
        )  # the night tells this board's deploy to stop, as deploy obeys
        for run in result.runs:  # type: ignore[attr-defined]
            run.status, run.interrupted, run.error = "failed", True, "run: interrupted (Ctrl-C or SIGTERM)"
        stop = Interrupted(
            "interrupted (Ctrl-C or SIGTERM); what was measured is kept", where="edgekit deploy"
        )
        stop.result = result  # type: ignore[attr-defined]
        raise stop

    monkeypatch.setattr(night_module, "_deploy_one", deploy_one)
    monkeypatch.setattr(night_module, "STOP_WAIT_S", 10.0)
    said: list[str] = []
    store = f"sqlite:///{tmp_path / 'cut.sqlite'}"
    outcome = run_nightly([tmp_path / "recipes"], ["lab:board=pi5"], store_url=store, log=said.append)
    assert outcome.interrupted and outcome.exit_code == 130, said
    assert not any("deploy failed" in m for m in said), said
    assert not outcome.failures, (outcome.failures, said)
    assert "deploy failed" not in verdict(outcome), verdict(outcome)
    kept = next(m for m in said if "keeping what finished" in m)
    assert (
        "keeping what finished: 1 recipe(s)" in kept and "stopped, not finished: tiny-b.yaml on pi5-a" in kept
    ), kept
    with open_store(store) as st:
        stored = {r.recipe: r for r in st.load_many(outcome.run_ids.values()).values()}
    assert set(stored) == {"tiny-a", "tiny-b"}, said
    assert [(r.target, r.interrupted) for r in stored["tiny-b"].runs] == [("pi5-a", True)]
    assert [(r.target, r.interrupted) for r in stored["tiny-a"].runs] == [("pi5-a", False)]
    assert all(h is None for h in holders(rig).values())


def test_two_lab_targets_with_one_place_between_them_are_refused_before_acquiring(
    rig: lab_rig.Rig, tmp_path: Path
) -> None:
    """`edgekit deploy --target lab:board=pi5 --target lab:name=pi5-a` (one pi5 place): whichever target
    acquired first ran, the other failed with SamePlaceTwice at its acquiring: a failed target, exit 1, stored
    as such, which one depending on timing. It is refused before anything is converted or acquired (exit 2,
    SamePlaceTwice's own) from the places each lab target matches; two targets with two places between them
    are not."""
    recipe = _small_recipes(tmp_path / "recipes", ("tiny-a",))[0]
    start = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "deploy",
            str(recipe),
            "--target",
            "lab:board=pi5",
            "--target",
            "lab:name=pi5-a",
            "--no-host",
            "--no-store",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    said = " ".join(out.stderr.split())
    assert "SamePlaceTwice" in said and "1 place(s) between them (pi5-a)" in said, said
    assert "lab-board-pi5 (board=pi5)" in said and "lab-name-pi5-a (place pi5-a)" in said, said
    assert "acquir" not in out.stdout + out.stderr and "convert" not in out.stdout, (out.stdout, out.stderr)
    assert time.monotonic() - start < 30.0
    assert holders(rig)["pi5-a"] is None
    from edgekit.emu.device import check_distinct_places
    from edgekit.lab.errors import SamePlaceTwice
    from edgekit.target import load_target

    check_distinct_places(
        [load_target("lab:board=pi4"), load_target("lab:name=pi4-a")]
    )  # pi4-b for the first
    with pytest.raises(SamePlaceTwice, match=r"3 lab targets .* 2 place\(s\) between them \(pi4-a, pi4-b\)"):
        check_distinct_places([load_target(t) for t in ("lab:board=pi4", "lab:name=pi4-a", "lab:name=pi4-b")])


def test_the_lab_docs_give_a_defaults_file_that_loads_and_the_setup_a_first_deploy_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/lab.md said to keep the lab's defaults in a target file named `lab` and showed none; its setup did
    not say to record each place's host key (a first deploy with accept_new: false failed with HostKeyError) nor
    that the exporters exit when the coordinator restarts; `nightly --help`'s example had no lab target. The
    example defaults file is now in the docs and loads as the defaults of `lab:board=pi4`."""
    import re

    from edgekit.target import load_target

    text = (REPO / "docs" / "lab.md").read_text()
    example = re.search(r"```yaml\n(# lab\.yaml: .*?)```", text, re.S)
    assert example, "no example lab.yaml in docs/lab.md"
    (tmp_path / "lab.yaml").write_text(example.group(1))
    monkeypatch.setenv("EDGEKIT_TARGETS_DIR", str(tmp_path))
    target = load_target("lab:board=pi4")
    assert target.lab is not None and target.lab.tags == {"board": "pi4"} and target.lab.wait_s == 600
    assert target.key is not None and not target.accept_new
    assert not (REPO / "targets" / "lab.yaml").exists()  # a shipped one would be a target of its own
    flat = " ".join(text.split())
    assert "ssh-keyscan -p 22 192.168.7.21 >> ~/.local/share/edgekit/lab/known_hosts/pi4-01" in flat
    assert "RestartSec=5" in text and "exits when its coordinator goes away" in flat
    assert "`--set lab.wait_s=N`" in flat
    shown = CliRunner().invoke(app, ["nightly", "--help"], terminal_width=200)
    assert "--targets lab:board=pi4" in " ".join(shown.output.split()), shown.output


def test_a_lab_board_that_refuses_the_connection_is_hinted_as_a_lab_place(rig: lab_rig.Rig) -> None:
    """A lab place whose board refused the connection was hinted "is the device on and sshd running?
    (`edgekit emu up NAME` for an emulated one)": no word of the place, its exporter or `edgekit lab`."""
    from edgekit.emu.device import ensure_device
    from edgekit.errors import ConnectError
    from edgekit.target import load_target
    from edgekit.transport import open_transport

    lgc = str(lab_python().parent / "labgrid-client")
    env = {**os.environ, "LG_COORDINATOR": rig.coordinator}
    closed = lab_rig._free_port()  # nothing listens there: the board's sshd is down
    exporter = lab_rig.add_exporter(rig, "rack9", "pi4-off", closed, {"board": "pi4off"})
    try:
        target = ensure_device(load_target("lab:name=pi4-off"))
        transport = open_transport(target)
        try:
            with pytest.raises(ConnectError) as raised:
                transport.connect()
        finally:
            transport.close()
        hint = raised.value.hint or ""
        assert "emu up" not in hint, hint
        assert "lab place pi4-off" in hint and f"127.0.0.1:{closed}" in hint, hint
        assert "exporter rack9" in hint and "edgekit lab" in hint, hint
    finally:
        lab_rig._stop_group(exporter)
        subprocess.run([lgc, "-p", "pi4-off", "delete"], env=env, capture_output=True)
    assert "pi4-off" not in holders(rig)


def test_a_kick_that_fails_never_says_released(rig: lab_rig.Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgekit lab release PLACE --kick` printed "released (was held by ...)" before it kicked: a kick that
    failed (here the place deleted by the lab's admin between the listing and the kick, with the real
    coordinator) had already been said as done. It is said once the kick succeeded."""
    from edgekit.lab.errors import LabError

    lgc = str(lab_python().parent / "labgrid-client")
    admin = {**os.environ, "LG_COORDINATOR": rig.coordinator}
    bob = {**admin, "LG_USERNAME": "bob", "LG_HOSTNAME": "other"}
    subprocess.run([lgc, "-p", "pi4-tmp", "create"], env=admin, check=True, capture_output=True)
    subprocess.run([lgc, "-p", "pi4-tmp", "acquire"], env=bob, check=True, capture_output=True)
    listed = LabClient.places

    def then_deleted(self: LabClient) -> list[Place]:
        places = listed(self)
        subprocess.run([lgc, "-p", "pi4-tmp", "release"], env=bob, capture_output=True)
        subprocess.run([lgc, "-p", "pi4-tmp", "delete"], env=admin, check=True, capture_output=True)
        return places

    monkeypatch.setattr(LabClient, "places", then_deleted)
    try:
        out = CliRunner().invoke(
            app, ["lab", "release", "pi4-tmp", "--kick", "-x", rig.coordinator], terminal_width=200
        )
    finally:
        subprocess.run([lgc, "-p", "pi4-tmp", "delete"], env=admin, capture_output=True)
    assert isinstance(out.exception, LabError), (out.exception, out.output)
    assert "released" not in out.output, out.output
    monkeypatch.setattr(LabClient, "places", listed)
    subprocess.run([lgc, "-p", "pi4-b", "acquire"], env=bob, check=True, capture_output=True)
    kicked = CliRunner().invoke(app, ["lab", "release", "pi4-b", "--kick", "-x", rig.coordinator])
    assert kicked.exit_code == 0 and "pi4-b: released (was held by other/bob" in kicked.output, kicked.output
    assert holders(rig)["pi4-b"] is None
