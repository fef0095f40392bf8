"""Running the agent on one target's device and surviving its failures: each invocation's request, its
streamed measurements, its result file folded into the target's, and what a failure leaves recorded.

The agent writes its result after every measurement. If it dies (a runtime's SIGSEGV, an OOM kill), the
result names the measurement in progress: that artifact is recorded as failed with the exit status and the
agent's last words, and `invoke` returns the artifacts not yet measured, for the session to start it again.

Lost links lose nothing the device measured: the agent also streams each measurement on stdout; when the link
drops (ConnectionLost) or the device stops answering (DeviceTimeout) while it runs, `recover` reconnects once
(bounded by connect_timeout), pulls the result file and stops what is left of the agent; when the device cannot
be reached, the streamed measurements are kept. An agent stopped by a full disk is a DeviceDiskFull, and every
artifact a failure left unmeasured is recorded as not run, with the reason.

A result names each artifact's outputs file, which the session downloads to the same name under its own folder:
any name but the one the agent gives (contract.outputs_file_name: outputs/<artifact>.t<threads>.npz) is
refused, nothing is downloaded for it, its timings are kept and the target ends in an AgentError naming the field.
"""

from __future__ import annotations

import json
import shlex
import signal
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from edgekit.agent.contract import OUTPUTS_DIR, ErrorCode, outputs_file_name
from edgekit.deploy import counting
from edgekit.deploy.request import (
    AGENT_REMOTE,
    AgentArtifact,
    Settings,
    build_request,
    inputs_remote,
    runtime_for,
)
from edgekit.errors import (
    AgentError,
    ConnectionLost,
    DeviceDiskFull,
    DeviceTimeout,
    Interrupted,
    RemoteTimeout,
    TransportError,
)
from edgekit.progress import Measured
from edgekit.results import (
    NOT_RUN_INTERRUPTED,
    AgentResult,
    DeviceFacts,
    Measurement,
    TargetRun,
    unknown_fields,
)
from edgekit.target import Target, python_argv
from edgekit.transport import Transport

Progress = Callable[[str], None]
EXIT_LOCKED = 3
EXIT_DEADLINE = 4  # the agent stopped itself at the request's deadline_s
# the agent's own time limit is the host's for the run plus this: a host still there stops it first, always
AGENT_DEADLINE_GRACE_S = 120.0
_STREAM = "EDGEKIT_"  # the agent's stdout lines: EDGEKIT_START {...}, EDGEKIT_MEASUREMENT {...}


class AgentRunner:
    """The agent's invocations for one target, recorded into `run` (the session's TargetRun): request-<n>.json
    and result-<n>.json per invocation, in `local_dir` and the device's `run_dir`."""

    def __init__(
        self,
        target: Target,
        run: TargetRun,
        *,
        settings: Settings,
        local_dir: Path,
        run_dir: str,
        deadline: float,
        say: Progress,
        on_update: Callable[[TargetRun], None],
        is_interrupted: Callable[[], bool],
    ) -> None:
        self.target = target  # the session sets the place a lab target got, once its device is ensured
        self.run = run
        self.settings = settings
        self.local_dir = local_dir
        self.run_dir = run_dir
        self.deadline = (
            deadline  # time.monotonic() of the whole-run deadline: each invocation gets what is left
        )
        self.say = say
        self.on_update = on_update
        self.is_interrupted = is_interrupted  # Ctrl-C: no reconnect after a lost link
        self.invocations = 0
        self.refused: list[str] = []  # outputs_file values a result named that the agent never writes
        self.refused_said = False  # raised as this target's AgentError
        self.read_failure = ""  # why the last result file could not be read (fetch)
        # remote result files the agent wrote that were never read (a failed download, a result edgekit refused):
        # the session leaves their run folder on the device instead of removing it
        self.unread: dict[str, str] = {}

    def invoke(
        self, transport: Transport, python: str, runtime: str, arts: list[AgentArtifact], inputs: Path
    ) -> list[AgentArtifact]:
        """Run the agent once; return the artifacts still to measure after a crash (empty when done)."""
        n = self.invocations
        self.invocations += 1
        request, result = f"{self.run_dir}/request-{n}.json", f"{self.run_dir}/result-{n}.json"
        timeout = max(1.0, min(self.settings.timeout_s, self.deadline - time.monotonic()))
        body = build_request(arts, self.settings, inputs_remote(inputs), self.run_dir, runtime)
        body.affinity = self.target.affinity  # the agent pins itself (and the runtime's threads) there
        # a bound of its own, for when this host is gone: it cannot hold the device lock for hours
        body.deadline_s = round(timeout + AGENT_DEADLINE_GRACE_S, 1)
        local_req = self.local_dir / f"request-{n}.json"
        local_req.parent.mkdir(parents=True, exist_ok=True)
        local_req.write_text(json.dumps(body.model_dump(), indent=1))
        transport.put(local_req, request)
        self.say(
            f"{self.target.name}: agent measuring {', '.join(a.id for a in arts)} "
            f"(threads {list(self.settings.threads)}, repeat {self.settings.repeat})"
        )
        argv = [*python_argv(python), AGENT_REMOTE, request, result]
        try:
            done = transport.run(
                argv, timeout=timeout, env=self.counting_env(), on_output=self.measured_lines()
            )
        except Interrupted as exc:  # what the device wrote, when the link still works
            self.merge(self.try_fetch(transport, result, n) or self.streamed(_stdout(exc)))
            for art in self.incomplete(arts):
                self.record_failed(art, NOT_RUN_INTERRUPTED, ErrorCode.INTERRUPTED)
            raise
        except (DeviceTimeout, ConnectionLost) as exc:
            self.merge(self.recover(transport, exc, result, n) or self.streamed(_stdout(exc)))
            for art in self.incomplete(arts):
                self.record_failed(
                    art, f"not run: {type(exc).__name__} ({exc.stage or 'run'})", ErrorCode.NOT_RUN
                )
            raise
        except RemoteTimeout as exc:
            self.merge(self.try_fetch(transport, result, n) or self.streamed(_stdout(exc)))
            for art in self.incomplete(arts):
                self.record_failed(art, f"timed out after {timeout:g} s", ErrorCode.TIMEOUT)
            raise AgentError(
                str(exc), where=self.target.name, hint=f"raise {self.timeout_knob()}, or lower repeat/threads"
            ) from None
        try:
            part = self.fetch(transport, result, n, started=_started(done.stdout))
        except (DeviceTimeout, ConnectionLost) as exc:  # the link went while the result was downloaded
            part = self.recover(transport, exc, result, n)
            if part is None:
                self.merge(self.streamed(done.stdout))
                for art in self.incomplete(arts):
                    self.record_failed(
                        art, f"not run: {type(exc).__name__} ({exc.stage or 'download'})", ErrorCode.NOT_RUN
                    )
                raise
        # a result file that cannot be read (refused, damaged, a failed download): what the agent streamed
        kept = self.streamed(done.stdout) if part is None else None
        self.merge(part if part is not None else kept)
        self.raise_refused()
        if done.ok and part is not None and part.finished_at:
            return []
        if "No space left on device" in done.stderr:  # restarting cannot help: name it, record the rest
            free = transport.free_bytes(".")
            raise DeviceDiskFull(
                f"the device's disk filled up while the agent ran ({_tail(done.stderr, 1)}); "
                f"{'?' if free is None else f'{free / 1e6:.2f}'} MB free now",
                free=free,
                where=self.target.name,
                hint="free space on the device, or --set work_dir=PATH",
            )
        if done.exit_status == EXIT_DEADLINE:  # it outlived this run's time limit: a timeout, not a crash
            for art in self.incomplete(arts):
                self.record_failed(
                    art, f"timed out: the agent stopped itself ({_tail(done.stderr, 1)})", ErrorCode.TIMEOUT
                )
            raise AgentError(
                f"the agent stopped itself at its deadline ({body.deadline_s:g} s): {_tail(done.stderr)}",
                where=self.target.name,
                hint=f"raise {self.timeout_knob()}, or lower repeat/threads",
            )
        if part is None:
            raise self.unreadable(
                result, done.exit_status, done.stderr, len(kept.measurements) if kept else 0
            )
        if part.error:
            raise AgentError(
                part.error,
                where=self.target.name,
                hint="wait for the other benchmark, or remove a stale lock holder"
                if done.exit_status == EXIT_LOCKED
                else None,
            )
        return self.after_crash(arts, part, done.exit_status, done.stderr)

    def timeout_knob(self) -> str:
        """What sets this run's time limit: bench has no recipe, its runs (runs/bench-...) take --timeout."""
        return "--timeout" if Path(self.run_dir).name.startswith("bench-") else "benchmark.timeout_s"

    def unreadable(self, remote: str, status: int, stderr: str, kept: int) -> AgentError:
        """The agent ended but its result file could not be read: what failed, and what was kept instead (the
        `kept` measurements it streamed); 'before measuring anything' only when it exited in error having
        streamed none."""
        left = f"; {self.run_dir} is left on the device" if remote in self.unread else ""
        exited = f"agent exited with {_describe_status(status)}"
        if status != 0 and not kept:
            return AgentError(
                f"{exited}: {_tail(stderr)} (before measuring anything; {self.read_failure}){left}",
                where=self.target.name,
                hint=f"run `{shlex.join(python_argv(self.target.python))} -c 'import numpy'` on the device to "
                "check its python and runtimes",
            )
        said = "" if status == 0 else f": {_tail(stderr)}"
        return AgentError(
            f"{exited}{said}, but its result file could not be read: {self.read_failure}; kept the {kept} "
            f"measurements it streamed (their outputs were not pulled){left}",
            where=self.target.name,
            hint="edgekit pushes its own agent.py every run: a result it refuses was changed on the device, or "
            "written by another edgekit version sharing the work dir; a failed download is the link or the "
            "device's disk",
        )

    def measured_lines(self) -> Callable[[str], None]:
        """Reads the agent's stdout as it arrives and says each measurement it streams (the live progress
        counts them and estimates the time left from them)."""
        pending = [""]

        def feed(text: str) -> None:
            *lines, pending[0] = (pending[0] + text).split("\n")
            for line in lines:
                kind, _, body = line.partition(" ")
                if kind != "EDGEKIT_MEASUREMENT":  # as agent.stream() writes it
                    continue
                try:
                    m = json.loads(body)
                    artifact, threads, status = str(m["artifact"]), int(m["threads"]), str(m["status"])
                except (ValueError, KeyError, TypeError):
                    continue
                p50 = m.get("p50_ms")
                figure = (
                    f", p50 {p50:.4g} ms{' (emulated wall time)' if self.target.emulated else ''}"
                    if isinstance(p50, (int, float))
                    else ""
                )
                self.say(
                    Measured(
                        self.target.name,
                        artifact,
                        threads,
                        status,
                        f"{self.target.name}: {artifact} x{threads} {status}{figure}",
                    )
                )

        return feed

    def after_crash(
        self, arts: list[AgentArtifact], part: AgentResult, status: int, stderr: str
    ) -> list[AgentArtifact]:
        why = f"agent exited with {_describe_status(status)}: {_tail(stderr)}"
        if not part.in_progress and part.measurements:
            self.say(f"{self.target.name}: agent died between measurements ({why}); restarting for the rest")
            return self.unmeasured(arts)
        if not part.in_progress:
            raise AgentError(
                why + " (before measuring anything)",
                where=self.target.name,
                hint=f"run `{shlex.join(python_argv(self.target.python))} -c 'import numpy'` on the device to "
                "check its python and runtimes",
            )
        crashed = part.in_progress.split(" threads=")[0]
        self.say(f"{self.target.name}: agent crashed in {part.in_progress}; restarting for the rest")
        for art in arts:
            if art.id == crashed:
                self.record_failed(
                    art, f"crashed while measuring ({part.in_progress}): {why}", ErrorCode.CRASH
                )
        return [a for a in self.unmeasured(arts) if a.id != crashed]

    def recover(
        self, transport: Transport, exc: TransportError, remote_result: str, n: int
    ) -> AgentResult | None:
        """After a lost link: reconnect once, stop what is left of the agent, read what the device wrote; None
        when the device cannot be reached or its result read (the caller keeps what the agent streamed)."""
        if self.is_interrupted() or not transport.reconnect():
            self.read_failure = f"the device could not be reached again after {type(exc).__name__}"
            self.unread[remote_result] = self.read_failure
            return None
        self.say(f"{self.target.name}: reconnected after {type(exc).__name__}; pulling what was measured")
        pgid = getattr(exc, "pgid", None)
        if pgid:
            transport.kill_group(pgid)
        return self.try_fetch(transport, remote_result, n)

    def streamed(self, stdout: str) -> AgentResult | None:
        """The measurements the agent printed (one JSON line each) before the link dropped, or when its result
        file could not be read."""
        start: dict[str, Any] | None = None
        measured: list[Measurement] = []
        for line in stdout.splitlines():
            kind, _, body = line.partition(" ")
            try:
                if kind == f"{_STREAM}START":
                    start = json.loads(body)
                elif kind == f"{_STREAM}MEASUREMENT":
                    measured.append(Measurement.model_validate(json.loads(body)))
            except (ValueError, ValidationError):
                continue  # a line cut by the drop
        if start is None:
            return None
        try:
            facts = DeviceFacts.model_validate(start.get("facts_before"))
        except ValidationError:
            return None
        kept = [m.model_copy(update={"outputs_file": None}) for m in measured]  # outputs stayed on the device
        self.say(f"{self.target.name}: {self.read_failure}; kept {len(kept)} streamed measurements")
        return AgentResult(started_at=str(start.get("started_at", "")), facts_before=facts, measurements=kept)

    def record_not_run(
        self, arts: list[AgentArtifact], why: str, code: ErrorCode = ErrorCode.NOT_RUN
    ) -> None:
        """Every artifact a failure left unmeasured, recorded as not run with the reason (when the agent ran;
        before it, the target's error says why nothing ran)."""
        if self.run.agent is None:
            self.run.error = f"{self.run.error}; not run: {', '.join(a.id for a in arts)}"
        for art in self.incomplete(arts):
            self.record_failed(art, f"not run: {why}", code)
        self.on_update(self.run)

    def counting_env(self) -> dict[str, str] | None:
        """The counting plugin's environment for an emulated target (deploy/counting.py); None otherwise."""
        return counting.plugin_env(self.target, self.local_dir)

    def time_blocks(self) -> None:
        """After the agent: llvm-mca's cycles of the one-thread counted windows (deploy/counting.py)."""
        counting.time_blocks(self.run, self.target, self.local_dir, self.say)

    def drop_blocks(self) -> None:
        counting.drop_blocks(self.local_dir)

    def unmeasured(self, arts: list[AgentArtifact]) -> list[AgentArtifact]:
        """The artifacts with no measurement at all (what a restarted agent measures)."""
        done = {m.artifact for m in self.run.agent.measurements} if self.run.agent else set()
        return [a for a in arts if a.id not in done]

    def incomplete(self, arts: list[AgentArtifact]) -> list[AgentArtifact]:
        """The artifacts missing a measurement at some thread count (what a stopped run records as not run: one
        measured at 1 thread but stopped before 2 lost its 2-thread row)."""
        done = {(m.artifact, m.threads) for m in self.run.agent.measurements} if self.run.agent else set()
        return [a for a in arts if any((a.id, t) not in done for t in self.settings.threads)]

    def record_failed(self, art: AgentArtifact, error: str, code: ErrorCode) -> None:
        """A failed Measurement for every thread count of `art` not measured yet, with why (`code`)."""
        if self.run.agent is None:
            return
        have = {(m.artifact, m.threads) for m in self.run.agent.measurements}
        runtime = runtime_for(art.format, self.target.runtimes)
        for threads in self.settings.threads:
            if (art.id, threads) not in have:
                self.run.agent.measurements.append(
                    Measurement(
                        artifact=art.id,
                        format=art.format.value,
                        runtime=runtime,
                        threads=threads,
                        status="failed",
                        error=error,
                        error_code=code,
                    )
                )

    def fetch(self, transport: Transport, remote: str, n: int, *, started: bool = True) -> AgentResult | None:
        """The invocation's result file, downloaded and read; None when it cannot be, with why in read_failure
        (and in `unread` when the agent had written it: `started`, it printed its start line). A lost link
        (ConnectionLost, DeviceTimeout) is raised, for the caller's reconnect."""
        local = self.local_dir / f"result-{n}.json"
        name = PurePosixPath(remote).name
        written = started
        try:
            transport.get(remote, local)
            written = True
            result = AgentResult.model_validate_json(local.read_bytes())
        except (ConnectionLost, DeviceTimeout) as exc:
            self.read_failure = f"the download of {name} failed: {type(exc).__name__}: {exc}"
            if written:
                self.unread[remote] = self.read_failure
            raise
        except ValidationError as exc:
            self.read_failure = f"{name} is not a result edgekit reads ({_first_error(exc)})"
        except (TransportError, OSError) as exc:
            self.read_failure = f"{name} could not be {'read' if written else 'downloaded'} ({exc})"
        else:
            self.unread.pop(remote, None)
            return self.checked(result, name)
        if written:
            self.unread[remote] = self.read_failure
        return None

    def try_fetch(self, transport: Transport, remote: str, n: int) -> AgentResult | None:
        """fetch, where a lost link is one more reason the result could not be read (after a failure already)."""
        try:
            return self.fetch(transport, remote, n)
        except (ConnectionLost, DeviceTimeout):
            return None

    def checked(self, result: AgentResult, name: str) -> AgentResult:
        """A result read: undeclared fields said, outputs files other than the agent's own refused."""
        if unknown := unknown_fields(result):  # kept (and stored), but the agent and edgekit are out of step
            self.say(
                f"{self.target.name}: warning: the agent wrote fields edgekit does not declare: "
                f"{', '.join(unknown[:5])}"
            )
        self.refuse_foreign_outputs(result, name)
        return result

    def refuse_foreign_outputs(self, result: AgentResult, name: str) -> None:
        """Every outputs_file but the agent's own name for that measurement (or one that would still land outside
        local_dir) is dropped before anything is downloaded, and said (raise_refused); the timings stay."""
        for i, m in enumerate(result.measurements):
            if m.outputs_file is None:
                continue
            expected = outputs_file_name(OUTPUTS_DIR, m.artifact, m.threads)
            if m.outputs_file == expected and lies_under(self.local_dir / expected, self.local_dir):
                continue
            self.refused.append(
                f"{name}: measurements[{i}].outputs_file ({m.artifact} at {m.threads} threads) is "
                f"{m.outputs_file[:200]!r}, not the agent's {expected!r}"
            )
            m.outputs_file = None

    def raise_refused(self) -> None:
        """The refused outputs_file values as this target's AgentError (the measurements are merged already)."""
        error = self.take_refusal()
        if error is not None:
            raise error

    def take_refusal(self) -> AgentError | None:
        """The AgentError naming every refused outputs_file, once (the session says it when a run ended in
        another error first: a timeout, a lost link, Ctrl-C)."""
        if not self.refused or self.refused_said:
            return None
        self.refused_said = True
        return AgentError(
            f"the device's result names an outputs file edgekit's agent never writes: {'; '.join(self.refused)}; "
            "nothing was downloaded for it (its timings are kept, its outputs are not compared)",
            where=self.target.name,
            hint="the agent's result was altered on the device: check who else can write to its work dir",
        )

    def merge(self, part: AgentResult | None) -> None:
        """Fold one invocation's result into the target's: facts before from the first, after from the last."""
        if part is None:
            return
        agent = self.run.agent
        if part.facts_before is not None and part.facts_before.emulated:
            # the device says it is emulated (a lab place or a board file pointing at one): not board times
            self.run.emulated = True
        if agent is None:
            self.run.agent = part.model_copy(deep=True)
            self.run.agent.request = {"requests": self._requests()}
        else:
            agent.measurements.extend(part.measurements)
            agent.facts_after = part.facts_after or agent.facts_after
            agent.finished_at = part.finished_at
            agent.in_progress = part.in_progress
            agent.request = {"requests": self._requests()}
        (self.local_dir / "result.json").write_text(self.run.agent.model_dump_json(indent=1))  # type: ignore[union-attr]
        self.on_update(self.run)

    def _requests(self) -> list[dict[str, Any]]:
        files = [self.local_dir / f"request-{n}.json" for n in range(self.invocations)]
        return [json.loads(p.read_text()) for p in files if p.is_file()]


def _started(stdout: str) -> bool:
    """Whether the agent printed its start line: it writes its result file first, so the file exists."""
    return any(line.startswith(f"{_STREAM}START ") for line in stdout.splitlines())


def _stdout(exc: BaseException) -> str:
    """What a stopped command had printed (the transports attach it to their errors)."""
    return str(getattr(exc, "stdout", "") or "")


def _first_error(exc: ValidationError) -> str:
    """A pydantic error as `field.path: message`, with how many more there are."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "the file"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {first['msg']}{more}"


def lies_under(path: Path, folder: Path) -> bool:
    """Whether `path`, resolved (symlinks, `..`), is inside `folder`."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def _describe_status(status: int) -> str:
    if status == -1:
        return "no exit status (killed by a signal)"
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    if status > 128:
        try:
            return f"status {status} ({signal.Signals(status - 128).name}?)"
        except ValueError:
            pass
    return f"status {status}"


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "no output"
