"""An emulated device's OpenSSH server: its sshd_config (every path quoted; one sshd_config cannot hold
refused), the sshd spawned in a session of its own, its banner waited for, and its processes found and stopped:
the sshd master, every process descended from it (each SSH session has a session of its own, so their process
groups are collected first), and the device's own processes its master left (a killed master leaves its sessions
running): its sessions' processes, the sshd serving its port, qemu running its sysroot's programs (never this
host's counting runs, nor a host process that merely names the device's files). edgekit/emu/runner.py decides which sshd is whose (state
files, unrecorded sshds) and when to start or stop one.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import time
from pathlib import Path

import psutil

from edgekit.emu import layout
from edgekit.errors import EmulatorError

SSHD = "/usr/sbin/sshd"
START_TIMEOUT_S = 10.0
# an sshd in one of these states answers no one: a stopped one (kill -STOP, a debugger) accepts connections in the
# kernel's backlog but never sends its banner, so it is not running, and `up` replaces it
NOT_SERVING = {psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD}
NOT_RUNNING = {psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD}


def sshd_alive(pid: int, config: str) -> bool:
    """pid is this device's sshd and it can serve: not stopped (T state, kill -STOP), not a zombie."""
    status = sshd_status(pid, config)
    return status is not None and status not in NOT_SERVING


def sshd_status(pid: int, config: str) -> str | None:
    """psutil's status of pid when it is this device's sshd (also stopped or a zombie), else None."""
    try:
        proc = psutil.Process(pid)
        status = proc.status()
        if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return str(status)  # a zombie's cmdline is empty: the pid in the state file is enough
        return str(status) if names_config(proc.cmdline(), config) else None
    except psutil.Error:
        return None


def names_config(cmdline: list[str], config: str) -> bool:
    """Whether a command line is an sshd started with `-f CONFIG`. sshd rewrites its title ("sshd: /usr/sbin/sshd
    -D -f CONFIG -E LOG [listener] ..."), which psutil splits at spaces: a config path with a space in it is
    matched in the joined line."""
    return f" -f {config} " in f" {' '.join(cmdline)} "


def child_of_master(proc: psutil.Process, config: str) -> bool:
    """A per-connection child of an sshd master of this config (it carries the master's command line for a
    moment): stopped with its master's tree, not a master of its own."""
    try:
        return names_config(psutil.Process(proc.info["ppid"]).cmdline(), config)
    except psutil.Error:
        return False


def kill_spawned(pid: int, dev: layout.DeviceDir) -> None:
    """Kill the sshd `up` just spawned (and anything it started) when `up` ends before recording it; a second
    Ctrl-C or SIGTERM waits until it is done (it takes well under a second)."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        kill_tree(pid, dev)
        dev.pid_file.unlink(missing_ok=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmuPathError(EmulatorError):
    """A path of the emulator home that sshd_config cannot hold."""

    exit_code = 2  # EDGEKIT_HOME / EDGEKIT_EMU_HOME: the user's choice


def quoted(path: Path | str, what: str) -> str:
    """`path` as one sshd_config argument: in double quotes (sshd splits its lines at spaces otherwise), a
    backslash doubled. A double quote cannot be written inside one: refused by name, as is a newline."""
    text = str(path)
    bad = "a double quote" if '"' in text else "a line break" if "\n" in text or "\r" in text else None
    if bad:
        raise EmuPathError(
            f"this emulated device's {what} has {bad} in its path, which sshd_config cannot hold",
            where=text,
            hint="point EDGEKIT_EMU_HOME (or EDGEKIT_HOME) at a directory without one",
        )
    return '"' + text.replace("\\", "\\\\") + '"'


def write_config(dev: layout.DeviceDir, port: int) -> None:
    user = getpass.getuser()
    # AuthorizedKeysFile expands %-tokens (%h, %u): a literal % is written %%
    keys = quoted(str(dev.authorized_keys).replace("%", "%%"), "authorized_keys")
    dev.sshd_config.write_text(
        f"# edgekit emulated device {dev.name}: written by `edgekit emu up`\n"
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {quoted(dev.host_key, 'host key')}\n"
        f"AuthorizedKeysFile {keys}\nPidFile {quoted(dev.pid_file, 'sshd.pid')}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\n"
        f"AllowUsers {user}\nSubsystem sftp internal-sftp\nAcceptEnv EDGEKIT_*\n"
        f"SetEnv EDGEKIT_DEVICE={dev.name} {quoted(f'HOME={dev.home}', 'home')}\n"
        "PrintMotd no\nUseDNS no\nX11Forwarding no\nAllowTcpForwarding no\nLogLevel ERROR\n"
    )


def spawn(dev: layout.DeviceDir) -> int:
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


def wait_ready(pid: int, port: int, dev: layout.DeviceDir) -> tuple[bool, str]:
    """Wait for the SSH banner on the port; (False, reason) when sshd exited or the time ran out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if reap(pid) or not psutil.pid_exists(pid):
            return False, dev.log_file.read_text().strip()[-500:] or "sshd exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return True, ""
        except OSError:
            time.sleep(0.02)
    return False, f"no SSH banner on 127.0.0.1:{port} after {START_TIMEOUT_S:.0f} s"


def reap(pid: int) -> bool:
    """Reap pid if it is our exited child; True when it has exited."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False


def kill_tree(
    pid: int | None, dev: layout.DeviceDir, config: str | None = None, port: int | None = None
) -> list[int]:
    """SIGTERM, then SIGKILL, the sshd master (None: it is gone or unknown), its descendants and their process
    groups, and the device's own processes left without it (device_processes). Return the pids still alive
    afterwards (should be none)."""
    targets = device_processes(pid, dev, config, port)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in targets:
            send(proc, sig)
            if sig == signal.SIGTERM:  # a stopped process (kill -STOP) acts on its SIGTERM once resumed
                send(proc, signal.SIGCONT)
        deadline = time.monotonic() + (3.0 if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            if pid is not None:
                reap(pid)
            alive = [p for p in targets if is_alive(p)]
            if not alive:
                return []
            time.sleep(0.05)
        targets = alive + device_processes(pid, dev, config, port)
    return sorted({p.pid for p in targets if is_alive(p)})


def device_processes(
    pid: int | None, dev: layout.DeviceDir, config: str | None, port: int | None = None
) -> list[psutil.Process]:
    """The device's processes: the sshd master `pid` (when it is still this config's) with its descendants and
    their process groups, and, found without it (a master killed leaves its sessions running, re-parented to
    init), every process that is the device's own, each with its descendants:
    - a process of one of its SSH sessions: sshd's SetEnv gave it EDGEKIT_DEVICE=<name> and HOME=<its home>;
    - an sshd serving a connection to the device's port (`port`, else the one its sshd_config names) whose
      parent is the master or gone (never a connection of another device's live master).
    A session's qemu is found by its environment like any of its processes. A host process that runs the device's
    interpreter outside its sessions (a counting run, a test's or a user's script: `devices/pi5-emu/bin/python3
    x.py`) is not the device's: `up` replacing a stale record SIGTERMed every such qemu (in a CI run: a test's ncnn
    run on the A76, exit -15 with nothing said). Nor is a host process that merely names the device's files
    (`tail -f .../sysroot/proc/cpuinfo`)."""
    found: dict[int, psutil.Process] = {}
    if pid is not None:
        try:
            master = psutil.Process(pid)
            if config is None or names_config(master.cmdline(), config):
                found[pid] = master
                for child in master.children(recursive=True):
                    found[child.pid] = child
        except psutil.Error:
            pass
    groups = {_pgid(p.pid) for p in found.values() if is_alive(p)} - {os.getpgid(0), None}
    port = port if port is not None else config_port(dev)
    own: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "ppid", "name", "cmdline"]):
        try:
            if proc.pid in found or proc.pid == os.getpid():
                continue
            if _pgid(proc.pid) in groups or _is_own(proc, dev, pid, port):
                found[proc.pid] = proc
                own.append(proc)
        except psutil.Error:
            continue
    for proc in own:
        try:
            for child in proc.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def config_port(dev: layout.DeviceDir) -> int | None:
    """The port the device's sshd_config names (written by each `up`), or None."""
    try:
        for line in dev.sshd_config.read_text().splitlines():
            if line.startswith("Port "):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _is_own(proc: psutil.Process, dev: layout.DeviceDir, master: int | None, port: int | None) -> bool:
    name = proc.info["name"] or ""
    if name.startswith("sshd") and port is not None:
        if proc.info["ppid"] not in (master, 1) and _is_sshd(proc.info["ppid"]):
            return False  # a connection of a live sshd master: that master's, stopped with it if it is ours
        try:
            conns = proc.connections(kind="tcp")
        except psutil.Error:
            return False
        return any(c.laddr and c.laddr.port == port and c.raddr for c in conns)
    try:
        env = proc.environ()
    except psutil.Error:
        return False
    return env.get("EDGEKIT_DEVICE") == dev.name and env.get("HOME") == str(dev.home)


def _is_sshd(pid: int) -> bool:
    try:
        return psutil.Process(pid).name().startswith("sshd")
    except psutil.Error:
        return False


def send(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass


def is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
