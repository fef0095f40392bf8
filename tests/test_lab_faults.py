"""Lab faults found in review, against a real labgrid coordinator (edgekit/lab/rig.py's bare rig, as
tests/test_lab_night.py's; nothing is deployed on a board unless a test says so): an address read as an option,
the `lab` defaults file without a `lab:` block, a signal to a deploy waiting for a place, a tag target and a name
target racing for one place, a nightly board kicked mid-run."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lab_helpers import holders, kick_held, short_bounds, teammate

from edgekit.errors import TargetError
from edgekit.lab import rig as lab_rig
from edgekit.lab.client import LabClient, lab_python
from edgekit.lab.errors import LabError
from edgekit.results import AgentResult, DeployResult, TargetRun

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "tiny.yaml"


PLACES = {"b1": {"board": "rx"}, "b2": {"board": "rx"}, "b3": {"board": "ry"}}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_rig.Rig]:
    lab_python()  # no .venv-lab: LabSetupError naming `make setup`
    started = lab_rig.start_bare(tmp_path_factory.mktemp("lab") / "rig", PLACES)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def free_lab(rig: lab_rig.Rig) -> Iterator[lab_rig.Rig]:
    """The lab free after the test (a failing test leaves nothing held for the next)."""
    yield rig
    kick_held(rig)


def edgekit(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *argv],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ),
        timeout=timeout,
    )


def test_a_coordinator_address_starting_with_a_dash_is_bad_input_never_an_option(tmp_path: Path) -> None:
    """`lab: {coordinator: '-h'}` and `LG_COORDINATOR=--version` passed the check and reached labgrid's helper as
    options: "the labgrid helper said nothing (exit 2): usage: ...", exit 1. A host never starts with '-': bad
    input naming the field or variable, exit 2; and the helper gets the address as one word."""
    from edgekit.target import load_target

    for bad in ("-h", "--version", "-x:20408"):
        path = tmp_path / "lab-dash.yaml"
        path.write_text(f"lab: {{coordinator: '{bad}'}}\n")
        with pytest.raises(TargetError, match=r"lab\.coordinator: .*expected HOST\[:PORT\]"):
            load_target(path)
    env = {k: v for k, v in os.environ.items() if k != "LG_COORDINATOR"}
    out = edgekit("lab", env={**env, "LG_COORDINATOR": "--version"})
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "$LG_COORDINATOR: '--version'" in out.stderr and "expected HOST[:PORT]" in out.stderr, out.stderr
    # the helper reads `--coordinator=VALUE` as one word: never "usage: ..." whatever the value
    with pytest.raises(LabError) as raised:
        LabClient("-h:20408", timeout_s=20).places()
    assert "said nothing" not in str(raised.value) and "usage" not in str(raised.value), raised.value


def test_the_lab_command_reads_a_defaults_file_without_a_lab_block(
    free_lab: lab_rig.Rig, tmp_path: Path
) -> None:
    """A `lab` defaults file with no `lab:` block (the coordinator from $LG_COORDINATOR), which deploy reads fine:
    `edgekit lab` and `edgekit lab release` loaded it as a whole target, "an ssh target needs a host", exit 2."""
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "lab.yaml").write_text("# the team's defaults\naccept_new: true\n")
    env = {**os.environ, "EDGEKIT_TARGETS_DIR": str(targets), "LG_COORDINATOR": free_lab.coordinator}
    out = edgekit("lab", env=env)
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert all(name in out.stdout for name in PLACES), out.stdout
    teammate(free_lab, "b2", "acquire")
    out = edgekit("lab", "release", "b1", env=env)
    assert out.returncode == 0 and "b1 is free" in out.stdout, (out.stdout, out.stderr)
    out = edgekit("lab", "release", "b2", "--kick", env=env)
    assert out.returncode == 0 and "b2: released" in out.stdout, (out.stdout, out.stderr)
    assert holders(free_lab)["b2"] is None
    # a lab: block's coordinator is still the file's word, checked as before
    (targets / "lab.yaml").write_text("accept_new: true\nlab: {coordinator: 'h:0'}\n")
    out = edgekit("lab", env=env)
    assert out.returncode == 2 and "lab.coordinator" in out.stderr and "lab.yaml" in out.stderr, out.stderr


def _lab_targets(folder: Path, rig: lab_rig.Rig, wait_s: float) -> Path:
    """A `lab` defaults file for rig (a key file of its own: no board is reached in these tests)."""
    folder.mkdir(exist_ok=True)
    key = folder / "key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (folder / "lab.yaml").write_text(
        f"lab: {{coordinator: '{rig.coordinator}', wait_s: {wait_s}}}\nkey: {key}\naccept_new: true\n"
    )
    return folder


def _read_until(proc: subprocess.Popen[str], words: str, timeout_s: float) -> list[str]:
    """proc's stdout and stderr lines (merged) up to the first holding `words`."""
    import selectors

    assert proc.stdout is not None
    lines: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if words in line:
            return lines
    raise AssertionError(f"no {words!r} within {timeout_s} s: {''.join(lines)[-3000:]}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_a_deploy_waiting_for_a_place_stops_it_at_once(
    free_lab: lab_rig.Rig, tmp_path: Path, signum: signal.Signals
) -> None:
    """bob holds the only board=ry place; a deploy waits for it (wait_s 40). A SIGTERM or SIGINT sent to the
    deploy's pid (not its group, where the waiting helper also is) was ignored until wait_s ran out ("FAILED
    ensure: LabWaitTimeout" after 40 s, then exit 130). Now the deploy closes its waiting lease: exit 130 in
    seconds, bob's place untouched, nothing left held."""
    teammate(free_lab, "b3", "acquire")
    targets = _lab_targets(tmp_path / "targets", free_lab, 40)
    env = {**os.environ, "EDGEKIT_TARGETS_DIR": str(targets), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "deploy", str(TINY), "-f", "onnx-fp32", "--target", "lab:board=ry"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        _read_until(proc, "waiting for a free place", 60)
        os.kill(proc.pid, signum)
        start = time.monotonic()
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, out[-3000:]
    assert took < 15.0, (took, out[-3000:])  # the bug: until wait_s (40 s) ran out
    assert "LabWaitTimeout" not in out, out[-3000:]
    assert holders(free_lab) == {"b1": None, "b2": None, "b3": "other/bob"}


def test_a_tag_target_never_takes_the_place_another_target_of_the_run_names(
    free_lab: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--target lab:board=rx --target lab:name=b1` with b1 and b2 (both board=rx) free: the check before work
    found the assignment (b2, b1), but the acquiring was greedy: when the tag target acquired first it took b1 and
    the name target failed with SamePlaceTwice (2 runs in 4). The tag target now leaves b1 to the target naming
    it, whichever acquires first."""
    from edgekit.emu.device import check_distinct_places
    from edgekit.lab.acquire import acquire_target
    from edgekit.target import load_target

    monkeypatch.setenv("EDGEKIT_TARGETS_DIR", str(_lab_targets(tmp_path / "targets", free_lab, 5)))
    by_tag, by_name = load_target("lab:board=rx"), load_target("lab:name=b1")
    check_distinct_places([by_tag, by_name])
    got_tag = acquire_target(by_tag)  # the tag target first: the order that failed
    try:
        got_name = acquire_target(by_name)
        try:
            assert (got_tag.name, got_name.name) == ("b2", "b1")
            assert holders(free_lab)["b1"] == holders(free_lab)["b2"] is not None
        finally:
            got_name._lease.close()
    finally:
        got_tag._lease.close()
    assert holders(free_lab) == {"b1": None, "b2": None, "b3": None}


def _measured(recipe: Any, run: TargetRun) -> DeployResult:
    """A recipe's run on one board as a deploy returns it, with one ok measurement (what a kicked board's deploy
    had measured before its place check failed it)."""
    run.agent = AgentResult.model_validate(
        {
            "started_at": "2026-01-01T00:00:00",
            "facts_before": {"machine": "aarch64", "cores": 4, "python": "3.11"},
            "measurements": [
                {
                    "artifact": "onnx-fp32",
                    "format": "onnx-fp32",
                    "runtime": "onnxruntime",
                    "threads": 1,
                    "status": "ok",
                    "samples_ms": [1.0, 1.1, 1.0],
                }
            ],
        }
    )
    return DeployResult(
        recipe=recipe.name,
        recipe_path=str(recipe.path),
        recipe_sha256="0",
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        runs=[run],
        ok=run.status == "ok",
    )


def test_a_nightly_board_kicked_mid_run_fails_the_night_and_is_no_baseline(
    free_lab: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bob kicked the night off b1 and took it while its recipe ran: the run was stored failed with place_lost
    ('1 target failed: b1'), yet the night said "no regressions" and exited 0, and the run's ok figures were judged
    as any night's and became b1's history. docs/lab.md: the run fails as a deploy's does and a failed run fails
    the night. Now the night exits 1 naming b1, and the run's figures are flagged unreliable and no baseline.
    (The places are acquired, checked and kicked for real; each recipe's deploy on a board is a stand-in, as in
    tests/test_lab_night.py.)"""
    from edgekit.lab import night as night_module
    from edgekit.lab import spread as spread_module
    from edgekit.nightly import run_nightly
    from edgekit.nightly_outcome import verdict
    from edgekit.report.baseline import key_series
    from edgekit.report.flags import FlagKind, Settings
    from edgekit.store import open_store
    from edgekit.transport import open_transport

    monkeypatch.setenv("EDGEKIT_TARGETS_DIR", str(_lab_targets(tmp_path / "targets", free_lab, 10)))
    folder = tmp_path / "recipes"
    folder.mkdir()
    for i in range(2):
        (folder / f"r{i}.yaml").write_text(TINY.read_text().replace("name: tiny\n", f"name: r{i}\n"))
    monkeypatch.setattr(spread_module, "_convert", lambda _recipe, _log: [])
    kicked: list[str] = []

    def deploy_one(recipe: Any, target: Any, _arts: object, *_a: object, **_k: object) -> DeployResult:
        if target.name == "b1" and not kicked:
            kicked.append(recipe.name)
            teammate(free_lab, "b1", "release --kick", "acquire")  # while its recipe runs
        time.sleep(0.3)
        transport = open_transport(target)  # what the deploy's session opens and closes on the board
        transport.close()
        lost = transport.lost_hold()  # what the session records (edgekit/deploy/finish.py _check_held)
        run = TargetRun(target=target.name, kind="ssh", emulated=False, status="failed" if lost else "ok")
        run.place_lost = lost
        if lost:
            run.error = f"lab: {target.name} was taken from this run before it ended ({lost})"
        return _measured(recipe, run)

    monkeypatch.setattr(night_module, "_deploy_one", deploy_one)
    said: list[str] = []
    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    outcome = run_nightly([folder], ["lab:board=rx"], store_url=store, log=said.append)
    assert kicked, said
    line = verdict(outcome)
    assert outcome.exit_code == 1, (line, said)
    assert "b1" in line and "taken from this run" in line, line
    assert outcome.report is not None
    on_b1 = [f for f in outcome.report.flags if f.target == "b1"]
    assert {f.kind for f in on_b1} == {FlagKind.FAILED, FlagKind.UNRELIABLE}, on_b1
    assert not any(f.kind is FlagKind.LATENCY for f in outcome.report.flags), outcome.report.flags
    with open_store(store, create=False) as st:
        history = st.history(target="b1")
    lost_runs = [r for r in history if any(t.target == "b1" and t.place_lost for t in r.result.runs)]
    assert lost_runs, [r.result.runs for r in history]
    b1_run = next(t for t in lost_runs[0].result.runs if t.target == "b1")
    assert b1_run.agent is not None
    # the kicked run's ok figures are not b1's history
    assert key_series(lost_runs, "b1", b1_run.agent.measurements[0], False, Settings()) == []
    assert holders(free_lab)["b1"] == "other/bob"


def test_a_coordinator_gone_mid_night_is_said_once_and_never_as_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator died during a night: the log said "c1: lab: warning: could not check ..." twice per recipe
    (the board's transport and its worker both check), then "c1: lab: warning: c1 was not released: ..." followed
    by "c1: queue empty, released (0.001 s)". Now the check's warning is said once, and a release that failed is
    never said as released."""
    from edgekit.lab import night as night_module
    from edgekit.lab import spread as spread_module
    from edgekit.lab.spread import spread
    from edgekit.transport import open_transport

    short_bounds(monkeypatch, grace=True)  # the coordinator is gone: nothing answers in any of them
    said: list[str] = []
    solo = lab_rig.start_bare(tmp_path / "rig", {"c1": {"board": "rz"}})
    try:
        monkeypatch.setenv("EDGEKIT_TARGETS_DIR", str(_lab_targets(tmp_path / "targets", solo, 10)))
        folder = tmp_path / "recipes"
        folder.mkdir()
        (folder / "r0.yaml").write_text(TINY.read_text().replace("name: tiny\n", "name: r0\n"))
        monkeypatch.setattr(spread_module, "_convert", lambda _recipe, _log: [])

        def deploy_one(recipe: Any, target: Any, _arts: object, *_a: object, **_k: object) -> DeployResult:
            lab_rig._stop_group(solo.pids[0])  # the coordinator, while the recipe runs
            transport = open_transport(target)
            transport.close()
            run = TargetRun(target=target.name, kind="ssh", emulated=False, status="ok")
            run.place_lost = transport.lost_hold()
            return _measured(recipe, run)

        monkeypatch.setattr(night_module, "_deploy_one", deploy_one)
        spread([folder / "r0.yaml"], ["lab:board=rz"], said.append, night=0)
    finally:
        solo.stop()
        # the helper goes on retrying the release for 10 minutes after the night: a SIGTERM ends it (one last try)
        for pid in re.findall(r"release pending[^\n]*?pid (\d+)", "\n".join(said)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
    checks = [m for m in said if "could not check that c1" in m]
    assert len(checks) == 1, said
    assert any("c1 was not released" in m for m in said), said
    assert not any(m.startswith("c1: ") and "released (" in m for m in said), said
