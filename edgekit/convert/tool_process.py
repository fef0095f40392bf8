"""What a converter's child process says about itself: its own peak memory (how it ended is worded by
edgekit.errors.exit_text, for every child process edgekit runs). Stdlib only: the children import it before their
toolchain.

The peak is VmHWM from /proc/self/status: it belongs to the address space, which exec starts afresh. Not
getrusage's ru_maxrss: Linux carries the parent's peak across fork and exec into the child's, so a converter
child of an edgekit that had reached 360 MB reported 360 MB however small it was (MNN's converter, ~47 MB).
Where there is no VmHWM (not Linux) the peak is unknown (None), never a number that may be the parent's.
"""

from __future__ import annotations

import os
import re
import sys

PARENT_ENV = (
    "EDGEKIT_TOOL_PARENT"  # the pid of the edgekit that started a converter child (onnx2tf_run.child_env)
)
PEAK_TAG = (
    "EDGEKIT_PEAK_KB"  # the line a child prints last: `EDGEKIT_PEAK_KB <kB>` or `EDGEKIT_PEAK_KB unknown`
)


def die_with_parent() -> None:
    """Make this converter child die with the edgekit that started it: a `kill -9` of edgekit left onnx2tf
    running for ever, an orphan holding a core and gigabytes. Linux's PR_SET_PDEATHSIG (SIGKILL), set first thing
    in the child; a parent already gone by then (its pid in PARENT_ENV is no longer ours) ends the child at once.
    Elsewhere (not Linux) nothing is set."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = os.environ.get(PARENT_ENV, "")
    if parent.isdigit() and os.getppid() != int(parent):
        os._exit(1)


def own_peak_kb() -> int | None:
    """This process's own peak resident set in kB (VmHWM), None where the kernel does not say it."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_kb_with_children() -> int | None:
    """The larger of this process's own peak and that of the children it waited for (a tool that runs another
    program). A child's ru_maxrss starts from this process's VmHWM at its fork, never edgekit's, so it is theirs."""
    own = own_peak_kb()
    if own is None:
        return None
    import resource

    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def child_figures(start: float) -> dict[str, float | None]:
    """What a converter child writes into its result.json about itself: its peak (MB, with the tools it ran;
    None: unknown), wall seconds since `start` (time.perf_counter) and CPU seconds (its own and its children's:
    comparable on a busy machine, where wall time is not)."""
    import resource
    import time

    usages = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    peak_kb = peak_kb_with_children()  # not ru_maxrss of RUSAGE_SELF: that holds edgekit's own peak
    return {
        "peak_rss_mb": peak_kb / 1024 if peak_kb is not None else None,
        "seconds": time.perf_counter() - start,
        "cpu_s": sum(u.ru_utime + u.ru_stime for u in usages),
    }


def peak_line() -> str:
    """The line a child prints after its tool's output."""
    kb = own_peak_kb()
    return f"{PEAK_TAG} {kb if kb is not None else 'unknown'}"


def peak_mb_from_log(log: str) -> float | None:
    """The peak (MB) of a child's last `EDGEKIT_PEAK_KB` line; None if it printed none or an unknown one."""
    lines = [ln.split() for ln in log.splitlines() if ln.startswith(PEAK_TAG)]
    if not lines or len(lines[-1]) < 2 or not lines[-1][1].isdigit():
        return None
    return int(lines[-1][1]) / 1024.0


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # a terminal's colour and cursor codes (`ESC[0;93m`)
_STAMP = re.compile(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\.\d+ ")  # onnxruntime's log time, to the ns


def plain_output(text: str) -> str:
    """A tool's output as a message carries it: without terminal colour codes (pnnx passes on onnxruntime's
    `ESC[0;93m`) and the time stamps of log lines, so one failure reads the same each run (ncnn-fp32, -fp16 and
    -int8 each run pnnx: three identical failures are said once)."""
    return _STAMP.sub("", _ANSI.sub("", text))
