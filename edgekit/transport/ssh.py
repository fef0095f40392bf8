"""SSH transport (paramiko) for boards, phones and emulated devices: `SshTransport`, the class users see.

It is one connection to a target, made of parts that each hold one concept:

- ssh_keys.py: host keys are checked against the target's own known_hosts file only; an unknown key is refused
  unless the target opts in with `accept_new: true`, and a changed key is always refused.
- ssh_key_file.py: the target's private key file, read before connecting (a wrong file is bad input).
- ssh_key_hints.py: what the user is told then: the stale key's removal, how to record a new one.
- ssh_jump.py: the ProxyCommand or ProxyJump chain in front of the device.
- ssh_link.py: every remote operation has a deadline, so a frozen device never hangs a night: a severed or silent
  device raises DeviceTimeout, a dropped connection ConnectionLost; `sever()` cuts the link from any thread (the
  whole-run deadline), `interrupt()` (Ctrl-C) stops what runs and raises Interrupted.
- ssh_exec.py: each command in its own process group, killed on timeout, on Ctrl-C and when its session ends; a
  link error from `run` carries what the command had printed so far (`stdout`) and its process group (`pgid`).
- ssh_files.py: uploads sha256-checked and atomic (skipped when unchanged), downloads, the device's free space
  (an upload short of it is a DeviceDiskFull), and the leftovers of earlier runs, pruned at connect.

Here: connecting (SSH keepalives every `io_timeout / 2`; a missing key file, a refused login, a silent port and an
unreachable device each named), remote paths (relative ones are the target's work dir), and `reconnect()`: a fresh
connection (bounded by connect_timeout) to pull back what the device wrote and stop what is left of it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import paramiko

from edgekit.errors import ConnectError, EdgekitError, HostNameError, TransportError
from edgekit.target import Target
from edgekit.target.host_names import HOST_HINT, host_name_problem, shown_host
from edgekit.transport import ssh_exec, ssh_key_hints, ssh_keys
from edgekit.transport.base import PutResult, RunResult, Transport
from edgekit.transport.ssh_files import RemoteFiles
from edgekit.transport.ssh_jump import JumpChain
from edgekit.transport.ssh_key_file import check_key
from edgekit.transport.ssh_link import Link, stalled_after_greeting


class SshTransport(Transport):
    """One SSH connection to a target; connects on first use. Relative remote paths (and the default cwd
    of `run`) are the target's work dir; `~/` is the remote home."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.name = target.name
        self._home = ""
        self.work_dir = ""
        self._link = Link(target, self.connect)  # the client under deadlines; connects on first use
        self._files = RemoteFiles(self._link, self._abs)  # SFTP, uploads in progress, free space
        self._chain = JumpChain(target)  # ProxyCommand or ProxyJump hosts in front of the device

    # -- connection -------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    @property
    def _client(self) -> paramiko.SSHClient | None:
        return self._link.client

    @property
    def _jumps(self) -> list[paramiko.SSHClient]:
        """The connected ProxyJump hosts, first to last."""
        return self._chain.jumps

    def connect(self) -> SshTransport:
        if self._client is not None:
            return self
        t = self.target
        client = ssh_keys.checked_client(t)
        key = check_key(t)
        try:
            self._dial(client, key)
        except TransportError:
            self._drop(client)
            raise
        except paramiko.BadHostKeyException as exc:
            self._drop(client)
            raise ssh_key_hints.changed_key_error(exc, t, self.address) from None
        except paramiko.SSHException as exc:
            stalled = stalled_after_greeting(client)
            self._drop(client)
            raise _ssh_failure(t, self.address, exc, key, stalled) from None
        except ValueError as exc:
            # UnicodeError: the idna codec refuses an empty or over-long part of the name (one that came past the
            # target schema: a lab place's, a device state's)
            self._drop(client)
            problem = host_name_problem(t.host or "")
            if problem is None:
                raise ConnectError(
                    f"cannot reach the device: {type(exc).__name__}: {exc}", where=self.address
                ) from None
            raise HostNameError(
                f"the host name {shown_host(t.host or '')} cannot be looked up: {problem}",
                where=f"target {t.name}, field `host`",
                hint=HOST_HINT,
            ) from None
        except (EOFError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            # paramiko raises these bare when the server drops the link in the handshake (EOFError also when
            # it could not even send its own greeting)
            transport = client.get_transport()
            greeted = transport is not None and bool(transport.remote_version)
            stalled = stalled_after_greeting(client)
            self._drop(client)
            if stalled is not None:
                raise stalled_error(t, self.address, stalled) from None
            if greeted:
                raise ConnectError(
                    "the SSH server closed the connection during the key exchange (after its greeting)",
                    where=self.address,
                    hint="sshd refused this client after greeting it: see the device's sshd log "
                    "(journalctl -u ssh) for the reason",
                ) from None
            raise closed_at_once_error(self.address) from None
        except (TimeoutError, OSError) as exc:
            self._drop(client)
            reason = (
                "connection refused"
                if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError)
                else exc
            )
            unknown_name = isinstance(exc, socket.gaierror)
            raise ConnectError(
                "cannot reach the device: "  # `where` is its address
                + (
                    f"no address for the host name {t.host!r} ({exc.strerror})"
                    if unknown_name
                    else str(reason)
                ),
                where=self.address,
                hint=(
                    "check `host` (a .local name needs mDNS, e.g. avahi, on this machine), or give the device's IP "
                    "address: --set host=192.168.1.23"
                    if unknown_name
                    else _unreached_hint(t)
                ),
            ) from None
        self._link.client = client
        client.get_transport().set_keepalive(max(1, int(t.io_timeout / 2)))
        self._home = ssh_exec.exec_simple(self._link, 'printf %s "$HOME"').strip() or "/"
        self.work_dir = (
            ""  # a relative work_dir is the home's, not the last connection's (reconnect doubled it)
        )
        self.work_dir = self._abs(t.work_dir)
        self._files.prune(self.work_dir)  # leftovers of earlier runs, and the partial uploads of killed ones
        return self

    def _dial(self, client: paramiko.SSHClient, key: str | None) -> None:
        """Connect `client` to the device, through its ProxyCommand or jump hosts if any. A proxy command that
        ended while the connection was being made is blamed for it (ConnectError), not the device's port: paramiko
        says "Broken pipe" or "no SSH banner" either way."""
        t = self.target
        sock = self._chain.open(client, key)
        try:
            client.connect(
                t.host or "",
                port=t.port,
                username=t.user,
                key_filename=key,
                sock=sock,
                look_for_keys=key is None,
                allow_agent=key is None,
                timeout=t.connect_timeout,
                banner_timeout=t.connect_timeout,
                auth_timeout=t.connect_timeout,
                handshake_timeout=t.connect_timeout,  # paramiko's own: 15 s
            )
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if self._chain.proxy_command is None or not _link_ended(exc):
                raise
            transport = client.get_transport()
            greeted = transport is not None and bool(transport.remote_version)
            # a failed write: the command is ending; give it a moment to be seen ended
            ended = self._chain.proxy_ended(
                2.0 if isinstance(exc, paramiko.ProxyCommandFailure) else 0.5, greeted=greeted
            )
            if ended is not None:
                raise ended from None
            raise

    def reconnect(self) -> bool:
        """After a lost or severed link: a fresh connection (bounded by connect_timeout); False if the device
        cannot be reached. Partial uploads of the old connection are removed."""
        self.close()
        self._link.severed = None
        try:
            self.connect()
        except TransportError:
            self.close()
            self._link.severed = "connection lost; the device could not be reached again"
            return False
        return True

    @property
    def usable(self) -> bool:
        """Connected (or able to connect) and not severed: worth pulling results and cleaning up."""
        return self._link.severed is None and not self._link.interrupted.is_set()

    def kill_group(self, pgid: int) -> str:
        """Stop what is left of a command of an earlier connection (its process group); '' when none is left."""
        return ssh_exec.kill_group(self._link, pgid)

    def sever(self, reason: str) -> None:
        """Cut the link from any thread: every call blocked on it wakes up and fails (DeviceTimeout)."""
        self._link.sever(reason)

    def interrupt(self) -> None:
        """Ctrl-C from another thread: a running command is stopped (its process group killed) and the
        operation raises Interrupted; an upload or download still stuck after `io_timeout` is severed."""
        self._link.interrupt()

    def resume_after_interrupt(self) -> bool:
        return self._link.resume_after_interrupt()

    def close(self) -> None:
        self._files.close()
        client, self._link.client = self._link.client, None
        self._drop(client)

    def _drop(self, client: paramiko.SSHClient | None) -> None:
        """Close a client (connected, or one that failed to connect), then the chain in front of it. With a
        ProxyCommand, the client's transport thread is joined first: its last act closes (signals) the
        ProxyCommand, which must not be reaped before (paramiko's exit hook would signal a reaped process:
        ProcessLookupError, printed after edgekit's own error)."""
        if client is not None:
            transport = client.get_transport()
            client.close()
            if transport is not None and transport.is_alive() and self._chain.proxy_command is not None:
                transport.join(timeout=5)
        self._chain.close()

    def _abs(self, remote: str) -> str:
        """Absolute remote path: `~/` is the remote home, relative paths are the work dir (connects)."""
        self.connect()
        if remote == "~" or remote.startswith("~/"):
            return str(PurePosixPath(self._home) / remote[2:]) if len(remote) > 1 else self._home
        if remote.startswith("/"):
            return remote
        return str(PurePosixPath(self.work_dir or self._home) / remote)

    # -- files (ssh_files.py) ----------------------------------------------------------------------
    @property
    def sftp(self) -> paramiko.SFTPClient:
        return self._files.sftp

    def put(self, local: Path, remote: str) -> PutResult:
        return self._files.put(local, remote)

    def put_many(self, pairs: list[tuple[Path, str]], dirs: Sequence[str] = ()) -> list[PutResult]:
        return self._files.put_many(pairs, dirs)

    def get(self, remote: str, local: Path) -> Path:
        return self._files.get(remote, local)

    def mkdir(self, remote: str) -> None:
        self._files.mkdir(remote)

    def free_bytes(self, remote: str = ".") -> int | None:
        """Bytes available to this user on the file system holding `remote` (its nearest existing parent);
        None when the device cannot say (no POSIX df)."""
        return self._files.free_bytes(remote)

    def bytes_to_send(self, pairs: list[tuple[Path, str]]) -> int:
        """How many bytes uploading `pairs` (local, remote) would send: files the device lacks or holds
        different (one round trip for all of them)."""
        return self._files.bytes_to_send(pairs)

    def upload_room(self, pairs: list[tuple[Path, str]]) -> tuple[int | None, int]:
        return self._files.upload_room(pairs)

    def sha256(self, remote: str) -> str | None:
        """The sha256 of a remote file, or None when it does not exist."""
        return self._files.sha256(remote)

    def _sha_cmd(self, path: str) -> str:
        return self._files.sha_cmd(path)

    # -- commands ----------------------------------------------------------------------------------
    def run(
        self,
        argv: list[str],
        *,
        timeout: float,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> RunResult:
        self.connect()
        cwd = self._abs(cwd) if cwd else self.work_dir
        return ssh_exec.run(self._link, argv, timeout=timeout, cwd=cwd, env=env, on_output=on_output)


def closed_by_peer(exc: BaseException) -> bool:
    """Whether the server closed or reset the connection behind `exc` (paramiko wraps the EOFError of a
    closed socket in "Error reading SSH protocol banner", as it does the timeout of a silent one)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (EOFError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _link_ended(exc: BaseException) -> bool:
    """Whether `exc` says the connection itself ended or never spoke (not a refused key or login)."""
    return (
        isinstance(exc, (paramiko.ProxyCommandFailure, EOFError, OSError))
        or closed_by_peer(exc)
        or "banner" in str(exc)
        or "No existing session" in str(exc)
    )


def stalled_error(t: Target, address: str, greeting: str) -> ConnectError:
    """The server greeted, then did not finish the key exchange within connect_timeout: a stalled sshd (or a slow
    one), not a missing SSH server or one that closed the link."""
    return ConnectError(
        f"the SSH server greeted ({greeting}) but did not finish the key exchange within "
        f"{t.connect_timeout:g} s (connect_timeout)",
        where=address,
        hint=(
            f"the emulated device's sshd is stuck or starved of CPU: `edgekit emu down {t.emulated.device} && "
            f"edgekit emu up {t.emulated.device}`"
            if t.emulated is not None
            else "its sshd accepts connections but stalls after greeting: a device out of memory or CPU, or sshd "
            "stuck (look at the device's console or its sshd log, journalctl -u ssh; restart sshd or the device)"
        )
        + "; if the device is only slow, raise connect_timeout (--set connect_timeout=60)",
    )


def closed_at_once_error(address: str) -> ConnectError:
    """The port took the connection and closed it before any SSH greeting: sshd dropping this client."""
    return ConnectError(
        "the SSH port closed the connection before the SSH greeting (sshd refusing this client: MaxStartups, "
        "hosts.deny / fail2ban, or not an SSH server)",
        where=address,
        hint="try `ssh -v` to the device; on the device see its sshd log (journalctl -u ssh) and whether this "
        "machine's address is banned (fail2ban-client status sshd) or denied (/etc/hosts.deny)",
    )


def _unreached_hint(t: Target) -> str:
    """What to check when the device did not answer: a lab board's place (the exporter whose NetworkService gave
    its address, and `edgekit lab`), else the device and its sshd (an emulated one started with `edgekit emu up`)."""
    place = getattr(t, "_place", None)
    if place is None:
        return "is the device on and sshd running? (`edgekit emu up NAME` for an emulated one)"
    service = place.service
    via = (
        f" at {service.address}:{service.port}, the NetworkService {service.path}"
        + (f" of exporter {service.path.split('/')[0]}" if "/" in service.path else "")
        if service is not None
        else ""
    )
    return (
        f"the board of lab place {place.name}{via}: is it on and its sshd running, and is that address still the "
        f"board's? `edgekit lab` shows the place's ssh address and holder; `labgrid-client -p {place.name} show` "
        "what it matches (the exporter's YAML sets the address)"
    )


def _ssh_failure(
    t: Target, address: str, exc: paramiko.SSHException, key: str | None, stalled: str | None
) -> EdgekitError:
    """The error a failed SSH handshake or login is said as: a server that greeted then stalled, an unknown host
    key, a refused login, a proxy_command that failed or brought no greeting, a port with no SSH server, no key to
    log in with; else paramiko's own words."""
    if stalled is not None and not isinstance(exc, paramiko.AuthenticationException):
        return stalled_error(t, address, stalled)
    if ssh_keys.is_unknown_key(exc):
        return ssh_key_hints.unknown_key_error(t, address)
    if isinstance(exc, paramiko.AuthenticationException):
        return ConnectError(
            f"authentication refused for user {t.user!r} (key {key or 'agent/default'})",
            where=address,
            hint="check `user` and `key` of the target",
        )
    if "banner" in str(exc) and closed_by_peer(exc):
        return closed_at_once_error(address)
    if ("banner" in str(exc) or "No existing session" in str(exc)) and t.proxy_command:
        return ConnectError(
            f"no SSH greeting came through the proxy_command within {t.connect_timeout:g} s (it runs, "
            "but nothing answered as an SSH server at its far end)",
            where=address,
            hint="run the target's proxy_command by hand, %h %p %r filled in: it should print the SSH "
            "greeting (SSH-2.0-...); is %p the device's SSH port (a Pi: 22, Termux: 8022)?",
        )
    if "banner" in str(exc) or "No existing session" in str(exc):
        return ConnectError(
            f"no SSH server answered within {t.connect_timeout:g} s (the port accepts connections "
            "but sent no SSH banner)",
            where=address,
            hint=f"the emulated device's sshd is frozen or stuck: `edgekit emu down {t.emulated.device} && "
            f"edgekit emu up {t.emulated.device}`"
            if t.emulated is not None  # the port is the device's own: restarting it is the cure
            else "is this the device's SSH port? (a Pi: 22, Termux: 8022; `--set port=N`)",
        )
    if "No authentication methods available" in str(exc):  # no key given, none in ~/.ssh or an agent
        return ConnectError(
            f"SSH failed: no key to log in as {t.user or 'the current user'}: the target names no `key` "
            "and none was found in ~/.ssh or an ssh-agent",
            where=address,
            hint=f"set `key:` in the target file ({t.source or 'targets/NAME.yaml'}; for a lab target "
            "the lab.yaml of the targets folder) or `--set key=PATH`",
        )
    if isinstance(exc, paramiko.ProxyCommandFailure):  # ProxyPipe's: the program named, no arguments
        return ConnectError(
            f"SSH failed: the proxy_command {exc.command} failed ({exc.error})", where=address
        )
    return ConnectError(f"SSH failed: {exc}", where=address)
