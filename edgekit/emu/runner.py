"""Start, inspect and stop emulated devices: a real OpenSSH server on 127.0.0.1 per device.

`up` starts `/usr/sbin/sshd -D -f CONFIG` directly (never through init scripts) in a session of its own
(setsid), so the sshd master's pid is also its process group and session id. `down` stops exactly what it
started: the sshd master, every process descended from it (each SSH session has a session of its own, so
their process groups are collected first), and any orphaned process still running this device's
interpreter (its command line names the device's sysroot), then checks that none is left.

A state file is trusted only when it is this emu dir's own (`owned`): it names this device dir's sshd_config
and this emu home. A copied or stale state file of another data dir is ignored (and removed), never acted on:
`status` does not show its device and `down` does not stop it.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from edgekit.emu import layout
from edgekit.emu.build import build, is_built, needs_download
from edgekit.emu.locks import file_lock
from edgekit.emu.specs import DEVICES, DeviceSpec, device_spec
from edgekit.emu.state import DeviceState, clear_state, read_state, write_state
from edgekit.errors import EmulatorError
from edgekit.paths import emu_dir

SSHD = "/usr/sbin/sshd"
START_TIMEOUT_S = 10.0
# counting and profiling runs on this host (edgekit/emu/plugin/*runner.py) use a device's interpreter but are not
# the device's processes: stopping the device must not kill a conversion's speed plan or an `edgekit estimate`
LOCAL_RUNNERS = str(Path(__file__).with_name("plugin"))
# an sshd in one of these states answers no one: a stopped one (kill -STOP, a debugger) accepts connections in the
# kernel's backlog but never sends its banner, so it is not running, and `up` replaces it
NOT_SERVING = {psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD}


@dataclass(frozen=True)
class DeviceStatus:
    name: str
    cpu: str
    built: bool
    running: bool
    port: int | None
    sshd_pid: int | None


def up(name: str, log: Callable[[str], None] = print, provision: bool = True) -> DeviceState:
    """Start device NAME (building it first if needed); harmless when it is already running. With `provision`
    False (a deploy, a check: not a provisioning command) a device whose build would download is refused."""
    spec = device_spec(name)
    if not provision and needs_download(name):
        raise EmulatorError(
            f"{name} is not built on this machine, and building it downloads Debian's arm64 packages and "
            "aarch64 wheels (about 800 MB), which only the set-up commands do",
            where=str(layout.device_dir(name).root),
            hint=f"edgekit emu build {name} (or make setup); EDGEKIT_EMU_HOME points at devices built elsewhere",
        )
    with file_lock(layout.device_dir(name).root.parent / f"{name}.lock"):
        return _up_locked(name, spec, log)


def _up_locked(name: str, spec: DeviceSpec, log: Callable[[str], None]) -> DeviceState:
    state = _own_state(name, log)
    if state is not None and _sshd_alive(state.sshd_pid, state.sshd_config):
        return state
    if state is not None:
        stuck = _sshd_status(state.sshd_pid, state.sshd_config)
        _stop(name, state)  # stale record: make sure nothing of it is left before starting again
        if stuck is not None:  # its sshd is there but answers no one: say why the device restarts
            log(
                f"{name}'s sshd (pid {state.sshd_pid}) was {stuck} and answered no one: killed it and its "
                f"sessions (as `edgekit emu down {name}` does); starting a fresh one"
            )
    dev = build(name, log)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    last_error = ""
    for _attempt in range(3):
        port = _free_port()
        _write_sshd_config(dev, port)
        pid = _spawn_sshd(dev)
        ok, last_error = _wait_ready(pid, port, dev)
        if ok:
            host_key = " ".join(dev.host_key.with_suffix(".pub").read_text().split()[:2])
            dev.known_hosts.write_text(f"[127.0.0.1]:{port} {host_key}\n")
            state = DeviceState(
                name=name,
                cpu=spec.cpu,
                port=port,
                user=getpass.getuser(),
                host_key=host_key,
                known_hosts=str(dev.known_hosts),
                client_key=str(dev.client_key),
                python=str(dev.python),
                python_tflite_runtime=str(dev.python_tflite_runtime),
                work_dir=str(dev.home / "edgekit"),
                sshd_pid=pid,
                sshd_config=str(dev.sshd_config),
                started_at=time.time(),
                home=str(emu_dir()),
            )
            write_state(state)
            log(
                f"started the emulated device (qemu -cpu {spec.cpu}, sshd on 127.0.0.1:{port}); it keeps "
                f"running for the next run: `edgekit emu down {name}` stops it"
            )
            return state
        _kill_tree(pid, dev)
    raise EmulatorError(
        f"sshd did not start: {last_error}", where=str(dev.sshd_config), hint=f"see {dev.log_file}"
    )


def down(name: str) -> bool:
    """Stop device NAME; return False when it was not running. Raises if a process survives."""
    device_spec(name)
    with file_lock(layout.device_dir(name).root.parent / f"{name}.lock"):
        state = _own_state(name, lambda _m: None)
        if state is None:
            return False
        _stop(name, state)
        return True


def status() -> list[DeviceStatus]:
    """Every known emulated device: built, running, port, sshd pid."""
    rows = []
    for name, spec in DEVICES.items():
        state = read_state(name)
        state = state if state is not None and owned(name, state) else None
        running = state is not None and _sshd_alive(state.sshd_pid, state.sshd_config)
        rows.append(
            DeviceStatus(
                name,
                spec.cpu,
                is_built(name),
                running,
                state.port if running and state else None,
                state.sshd_pid if running and state else None,
            )
        )
    return rows


def running_state(name: str) -> DeviceState | None:
    """The state of NAME if its sshd is really running (pid alive and is this device's sshd)."""
    state = read_state(name)
    if state is not None and owned(name, state) and _sshd_alive(state.sshd_pid, state.sshd_config):
        return state
    return None


def owned(name: str, state: DeviceState) -> bool:
    """True when `state` was written by this emu dir for device NAME (not copied from another data dir)."""
    dev = layout.device_dir(name)
    home_ok = state.home is None or Path(state.home).resolve() == emu_dir().resolve()
    return state.name == name and home_ok and Path(state.sshd_config).resolve() == dev.sshd_config.resolve()


def _own_state(name: str, log: Callable[[str], None]) -> DeviceState | None:
    """This emu dir's state of NAME; a state file of another data dir is removed, its device left alone."""
    state = read_state(name)
    if state is not None and not owned(name, state):
        log(
            f"{name}: ignoring a state file written for another data dir ({state.sshd_config}); "
            "its device is not ours to stop"
        )
        clear_state(name)
        return None
    return state


def _stop(name: str, state: DeviceState) -> None:
    dev = layout.device_dir(name)
    survivors = _kill_tree(state.sshd_pid, dev, config=state.sshd_config)
    if survivors:
        raise EmulatorError(f"processes survived SIGKILL: {survivors}", where=f"emu down {name}")
    clear_state(name)
    dev.pid_file.unlink(missing_ok=True)


def _sshd_alive(pid: int, config: str) -> bool:
    """pid is this device's sshd and it can serve: not stopped (T state, kill -STOP), not a zombie."""
    status = _sshd_status(pid, config)
    return status is not None and status not in NOT_SERVING


def _sshd_status(pid: int, config: str) -> str | None:
    """psutil's status of pid when it is this device's sshd (also stopped or a zombie), else None."""
    try:
        proc = psutil.Process(pid)
        status = proc.status()
        if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return str(status)  # a zombie's cmdline is empty: the pid in the state file is enough
        return str(status) if config in proc.cmdline() else None
    except psutil.Error:
        return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_sshd_config(dev: layout.DeviceDir, port: int) -> None:
    user = getpass.getuser()
    dev.sshd_config.write_text(
        f"# edgekit emulated device {dev.name}: written by `edgekit emu up`\n"
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {dev.host_key}\n"
        f"AuthorizedKeysFile {dev.authorized_keys}\nPidFile {dev.pid_file}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\n"
        f"AllowUsers {user}\nSubsystem sftp internal-sftp\nAcceptEnv EDGEKIT_*\n"
        f"SetEnv EDGEKIT_DEVICE={dev.name} HOME={dev.home}\n"
        "PrintMotd no\nUseDNS no\nX11Forwarding no\nAllowTcpForwarding no\nLogLevel ERROR\n"
    )


def _spawn_sshd(dev: layout.DeviceDir) -> int:
    """posix_spawn with setsid: no Popen object left to warn about, and the pid is the process group."""
    dev.run.mkdir(parents=True, exist_ok=True)
    dev.log_file.write_text("")
    argv = [SSHD, "-D", "-f", str(dev.sshd_config), "-E", str(dev.log_file)]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(dev.log_file), os.O_WRONLY | os.O_APPEND, 0),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(SSHD, argv, dict(os.environ), file_actions=actions, setsid=True)


def _wait_ready(pid: int, port: int, dev: layout.DeviceDir) -> tuple[bool, str]:
    """Wait for the SSH banner on the port; (False, reason) when sshd exited or the time ran out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _reap(pid) or not psutil.pid_exists(pid):
            return False, dev.log_file.read_text().strip()[-500:] or "sshd exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return True, ""
        except OSError:
            time.sleep(0.02)
    return False, f"no SSH banner on 127.0.0.1:{port} after {START_TIMEOUT_S:.0f} s"


def _reap(pid: int) -> bool:
    """Reap pid if it is our exited child; True when it has exited."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False


def _kill_tree(pid: int, dev: layout.DeviceDir, config: str | None = None) -> list[int]:
    """SIGTERM, then SIGKILL, the sshd master, its descendants and their process groups, and orphans
    running this device's interpreter (not this host's counting runs: LOCAL_RUNNERS). Return the pids still alive afterwards (should be none)."""
    targets = _device_processes(pid, dev, config)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in targets:
            _signal(proc, sig)
            if sig == signal.SIGTERM:  # a stopped process (kill -STOP) acts on its SIGTERM once resumed
                _signal(proc, signal.SIGCONT)
        deadline = time.monotonic() + (3.0 if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            _reap(pid)
            alive = [p for p in targets if _alive(p)]
            if not alive:
                return []
            time.sleep(0.05)
        targets = alive + _device_processes(pid, dev, config)
    return sorted({p.pid for p in targets if _alive(p)})


def _device_processes(pid: int, dev: layout.DeviceDir, config: str | None) -> list[psutil.Process]:
    found: dict[int, psutil.Process] = {}
    try:
        master = psutil.Process(pid)
        if config is None or config in master.cmdline():
            found[pid] = master
            for child in master.children(recursive=True):
                found[child.pid] = child
    except psutil.Error:
        pass
    groups = {os.getpgid(p.pid) for p in found.values() if _alive(p)} - {os.getpgid(0)}
    marker = str(dev.sysroot)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid in found or proc.pid == os.getpid():
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            if os.getpgid(proc.pid) in groups or (marker in cmd and LOCAL_RUNNERS not in cmd):
                found[proc.pid] = proc
        except (psutil.Error, ProcessLookupError):
            continue
    return list(found.values())


def _signal(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
