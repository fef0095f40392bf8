"""Guest processes run side by side under the counting emulator (the ncnn-int8 speed plan, `edgekit profile`):
their scratch folder under the cache's work folder, their death with edgekit, and stopping them on an interrupt.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from edgekit import paths
from edgekit.child_death import die_with_edgekit
from edgekit.errors import EmulatorError


@contextlib.contextmanager
def scratch(kind: str) -> Iterator[Path]:
    """A scratch folder for guest runs under the cache's work folder (paths.work_dir), removed on every way out.
    Not in /tmp: one a kill -9 leaves behind (/tmp/edgekit-plan-*, /tmp/edgekit-profile-*) was found by nothing;
    there it is a leftover `edgekit cache` lists and `edgekit cache prune` removes after a day."""
    folder = paths.work_dir(kind)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Guests:
    """The guest processes of profiles run side by side (the ncnn-int8 speed plan: a thread per guest, more runs
    queued). An interrupt (Ctrl-C, SIGTERM: KeyboardInterrupt in the main thread) reaches none of those threads, so
    the plan went on until the running guests finished and the queued ones had started too (exit 130 after 21 s on
    tiny, minutes on a zoo model: `timeout` or a cancelled CI job then SIGKILLed edgekit). `stop` kills the running
    guests and refuses new ones: their threads end at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self.stopped = False

    def start(self, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        with self._lock:
            if self.stopped:
                raise EmulatorError("profiling stopped (Ctrl-C or SIGTERM) before this guest run started")
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                preexec_fn=die_with_edgekit(),  # noqa: PLW1509 - set between fork and exec, libc looked up before
            )
            self._running.add(proc)
        return proc

    def ended(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._running.discard(proc)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            for proc in self._running:
                if proc.poll() is None:
                    proc.kill()
