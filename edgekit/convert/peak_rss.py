"""How much memory a conversion takes: this process's growth plus its children's resident memory, sampled."""

from __future__ import annotations

import threading


class PeakRss:
    """Samples this process's growth plus its children's RSS while a conversion runs (MB)."""

    def __init__(self, interval_s: float = 0.1) -> None:
        import psutil

        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak_mb = 0.0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        import psutil

        total = max(0, self._proc.memory_info().rss - self._base)
        for child in self._proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        self.peak_mb = max(self.peak_mb, total / 2**20)
