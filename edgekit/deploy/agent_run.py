"""Running the agent on one target's device and surviving its failures: each invocation's request, its
streamed measurements, its result file folded into the target's, and what a failure leaves recorded.

The agent writes its result after every measurement. If it dies (a runtime's SIGSEGV, an OOM kill), the
result names the measurement in progress: that artifact is recorded as failed with the exit status and the
agent's last words, and `invoke` returns the artifacts not yet measured at every thread count (each asking for
the ones it misses), for the session to start it again.

Lost links lose nothing the device measured: the agent also streams each measurement on stdout; when the link
drops (ConnectionLost) or the device stops answering (DeviceTimeout) while it runs, `recover` reconnects (trying
again until connect_timeout has passed), pulls the result file and stops what is left of the agent; when the device cannot
be reached, the streamed measurements are kept. An agent stopped by a full disk is a DeviceDiskFull, and every
artifact a failure left unmeasured is recorded as not run, with the reason.

Reading the result files and the stream (and refusing an outputs file the agent never writes) is the
ResultReader's (deploy/agent_result.py); folding each result into the target's and recording what is left
unmeasured is RunRecorder's (deploy/run_recorder.py), which AgentRunner extends.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

from edgekit.agent.contract import (
    EXIT_BAD_REQUEST,
    EXIT_CANNOT_WRITE,
    EXIT_DEADLINE,
    EXIT_LOCKED,
    ErrorCode,
)
from edgekit.deploy import counting
from edgekit.deploy.agent_death import (
    BadAffinity,
    before_measuring,
    python_not_found,
    without_shell_echo,
)
from edgekit.deploy.agent_result import Progress, ResultReader, measured_lines, started
from edgekit.deploy.agent_waiting import waiting_lines
from edgekit.deploy.request import (
    AGENT_REMOTE,
    AgentArtifact,
    Settings,
    build_request,
    inputs_remote,
)
from edgekit.deploy.run_recorder import RunRecorder
from edgekit.errors import (
    AgentError,
    ConnectionLost,
    DeviceDiskFull,
    DeviceTimeout,
    Interrupted,
    RemoteTimeout,
    TransportError,
)
from edgekit.results import (
    NOT_RUN_INTERRUPTED,
    AgentResult,
    TargetRun,
)
from edgekit.target import Target, python_argv
from edgekit.transport import RunResult, Transport

# the agent's own time limit is the host's for the run plus this: a host still there stops it first, always
AGENT_DEADLINE_GRACE_S = 120.0


class AgentRunner(RunRecorder):
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
        self._target = target
        self.run = run
        self.settings = settings
        self.local_dir = local_dir
        self.run_dir = run_dir
        # time.monotonic() of the whole-run deadline: each invocation gets what is left
        self.deadline = deadline
        self.say = say
        self.on_update = on_update
        self.is_interrupted = is_interrupted  # Ctrl-C: no reconnect after a lost link
        self.invocations = 0
        # the lost link (its error's class) recover() could not get past: the device not reached again in time
        self.unreached: str | None = None
        self.reader = ResultReader(target, local_dir, say)

    @property
    def target(self) -> Target:
        return self._target

    @target.setter
    def target(self, target: Target) -> None:
        """The session sets the place a lab target got, once its device is ensured: the reader names it too."""
        self._target = target
        if hasattr(self, "reader"):
            self.reader.target = target

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
        deadline_s = body.deadline_s = round(timeout + AGENT_DEADLINE_GRACE_S, 1)
        local_req = self.local_dir / f"request-{n}.json"
        local_req.parent.mkdir(parents=True, exist_ok=True)
        local_req.write_text(json.dumps(body.model_dump(), indent=1))
        transport.put(local_req, request)
        self.say(
            f"{self.target.name}: agent measuring {_listed(arts)} "
            f"(threads {list(self.settings.threads)}, repeat {self.settings.repeat})"
        )
        argv = [*python_argv(python), AGENT_REMOTE, request, result]
        try:
            done = transport.run(
                argv, timeout=timeout, env=self.counting_env(), on_output=self.measured_lines()
            )
        except Interrupted as exc:  # what the device wrote, when the link still works
            self.merge(self.reader.or_streamed(self.reader.try_fetch(transport, result, n), _stdout(exc)))
            for art in self.incomplete(arts):
                self.record_failed(art, NOT_RUN_INTERRUPTED, ErrorCode.INTERRUPTED)
            raise
        except (DeviceTimeout, ConnectionLost) as exc:
            self.merge(self.reader.or_streamed(self.recover(transport, exc, result, n), _stdout(exc)))
            for art in self.incomplete(arts):
                self.record_failed(
                    art, f"not run: {type(exc).__name__} ({exc.stage or 'run'})", ErrorCode.NOT_RUN
                )
            raise
        except RemoteTimeout as exc:
            self.merge(self.reader.or_streamed(self.reader.try_fetch(transport, result, n), _stdout(exc)))
            for art in self.incomplete(arts):
                self.record_failed(art, f"timed out after {timeout:g} s", ErrorCode.TIMEOUT)
            raise AgentError(
                str(exc), where=self.target.name, hint=f"raise {self.timeout_knob()}, or lower repeat/threads"
            ) from None
        not_found = python_not_found(self.target, python, done.exit_status, done.stdout, done.stderr)
        if not_found is not None:  # no agent ran: no result file to download
            raise not_found
        try:
            part = self.reader.fetch(transport, result, n, started=started(done.stdout))
        except (DeviceTimeout, ConnectionLost) as exc:  # the link went while the result was downloaded
            part = self.recover(transport, exc, result, n)
            if part is None:
                self.merge(self.reader.streamed(done.stdout))
                for art in self.incomplete(arts):
                    self.record_failed(
                        art, f"not run: {type(exc).__name__} ({exc.stage or 'download'})", ErrorCode.NOT_RUN
                    )
                raise
        # a result file that cannot be read (refused, damaged, a failed download): what the agent streamed
        kept = self.reader.streamed(done.stdout) if part is None else None
        self.merge(part if part is not None else kept)
        self.reader.raise_refused()
        if done.ok and part is not None and part.finished_at:
            return []
        crashed = self._raise_for_exit(transport, done, part, kept, arts, result, deadline_s)
        return self.after_crash(arts, crashed, done.exit_status, done.stderr)

    def _raise_for_exit(
        self,
        transport: Transport,
        done: RunResult,
        part: AgentResult | None,
        kept: AgentResult | None,
        arts: list[AgentArtifact],
        result: str,
        deadline_s: float,
    ) -> AgentResult:
        """The agent ended without finishing: raise what a restart cannot mend (the device's disk full, a work dir
        it cannot write, its own deadline, a result file not read, a bad affinity, its own error), recording the
        artifacts it left unmeasured; for a crash, which invoke restarts after, its result file's part."""
        if "No space left on device" in done.stderr:  # restarting cannot help: name it, record the rest
            free = transport.free_bytes(".")
            raise DeviceDiskFull(
                f"the device's disk filled up while the agent ran ({_tail(done.stderr, 1)}); "
                f"{'?' if free is None else f'{free / 1e6:.2f}'} MB free now",
                free=free,
                where=self.target.name,
                hint="free space on the device, or --set work_dir=PATH",
            )
        if (
            done.exit_status == EXIT_CANNOT_WRITE
        ):  # restarting would fail the same way: name it, record the rest
            for art in self.incomplete(arts):
                self.record_failed(
                    art,
                    f"not run: the agent could not write on the device ({_tail(done.stderr, 1)})",
                    ErrorCode.NOT_RUN,
                )
            raise AgentError(
                f"the agent could not write on the device: {_tail(done.stderr, 1)}",
                where=self.target.name,
                hint="check the work dir's permissions and its disk on the device (dmesg for I/O errors), or "
                "--set work_dir=PATH",
            )
        if done.exit_status == EXIT_DEADLINE:  # it outlived this run's time limit: a timeout, not a crash
            for art in self.incomplete(arts):
                self.record_failed(
                    art, f"timed out: the agent stopped itself ({_tail(done.stderr, 1)})", ErrorCode.TIMEOUT
                )
            raise AgentError(
                f"the agent stopped itself at its deadline ({deadline_s:g} s): {_tail(done.stderr)}",
                where=self.target.name,
                hint=f"raise {self.timeout_knob()}, or lower repeat/threads",
            )
        if part is None:
            raise self.unreadable(
                result, done.exit_status, done.stderr, len(kept.measurements) if kept else 0
            )
        if part.error and done.exit_status == EXIT_BAD_REQUEST and part.error.startswith("bad affinity "):
            raise BadAffinity(
                part.error,
                where=self.target.name,
                hint="set the target's affinity to cpus the device has online (named above), or to big, little "
                "or all",
            )
        if part.error:
            raise AgentError(
                part.error,
                where=self.target.name,
                hint="wait for the other benchmark, or remove a stale lock holder"
                if done.exit_status == EXIT_LOCKED
                else None,
            )
        return part

    def timeout_knob(self) -> str:
        """What sets this run's time limit: bench has no recipe, its runs (runs/bench-...) take --timeout."""
        return "--timeout" if Path(self.run_dir).name.startswith("bench-") else "benchmark.timeout_s"

    def unreadable(self, remote: str, status: int, stderr: str, kept: int) -> AgentError:
        """The agent ended but its result file could not be read: what failed, and what was kept instead (the
        `kept` measurements it streamed); 'before measuring anything' only when it exited in error having
        streamed none."""
        left = f"; {self.run_dir} is left on the device" if remote in self.reader.unread else ""
        exited = f"agent exited with {_describe_status(status)}"
        if status != 0 and not kept:
            said, detail = f"{exited}: {_tail(stderr)}", f"; {self.reader.read_failure}"
            return before_measuring(self.target, status, stderr, said, detail, left)
        said = "" if status == 0 else f": {_tail(stderr)}"
        return AgentError(
            f"{exited}{said}, but its result file could not be read: {self.reader.read_failure}; kept the {kept} "
            f"measurements it streamed (their outputs were not pulled){left}",
            where=self.target.name,
            hint="edgekit pushes its own agent.py every run: a result it refuses was changed on the device, or "
            "written by another edgekit version sharing the work dir; a failed download is the link or the "
            "device's disk",
        )

    def measured_lines(self) -> Callable[[str], None]:
        """The agent's stdout reader that says each measurement it streams and each wait for the device's lock."""
        return waiting_lines(self.target, self.say, measured_lines(self.target, self.say))

    def after_crash(
        self, arts: list[AgentArtifact], part: AgentResult, status: int, stderr: str
    ) -> list[AgentArtifact]:
        why = f"agent exited with {_describe_status(status)}: {_tail(stderr)}"
        if not part.in_progress and part.measurements:
            rest = self.still_to_measure(arts)
            self.say(
                f"{self.target.name}: agent died between measurements ({why}); "
                + (f"restarting for the rest: {_listed(rest)}" if rest else "nothing left to measure")
            )
            return rest
        if not part.in_progress:
            raise before_measuring(self.target, status, stderr, why)
        crashed = part.in_progress.split(" threads=")[0]
        for art in arts:
            if art.id == crashed:
                self.record_failed(
                    art, f"crashed while measuring ({part.in_progress}): {why}", ErrorCode.CRASH
                )
        rest = [a for a in self.still_to_measure(arts) if a.id != crashed]
        self.say(
            f"{self.target.name}: agent crashed in {part.in_progress}; "
            + (
                f"restarting for the rest: {_listed(rest)}"
                if rest
                else "not restarting: nothing left to measure"
            )
        )
        return rest

    def recover(
        self, transport: Transport, exc: TransportError, remote_result: str, n: int
    ) -> AgentResult | None:
        """After a lost link: reach the device again within its connect_timeout (a link back a moment later), stop
        what is left of the agent, read what the device wrote; None when the device cannot be reached or its
        result read (the caller keeps what the agent streamed; `unreached` says why, for the session's finish)."""
        seconds = self.target.connect_timeout
        if self.is_interrupted() or not transport.reconnect_within(seconds, self.is_interrupted):
            self.reader.read_failure = f"the device could not be reached again after {type(exc).__name__}"
            self.reader.unread[remote_result] = self.reader.read_failure
            self.unreached = type(exc).__name__
            return None
        self.say(f"{self.target.name}: reconnected after {type(exc).__name__}; pulling what was measured")
        pgid = getattr(exc, "pgid", None)
        if pgid:
            transport.kill_group(pgid)
        return self.reader.try_fetch(transport, remote_result, n)

    def counting_env(self) -> dict[str, str] | None:
        """The counting plugin's environment for an emulated target (deploy/counting.py); None otherwise."""
        return counting.plugin_env(self.target, self.local_dir)

    def time_blocks(self) -> None:
        """After the agent: llvm-mca's cycles of the one-thread counted windows (deploy/counting.py)."""
        counting.time_blocks(self.run, self.target, self.local_dir, self.say)

    def drop_blocks(self) -> None:
        counting.drop_blocks(self.local_dir)


def _listed(arts: list[AgentArtifact]) -> str:
    """The artifacts of an agent run, each restricted to some thread counts saying which."""
    return ", ".join(
        a.id if a.threads is None else f"{a.id} (threads {', '.join(map(str, a.threads))} only)" for a in arts
    )


def _stdout(exc: BaseException) -> str:
    """What a stopped command had printed (the transports attach it to their errors)."""
    return str(getattr(exc, "stdout", "") or "")


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
    """The last `lines` of the agent's stderr, without the shell's echo of a killed command ('bash: line 1: 1269
    Killed   EDGEKIT_QEMU_PLUGIN=... python3 agent.py ...': the whole command line, said for a kill mid-run)."""
    kept = [line for line in without_shell_echo(text).strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "no output"
