"""A device that stops answering (its sshd SIGSTOPped by pid) ends in a named DeviceTimeout within a bounded
time, in every kind of remote operation; the device works again once resumed."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from edgekit.errors import DeviceTimeout, Interrupted
from edgekit.transport import open_transport

pytestmark = pytest.mark.integration
IO_TIMEOUT = 3.0


@contextmanager
def frozen(pid: int, after: float) -> Iterator[list[float]]:
    """SIGSTOP the device's sshd master and every sshd below it after `after` seconds; SIGCONT at exit. Yields a
    list that gets the moment (time.monotonic()) the freeze was done: the timer's thread may run late."""
    stopped: list[int] = []
    frozen_at: list[float] = []

    def freeze() -> None:
        master = psutil.Process(pid)
        for proc in [master, *master.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):  # a session that just ended
                if proc.name() == "sshd":
                    os.kill(proc.pid, signal.SIGSTOP)
                    stopped.append(proc.pid)
        frozen_at.append(time.monotonic())

    timer = threading.Timer(after, freeze)
    timer.start()
    try:
        yield frozen_at
    finally:
        timer.cancel()
        for p in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)


@pytest.fixture()
def quick(pi4_emu):
    return pi4_emu.model_copy(update={"io_timeout": IO_TIMEOUT})


def sshd_pid() -> int:
    from edgekit.emu.runner import running_state

    state = running_state("pi4-emu")
    assert state is not None
    return state.sshd_pid


def test_a_device_frozen_while_a_command_runs_ends_in_device_timeout(quick) -> None:
    with open_transport(quick) as transport:
        transport.connect()
        with (
            frozen(sshd_pid(), after=1.0) as frozen_at,
            pytest.raises(DeviceTimeout, match="stopped answering") as info,
        ):
            transport.run(["sleep", "60"], timeout=40)
        ended = time.monotonic()
    # an emulated device: what to look at is its qemu and sshd here, not a board's power or network
    assert "edgekit emu status pi4-emu" in (info.value.hint or ""), str(info.value)
    assert frozen_at, "the freeze never ran"
    elapsed = ended - frozen_at[0]
    assert elapsed < IO_TIMEOUT / 2 + IO_TIMEOUT + 3, elapsed  # silence, then one unanswered probe
    with open_transport(quick) as again:  # resumed: the device works again
        assert again.run(["true"], timeout=30).ok


def test_a_device_frozen_before_an_upload_ends_in_device_timeout(quick, tmp_path: Path, scratch_name) -> None:
    local = tmp_path / "blob.bin"
    local.write_bytes(os.urandom(4 << 20))
    with open_transport(quick) as transport:
        transport.connect()
        start = time.monotonic()
        with frozen(sshd_pid(), after=0.0), pytest.raises(DeviceTimeout):
            time.sleep(0.3)
            transport.put(local, f"{scratch_name}/blob.bin")
        assert time.monotonic() - start < 3 * IO_TIMEOUT + 45  # each stage bounded by its own deadline


def test_interrupt_stops_the_remote_command_and_kills_its_group(quick) -> None:
    with open_transport(quick) as transport:
        transport.connect()
        threading.Timer(1.5, transport.interrupt).start()
        start = time.monotonic()
        with pytest.raises(Interrupted) as info:
            transport.run(["sleep", "45"], timeout=60)
        assert time.monotonic() - start < 15
        assert "still alive" not in str(info.value)


def test_after_an_interrupted_command_the_link_still_fetches_past_io_timeout(
    quick, tmp_path: Path, scratch_name
) -> None:
    """Ctrl-C stops the agent; deploy then fetches what it wrote. The interrupt's watchdog (it severs a link still
    stuck io_timeout after the Ctrl-C) used to cut that fetch when stopping took a while (a busy machine): the
    measurements were lost. Once the command is back, the link is the fetch's, under its own deadline."""
    with open_transport(quick) as transport:
        transport.run(
            ["sh", "-c", f"mkdir -p {scratch_name} && echo kept > {scratch_name}/result.json"], timeout=30
        )
        threading.Timer(1.0, transport.interrupt).start()
        with pytest.raises(Interrupted):
            transport.run(["sleep", "45"], timeout=60)
        time.sleep(IO_TIMEOUT + 1.0)  # past the watchdog's moment
        transport.get(f"{scratch_name}/result.json", tmp_path / "result.json")
    assert (tmp_path / "result.json").read_text() == "kept\n"
