"""Emulated devices' life cycle from private emulator homes (never the shared devices): what a check may build,
what `emu down` stops, a device whose files changed while it runs, a full disk, and what set-up builds."""

from __future__ import annotations

import contextlib
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

from edgekit.emu import layout

REAL = layout.shared().root  # the suite's (shared) emulator home: read only here


def _link_but_stamps(src: str, dst: str) -> None:
    if src.endswith(".done"):
        shutil.copy2(src, dst)  # a test may change a stamp: never the shared one
    else:
        os.link(src, dst)


def make_home(home: Path, wheels: bool = True, devices: tuple[str, ...] = ()) -> Path:
    """A private emulator home: the shared sysroot (and wheels) symlinked, the site dirs hard-linked with their
    stamps copied, the plugin symlinked, the named devices' own dirs copied (not running)."""
    home.mkdir(parents=True)
    for read_only in ("base", "plugin", *(("wheels",) if wheels else ())):
        (home / read_only).symlink_to(REAL / read_only)
    for sites in ("site", "runtimes"):
        shutil.copytree(REAL / sites, home / sites, symlinks=True, copy_function=_link_but_stamps)
    for name in devices:
        device = REAL / "devices" / name
        if (device / "built.done").exists():
            own = home / "devices" / name
            skip = shutil.ignore_patterns("state.json", "run", "home", "known_hosts", "sshd_config")
            shutil.copytree(device, own, symlinks=True, ignore=skip)
            (own / "home").mkdir()
    return home


def edgekit(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **env},
        timeout=timeout,
    )


@pytest.fixture()
def emu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """EDGEKIT_EMU_HOME at a fresh private home (made by the test with make_home); every device of it is stopped
    at the end."""
    home = tmp_path / "emu"
    monkeypatch.setenv("EDGEKIT_EMU_HOME", str(home))
    try:
        yield home
    finally:
        from edgekit.emu.runner import down

        for name in ("pi4-emu", "pi5-emu", "phone-emu"):
            if (home / "devices" / name).is_dir():
                with contextlib.suppress(Exception):
                    down(name)


UNREACHABLE = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple"}


def test_a_check_builds_a_device_offline_when_its_sites_are_installed(emu_home: Path) -> None:
    """With the sysroot and the site dirs in place but no wheel cache, `targets check pi5-emu` downloaded the
    wheels again ("wheels: downloading numpy==..."), then failed on pip. Installed site dirs need no wheels: the
    device builds offline and the check answers."""
    make_home(emu_home, wheels=False)
    from edgekit.emu.build import needs_download

    assert needs_download("pi5-emu") is False
    done = edgekit("targets", "check", "pi5-emu", **UNREACHABLE)
    assert "downloading" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (emu_home / "wheels").exists()


def test_a_check_refuses_when_a_site_would_need_its_wheels_downloaded(emu_home: Path) -> None:
    """A site dir whose stamp is from another requirement set (constraints.txt changed) and no cached wheels:
    the check downloaded them. Now it is refused, naming the set-up command."""
    make_home(emu_home, wheels=False)
    (emu_home / "site" / "tflite-runtime.done").write_text("tflite-runtime==2.13.0\nnumpy<2\n")
    from edgekit.emu.build import needs_download

    assert needs_download("pi5-emu") is True
    start = time.monotonic()
    done = edgekit("targets", "check", "pi5-emu", **UNREACHABLE)
    said = " ".join(done.stderr.split())
    assert done.returncode == 1 and "pi5-emu is not built on this machine" in said, done.stdout + done.stderr
    assert "only the set-up commands do" in said and "edgekit emu build pi5-emu" in said
    assert "downloading" not in done.stdout + done.stderr and time.monotonic() - start < 30


def _up(name: str) -> dict[str, object]:
    import json

    done = edgekit("emu", "up", name)
    assert done.returncode == 0, done.stdout + done.stderr
    state: dict[str, object] = json.loads((layout.device_dir(name).state_file).read_text())
    return state


def _ssh(name: str, port: object, command: str) -> subprocess.Popen[bytes]:
    dev = layout.device_dir(name)
    argv = ["ssh", "-n", "-i", str(dev.client_key), "-o", f"UserKnownHostsFile={dev.known_hosts}"]
    argv += ["-o", "BatchMode=yes", "-p", str(port), f"{os.environ.get('USER', 'root')}@127.0.0.1", command]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _alive(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _wait_for(marker: str, name: str | None = None, timeout: float = 20) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := [p for p in _alive(marker) if name is None or p.name().startswith(name)]:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no process with {marker!r} started")


def test_down_stops_the_sessions_a_killed_sshd_master_left(emu_home: Path) -> None:
    """The sshd master killed (kill -9): `emu down` said "was not running (stale state removed)", exit 0, while
    the session's `sshd: USER@notty` (re-parented to init), its shell and its commands kept running. Now they
    are found (the sshd serving the device's port, the processes sshd gave the device's environment) and
    stopped, and down says so."""
    import signal

    make_home(emu_home, devices=("pi4-emu",))
    state = _up("pi4-emu")
    dev = layout.device_dir("pi4-emu")
    marker = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10**6}"
    client = _ssh("pi4-emu", state["port"], f"sleep 611{marker}; {dev.python} -c 'print(1)'")
    try:
        session = _wait_for(f"sleep 611{marker}", "sleep")
        os.kill(int(str(state["sshd_pid"])), signal.SIGKILL)
        time.sleep(0.3)
        done = edgekit("emu", "down", "pi4-emu")
        said = " ".join(done.stdout.split())
        assert done.returncode == 0 and "its sessions were: stopped them" in said, done.stdout + done.stderr
        assert str(session[0].pid) in said
        time.sleep(0.2)
        assert not [p for p in _alive(f"sleep 611{marker}") if p.name() in ("sleep", "bash")]
        notty = [p for p in _alive("@notty") if p.ppid() == 1 and _serves(p, int(str(state["port"])))]
        assert not notty
    finally:
        client.kill()
        client.wait()
        for proc in _alive(f"sleep 611{marker}"):
            proc.kill()


def _serves(proc: psutil.Process, port: int) -> bool:
    try:
        return any(c.laddr and c.laddr.port == port for c in proc.connections(kind="tcp"))
    except psutil.Error:
        return False


def test_down_leaves_host_processes_that_merely_name_the_device_files(emu_home: Path, tmp_path: Path) -> None:
    """`emu down` killed any process whose command line held the device's sysroot path as a substring: a
    `tail -f .../sysroot/proc/cpuinfo` on the host, and qemu of another emulator home whose path contains this
    one's. Only the device's own processes are stopped, its sessions': the device's interpreter run on the host
    outside them (a test's or a user's script) was killed too, and `up` replacing a stale record did the same
    (a CI run: a test's ncnn run on pi5-emu ended with SIGTERM, nothing said, when another worker's deploy
    started the device). Now it is left running, by `down` and by such an `up` alike."""
    make_home(emu_home, devices=("pi4-emu",))
    _up("pi4-emu")
    dev = layout.device_dir("pi4-emu")
    from edgekit.emu.build import QEMU_STATIC
    from edgekit.emu.sysroot import PYTHON

    other = Path(str(tmp_path / "other") + str(dev.sysroot))  # its path holds this device's sysroot path
    other.parent.mkdir(parents=True)
    other.symlink_to(REAL / "base" / "sysroot")
    qemu = shutil.which(QEMU_STATIC) or QEMU_STATIC
    tag = f"{time.monotonic_ns() % 10**9}"
    procs = [
        subprocess.Popen(["tail", "-f", str(dev.sysroot / "proc" / "cpuinfo")]),
        subprocess.Popen(
            [qemu, "-L", str(other), str(other / PYTHON), "-c", f"import time; time.sleep(600 + {tag})"]
        ),
        subprocess.Popen([str(dev.python), "-c", f"import time; time.sleep(601 + {tag})"]),
    ]
    try:
        _wait_for(f"time.sleep(600 + {tag})", "qemu")
        _wait_for(f"time.sleep(601 + {tag})", "qemu")
        done = edgekit("emu", "down", "pi4-emu")
        assert done.returncode == 0, done.stdout + done.stderr
        time.sleep(0.2)
        assert procs[0].poll() is None, "the host's tail of the device's cpuinfo was killed"
        assert procs[1].poll() is None, "another emulator home's qemu was killed"
        assert procs[2].poll() is None, (
            "the device's interpreter run on the host, outside its sessions, was killed"
        )
        # a stale record (its sshd gone): `up` stops what is left of the device before starting it again
        stale = _up("pi4-emu")
        os.kill(int(str(stale["sshd_pid"])), signal.SIGKILL)
        again = edgekit("emu", "up", "pi4-emu")
        assert again.returncode == 0, again.stdout + again.stderr
        time.sleep(0.2)
        assert procs[2].poll() is None, (
            "`up` replacing a stale record killed the host's run of the interpreter"
        )
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_a_device_whose_client_key_was_removed_while_it_ran_is_restarted(emu_home: Path) -> None:
    """`rm ssh/client_ed25519*` on a running device: `targets check` failed with KeyFileError ("--set key=PATH
    ... or remove key to use ssh-agent", exit 2) and `emu up` said "running ... in 0.00 s" while `emu status`
    showed it not built. Now up (a check's too) rebuilds it and restarts it, saying why."""
    make_home(emu_home, devices=("pi4-emu",))
    old = _up("pi4-emu")
    dev = layout.device_dir("pi4-emu")
    for key in dev.ssh.glob("client_ed25519*"):
        key.unlink()
    checked = edgekit("targets", "check", "pi4-emu")
    said = " ".join(checked.stderr.split())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "pi4-emu's files changed while it ran" in said and "restarting it" in said, said
    new = _up("pi4-emu")
    assert new["sshd_pid"] != old["sshd_pid"] and dev.client_key.exists()
    row = next(line for line in edgekit("emu", "status", "pi4-emu").stdout.splitlines() if "pi4-emu" in line)
    assert [c.strip() for c in row.split("│")[3:5]] == ["yes", "yes"], row


def test_emu_build_of_a_running_device_whose_host_key_it_rebuilt_restarts_it(emu_home: Path) -> None:
    """`rm ssh/host_ed25519*`, then `emu build` on the running device: the check then failed "host key CHANGED
    ... ssh-keygen -R ... then accept the new key" (impossible: emulated targets never accept a new key) until
    `emu down && emu up`, and nothing said so. Now the build restarts the device (said), and the check works."""
    make_home(emu_home, devices=("pi4-emu",))
    old = _up("pi4-emu")
    dev = layout.device_dir("pi4-emu")
    for key in dev.ssh.glob("host_ed25519*"):
        key.unlink()
    built = edgekit("emu", "build", "pi4-emu")
    said = " ".join(built.stdout.split())
    assert built.returncode == 0, built.stdout + built.stderr
    assert "is not the one pinned when it started" in said and "restarting it" in said, said
    assert _up("pi4-emu")["sshd_pid"] != old["sshd_pid"]
    checked = edgekit("targets", "check", "pi4-emu")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _emu_builds(*make_args: str) -> list[str]:
    """The devices `make -n ARGS` would build (`edgekit emu build NAME`), read from its dry run."""
    import re

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        ["make", "-n", "-C", str(root), *make_args], capture_output=True, text=True, timeout=60
    ).stdout
    loop = re.search(r"for d in ([^;]*);", out)
    assert loop is not None and "emu build $d" in out, out
    return loop.group(1).split()


def test_set_up_builds_the_emulated_devices_whatever_the_demo_target() -> None:
    """`make demo TARGET=pi4` ran `edgekit emu build pi4` (a real board: "unknown emulated device", exit 2, in
    set-up), and `TARGET=phone-emu` skipped pi4-emu although the README says set-up builds pi4-emu and
    pi5-emu. Set-up builds both, plus TARGET when it is an emulated device; only the deploy uses TARGET."""
    assert _emu_builds("demo", "TARGET=pi4") == ["pi4-emu", "pi5-emu"]
    assert _emu_builds("setup") == ["pi4-emu", "pi5-emu"]
    assert _emu_builds("demo", "TARGET=phone-emu") == ["pi4-emu", "pi5-emu", "phone-emu"]
    assert _emu_builds("demo", "TARGET=pi5-emu") == ["pi4-emu", "pi5-emu"]


def test_targets_setup_builds_an_unbuilt_emulated_device(
    emu_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`targets setup pi5-emu` on an empty emulator home refused ("... which only the set-up commands do") though
    the README lists it among them. It is a set-up command: it builds the device. Here the sysroot's download (the
    first step of that build, 800 MB) is stopped where it would begin; and from a home holding the shared assets
    (nothing to download) the device is built and set up."""
    from edgekit.emu import build as build_module
    from edgekit.emu.provision import setup_target
    from edgekit.errors import EmulatorError
    from edgekit.target import load_target

    emu_home.mkdir()
    (emu_home / "plugin").symlink_to(REAL / "plugin")  # built: its own step downloads nothing here

    def no_download(root: Path, log: object = None) -> Path:
        raise EmulatorError("sysroot download reached", where=str(root))

    monkeypatch.setattr(build_module, "ensure_sysroot", no_download)
    with pytest.raises(EmulatorError, match="sysroot download reached"):
        setup_target(load_target("pi5-emu"), lambda _m: None)
    monkeypatch.undo()
    monkeypatch.setenv("EDGEKIT_EMU_HOME", str(emu_home.with_name("emu2")))
    make_home(emu_home.with_name("emu2"))
    try:
        done = edgekit(
            "targets", "setup", "pi5-emu", EDGEKIT_EMU_HOME=str(emu_home.with_name("emu2")), **UNREACHABLE
        )
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        edgekit("emu", "down", "pi5-emu", EDGEKIT_EMU_HOME=str(emu_home.with_name("emu2")))


def test_a_full_disk_while_building_names_the_emulator_homes_disk_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator home on a tiny full disk: `targets check phone-emu` said "DiskFull: a local file: no space
    left ... note: the disk holding <data dir> has 42456.2 MB free" (a disk with room) and left
    bin/.python3-tflite-runtime.<pid>.tmp. Now the error names the file and the emulator home's disk with its
    free space, and no temp file is left."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tiny tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr!r}")
    try:
        home = small / "emu"
        home.mkdir()
        for shared in ("base", "site", "runtimes", "wheels", "plugin"):  # read only here
            (home / shared).symlink_to(REAL / shared)
        (home / "devices" / "phone-emu" / "bin").mkdir(parents=True)
        with contextlib.suppress(OSError), open(small / "fill", "wb") as fill:
            while True:
                fill.write(b"x" * 4096)
                fill.flush()
        done = edgekit("targets", "check", "phone-emu", EDGEKIT_EMU_HOME=str(home), **UNREACHABLE)
        said = " ".join(done.stderr.split())
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"no space left on the disk holding {home}" in said and "(0.0 MB free)" in said, said
        assert "edgekit emu build phone-emu" in said
        assert not list(home.rglob("*.tmp")), list(home.rglob("*.tmp"))
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)
