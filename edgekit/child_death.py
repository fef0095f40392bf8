"""A child process that dies with this edgekit: a kill -9 of edgekit (a CI job's timeout, the OOM killer) left the
speed plan's qemu guests, the counting qemu and the host agent running, reparented to PID 1. Linux's
PR_SET_PDEATHSIG (SIGKILL), as the onnx2tf child sets it in itself (convert.tool_process.die_with_parent), here
set between fork and exec for a child edgekit starts with subprocess. Its own module, below every package: the
emulated devices' guests (edgekit.emu) and the local transport (edgekit.transport) both start such children."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def die_with_edgekit() -> Callable[[], None] | None:
    """A subprocess preexec_fn making the child die with this edgekit (the thread that starts it must wait for it:
    the signal follows the starting thread); a parent already gone by then ends the child at once. None where it
    cannot be set (not Linux). libc is looked up here, before the fork: the child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent, kill = os.getpid(), int(signal.SIGKILL)

    def preexec() -> None:
        prctl(1, kill, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return preexec
