"""One target's part of a deploy, as fixed stages (TVM rpc style): ensure the device, connect, push, run the
agent, pull the outputs, clean up in `finally`. Each stage is timed into TargetRun.stage_seconds; a stage that
fails ends the target with its error, and whatever the agent had measured is kept.

Every target has a whole-run deadline, `benchmark.timeout_s + RUN_GRACE_S`: when it passes, the link is cut
(every blocked call wakes) and the target ends in DeviceTimeout; each agent run gets what is left of it. A
frozen device is found sooner by the transport's own deadlines (edgekit/transport/ssh_link.py). `interrupt()`
(Ctrl-C, from the main thread) stops the agent on the device, keeps what was measured and marks the run
interrupted; artifacts never measured are recorded as not run, with the reason.

The run stage starts the agent once per (python, runtime) group and again after a crash, for the artifacts not
yet measured (at most MAX_RESTARTS times); running it and surviving its crashes, lost links and a full disk is
edgekit/deploy/agent_run.py (AgentRunner), which records into this session's TargetRun. An artifact whose runtime
the group's python does not have is recorded `skipped`, with the fix, and the target ends in RuntimeMissing once
every group ran (edgekit/deploy/runtime_missing.py): it was a failed load under `status ok`. The device's free space
is checked before the push (DeviceDiskFull: free vs needed bytes). The run folder on the device is removed after
every run that can still reach it, failed ones included (the rest are pruned at a later connect), unless a result
file the agent wrote there was never read (a failed download, a result edgekit refused): that folder is left for
a look, and said.

Pulling the outputs, removing the run folder and closing are edgekit/deploy/finish.py (Finishing).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from edgekit.agent.contract import OUTPUTS_DIR, ErrorCode
from edgekit.deploy.agent_death import DiedBeforeMeasuring, PythonNotFound
from edgekit.deploy.agent_result import Progress
from edgekit.deploy.agent_run import AgentRunner
from edgekit.deploy.finish import RUN_GRACE_S, Finishing
from edgekit.deploy.host_cpu import HostCpu
from edgekit.deploy.request import (
    AGENT_FILE,
    AGENT_REMOTE,
    AgentArtifact,
    Settings,
    inputs_remote,
    runtime_for,
)
from edgekit.deploy.runtime_missing import runtime_missing, skip_missing
from edgekit.emu.device import ensure_device
from edgekit.errors import (
    AgentError,
    DeviceDiskFull,
    EdgekitError,
    Interrupted,
)
from edgekit.paths import disk_full_text, out_of_space
from edgekit.progress import Planned
from edgekit.results import TargetRun
from edgekit.runtimes import spec_for
from edgekit.target import Target, TransportKind
from edgekit.transport import Transport, open_transport

__all__ = [
    "MAX_RESTARTS",
    "RESULTS_RESERVE",
    "RUN_GRACE_S",
    "HostCpu",
    "Progress",
    "TargetSession",
]

MAX_RESTARTS = 8
RESULTS_RESERVE = 2 << 20  # free bytes kept for requests, results and outputs beyond what the push sends


class TargetSession(Finishing):
    """Runs the stages for one target; `on_update` is called whenever the TargetRun changed (partial JSON)."""

    def __init__(
        self,
        target: Target,
        *,
        run_id: str,
        local_dir: Path,
        settings: Settings,
        progress: Progress | None = None,
        host_cpu: HostCpu | None = None,
        on_update: Callable[[TargetRun], None] | None = None,
        before_run: Callable[[], str | None] | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.target = target
        self._given = transport  # instead of open_transport(target): a FakeTransport in unit tests
        self.before_run = before_run or (lambda: None)  # a reason to skip the run stage (deploy's fail-fast)
        self.reached = threading.Event()  # set once connected (or failed): deploy's host waits for devices
        self.finished = threading.Event()  # set by deploy when execute() has returned (Ctrl-C waits on it)
        self.run_id = run_id
        self.run_dir = f"runs/{run_id}-{target.name}"  # one folder per target: two targets may share a device
        self.local_dir = local_dir
        self.settings = settings
        self.say = progress or (lambda _m: None)
        self.host_cpu = host_cpu or HostCpu()
        self.on_update = on_update or (lambda _r: None)
        self.is_host = target.transport is TransportKind.LOCAL
        self.run = TargetRun(
            target=target.name,
            kind=target.transport.value,
            emulated=bool(target.emulated),
            status="failed",
            result_dir=str(local_dir),
            counting=bool(target.emulated and target.emulated.counting),
            emulated_as="target" if target.emulated else None,
        )
        self._stage = "start"
        self._transport: Transport | None = None
        self._deadline = time.monotonic() + settings.timeout_s + RUN_GRACE_S
        self.interrupted = False
        self._lock = threading.Lock()  # interrupt() and the start of finish(): one sees the other
        self._finishing = False  # pulling and cleaning up: a Ctrl-C no longer stops the call on the link
        self._done = False  # finish() has ended: a Ctrl-C after it interrupts nothing of this target
        self._finish_by = math.inf  # the pull and the cleanup end by then (FINISH_S), reconnects included
        self._pulled: set[str] = set()  # outputs already downloaded (a pull made again after a reconnect)
        self._work_dir_made = False  # the push made the work dir: a run folder may be in it
        self.runner = AgentRunner(
            target,
            self.run,
            settings=settings,
            local_dir=local_dir,
            run_dir=self.run_dir,
            deadline=self._deadline,
            say=self.say,
            on_update=self.on_update,
            is_interrupted=lambda: self.interrupted,
        )

    def interrupt(self) -> None:
        """Ctrl-C (from another thread): stop the agent on the device and end this target, keeping results. Once
        the outputs are being pulled or the run folder removed, those calls finish, each under its own deadline
        (deploy waits for them at most a minute; a second Ctrl-C stops waiting)."""
        with self._lock:  # finish() starting meanwhile sees either the interrupt or none of it
            if self._done:  # everything was fetched and cleaned up: nothing of this target was interrupted
                return
            self.interrupted = True
            self.run.interrupted = True
            finishing = self._finishing
            transport = self._transport
            if not finishing and transport is not None:
                transport.interrupt()
        if finishing:
            if self.runner.invocations:
                self.say(
                    f"{self.target.name}: interrupted: finishing the {self._stage} and removing {self.run_dir} "
                    "on the device (Ctrl-C again to leave it there)"
                )
        elif (
            transport is None and self.target.lab is not None
        ):  # a lab target still waiting for a place, or just given one
            threading.Thread(
                target=self._end_lab_wait, name=f"end-wait-{self.target.name}", daemon=True
            ).start()

    def _end_lab_wait(self) -> None:
        """Close the lab lease of a target still in its ensure stage (edgekit/lab/acquire.py puts the waiting lease
        on the target): its helper sees its stdin close, stops waiting and gives back anything it got. A signal to
        edgekit's pid alone (not its group) never reached the helper: the deploy waited out lab.wait_s. Polled
        briefly, as the Ctrl-C may come before the helper is started."""
        deadline = time.monotonic() + 30.0
        while self._stage in ("start", "ensure") and self._transport is None and time.monotonic() < deadline:
            lease = self.target._lease
            if lease is not None:
                lease.close()
                return
            time.sleep(0.05)

    @property
    def connecting(self) -> bool:
        """Still connecting (no device reached yet): nothing was sent, so nothing is left to fetch or remove."""
        return self._stage == "connect" and not self.reached.is_set()

    def _stop_if_interrupted(self, before: str) -> None:
        """Ctrl-C or SIGTERM already came: start no new stage (the host began measuring after one)."""
        if self.interrupted:
            raise Interrupted(f"interrupted (Ctrl-C or SIGTERM) before {before}", where=self.target.name)

    def _say_device(self, message: str) -> None:
        """A line of the device's start (edgekit.emu), under the target's name unless it begins with it already
        ("phone-emu: phone-emu's sshd ...")."""
        name = self.target.name
        self.say(message if message.startswith(name) else f"{name}: {message}")

    def _expire(self) -> None:
        """The whole-run deadline passed: cut the link so nothing blocks any longer."""
        transport = self._transport
        if transport is not None:
            transport.sever(
                f"the whole-run deadline ({self.settings.timeout_s + RUN_GRACE_S:g} s: the run's timeout, "
                f"benchmark.timeout_s or bench's --timeout, + {RUN_GRACE_S:g}) passed"
            )

    # -- stages ------------------------------------------------------------------------------------------
    def execute(self, arts: list[AgentArtifact], inputs: Path) -> TargetRun:
        transport: Transport | None = None
        watchdog = threading.Timer(max(0.0, self._deadline - time.monotonic()), self._expire)
        watchdog.daemon = True
        try:
            with self.stage("ensure"):
                self.target = ensure_device(self.target, self._say_device)
            self.run.target = self.target.name  # a lab target is recorded under the place it got
            self.runner.target = self.target  # whose agent runs there
            watchdog.start()
            self._stop_if_interrupted("connecting")
            with self.stage("connect"):  # a local target makes its work dir here (WorkDirError)
                transport = self._transport = self._given or open_transport(self.target)
                transport.connect()
            self.reached.set()
            self._stop_if_interrupted("pushing")
            # an emulated device's upload runs qemu here (its sshd, the sha256 checks): not while the host is timed
            with (
                self.host_cpu.hold(exclusive=False) if self.target.emulated else nullcontext(),
                self.stage("push"),
            ):
                self.push(transport, arts, inputs)
            self._stop_if_interrupted("measuring")
            skip = self.before_run()
            if skip:
                self._stage = "run"
                self.run.skipped = True
                raise AgentError(f"not measured: {skip}", where=self.target.name)
            with self.host_cpu.hold(exclusive=self.is_host), self.stage("run"):
                self.run_agents(transport, arts, inputs)
            self.run.status = "ok"
        except (KeyboardInterrupt, Interrupted) as exc:  # Ctrl-C, in this thread (bench) or from deploy's
            self.interrupted = self.run.interrupted = True
            self.fail(f"{self._stage}: {exc or 'interrupted (Ctrl-C or SIGTERM)'}")
            self.runner.record_not_run(arts, "interrupted (Ctrl-C or SIGTERM)", ErrorCode.INTERRUPTED)
        except EdgekitError as exc:
            self.fail(f"{self._stage}: {type(exc).__name__}: {exc}")
            self.run.bad_input = exc.exit_code == 2  # bench and deploy exit 2 for it, as `targets check` does
            self.runner.record_not_run(
                arts, f"{type(exc).__name__} in {self._stage}: {str(exc).splitlines()[0]}"
            )
        except OSError as exc:  # a write of edgekit's own (a request, a result) found this disk full
            if not out_of_space(exc):
                raise
            full = disk_full_text(self.local_dir)  # 'DiskFull: no space left on the disk holding ...'
            self.fail(f"{self._stage}: {full}")
            self.runner.record_not_run(arts, full.replace(":", f" in {self._stage}:", 1))
        finally:
            self.reached.set()
            watchdog.cancel()
            if transport is not None:
                self.finish(transport)
        return self.run

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._stage = name
        self.say(f"{self.target.name}: {name} ...")
        start = time.perf_counter()
        done = False
        try:
            yield
            done = True
        finally:
            seconds = time.perf_counter() - start
            self.run.stage_seconds[name] = round(self.run.stage_seconds.get(name, 0.0) + seconds, 3)
            if done:  # a stage that raised is said by fail() ("FAILED ensure: ..."), not as done
                self.say(f"{self.target.name}: {name} done in {seconds:.1f} s")
            self.on_update(self.run)

    def fail(self, error: str) -> None:
        self.run.status = "failed"
        self.run.error = error if not self.run.error else f"{self.run.error}; {error}"
        self.say(f"{self.target.name}: FAILED {error.splitlines()[0]}")

    def push(self, transport: Transport, arts: list[AgentArtifact], inputs: Path) -> None:
        sent = skipped = 0
        pairs = [(AGENT_FILE, AGENT_REMOTE), (inputs, inputs_remote(inputs))]
        pairs += [pair for art in arts for pair in art.remote_files()]
        self.check_space(transport, pairs)
        # a device's round trips batched: 2, not 2 a file and 1 for the outputs folder
        for put in transport.put_many(pairs, dirs=[f"{self.run_dir}/{OUTPUTS_DIR}"]):
            sent += put.bytes_sent
            skipped += put.skipped
        self.say(
            f"{self.target.name}: pushed {len(pairs)} files ({sent / 1e6:.2f} MB sent, {skipped} unchanged)"
        )

    def check_space(self, transport: Transport, pairs: list[tuple[Path, str]]) -> None:
        """DeviceDiskFull before anything is sent when the work dir cannot hold the upload and the results. The work
        dir is made first (WorkDirError when it cannot be): the free space of a folder not yet there was its
        nearest parent's (/proc's 0 bytes for a work_dir of /proc/edgekit: "disk full, 0.00 MB free")."""
        free, to_send = transport.upload_room(pairs)  # one round trip on an SSH device
        self._work_dir_made = True
        if free is None:
            return
        needed = to_send + RESULTS_RESERVE
        if free < needed:
            raise DeviceDiskFull(
                f"the device's disk is full: {free / 1e6:.2f} MB free in its work dir, this run needs "
                f"{needed / 1e6:.2f} MB ({to_send / 1e6:.2f} MB to upload + {RESULTS_RESERVE / 1e6:.2f} MB for "
                "results); nothing was sent",
                free=free,
                needed=needed,
                where=self.target.name,
                hint="free space on the device (its work dir's runs/ and artifacts/ are safe to delete), or "
                "--set work_dir=PATH on a larger disk",
            )

    # -- the agent ---------------------------------------------------------------------------------------
    def run_agents(self, transport: Transport, arts: list[AgentArtifact], inputs: Path) -> None:
        """One agent invocation per (python, TFLite runtime) group; restarted after a crash."""
        groups: dict[tuple[str, str], list[AgentArtifact]] = {}
        for art in arts:
            runtime = runtime_for(art.format, self.target.runtimes)
            python = self.target.python_for(runtime if runtime != "auto" else "ai_edge_litert")
            groups.setdefault((python, runtime), []).append(art)
        # in the order the agents measure: group by group, each group's artifacts at one thread count before the
        # next, fewest threads first (the board named onnx-fp32 x2 as running while the agent ran onnx-int8 x1)
        threads = sorted(set(self.settings.threads))
        self.say(
            Planned(
                self.target.name,
                [(a.id, t) for group in groups.values() for t in threads for a in group],
                f"{self.target.name}: {len(arts)} artifacts x {len(threads)} thread counts to measure",
            )
        )
        self._say_unlisted(arts)
        try:
            self._invoke_groups(transport, groups, inputs)
        except BaseException:
            self.runner.drop_blocks()  # a stopped run is not held up by llvm-mca
            raise
        self.runner.time_blocks()

    def _say_unlisted(self, arts: list[AgentArtifact]) -> None:
        """Artifacts whose runtime the target's `runtimes:` does not list (MNN on phone-emu, whose file lists
        TFLite and ncnn): measured where the device has it, said, and kept on the run for the route's caveat; a
        device set up from the file would not have it."""
        if self.target.is_this_host:
            return
        for art in arts:
            modules = spec_for(art.format).modules()
            if not any(m in self.target.runtimes for m in modules):
                self.run.unlisted_runtimes[art.id] = modules[0] if len(modules) == 1 else "/".join(modules)
        if self.run.unlisted_runtimes:
            listed = ", ".join(f"{a} ({m})" for a, m in self.run.unlisted_runtimes.items())
            self.say(
                f"{self.target.name}: {listed}: not in the target's runtimes ({', '.join(self.target.runtimes)}); "
                "measured where the device has it, but a device set up from the target's file would not"
            )

    def _invoke_groups(
        self, transport: Transport, groups: dict[tuple[str, str], list[AgentArtifact]], inputs: Path
    ) -> None:
        died: list[
            tuple[DiedBeforeMeasuring, list[AgentArtifact]]
        ] = []  # a group's agent died before measuring
        skipped: dict[str, tuple[str, str]] = {}  # artifact -> the runtime the device's python lacks, the fix
        for i, ((python, runtime), group) in enumerate(groups.items()):
            self._stop_if_interrupted(f"the {runtime} agent run")  # a Ctrl-C between groups starts no new one
            remaining = list(group)
            try:
                for _attempt in range(MAX_RESTARTS):
                    if not remaining:
                        break
                    remaining = self.runner.invoke(transport, python, runtime, remaining, inputs)
            except (
                DiedBeforeMeasuring
            ) as exc:  # that runtime's agent only: the next group's is another process
                died.append((exc, group))
                if i + 1 < len(groups):
                    self.say(f"{self.target.name}: {exc.message}; going on with the other runtimes")
                continue
            skipped.update(skip_missing(self.run, group, self.target, python))
            for art in remaining:
                self.runner.record_failed(art, "not measured: the agent crashed too often", ErrorCode.CRASH)
            for art in self.runner.incomplete(group):  # measured at some thread counts: the others said too
                self.runner.record_failed(
                    art, "not measured: the agent ended before this thread count", ErrorCode.NOT_RUN
                )
        for death, group in died:  # recorded now: a later group's agent may have made the result they go in
            for art in self.runner.incomplete(group):
                self.runner.record_failed(art, f"not measured: {death.message}", ErrorCode.CRASH)
        if died:  # the target failed, with the first death
            first = died[0][0]
            if isinstance(first, PythonNotFound):  # the target's field, named as such
                raise first
            raise AgentError(first.message, where=self.target.name, hint=first.hint)
        if skipped:  # the target is not set up for this run: said with the fix, exit 2 (bad input)
            self.on_update(self.run)
            raise runtime_missing(self.target, skipped)

    def measured_lines(self) -> Callable[[str], None]:
        """The agent's stdout reader that says each streamed measurement (AgentRunner.measured_lines)."""
        return self.runner.measured_lines()
