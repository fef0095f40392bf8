"""One target's part of a deploy, as fixed stages (TVM rpc style): ensure the device, connect, push, run the
agent, pull the outputs, clean up in `finally`. Each stage is timed into TargetRun.stage_seconds; a stage that
fails ends the target with its error, and whatever the agent had measured is kept.

Every target has a whole-run deadline, `benchmark.timeout_s + RUN_GRACE_S`: when it passes, the link is cut
(every blocked call wakes) and the target ends in DeviceTimeout; each agent run gets what is left of it. A
frozen device is found sooner by the transport's own deadlines (edgekit/transport/ssh_link.py). `interrupt()`
(Ctrl-C, from the main thread) stops the agent on the device, keeps what was measured and marks the run
interrupted; artifacts never measured are recorded as not run, with the reason.

The agent writes its result after every measurement. If it dies (a runtime's SIGSEGV, an OOM kill), the
result names the measurement in progress: that artifact is recorded as failed with the exit status and the
agent's last words, and the agent is started again for the artifacts not yet measured.

Lost links lose nothing the device measured: the agent also streams each measurement on stdout; when the link
drops (ConnectionLost) or the device stops answering (DeviceTimeout) while it runs, the session reconnects once
(bounded by connect_timeout), pulls the result file, stops what is left of the agent and removes the run folder;
when the device cannot be reached, the streamed measurements are kept. The device's free space is checked before
the push (DeviceDiskFull: free vs needed bytes), an agent stopped by a full disk is a DeviceDiskFull too, and
every artifact a failure left unmeasured is recorded as not run, with the reason. The run folder on the device is
removed after every run that can still reach it, failed ones included (the rest are pruned at a later connect).
"""

from __future__ import annotations

import json
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgekit.agent.contract import ErrorCode
from edgekit.deploy.host_cpu import HostCpu
from edgekit.deploy.request import (
    AGENT_FILE,
    AGENT_REMOTE,
    AgentArtifact,
    Settings,
    build_request,
    inputs_remote,
    runtime_for,
)
from edgekit.emu.device import ensure_device
from edgekit.errors import (
    AgentError,
    ConnectionLost,
    DeviceDiskFull,
    DeviceTimeout,
    EdgekitError,
    Interrupted,
    RemoteTimeout,
    TransportError,
)
from edgekit.progress import Measured, Planned
from edgekit.results import AgentResult, DeviceFacts, Measurement, TargetRun, unknown_fields
from edgekit.target import Target, TransportKind
from edgekit.transport import Transport, open_transport

__all__ = [
    "EXIT_LOCKED",
    "MAX_RESTARTS",
    "RESULTS_RESERVE",
    "RUN_GRACE_S",
    "HostCpu",
    "Progress",
    "TargetSession",
]

Progress = Callable[[str], None]
EXIT_LOCKED = 3
MAX_RESTARTS = 8
RUN_GRACE_S = 600.0  # connect, push and pull on top of the agent's timeout_s, for the whole-run deadline
RESULTS_RESERVE = 2 << 20  # free bytes kept for requests, results and outputs beyond what the push sends
_STREAM = "EDGEKIT_"  # the agent's stdout lines: EDGEKIT_START {...}, EDGEKIT_MEASUREMENT {...}


class TargetSession:
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
        )
        self._stage = "start"
        self._invocations = 0
        self._transport: Transport | None = None
        self._deadline = time.monotonic() + settings.timeout_s + RUN_GRACE_S
        self.interrupted = False

    def interrupt(self) -> None:
        """Ctrl-C (from another thread): stop the agent on the device and end this target, keeping results."""
        self.interrupted = True
        self.run.interrupted = True
        transport = self._transport
        if transport is not None:
            transport.interrupt()

    def _expire(self) -> None:
        """The whole-run deadline passed: cut the link so nothing blocks any longer."""
        transport = self._transport
        if transport is not None:
            transport.sever(
                f"the whole-run deadline ({self.settings.timeout_s + RUN_GRACE_S:g} s: benchmark.timeout_s + "
                f"{RUN_GRACE_S:g}) passed"
            )

    # -- stages ------------------------------------------------------------------------------------------
    def execute(self, arts: list[AgentArtifact], inputs: Path) -> TargetRun:
        transport: Transport | None = None
        watchdog = threading.Timer(max(0.0, self._deadline - time.monotonic()), self._expire)
        watchdog.daemon = True
        try:
            with self.stage("ensure"):
                self.target = ensure_device(self.target, lambda m: self.say(f"{self.target.name}: {m}"))
            self.run.target = self.target.name  # a lab target is recorded under the place it got
            transport = self._transport = self._given or open_transport(self.target)
            watchdog.start()
            if self.interrupted:
                raise Interrupted("interrupted (Ctrl-C) before connecting", where=self.target.name)
            with self.stage("connect"):
                transport.connect()
            self.reached.set()
            with self.stage("push"):
                self.push(transport, arts, inputs)
            skip = self.before_run()
            if skip:
                self._stage = "run"
                raise AgentError(f"not measured: {skip}", where=self.target.name)
            with self.host_cpu.hold(exclusive=self.is_host), self.stage("run"):
                self.run_agents(transport, arts, inputs)
            self.run.status = "ok"
        except (KeyboardInterrupt, Interrupted) as exc:  # Ctrl-C, in this thread (bench) or from deploy's
            self.interrupted = self.run.interrupted = True
            self.fail(f"{self._stage}: {exc or 'interrupted (Ctrl-C)'}")
            self.record_not_run(arts, "interrupted (Ctrl-C)")
        except EdgekitError as exc:
            self.fail(f"{self._stage}: {type(exc).__name__}: {exc}")
            self.record_not_run(arts, f"{type(exc).__name__} in {self._stage}: {str(exc).splitlines()[0]}")
        finally:
            self.reached.set()
            watchdog.cancel()
            if transport is not None:
                self.finish(transport)
        return self.run

    def finish(self, transport: Transport) -> None:
        """Pull what was measured (also after a failure), remove the remote run folder, close."""
        usable = transport.usable and not self.interrupted
        try:
            if usable and self.run.agent is not None and self.run.agent.measurements:
                with self.stage("pull"):
                    self.pull_outputs(transport)
            if usable and self._invocations:  # failed runs too: what they measured is pulled
                with self.stage("cleanup"):
                    transport.run(["rm", "-rf", "--", self.run_dir], timeout=60)
        except EdgekitError as exc:
            self.fail(f"{self._stage}: {exc}")
        finally:
            transport.close()
            self.on_update(self.run)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._stage = name
        self.say(f"{self.target.name}: {name} ...")
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.run.stage_seconds[name] = round(self.run.stage_seconds.get(name, 0.0) + seconds, 3)
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
        for local, remote in pairs:
            put = transport.put(local, remote)
            sent += put.bytes_sent
            skipped += put.skipped
        transport.mkdir(f"{self.run_dir}/outputs")
        self.say(
            f"{self.target.name}: pushed {len(pairs)} files ({sent / 1e6:.2f} MB sent, {skipped} unchanged)"
        )

    def check_space(self, transport: Transport, pairs: list[tuple[Path, str]]) -> None:
        """DeviceDiskFull before anything is sent when the work dir cannot hold the upload and the results."""
        free = transport.free_bytes(".")
        if free is None:
            return
        to_send = transport.bytes_to_send(pairs)
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
        self.say(
            Planned(
                self.target.name,
                [(a.id, t) for a in arts for t in self.settings.threads],
                f"{self.target.name}: {len(arts)} artifacts x {len(self.settings.threads)} thread counts "
                "to measure",
            )
        )
        for art in arts:
            runtime = runtime_for(art.format, self.target.runtimes)
            python = self.target.python_for(runtime if runtime != "auto" else "ai_edge_litert")
            groups.setdefault((python, runtime), []).append(art)
        for (python, runtime), group in groups.items():
            remaining = list(group)
            for _attempt in range(MAX_RESTARTS):
                if not remaining:
                    break
                remaining = self.invoke(transport, python, runtime, remaining, inputs)
            for art in remaining:
                self.record_failed(art, "not measured: the agent crashed too often", ErrorCode.CRASH)

    def invoke(
        self, transport: Transport, python: str, runtime: str, arts: list[AgentArtifact], inputs: Path
    ) -> list[AgentArtifact]:
        """Run the agent once; return the artifacts still to measure after a crash (empty when done)."""
        n = self._invocations
        self._invocations += 1
        request, result = f"{self.run_dir}/request-{n}.json", f"{self.run_dir}/result-{n}.json"
        body = build_request(arts, self.settings, inputs_remote(inputs), self.run_dir, runtime)
        body.affinity = self.target.affinity  # the agent pins itself (and the runtime's threads) there
        local_req = self.local_dir / f"request-{n}.json"
        local_req.parent.mkdir(parents=True, exist_ok=True)
        local_req.write_text(json.dumps(body.model_dump(), indent=1))
        transport.put(local_req, request)
        self.say(
            f"{self.target.name}: agent measuring {', '.join(a.id for a in arts)} "
            f"(threads {list(self.settings.threads)}, repeat {self.settings.repeat})"
        )
        argv = [*shlex.split(python), AGENT_REMOTE, request, result]
        timeout = max(1.0, min(self.settings.timeout_s, self._deadline - time.monotonic()))
        try:
            done = transport.run(
                argv, timeout=timeout, env=self.counting_env(), on_output=self.measured_lines()
            )
        except Interrupted:
            self.merge(self.fetch(transport, result, n))  # what the device wrote, when the link still works
            for art in self.unmeasured(arts):
                self.record_failed(art, "not run: interrupted (Ctrl-C)", ErrorCode.INTERRUPTED)
            raise
        except (DeviceTimeout, ConnectionLost) as exc:
            self.recover(transport, exc, result, n)
            for art in self.unmeasured(arts):
                self.record_failed(
                    art, f"not run: {type(exc).__name__} ({exc.stage or 'run'})", ErrorCode.NOT_RUN
                )
            raise
        except RemoteTimeout as exc:
            self.merge(self.fetch(transport, result, n))
            for art in self.unmeasured(arts):
                self.record_failed(art, f"timed out after {timeout:g} s", ErrorCode.TIMEOUT)
            raise AgentError(
                str(exc), where=self.target.name, hint="raise benchmark.timeout_s, or lower repeat/threads"
            ) from None
        part = self.fetch(transport, result, n)
        self.merge(part)
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
        if part is not None and part.error:
            raise AgentError(
                part.error,
                where=self.target.name,
                hint="wait for the other benchmark, or remove a stale lock holder"
                if done.exit_status == EXIT_LOCKED
                else None,
            )
        return self.after_crash(arts, part, done.exit_status, done.stderr)

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
        self, arts: list[AgentArtifact], part: AgentResult | None, status: int, stderr: str
    ) -> list[AgentArtifact]:
        why = f"agent exited with {_describe_status(status)}: {_tail(stderr)}"
        if part is not None and not part.in_progress and part.measurements:
            self.say(f"{self.target.name}: agent died between measurements ({why}); restarting for the rest")
            return self.unmeasured(arts)
        if part is None or not part.in_progress:
            raise AgentError(
                why + " (before measuring anything)",
                where=self.target.name,
                hint=f"run `{self.target.python} -c 'import numpy'` on the device to check its "
                "python and runtimes",
            )
        crashed = part.in_progress.split(" threads=")[0]
        self.say(f"{self.target.name}: agent crashed in {part.in_progress}; restarting for the rest")
        for art in arts:
            if art.id == crashed:
                self.record_failed(
                    art, f"crashed while measuring ({part.in_progress}): {why}", ErrorCode.CRASH
                )
        return [a for a in self.unmeasured(arts) if a.id != crashed]

    def recover(self, transport: Transport, exc: TransportError, remote_result: str, n: int) -> None:
        """After a lost link: reconnect once, pull what the device wrote, stop what is left of the agent; when
        the device cannot be reached, keep the measurements the agent streamed before the link went."""
        if not self.interrupted and transport.reconnect():
            self.say(f"{self.target.name}: reconnected after {type(exc).__name__}; pulling what was measured")
            pgid = getattr(exc, "pgid", None)
            if pgid:
                transport.kill_group(pgid)
            part = self.fetch(transport, remote_result, n)
            if part is not None:
                self.merge(part)
                return
        self.merge(self.streamed(getattr(exc, "stdout", "") or ""))

    def streamed(self, stdout: str) -> AgentResult | None:
        """The measurements the agent printed (one JSON line each) before the link dropped."""
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
        self.say(f"{self.target.name}: the device cannot be reached; kept {len(kept)} streamed measurements")
        return AgentResult(started_at=str(start.get("started_at", "")), facts_before=facts, measurements=kept)

    def record_not_run(self, arts: list[AgentArtifact], why: str) -> None:
        """Every artifact a failure left unmeasured, recorded as not run with the reason (when the agent ran;
        before it, the target's error says why nothing ran)."""
        if self.run.agent is None:
            self.run.error = f"{self.run.error}; not run: {', '.join(a.id for a in arts)}"
        for art in self.unmeasured(arts):
            self.record_failed(art, f"not run: {why}", ErrorCode.NOT_RUN)
        self.on_update(self.run)

    def counting_env(self) -> dict[str, str] | None:
        """For an emulated target with `counting: true`: the device's python wrapper runs the plugin-capable
        qemu (edgekit/emu/README.md) and the agent reads the count of each timed window from EDGEKIT_INSN_FILE
        (a path on this machine: the emulated device shares its filesystem)."""
        if not (self.target.emulated and self.target.emulated.counting):
            return None
        from edgekit.emu.plugin import build as plugin_build

        plugin = plugin_build.require_plugin()  # built by set-up (`edgekit emu build`); never at run time
        insn = (self.local_dir / "insns.txt").resolve()
        insn.parent.mkdir(parents=True, exist_ok=True)
        insn.touch()
        return {
            "EDGEKIT_QEMU_PLUGIN": f"{plugin},out={insn}",
            "EDGEKIT_INSN_FILE": str(insn),
            "EDGEKIT_QEMU_DYNAMIC": str(plugin_build.counting_qemu()),
            "PYTHONHASHSEED": "0",
        }

    def unmeasured(self, arts: list[AgentArtifact]) -> list[AgentArtifact]:
        done = {m.artifact for m in self.run.agent.measurements} if self.run.agent else set()
        return [a for a in arts if a.id not in done]

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

    def fetch(self, transport: Transport, remote: str, n: int) -> AgentResult | None:
        local = self.local_dir / f"result-{n}.json"
        try:
            transport.get(remote, local)
            result = AgentResult.model_validate_json(local.read_text())
        except (TransportError, ValidationError, OSError):
            return None
        if unknown := unknown_fields(result):  # kept (and stored), but the agent and edgekit are out of step
            self.say(
                f"{self.target.name}: warning: the agent wrote fields edgekit does not declare: "
                f"{', '.join(unknown[:5])}"
            )
        return result

    def merge(self, part: AgentResult | None) -> None:
        """Fold one invocation's result into the target's: facts before from the first, after from the last."""
        if part is None:
            return
        agent = self.run.agent
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

    def pull_outputs(self, transport: Transport) -> None:
        for m in self.run.agent.measurements if self.run.agent else []:
            if m.status == "ok" and m.outputs_file:
                transport.get(f"{self.run_dir}/{m.outputs_file}", self.local_dir / m.outputs_file)

    def _requests(self) -> list[dict[str, Any]]:
        files = [self.local_dir / f"request-{n}.json" for n in range(self._invocations)]
        return [json.loads(p.read_text()) for p in files if p.is_file()]


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
