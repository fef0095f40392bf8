"""The deploy's `--json` file: the (partial) DeployResult written atomically after each measurement, from any
target's thread, so a run cut short still leaves what was measured."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from edgekit.errors import OutputFileError
from edgekit.paths import write_atomic
from edgekit.results import DeployResult


class ResultFile:
    """Writes the (partial) DeployResult as JSON, atomically, from any target's thread."""

    def __init__(self, path: Path | None, result: DeployResult) -> None:
        self.path = Path(path) if path else None
        self.result = result
        self._lock = threading.Lock()

    def write(self) -> None:
        if self.path is None:
            return
        with self._lock:
            write_atomic(self.path, self.result.model_dump_json(indent=1))

    def discard(self) -> None:
        """The final write failed: remove the last interim copy, which would read as a run whose targets all
        failed (each starts as failed until measured), never as what was measured."""
        if self.path is not None:
            with self._lock, contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)

    def update(self) -> None:
        """A write while targets measure: a failure (a full disk) must not stop the measuring; the write after
        the targets finish raises it (OutputFileError) once the results are in hand for the store."""
        with contextlib.suppress(OutputFileError):
            self.write()
