"""The Transport API every device speaks: connect, put (sha256-checked, atomic, skips unchanged), run
(with a timeout), get, close. A transport is a context manager and connects lazily.

The link-control calls (`reconnect`, `usable`, `kill_group`, `sever`, `interrupt`) have defaults for a transport
whose link cannot drop (local): a session calls them on any transport without asking which one it has."""

from __future__ import annotations

import abc
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PutResult:
    local: Path
    remote: str
    sha256: str
    bytes_sent: int  # 0 when the device already had the same file
    skipped: bool


@dataclass(frozen=True)
class RunResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def shown_command(command: str, limit: int = 100) -> str:
    """A command for a message: its first line, at most `limit` characters (a `python -c SCRIPT` quoted the whole
    1.8 KB probe script into a timeout's message)."""
    first = command.split("\n", 1)[0]
    if first == command and len(command) <= limit:
        return command
    return f"{first[:limit].rstrip()}... ({len(command)} characters)"


class Transport(abc.ABC):
    """One device connection. Remote paths are POSIX strings; every path and argument is shell-quoted."""

    name: str
    work_dir: str  # the device folder relative remote paths resolve against ("" until an SSH link is open)

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> Transport:
        """Open the link now (every other call opens it on first use); returns self."""
        return self

    def reconnect(self) -> bool:
        """After a lost or severed link: a fresh connection; False when the device cannot be reached."""
        return True

    def reconnect_within(
        self, seconds: float, stopped: Callable[[], bool] = lambda: False, pause: float = 1.0
    ) -> bool:
        """After a lost link: `reconnect()`, tried again every `pause` s until `seconds` have passed (a link back
        a moment later: a Wi-Fi blip, a device's sshd restarting), each attempt bounded by the target's
        connect_timeout; False when the device was not reached by then (no attempt when `seconds` is not above 0),
        or at once when `stopped()` (a Ctrl-C: finishing was asked for, not waiting on a lost link)."""
        deadline = time.monotonic() + seconds
        while not stopped() and time.monotonic() < deadline:
            if self.reconnect():
                return True
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
        return False

    @property
    def usable(self) -> bool:
        """Connected (or able to connect) and not severed: worth pulling results and cleaning up."""
        return True

    def kill_group(self, pgid: int) -> str:
        """Stop what is left of a command of an earlier connection (its process group); '' when none is left."""
        return ""

    def sever(self, reason: str) -> None:
        """Cut the link from any thread, so every blocked call fails (the whole-run deadline)."""
        return None  # a link that cannot drop has nothing to cut

    def interrupt(self) -> None:
        """Ctrl-C from another thread: stop the running command."""
        return None  # a transport whose commands cannot be stopped from outside: they end by their timeout

    def resume_after_interrupt(self) -> bool:
        """The command a Ctrl-C stopped has returned: allow the calls that fetch what was measured and remove the
        run folder (each under its own deadline). False when the link was cut meanwhile: nothing more can be done
        on it."""
        return True

    @abc.abstractmethod
    def put(self, local: Path, remote: str) -> PutResult:
        """Upload atomically (temp name, sha256 verified on the device, rename); skip if already identical."""

    def put_many(self, pairs: list[tuple[Path, str]], dirs: Sequence[str] = ()) -> list[PutResult]:
        """put() of each (local, remote) pair, in order, then mkdir() of each of `dirs` (a transport may batch
        the device's round trips)."""
        done = [self.put(local, remote) for local, remote in pairs]
        for folder in dirs:
            self.mkdir(folder)
        return done

    @abc.abstractmethod
    def get(self, remote: str, local: Path) -> Path:
        """Download one file."""

    @abc.abstractmethod
    def run(
        self,
        argv: list[str],
        *,
        timeout: float,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> RunResult:
        """Run argv (each element shell-quoted) and return its exit status and output. On timeout the
        remote process is killed and RemoteTimeout raised. `on_output` gets stdout text as it arrives (as
        soon as the transport can deliver it: live over SSH, at the end locally), for progress."""

    @abc.abstractmethod
    def mkdir(self, remote: str) -> None:
        """mkdir -p."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def lost_hold(self) -> str | None:
        """After close(): why the device may have served someone else's work during the run (a lab place taken
        from this run before it ended: who holds it now); None for a transport that holds nothing."""
        return None

    def free_bytes(self, remote: str = ".") -> int | None:
        """Bytes free for this user where `remote` would be written; None when the device cannot say."""
        return None

    def bytes_to_send(self, pairs: list[tuple[Path, str]]) -> int:
        """Bytes that `put` of each (local, remote) pair would send (files the device lacks or holds different)."""
        return sum(Path(local).stat().st_size for local, _remote in pairs)

    def upload_room(self, pairs: list[tuple[Path, str]]) -> tuple[int | None, int]:
        """Before a push: the work dir made (WorkDirError when it cannot be), then the bytes free in it (None when
        the device cannot say) and the bytes uploading `pairs` would send (0, not asked, when free is None)."""
        self.mkdir(".")
        free = self.free_bytes(".")
        return free, (self.bytes_to_send(pairs) if free is not None else 0)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a local file, read in 1 MiB blocks (what `put` compares with the device's copy)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_file_atomically(local: Path, dest: Path, where: str) -> PutResult:
    """`put` on a filesystem this process can reach: skip an identical file (touched with its folder, a use: as on a
    device, the work dir's prune keeps what was used lately), else copy to a temporary name beside `dest`, check its
    sha256 and rename (the local transport and the fake one)."""
    from edgekit.errors import TransportError

    local = Path(local)
    if not local.is_file():
        raise TransportError(f"no such local file {local}", where=where)
    digest = sha256_file(local)
    if dest.is_file() and sha256_file(dest) == digest:
        for used in (dest, dest.parent):
            try:
                os.utime(used)
            except OSError:  # a work dir of someone else's files: its prune goes by their own times
                pass
        # another run's prune of the work dir may have taken it meanwhile: one that moved it aside before this
        # touch removes it (work_prune.remove puts back only what was touched after), so it is copied again
        if dest.is_file():
            return PutResult(local, str(dest), digest, 0, True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    from edgekit.transport.work_prune import partial_name

    tmp = dest.with_name(partial_name(dest.name))  # whose it is, as an upload to a device names it
    try:
        shutil.copyfile(local, tmp)
        if sha256_file(tmp) != digest:
            raise TransportError(f"sha256 of the copied {local.name} does not match", where=str(dest))
        os.replace(tmp, dest)
    except BaseException:  # a Ctrl-C, a full disk: the half-written copy went on lying beside the file
        tmp.unlink(missing_ok=True)
        raise
    return PutResult(local, str(dest), digest, local.stat().st_size, False)
