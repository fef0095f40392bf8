"""Local transport: the Transport API on this machine, so the host CPU is measured by the same code path as
a device (same put semantics, same run with timeout and process-group kill).

The work dir is data_dir()/local/<target name> unless the target sets `work_dir`.

The host CPU is one per machine, whatever the data home: the work dir's `.edgekit.lock` (the file the agent flocks,
edgekit.deploy.request's layout) is a symlink to the machine's one lock file, host_lock_path(), so two runs with
different EDGEKIT_HOMEs (two users, two CI jobs) time the host one after the other and the second says `waiting:`.
That file is made mode 0666, so every user's agent may open it; where it cannot be (another user made it without
that mode, or fs.protected_regular refuses opening another user's file in a sticky folder) a user gets a lock of
their own beside it, edgekit-host-<uid>.lock, and only that user's runs wait for each other.

What a device sends is held to the bounds of edgekit.transport.limits, as on every transport.
"""

from __future__ import annotations

import os
import selectors
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from edgekit.child_death import die_with_edgekit
from edgekit.errors import Interrupted, RemoteTimeout, TransportError, WorkDirError
from edgekit.paths import data_dir
from edgekit.target import Target
from edgekit.transport.base import (
    PutResult,
    RunResult,
    Transport,
    copy_file_atomically,
    sha256_file,
    shown_command,
)
from edgekit.transport.limits import check_download_size, keep_bounded


class LocalTransport(Transport):
    """This machine as a device. Relative paths (and run's default cwd) are the work dir."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.name = target.name
        self._interrupt = threading.Event()
        self.work_dir = str(make_work_dir(target))
        _link_host_lock(Path(self.work_dir))

    def connect(self) -> LocalTransport:
        return self

    def _abs(self, remote: str) -> Path:
        path = Path(remote).expanduser()
        return path if path.is_absolute() else Path(self.work_dir) / path

    def put(self, local: Path, remote: str) -> PutResult:
        return copy_file_atomically(local, self._abs(remote), where=f"put to {self.name}")

    def get(self, remote: str, local: Path) -> Path:
        source = self._abs(remote)
        if not source.is_file():
            raise TransportError(f"no such file {source}", where=self.name)
        check_download_size(source.stat().st_size, str(source), self.name)
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        if source.resolve() != local.resolve():
            tmp = local.with_name(f".{local.name}.part")
            shutil.copyfile(source, tmp)
            tmp.replace(local)
        return local

    def free_bytes(self, remote: str = ".") -> int | None:
        path = self._abs(remote)
        while not path.exists() and path != path.parent:
            path = path.parent
        return shutil.disk_usage(path).free

    def bytes_to_send(self, pairs: list[tuple[Path, str]]) -> int:
        def same(local: Path, dest: Path) -> bool:
            return (
                dest.is_file()
                and dest.stat().st_size == local.stat().st_size
                and sha256_file(dest) == sha256_file(local)
            )

        return sum(
            Path(local).stat().st_size for local, remote in pairs if not same(Path(local), self._abs(remote))
        )

    def mkdir(self, remote: str) -> None:
        path = self._abs(remote)
        problem = _unmade(path)
        if problem is None:
            return
        if path == Path(self.work_dir):
            raise work_dir_error(self.target, path, problem)
        raise WorkDirError(
            f"the folder {path} cannot be created or written on this machine: {problem}",
            path=str(path),
            why=problem,
            where=f"{self.name} (local)",
            hint="a path this user can write (a relative one is in the target's work dir)",
        )

    def run(
        self,
        argv: list[str],
        *,
        timeout: float,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> RunResult:
        # a leading ~/ is the home, as an ssh device's shell reads it (ssh_exec.quoted_word): python: ~/venv/bin/python3
        argv = [os.path.expanduser(a) if str(a) == "~" or str(a).startswith("~/") else str(a) for a in argv]
        command = " ".join(shlex.quote(a) for a in argv)
        where = self._abs(cwd) if cwd else Path(self.work_dir)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=where,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                # the host agent dies with edgekit (a kill -9 left it running until its own time limit)
                preexec_fn=die_with_edgekit(),  # noqa: PLW1509 - libc looked up before the fork
            )
        except OSError as exc:
            return RunResult(command, 127, "", f"{argv[0]}: {exc}", time.monotonic() - start)
        out, err = bytearray(), bytearray()
        streams = _Streams(proc, out, err, on_output)
        try:
            self._wait(proc, streams, start + timeout, command)
        except subprocess.TimeoutExpired:
            _kill_group(proc, streams)
            stopped = RemoteTimeout(
                f"`{shown_command(command)}` did not finish within {timeout:g} s and was stopped",
                where=f"{self.name} (local)",
            )
            stopped.stdout, stopped.stderr, stopped.pgid = (  # type: ignore[attr-defined]
                out.decode(errors="replace"),
                err.decode(errors="replace"),
                proc.pid,
            )
            raise stopped from None
        except Interrupted:
            raise  # _wait stopped the group already
        except (
            BaseException
        ):  # on_output failed (edgekit's stdout piped into `head`), a bug: the child never outlives it
            streams.on_output = None
            _kill_group(proc, streams)
            raise
        return RunResult(
            command,
            proc.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - start,
        )

    def _wait(self, proc: subprocess.Popen[bytes], streams: _Streams, deadline: float, command: str) -> None:
        """Read the command's output in slices until it ends, so Ctrl-C (interrupt(), from the main thread) stops
        the child's group."""
        while True:
            try:
                streams.read(max(0.0, min(0.2, deadline - time.monotonic())))
                if streams.done() and proc.poll() is not None:
                    return
            except KeyboardInterrupt:  # Ctrl-C in this thread: the child runs in a session of its own
                self._interrupt.set()
            if not self._interrupt.is_set() and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(command, 0)
            if self._interrupt.is_set():
                _kill_group(proc, streams)
                raise Interrupted(
                    f"`{shown_command(command)}` stopped (Ctrl-C or SIGTERM)", where=f"{self.name} (local)"
                ) from None

    def interrupt(self) -> None:
        """Ctrl-C from another thread: the running command's process group is killed."""
        self._interrupt.set()

    def resume_after_interrupt(self) -> bool:
        self._interrupt.clear()
        return True

    def close(self) -> None:
        pass


def make_work_dir(target: Target) -> Path:
    """The local target's work dir, made: its `work_dir` (a leading `~/` or a relative path is the home's), else
    data_dir()/local/<name>. One that cannot be made or written (under a file, in /proc, read-only) is a
    WorkDirError naming the field and the target file (NotADirectoryError was an internal error)."""
    given = "work_dir" in target.model_fields_set
    path = Path(target.work_dir).expanduser() if given else data_dir() / "local" / target.name
    if given and not path.is_absolute():  # the home's, as an ssh device's sftp reads it (it was the cwd's)
        path = Path.home() / path  # (the default follows the data dir, relative or not)
    problem = _unmade(path)
    if problem is not None:
        raise work_dir_error(target, path, problem)
    return path


def work_dir_error(target: Target, path: Path, problem: str) -> WorkDirError:
    """As an SSH device's (transport/ssh_files.py): which folder, why, the field, what to try."""
    given = "work_dir" in target.model_fields_set
    shown = str(path) if given else f"{path} (the default: EDGEKIT_HOME's local/{target.name})"
    return WorkDirError(
        f"the work dir {shown} cannot be created or written on this machine: {problem}",
        path=str(path),
        why=problem,
        where=f"this machine (target {target.name}"
        + (f", field `work_dir`: {target.work_dir!r})" if given else ")"),
        hint="give a work dir this user can write: --set work_dir=PATH (e.g. ~/edgekit-work), or `work_dir:` in "
        f"{target.source or 'the target file'}"
        + ("" if given else "; or EDGEKIT_HOME=PATH, a data folder this user can write"),
    )


def _unmade(path: Path) -> str | None:
    """Make the folder `path` (parents too); why it cannot be made or written by this user, or None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"mkdir: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    if not os.access(path, os.W_OK | os.X_OK):
        try:  # a disk remounted read-only fails access() too: a device fault (exit 1), not the path (exit 2)
            read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        if read_only:  # the file system's doing, not this user's
            return "its file system is mounted read-only (Read-only file system)"
        return "the folder is not writable by this user"
    return None


HOST_LOCK = "edgekit-host.lock"
LOCK_LINK = ".edgekit.lock"  # edgekit.deploy.request.LOCK_REMOTE (the transports do not import deploy)


def host_lock_path() -> Path:
    """The machine's one lock file for benchmarks on its CPU: EDGEKIT_HOST_LOCK when set (a container whose
    /run/lock is its own, or processes that share the CPU but not a /run/lock: give each the same path; the test
    suite's two workers each their own), else in /run/lock, else /tmp, whichever is a folder every user may write (a
    property of the machine, so every user and data home picks the same), else the temp dir."""
    given = os.environ.get("EDGEKIT_HOST_LOCK")
    if given:
        return Path(given).expanduser()
    for folder in (Path("/run/lock"), Path("/tmp")):
        try:  # a read-only mount keeps its 1777 mode: it is not writable by anyone
            if (
                folder.is_dir()
                and folder.stat().st_mode & stat.S_IWOTH
                and not os.statvfs(folder).f_flag & os.ST_RDONLY
            ):
                return folder / HOST_LOCK
        except OSError:
            continue
    return Path(tempfile.gettempdir()) / HOST_LOCK


def _openable_lock(path: Path) -> bool:
    """Make `path` if missing (mode 0666 whatever the umask: other users' agents open it too) and tell whether
    this user can open it as the agent does (read-write, O_CREAT)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o666)
    except OSError:
        pass
    finally:
        os.close(fd)
    return True


def _link_host_lock(work_dir: Path) -> None:
    """Point the work dir's lock at the machine's (host_lock_path(), or this user's own beside it when that one
    cannot be opened). A machine without a usable shared folder keeps the work dir's own lock file."""
    shared = host_lock_path()
    link = work_dir / LOCK_LINK
    if not _openable_lock(shared):
        shared = shared.with_name(f"edgekit-host-{os.geteuid()}.lock")
        if not _openable_lock(
            shared
        ):  # the work dir's own lock, not a link an earlier run left to a lost file
            if link.is_symlink():
                link.unlink(missing_ok=True)
            return
    try:
        if link.is_symlink() and os.readlink(link) == str(shared):
            return
        tmp = work_dir / f"{LOCK_LINK}.{os.getpid()}.{threading.get_ident()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(shared)
        tmp.replace(link)
    except OSError:
        return  # a work dir that takes no symlink keeps its own lock


class _Streams:
    """A running command's stdout and stderr, read as they come into bounded buffers (keep_bounded); stdout is
    also passed to `on_output` chunk by chunk (the agent's measurement lines, said as they arrive)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        out: bytearray,
        err: bytearray,
        on_output: Callable[[str], None] | None,
    ) -> None:
        assert proc.stdout is not None and proc.stderr is not None  # Popen(stdout=PIPE, stderr=PIPE)
        self.on_output = on_output
        self.open: dict[int, tuple[IO[bytes], bytearray]] = {
            proc.stdout.fileno(): (proc.stdout, out),
            proc.stderr.fileno(): (proc.stderr, err),
        }
        self.stdout = proc.stdout.fileno()
        # poll, not select(): select() refuses a descriptor numbered 1024 or more (a long deploy's open files)
        self.selector = selectors.DefaultSelector()
        for fd in self.open:
            self.selector.register(fd, selectors.EVENT_READ)

    def done(self) -> bool:
        return not self.open

    def read(self, timeout: float) -> None:
        """What the command wrote within `timeout` seconds (or nothing: sleeps that long)."""
        if not self.open:
            time.sleep(timeout)
            return
        for key, _ in self.selector.select(timeout):
            fd = int(key.fd)
            buf = self.open[fd][1]
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self._close(fd)
                continue
            buf += chunk
            keep_bounded(buf)
            if fd == self.stdout and self.on_output is not None:
                self.on_output(chunk.decode(errors="replace"))  # the agent's lines are ASCII JSON

    def drain(self, until: float) -> None:
        """Read on until both streams end or `until` (monotonic) passes; then close what is left open."""
        while self.open and time.monotonic() < until:
            self.read(min(0.1, max(0.0, until - time.monotonic())))
        for fd in list(self.open):
            self._close(fd)

    def _close(self, fd: int) -> None:
        self.selector.unregister(fd)
        self.open.pop(fd)[0].close()
        if not self.open:
            self.selector.close()


def _kill_group(proc: subprocess.Popen[bytes], streams: _Streams) -> None:
    """TERM, then KILL, the command's whole process group (it runs in a session of its own), reading its
    output meanwhile (a child blocked on a full pipe could not end)."""
    for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        until = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < until:
            streams.read(0.05)
        if proc.poll() is None:
            continue
        try:  # the leader is gone; members that ignored TERM go too
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        streams.drain(time.monotonic() + 1.0)
        return
    streams.drain(time.monotonic())
