"""A deploy whose results cannot be written where they belong (the store's disk full, the data dir's disk full)
keeps its measurements somewhere with room and says where, at a normal end and on Ctrl-C: real `edgekit deploy`
runs on this host (`--target local`), real SQLite files, real full disks (small tmpfs mounts)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from procs import fill_disk, mount_tmpfs

from edgekit.results import DeployResult

EDGEKIT = str(Path(sys.executable).parent / "edgekit")
TINY = Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml"


@pytest.fixture()
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB tmpfs (room for the tiny recipe's conversions and a store), unmounted after the test."""
    with mount_tmpfs(tmp_path / "disk", "40m") as mnt:
        yield mnt


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slow tiny recipe's conversion cache, made once: each test copies it into its own data dir (the faults
    under test come while measuring; converting again in each cost 15 s of onnx2tf)."""
    folder = tmp_path_factory.mktemp("converted")
    home = folder / "home"
    done = subprocess.run(
        [EDGEKIT, "convert", str(_recipe(folder))],
        capture_output=True,
        text=True,
        env={**os.environ, "EDGEKIT_HOME": str(home)},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return home / "cache"


def _recipe(tmp_path: Path) -> Path:
    """The tiny recipe, timed long enough (about 2 s an artifact) for a fault to land between two of them."""
    recipe = yaml.safe_load(TINY.read_text())
    recipe["formats"] = ["tflite-fp32", "ncnn-fp32"]
    recipe["benchmark"] = {"warmup": 2, "repeat": 1000, "number": 200, "threads": [1], "cooldown_s": 0}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _deploy(
    tmp_path: Path, env: dict[str, str], *args: str, fill: Path, cache: Path, sig: int | None = None
) -> tuple[int, str]:
    """`edgekit deploy` of the slow tiny recipe to this host, its conversions copied from `cache` into the data
    dir; once the first artifact is measured, `fill`'s disk is filled (and `sig` sent). Its exit code and its
    output (stdout and stderr together)."""
    shutil.copytree(cache, Path(env["EDGEKIT_HOME"]) / "cache")
    cmd = [EDGEKIT, "deploy", str(_recipe(tmp_path)), "--target", "local", "--no-host", *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200", **env},
        cwd=tmp_path,
    )
    lines = []
    try:
        assert proc.stdout is not None
        fired = False
        for line in proc.stdout:
            lines.append(line)
            if not fired and re.search(r"tflite-fp32 x1 ok", line):
                fired = True
                fill_disk(fill)
                if sig is not None:
                    proc.send_signal(sig)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    out = "".join(lines)
    assert fired, out[-3000:]
    return code, out


def _measured(path: Path) -> list[str]:
    result = DeployResult.model_validate_json(path.read_text())
    return [m.artifact for r in result.runs if r.agent for m in r.agent.measurements if m.status == "ok"]


def _import(kept: Path, store: Path, home: Path) -> str:
    done = subprocess.run(
        [EDGEKIT, "runs", "import", str(kept), "--store", str(store)],
        capture_output=True,
        text=True,
        env={**os.environ, "EDGEKIT_HOME": str(home)},
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_ctrl_c_while_the_store_disk_is_full_keeps_the_measurements_in_a_file(
    tmp_path: Path, disk: Path, converted: Path
) -> None:
    """Ctrl-C with the store on a full disk: the interrupted run's record failed as 'cannot open or migrate the
    results store' with a server hint, exit 1, and nothing was kept anywhere (the device's folder already
    removed). Now the result goes to the data dir's unrecorded/ with the import command, and the exit is 130."""
    home = tmp_path / "home"
    store = disk / "st" / "s.sqlite"
    store.parent.mkdir()
    start = time.monotonic()
    code, out = _deploy(
        tmp_path,
        {"EDGEKIT_HOME": str(home)},
        "--store",
        str(store),
        fill=disk,
        cache=converted,
        sig=signal.SIGINT,
    )
    assert code == 130, out[-3000:]
    assert time.monotonic() - start < 120
    (kept,) = (home / "unrecorded").glob("*.json")
    assert "tflite-fp32" in _measured(kept)
    assert f"the results are kept in {kept}" in out, out[-3000:]
    assert "edgekit runs import" in out and "DiskFull" in out and str(store.parent) in out, out[-3000:]
    assert "that the server is up" not in out, out[-3000:]
    assert "recorded as run 1" in _import(kept, tmp_path / "later.sqlite", home)


def test_a_full_data_disk_at_the_end_prints_the_table_and_keeps_the_result_in_the_temp_folder(
    tmp_path: Path, disk: Path, converted: Path
) -> None:
    """EDGEKIT_HOME on a disk that fills while measuring: the store could not record the run, the unrecorded file
    could not be written either, and that OutputFileError ('give a path in a folder you can write': the user gave
    none) escaped before the table, the store's error unsaid, the measurements gone. Now the table is printed, the
    error names the store's failure and the full disk, and the result is kept in the system's temporary folder."""
    home, spare = disk / "home", tmp_path / "tmp"
    spare.mkdir()
    code, out = _deploy(
        tmp_path, {"EDGEKIT_HOME": str(home), "TMPDIR": str(spare)}, fill=disk, cache=converted
    )
    assert code == 1, out[-3000:]
    assert "tiny on local" in out and "p50" in out, out[-3000:]  # the table
    assert "error (StoreError)" in out and "cannot open or migrate the results store" in out, out[-3000:]
    assert f"DiskFull: no space left on the disk holding {home}" in out, out[-3000:]
    assert "give a path in a folder you can write" not in out, out[-3000:]
    (kept,) = (spare / f"edgekit-unrecorded-{os.getuid()}").glob("*.json")
    assert f"the results are kept in {kept}" in out and "edgekit runs import" in out, out[-3000:]
    assert "tflite-fp32" in _measured(kept)
    assert "recorded as run 1" in _import(kept, tmp_path / "later.sqlite", tmp_path / "home2")


def test_no_disk_with_room_anywhere_is_said_after_the_table(
    tmp_path: Path, disk: Path, converted: Path
) -> None:
    """The data dir's and the temporary folder's disks both full: nothing can keep the result, which is said (the
    full disk named, the measurements only in the table printed above), exit 1; not an OutputFileError before the
    table."""
    home, spare = disk / "home", disk / "tmp"
    spare.mkdir()  # TMPDIR must exist, or Python's temporary folder is /tmp
    code, out = _deploy(
        tmp_path, {"EDGEKIT_HOME": str(home), "TMPDIR": str(spare)}, fill=disk, cache=converted
    )
    assert code == 1, out[-3000:]
    assert "tiny on local" in out and "error (StoreError)" in out, out[-3000:]
    assert "could not be kept in a file either" in out and "DiskFull" in out, out[-3000:]
    assert "only in what was printed" in out, out[-3000:]


def test_a_sqlite_store_on_a_full_disk_says_the_disk_not_the_server(disk: Path) -> None:
    """Opening a SQLite store whose disk is full said 'disk I/O error' with the hint 'check the URL, that the server
    is up and the file is writable'. Its hint is now the full disk, named, with its free space."""
    from datetime import UTC, datetime

    import numpy as np

    from edgekit.errors import StoreError
    from edgekit.report.synthetic import synthetic_result
    from edgekit.store import open_store

    url = str(disk / "s.sqlite")
    with open_store(url):
        pass
    fill_disk(disk)
    result = synthetic_result(datetime(2026, 3, 1, tzinfo=UTC), rng=np.random.default_rng(0))
    with pytest.raises(StoreError) as failed, open_store(url) as store:
        for _ in range(20):
            store.record(result)
    hint = failed.value.hint or ""
    assert f"DiskFull: no space left on the disk holding {disk}" in hint and "MB free" in hint, str(
        failed.value
    )
    assert "server" not in hint, str(failed.value)


def test_ctrl_c_with_no_store_and_no_json_keeps_the_measurements_in_a_file(
    tmp_path: Path, disk: Path, converted: Path
) -> None:
    """`deploy --no-store` without --json, then Ctrl-C: 'interrupted: kept 1 measurements' while nothing was
    written anywhere. The result goes to the data dir's unrecorded/, named, as a failed deploy's does."""
    home = tmp_path / "home"
    code, out = _deploy(
        tmp_path, {"EDGEKIT_HOME": str(home)}, "--no-store", fill=disk, cache=converted, sig=signal.SIGINT
    )
    assert code == 130, out[-3000:]
    (kept,) = (home / "unrecorded").glob("*.json")
    assert "tflite-fp32" in _measured(kept)
    assert f"results: {kept}" in " ".join(out.split()), out[-3000:]


def test_a_read_only_data_dir_is_named_not_a_bug(tmp_path: Path, converted: Path) -> None:
    """EDGEKIT_HOME on a read-only file system (its conversions cached, runs/ there): the deploy's run folder could
    not be made and that was 'internal error (OSError) ... this is a bug in edgekit', exit 1. Now it is the named
    error of EDGEKIT_HOME (exit 2, as `edgekit convert` gives), said before any agent runs."""
    home = tmp_path / "home"
    shutil.copytree(converted, home / "cache")
    (home / "runs").mkdir()
    mounted = subprocess.run(["mount", "--bind", str(home), str(home)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(home)], check=True, capture_output=True)
        cmd = [
            EDGEKIT,
            "deploy",
            str(_recipe(tmp_path)),
            "--target",
            "local",
            "--no-host",
            "-f",
            "tflite-fp32",
        ]
        done = subprocess.run(
            [*cmd, "--store", str(tmp_path / "s.sqlite"), "--set", f"work_dir={tmp_path / 'work'}"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200", "EDGEKIT_HOME": str(home)},
            cwd=tmp_path,
            timeout=300,
        )
    finally:
        subprocess.run(["umount", str(home)], check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-3000:]
    assert "this is a bug" not in out and "Traceback" not in out, out[-3000:]
    assert "$EDGEKIT_HOME" in out and "Read-only file system" in out, out[-3000:]
    assert " x1 " not in out, out[-3000:]  # nothing measured


def test_a_closed_terminal_ends_the_run_as_sigterm_does_and_records_it(
    tmp_path: Path, converted: Path
) -> None:
    """edgekit on a terminal (a real pty, its controlling terminal) that closes mid-run, as when an SSH session
    ends: the SIGHUP killed it at once (exit 129), nothing recorded in the store, no import line. Now it stops as
    for SIGTERM, its output to the gone terminal dropped: exit 130, the run recorded as interrupted."""
    import pty

    from edgekit.store import open_store

    home, store = tmp_path / "home", tmp_path / "s.sqlite"
    shutil.copytree(converted, home / "cache")
    cmd = [EDGEKIT, "deploy", str(_recipe(tmp_path)), "--target", "local", "--no-host", "--store", str(store)]
    leader = "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    leader += "os.execv(sys.argv[1], sys.argv[1:])"  # edgekit, the session leader of the terminal
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", leader, *cmd],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "COLUMNS": "200", "EDGEKIT_HOME": str(home)},
        cwd=tmp_path,
    )
    os.close(slave)
    said = b""
    try:
        while b"tflite-fp32 x1 ok" not in said:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: edgekit is gone
                break
            if not chunk:
                break
            said += chunk
        os.close(master)  # the terminal closes: the kernel sends SIGHUP to its session leader
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"tflite-fp32 x1 ok" in said, said[-3000:]
    assert code == 130, (code, said[-3000:])
    with open_store(str(store)) as db:
        (run,) = db.runs()
        result = db.load(run.id)
    (target_run,) = result.runs
    assert target_run.interrupted and target_run.agent is not None
    assert any(m.status == "ok" for m in target_run.agent.measurements)


def test_a_json_disk_that_fills_mid_deploy_points_to_the_recorded_table(
    tmp_path: Path, disk: Path, converted: Path
) -> None:
    """--json on a disk that fills while measuring: exit 1 and the run recorded, but no table and no route were
    printed, only 'recorded as run 1': what was measured was not seen. Now the line names `edgekit runs show 1`
    with the store, which shows them."""
    home, store = tmp_path / "home", tmp_path / "s.sqlite"
    code, out = _deploy(
        tmp_path,
        {"EDGEKIT_HOME": str(home)},
        "--store",
        str(store),
        "--json",
        str(disk / "run.json"),
        fill=disk,
        cache=converted,
    )
    assert code == 1 and "OutputFileError" in out, out[-3000:]
    shown = f"`edgekit runs show 1 --store {store}` shows its table and route"
    assert "recorded as run 1" in out and shown in out, out[-3000:]
    done = subprocess.run(
        [EDGEKIT, "runs", "show", "1", "--store", str(store)],
        capture_output=True,
        text=True,
        env={**os.environ, "EDGEKIT_HOME": str(home), "COLUMNS": "200"},
        timeout=120,
    )
    assert done.returncode == 0 and "tflite-fp32" in done.stdout and "route" in done.stdout, done.stdout[
        -3000:
    ]
