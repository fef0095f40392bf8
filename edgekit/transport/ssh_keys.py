"""Host-key policy of the SSH transport: the target's own known_hosts file is the only trust.

An unknown key is refused unless the target opts in with `accept_new: true` (then it is recorded), and a changed
key is always refused. Emulated devices pin their key (the device's known_hosts file written by `edgekit emu up`).
Jump hosts share the device's host keys and policy, so every hop's key is checked the same way.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import paramiko

from edgekit.errors import HostKeyError, TargetError
from edgekit.target import Target


class RecordNewKey(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]  # paramiko: no stubs here
    """accept_new: trust a first-seen key and write it to the target's known_hosts file."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def known_hosts_of(target: Target) -> Path:
    """The target's known_hosts file (the only one consulted)."""
    return Path(target.known_hosts).expanduser()


def checked_client(target: Target) -> paramiko.SSHClient:
    """A client that trusts the keys in the target's known_hosts file and applies its policy to any other."""
    known_hosts = known_hosts_of(target)
    where = f"target {target.name}, field `known_hosts`"
    folder = next((p for p in known_hosts.parents if p.exists()), None)
    if (known_hosts.exists() and not known_hosts.is_file()) or (folder is not None and not folder.is_dir()):
        raise TargetError(
            f"{known_hosts} cannot be a known_hosts file: "
            + ("it is not a file" if known_hosts.exists() else f"{folder} is a file, not a folder"),
            where=where,
            hint="--set known_hosts=PATH of a file (it may not exist yet with accept_new: true)",
        )
    client = paramiko.SSHClient()
    if known_hosts.is_file():
        try:
            client.load_host_keys(str(known_hosts))
        except (paramiko.hostkeys.InvalidHostKey, ValueError, UnicodeDecodeError) as exc:
            line = getattr(exc, "line", "")
            raise TargetError(
                f"{known_hosts} has a malformed line" + (f" ({line[:48]}...)" if line else f": {exc}"),
                where=where,
                hint=f"remove it (ssh-keygen -R HOST -f {known_hosts}), then add the key again: "
                f"ssh-keyscan -p PORT HOST >> {known_hosts}",
            ) from None
    client.set_missing_host_key_policy(
        RecordNewKey(known_hosts) if target.accept_new else paramiko.RejectPolicy()
    )
    return client


def hop_client(device: paramiko.SSHClient) -> paramiko.SSHClient:
    """A client for a jump host with the device client's host keys and policy (the same known_hosts)."""
    jump = paramiko.SSHClient()
    jump.set_missing_host_key_policy(device._policy)
    jump._host_keys = device.get_host_keys()  # the same known_hosts: every hop's key is checked
    return jump


def is_unknown_key(exc: BaseException) -> bool:
    """Whether paramiko refused the connection because the server's key is not in known_hosts."""
    return "not found in known_hosts" in str(exc)


def host_key_name(host: str, port: int) -> str:
    """The name a host's keys are filed under in known_hosts, as OpenSSH (and paramiko's lookup and
    RecordNewKey) writes it: the bare host on port 22, `[host]:port` on any other."""
    return host if port == 22 else f"[{host}]:{port}"


def remove_key_command(host: str, port: int, known_hosts: Path) -> str:
    """The `ssh-keygen -R` command that removes the keys of host:port from known_hosts."""
    return f"ssh-keygen -R {shlex.quote(host_key_name(host, port))} -f {shlex.quote(str(known_hosts))}"


def changed_key_error(exc: paramiko.BadHostKeyException, target: Target, where: str) -> HostKeyError:
    known_hosts = known_hosts_of(target)
    return HostKeyError(
        f"host key CHANGED: {exc.key.get_name()} {exc.key.fingerprint} is not the key recorded in "
        f"{known_hosts}; refusing to connect (nothing was sent)",
        where=where,
        hint=f"if the device was really re-installed, remove its line: "
        f"{remove_key_command(target.host or '', target.port, known_hosts)}, then accept the new key",
    )


def unknown_key_error(target: Target, where: str) -> HostKeyError:
    known_hosts = known_hosts_of(target)
    return HostKeyError(
        f"unknown host key (not in {known_hosts}); refusing to connect",
        where=where,
        hint=f"check the device's key, then: ssh-keyscan -p {target.port} {target.host} >> {known_hosts}"
        f"  (or trust the first key: --set accept_new=true)",
    )
