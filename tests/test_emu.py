"""Emulated devices, for real: qemu-user + arm64 CPython + OpenSSH on 127.0.0.1 (marked integration)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import paramiko
import procs
import psutil
import pytest
from typer.testing import CliRunner

from edgekit.emu import layout
from edgekit.emu.specs import DEVICES, cpuinfo_text, device_spec
from edgekit.errors import UsageError


def _live(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains marker."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(proc.info["cmdline"] or []):
            found.append(proc.info["pid"])
    return found


def test_cpuinfo_matches_emulated_core() -> None:
    pi4 = cpuinfo_text(device_spec("pi4-emu"), 4)
    assert pi4.count("processor\t:") == 4 and "CPU part\t: 0xd08" in pi4 and "asimddp" not in pi4
    pi5 = cpuinfo_text(device_spec("pi5-emu"), 2)
    assert "CPU part\t: 0xd0b" in pi5 and "asimddp" in pi5
    assert all(spec.cpu != "max" for spec in DEVICES.values())


def test_unknown_device_is_a_named_error() -> None:
    with pytest.raises(UsageError, match="known devices"):  # a name the user gave: bad input, exit 2
        device_spec("pi9-emu")


@pytest.mark.integration
def test_push_and_run_python_sees_aarch64(pi4_transport, pi4_emu, small_file, scratch_name) -> None:
    put = pi4_transport.put(small_file, f"{scratch_name}/probe.py")
    assert put.bytes_sent == small_file.stat().st_size and not put.skipped
    res = pi4_transport.run([pi4_emu.python, "probe.py"], timeout=60, cwd=scratch_name)
    assert res.ok, res.stderr
    assert res.stdout.split()[0] == "aarch64"
    assert "-cpu cortex-a72" in res.stdout  # EDGEKIT_EMULATOR, never qemu's default `max`


@pytest.mark.integration
def test_second_push_sends_nothing(pi4_transport, small_file, scratch_name) -> None:
    first = pi4_transport.put(small_file, f"{scratch_name}/same.py")
    again = pi4_transport.put(small_file, f"{scratch_name}/same.py")
    assert first.bytes_sent > 0
    assert (again.bytes_sent, again.skipped, again.sha256) == (0, True, first.sha256)
    small_file.write_text(small_file.read_text() + "# changed\n")
    changed = pi4_transport.put(small_file, f"{scratch_name}/same.py")
    assert changed.bytes_sent == small_file.stat().st_size
    assert pi4_transport.sha256(f"{scratch_name}/same.py") == changed.sha256


@pytest.mark.integration
def test_get_pulls_the_file_back(pi4_transport, small_file, scratch_name, tmp_path) -> None:
    pi4_transport.put(small_file, f"{scratch_name}/x.py")
    back = pi4_transport.get(f"{scratch_name}/x.py", tmp_path / "back" / "x.py")
    assert back.read_bytes() == small_file.read_bytes()


@pytest.mark.integration
def test_timeout_stops_the_emulated_process(pi4_transport, pi4_emu) -> None:
    from edgekit.errors import RemoteTimeout

    marker = f"edgekit_timeout_{uuid.uuid4().hex[:8]}"
    start = time.monotonic()
    with pytest.raises(RemoteTimeout, match="did not finish within 4 s") as info:
        pi4_transport.run([pi4_emu.python, "-c", f"import time  # {marker}\ntime.sleep(120)"], timeout=4)
    assert time.monotonic() - start < 15
    assert info.value.pgid  # the remote process group that was killed
    deadline = time.monotonic() + 5
    while _live(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live(marker) == []


@pytest.mark.integration
def test_targets_check_shows_the_emulated_pi4(pi4_emu) -> None:
    from edgekit.cli import app

    result = CliRunner().invoke(app, ["targets", "check", "pi4-emu"])
    assert result.exit_code == 0, result.output
    for text in ("aarch64", "Cortex-A72", "cortex-a72", "1.26.4", "2.14.0", "emulated"):
        assert text in result.output
    assert "expected_cpu" not in result.output  # the device is the Cortex-A72 the target expects
    # a target that expects another core: the check printed the CPU and exited 0; it now compares, as deploy does
    wrong = CliRunner().invoke(app, ["targets", "check", "pi4-emu", "--set", "expected_cpu=Cortex-A76"])
    said = " ".join(wrong.output.split())
    assert wrong.exit_code == 1, wrong.output
    assert "not the target's expected_cpu Cortex-A76" in said and "Cortex-A72 (CPU part 0xd08)" in said, said


@pytest.mark.integration
def test_up_twice_is_harmless_and_down_leaves_nothing() -> None:
    from edgekit.emu.runner import down, running_state, up

    name = "phone-emu"  # a device the rest of the suite does not use
    was_running = running_state(name) is not None
    first = up(name, lambda _m: None)
    start = time.monotonic()
    second = up(name, lambda _m: None)
    # lock, hashes and stats on a loaded machine; a restart of the device takes minutes
    assert time.monotonic() - start < 5 and second.sshd_pid == first.sshd_pid
    dev = layout.device_dir(name)
    client = paramiko.SSHClient()
    client.load_host_keys(first.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        "127.0.0.1",
        first.port,
        username=first.user,
        key_filename=first.client_key,
        look_for_keys=False,
        allow_agent=False,
    )
    # a session still running the emulated python, and an orphan that left its session
    client.exec_command(f"{first.python} -c 'import time; time.sleep(300)'")
    client.exec_command(f"nohup {first.python} -c 'import time; time.sleep(301)' >/dev/null 2>&1 &")
    # and a counting run on this host, which uses the device's interpreter but is not the device's: it survives
    from edgekit.emu.plugin.counting import RUNNER

    counting = subprocess.Popen(
        ["setarch", "-R", str(dev.python), "-c", "import time; time.sleep(303)", str(RUNNER)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while len(_live(str(dev.sysroot))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_live(str(dev.sysroot))) >= 3
    tree = [first.sshd_pid] + [c.pid for c in psutil.Process(first.sshd_pid).children(recursive=True)]
    try:
        assert down(name) is True
        client.close()
        assert counting.poll() is None, "stopping the device killed a counting run of this host"
    finally:
        counting.kill()
        counting.wait()
    assert _live(str(dev.sysroot)) == [] and _live(str(dev.sshd_config)) == []
    assert [
        p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ] == []
    assert running_state(name) is None and down(name) is False
    if was_running:
        up(name, lambda _m: None)


@pytest.mark.integration
def test_build_is_idempotent_and_fast() -> None:
    from edgekit.emu.build import build

    start = time.monotonic()
    build("pi4-emu", lambda m: pytest.fail(f"a built device rebuilt something: {m}"))
    assert time.monotonic() - start < 5  # lock, hashes and stats on a loaded machine; a rebuild takes minutes


@pytest.mark.integration
def test_targets_setup_pushes_wheels_to_a_bare_board(pi4_emu, tmp_path) -> None:
    """pi4-emu's sshd seen as a real board whose python has no runtimes and no pip: setup detects the
    platform over SSH, pushes the host-downloaded numpy wheel and unpacks it on the device."""
    from edgekit.deploy.request import AGENT_FILE, AGENT_REMOTE
    from edgekit.emu.provision import setup_target
    from edgekit.target import load_target
    from edgekit.transport import open_transport

    sysroot = layout.device_dir("pi4-emu").sysroot
    bare_python = f"qemu-aarch64-static -cpu cortex-a72 -L {sysroot} {sysroot}/usr/bin/python3.11"
    path = tmp_path / "bare.yaml"
    path.write_text(f"name: bare\ntransport: ssh\nruntimes: [numpy]\npython: {bare_python}\n")
    board = load_target(
        path,
        {
            "host": "127.0.0.1",
            "port": str(pi4_emu.port),
            "user": pi4_emu.user,
            "key": str(pi4_emu.key),
            "known_hosts": str(pi4_emu.known_hosts),
            "work_dir": str(tmp_path / "board"),
        },
        ssh_config=tmp_path / "none",
    )
    messages: list[str] = []
    info = setup_target(board, messages.append)
    assert info.raw["machine"] == "aarch64" and info.runtimes["numpy"] == "1.26.4"
    assert any("pushed 1 wheels" in m for m in messages)
    with open_transport(board) as transport:
        res = transport.run(
            [*bare_python.split(), "-c", "import numpy; print(numpy.zeros(3).sum())"],
            timeout=120,
            env={"PYTHONPATH": str(tmp_path / "board" / "site")},
        )
    assert res.ok and res.stdout.strip() == "0.0", res.stderr
    with open_transport(board) as transport:  # the agent finds the unpacked wheels without PYTHONPATH
        transport.put(AGENT_FILE, AGENT_REMOTE)
        res = transport.run([*bare_python.split(), AGENT_REMOTE], timeout=120)
    assert res.exit_status == 2 and "usage: python agent.py" in res.stderr, res.stderr  # past `import numpy`


@pytest.mark.integration
def test_targets_setup_on_a_board_whose_install_fails_exits_1_named(pi4_emu, tmp_path) -> None:
    """The board's install step failing (here the unpack of the pushed wheels on a board without pip, answered
    as a full disk answers it, by a wrapper around the device's python): `targets setup` says what failed, where
    the wheels are, and exits 1, after the real probe, download and push over the real sshd."""
    import os
    import subprocess

    sysroot = layout.device_dir("pi4-emu").sysroot
    wrapper = tmp_path / "python3"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$2" in *zipfile*) echo "OSError: [Errno 28] No space left on device" >&2; exit 1;; esac\n'
        f'exec qemu-aarch64-static -cpu cortex-a72 -L {sysroot} {sysroot}/usr/bin/python3.11 "$@"\n'
    )
    wrapper.chmod(0o755)
    board = tmp_path / "board.yaml"
    board.write_text(
        f"name: board\ntransport: ssh\nruntimes: [numpy]\npython: {wrapper}\nhost: 127.0.0.1\n"
        f"port: {pi4_emu.port}\nuser: {pi4_emu.user}\nkey: {pi4_emu.key}\nknown_hosts: {pi4_emu.known_hosts}\n"
        f"work_dir: {tmp_path / 'work'}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "targets", "setup", str(board)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error (RuntimeInstallError)" in done.stderr and "unpacking the wheels" in done.stderr, done.stderr
    assert "No space left on device" in done.stderr and f"{tmp_path / 'work'}/wheels" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_deploy_or_check_never_downloads_a_device_only_set_up_does(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`targets check pi4-emu` (or a deploy) with no built device built one, downloading Debian's arm64 packages
    and the aarch64 wheels (817 MB here): downloads belong to the set-up commands. Refused in a second, with the
    command to run; a device whose shared assets are here (phone-emu beside a built pi4-emu) still builds."""
    import os

    from edgekit.emu.build import needs_download

    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path), "EDGEKIT_EMU_HOME": str(tmp_path / "emu")}
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "targets", "check", "pi4-emu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    said = " ".join(out.stderr.split())
    assert out.returncode == 1 and "pi4-emu is not built on this machine" in said, out.stderr
    assert "edgekit emu build pi4-emu" in said and time.monotonic() - start < 60
    assert not (tmp_path / "emu" / "base" / "apt").exists() and not (tmp_path / "emu" / "wheels").exists()
    assert needs_download("pi4-emu") is False  # the suite's own devices: built by make setup
    assert needs_download("phone-emu") is False  # not built perhaps, but nothing to download for it


@pytest.fixture()
def phone_emu_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """phone-emu running from a private emulator home (EDGEKIT_EMU_HOME): the shared site dirs hard-linked into
    it (a rebuild replaces the copy's names, never the files pi4-emu and pi5-emu read), the sysroot, wheels and
    plugin symlinked (read only here), the device's own dir copied. Stopped at the end."""
    from edgekit.emu.device import ensure_device
    from edgekit.emu.runner import down
    from edgekit.target import load_target

    monkeypatch.setenv("EDGEKIT_EMU_HOME", str(private_emu_home(tmp_path / "emu")))
    target = ensure_device(load_target("phone-emu"))
    try:
        yield target
    finally:
        down("phone-emu")


def private_emu_home(home: Path, own_plugin: bool = False) -> Path:
    """An emulator home at `home` holding phone-emu (not running): the shared site dirs hard-linked into it (a
    rebuild replaces the copy's names, never the files pi4-emu and pi5-emu read), the sysroot and wheels
    symlinked (read only here), the plugin symlinked too or, with `own_plugin`, copied (a test may break it), the
    device's own dir copied (built from the shared assets when the shared one is not built)."""
    real = layout.shared().root
    home.mkdir(parents=True)
    for read_only in ("base", "wheels") if own_plugin else ("base", "wheels", "plugin"):
        (home / read_only).symlink_to(real / read_only)
    if own_plugin:
        shutil.copytree(real / "plugin", home / "plugin", symlinks=True)
    for sites in ("site", "runtimes"):  # the stamps (NAME.done) copied: a rebuild writes them in place
        shutil.copytree(real / sites, home / sites, symlinks=True, copy_function=_link_but_stamps)
    device = real / "devices" / "phone-emu"
    if (device / "built.done").exists():  # else built in the private home, from the shared assets
        own = home / "devices" / "phone-emu"
        skip = shutil.ignore_patterns("state.json", "run", "home")
        shutil.copytree(device, own, symlinks=True, ignore=skip)
        (own / "home").mkdir()
    return home


def _link_but_stamps(src: str, dst: str) -> None:
    if src.endswith(".done"):
        shutil.copy2(src, dst)
    else:
        os.link(src, dst)


_edgekit = partial(procs.run, columns=200)

# Termux's pkg on a phone whose mirror lacks every package asked for
FAILING_PKG = """#!/bin/sh
shift 2  # install -y
echo "E: Unable to locate package $*" >&2
exit 100
"""


@pytest.mark.integration
def test_targets_setup_that_could_not_install_exits_1_after_the_table(phone_emu_private, tmp_path) -> None:
    """A phone whose `pkg` fails: setup printed "could not install: ncnn (...)" and a table with `missing`, then
    exited 0, so a script or a nightly could not tell. Now the table, then RuntimeInstallError (exit 1): what,
    where, what was tried, what to try."""
    prefix = tmp_path / "fakeprefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "pkg").write_text(FAILING_PKG)
    (prefix / "bin" / "pkg").chmod(0o755)
    # the device's python in Termux's environment, blind to the site dirs (-E: no PYTHONPATH): no ncnn
    python = f"env TERMUX_VERSION=0.118.0 PREFIX={prefix} {phone_emu_private.python} -E"
    out = _edgekit("targets", "setup", "phone-emu", "--set", f"python={python}", "--set", "runtimes=[ncnn]")
    said = " ".join(out.stderr.split())
    assert out.returncode == 1, (out.stdout, out.stderr)
    # numpy too: the device's python (-E) has none, and the failing pkg installs nothing; each with its own error
    assert (
        "error (RuntimeInstallError): phone-emu: could not install numpy (pkg python-numpy: E: Unable to"
        in said
    )
    assert "ncnn (pkg ncnn: E: Unable to locate" in said, said
    assert "hint: install numpy, ncnn on the device by hand" in said and "Traceback" not in out.stderr, said
    assert "ncnn" in out.stdout and "missing" in out.stdout  # the device's table first


def _sites(home: Path) -> dict[str, tuple[int, str]]:
    """Each shared site dir of an emulator home -> (its inode: a rebuild renames a new folder in, its stamp)."""
    return {
        f"{group}/{stamp.stem}": ((home / group / stamp.stem).stat().st_ino, stamp.read_text())
        for group in ("site", "runtimes")
        for stamp in sorted((home / group).glob("*.done"))
    }


@pytest.mark.integration
def test_targets_setup_on_an_emulated_device_never_rebuilds_a_complete_site(phone_emu_private) -> None:
    """`runtimes: [ncnn, openvino]` on phone-emu deleted every site/*.done stamp and re-installed the site dirs
    pi4-emu and pi5-emu read (rmtree, then a rename, maybe under a running device), which can never give
    OpenVINO anyway, then exited 0 saying only `missing openvino`. Now nothing is rebuilt, and OpenVINO is named
    as not installable: why, and what to try (exit 1)."""
    home = Path(os.environ["EDGEKIT_EMU_HOME"])
    before = _sites(home)
    assert len(before) == 4, before
    out = _edgekit("targets", "setup", "phone-emu", "--set", "runtimes=[ncnn, openvino]")
    said = " ".join(out.stderr.split())
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert (
        "error (RuntimeInstallError): phone-emu: could not install openvino (openvino is a host-only" in said
    )
    assert "the emulated devices have numpy, ai_edge_litert, ncnn" in said
    assert "hint: leave openvino out of the target's runtimes (--set 'runtimes=[ncnn]')" in said
    assert "re-installing" not in out.stdout and "wheels: installing" not in out.stdout, out.stdout
    assert _sites(home) == before


@pytest.mark.integration
def test_targets_setup_on_an_emulated_device_reinstalls_only_the_site_that_lacks_its_runtime(
    phone_emu_private,
) -> None:
    """A shared site dir that really lacks its runtime is re-installed (from the cached wheels), and it alone."""
    home = Path(os.environ["EDGEKIT_EMU_HOME"])
    before = _sites(home)
    for part in (home / "site" / "litert").glob("ncnn*"):  # the copy's names: the shared files stay
        shutil.rmtree(part)
    out = _edgekit("targets", "setup", "phone-emu", "--set", "runtimes=[ncnn]")
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "site/litert lacks ncnn: re-installing it" in " ".join(out.stdout.split())
    after = _sites(home)
    assert (
        after["site/litert"][0] != before["site/litert"][0]
        and after["site/litert"][1] == before["site/litert"][1]
    )
    assert {k: v for k, v in after.items() if k != "site/litert"} == {
        k: v for k, v in before.items() if k != "site/litert"
    }
    assert (home / "site" / "litert" / "ncnn").is_dir()


@pytest.mark.integration
def test_a_frozen_device_is_not_running_and_up_starts_a_fresh_one(phone_emu_private) -> None:
    """An sshd stopped by kill -STOP (T state) counted as running: `emu status` said running, `emu up` exit 0
    on the frozen port, and a connection waited for a banner and then advised another port ("a Pi: 22, Termux:
    8022"). Now the frozen device is not running; its hint is the restart; `emu up` kills the stopped sshd (as
    `emu down` does) and starts a fresh one, saying so."""
    import signal

    from edgekit.emu.device import running_target
    from edgekit.emu.runner import running_state
    from edgekit.errors import ConnectError
    from edgekit.target import load_target
    from edgekit.transport import open_transport

    old = running_state("phone-emu")
    assert old is not None
    quick = phone_emu_private.model_copy(update={"connect_timeout": 2.0})
    os.kill(old.sshd_pid, signal.SIGSTOP)
    try:
        with (
            pytest.raises(ConnectError, match="no SSH server answered") as info,
            open_transport(quick) as link,
        ):
            link.connect()
        hint = info.value.hint or ""
        assert "`edgekit emu down phone-emu && edgekit emu up phone-emu`" in hint and "Termux" not in hint, (
            hint
        )
        assert running_state("phone-emu") is None
        status = _edgekit("emu", "status", "phone-emu")
        row = next(line for line in status.stdout.splitlines() if "phone-emu" in line)
        assert status.returncode == 0 and row.split("│")[4].strip() == "no", status.stdout
        start = time.monotonic()
        up = _edgekit("emu", "up", "phone-emu")
        said = " ".join(up.stdout.split())
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"phone-emu's sshd (pid {old.sshd_pid}) was stopped and answered no one" in said, said
        assert "starting a fresh one" in said
        assert (
            time.monotonic() - start < 30
        )  # the stopped sshd is resumed to act on its SIGTERM, not waited out
    finally:
        with contextlib.suppress(OSError):
            os.kill(old.sshd_pid, signal.SIGCONT)
    new = running_state("phone-emu")
    assert new is not None and new.sshd_pid != old.sshd_pid
    gone = (
        not psutil.pid_exists(old.sshd_pid) or psutil.Process(old.sshd_pid).status() == psutil.STATUS_ZOMBIE
    )
    assert gone
    with open_transport(running_target(load_target("phone-emu"))) as link:
        assert link.run(["true"], timeout=60).ok
    # `targets check` restarts a frozen device too, and says so (it did in silence)
    os.kill(new.sshd_pid, signal.SIGSTOP)
    try:
        checked = _edgekit("targets", "check", "phone-emu")
    finally:
        with contextlib.suppress(OSError):
            os.kill(new.sshd_pid, signal.SIGCONT)
    said = " ".join(checked.stderr.split())
    assert checked.returncode == 0 and "was stopped and answered no one" in said, (
        checked.stdout + checked.stderr
    )


@pytest.mark.integration
def test_deploy_says_it_started_a_stopped_device_and_that_it_keeps_running(phone_emu_private) -> None:
    """deploy to a stopped emulated device started it with no word but "ensure done in 0.0 s", and left it
    running unsaid. It now says it started the device (its core and port) and how to stop it."""
    from edgekit.emu.runner import down, running_state

    assert down("phone-emu") is True
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
    out = _edgekit(
        "deploy",
        str(recipe),
        "--target",
        "phone-emu",
        "-f",
        "tflite-fp32",
        "--no-store",
        "--no-host",
        "--repeat",
        "1",
        "--set",
        "emulated.counting=false",
    )
    said = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    state = running_state("phone-emu")
    assert state is not None  # it keeps running, as said
    assert (
        "phone-emu: started the emulated device (qemu -cpu cortex-a76, sshd on "
        f"127.0.0.1:{state.port}); it keeps running for the next run: `edgekit emu down phone-emu` stops it"
    ) in said, said[-3000:]
