"""An emulated device's lifecycle when things go wrong: a Ctrl-C during `emu up`, a state file that cannot be
read, a build lock another edgekit holds, an emulator home with a space in its path, a counting plugin that is
not built. Each test runs the real CLI and a real sshd in a private emulator home (test_emu.private_emu_home);
the shared devices are never touched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from test_emu import private_emu_home

from edgekit.emu import layout

pytestmark = pytest.mark.integration

DEVICE = "phone-emu"


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "EDGEKIT_EMU_HOME": str(home), "COLUMNS": "250"}


def _edgekit(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args],
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=timeout,
    )


def _sshds(config: Path) -> list[int]:
    """Live processes whose command line names this sshd_config (sshd's title splits at spaces: joined)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and f"-f {config} " in " ".join(
            proc.info["cmdline"] or []
        ):
            found.append(proc.info["pid"])
    return found


def _gone(config: Path, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while _sshds(config) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _sshds(config)


@pytest.fixture()
def home(tmp_path: Path) -> Iterator[Path]:
    """A private emulator home with phone-emu built, not running; whatever a test left running is stopped."""
    path = private_emu_home(tmp_path / "emu")
    yield path
    _edgekit(path, "emu", "down", DEVICE, timeout=60)
    config = path / "devices" / DEVICE / "sshd_config"
    for pid in _sshds(config):  # what `down` did not stop (the faults under test): never left behind
        os.kill(pid, signal.SIGKILL)


def _dev(home: Path) -> layout.DeviceDir:
    return layout.DeviceDir(DEVICE, home / "devices" / DEVICE)


def test_ctrl_c_during_up_leaves_no_sshd_behind(home: Path) -> None:
    """Ctrl-C as soon as the sshd appeared: `emu up` exited 130 with no state written, and the sshd kept running
    and listening, which `status` did not show, `down` did not stop ("was not running") and the next `up`
    started a second one beside. Now `up` kills the sshd it spawned before it exits."""
    dev = _dev(home)
    config = dev.sshd_config
    for _attempt in range(5):  # the Ctrl-C must land between the spawn and the state write (a few ms)
        dev.state_file.unlink(missing_ok=True)
        child = subprocess.Popen(
            [sys.executable, "-m", "edgekit", "emu", "up", DEVICE],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(home),
        )
        deadline = time.monotonic() + 60
        while not _sshds(config) and child.poll() is None and time.monotonic() < deadline:
            pass
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
        if dev.state_file.exists():  # too late: the device was up and recorded; stop it and try again
            assert _edgekit(home, "emu", "down", DEVICE).returncode == 0
            continue
        assert child.returncode == 130, (out, err)
        assert _gone(config), f"Ctrl-C'd `emu up` left sshd {_sshds(config)} running"
        break
    else:
        pytest.fail("the Ctrl-C never landed before the state write")


def test_an_sshd_no_state_records_is_found_shown_and_stopped(home: Path) -> None:
    """An sshd of this device with no state file (as an interrupted `up` left it): `status` notes it, `down`
    stops it and says so, and `up` stops it before starting its own (one sshd, not two)."""
    dev = _dev(home)
    assert _edgekit(home, "emu", "up", DEVICE).returncode == 0
    orphan = json.loads(dev.state_file.read_text())["sshd_pid"]
    dev.state_file.unlink()
    status = _edgekit(home, "emu", "status", DEVICE)
    said = " ".join(status.stdout.split())
    assert status.returncode == 0 and f"no state recorded (pid {orphan})" in said, status.stdout
    down = _edgekit(home, "emu", "down", DEVICE)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"phone-emu: stopped its sshd that no state file recorded (pid {orphan})" in down.stdout
    assert _gone(dev.sshd_config)
    # the same orphan again, now met by `up`
    assert _edgekit(home, "emu", "up", DEVICE).returncode == 0
    orphan = json.loads(dev.state_file.read_text())["sshd_pid"]
    dev.state_file.unlink()
    up = _edgekit(home, "emu", "up", DEVICE)
    said = " ".join(up.stdout.split())
    assert up.returncode == 0 and f"stopped an sshd no state file recorded (pid {orphan}" in said, said
    new = json.loads(dev.state_file.read_text())["sshd_pid"]
    assert _sshds(dev.sshd_config) == [new]
    # another emu home holding a copy of this device dir's pid file: not its sshd, left alone
    other = private_emu_home(home.parent / "other")
    (other / "devices" / DEVICE / "run").mkdir()
    shutil.copy2(dev.pid_file, other / "devices" / DEVICE / "run" / "sshd.pid")
    assert _edgekit(other, "emu", "down", DEVICE).stdout.strip() == "phone-emu: was not running"
    assert _sshds(dev.sshd_config) == [new]
    # started through a symlink to the home, then unrecorded: found by its pid file from the real path
    link = home.parent / "link"
    link.symlink_to(home)
    assert _edgekit(home, "emu", "down", DEVICE).returncode == 0
    assert _edgekit(link, "emu", "up", DEVICE).returncode == 0
    orphan = json.loads(dev.state_file.read_text())["sshd_pid"]
    dev.state_file.unlink()
    down = _edgekit(home, "emu", "down", DEVICE)
    assert f"stopped its sshd that no state file recorded (pid {orphan})" in down.stdout, down.stdout
    assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("damage", ["truncated", "extra field"])
def test_a_state_file_that_cannot_be_read_is_stale_not_a_crash(home: Path, damage: str) -> None:
    """A truncated state.json (a full disk, a crash) crashed every device command with `internal error
    (ValidationError)`, and `emu down` exited 1 leaving the sshd running; one extra field (as another edgekit
    version writes) did the same. Now a field it does not know is ignored, and an unreadable file is stale: a
    warning names it, `status` shows the device not running with a note, `down` stops its sshd (found by its
    sshd_config) and removes the file."""
    dev = _dev(home)
    assert _edgekit(home, "emu", "up", DEVICE).returncode == 0
    text = dev.state_file.read_text()
    pid = json.loads(text)["sshd_pid"]
    if damage == "truncated":
        dev.state_file.write_text(text[: len(text) // 2])
    else:
        dev.state_file.write_text(json.dumps({**json.loads(text), "lease": "from a newer edgekit"}))
    status = _edgekit(home, "emu", "status", DEVICE)
    assert status.returncode == 0 and "internal error" not in status.stderr, status.stdout + status.stderr
    row = next(line for line in status.stdout.splitlines() if DEVICE in line and "│" in line)
    said = " ".join(status.stdout.split())
    if damage == "truncated":
        assert row.split("│")[4].strip() == "no", status.stdout
        assert f"its state file {dev.state_file} cannot be read" in said and f"(pid {pid})" in said, said
    else:  # what this edgekit needs is all there: the device runs
        assert row.split("│")[4].strip() == "yes" and row.split("│")[6].strip() == str(pid), status.stdout
    down = _edgekit(home, "emu", "down", DEVICE)
    assert down.returncode == 0, down.stdout + down.stderr
    if damage == "truncated":
        assert f"warning: phone-emu: its state file {dev.state_file} cannot be read" in " ".join(
            down.stderr.split()
        )
        assert f"stopped its sshd that no state file recorded (pid {pid}); stale state removed" in down.stdout
    else:
        assert down.stdout.strip() == "phone-emu: stopped"
    assert _gone(dev.sshd_config) and not dev.state_file.exists()
    # and `up` over an unreadable file starts the device (saying what it found)
    dev.state_file.write_text("{")
    up = _edgekit(home, "emu", "up", DEVICE)
    assert up.returncode == 0 and "cannot be read" in up.stderr, up.stdout + up.stderr
    assert _sshds(dev.sshd_config) == [json.loads(dev.state_file.read_text())["sshd_pid"]]


def test_down_of_a_device_whose_sshd_died_says_it_was_not_running(home: Path) -> None:
    """`emu down` when the recorded sshd had been killed said "stopped"."""
    dev = _dev(home)
    assert _edgekit(home, "emu", "up", DEVICE).returncode == 0
    pid = json.loads(dev.state_file.read_text())["sshd_pid"]
    os.kill(pid, signal.SIGKILL)
    assert _gone(dev.sshd_config)
    down = _edgekit(home, "emu", "down", DEVICE)
    assert (
        down.returncode == 0 and down.stdout.strip() == "phone-emu: was not running (stale state removed)"
    ), down.stdout + down.stderr
    again = _edgekit(home, "emu", "down", DEVICE)
    assert again.stdout.strip() == "phone-emu: was not running"


def test_up_of_a_built_device_does_not_wait_on_the_build_lock(home: Path) -> None:
    """`flock <emu>/build.lock sleep 40 &` then `emu up phone-emu` printed nothing and waited the 40 s: a built
    device needs no build, so no lock."""
    holder = subprocess.Popen(["flock", str(home / "build.lock"), "sleep", "120"])
    try:
        time.sleep(0.5)
        start = time.monotonic()
        up = _edgekit(home, "emu", "up", DEVICE, timeout=60)
        assert up.returncode == 0 and time.monotonic() - start < 30, up.stdout + up.stderr
        check = _edgekit(home, "targets", "check", DEVICE, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_build_waiting_on_another_edgekits_lock_says_so_and_ends_named(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device to build while another process holds the build lock: the wait is said (what, which lock, who
    holds it) and bounded, ending in LockTimeout naming the holder and what to do."""
    from edgekit.emu import locks
    from edgekit.emu.runner import up
    from edgekit.errors import EmulatorError

    _dev(home).built_stamp.unlink()  # the private copy's stamp: phone-emu is to build again
    monkeypatch.setenv("EDGEKIT_EMU_HOME", str(home))
    monkeypatch.setattr(locks, "LOCK_WAIT_S", 2.0, raising=False)  # raising: absent before the bound
    holder = subprocess.Popen(["flock", str(home / "build.lock"), "sleep", "30"])
    said: list[str] = []
    try:
        time.sleep(0.5)
        start = time.monotonic()
        with pytest.raises(EmulatorError) as info:
            up(DEVICE, said.append)
        assert type(info.value).__name__ == "LockTimeout"
        assert time.monotonic() - start < 20
    finally:
        holder.kill()
        holder.wait()
    lock = home / "build.lock"
    assert any(
        f"waiting for another edgekit's emulator build/set-up (lock {lock}, held by pid {holder.pid}" in m
        for m in said
    ), said
    text = str(info.value) + (info.value.hint or "")
    assert f"held by pid {holder.pid}: flock {lock} sleep 30" in text and f"kill {holder.pid}" in text, text


def test_an_emulator_home_with_a_space_in_its_path_works(tmp_path: Path) -> None:
    """sshd_config's HostKey, AuthorizedKeysFile, PidFile and SetEnv HOME= were unquoted: a home under
    `My Files/` failed `emu up`. Now they are quoted (checked by the real sshd, and an SSH login through it); a
    path sshd_config cannot hold (a double quote) is refused by name."""
    home = private_emu_home(tmp_path / "emu home")
    try:
        up = _edgekit(home, "emu", "up", DEVICE)
        assert up.returncode == 0, up.stdout + up.stderr
        check = _edgekit(home, "targets", "check", DEVICE, timeout=120)
        assert check.returncode == 0 and "cortex-a76" in check.stdout, check.stdout + check.stderr
        status = _edgekit(home, "emu", "status", DEVICE)
        row = next(line for line in status.stdout.splitlines() if DEVICE in line and "│" in line)
        assert row.split("│")[4].strip() == "yes", status.stdout
        down = _edgekit(home, "emu", "down", DEVICE)
        assert down.stdout.strip() == "phone-emu: stopped" and _gone(_dev(home).sshd_config)
    finally:
        _edgekit(home, "emu", "down", DEVICE, timeout=60)
    quoted = tmp_path / 'emu "quoted"'
    out = _edgekit(quoted, "emu", "up", DEVICE)
    said = " ".join(out.stderr.split())
    assert out.returncode == 2 and "error (EmuPathError)" in said and "double quote" in said, said


def test_a_check_never_builds_the_counting_plugin_only_set_up_does(tmp_path: Path) -> None:
    """With the plugin's header and stamp gone (a failed plugin build, an edited insn_count.c), `targets check
    phone-emu` ran `apt-get update` and `apt-get source qemu` (leaving plugin/apt and plugin/src): every build()
    built the plugin. Now only the set-up commands do (`emu build` here); the check goes on without it, and a
    counting run asks for `edgekit emu build-plugin` by name."""
    home = private_emu_home(tmp_path / "emu", own_plugin=True)
    plugin = home / "plugin"
    (plugin / "insn_count.sha256").unlink()  # stale: rebuilt from the cached header by `emu build`
    check = _edgekit(home, "targets", "check", DEVICE, timeout=120)
    try:
        assert check.returncode == 0, check.stdout + check.stderr
        assert "counting plugin" not in check.stdout + check.stderr
        assert not (plugin / "insn_count.sha256").exists()
        env = {"EDGEKIT_EMU_HOME": str(home)}
        code = "from edgekit.emu.plugin.build import require_plugin\nrequire_plugin()"
        named = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=60,
        )
        assert "out of date" in named.stderr and "edgekit emu build-plugin" in named.stderr, named.stderr
        built = _edgekit(home, "emu", "build", DEVICE, timeout=300)
        assert built.returncode == 0 and "counting plugin: gcc" in built.stdout, built.stdout + built.stderr
        assert (plugin / "insn_count.sha256").exists()
        # the header gone too: a check still downloads nothing
        for part in (plugin / "include", plugin / "insn_count.sha256"):
            subprocess.run(["rm", "-rf", str(part)], check=True)
        start = time.monotonic()
        again = _edgekit(home, "targets", "check", DEVICE, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert not (plugin / "apt").exists() and not (plugin / "src").exists()
        assert "apt-get" not in again.stdout + again.stderr and time.monotonic() - start < 60
    finally:
        _edgekit(home, "emu", "down", DEVICE, timeout=60)


def test_a_quote_in_the_emulator_homes_path_reaches_the_device_python_whole(tmp_path: Path) -> None:
    """The device's python wrapper wrote its sysroot and site dir in single quotes: a home with a ' in its path
    (`/home/o'brien/...`) ended the shell's string there. The real sh reads them back whole now."""
    from edgekit.emu.build import _write_wrapper
    from edgekit.emu.specs import device_spec

    home = tmp_path / "o'brien's $HOME; echo x"
    wrapper = home / "python"
    home.mkdir()
    _write_wrapper(wrapper, device_spec(DEVICE), home / "sysroot", home / "site")
    lines = "\n".join(
        line
        for line in wrapper.read_text().splitlines()
        if line.startswith(("SYSROOT=", "export PYTHONPATH="))
    )
    done = subprocess.run(
        ["sh", "-c", lines + '\nprintf "%s\\n%s" "$SYSROOT" "$PYTHONPATH"'],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
        check=True,
    )
    assert done.stdout.splitlines() == [str(home / "sysroot"), str(home / "site")], done
