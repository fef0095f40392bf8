"""The Transport API every device speaks: connect, put (sha256-checked, atomic, skips unchanged), run
(with a timeout), get, close. A transport is a context manager and connects lazily."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PutResult:
    local: Path
    remote: str
    sha256: str
    bytes_sent: int  # 0 when the device already had the same file
    skipped: bool


@dataclass(frozen=True)
class RunResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class Transport(abc.ABC):
    """One device connection. Remote paths are POSIX strings; every path and argument is shell-quoted."""

    name: str

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def put(self, local: Path, remote: str) -> PutResult:
        """Upload atomically (temp name, sha256 verified on the device, rename); skip if already identical."""

    @abc.abstractmethod
    def get(self, remote: str, local: Path) -> Path:
        """Download one file."""

    @abc.abstractmethod
    def run(self, argv: list[str], *, timeout: float, cwd: str | None = None,
            env: dict[str, str] | None = None) -> RunResult:
        """Run argv (each element shell-quoted) and return its exit status and output. On timeout the
        remote process is killed and RemoteTimeout raised."""

    @abc.abstractmethod
    def mkdir(self, remote: str) -> None:
        """mkdir -p."""

    @abc.abstractmethod
    def close(self) -> None: ...
