"""The host-CPU lock every target's run stage holds (edgekit/deploy/session.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class HostCpu:
    """The host's cores are shared by the host benchmark and every emulated device (qemu runs here), so the
    host's timing stage runs alone (exclusive) while emulated devices may share (shared) with each other."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def hold(self, exclusive: bool) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and (not exclusive or self._shared == 0))
            if exclusive:
                self._exclusive = True
            else:
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
