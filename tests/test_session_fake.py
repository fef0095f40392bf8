"""TargetSession's crash, restart, timeout, lost-link and cleanup paths, against a scripted device
(edgekit.transport.fake). The same paths on the real emulated device: tests/faults/."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgekit.agent.contract import ErrorCode
from edgekit.deploy import finish as finish_module
from edgekit.deploy import session as session_module
from edgekit.deploy.request import AGENT_REMOTE, AgentArtifact, Settings
from edgekit.deploy.session import TargetSession
from edgekit.formats import Format
from edgekit.results import AgentResult, DeviceFacts, Measurement, TargetRun
from edgekit.target import Target
from edgekit.transport import RunResult
from edgekit.transport.fake import Call, FakeTransport, Step, drops_link, exits, hangs, runs_here

FACTS = DeviceFacts(machine="aarch64", cores=4, python="3.11.2")


@pytest.fixture()
def arts(tmp_path: Path) -> list[AgentArtifact]:
    made = []
    for name in ("a", "b", "c"):
        model = tmp_path / "models" / name / "model.tflite"
        model.parent.mkdir(parents=True)
        model.write_bytes(name.encode() * 64)
        made.append(AgentArtifact(name, Format.TFLITE_FP32, (model,), key=f"{name * 16}"))
    return made


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    path = tmp_path / "inputs.npy"
    path.write_bytes(b"not read by the fake agent")
    return path


def measurement(art: str, threads: int = 1) -> Measurement:
    return Measurement(
        artifact=art,
        format="tflite-fp32",
        runtime="ai_edge_litert",
        threads=threads,
        status="ok",
        samples_ms=[1.0, 1.1],
        p50_ms=1.05,
    )


def agent(
    measures: Callable[[list[str]], list[str]] | None = None,
    *,
    in_progress: str | None = None,
    finished: bool = True,
    then: Step | None = None,
) -> Step:
    """A stand-in for the agent: reads the request the session pushed, writes a result for the artifacts
    `measures` picks from the requested ids (all by default), then does what `then` does (exit 0 by default).
    Other commands (the cleanup's rm) run for real in the device's folder."""

    def step(fake: FakeTransport, call: Call) -> RunResult:
        if AGENT_REMOTE not in call.argv:
            return runs_here(fake, call)
        request, result = call.argv[-2], call.argv[-1]
        wanted = [a["id"] for a in json.loads(fake.path(request).read_text())["artifacts"]]
        done = measures(wanted) if measures else wanted
        written = AgentResult(
            started_at="2026-01-01T00:00:00",
            finished_at="2026-01-01T00:01:00" if finished else None,
            facts_before=FACTS,
            measurements=[measurement(a) for a in done],
            in_progress=in_progress,
        )
        fake.path(result).write_text(written.model_dump_json())
        return (then or exits(0))(fake, call)

    return step


def run_session(
    tmp_path: Path,
    fake: FakeTransport,
    arts: list[AgentArtifact],
    inputs: Path,
    progress: Callable[[object], None] | None = None,
    **settings: object,
) -> tuple[TargetRun, TargetSession]:
    target = Target(name="board", host="board.invalid", connect_timeout=1)  # an unreachable one: 1 s
    session = TargetSession(
        target,
        run_id="r1",
        local_dir=tmp_path / "local",
        transport=fake,
        settings=Settings(repeat=2, warmup=0, **settings),  # type: ignore[arg-type]
        progress=progress,
    )
    return session.execute(arts, inputs), session


def statuses(run: TargetRun) -> dict[str, tuple[str, ErrorCode | None]]:
    assert run.agent is not None
    return {m.artifact: (m.status, m.error_code) for m in run.agent.measurements}


def cleaned(fake: FakeTransport) -> bool:
    return any(e.startswith("run rm -rf -- runs/r1-board") for e in fake.events)


def test_every_artifact_measured_then_the_run_folder_is_removed(tmp_path, arts, inputs) -> None:
    fake = FakeTransport(tmp_path / "device", default=agent())
    run, _ = run_session(tmp_path, fake, arts, inputs)
    assert run.status == "ok", run.error
    assert statuses(run) == dict.fromkeys("abc", ("ok", None))
    assert fake.events[0] == "connect" and fake.events[-1] == "close"
    assert (fake.root / "agent.py").is_file() and (
        fake.root / "artifacts" / ("a" * 16) / "model.tflite"
    ).is_file()
    assert cleaned(fake) and not (fake.root / "runs" / "r1-board").exists()  # the real rm ran in the folder
    assert (
        {"ensure", "connect", "push", "run", "pull", "cleanup"} >= set(run.stage_seconds) >= {"push", "run"}
    )


def test_a_second_push_sends_nothing_unchanged(tmp_path, arts, inputs) -> None:
    fake = FakeTransport(tmp_path / "device", default=agent())
    run_session(tmp_path, fake, arts, inputs)
    said: list[object] = []
    target = Target(name="board", host="board.invalid")
    again = TargetSession(
        target,
        run_id="r2",
        local_dir=tmp_path / "local2",
        transport=fake,
        settings=Settings(repeat=2, warmup=0),
        progress=said.append,
    )
    assert again.execute(arts, inputs).status == "ok"
    assert any("0.00 MB sent" in str(s) for s in said), said


def test_a_crash_mid_artifact_fails_it_and_restarts_the_agent_for_the_rest(tmp_path, arts, inputs) -> None:
    crash = agent(
        lambda wanted: wanted[:1],
        in_progress="b threads=1",
        finished=False,
        then=exits(-11, stderr="Segmentation fault"),
    )
    fake = FakeTransport(tmp_path / "device", steps={1: crash}, default=agent())
    run, _ = run_session(tmp_path, fake, arts, inputs)
    assert run.status == "ok", run.error
    assert statuses(run) == {"a": ("ok", None), "b": ("failed", ErrorCode.CRASH), "c": ("ok", None)}
    failed = next(m for m in run.agent.measurements if m.artifact == "b")  # type: ignore[union-attr]
    assert "SIGSEGV" in (failed.error or "") and "Segmentation fault" in (failed.error or "")
    agent_runs = [e for e in fake.events if e.startswith("run ") and "agent.py" in e]
    assert len(agent_runs) == 2 and "request-1.json" in agent_runs[1]  # the restart measured only c
    assert json.loads((tmp_path / "local" / "request-1.json").read_text())["artifacts"][0]["id"] == "c"
    assert cleaned(fake)


def test_an_agent_dying_between_measurements_is_restarted_without_failing_anything(
    tmp_path, arts, inputs
) -> None:
    died = agent(lambda wanted: wanted[:1], finished=False, then=exits(137, stderr="Killed"))
    fake = FakeTransport(tmp_path / "device", steps={1: died, 2: died}, default=agent())
    run, _ = run_session(tmp_path, fake, arts, inputs)
    assert run.status == "ok" and statuses(run) == dict.fromkeys("abc", ("ok", None))


def test_an_agent_that_crashes_every_time_gives_up_after_max_restarts(
    tmp_path, arts, inputs, monkeypatch
) -> None:
    monkeypatch.setattr(session_module, "MAX_RESTARTS", 3)

    def first_in_progress(
        fake: FakeTransport, call: Call
    ) -> RunResult:  # crashes in the first artifact it is given
        if AGENT_REMOTE not in call.argv:
            return runs_here(fake, call)
        wanted = json.loads(fake.path(call.argv[-2]).read_text())["artifacts"][0]["id"]
        return agent(lambda w: [], in_progress=f"{wanted} threads=1", finished=False, then=exits(-11))(
            fake, call
        )

    fake = FakeTransport(tmp_path / "device", default=first_in_progress)
    run, _ = run_session(tmp_path, fake, arts, inputs)
    assert statuses(run) == dict.fromkeys("abc", ("failed", ErrorCode.CRASH))
    assert sum(e.startswith("run ") and AGENT_REMOTE in e for e in fake.events) == 3 and cleaned(fake)


def test_a_crash_before_measuring_anything_fails_the_target_and_still_cleans_up(
    tmp_path, arts, inputs
) -> None:
    fake = FakeTransport(tmp_path / "device", steps={1: exits(1, stderr="ModuleNotFoundError: numpy")})
    run, _ = run_session(tmp_path, fake, arts, inputs)
    assert run.status == "failed"
    assert "before measuring anything" in (run.error or "") and "numpy" in (run.error or "")
    assert "not run: a, b, c" in (run.error or "")
    assert cleaned(fake) and fake.closed


def test_a_hung_agent_times_out_keeps_the_partial_result_and_cleans_up(tmp_path, arts, inputs) -> None:
    partial = agent(lambda wanted: wanted[:1], in_progress="b threads=1", finished=False, then=hangs())
    fake = FakeTransport(tmp_path / "device", steps={1: partial})
    run, _ = run_session(tmp_path, fake, arts, inputs, timeout_s=1.0)
    assert run.status == "failed" and "run: AgentError" in (run.error or "")
    assert "raise benchmark.timeout_s" in (run.error or "")
    assert statuses(run) == {
        "a": ("ok", None),
        "b": ("failed", ErrorCode.TIMEOUT),
        "c": ("failed", ErrorCode.TIMEOUT),
    }
    assert cleaned(fake) and fake.closed


def test_a_lost_link_reconnects_pulls_what_the_device_wrote_and_stops_the_agent(
    tmp_path, arts, inputs
) -> None:
    lost = agent(
        lambda wanted: wanted[:2], in_progress="c threads=1", finished=False, then=drops_link(pgid=777)
    )
    fake = FakeTransport(tmp_path / "device", steps={1: lost})
    run, _ = run_session(tmp_path, fake, arts, inputs)
    assert run.status == "failed" and "ConnectionLost" in (run.error or "")
    assert statuses(run) == {"a": ("ok", None), "b": ("ok", None), "c": ("failed", ErrorCode.NOT_RUN)}
    assert fake.events.index("reconnect") < fake.events.index("kill_group 777")  # what is left of it stopped
    assert cleaned(fake) and fake.closed


def test_a_result_file_lagging_the_stream_at_a_lost_link_keeps_the_streamed_measurement(
    tmp_path, arts, inputs
) -> None:
    """The agent streamed b's measurement and was stopped before its result file held it (that write's fsync on a
    busy disk) when the link dropped: the file read after the reconnect held a only, and it was taken alone, so b,
    measured and streamed, was recorded as not run (seen through a real link: tests/faults/test_fault_pull.py)."""
    start = json.dumps({"started_at": "2026-01-01T00:00:00", "facts_before": FACTS.model_dump()})
    stream = "".join(f"EDGEKIT_MEASUREMENT {measurement(a).model_dump_json()}\n" for a in "ab")
    lost = agent(
        lambda wanted: wanted[:1],
        in_progress="b threads=1",
        finished=False,
        then=drops_link(stdout=f"EDGEKIT_START {start}\n{stream}"),
    )
    fake = FakeTransport(tmp_path / "device", steps={1: lost})
    run, _ = run_session(tmp_path, fake, arts, inputs)
    assert run.status == "failed" and "ConnectionLost" in (run.error or "")
    assert statuses(run) == {"a": ("ok", None), "b": ("ok", None), "c": ("failed", ErrorCode.NOT_RUN)}
    assert run.agent is not None and run.agent.in_progress is None


def test_an_unreachable_device_keeps_the_streamed_measurements_and_skips_cleanup(
    tmp_path, arts, inputs
) -> None:
    start = json.dumps({"started_at": "2026-01-01T00:00:00", "facts_before": FACTS.model_dump()})
    stream = f"EDGEKIT_START {start}\nEDGEKIT_MEASUREMENT {measurement('a').model_dump_json()}\nEDGEKIT_MEAS"
    fake = FakeTransport(tmp_path / "device", steps={1: drops_link(stdout=stream)}, reachable=False)
    said: list[object] = []
    target = Target(name="board", host="board.invalid", connect_timeout=1)
    session = TargetSession(
        target,
        run_id="r1",
        local_dir=tmp_path / "local",
        transport=fake,
        settings=Settings(repeat=2, warmup=0),
        progress=said.append,
    )
    run = session.execute(arts, inputs)
    assert run.status == "failed" and "ConnectionLost" in (run.error or "")
    assert statuses(run) == {
        "a": ("ok", None),
        "b": ("failed", ErrorCode.NOT_RUN),
        "c": ("failed", ErrorCode.NOT_RUN),
    }
    assert (
        "reconnect" in fake.events and not cleaned(fake) and fake.closed
    )  # nothing more asked of a dead link
    assert any("kept 1 streamed measurements" in str(s) for s in said)


def test_the_whole_run_deadline_cuts_a_hung_device(tmp_path, arts, inputs, monkeypatch) -> None:
    monkeypatch.setattr(
        session_module, "RUN_GRACE_S", 0.5
    )  # the deadline passes before the run's own timeout
    fake = FakeTransport(tmp_path / "device", steps={1: hangs()}, reachable=False)
    run, _ = run_session(tmp_path, fake, arts, inputs, timeout_s=0.1)
    assert run.status == "failed" and "DeviceTimeout" in (run.error or ""), run.error
    assert "whole-run deadline" in (run.error or "") and "not run: a, b, c" in (run.error or "")
    assert run.agent is None  # the agent never wrote a result: the target's error says what was not run
    assert fake.closed and not cleaned(fake)


def test_ctrl_c_stops_the_agent_keeps_what_was_measured_and_marks_the_run(tmp_path, arts, inputs) -> None:
    fake = FakeTransport(tmp_path / "device")
    target = Target(name="board", host="board.invalid")
    session = TargetSession(
        target,
        run_id="r1",
        local_dir=tmp_path / "local",
        transport=fake,
        settings=Settings(repeat=2, warmup=0, timeout_s=30.0),
    )

    def ctrl_c_while_hanging(fake: FakeTransport, call: Call) -> RunResult:
        threading.Timer(
            0.2, session.interrupt
        ).start()  # from another thread, as deploy's Ctrl-C handler does
        return hangs()(fake, call)

    fake.steps[1] = agent(
        lambda wanted: wanted[:1], in_progress="b threads=1", finished=False, then=ctrl_c_while_hanging
    )
    run = session.execute(arts, inputs)
    assert run.interrupted and run.status == "failed"
    assert statuses(run)["b"] == ("failed", ErrorCode.INTERRUPTED)
    # the link is whole: what was measured is fetched and the run folder removed (it was left in silence)
    assert fake.closed and "resume" in fake.events and cleaned(fake)


def test_after_a_ctrl_c_on_a_cut_link_the_folder_left_on_the_device_is_said(tmp_path, arts, inputs) -> None:
    fake = FakeTransport(tmp_path / "device")
    target = Target(name="board", host="board.invalid")
    said: list[str] = []
    session = TargetSession(
        target,
        run_id="r1",
        local_dir=tmp_path / "local",
        transport=fake,
        settings=Settings(repeat=2, warmup=0, timeout_s=30.0),
        progress=said.append,
    )

    def ctrl_c_then_cut(fake: FakeTransport, call: Call) -> RunResult:
        def both() -> None:
            session.interrupt()
            fake.sever("interrupted (Ctrl-C or SIGTERM)")  # the link's timer cut it: the device froze too

        threading.Timer(0.2, both).start()
        return hangs()(fake, call)

    fake.steps[1] = agent(
        lambda wanted: wanted[:1], in_progress="b threads=1", finished=False, then=ctrl_c_then_cut
    )
    run = session.execute(arts, inputs)
    assert run.interrupted and not cleaned(fake)
    assert any("runs/r1-board left on the device (the link was cut at the interrupt)" in s for s in said), (
        said
    )


def test_a_full_disk_is_named_before_anything_is_sent(tmp_path, arts, inputs) -> None:
    fake = FakeTransport(tmp_path / "device", free=1000)
    run, _ = run_session(tmp_path, fake, arts, inputs)
    assert run.status == "failed" and "DeviceDiskFull" in (run.error or "")
    assert not any(e.startswith("put ") for e in fake.events) and fake.closed


def test_an_interrupt_while_pushing_starts_no_agent(tmp_path, arts, inputs) -> None:
    """Ctrl-C early in a deploy: a target still pushing went on to start its agent ('agent measuring' after
    'interrupted'). Now no stage starts after the interrupt; every artifact is recorded as interrupted."""
    holder: list[TargetSession] = []

    class InterruptedWhilePushing(FakeTransport):
        def put(self, local: Path, remote: str):  # type: ignore[no-untyped-def]
            if holder:
                holder[0].interrupt()
            return super().put(local, remote)

    fake = InterruptedWhilePushing(tmp_path / "device", default=agent())
    session = TargetSession(
        Target(name="board", host="board.invalid"),
        run_id="r1",
        local_dir=tmp_path / "local",
        transport=fake,
        settings=Settings(repeat=2, warmup=0),
    )
    holder.append(session)
    run = session.execute(arts, inputs)
    assert run.interrupted and run.status == "failed" and "before measuring" in (run.error or "")
    assert any(e.startswith("put") for e in fake.events)  # it was interrupted while pushing
    assert not [e for e in fake.events if e.startswith("run") and AGENT_REMOTE in e], fake.events
    assert run.agent is None or {m.error_code for m in run.agent.measurements} == {ErrorCode.INTERRUPTED}


def test_a_ctrl_c_on_a_link_cut_while_pushing_says_no_agent_had_run(tmp_path, arts, inputs) -> None:
    """Ctrl-C during a frozen upload (the link cut at the interrupt): the folder left on the device was said as
    'what the agent saved there was not fetched', though no agent had run yet. It says what it holds."""
    holder: list[TargetSession] = []

    class CutWhilePushing(FakeTransport):
        def put(self, local: Path, remote: str):  # type: ignore[no-untyped-def]
            if holder:
                holder[0].interrupt()
                self.sever("interrupted (Ctrl-C or SIGTERM)")  # the upload froze: the link's timer cut it
            return super().put(local, remote)

    fake = CutWhilePushing(tmp_path / "device", default=agent())
    said: list[str] = []
    session = TargetSession(
        Target(name="board", host="board.invalid"),
        run_id="r1",
        local_dir=tmp_path / "local",
        transport=fake,
        settings=Settings(repeat=2, warmup=0),
        progress=said.append,
    )
    holder.append(session)
    run = session.execute(arts, inputs)
    assert run.interrupted
    left = [s for s in said if "runs/r1-board left on the device (the link was cut at the interrupt)" in s]
    assert left and "no agent had run" in left[0] and "what the agent saved" not in left[0], said


@pytest.mark.parametrize("reachable", [True, False])
def test_a_link_frozen_during_the_upload_is_reconnected_to_remove_the_run_folder(
    tmp_path, arts, inputs, reachable: bool
) -> None:
    """The upload froze and the link was cut (DeviceTimeout, push): the finish saw an unusable link and left the run
    folder the push had made on the device without a word. It now reaches the device again within connect_timeout
    and removes it; a device not reached again has the folder left on it said."""

    class FrozenUpload(FakeTransport):
        def put(self, local: Path, remote: str):  # type: ignore[no-untyped-def]
            if "froze" not in self.events:
                self.events.append("froze")
                self.sever("the upload's watchdog cut the link")
            return super().put(local, remote)

    fake = FrozenUpload(tmp_path / "device", default=agent(), reachable=reachable)
    said: list[object] = []
    run, _ = run_session(tmp_path, fake, arts, inputs, said.append)
    assert run.status == "failed" and "push: DeviceTimeout" in (run.error or ""), run.error
    if reachable:
        assert "reconnect" in fake.events and cleaned(fake), fake.events
        assert any("reconnected after the link was lost (push)" in str(s) for s in said), said
    else:
        assert not cleaned(fake)
        left = [str(s) for s in said if "runs/r1-board left on the device" in str(s)]
        assert left and "the link was lost (push)" in left[0], said


def test_a_thread_count_a_stopped_run_never_reached_is_recorded_as_not_run(tmp_path, arts, inputs) -> None:
    """An artifact measured at 1 thread when the run stopped (Ctrl-C, a lost link) lost its 2-thread row: it was
    neither stored nor marked not run, as every unmeasured artifact is."""

    def partway(fake: FakeTransport, call: Call) -> RunResult:
        if AGENT_REMOTE not in call.argv:
            return runs_here(fake, call)
        written = AgentResult(
            started_at="2026-01-01T00:00:00",
            facts_before=FACTS,
            measurements=[measurement("a", threads=1)],
            in_progress="a threads=2",
        )
        fake.path(call.argv[-1]).write_text(written.model_dump_json())
        return drops_link(pgid=99)(fake, call)

    fake = FakeTransport(tmp_path / "device", steps={1: partway})
    run, _ = run_session(tmp_path, fake, arts, inputs, threads=(1, 2))
    assert run.agent is not None
    rows = {(m.artifact, m.threads): (m.status, m.error_code) for m in run.agent.measurements}
    assert rows[("a", 1)] == ("ok", None) and rows[("a", 2)] == ("failed", ErrorCode.NOT_RUN)
    assert len(rows) == 6 and all(rows[(x, t)][0] == "failed" for x in "bc" for t in (1, 2))


def test_an_emulated_devices_upload_waits_while_the_host_is_timed(
    tmp_path, arts, inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An emulated device's upload runs qemu on this machine (its sshd, the sha256 checks): it overlapped the
    host's timing, which then read the machine as busy. The upload now waits for the host's timing stage, as
    the device's own timing always did; a real board's upload does not wait."""
    from edgekit.deploy.host_cpu import HostCpu
    from edgekit.target import load_target

    monkeypatch.setattr(session_module, "ensure_device", lambda target, log=None: target)
    gate, started = HostCpu(), threading.Event()
    pushed: dict[str, float] = {}
    timing_ends = 0.0

    def host_timing() -> None:
        nonlocal timing_ends
        with gate.hold(exclusive=True):
            started.set()
            time.sleep(0.5)
            timing_ends = time.monotonic()

    for target in (load_target("pi4-emu"), Target(name="board", host="board.invalid")):
        session = TargetSession(
            target,
            run_id="r1",
            local_dir=tmp_path / target.name,
            transport=FakeTransport(tmp_path / f"{target.name}-device", default=agent()),
            settings=Settings(repeat=2, warmup=0),
            host_cpu=gate,
        )  # type: ignore[arg-type]
        real_push = session.push
        monkeypatch.setattr(
            session,
            "push",
            lambda *a, name=target.name, push=real_push: (
                pushed.__setitem__(name, time.monotonic()),
                push(*a),
            ),
        )
        host = threading.Thread(target=host_timing)
        host.start()
        started.wait(5)
        assert session.execute(arts, inputs).status == "ok"
        host.join()
        started.clear()
        if target.emulated:
            assert pushed[target.name] >= timing_ends, "the emulated upload overlapped the host's timing"
        else:
            assert pushed[target.name] < timing_ends, "a real board's upload waited for the host"


def test_a_ctrl_c_after_a_target_finished_interrupts_nothing_of_it(tmp_path, arts, inputs) -> None:
    """deploy's Ctrl-C handler interrupts every session: one done (measured, pulled, cleaned up) was marked
    interrupted, and told it was 'finishing the cleanup'."""
    fake = FakeTransport(tmp_path / "device", default=agent())
    run, session = run_session(tmp_path, fake, arts, inputs)
    said: list[object] = []
    session.say = said.append  # type: ignore[method-assign]
    session.interrupt()
    assert run.status == "ok" and not run.interrupted and not session.interrupted and not said, said


def test_a_cleanup_that_never_ends_is_bounded_and_said(tmp_path, arts, inputs, monkeypatch) -> None:
    """The whole-run watchdog ends with the run: a pull or a cleanup that kept going (a trickling download,
    reconnects after a lost link) had no bound. They end by FINISH_S, and a run folder left is a warning."""
    monkeypatch.setattr(finish_module, "FINISH_S", 0.5)
    measured = agent()

    def device(fake: FakeTransport, call: Call) -> RunResult:
        return hangs()(fake, call) if call.argv[:2] == ["rm", "-rf"] else measured(fake, call)

    said: list[object] = []
    start = time.monotonic()
    run, _ = run_session(
        tmp_path, FakeTransport(tmp_path / "device", default=device), arts, inputs, said.append
    )
    assert time.monotonic() - start < 30
    assert run.status == "ok" and statuses(run) == dict.fromkeys("abc", ("ok", None)), run.error
    warning = next(str(s) for s in said if "warning: cleanup" in str(s))
    assert "runs/r1-board left on the device" in warning and "deadline (0.5 s)" in warning, warning
