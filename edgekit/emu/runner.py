"""Start, inspect and stop emulated devices: a real OpenSSH server on 127.0.0.1 per device.

`up` starts `/usr/sbin/sshd -D -f CONFIG` directly (never through init scripts) in a session of its own
(setsid), so the sshd master's pid is also its process group and session id. `down` stops exactly what it
started: the sshd master, every process descended from it (each SSH session has a session of its own, so
their process groups are collected first), and the device's own processes a gone master left running (its
sessions' processes, by the environment sshd gave them, and the sshd serving its port: sshd.device_processes;
never a host process that runs its interpreter outside a session or merely names its files), then checks that
none is left.

An sshd no state file records (an `up` interrupted between the spawn and the state write, a state file that
cannot be read) is still this device's when its command line names this device dir's sshd_config, or its pid
is the one sshd wrote to the device's run/sshd.pid: `down` stops it, and `up` stops it before starting one.
`up` itself kills the sshd it spawned if anything (a Ctrl-C too) ends it before the state is written.

A state file is trusted only when it is this emu dir's own (`owned`): it names this device dir's sshd_config
and this emu home. A copied or stale state file of another data dir is ignored (and removed), never acted on:
`status` does not show its device and `down` does not stop it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from edgekit.emu import layout, sshd
from edgekit.emu.build import build, is_built, needs_download
from edgekit.emu.locks import file_lock
from edgekit.emu.specs import DEVICES, DeviceSpec, device_spec
from edgekit.emu.state import DeviceState, clear_state, load_state, read_state, stale_message, write_state
from edgekit.errors import EmulatorError
from edgekit.paths import emu_dir


@dataclass(frozen=True)
class DeviceStatus:
    name: str
    cpu: str
    built: bool
    running: bool
    port: int | None
    sshd_pid: int | None
    note: str | None = None  # why a device is shown as not running although something is recorded


@dataclass(frozen=True)
class DownResult:
    """What `down` found and did."""

    stopped: bool  # the recorded sshd was running and is stopped
    stale: bool  # a state file was there whose sshd was gone, or that could not be read: removed
    orphans: tuple[int, ...] = ()  # sshd pids no state file recorded (an interrupted `up`): stopped
    # processes of the device's SSH sessions (and its qemu) left running by an sshd master that was gone (killed):
    # stopped
    leftovers: tuple[int, ...] = ()

    @property
    def was_running(self) -> bool:
        return self.stopped or bool(self.orphans) or bool(self.leftovers)


def up(name: str, log: Callable[[str], None] = print, provision: bool = True) -> DeviceState:
    """Start device NAME (building it first if needed); harmless when it is already running. With `provision`
    False (a deploy, a check: not a provisioning command) a device whose build would download is refused."""
    spec = device_spec(name)
    sshd.quoted(
        layout.device_dir(name).root, "dir"
    )  # a path sshd_config cannot hold: refused before any work
    if not provision:
        check_startable(name)
    with _device_lock(name, log):
        return _up_locked(name, spec, log, provision)


def check_startable(name: str) -> None:
    """EmulatorError when device NAME is not built here and building it would download: only the set-up
    commands do that. A deploy says it before any conversion, not in the device's stage after them."""
    if needs_download(name):
        raise EmulatorError(
            f"{name} is not built on this machine, and building it downloads Debian's arm64 packages and "
            "aarch64 wheels (about 800 MB), which only the set-up commands do",
            where=str(layout.device_dir(name).root),
            hint=f"edgekit emu build {name} (or make setup); EDGEKIT_EMU_HOME points at devices built elsewhere",
        )


def _device_lock(name: str, log: Callable[[str], None]) -> contextlib.AbstractContextManager[None]:
    return file_lock(
        layout.device_dir(name).root.parent / f"{name}.lock",
        what=f"another edgekit starting or stopping {name}",
        log=log,
    )


def _up_locked(name: str, spec: DeviceSpec, log: Callable[[str], None], provision: bool) -> DeviceState:
    state = _own_state(name, log)
    if state is not None and sshd.sshd_alive(state.sshd_pid, state.sshd_config):
        changed = files_changed(name, state)
        if changed is None:
            return state
        # its keys were removed or rebuilt while it ran: its pinned host key, its client key or what its sshd
        # accepts no longer agree, and every connection would fail (KeyFileError, a "changed" host key)
        log(
            f"{name}'s files changed while it ran ({changed}): restarting it (its sessions are stopped, as "
            f"`edgekit emu down {name} && edgekit emu up {name}` does)"
        )
        _stop(name, state)
        state = None
    if state is not None:
        stuck = sshd.sshd_status(state.sshd_pid, state.sshd_config)
        _stop(name, state)  # stale record: make sure nothing of it is left before starting again
        if stuck is not None:  # its sshd is there but answers no one: say why the device restarts
            log(
                f"{name}'s sshd (pid {state.sshd_pid}) was {stuck} and answered no one: killed it and its "
                f"sessions (as `edgekit emu down {name}` does); starting a fresh one"
            )
    orphans = _stop_unrecorded(name)
    if orphans:
        log(
            f"{name}: stopped an sshd no state file recorded (pid {', '.join(map(str, orphans))}: an `emu up` "
            "interrupted before it wrote the state, or a state file that could not be read); starting a fresh one"
        )
    # the counting plugin is built by the set-up commands (`emu build`, `emu build-plugin`, and this `up` of a
    # device not built yet); a deploy or a check runs without it where counting is not asked for
    dev = build(name, log, plugin=provision and not is_built(name))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    last_error = ""
    for _attempt in range(3):
        port = sshd.free_port()
        sshd.write_config(dev, port)
        pid = sshd.spawn(dev)
        try:  # until the state records it, the sshd is this call's: killed if anything (a Ctrl-C too) ends it
            ok, last_error = sshd.wait_ready(pid, port, dev)
            if ok:
                state = _record(name, spec, dev, port, pid)
                log(
                    f"started the emulated device (qemu -cpu {spec.cpu}, sshd on 127.0.0.1:{port}); it keeps "
                    f"running for the next run: `edgekit emu down {name}` stops it"
                )
                return state
        except BaseException:
            recorded = read_state(name, warn=lambda _m: None)
            if recorded is None or recorded.sshd_pid != pid:  # recorded already: `down` stops it
                sshd.kill_spawned(pid, dev)
            raise
        sshd.kill_tree(pid, dev)
    raise EmulatorError(
        f"sshd did not start: {last_error}", where=str(dev.sshd_config), hint=f"see {dev.log_file}"
    )


def files_changed(name: str, state: DeviceState) -> str | None:
    """Why running device NAME no longer matches its files, or None: it is not built any more (a key, a wrapper
    or its sysroot removed), or the host key its sshd serves (read from disk for each connection) is not the one
    `up` pinned in its known_hosts, or the client key is not the one its sshd accepts."""
    dev = layout.device_dir(name)
    if not is_built(name):
        missing = [
            str(p)
            for p in (dev.client_key, dev.host_key, dev.python, dev.python_tflite_runtime, dev.built_stamp)
            if not p.exists()
        ]
        return f"not built any more: {', '.join(missing) or 'its sysroot'} missing"
    try:
        served = " ".join(dev.host_key.with_suffix(".pub").read_text().split()[:2])
        client = " ".join(dev.client_key.with_suffix(".pub").read_text().split()[:2])
        accepted = {" ".join(line.split()[:2]) for line in dev.authorized_keys.read_text().splitlines()}
    except OSError as exc:
        return f"{exc.filename} cannot be read"
    if served != state.host_key:
        return f"its host key {dev.host_key} is not the one pinned when it started"
    if client not in accepted:
        return f"its client key {dev.client_key} is not in {dev.authorized_keys}"
    return None


def _record(name: str, spec: DeviceSpec, dev: layout.DeviceDir, port: int, pid: int) -> DeviceState:
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
        # a target's python is a command line (split as a shell would): quoted, as a path with a space needs
        python=shlex.quote(str(dev.python)),
        python_tflite_runtime=shlex.quote(str(dev.python_tflite_runtime)),
        work_dir=str(dev.home / "edgekit"),
        sshd_pid=pid,
        sshd_config=str(dev.sshd_config),
        started_at=time.time(),
        home=str(emu_dir()),
    )
    write_state(state)
    return state


def refresh(name: str, log: Callable[[str], None] = print) -> None:
    """After `emu build` of device NAME: when it runs and the build changed its files (a key re-generated), restart
    it so that its sshd, its pinned host key and its client key agree again; otherwise nothing."""
    state = running_state(name)
    if state is not None and files_changed(name, state) is not None:
        up(name, log)


def down(name: str) -> bool:
    """Stop device NAME; return False when it was not running. Raises if a process survives."""
    return stop(name).was_running


def stop(name: str, log: Callable[[str], None] | None = None) -> DownResult:
    """Stop device NAME: its recorded sshd and sessions, and any sshd of this device no state file records
    (an interrupted `up`, a state file that cannot be read, which is removed: `log` hears of it, by default
    stderr). Raises if a process survives."""
    device_spec(name)
    say = log or (lambda m: print(f"edgekit: {m}", file=sys.stderr, flush=True))
    with _device_lock(name, say):
        stopped = stale = False
        _, why = load_state(name)
        if why is not None:  # treated as stale: removed, and its sshd found below by its sshd_config
            say(f"warning: {stale_message(name, why)}; removed it")
            clear_state(name)
            stale = True
        state = _own_state(name, lambda _m: None)
        dev = layout.device_dir(name)
        left: list[int] = []
        if state is not None:
            stopped = sshd.sshd_alive(state.sshd_pid, state.sshd_config)
            stale = not stopped
            if not stopped:  # its master is gone: what it left running is named
                left = _leftovers(dev, state.sshd_pid, state.sshd_config, state.port)
            _stop(name, state)
        orphans = _stop_unrecorded(name)
        if state is None and not orphans:  # no sshd at all: its sessions' processes may still run
            left = _leftovers(dev, None, None, None)
            survivors = sshd.kill_tree(None, dev)
            if survivors:
                raise EmulatorError(f"processes survived SIGKILL: {survivors}", where=f"emu down {name}")
        return DownResult(stopped, stale, tuple(orphans), tuple(left))


def status() -> list[DeviceStatus]:
    """Every known emulated device: built, running, port, sshd pid; a note when its state file is stale."""
    rows = []
    for name, spec in DEVICES.items():
        state, why = load_state(name)
        state = state if state is not None and owned(name, state) else None
        running = state is not None and sshd.sshd_alive(state.sshd_pid, state.sshd_config)
        unrecorded = [] if running else [str(p.pid) for p in _unrecorded_sshds(name)]
        said = []
        if why is not None:
            said.append(stale_message(name, why).removeprefix(f"{name}: "))
        elif state is not None and not running:
            said.append(f"its state file names sshd pid {state.sshd_pid}, which is not serving")
        if unrecorded:
            said.append(f"an sshd of this device runs with no state recorded (pid {', '.join(unrecorded)})")
        todo = (
            f"`edgekit emu down {name}` stops it"
            if unrecorded
            else f"`edgekit emu down {name}` removes it"
            if why is not None
            else f"`edgekit emu up {name}` starts a fresh one"
        )
        note = f"{name}: {'; '.join(said)}: {todo}" if said else None
        rows.append(
            DeviceStatus(
                name,
                spec.cpu,
                is_built(name),
                running,
                state.port if running and state else None,
                state.sshd_pid if running and state else None,
                note,
            )
        )
    return rows


def running_state(name: str) -> DeviceState | None:
    """The state of NAME if its sshd is really running (pid alive and is this device's sshd)."""
    state = read_state(name)
    if state is not None and owned(name, state) and sshd.sshd_alive(state.sshd_pid, state.sshd_config):
        return state
    return None


def owned(name: str, state: DeviceState) -> bool:
    """True when `state` was written by this emu dir for device NAME (not copied from another data dir)."""
    dev = layout.device_dir(name)
    home_ok = state.home is None or Path(state.home).resolve() == emu_dir().resolve()
    return state.name == name and home_ok and Path(state.sshd_config).resolve() == dev.sshd_config.resolve()


def _own_state(name: str, log: Callable[[str], None]) -> DeviceState | None:
    """This emu dir's state of NAME; a state file of another data dir is removed, its device left alone. One
    that cannot be read is None (a warning on stderr): its sshd is found by _unrecorded_sshds."""
    state = read_state(name)
    if state is not None and not owned(name, state):
        log(
            f"{name}: ignoring a state file written for another data dir ({state.sshd_config}); "
            "its device is not ours to stop"
        )
        clear_state(name)
        return None
    return state


def _leftovers(dev: layout.DeviceDir, pid: int | None, config: str | None, port: int | None) -> list[int]:
    """Pids of the device's processes other than its sshd master `pid` (which is gone)."""
    return sorted(
        p.pid for p in sshd.device_processes(pid, dev, config, port) if p.pid != pid and sshd.is_alive(p)
    )


def _stop(name: str, state: DeviceState) -> None:
    dev = layout.device_dir(name)
    survivors = sshd.kill_tree(state.sshd_pid, dev, config=state.sshd_config, port=state.port)
    if survivors:
        raise EmulatorError(f"processes survived SIGKILL: {survivors}", where=f"emu down {name}")
    clear_state(name)
    dev.pid_file.unlink(missing_ok=True)


def _unrecorded_sshds(name: str) -> list[psutil.Process]:
    """Live sshd masters of device NAME (this emu dir's) that its state file does not record: their command
    line names the device's sshd_config, or sshd wrote their pid to the device's run/sshd.pid and their
    `-f` config is this device's (reached through another path: a symlinked home). An sshd of a copied device
    dir (another emu home's config) is never one."""
    dev = layout.device_dir(name)
    state = read_state(name, warn=lambda _m: None)
    recorded = state.sshd_pid if state is not None and owned(name, state) else None
    config = str(dev.sshd_config)
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline", "status"]):
        try:
            if proc.pid in (recorded, os.getpid()) or proc.info["status"] in sshd.NOT_RUNNING:
                continue
            if sshd.names_config(proc.info["cmdline"] or [], config) and not sshd.child_of_master(
                proc, config
            ):
                found[proc.pid] = proc
        except psutil.Error:
            continue
    try:
        pid = int(dev.pid_file.read_text().split()[0])
        proc = psutil.Process(pid)
        started_with = re.search(r" -f (.+?) -E ", " ".join(proc.cmdline()))
        if (
            pid not in found
            and pid != recorded
            and proc.status() not in sshd.NOT_RUNNING
            and started_with is not None
            and Path(started_with.group(1)).resolve() == dev.sshd_config.resolve()
        ):
            found[pid] = proc
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return list(found.values())


def _stop_unrecorded(name: str) -> list[int]:
    """Stop every sshd of device NAME no state file records (and its sessions); their pids."""
    dev = layout.device_dir(name)
    stopped = []
    for proc in _unrecorded_sshds(name):
        survivors = sshd.kill_tree(proc.pid, dev)
        if survivors:
            raise EmulatorError(f"processes survived SIGKILL: {survivors}", where=f"emu down {name}")
        stopped.append(proc.pid)
    if stopped:
        dev.pid_file.unlink(missing_ok=True)
    return stopped
