"""The way to a device behind other hosts: ssh's ProxyCommand, or a ProxyJump chain of SSH hosts.

Each hop is reached through the one before by a `direct-tcpip` channel, its host key checked like the device's
(ssh_keys.py); the device itself is then reached through the last hop. A ProxyCommand's process is reaped when
the chain is closed (paramiko signals it but never waits for it).
"""

from __future__ import annotations

from contextlib import suppress

import paramiko

from edgekit.errors import ConnectError, HostKeyError, HostNameError
from edgekit.target import Target
from edgekit.target.schema import HOST_HINT, host_name_problem, shown_host
from edgekit.transport import ssh_keys


class JumpChain:
    """The ProxyCommand or the ProxyJump hosts (first to last) in front of one target's device."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.jumps: list[paramiko.SSHClient] = []
        self.proxy_command: paramiko.ProxyCommand | None = None

    @property
    def address(self) -> str:
        """The device's, named in every error."""
        return f"{self.target.host}:{self.target.port}"

    def open(
        self, client: paramiko.SSHClient, key: str | None
    ) -> paramiko.Channel | paramiko.ProxyCommand | None:
        """The socket to reach the device through: ProxyCommand's pipe, or a `direct-tcpip` channel through the
        last ProxyJump host (each hop reached through the one before, host keys checked like the device's)."""
        t = self.target
        if t.proxy_command:
            command = (
                t.proxy_command.replace("%h", t.host or "")
                .replace("%p", str(t.port))
                .replace("%r", t.user or "")
            )
            try:
                self.proxy_command = paramiko.ProxyCommand(command)
                return self.proxy_command
            except (OSError, paramiko.SSHException) as exc:
                raise ConnectError(f"ProxyCommand failed to start: {exc}", where=self.address) from None
        if not t.proxy_jump:
            return None
        hops = t.jump_hops
        for index, (user, host, port) in enumerate(hops):
            where = f"jump host {host}:{port}"
            jump = ssh_keys.hop_client(client)
            try:
                jump.connect(
                    host,
                    port=port,
                    username=user or t.user,
                    key_filename=key,
                    sock=self._hop_sock(host, port),
                    look_for_keys=key is None,
                    allow_agent=key is None,
                    timeout=t.connect_timeout,
                    banner_timeout=t.connect_timeout,
                    auth_timeout=t.connect_timeout,
                )
            except HostKeyError:  # a revoked key (ssh_keys.CheckedClient)
                jump.close()
                raise
            except paramiko.BadHostKeyException:
                jump.close()
                known_hosts = ssh_keys.known_hosts_of(t)
                raise HostKeyError(
                    f"host key CHANGED for {where}; refusing to connect",
                    where=self.address,
                    hint=f"if the jump host was really re-installed, remove its line: "
                    f"{ssh_keys.remove_key_command(host, port, known_hosts)}, then add its new key",
                ) from None
            except ValueError as exc:  # UnicodeError: the idna codec refuses an empty or over-long part
                jump.close()
                raise HostNameError(
                    f"the jump host name {shown_host(host)} cannot be looked up: "
                    f"{host_name_problem(host) or f'{type(exc).__name__}: {exc}'}",
                    where=self.address,
                    hint=f"check `proxy_jump` (or ProxyJump in ~/.ssh/config); {HOST_HINT}",
                ) from None
            except (paramiko.SSHException, OSError, EOFError) as exc:  # EOFError: dropped in the handshake
                jump.close()
                if ssh_keys.is_unknown_key(exc):
                    before = hops[:index]  # a later hop is reached through the earlier ones
                    raise HostKeyError(
                        f"unknown host key of {where} (not in {ssh_keys.known_hosts_of(t)})",
                        where=self.address,
                        hint=ssh_keys.record_key_hint(
                            t,
                            host,
                            port,
                            user or t.user,
                            (
                                "the jump host"
                                + ("s " if len(before) > 1 else " ")
                                + ", ".join(f"{h}:{p}" for _, h, p in before),
                                ssh_keys.proxy_through(t, before),
                            )
                            if before
                            else None,
                            what="jump host",
                        ),
                    ) from None
                raise ConnectError(
                    f"cannot reach {where}: {exc or type(exc).__name__}",
                    where=self.address,
                    hint="check the ProxyJump host (`proxy_jump`, or ProxyJump in ~/.ssh/config)",
                ) from None
            self.jumps.append(jump)
        return self._hop_sock(t.host or "", t.port)

    def _hop_sock(self, host: str, port: int) -> paramiko.Channel | None:
        """A `direct-tcpip` channel to host:port through the last jump host (None: connect directly)."""
        if not self.jumps:
            return None
        try:
            return (
                self.jumps[-1]
                .get_transport()
                .open_channel(
                    "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=self.target.connect_timeout
                )
            )
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectError(
                f"the jump host could not open a channel to {host}:{port}: {exc}",
                where=self.address,
                hint="does the jump host allow TCP forwarding?",
            ) from None

    def close(self) -> None:
        for jump in reversed(self.jumps):
            jump.close()
        self.jumps = []
        process = getattr(self.proxy_command, "process", None)
        self.proxy_command = None
        if process is not None:  # paramiko's close() signals the command but never waits for it
            with suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
