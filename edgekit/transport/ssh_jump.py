"""The way to a device behind other hosts: ssh's ProxyCommand, or a ProxyJump chain of SSH hosts.

Each hop is reached through the one before by a `direct-tcpip` channel, its host key checked like the device's
(ssh_keys.py); the device itself is then reached through the last hop. A ProxyCommand's process is reaped when
the chain is closed (paramiko signals it but never waits for it).

A proxy command often carries a secret (a tunnel's token, `sshpass -p`): errors name its program alone, never its
arguments, and show what it printed with its arguments and each secret value in them masked, since they go to
the console, the results JSON, the store and the report.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import time
from contextlib import suppress

import paramiko

from edgekit.errors import ConnectError, HostKeyError, HostNameError, exit_text
from edgekit.target import Target
from edgekit.target.host_names import HOST_HINT, host_name_problem, shown_host
from edgekit.transport import ssh_key_hints, ssh_keys
from edgekit.transport.proxy_text import masked_output, program_of


class ProxyPipe(paramiko.ProxyCommand):  # type: ignore[misc]  # paramiko: no stubs here
    """paramiko's ProxyCommand, but its errors name the program alone (paramiko's ProxyCommandFailure carried the
    whole command line, a token included, into every log and the store) and the end of the command's output is the
    end of the connection (paramiko polled the closed pipe until the banner timeout: a proxy that had exited at
    once was reported as a port that sent no SSH banner)."""

    def __init__(self, command_line: str) -> None:
        super().__init__(command_line)
        self.program = program_of(command_line)
        self.stopped = False  # signalled by close() (paramiko's, when its connection ends) while it still ran

    def close(self) -> None:
        """SIGTERM to the command unless it has already exited. paramiko's close signalled it even when reaped
        (ProcessLookupError in paramiko's thread); waitid(WNOWAIT) looks without reaping it."""
        if self.process.returncode is not None:
            return
        with suppress(ChildProcessError):
            if os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return  # exited by itself: its status is its own
        self.stopped = True
        with suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)

    def ended_by_itself(self) -> bool:
        """Whether the command has exited, and not by close()'s SIGTERM."""
        code = self.process.poll()
        return code is not None and not (self.stopped and code == -signal.SIGTERM)

    def send(self, content: bytes) -> int:
        try:
            self.process.stdin.write(content)
        except OSError as exc:
            raise paramiko.ProxyCommandFailure(self.program, exc.strerror or type(exc).__name__) from None
        return len(content)

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes, as a socket's recv: b"" once the command closed its output; socket.timeout when
        nothing came within the timeout paramiko set."""
        stdout = self.process.stdout
        assert stdout is not None
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            while True:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([stdout], [], [], wait)
                if ready:
                    return os.read(stdout.fileno(), size)
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError  # socket.timeout, which paramiko waits on
        except TimeoutError:
            raise
        except OSError as exc:
            raise paramiko.ProxyCommandFailure(self.program, exc.strerror or type(exc).__name__) from None

    def said(self, seconds: float = 0.5) -> str:
        """The last lines the exited command wrote to stderr (up to `seconds` to read them: a child it left behind
        may hold the pipe open), whole: shortened only once masked, so that no secret is cut in two."""
        stderr = self.process.stderr
        if stderr is None:
            return ""
        data = b""
        deadline = time.monotonic() + seconds
        with suppress(OSError, ValueError):
            while len(data) < 65536 and (left := deadline - time.monotonic()) > 0:
                if not select.select([stderr], [], [], left)[0]:
                    break
                chunk = os.read(stderr.fileno(), 65536)
                if not chunk:
                    break
                data += chunk
        lines = [line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()]
        return "; ".join(lines[-3:])


class JumpChain:
    """The ProxyCommand or the ProxyJump hosts (first to last) in front of one target's device."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.jumps: list[paramiko.SSHClient] = []
        self.proxy_command: ProxyPipe | None = None

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
            # quoted as words (the target's schema keeps shell characters out of them already), in one pass: an
            # IPv6 zone's '%' (fe80::1%rack) is never read as a token after %h put it there; '%%' is a '%'
            words = {
                "h": shlex.quote(t.host) if t.host else "",
                "p": str(t.port),
                "r": shlex.quote(t.user) if t.user else "",
                "%": "%",
            }
            command = re.sub(r"%([hpr%])", lambda m: words[m.group(1)], t.proxy_command)
            try:
                self.proxy_command = ProxyPipe(command)
                return self.proxy_command
            except (OSError, ValueError) as exc:  # ValueError: shlex's, an unclosed quote
                raise ConnectError(
                    f"the proxy_command {program_of(command)} could not be started: "
                    f"{getattr(exc, 'strerror', None) or type(exc).__name__}",
                    where=self.address,
                    hint="check `proxy_command` (or ProxyCommand in ~/.ssh/config): is its program installed, on "
                    "PATH, executable?",
                ) from None
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
                    handshake_timeout=t.connect_timeout,  # paramiko's own: 15 s
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
                    f"{ssh_key_hints.remove_key_command(host, port, known_hosts)}, then add its new key",
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
                        hint=ssh_key_hints.record_key_hint(
                            t,
                            host,
                            port,
                            user or t.user,
                            (
                                "the jump host"
                                + ("s " if len(before) > 1 else " ")
                                + ", ".join(f"{h}:{p}" for _, h, p in before),
                                ssh_key_hints.proxy_through(t, before),
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

    def proxy_ended(self, seconds: float, *, greeted: bool) -> ConnectError | None:
        """The error of a proxy command that has exited (waited for up to `seconds`), blamed on it rather than on
        the device's port; None when there is none or it still runs."""
        proxy = self.proxy_command
        if proxy is None:
            return None
        with suppress(Exception):
            proxy.process.wait(timeout=seconds)
        code = proxy.process.poll()
        if code is None or not proxy.ended_by_itself():  # still running, or stopped by paramiko giving up
            return None
        t = self.target
        # the command's arguments and each secret value in it (`--password=X`'s X, printed alone) masked, then cut
        said = masked_output(proxy.said(), t.proxy_command or "", (t.host or "", str(t.port), t.user or ""))[
            -300:
        ]
        when = "after the SSH greeting" if greeted else "before any SSH greeting"
        what = (
            f"the connection through the proxy_command {proxy.program} closed {when} (the command ended, exit 0)"
            if code == 0
            else f"the proxy_command {proxy.program} failed {when} ({exit_text(code)})"
        )
        return ConnectError(
            what
            + (f"; it said: {said}" if said else "")
            + " (its arguments are not shown: they may hold a secret)",
            where=self.address,
            hint="run the target's proxy_command by hand, %h %p %r filled in: it must connect its input and output "
            "to the device's SSH port and print the SSH greeting (SSH-2.0-...), as ssh's ProxyCommand does",
        )

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
