"""Helpers for tests that run the edgekit CLI as a child process and interrupt it as a terminal would."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def ctrl_c_when(
    proc: subprocess.Popen[str],
    ready: Callable[[], bool],
    *,
    settle: float = 0.0,
    timeout: float = 120,
    sig: int = signal.SIGINT,
    times: int = 1,
) -> tuple[str, str, float]:
    """Once `ready()` (which waits as long as it needs) says so, SIGINT to `proc` (Ctrl-C; or `sig`), then its
    stdout, stderr and the seconds it took to exit. The process is killed if anything fails or it outlives
    `timeout`."""
    try:
        assert ready(), proc.communicate(timeout=60)
        time.sleep(settle)
        start = time.monotonic()
        for n in range(times):  # `timeout` signals the process, then its group; people press Ctrl-C twice
            if n:
                time.sleep(0.05)
            proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=timeout)
        return stdout, stderr, time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
