"""A work dir the device cannot make or write is named (which folder, mkdir's own words, the target's `work_dir`
field, what to try): the `mkdir -p` before an upload was swallowed (`; true`) and the upload then failed as
"upload of agent.py failed: [Errno 2] No such file", with no hint. Through an OpenSSH server on this host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_transport_ssh import local_sshd  # noqa: F401  (a fixture)

from edgekit.errors import WorkDirError
from edgekit.transport import open_transport
from edgekit.transport.local import LocalTransport


def _upload_into(target, work_dir: Path, tmp_path: Path) -> WorkDirError:  # type: ignore[no-untyped-def]
    agent = tmp_path / "agent.py"
    agent.write_text("print('hi')\n")
    unwritable = target.model_copy(update={"work_dir": str(work_dir)})
    with open_transport(unwritable) as transport, pytest.raises(WorkDirError) as info:
        transport.put(agent, "agent.py")
    return info.value


def test_a_work_dir_under_a_regular_file_is_named(local_sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    err = _upload_into(local_sshd, afile / "w", tmp_path)
    message = str(err)
    assert f"the work dir {afile / 'w'} cannot be created or written on the device: mkdir:" in message, (
        message
    )
    assert "Not a directory" in message or "File exists" in message, message
    assert "field `work_dir`" in (err.where or "") and "target pi4" in (err.where or ""), err.where
    assert "--set work_dir=PATH" in (err.hint or ""), err.hint
    assert "No such file" not in message


def test_a_work_dir_on_a_read_only_disk_is_named(local_sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ro = tmp_path / "ro"
    ro.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.decode().strip()}")
    try:
        err = _upload_into(local_sshd, ro / "w", tmp_path)
        assert "Read-only file system" in str(err) and "field `work_dir`" in (err.where or ""), str(err)
        assert err.exit_code == 1 and "check the device's disk" in (err.hint or ""), (
            err.exit_code,
            err.hint,
        )  # the disk's
        if os.geteuid() != 0:
            return
        existing = _upload_into(local_sshd, ro, tmp_path)  # the folder exists, nothing can be written in it
        said = str(existing)
        # the file system is read-only, not the folder this user's to fix ("not writable by this user" before)
        assert "its file system is mounted read-only (touch: cannot touch" in said, said
        assert "by this user" not in said, said
        assert "Read-only file system)" in said and existing.exit_code == 1, (existing.exit_code, said)
        with pytest.raises(WorkDirError) as local:  # this machine's own disk, read-only: the same
            LocalTransport(_local_one(tmp_path, ro))
        assert local.value.exit_code == 1 and "(Read-only file system)" in str(local.value), str(local.value)
        assert "mounted read-only" in str(local.value) and "by this user" not in str(local.value), str(
            local.value
        )
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_a_device_fault_exits_1_and_a_path_given_wrong_2() -> None:
    """Review of 6ac0100: every WorkDirError was exit 2 (bad input), a read-only remounted SD card, a full disk or
    an I/O error too: a failed run is 1. The remote mkdir gives its message, not errno: classified by its words."""
    fault = WorkDirError.device_fault
    for why in (
        "mkdir: cannot create directory '/home/pi/edgekit': Read-only file system",
        "mkdir: cannot create directory \u2018/home/pi/edgekit\u2019: No space left on device",
        "mkdir: cannot create directory '/mnt/sd/e': Input/output error",
        "the folder is not writable by this user (touch: cannot touch '/home/pi/edgekit/.edgekit-write-test': "
        "Read-only file system)",
        "mkdir: Read-only file system (/srv/e)",  # this machine's (transport/local.py)
        "mkdir failed",  # words of no known path problem: not the user's input for certain
    ):
        assert fault("/home/pi/edgekit", why), why
    for path, why in (
        ("/etc/passwd/edgekit", "mkdir: cannot create directory \u2018/etc/passwd\u2019: Not a directory"),
        ("/root/edgekit", "mkdir: cannot create directory '/root/edgekit': Permission denied"),
        ("/x/edgekit", "mkdir: cannot create directory '/x': Operation not permitted"),
        ("/tmp/afile/w", "mkdir: cannot create directory '/tmp/afile': File exists"),
        ("/proc/edgekit", "mkdir: cannot create directory '/proc/edgekit': No such file or directory"),
        ("/sys/edgekit", "mkdir failed"),
        (
            "/srv/e",
            "the folder is not writable by this user (touch: cannot touch '/srv/e/x': Permission denied)",
        ),
    ):
        assert not fault(path, why), (path, why)
    assert WorkDirError("m", path="/srv/e", why="No space left on device").exit_code == 1
    assert WorkDirError("m", path="/srv/e", why="Permission denied").exit_code == 2


def _local_one(tmp_path: Path, work_dir: Path):  # type: ignore[no-untyped-def]
    from edgekit.target import load_target

    return load_target(_local_target(tmp_path, work_dir))


def _local_target(tmp_path: Path, work_dir: Path) -> Path:
    target = tmp_path / "mylocal.yaml"
    target.write_text(f"name: mylocal\ntransport: local\nwork_dir: {work_dir}\nruntimes: [onnxruntime]\n")
    return target


def test_a_local_work_dir_under_a_regular_file_is_named_as_bad_input(edgekit_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A `transport: local` target whose work_dir cannot be made (under a file; /proc) was an internal error
    (NotADirectoryError, exit 1) in `targets check`, `bench --target` and `deploy`: now the WorkDirError an SSH
    device's gives, naming the field and the target file (exit 2), before anything is converted or run."""
    from onnx_graphs import gelu_classifier

    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    target = _local_target(tmp_path, afile / "edgekit")
    model = gelu_classifier(tmp_path / "m.onnx")
    env = {"EDGEKIT_HOME": str(tmp_path / "home")}
    for args in (("targets", "check", str(target)), ("bench", str(model), "--target", str(target))):
        out = edgekit_cli(*args, env=env, timeout=300)
        said = " ".join(out.stderr.split())
        assert out.code == 2 and "internal error" not in said, (args, out.code, said)
        assert "error (WorkDirError): this machine (target mylocal, field `work_dir`:" in said, said
        assert f"the work dir {afile / 'edgekit'} cannot be created or written on this machine" in said, said
        assert "Not a directory" in said and f"`work_dir:` in {target}" in said, said


def test_a_local_work_dir_in_proc_is_named(tmp_path: Path) -> None:
    from edgekit.target import load_target
    from edgekit.transport.local import LocalTransport

    target = load_target(_local_target(tmp_path, Path("/proc/edgekit")))
    with pytest.raises(WorkDirError) as info:
        LocalTransport(target)
    assert info.value.exit_code == 2 and info.value.path == "/proc/edgekit", str(info.value)
    assert "field `work_dir`: '/proc/edgekit'" in (info.value.where or ""), info.value.where


def test_targets_check_names_an_unusable_work_dir_not_the_python(local_sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """`targets check` (and `formats --target`) ran the probe inside a work dir it never made: a work_dir under a
    file was said as "`python3` did not run on the device ... cd: ...: Not a directory; hint: set python"."""
    from edgekit.emu.device_info import check_target

    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    target = local_sshd.model_copy(update={"work_dir": str(afile / "edgekit")})
    with pytest.raises(WorkDirError) as info:
        check_target(target)
    err = info.value
    assert f"the work dir {afile / 'edgekit'} cannot be created or written on the device" in str(err), str(
        err
    )
    assert "field `work_dir`" in (err.where or "") and err.exit_code == 2, err.where
    assert "python" not in str(err), str(err)
    assert check_target(local_sshd).raw["python"]  # a work dir it can make: probed as before
    board = _board_file(local_sshd, tmp_path, afile / "edgekit")
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "formats", "--target", str(board)],
        capture_output=True,
        text=True,
        env={**os.environ, **_home(tmp_path)},
        timeout=120,
    )
    said = " ".join(out.stderr.split())
    assert out.returncode == 2 and "error (WorkDirError)" in said and "not probed" not in out.stdout, said


def _board_file(target, tmp_path: Path, work_dir: Path) -> Path:  # type: ignore[no-untyped-def]
    """A target file reaching local_sshd's server, with `work_dir`."""
    t = target
    board = tmp_path / "board.yaml"
    board.write_text(
        f"name: board\nhost: 127.0.0.1\nport: {t.port}\nuser: {t.user}\nkey: {t.key}\n"
        f"known_hosts: {t.known_hosts}\npython: {t.python}\nwork_dir: {work_dir}\nruntimes: [onnxruntime]\n"
    )
    return board


def _home(tmp_path: Path) -> dict[str, str]:
    return {"EDGEKIT_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)}  # HOME: no ~/.ssh/config


def test_bench_says_a_work_dir_it_cannot_make_not_a_full_disk(  # type: ignore[no-untyped-def]
    local_sshd,  # noqa: F811
    edgekit_cli,
    tmp_path: Path,
) -> None:
    """A work_dir of /proc/edgekit: bench's space check ran df on the nearest existing parent (/proc, 0 bytes)
    before the work dir existed, and said "DeviceDiskFull: the device's disk is full: 0.00 MB free"; then the
    cleanup warned of a run folder "left on the device" that was never made. Now the push makes the work dir
    first: WorkDirError naming the field, and no cleanup warning."""
    from onnx_graphs import gelu_classifier

    board = _board_file(local_sshd, tmp_path, Path("/proc/edgekit"))
    model = gelu_classifier(tmp_path / "m.onnx")
    out = edgekit_cli("bench", str(model), "--target", str(board), env=_home(tmp_path), timeout=300)
    said = " ".join((out.stdout + out.stderr).split())
    assert out.code == 2 and "FAILED push: WorkDirError" in said, (out.code, said)  # the field's path: input
    assert "the work dir /proc/edgekit cannot be created or written on the device" in said, said
    assert "field `work_dir`: '/proc/edgekit'" in said, said
    assert "DeviceDiskFull" not in said and "left on the device" not in said, said
