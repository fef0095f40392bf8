"""The wait on another edgekit's emulator lock is 900 s by default; EDGEKIT_LOCK_WAIT_S sets another (a slow link's
first build takes longer, a CI job wants to fail sooner); a value that is no number of seconds is refused."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from edgekit.emu import locks
from edgekit.errors import UsageError


def test_the_lock_wait_is_set_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "build.lock"
    lock.touch()
    monkeypatch.setenv("EDGEKIT_LOCK_WAIT_S", "0.5")
    holder = subprocess.Popen(
        ["flock", str(lock), "-c", "echo held; exec sleep 30"], stdout=subprocess.PIPE, text=True
    )
    said: list[str] = []
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"  # the lock is flock's
        start = time.monotonic()
        with pytest.raises(locks.LockTimeout, match="waited 0 s"), locks.file_lock(lock, log=said.append):
            pass
        assert time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert any("at most 0 s" in m for m in said), said


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_lock_wait_that_is_no_number_of_seconds_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("EDGEKIT_LOCK_WAIT_S", value)
    with pytest.raises(UsageError, match="EDGEKIT_LOCK_WAIT_S") as err:
        locks.lock_wait_s()
    assert err.value.exit_code == 2
    monkeypatch.delenv("EDGEKIT_LOCK_WAIT_S")
    assert locks.lock_wait_s() == locks.LOCK_WAIT_S
