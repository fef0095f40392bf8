"""The prune edgekit runs in a device's work dir at each connect, run by a real shell on real folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from edgekit.transport.work_prune import device_prune_script


def _script(work_dir: Path) -> str:
    return device_prune_script(str(work_dir), ())  # no partial uploads of this connection


def _folder(path: Path, days_old: float) -> Path:
    path.mkdir(parents=True)
    (path / "file").write_text("x")
    then = time.time() - days_old * 86400
    os.utime(path, (then, then))
    return path


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_the_prune_removes_only_edgekit_s_own_old_folders(tmp_path: Path, shell: str) -> None:
    """Every folder under runs/ older than a day and under artifacts/ older than 14 days was deleted, whatever
    made it: with work_dir set to a folder of the user's (the disk-space hint's `--set work_dir=PATH`), their
    artifacts/my-trained-model-2025 and runs/experiment-17 went with edgekit's."""
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell} here")
    w = tmp_path / "work dir"
    old_run = _folder(w / "runs" / "20261101-101010-a1b2c3-pi4", 2)
    old_bench = _folder(w / "runs" / "bench-20261101-101010-a1b2c3-pi5-emu", 2)
    new_run = _folder(w / "runs" / "20261205-101010-d4e5f6-pi4", 0.1)
    old_artifact = _folder(w / "artifacts" / "0123456789abcdef", 20)
    theirs = [
        _folder(w / "runs" / "experiment-17", 2),
        _folder(w / "artifacts" / "my-trained-model-2025", 20),
        _folder(w / "artifacts" / "0123456789ABCDEF", 20),  # not the lower-case hex edgekit writes
    ]
    subprocess.run([shell, "-c", _script(w)], check=True, timeout=60)
    assert not old_run.exists() and not old_bench.exists() and not old_artifact.exists()
    assert new_run.exists()
    assert all(p.exists() for p in theirs)


def test_the_size_cap_removes_only_edgekit_s_own_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the size cap, the oldest day-old artifact folders went whatever their names."""
    from edgekit.transport import work_prune

    monkeypatch.setattr(work_prune, "PRUNE_ARTIFACT_MB", 0)  # every day-old folder is over the cap
    w = tmp_path / "w"
    mine = _folder(w / "artifacts" / "fedcba9876543210", 2)
    fresh = _folder(w / "artifacts" / "0011223344556677", 0.1)
    theirs = _folder(w / "artifacts" / "checkpoints", 2)
    subprocess.run(["sh", "-c", _script(w)], check=True, timeout=60)
    assert not mine.exists() and fresh.exists() and theirs.exists()


def test_a_partial_whose_process_proc_hides_is_not_taken_for_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """owner_gone read 'cannot read /proc/PID/stat' as 'gone': under /proc's hidepid (or ProtectProc=invisible)
    another user's processes are invisible, so a colleague's connect to the same device account removed a live
    upload. A hidden pid now counts as gone only when no process holds it."""
    from edgekit.transport import work_prune
    from edgekit.transport.work_prune import owner_gone, partial_name

    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        mine = partial_name("model.onnx")
        assert not owner_gone(mine)  # this process: readable, running
        tag = mine.split(".edgekit-", 1)[1].split("p", 1)[0]
        start = work_prune._started(live.pid)
        live_name = f".model.onnx.edgekit-{tag}p{live.pid}t{start}-0011aabb"
        dead_name = f".model.onnx.edgekit-{tag}p{dead.pid}t{start}-0011aabb"
        assert not owner_gone(live_name) and owner_gone(dead_name)
        monkeypatch.setattr(work_prune, "_started", lambda pid: None)  # /proc hides every process (hidepid)
        assert not owner_gone(live_name), "a live process hidden from /proc was taken for gone"
        assert owner_gone(dead_name)  # no process holds that pid
    finally:
        live.kill()
        live.wait()
