"""A lab on this machine: a real labgrid coordinator and exporter on 127.0.0.1 whose places are emulated
boards. Each place is an OpenSSH server of its own (own port, host key and home) in front of a built
`edgekit emu` device's arm64 python; two places may share one device's assets (pi4-a and pi4-b both run
pi4-emu's cortex-a72 python) and never share a work dir, so they measure in parallel like two boards.

`start_bare` stands up the coordinator and an exporter only, whose NetworkServices lead to no board: what happens
between edgekit and the lab (waiting, holding, losing and giving back places) without deploying anything.

Used by the tests (tests/test_lab*.py) and to try a lab out; nothing here is needed by a real lab.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.emu import layout
from edgekit.emu.build import is_built
from edgekit.lab.client import LabClient, lab_python
from edgekit.lab.errors import LabError

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class RigPlace:
    name: str  # e.g. pi4-a
    device: str  # the emu device whose python it runs, e.g. pi4-emu
    tags: dict[str, str]


@dataclass
class Rig:
    root: Path
    coordinator: str
    client_key: Path
    places: list[RigPlace]
    pids: list[int] = field(default_factory=list)  # process groups (setsid) to stop
    ports: dict[str, int] = field(default_factory=dict)  # place -> sshd port

    def host_key(self, place: str) -> str:
        return " ".join((self.root / place / "host_ed25519.pub").read_text().split()[:2])

    def stop(self) -> None:
        for pid in reversed(self.pids):
            _stop_group(pid)
        self.pids.clear()


def default_places(pi4: int, pi5: int) -> list[RigPlace]:
    letters = "abcdefgh"
    return [
        RigPlace(f"pi4-{letters[i]}", "pi4-emu", {"board": "pi4", "cpu": "cortex-a72"}) for i in range(pi4)
    ] + [RigPlace(f"pi5-{letters[i]}", "pi5-emu", {"board": "pi5", "cpu": "cortex-a76"}) for i in range(pi5)]


def start(root: Path, places: list[RigPlace]) -> Rig:
    """Coordinator, one sshd per place, one exporter publishing their NetworkServices, the places defined."""
    for place in places:
        if not is_built(place.device):
            raise LabError(
                f"emulated device {place.device} is not built",
                where="lab rig",
                hint=f"edgekit emu build {place.device}",
            )
    root.mkdir(parents=True, exist_ok=True)
    (root / "places.yaml").unlink(
        missing_ok=True
    )  # a rig starts as a new lab (the coordinator keeps it here)
    key = root / "client_ed25519"
    if not key.exists():
        _keygen(key)
    (root / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    port = _free_port()
    rig = Rig(root, f"127.0.0.1:{port}", key, places)
    try:
        bindir = lab_python().parent
        rig.pids.append(
            _spawn([str(bindir / "labgrid-coordinator"), "-l", rig.coordinator], root, "coordinator")
        )
        _wait_port(port, "labgrid-coordinator", root / "coordinator.log")
        for place in places:
            rig.ports[place.name] = _start_sshd(rig, place)
        rig.pids.append(_start_exporter(rig, "rig", {p.name: rig.ports[p.name] for p in places}))
        client = LabClient(rig.coordinator)
        client.define([(p.name, [f"rig/{p.name}/NetworkService"], p.tags) for p in places])
        _wait_services(client, {p.name for p in places})
    except BaseException:
        rig.stop()
        raise
    return rig


def start_bare(root: Path, places: dict[str, dict[str, str]]) -> Rig:
    """A coordinator and one exporter (`rig`) publishing a NetworkService per place (127.0.0.1, port 22, this
    user) with no board behind it, the places defined with their tags; stop it with `Rig.stop`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "places.yaml").unlink(missing_ok=True)
    port = _free_port()
    rig = Rig(root, f"127.0.0.1:{port}", root / "no-key", [])
    try:
        start_coordinator(rig)
        rig.pids.append(_start_exporter(rig, "rig", dict.fromkeys(places, 22)))
        client = LabClient(rig.coordinator)
        client.define([(name, [f"rig/{name}/NetworkService"], tags) for name, tags in places.items()])
        _wait_services(client, set(places))
    except BaseException:
        rig.stop()
        raise
    return rig


def start_coordinator(rig: Rig) -> int:
    """The rig's coordinator on its address (again, after a stop: it reads the places.yaml it saved), working in
    rig.root; its pid, also the first of rig.pids."""
    pid = _spawn(
        [str(lab_python().parent / "labgrid-coordinator"), "-l", rig.coordinator], rig.root, "coordinator"
    )
    if rig.pids:
        rig.pids[0] = pid
    else:
        rig.pids.append(pid)
    _wait_port(int(rig.coordinator.rsplit(":", 1)[1]), "labgrid-coordinator", rig.root / "coordinator.log")
    return pid


def add_service(rig: Rig, exporter: str, place: str, service: dict[str, object], tags: dict[str, str]) -> int:
    """An exporter of its own publishing one NetworkService as given (address, username, port: whatever an
    exporter's YAML may say) in its group `board`, and `place` (any name the coordinator takes) matching it; its
    process group, to stop with `_stop_group`."""
    config = rig.root / f"{exporter}.yaml"
    config.write_text(json.dumps({"board": {"NetworkService": service}}))  # JSON is YAML: any value, quoted
    argv = [str(lab_python().parent / "labgrid-exporter"), "-c", rig.coordinator, "-n", exporter]
    pid = _spawn([*argv, "--hostname", "127.0.0.1", str(config)], rig.root, exporter)
    client = LabClient(rig.coordinator)
    client.define([(place, [f"{exporter}/board/NetworkService"], tags)])
    _wait_services(client, {place})
    return pid


def add_exporter(rig: Rig, exporter: str, place: str, port: int, tags: dict[str, str]) -> int:
    """A second exporter publishing one more place's NetworkService (127.0.0.1:port), the place defined; its
    process group, to stop (`_stop_group`) as an exporter host that goes down. Not stopped by `Rig.stop`."""
    pid = _start_exporter(rig, exporter, {place: port})
    client = LabClient(rig.coordinator)
    client.define([(place, [f"{exporter}/{place}/NetworkService"], tags)])
    _wait_services(client, {place})
    return pid


def _start_exporter(rig: Rig, exporter: str, ports: dict[str, int]) -> int:
    config = rig.root / f"{exporter}.yaml"
    config.write_text(
        "".join(
            f"{name}:\n  NetworkService:\n    address: 127.0.0.1\n    username: {getpass.getuser()}\n"
            f"    port: {port}\n"
            for name, port in ports.items()
        )
    )
    argv = [str(lab_python().parent / "labgrid-exporter"), "-c", rig.coordinator, "-n", exporter]
    return _spawn([*argv, "--hostname", "127.0.0.1", str(config)], rig.root, exporter)


def _start_sshd(rig: Rig, place: RigPlace) -> int:
    here = rig.root / place.name
    (here / "home").mkdir(parents=True, exist_ok=True)
    host_key = here / "host_ed25519"
    if not host_key.exists():
        _keygen(host_key)
    dev = layout.device_dir(place.device)
    port = _free_port()
    (here / "sshd_config").write_text(
        f"# edgekit lab rig place {place.name} (python of {place.device})\n"
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nAuthorizedKeysFile {rig.root}/authorized_keys\n"
        f"PidFile {here}/sshd.pid\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\n"
        f"AllowUsers {getpass.getuser()}\nSubsystem sftp internal-sftp\nAcceptEnv EDGEKIT_*\n"
        f"SetEnv EDGEKIT_DEVICE={place.device} HOME={here / 'home'} PATH={dev.bin}:/usr/local/bin:/usr/bin:/bin\n"
        "PrintMotd no\nUseDNS no\nX11Forwarding no\nAllowTcpForwarding no\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    rig.pids.append(_spawn([SSHD, "-D", "-f", str(here / "sshd_config")], rig.root, f"sshd-{place.name}"))
    _wait_port(port, f"sshd of {place.name}", rig.root / f"sshd-{place.name}.log")
    return port


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, stdin=subprocess.DEVNULL
    )


def _spawn(argv: list[str], cwd: Path, log: str) -> int:
    """A process in a session of its own (its pid is its process group), output to ROOT/LOG.log."""
    out = os.open(cwd / f"{log}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out, 1),
            (os.POSIX_SPAWN_DUP2, out, 2),
        ]
        old = os.getcwd()
        os.chdir(cwd)  # the coordinator keeps places.yaml in its working directory
        try:
            return os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=actions, setsid=True)
        finally:
            os.chdir(old)
    finally:
        os.close(out)


def _stop_group(pid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                return
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, what: str, log: Path, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    tail = log.read_text()[-400:] if log.exists() else ""
    raise LabError(
        f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:g} s: {tail}", where="lab rig"
    )


def _wait_services(client: LabClient, names: set[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = {p.name for p in client.places() if p.service is not None}
        if names <= ready:
            return
        time.sleep(0.3)
    raise LabError(
        f"the exporter did not publish every place's NetworkService within {timeout_s:g} s",
        where=client.coordinator,
    )
