"""What a user is told when a device's host key is unknown or changed: the command that removes a stale key, and
how to record a new one (ssh-keyscan when the device is reached directly; through its ProxyCommand or ProxyJump
chain, an ssh that checks every hop against the target's own known_hosts, where ssh-keyscan cannot go)."""

from __future__ import annotations

import shlex
from pathlib import Path

import paramiko

from edgekit.errors import HostKeyError
from edgekit.target import Target
from edgekit.target.overrides import env_name
from edgekit.transport.proxy_text import masked_command
from edgekit.transport.ssh_keys import host_key_name, known_hosts_of


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
        hint=record_key_hint(target, target.host or "", target.port, target.user, device_proxy(target)),
    )


Hop = tuple[str | None, str, int]  # [user@]host[:port] of a ProxyJump hop


def _login(user: str | None, host: str) -> str:
    return f"{user}@{host}" if user else host


def proxy_through(target: Target, hops: list[Hop]) -> str:
    """An ssh ProxyCommand reaching %h:%p through `hops` (the last one forwards), every hop's host key checked
    against the target's known_hosts file as edgekit checks it: an earlier hop is this command's own ProxyCommand,
    not `ssh -J` (whose inner ssh takes no -o and would check that hop against ~/.ssh/known_hosts). The inner
    command's % are doubled: the ssh running this command expands its tokens once, before the hop's ssh does."""
    *earlier, (user, host, port) = hops
    inner = proxy_through(target, earlier).replace("%", "%%") if earlier else None
    return shlex.join(
        [
            "ssh",
            "-o",
            f"UserKnownHostsFile={known_hosts_of(target)}",
            *(["-i", str(Path(target.key).expanduser())] if target.key else []),
            *(["-o", f"ProxyCommand={inner}"] if inner else []),
            "-p",
            str(port),
            "-W",
            "%h:%p",
            _login(user or target.user, host),
        ]
    )


def device_proxy(target: Target) -> tuple[str, str] | None:
    """(what stands in front of the device, the ssh ProxyCommand that goes through it), or None: reached directly."""
    if target.proxy_command:  # printed in a hint, which the store and report keep: its secrets masked
        shown = masked_command(target.proxy_command)
        masked = (
            " (its secrets shown as ***: put them back in the command below)"
            if shown != target.proxy_command
            else ""
        )
        return f"its ProxyCommand{masked}", shown
    if target.proxy_jump:
        return f"ProxyJump {target.proxy_jump}", proxy_through(target, target.jump_hops)
    return None


def _accept_new(target: Target) -> str:
    """The opt-in for one run, both ways: `--set` where the command has it, the environment where it has not
    (nightly)."""
    if target.lab is not None:  # a lab place: its settings are the lab target's, whose name this is not
        return (
            "--set accept_new=true, or EDGEKIT_TARGET_<LAB TARGET>_ACCEPT_NEW=true (the lab target's name: "
            "LAB_PI4 for lab-pi4, LAB_BOARD_PI4 for lab:board=pi4), or accept_new: true in its file"
        )
    return f"--set accept_new=true, or EDGEKIT_TARGET_{env_name(target.name)}_ACCEPT_NEW=true"


def record_key_hint(
    target: Target,
    host: str,
    port: int,
    user: str | None,
    proxy: tuple[str, str] | None,
    *,
    what: str = "device",
) -> str:
    """How to record the key of host:port: ssh-keyscan when it is reached directly; through a ProxyCommand or a
    ProxyJump host ssh-keyscan cannot reach it (it only connects directly), so an ssh through the same way
    that records the first key it is shown (StrictHostKeyChecking=accept-new), or accept_new for one run."""
    known_hosts = known_hosts_of(target)
    if proxy is None:
        return (
            f"check the {what}'s key, then: ssh-keyscan -p {port} {shlex.quote(host)} >> "
            f"{shlex.quote(str(known_hosts))}"
            f"  (or trust the first key: {_accept_new(target)})"
        )
    how, command = proxy
    record = shlex.join(
        [
            "ssh",
            "-o",
            f"ProxyCommand={command}",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            *(["-i", str(Path(target.key).expanduser())] if target.key else []),
            "-p",
            str(port),
            _login(user, host),
            "true",
        ]
    )
    return (
        f"{host}:{port} is reached through {how}, where ssh-keyscan cannot go; record its key the same way: "
        f"{record}  (or let edgekit record it, for one run: {_accept_new(target)}). Either way the key "
        "recorded is whatever answered at the far end of that way, trusted from then on: compare its "
        f"fingerprint (ssh-keygen -lf {shlex.quote(str(known_hosts))}) with the host's own "
        "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on it)"
    )
