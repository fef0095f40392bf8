"""The commands that only read (`edgekit runs`, `edgekit report`) read a current store without its write lock: on a
full disk and while another process holds the lock they answer."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import procs
import pytest
from procs import fill_disk, mount_tmpfs

from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result

EDGEKIT = str(Path(sys.executable).parent / "edgekit")


def _run_json(folder: Path) -> Path:
    """A synthetic deploy result from yesterday, as `edgekit deploy --json` writes it."""
    result = synthetic_result(
        datetime.now(UTC) - timedelta(days=1),
        rng=np.random.default_rng(0),
        formats=(Format.TFLITE_FP32,),
        threads=(1,),
        repeat=5,
        recipe="tinyread",
    )
    path = folder / "run.json"
    path.write_text(result.model_dump_json())
    return path


def _edgekit(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return procs.run(*args, home=home, columns=200, timeout=timeout, cwd=home.parent)


@pytest.fixture()
def disk(tmp_path: Path) -> Iterator[Path]:
    with mount_tmpfs(tmp_path / "disk", "30m") as mnt:
        yield mnt


def test_runs_and_report_read_a_store_on_a_full_disk(disk: Path, tmp_path: Path) -> None:
    home = disk / "home"
    done = _edgekit(home, "runs", "import", str(_run_json(tmp_path)))
    assert done.returncode == 0, done.stdout + done.stderr
    fill_disk(disk)
    assert os.statvfs(disk).f_bavail == 0

    runs = _edgekit(home, "runs")
    assert runs.returncode == 0, runs.stdout + runs.stderr
    assert "tinyread" in runs.stdout

    html = tmp_path / "report.html"  # written off the full disk
    report = _edgekit(home, "report", "--since", "30d", "--html", str(html))
    assert report.returncode == 0, report.stdout + report.stderr
    assert "tinyread" in html.read_text()

    show = _edgekit(home, "runs", "show", "1")
    assert show.returncode == 0, show.stdout + show.stderr
    assert "tinyread" in show.stdout


def test_runs_reads_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = _edgekit(home, "runs", "import", str(_run_json(tmp_path)))
    assert done.returncode == 0, done.stdout + done.stderr
    holder = sqlite3.connect(home / "results.sqlite", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as a nightly recording (or sqlite3) holds it
        started = time.monotonic()
        try:
            runs = _edgekit(home, "runs", timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("`edgekit runs` waited for the write lock another process held")
        took = time.monotonic() - started
        assert runs.returncode == 0, runs.stdout + runs.stderr
        assert "tinyread" in runs.stdout
        assert "write lock" not in runs.stderr
        assert took < 20, took
        holder.execute("ROLLBACK")
    finally:
        holder.close()
