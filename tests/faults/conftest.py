"""Fault-injection helpers: run the real `edgekit` command and measure how it fails (exit code, time, memory)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from procs import mount_tmpfs

EDGEKIT = [str(Path(sys.executable).parent / "edgekit")]


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float  # the largest child seen so far in this test process (an upper bound for this run)

    @property
    def first_error_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return next((line for line in lines if line.startswith("error")), lines[0] if lines else "")


def run_edgekit(
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    memory_mb: int | None = None,
    cwd: Path | None = None,
) -> Outcome:
    """`edgekit ARGS` in a child process; `memory_mb` caps its address space (a bomb fails instead of swapping)."""

    def limit() -> None:
        if memory_mb:
            size = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    start = time.perf_counter()
    proc = subprocess.run(
        [*EDGEKIT, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        preexec_fn=limit,
        cwd=cwd,
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return Outcome(proc.returncode, proc.stdout, proc.stderr, seconds, peak)


@pytest.fixture()
def edgekit_cli() -> object:
    return run_edgekit


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs: room for the tiny recipe's push, not for much more."""
    with mount_tmpfs(tmp_path / "small-disk", "3m") as mnt:
        yield mnt
