"""A target's host resolved through the user's ~/.ssh/config (or EDGEKIT_SSH_CONFIG): HostName, User, Port,
IdentityFile, UserKnownHostsFile, ProxyCommand, ProxyJump. Fields set by the environment or `--set` win."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from edgekit.errors import TargetError
from edgekit.target.host_names import (
    HOST_HINT,
    PORT_HINT,
    host_name_problem,
    parse_hop,
    port_problem,
    shown_host,
)
from edgekit.target.schema import Target


def apply_ssh_config(target: Target, explicit: dict[str, Any], path: Path | None, where: str) -> Target:
    """Resolve `host` through ~/.ssh/config (or EDGEKIT_SSH_CONFIG): HostName, User, Port, IdentityFile."""
    import paramiko

    if not target.host:
        raise TargetError("an ssh target needs a host", where=where, hint="--set host=raspberrypi.local")
    cfg_path = path or Path(os.environ.get("EDGEKIT_SSH_CONFIG", "~/.ssh/config")).expanduser()
    update: dict[str, Any] = {}
    if cfg_path.is_file():
        try:
            entry = paramiko.SSHConfig.from_path(str(cfg_path)).lookup(target.host)
        except Exception as exc:  # noqa: BLE001 - paramiko raises several types for a malformed file
            raise TargetError(f"cannot read ssh config: {exc}", where=str(cfg_path)) from None
        update["host"] = entry.get("hostname", target.host)
        if "user" in entry and "user" not in explicit:
            update["user"] = entry["user"]
        if "port" in entry and "port" not in explicit:
            update["port"] = _port(entry["port"], target.host, cfg_path)
        if entry.get("identityfile") and "key" not in explicit:
            update["key"] = Path(entry["identityfile"][0])
        if entry.get("userknownhostsfile") and "known_hosts" not in explicit:
            update["known_hosts"] = Path(entry["userknownhostsfile"].split()[0])
        if entry.get("proxycommand") and "proxy_command" not in explicit and entry["proxycommand"] != "none":
            update["proxy_command"] = entry["proxycommand"]
        if entry.get("proxyjump") and "proxy_jump" not in explicit and entry["proxyjump"] != "none":
            config = paramiko.SSHConfig.from_path(str(cfg_path))
            update["proxy_jump"] = ",".join(
                _resolve_hop(config, hop) for hop in entry["proxyjump"].split(",")
            )
    if not (update.get("user") or target.user):
        update["user"] = getpass.getuser()
    _check_names(update, target.host, cfg_path)
    return target.model_copy(update=update)


def _check_names(update: dict[str, Any], alias: str, cfg_path: Path) -> None:
    """The HostName and ProxyJump hosts the config gave, checked as the target file's own are (model_copy does not
    validate): `HostName 192.168.1..23` was a raw traceback in deploy's reach check."""
    try:
        hops = [parse_hop(hop)[1] for hop in str(update.get("proxy_jump") or "").split(",") if hop.strip()]
    except ValueError as exc:  # a hop's port (its own, or its alias's Port): not 22 without a word
        raise TargetError(
            f"`ProxyJump`, given for {alias!r}: {exc}", where=str(cfg_path), hint=PORT_HINT
        ) from None
    for what, host in [("HostName", str(update.get("host") or "")), *(("ProxyJump host", h) for h in hops)]:
        problem = host_name_problem(host) if host else None
        if problem is not None:
            raise TargetError(
                f"{what} {shown_host(host)}, given for {alias!r}, is not a host name or address: {problem}",
                where=str(cfg_path),
                hint=HOST_HINT,
            )


def _port(port: str, alias: str, cfg_path: Path) -> int:
    """The config's `Port` for `alias`, checked as a target file's `port` is (model_copy does not validate):
    `Port 2222x` was an internal error, `Port 70000` a connection to port 4464."""
    problem = port_problem(port)
    if problem is not None:
        raise TargetError(
            f"`Port`, given for {alias!r}: {problem}",
            where=str(cfg_path),
            hint="`Port` is a number from 1 to 65535 (Port 2222), or leave it out for port 22",
        )
    return int(port)


def _resolve_hop(config: Any, hop: str) -> str:
    """One ProxyJump hop `[user@]alias[:port]` resolved through the ssh config (HostName, User, Port)."""
    user, _, rest = hop.strip().rpartition("@")
    host, _, port = rest.partition(":")
    entry = config.lookup(host)
    user = user or entry.get("user") or ""
    port = port or entry.get("port") or "22"
    return f"{user + '@' if user else ''}{entry.get('hostname', host)}:{port}"
