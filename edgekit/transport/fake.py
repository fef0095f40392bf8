"""A scripted device for unit tests: the Transport API over a folder of this machine, whose `run` does what a
test says a device does.

Files are real: `put` is sha256-checked, atomic and skips unchanged files, `get` copies back, so a session's push,
pull and cleanup act on the folder exactly as on a device. Commands follow a script: call N of `run` (counted
from 1) takes `steps[N]`, any other call `default` (unless set: run argv here, in the folder, with the timeout).
The steps are what a device does wrong:

- `exits(status, writes=...)`: the command ends with that exit status (a crash: -11 is SIGSEGV) after writing
  files (a partial result);
- `hangs()`: nothing comes back until the timeout (RemoteTimeout) or until the link is cut by `sever` (the
  session's whole-run deadline: DeviceTimeout) or `interrupt` (Interrupted);
- `drops_link(stdout=...)`: the connection drops mid-command (ConnectionLost carrying what was printed and the
  process group); every later call fails until `reconnect()`, which works unless `reachable=False`.

Every call is recorded in `events` ("connect", "put PATH", "run ARGV", "reconnect", "kill_group N", "close").
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import ConnectionLost, DeviceTimeout, Interrupted, RemoteTimeout, TransportError
from edgekit.transport.base import PutResult, RunResult, Transport, copy_file_atomically, sha256_file


@dataclass(frozen=True)
class Call:
    """One `run` call as the step sees it."""

    n: int  # 1 for the first run of this transport
    argv: list[str]
    timeout: float
    cwd: str | None
    env: dict[str, str] | None
    on_output: Callable[[str], None] | None

    @property
    def command(self) -> str:
        return " ".join(shlex.quote(str(a)) for a in self.argv)


Step = Callable[["FakeTransport", Call], RunResult]


class FakeTransport(Transport):
    """A device in `root` (relative remote paths and run's default cwd are `root`)."""

    def __init__(
        self,
        root: Path,
        *,
        name: str = "fake",
        steps: Mapping[int, Step] | None = None,
        default: Step | None = None,
        free: int | None = None,
        reachable: bool = True,
    ) -> None:
        self.name = name
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.work_dir = str(self.root)
        self.steps = dict(steps or {})
        self.default = default or runs_here
        self.free = free  # what free_bytes says (None: the device cannot say)
        self.reachable = reachable  # whether reconnect() finds the device again
        self.events: list[str] = []
        self.runs = 0
        self.closed = False
        self._severed: str | None = None
        self._interrupted = False
        self._cut = threading.Event()  # set when the link is cut or the command interrupted: a hang wakes

    # -- files -----------------------------------------------------------------------------------------
    def path(self, remote: str) -> Path:
        """Where a remote path lives in the folder."""
        path = Path(remote)
        return path if path.is_absolute() else self.root / path

    def put(self, local: Path, remote: str) -> PutResult:
        self._link(f"put {remote}")
        return copy_file_atomically(local, self.path(remote), where=f"put to {self.name}")

    def get(self, remote: str, local: Path) -> Path:
        self._link(f"get {remote}")
        source = self.path(remote)
        if not source.is_file():
            raise TransportError(f"no such file {remote}", where=self.name)
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, local)
        return local

    def mkdir(self, remote: str) -> None:
        self._link(f"mkdir {remote}")
        self.path(remote).mkdir(parents=True, exist_ok=True)

    def free_bytes(self, remote: str = ".") -> int | None:
        return self.free

    def bytes_to_send(self, pairs: list[tuple[Path, str]]) -> int:
        def same(local: Path, dest: Path) -> bool:
            return dest.is_file() and sha256_file(dest) == sha256_file(local)

        return sum(
            Path(local).stat().st_size for local, remote in pairs if not same(Path(local), self.path(remote))
        )

    # -- commands --------------------------------------------------------------------------------------
    def run(
        self,
        argv: list[str],
        *,
        timeout: float,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> RunResult:
        self.runs += 1
        call = Call(self.runs, [str(a) for a in argv], timeout, cwd, env, on_output)
        self._link(f"run {call.command}")
        return self.steps.get(call.n, self.default)(self, call)

    # -- the link --------------------------------------------------------------------------------------
    def connect(self) -> FakeTransport:
        self._link("connect")
        return self

    def reconnect(self) -> bool:
        self.events.append("reconnect")
        if not self.reachable:
            self._severed = "connection lost; the device could not be reached again"
            return False
        self._severed = None
        self._cut.clear()
        return True

    @property
    def usable(self) -> bool:
        return self._severed is None and not self._interrupted

    def kill_group(self, pgid: int) -> str:
        self.events.append(f"kill_group {pgid}")
        return ""

    def sever(self, reason: str) -> None:
        if self._severed is None:
            self._severed = reason
        self._cut.set()

    def interrupt(self) -> None:
        """The running command stops (Interrupted); the link still works, to fetch what was measured."""
        self._interrupted = True
        self._cut.set()

    def resume_after_interrupt(self) -> bool:
        self.events.append("resume")
        if self._severed is not None:
            return False
        self._interrupted = False
        self._cut.clear()
        return True

    def close(self) -> None:
        self.events.append("close")
        self.closed = True

    def drop(self, what: str) -> None:
        """The connection dropped (as the SSH transport records it): later calls fail until reconnect()."""
        self.sever(f"connection lost during {what}")

    def dead_error(self, what: str) -> TransportError:
        """What a call on a cut link raises: the same classes, chosen the same way, as the SSH transport's."""
        if self._interrupted and self._severed is None:
            return Interrupted(f"{what} stopped (Ctrl-C or SIGTERM)", where=self.name)
        reason = self._severed or "the link was cut"
        if reason.startswith("connection lost"):
            return ConnectionLost(f"{what}: {reason}", stage=what, where=self.name)
        return DeviceTimeout(f"the device stopped answering ({reason})", stage=what, where=self.name)

    def _link(self, event: str) -> None:
        self.events.append(event)
        if self._severed is not None:
            raise self.dead_error(event.split(" ")[0])


# -- steps -------------------------------------------------------------------------------------------------
def runs_here(fake: FakeTransport, call: Call) -> RunResult:
    """Run argv on this machine in the fake device's folder (cleanup's `rm -rf` really removes)."""
    start = time.monotonic()
    try:
        done = subprocess.run(
            call.argv,
            cwd=fake.path(call.cwd or "."),
            env={**os.environ, **(call.env or {})},
            capture_output=True,
            text=True,
            timeout=call.timeout,
        )
    except subprocess.TimeoutExpired:
        raise RemoteTimeout(
            f"`{call.command}` did not finish within {call.timeout:g} s and was stopped", where=fake.name
        ) from None
    except OSError as exc:
        return RunResult(call.command, 127, "", f"{call.argv[0]}: {exc}", time.monotonic() - start)
    if call.on_output is not None:
        call.on_output(done.stdout)
    return RunResult(call.command, done.returncode, done.stdout, done.stderr, time.monotonic() - start)


def exits(
    status: int,
    *,
    stdout: str = "",
    stderr: str = "",
    writes: Mapping[str, str] | None = None,
    then: Step | None = None,
) -> Step:
    """The command writes `writes` (remote path -> text), prints, and exits with `status`. `then` (optional)
    runs first, for a step that computes what it writes (an agent that measured some artifacts)."""

    def step(fake: FakeTransport, call: Call) -> RunResult:
        if then is not None:
            then(fake, call)
        _write(fake, writes)
        if call.on_output is not None and stdout:
            call.on_output(stdout)
        return RunResult(call.command, status, stdout, stderr, 0.0)

    return step


def hangs(*, writes: Mapping[str, str] | None = None, pgid: int = 4242) -> Step:
    """Nothing comes back (after writing `writes`: a partial result): RemoteTimeout after the call's timeout
    (real seconds: keep it short in tests), or DeviceTimeout / Interrupted as soon as the link is cut."""

    def step(fake: FakeTransport, call: Call) -> RunResult:
        _write(fake, writes)
        if fake._cut.wait(call.timeout):
            raise fake.dead_error(f"`{call.argv[0]}`")
        stopped = RemoteTimeout(
            f"`{call.command}` did not finish within {call.timeout:g} s and was stopped", where=fake.name
        )
        stopped.stdout, stopped.stderr, stopped.pgid = "", "", pgid  # type: ignore[attr-defined]
        raise stopped

    return step


def drops_link(*, stdout: str = "", writes: Mapping[str, str] | None = None, pgid: int = 4242) -> Step:
    """The connection drops while the command runs: what it printed so far rides on the ConnectionLost, and what
    it wrote (`writes`: the device went on without us) is in the folder for after a reconnect."""

    def step(fake: FakeTransport, call: Call) -> RunResult:
        _write(fake, writes)
        if call.on_output is not None and stdout:
            call.on_output(stdout)
        what = f"`{call.argv[0]}`"
        fake.drop(what)
        lost = ConnectionLost(f"the connection dropped while {what} ran", stage=what, where=fake.name)
        lost.stdout, lost.stderr, lost.pgid = stdout, "", pgid  # type: ignore[attr-defined]
        raise lost

    return step


def _write(fake: FakeTransport, writes: Mapping[str, str] | None) -> None:
    for remote, text in (writes or {}).items():
        dest = fake.path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
