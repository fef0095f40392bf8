"""The host-CPU lock every target's run stage holds (edgekit/deploy/session.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class HostCpu:
    """The host's cores are shared by the host benchmark and every emulated device (qemu runs here), so the
    host's timing stage runs alone (exclusive) while emulated devices may share (shared) with each other. A
    waiting exclusive hold goes first: a device's next stage (its run after its upload) waits for it, so the
    host's reference is timed as soon as the stage in progress ends, not after every emulated run."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0

    @contextmanager
    def hold(self, exclusive: bool) -> Iterator[None]:
        with self._cond:
            if exclusive:
                self._exclusive_waiting += 1
                try:
                    self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
                finally:
                    self._exclusive_waiting -= 1
                self._exclusive = True
            else:
                self._cond.wait_for(lambda: not self._exclusive and not self._exclusive_waiting)
                self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                if exclusive:
                    self._exclusive = False
                else:
                    self._shared -= 1
                self._cond.notify_all()
