"""An interrupted ncnn-int8 speed plan: its qemu guests (several side by side, more queued) end with edgekit.

SIGTERM one second into the plan's counting took effect only after the running guests finished, and the queued
ones started after the signal (exit 130 after 21 s on tiny; minutes on yolov5-lite, so `timeout` or a cancelled
CI job SIGKILLed edgekit). A SIGKILL left the guests running, reparented to PID 1, and the temporary folders
/tmp/edgekit-plan-*, /tmp/edgekit-profile-* behind, where `edgekit cache prune` never looks. Real conversions of
the tiny recipe, the plan counted by the counting qemu-user (not the emulated devices' sshd)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "recipes" / "tiny.yaml"
SCRATCH_PREFIXES = ("edgekit-plan-", "edgekit-profile-")


@pytest.fixture(scope="module", autouse=True)
def _plan_counts() -> Iterator[None]:
    from edgekit.convert.ncnn import plan

    with pytest.MonkeyPatch.context() as mp:  # the suite turns the plan off (conftest); on here
        mp.setenv(plan.ENV_SWITCH, "1")
        built = plan.enabled()
    if not built:
        pytest.skip("the speed plan needs the counting plugin and both emulated devices built")
    yield


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for the module: the prepared ONNX and ncnn-fp32 come from the cache the second time."""
    return tmp_path_factory.mktemp("plan-interrupt") / "home"


class Convert:
    """`edgekit convert tiny.yaml -f ncnn-int8` in a child process, its output read as it comes, and every qemu
    guest seen below it (with when it started)."""

    def __init__(self, home: Path, tmp: Path) -> None:
        self.tmpdir = tmp / "tmpdir"
        self.tmpdir.mkdir()
        env = {
            **os.environ,
            "EDGEKIT_HOME": str(home),
            "EDGEKIT_NCNN_SPEED_PLAN": "1",
            "EDGEKIT_PLAN_GUESTS": "2",  # 5 guest runs on tiny: 2 running, 3 queued
            "TMPDIR": str(self.tmpdir),  # where a tempfile folder would go: checked empty of the plan's
            "COLUMNS": "200",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgekit", "convert", str(TINY), "-f", "ncnn-int8"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.guests: dict[int, tuple[psutil.Process, float]] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def look(self) -> None:
        """Note every qemu guest now below edgekit."""
        try:
            below = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return
        for child in below:
            try:
                if child.pid not in self.guests and "qemu-aarch64" in child.name():
                    self.guests[child.pid] = (child, child.create_time())
            except psutil.Error:
                continue

    def counting(self, timeout: float = 600) -> None:
        """Wait until the plan counts, a guest runs, and one second more."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            self.look()
            if self.guests and any("speed plan: counting" in ln for ln in self.lines):
                break
            time.sleep(0.05)
        assert self.guests, f"no qemu guest seen in the speed plan: {''.join(self.lines)[-3000:]}"
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            self.look()
            time.sleep(0.05)

    def alive_guests(self) -> list[psutil.Process]:
        alive = []
        for proc, _started in self.guests.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                continue
        return alive

    def scratch_in_tmpdir(self) -> list[str]:
        return sorted(p.name for p in self.tmpdir.iterdir() if p.name.startswith(SCRATCH_PREFIXES))

    def close(self) -> None:
        for proc, _started in self.guests.values():
            try:
                proc.kill()
            except psutil.Error:
                continue
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture()
def convert(home: Path, tmp_path: Path) -> Iterator[Convert]:
    run = Convert(home, tmp_path)
    try:
        yield run
    finally:
        run.close()


def plan_folders(home: Path) -> list[Path]:
    work = home / "cache" / "work"
    return (
        sorted(p for p in work.iterdir() if p.name.startswith(("plan-", "profile-"))) if work.is_dir() else []
    )


def test_sigterm_during_the_speed_plan_ends_its_guests_and_starts_no_new_one(
    convert: Convert, home: Path
) -> None:
    convert.counting()
    before = set(convert.guests)
    sent = time.time()
    start = time.monotonic()
    convert.proc.send_signal(signal.SIGTERM)
    while convert.proc.poll() is None and time.monotonic() - start < 60:
        convert.look()
        time.sleep(0.02)
    took = time.monotonic() - start
    code = convert.proc.poll()
    out = "".join(convert.lines)[-3000:]
    late = [
        pid for pid, (_p, started) in convert.guests.items() if pid not in before and started > sent + 0.5
    ]
    # killing and reaping the guests and the interpreter's exit on a loaded machine; the old bug took 21-30 s
    assert code == 130 and took < 12, (code, f"{took:.1f} s", out)
    assert not late, f"{len(late)} qemu guests started after the SIGTERM: {out}"
    _gone, alive = psutil.wait_procs(convert.alive_guests(), timeout=2)
    assert not alive, f"qemu guests outlived the interrupted edgekit: {alive}"
    assert not convert.scratch_in_tmpdir() and not plan_folders(home), (
        convert.scratch_in_tmpdir(),
        plan_folders(home),
    )


def test_sigkill_during_the_speed_plan_takes_its_guests_along_and_leaves_prunable_folders(
    convert: Convert, home: Path
) -> None:
    from edgekit.convert import housekeeping

    convert.counting()
    running = convert.alive_guests()
    assert running
    convert.proc.send_signal(signal.SIGKILL)
    convert.proc.wait()
    _gone, alive = psutil.wait_procs(running, timeout=3)
    assert not alive, f"qemu guests outlived a kill -9 of edgekit: {alive}"
    assert not convert.scratch_in_tmpdir(), convert.scratch_in_tmpdir()
    left = plan_folders(home)
    assert any(p.name.startswith("plan-") for p in left) and any(
        p.name.startswith("profile-") for p in left
    ), left
    listed = {e.path for e in housekeeping.scan(home / "cache") if e.kind == "leftover"}
    assert set(left) <= listed, (left, listed)
    later = time.time() + 2 * 24 * 3600  # a day on, `edgekit cache prune` removes them
    pruned = {e.path for e in housekeeping.to_prune(housekeeping.scan(home / "cache"), cutoff=0, now=later)}
    assert set(left) <= pruned
