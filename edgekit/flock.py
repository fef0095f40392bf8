"""A flock taken within a time: the one retry loop edgekit's locks share (the emulator's build and device locks,
edgekit/emu/locks.py; the conversion cache's prune, edgekit/convert/housekeeping.py; a run folder's in-use lock,
edgekit/run_files.py). Each says the wait and names its own error; this only tries."""

from __future__ import annotations

import fcntl
import time
from typing import IO, Any


def exclusive_within(handle: int | IO[Any], wait_s: float, poll_s: float) -> None:
    """LOCK_EX on `handle` (a file or its descriptor), tried at once and then every `poll_s` seconds until
    `wait_s` have passed; BlockingIOError after that (the caller names who holds it and what to do)."""
    _within(handle, fcntl.LOCK_EX, wait_s, poll_s)


def shared_within(handle: int | IO[Any], wait_s: float, poll_s: float) -> None:
    """LOCK_SH, tried as exclusive_within tries LOCK_EX."""
    _within(handle, fcntl.LOCK_SH, wait_s, poll_s)


def _within(handle: int | IO[Any], operation: int, wait_s: float, poll_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
