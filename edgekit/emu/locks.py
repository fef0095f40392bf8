"""Advisory file locks, so two edgekit processes (a test session and a deploy, say) never build the shared
assets or start the same device at once.

A lock another process holds is never waited on in silence or without end: the wait is said once (what it
waits for, the lock file), and after `wait_s` it ends in LockTimeout naming the process that holds the lock
(from /proc/locks) and what to do.
"""

from __future__ import annotations

import fcntl
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from edgekit.errors import EmulatorError, UsageError
from edgekit.flock import exclusive_within

# a device build from nothing downloads about 800 MB: a build of another edgekit is waited on this long
# (EDGEKIT_LOCK_WAIT_S sets another wait: a slow link's first build takes longer, a CI job wants to fail sooner)
LOCK_WAIT_S = 900.0
POLL_S = 0.2


class LockTimeout(EmulatorError):
    """Another process held an emulator lock for longer than the wait allowed."""


def _to_stderr(message: str) -> None:
    print(f"edgekit: {message}", file=sys.stderr, flush=True)


@contextmanager
def file_lock(
    path: Path,
    *,
    what: str = "another edgekit's emulator build/set-up",
    log: Callable[[str], None] | None = None,
    wait_s: float | None = None,
) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the duration of the block. When another
    process holds it, say so (through `log`, else on stderr) and wait for it at most `wait_s` seconds
    (LOCK_WAIT_S by default), then raise LockTimeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        _acquire(fh.fileno(), path, what, log or _to_stderr, lock_wait_s() if wait_s is None else wait_s)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_wait_s() -> float:
    """How long a lock another edgekit holds is waited on: EDGEKIT_LOCK_WAIT_S seconds where set, else
    LOCK_WAIT_S."""
    text = os.environ.get("EDGEKIT_LOCK_WAIT_S", "").strip()
    if not text:
        return LOCK_WAIT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise UsageError(
            f"EDGEKIT_LOCK_WAIT_S={text!r} is no number of seconds",
            where="EDGEKIT_LOCK_WAIT_S",
            hint=f"give seconds (0 or more), or unset it for the default {LOCK_WAIT_S:.0f} s",
        )
    return seconds


def _acquire(fd: int, path: Path, what: str, log: Callable[[str], None], wait_s: float) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    log(f"waiting for {what} (lock {path}, held by {holder(path)}); at most {wait_s:.0f} s")
    try:
        exclusive_within(fd, wait_s, POLL_S)
    except BlockingIOError:
        who = holder(path)
        stop = f"kill {who.split(':')[0].removeprefix('pid ')}" if who.startswith("pid ") else "kill it"
        raise LockTimeout(
            f"waited {wait_s:.0f} s for {what}, which still holds its lock (held by {who})",
            where=str(path),
            hint=f"let it finish and run this again; if it is stuck, stop it ({stop}) first: the lock goes with it",
        ) from None


def holder(path: Path) -> str:
    """Who holds the flock on `path`: "pid N (its command line)", from /proc/locks; "another process" when
    that cannot be told."""
    try:
        st = path.stat()
        locks = Path("/proc/locks").read_text()
    except OSError:
        return "another process"
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in locks.splitlines():
        fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 12345 08:01:67890 0 EOF"; a waiter's has "->"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode and fields[4] != str(os.getpid()):
            pid = int(fields[4])
            try:
                cmd = " ".join(psutil.Process(pid).cmdline())
            except psutil.Error:
                cmd = ""
            return f"pid {pid}" + (f": {cmd[:200]}" if cmd else "")
    return "another process"
