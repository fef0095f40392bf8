"""The end of one target's run (TargetSession's last stage, in `finally`): pull the outputs, remove the run folder
on the device, close, and check a lab place was still ours.

Pulling the outputs and removing the run folder survive a lost link as the run does: a dropped or frozen link
reconnects (within the target's connect_timeout) and the call is made again. A folder that still cannot be removed
once everything was fetched is a warning naming it, not a failed run. A Ctrl-C that comes while the outputs are
pulled or the folder removed lets them finish, each call under its own deadline; all of it ends by FINISH_S.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath

from edgekit.agent.contract import OUTPUTS_DIR, outputs_file_name
from edgekit.deploy.agent_result import lies_under
from edgekit.deploy.agent_run import AgentRunner
from edgekit.errors import AgentError, ConnectionLost, DeviceTimeout, EdgekitError
from edgekit.paths import disk_full_text, out_of_space
from edgekit.results import TargetRun
from edgekit.target import Target
from edgekit.transport import Transport

RUN_GRACE_S = 600.0  # connect, push and pull on top of the agent's timeout_s, for the whole-run deadline
PRUNED_LATER = "edgekit removes run folders older than a day at a later connect"
FINISH_S = RUN_GRACE_S  # pulling the outputs and removing the run folder, reconnects included, end by then


class Finishing:
    """TargetSession's pull, cleanup and close (a mixin: the session's state, declared here, is what it reads)."""

    target: Target
    run: TargetRun
    runner: AgentRunner
    run_dir: str
    local_dir: Path
    interrupted: bool
    say: Callable[[str], None]
    on_update: Callable[[TargetRun], None]
    _stage: str
    _lock: threading.Lock
    _finishing: bool
    _done: bool
    _finish_by: float
    _pulled: set[str]
    _work_dir_made: bool

    def stage(self, name: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def fail(self, error: str) -> None:
        raise NotImplementedError

    def finish(self, transport: Transport) -> None:
        """Pull what was measured (also after a failure or a Ctrl-C), remove the remote run folder, close. After a
        Ctrl-C the pull and the removal still run when the link is whole, each call under its own deadline (the
        deploy waits for them at most a minute; a second Ctrl-C stops waiting); a folder that cannot be removed
        is said, not left in silence. A link lost meanwhile, or before (_reach_again), is reconnected within the
        target's connect_timeout."""
        with self._lock:
            self._finishing = True
            interrupted = self.interrupted
        # the whole-run watchdog ended with the run: the pull and cleanup get their own bound (a download that
        # keeps trickling, reconnects after a lost link), so a night never hangs on them
        self._finish_by = time.monotonic() + FINISH_S
        bound = threading.Timer(
            FINISH_S, transport.sever, args=(f"the pull and cleanup's deadline ({FINISH_S:g} s) passed",)
        )
        bound.daemon = True
        bound.start()
        try:
            self._finish(transport, interrupted)
        finally:
            bound.cancel()
            with self._lock:
                self._finishing, self._done = False, True

    def _finish(self, transport: Transport, interrupted: bool) -> None:
        usable = transport.usable and not interrupted
        # the push made the run folder (runs/.../outputs) before any agent started: removed as the agent's is; a
        # push that could not make the work dir made nothing (its `rm` was said as a folder left on the device)
        made = self.runner.invocations > 0 or (
            self._work_dir_made and self._stage not in ("start", "ensure", "connect")
        )
        if interrupted and made:
            usable = transport.resume_after_interrupt()
            name = self.target.name
            if usable:
                self.say(
                    f"{name}: interrupted: fetching what was measured and removing {self.run_dir} on the device "
                    "(Ctrl-C again to leave it there)"
                )
            else:
                held = (
                    "what the agent saved there was not fetched"
                    if self.runner.invocations
                    else "it holds only what the push made there (no agent had run)"
                )
                self.say(
                    f"{name}: {self.run_dir} left on the device (the link was cut at the interrupt): {held}; "
                    f"{PRUNED_LATER}"
                )
        refused = self.runner.reader.take_refusal()  # a run that ended in another error first
        if refused is not None:
            self.fail(f"run: AgentError: {refused}")
        if not usable and not interrupted and made:
            usable = self._reach_again(transport)
        try:
            if usable and self.run.agent is not None and self.run.agent.measurements:
                usable = self._pull(transport)
            if usable:
                self._forget_missing(transport)
            if (
                usable and self.runner.reader.unread
            ):  # never removed before what the agent wrote there was read
                self.say(
                    f"{self.target.name}: {self.run_dir} left on the device (its work dir): "
                    f"{'; '.join(self.runner.reader.unread.values())}"
                )
            elif usable and made:  # failed runs too: what they measured is pulled
                self._cleanup(transport)
        except EdgekitError as exc:
            self.fail(f"{self._stage}: {type(exc).__name__}: {exc}")
        except OSError as exc:  # a download found this machine's disk full: the rest stays on the device
            if not out_of_space(exc):
                raise
            self.fail(
                f"{self._stage}: {disk_full_text(self.local_dir)}; what was not fetched is left on the device in "
                f"{self.run_dir}; {PRUNED_LATER}"
            )
        finally:
            transport.close()
            self._check_held(transport)
            self.on_update(self.run)

    def _reach_again(self, transport: Transport) -> bool:
        """Finishing on a link lost before (a frozen link cut, or a drop the agent's run could not reconnect
        after): the device reached again within its connect_timeout, unless the run already waited that long for
        it; when it is not, the folder left on the device is said with what it holds, and a pull that could not
        be made fails the run as the pull's own loss does."""
        name = self.target.name
        why = self.runner.unreached
        if why is None:
            seconds = min(self.target.connect_timeout, self._finish_by - time.monotonic())
            if transport.reconnect_within(seconds, lambda: self.interrupted):
                self.say(f"{name}: reconnected after the link was lost ({self._stage}); finishing")
                return True
            why = f"the link was lost ({self._stage})"
        measured = [m for m in (self.run.agent.measurements if self.run.agent else []) if m.status == "ok"]
        held = [PurePosixPath(remote).name for remote in self.runner.reader.unread]
        held += [outputs_file_name(OUTPUTS_DIR, m.artifact, m.threads) for m in measured]
        holding = f", holding {', '.join(dict.fromkeys(held))}" if held else ""
        if measured:
            said = ", ".join(f"{m.artifact} x{m.threads}" for m in measured)
            self.fail(
                f"pull: {why}; the device could not be reached again: the outputs of {said} were not fetched (the "
                f"gates are not judged on the device) and {self.run_dir} is left on it{holding}; {PRUNED_LATER}"
            )
        else:
            self.say(
                f"{name}: {self.run_dir} left on the device ({why}; the device could not be reached "
                f"again){holding}; {PRUNED_LATER}"
            )
        return False

    def _forget_missing(self, transport: Transport) -> None:
        """A result file that could not be read because the agent never wrote it (stopped first: a Ctrl-C, a
        timeout, a frozen device) is nothing to read: no reason to leave the run folder on the device."""
        for remote in list(self.runner.reader.unread):
            try:
                done = transport.run(["test", "-e", remote], timeout=30)
            except EdgekitError:
                return  # the folder stays, said with why
            if done.exit_status == 1:
                self.runner.reader.unread.pop(remote)

    def _pull(self, transport: Transport) -> bool:
        """The outputs, pulled again after one reconnect when the link drops or freezes under the download;
        False (the pull failed, and said) when the device could not be reached again."""
        try:
            with self.stage("pull"):
                try:
                    self.pull_outputs(transport)
                except (ConnectionLost, DeviceTimeout) as exc:
                    if not self._reconnect(transport, exc, "pulling the outputs again"):
                        raise
                    self.pull_outputs(transport)
        except (ConnectionLost, DeviceTimeout) as exc:
            why = (
                "not reconnected after the Ctrl-C"
                if self.interrupted
                else "the device could not be reached again"
            )
            self.fail(
                f"pull: {type(exc).__name__}: {exc}; {why}: the outputs were not fetched (the gates are not judged "
                f"on the device) and {self.run_dir} is left on it; {PRUNED_LATER}"
            )
            return False
        return True

    def _cleanup(self, transport: Transport) -> None:
        """Remove the run folder (after one reconnect when the link drops or freezes). Everything was fetched by
        now: a folder that cannot be removed is a warning naming it, not a failed run."""
        rm = ["rm", "-rf", "--", self.run_dir]
        try:
            with self.stage("cleanup"):
                try:
                    done = transport.run(rm, timeout=60)
                except (ConnectionLost, DeviceTimeout) as exc:
                    if not self._reconnect(transport, exc, f"removing {self.run_dir}"):
                        raise
                    done = transport.run(rm, timeout=60)
        except EdgekitError as exc:
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            if done.ok:
                return
            why = f"rm exited with status {done.exit_status}: {done.stderr.strip()[-300:] or 'no output'}"
        self.say(
            f"{self.target.name}: warning: cleanup: {self.run_dir} left on the device ({why}); everything measured "
            f"was fetched; {PRUNED_LATER}, or remove it by hand"
        )

    def _reconnect(self, transport: Transport, exc: ConnectionLost | DeviceTimeout, then: str) -> bool:
        """After a dropped or frozen link in the pull or the cleanup: reach the device again within its
        connect_timeout (Transport.reconnect_within, as the agent's run does); not after a Ctrl-C."""
        seconds = min(self.target.connect_timeout, self._finish_by - time.monotonic())
        if not transport.reconnect_within(seconds, lambda: self.interrupted):
            return False
        self.say(
            f"{self.target.name}: reconnected after {type(exc).__name__} ({exc.stage or self._stage}); {then}"
        )
        return True

    def _check_held(self, transport: Transport) -> None:
        """A lab place taken from this run before it ended (`edgekit lab release --kick`, labgrid-client release
        -k): the measurements are kept, but those made after it may have shared the board with someone else's
        work, so the run is failed (exit 1) and its routes say so."""
        lost = transport.lost_hold()
        if lost is None:
            return
        self.run.place_lost = lost
        self.fail(
            f"lab: {self.target.name} was taken from this run before it ended ({lost}): its measurements are "
            "kept but may have shared the board with someone else's work; run it again"
        )

    def pull_outputs(self, transport: Transport) -> None:
        """Each measured artifact's outputs, to the same name under local_dir; a name that would land outside it
        is never downloaded (the runner refuses any name but the agent's own already: this is the last guard)."""
        outside = []
        for m in self.run.agent.measurements if self.run.agent else []:
            if m.status == "ok" and m.outputs_file:
                local = self.local_dir / m.outputs_file
                if not lies_under(local, self.local_dir):
                    outside.append(f"{m.artifact} at {m.threads} threads: {m.outputs_file[:200]!r}")
                    m.outputs_file = None
                    continue
                if m.outputs_file in self._pulled:  # before a reconnect
                    continue
                transport.get(f"{self.run_dir}/{m.outputs_file}", local)
                self._pulled.add(m.outputs_file)
        if outside:
            raise AgentError(
                f"outputs_file outside this run's folder {self.local_dir}, not downloaded: {'; '.join(outside)}",
                where=self.target.name,
            )
