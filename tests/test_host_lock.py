"""The host CPU is one per machine: two `edgekit bench --target host` with different data homes (two users, two CI
jobs) time one after the other, the second saying `waiting:` while the first holds the host, as two with the same
home always did. The agent's lock on the host is one file per machine that every user may open."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgekit.formats import Format
from edgekit.recipe import load_recipe

TINY = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def ncnn_param(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny recipe's ncnn-fp32 files copied out of the cache, as a user would have them."""
    from edgekit.convert.pipeline import convert_recipe

    folder = tmp_path_factory.mktemp("host-lock-model")
    (art,) = convert_recipe(load_recipe(TINY), [Format.NCNN_FP32])
    for f in art.files:
        shutil.copy(f, folder / f.name)
    return folder / "model.param"


@pytest.fixture(autouse=True)
def _machine_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite gives each worker a host lock of its own (EDGEKIT_HOST_LOCK, conftest): here, the machine's."""
    monkeypatch.delenv("EDGEKIT_HOST_LOCK", raising=False)


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "EDGEKIT_HOME": str(home), "COLUMNS": "200"}


def test_edgekit_host_lock_names_the_lock_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container with a /run/lock of its own, or the suite's workers: EDGEKIT_HOST_LOCK names the file."""
    from edgekit.transport import local

    monkeypatch.setenv("EDGEKIT_HOST_LOCK", str(tmp_path / "shared" / "host.lock"))
    (tmp_path / "shared").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    local._link_host_lock(work)
    assert os.path.realpath(work / ".edgekit.lock") == str(tmp_path / "shared" / "host.lock")


def _held(lock: Path) -> bool:
    """Whether another process holds the flock on `lock` (tried without waiting, let go at once)."""
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _holders(lock: Path) -> set[int]:
    """The pids holding a flock on `lock`'s file (/proc/locks; the waiters' `->` lines left out)."""
    inode = os.stat(lock).st_ino
    pids = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            pids.add(int(fields[4]))
    return pids


def _signal(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _released(lock: Path, holders: set[int], when: list[float], stop: threading.Event) -> None:
    """Puts the time `holders` no longer hold `lock` in `when` (polled every 20 ms until `stop`)."""
    while not stop.is_set():
        if not _holders(lock) & holders:
            when.append(time.monotonic())
            return
        time.sleep(0.02)


@pytest.mark.integration
def test_two_data_homes_time_the_host_one_after_the_other(ncnn_param: Path, tmp_path: Path) -> None:
    bench = [sys.executable, "-m", "edgekit", "bench", str(ncnn_param), "--target", "host"]
    first = subprocess.Popen(
        [*bench, "--repeat", "2000", "--number", "200"],
        env=_env(tmp_path / "a"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(first.stdout or []), daemon=True)
    reader.start()
    try:
        # the first agent holds its lock (the work dir's .edgekit.lock, request.py's layout) before the second starts
        lock = tmp_path / "a" / "local" / "host" / ".edgekit.lock"
        until = time.monotonic() + 120
        while not _held(lock) and first.poll() is None and time.monotonic() < until:
            time.sleep(0.05)
        assert _held(lock), "".join(lines)
        first_holders = _holders(lock)
        assert first_holders, "".join(lines)
        released: list[float] = []
        stop = threading.Event()
        watch = threading.Thread(target=_released, args=(lock, first_holders, released, stop), daemon=True)
        watch.start()
        # the first agent paused while it holds the host (its flock stays), until the second says it waits: the
        # first's work outlasting the second's start-up was a race a faster CPU or a colder disk could lose
        _signal(first_holders, signal.SIGSTOP)
        resume = threading.Timer(120, _signal, (first_holders, signal.SIGCONT))  # a second that never says it
        resume.start()
        second = subprocess.Popen(
            [*bench, "--repeat", "3"],
            env=_env(tmp_path / "b"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        said_lines: list[str] = []
        for line in second.stdout or []:
            said_lines.append(line)
            if "waiting:" in line:
                break
        resume.cancel()
        _signal(first_holders, signal.SIGCONT)
        said_lines += list(second.stdout or [])
        second.wait(timeout=600)
        second_ended = time.monotonic()
        if second.stdout is not None:
            second.stdout.close()
        stop.set()
        watch.join(timeout=10)
    finally:
        _signal(first_holders if "first_holders" in locals() else set(), signal.SIGCONT)
        if first.poll() is None:
            first.wait(timeout=600)
        reader.join(timeout=10)
        if first.stdout is not None:
            first.stdout.close()
    said = "".join(said_lines)
    assert second.returncode == 0, said
    assert "host: waiting: another benchmark holds the device" in said, said
    # the first's agent gave the host back before the second ended (it may still be printing its table then: the
    # test once asked for the first edgekit to have exited, which a loaded machine did not always give it time for)
    assert released and released[0] <= second_ended, (
        "the second benchmark ended while the first held the host"
    )
    assert first.returncode == 0, "".join(lines)
    assert "waiting:" not in "".join(lines)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_another_user_can_take_the_host_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock a root run left behind is opened (as the agent opens it: read-write, created if missing) by an
    unprivileged user, whose own data home links to the same file."""
    from edgekit.target import Target, TransportKind
    from edgekit.transport.local import LocalTransport

    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "root-home"))
    transport = LocalTransport(Target(name="host", transport=TransportKind.LOCAL))
    shared = os.path.realpath(Path(transport.work_dir) / ".edgekit.lock")
    assert not shared.startswith(str(tmp_path)), "the lock is in the data home, not one per machine"
    opener = "import os, sys; os.close(os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644))"
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", opener, shared],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_a_read_only_run_lock_folder_moves_the_machine_lock_to_tmp(tmp_path: Path) -> None:
    """/run/lock mounted read-only keeps its 1777 mode: it was chosen, no lock could be made there, and each data
    home fell back to a lock of its own (two homes timed the host together again). The lock goes to /tmp."""
    probe = (
        "import os, sys; from pathlib import Path; from edgekit.transport.local import host_lock_path, "
        "_link_host_lock; w = Path(sys.argv[1]); w.mkdir(parents=True, exist_ok=True); _link_host_lock(w); "
        "print(host_lock_path()); print(os.path.realpath(w / '.edgekit.lock'))"
    )
    script = (
        "mount --bind /run/lock /run/lock && mount -o remount,bind,ro /run/lock && "
        f'{sys.executable} -c "$0" {tmp_path / "a"} && {sys.executable} -c "$0" {tmp_path / "b"}'
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"no private read-only mount here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    chosen_a, link_a, chosen_b, link_b = done.stdout.split()
    assert chosen_a == chosen_b == "/tmp/edgekit-host.lock", done.stdout
    assert link_a == link_b == "/tmp/edgekit-host.lock", done.stdout


def test_a_work_dir_keeps_no_link_to_a_lock_it_can_no_longer_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A work dir linked on an earlier run, then no machine lock could be opened (a read-only folder after a
    reboot): the agent opened the old link and failed on it (read-only file system). The link goes; the work dir
    has its own lock file again."""
    from edgekit.transport import local

    work = tmp_path / "work"
    work.mkdir()
    local._link_host_lock(work)
    assert (work / ".edgekit.lock").is_symlink()
    monkeypatch.setattr(local, "_openable_lock", lambda _path: False)
    local._link_host_lock(work)
    assert not (work / ".edgekit.lock").is_symlink()
    os.close(os.open(work / ".edgekit.lock", os.O_RDWR | os.O_CREAT, 0o644))  # as the agent opens it
