"""The Transport API every device speaks: connect, put (sha256-checked, atomic, skips unchanged), run
(with a timeout), get, close. A transport is a context manager and connects lazily."""

from __future__ import annotations

import abc
from collections.abc import Callable
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
            env: dict[str, str] | None = None, on_output: Callable[[str], None] | None = None) -> RunResult:
        """Run argv (each element shell-quoted) and return its exit status and output. On timeout the
        remote process is killed and RemoteTimeout raised. `on_output` gets stdout text as it arrives (as
        soon as the transport can deliver it: live over SSH, at the end locally), for progress."""

    @abc.abstractmethod
    def mkdir(self, remote: str) -> None:
        """mkdir -p."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def free_bytes(self, remote: str = ".") -> int | None:
        """Bytes free for this user where `remote` would be written; None when the device cannot say."""
        return None

    def bytes_to_send(self, pairs: list[tuple[Path, str]]) -> int:
        """Bytes that `put` of each (local, remote) pair would send (files the device lacks or holds different)."""
        return sum(Path(local).stat().st_size for local, _remote in pairs)
