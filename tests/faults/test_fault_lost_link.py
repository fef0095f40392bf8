"""A full device disk and a dropped link, against the real pi4-emu (sshd + qemu): the device's work dir is a small
tmpfs (this machine is the emulated device's file system), the link is cut by killing the device's session sshd by
pid. Each ends in a named error within a bounded time; what the device measured is kept, every artifact not run is
recorded with the reason, nothing is left running or half-written on the device."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from edgekit.convert.base import Artifact
from edgekit.deploy import DeployOptions, deploy
from edgekit.formats import Format
from edgekit.recipe import load_recipe
from edgekit.results import DeployResult, TargetRun
from edgekit.target import load_target

pytestmark = pytest.mark.integration
TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"
FORMATS = (Format.TFLITE_FP32, Format.NCNN_FP32)


@pytest.fixture(scope="module")
def tiny_artifacts() -> list[Artifact]:
    from edgekit.convert.pipeline import convert_recipe

    return convert_recipe(load_recipe(TINY), FORMATS, keep_going=True)


def run_deploy(
    pi4_emu: object, work_dir: Path, arts: list[Artifact], **options: object
) -> tuple[DeployResult, float]:
    target = load_target("pi4-emu", [f"work_dir={work_dir}", "io_timeout=3", "connect_timeout=3"])
    opts = DeployOptions(host=False, repeat=1, warmup=0, threads=(1,), samples=2, **options)  # type: ignore[arg-type]
    start = time.monotonic()
    result = deploy(load_recipe(TINY), [target], opts, artifacts=arts)
    return result, time.monotonic() - start


def the_run(result: DeployResult) -> TargetRun:
    (run,) = [r for r in result.runs if r.target == "pi4-emu"]
    return run


def fill(path: Path) -> None:
    """Fill the file system holding `path` to the last byte."""
    with (path / "filler.bin").open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


def agent_processes(work_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "agent.py" in " ".join(proc.info["cmdline"] or []) and proc.cwd() == str(work_dir):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def session_sshd(proc: psutil.Process, master: int) -> psutil.Process | None:
    """The per-connection sshd above `proc` (the child of the device's sshd master)."""
    for parent in proc.parents():
        if parent.ppid() == master:
            return parent
    return None


def when(condition: object, timeout: float = 240.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def measured_on_device(work_dir: Path) -> bool:
    import json

    for result in work_dir.glob("runs/*/result-0.json"):
        try:
            if json.loads(result.read_text())["measurements"]:
                return True
        except (ValueError, KeyError, OSError):
            continue
    return False


def device_master() -> int:
    from edgekit.emu.runner import running_state

    state = running_state("pi4-emu")
    assert state is not None
    return state.sshd_pid


# -- disk full ------------------------------------------------------------------------------------------------
def test_a_full_disk_is_named_before_the_upload_and_nothing_is_sent(pi4_emu, tiny_artifacts, tmpfs) -> None:
    fill(tmpfs)
    filler = tmpfs / "filler.bin"
    os.truncate(filler, filler.stat().st_size - (1 << 20))  # 1 MB free
    result, seconds = run_deploy(pi4_emu, tmpfs, tiny_artifacts)
    run = the_run(result)
    assert run.status == "failed" and "push: DeviceDiskFull" in (run.error or ""), run.error
    assert "MB free" in (run.error or "") and "needs" in (run.error or "")
    assert "not run: tflite-fp32, ncnn-fp32" in (run.error or "")
    assert not (tmpfs / "agent.py").exists() and not list(tmpfs.rglob(".*.edgekit-*"))  # nothing half-written
    assert seconds < 60 and not result.ok


def test_a_disk_filling_mid_run_records_every_artifact(pi4_emu, tiny_artifacts, tmpfs) -> None:
    filler = threading.Thread(target=lambda: when(lambda: measured_on_device(tmpfs)) and fill(tmpfs))
    filler.start()
    result, seconds = run_deploy(pi4_emu, tmpfs, tiny_artifacts)
    filler.join()
    run = the_run(result)
    assert run.status == "failed" and "DeviceDiskFull" in (run.error or ""), run.error
    assert run.agent is not None
    recorded = {(m.artifact, m.threads): m for m in run.agent.measurements}
    assert set(recorded) == {(f.value, 1) for f in FORMATS}, (
        recorded
    )  # each artifact measured or said why not
    assert all(
        m.status == "ok" or "No space left" in (m.error or "") or "DeviceDiskFull" in (m.error or "")
        for m in recorded.values()
    ), [m.error for m in recorded.values()]
    assert seconds < 300, seconds
    print(run.error, [m.error for m in recorded.values()])
    (tmpfs / "filler.bin").unlink()
    again, _ = run_deploy(pi4_emu, tmpfs, tiny_artifacts)  # space freed: the same deploy runs
    assert the_run(again).status == "ok", the_run(again).error


# -- lost links ---------------------------------------------------------------------------------------------
def test_a_link_dropped_mid_run_keeps_what_the_device_measured(pi4_emu, tiny_artifacts, tmp_path) -> None:
    work = tmp_path / "device"
    master = device_master()
    killed: list[int] = []

    def drop() -> None:
        if not when(lambda: measured_on_device(work)):
            return
        for proc in agent_processes(work):
            sshd = session_sshd(proc, master)
            if sshd is not None:
                os.kill(sshd.pid, signal.SIGKILL)
                killed.append(sshd.pid)
                return

    dropper = threading.Thread(target=drop)
    dropper.start()
    result, seconds = run_deploy(pi4_emu, work, tiny_artifacts)
    dropper.join()
    assert killed, "the agent was never seen running"
    run = the_run(result)
    assert run.status == "failed" and "run: ConnectionLost" in (run.error or ""), run.error
    assert run.agent is not None
    got = {m.artifact: m for m in run.agent.measurements}
    assert got["tflite-fp32"].status == "ok" and got["tflite-fp32"].samples_ms  # pulled back on reconnect
    assert got["ncnn-fp32"].status == "failed" and "not run: ConnectionLost" in (got["ncnn-fp32"].error or "")
    assert (Path(run.result_dir or "") / (got["tflite-fp32"].outputs_file or "-")).is_file()  # outputs too
    assert when(lambda: not agent_processes(work), 15)  # the agent died with its session
    assert not list((work / "runs").iterdir())  # the failed run's folder was cleaned after reconnecting
    assert seconds < 240


def test_a_link_dropped_with_the_device_unreachable_keeps_the_streamed_measurements(
    pi4_emu, tiny_artifacts, tmp_path
) -> None:
    work = tmp_path / "device"
    master = device_master()
    stopped: list[int] = []

    def drop() -> None:
        if not when(lambda: measured_on_device(work)):
            return
        for proc in agent_processes(work):
            sshd = session_sshd(proc, master)
            if sshd is not None:
                os.kill(
                    master, signal.SIGSTOP
                )  # no new connection is answered (resumed in the finally below)
                stopped.append(master)
                os.kill(sshd.pid, signal.SIGKILL)
                return

    dropper = threading.Thread(target=drop)
    dropper.start()
    try:
        result, seconds = run_deploy(pi4_emu, work, tiny_artifacts)
    finally:
        dropper.join()
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    assert stopped, "the agent was never seen running"
    run = the_run(result)
    assert run.status == "failed" and "ConnectionLost" in (run.error or ""), run.error
    got = {m.artifact: m for m in run.agent.measurements} if run.agent else {}
    assert got["tflite-fp32"].status == "ok" and got["tflite-fp32"].p50_ms  # streamed before the drop
    assert got["ncnn-fp32"].status == "failed"
    assert when(lambda: not agent_processes(work), 15)
    assert seconds < 240


def test_a_partial_upload_is_removed_at_the_next_connect(pi4_emu, tmp_path) -> None:
    from edgekit.emu.device import running_target
    from edgekit.transport import open_transport

    target = running_target(load_target("pi4-emu", [f"work_dir={tmp_path / 'device'}", "io_timeout=3"]))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 << 20))
    master = device_master()
    with open_transport(target) as transport:
        transport.connect()

        def drop() -> None:
            when(lambda: list((tmp_path / "device").glob(".big.bin.edgekit-*")), 60)
            ours = transport._client.get_transport().sock.getsockname()[1]  # type: ignore[attr-defined]
            for child in psutil.Process(master).children():
                if any(c.raddr and c.raddr.port == ours for c in child.connections()):
                    os.kill(child.pid, signal.SIGKILL)  # this connection's sshd only: other sessions go on

        threading.Thread(target=drop).start()
        from edgekit.errors import ConnectionLost, DeviceTimeout

        with pytest.raises((ConnectionLost, DeviceTimeout)):
            transport.put(big, "big.bin")
        assert list((tmp_path / "device").glob(".big.bin.edgekit-*"))  # left by the drop
        assert transport.reconnect()  # type: ignore[attr-defined]
    assert not list((tmp_path / "device").glob(".big.bin.edgekit-*"))  # removed at the next connect
    assert not (tmp_path / "device" / "big.bin").exists()


_UPLOADER = """
import sys
from pathlib import Path
from edgekit.emu.device import running_target
from edgekit.target import load_target
from edgekit.transport import open_transport
with open_transport(running_target(load_target("pi4-emu", [f"work_dir={sys.argv[1]}"]))) as transport:
    transport.put(Path(sys.argv[2]), "big.bin")
"""


def test_a_killed_edgekits_partial_upload_is_removed_at_the_next_connect(pi4_emu, tmp_path) -> None:
    """An edgekit killed (kill -9) mid-upload left `.big.bin.edgekit-XXXX` on the device: only the process that
    wrote it knew it for its own, and it was gone, so later connects kept it for an hour. The name now says which
    process of which machine writes it: the next connect removes it at once, while a running edgekit's upload,
    another machine's and an older edgekit's (no owner in the name) stay until their hour is up."""
    import subprocess
    import sys

    from edgekit.emu.device import running_target
    from edgekit.transport import open_transport
    from edgekit.transport.work_prune import partial_name

    device = tmp_path / "device"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 << 20))
    child = subprocess.Popen([sys.executable, "-c", _UPLOADER, str(device), str(big)])
    try:
        assert when(lambda: list(device.glob(".big.bin.edgekit-*")) or child.poll() is not None, 120)
    finally:
        child.kill()
        child.wait()
    (left,) = device.glob(".big.bin.edgekit-*")  # killed mid-upload
    assert not (device / "big.bin").exists()
    running = device / partial_name("agent.py")  # this test's process: a concurrent upload
    others = [device / ".agent.py.edgekit-00000000p1t1-0123abcd", device / ".agent.py.edgekit-4567cdef"]
    for path in (running, *others):
        path.write_text("partial")
    target = running_target(load_target("pi4-emu", [f"work_dir={device}"]))
    with open_transport(target) as transport:
        transport.connect()
    assert not left.exists()
    assert running.is_file() and all(p.is_file() for p in others)


def test_leftovers_of_failed_runs_are_pruned_at_connect(pi4_emu, tmp_path) -> None:
    """Run folders older than a day and artifact folders unused for 14 days go; fresh ones and partial uploads of
    the last hour (a concurrent run's) stay."""
    from edgekit.emu.device import running_target
    from edgekit.transport import open_transport

    work = tmp_path / "device"
    # named as edgekit names them: a folder of the user's under runs/ is never pruned (tests/test_device_prune.py)
    old_run, new_run = (
        work / "runs" / "20261101-101010-a1b2c3-pi4-emu",
        work / "runs" / "20261205-101010-d4e5f6-pi4",
    )
    old_art, new_art = work / "artifacts" / "0123456789abcdef", work / "artifacts" / "fedcba9876543210"
    old_part, new_part = work / "artifacts" / ".model.tflite.edgekit-0000", work / ".agent.py.edgekit-1111"
    for folder in (old_run, new_run, old_art, new_art):
        folder.mkdir(parents=True)
        (folder / "f").write_text("x")
    old_part.write_text("partial")
    new_part.write_text("partial")
    for path, days in ((old_run, 2), (old_art, 15), (old_part, 1)):
        past = time.time() - days * 86400
        os.utime(path, (past, past))
    target = running_target(load_target("pi4-emu", [f"work_dir={work}"]))
    with open_transport(target) as transport:
        transport.connect()
    assert not old_run.exists() and not old_art.exists() and not old_part.exists()
    assert new_run.is_dir() and new_art.is_dir() and new_part.is_file()


def test_a_dropped_link_names_what_to_check_for_the_kind_of_device(pi4_emu, tmp_path) -> None:
    """The ConnectionLost of an emulated device said "is the device still powered and on the network?": it has
    neither, its qemu or sshd on this machine stopped. It now names `edgekit emu status` and `edgekit emu up`
    with the device; a board (the same device reached as a plain SSH target) keeps the power-and-network hint."""
    from edgekit.emu.device import running_target
    from edgekit.errors import ConnectionLost
    from edgekit.transport import open_transport

    emulated = running_target(load_target("pi4-emu", [f"work_dir={tmp_path / 'device'}", "io_timeout=3"]))
    board = emulated.model_copy(update={"emulated": None})
    master = device_master()
    for target, wanted, unwanted in (
        (emulated, ("edgekit emu status pi4-emu", "edgekit emu up pi4-emu"), "powered"),
        (board, ("still powered and on the network",), "edgekit emu"),
    ):
        with open_transport(target) as transport:
            transport.connect()
            ours = transport._client.get_transport().sock.getsockname()[1]  # type: ignore[attr-defined]

            def drop(port: int = ours) -> None:
                time.sleep(1.0)
                for child in psutil.Process(master).children():
                    if any(c.raddr and c.raddr.port == port for c in child.connections()):
                        os.kill(child.pid, signal.SIGKILL)  # this connection's sshd only

            dropper = threading.Thread(target=drop)
            dropper.start()
            with pytest.raises(ConnectionLost) as info:
                transport.run(["sleep", "30"], timeout=40)
            dropper.join()
        hint = info.value.hint or ""
        assert all(w in hint for w in wanted) and unwanted not in hint, (target.emulated, str(info.value))
