"""Every target of a deploy measured at once, one thread and one TargetSession each: the host waits until every
device is reached (and is skipped when all failed), a bug in one target's thread becomes that target's error, and a
Ctrl-C stops every device's agent (bounded) and keeps what was measured, estimates of what was counted included.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path

from edgekit.deploy.answers import attach_estimates
from edgekit.deploy.plan import Progress, TargetPlan
from edgekit.deploy.provenance import now
from edgekit.deploy.request import AgentArtifact
from edgekit.deploy.result_file import ResultFile
from edgekit.deploy.session import HostCpu, TargetSession
from edgekit.errors import Interrupted, OutputFileError
from edgekit.results import TargetRun
from edgekit.runtimes import host_only_artifact
from edgekit.target import HOST_COLUMN

# after a Ctrl-C, how long a target still connecting is waited for (an SSH connect cannot be interrupted; its
# connect_timeout may be minutes, and nothing was sent there yet)
CONNECTING_GRACE_S = 2.0


def run_targets(
    plans: list[TargetPlan],
    arts: list[AgentArtifact],
    run_id: str,
    local_root: Path,
    say: Progress,
    writer: ResultFile,
    stop: threading.Event | None = None,
) -> list[TargetRun]:
    host_cpu = HostCpu()
    sessions = [
        TargetSession(
            p.target,
            run_id=run_id,
            local_dir=local_root / p.target.name,
            settings=p.settings,
            progress=say,
            host_cpu=host_cpu,
            on_update=lambda _r: writer.update(),
        )
        for p in plans
    ]
    for session, plan in zip(sessions, plans):
        session.run.benchmark = plan.settings.as_dict()
        if session.target.name == HOST_COLUMN:
            session.before_run = partial(_devices_reached, session, [s for s in sessions if s is not session])
    writer.result.runs = [s.run for s in sessions]
    threads = [
        threading.Thread(
            target=_guarded,
            args=(s, sent_to(arts, s.target.name), p.inputs),
            name=f"deploy-{s.target.name}",
            daemon=True,
        )
        for s, p in zip(sessions, plans)
    ]  # daemon: Ctrl-C ends at once
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
                if stop is not None and stop.is_set():  # asked from another thread: as a Ctrl-C here
                    raise KeyboardInterrupt
    except KeyboardInterrupt:  # Ctrl-C: stop every device's agent (bounded), keep what was measured
        say("interrupted (Ctrl-C or SIGTERM): stopping the agents, keeping what was measured")
        for s in sessions:
            s.interrupt()
        deadline = time.monotonic() + 60
        try:
            for s in (
                sessions
            ):  # not Thread.join: after a join interrupted by Ctrl-C, CPython 3.11's join returns at once
                wait = max(0.0, deadline - time.monotonic())
                if (
                    s.connecting
                ):  # nothing sent yet, nothing to fetch or remove: not a minute of connect_timeout
                    wait = min(wait, CONNECTING_GRACE_S)
                if not s.finished.wait(timeout=wait) and s.connecting:
                    s.fail("connect: interrupted (Ctrl-C or SIGTERM) while connecting; nothing was sent")
        except KeyboardInterrupt:  # pressed again, later (edgekit.cli._Stop): stop waiting, keep what is here
            say("interrupted again: not waiting for the agents any longer; keeping what was measured")
        try:  # what was counted before the Ctrl-C still gets its board estimate: from the counts made, none new
            attach_estimates(writer.result, {s.target.name: s.target for s in sessions}, say, counting=False)
        except KeyboardInterrupt:
            say("interrupted again: the estimates of what was counted are left out")
        writer.result.finished_at = now()
        try:
            writer.write()
        except OutputFileError as failed:  # a full disk: the CLI still records the measurements in the store
            writer.discard()
            say(f"--json not written: {failed}")
        exc = Interrupted(
            "interrupted (Ctrl-C or SIGTERM); what was measured is kept", where="edgekit deploy"
        )
        exc.result = writer.result  # type: ignore[attr-defined]
        raise exc from None
    return [s.run for s in sessions]


def _devices_reached(host: TargetSession, devices: list[TargetSession]) -> str | None:
    """Fail fast: the host waits until every device is connected (or failed); when every device failed before
    measuring, the host is not measured (its figures are only the reference for the devices')."""
    for device in devices:
        while not device.reached.wait(0.5):
            if host.interrupted:
                return None
    failed = [d.target.name for d in devices if d.run.error]
    if devices and len(failed) == len(devices):
        return (
            f"every target failed before measuring ({', '.join(failed)}): the host, only their reference, was "
            "skipped (nothing is wrong with it)"
        )
    return None


def sent_to(arts: list[AgentArtifact], target: str) -> list[AgentArtifact]:
    """The artifacts a target measures: a host-only runtime's (OpenVINO) on the host alone."""
    return [a for a in arts if target == HOST_COLUMN or not host_only_artifact(a.format.value)]


def _guarded(session: TargetSession, arts: list[AgentArtifact], inputs: Path) -> None:
    """A bug in one target's thread must not take the others down: it becomes that target's error."""
    try:
        session.execute(arts, inputs)
    except Exception as exc:  # noqa: BLE001 - recorded as data
        session.fail(f"{session._stage}: unexpected {type(exc).__name__}: {exc}")
    finally:
        session.finished.set()
