"""SSH transport (paramiko) for boards, phones and emulated devices.

Host keys are checked against the target's own known_hosts file only (ssh_keys.py): an unknown key is refused
unless the target opts in with `accept_new: true`, and a changed key is always refused.

Each command (ssh_exec.py) runs as `exec` of the login shell sshd started for it; sshd makes that shell a session leader,
so its pid (printed first, on stderr) is the process group of everything the command starts. On timeout
that group is killed from a second channel and RemoteTimeout raised.

Every remote operation has a deadline (ssh_link.py), so a frozen device (a board that hangs, a Wi-Fi link that drops without
a reset) never hangs a night: SSH keepalives every `io_timeout / 2`; SFTP reads time out after `io_timeout`;
each channel open and short command runs under a watchdog that severs the connection (shuts its socket) when
the device has not answered in time, which wakes every paramiko call blocked on it; while a long command runs,
a silent device is probed (an OpenSSH keepalive request) and a probe without answer ends it. A severed or
silent device raises DeviceTimeout (which operation, after how long); a dropped connection raises
ConnectionLost. `interrupt()` (Ctrl-C) stops a running command, kills its process group (bounded) and raises
Interrupted; `sever()` cuts the link from any thread (the whole-run deadline). A link error from `run` carries
what the command had printed so far (`stdout`) and its process group (`pgid`); `reconnect()` opens a fresh
connection (bounded by connect_timeout) to pull back what the device wrote and stop what is left of it.

A command dies with its session: a watcher in the same process group waits for the end of the command's stdin
(sshd closes it when the session ends: the link dropped, or sshd was killed) and then kills the group, so a lost
link never leaves an agent running (and holding the device lock) on the device.

The device's disk is checked before an upload (`free_bytes`, `bytes_to_send`); an upload that fails for lack of
space is a DeviceDiskFull (free vs needed bytes). At connect, leftovers are pruned: partial uploads older than an
hour (this connection's own at once), run folders older than a day (a failed run's, never pulled), artifact folders
unused for PRUNE_ARTIFACT_DAYS days, and the oldest day-old artifact folders while `artifacts/` exceeds
PRUNE_ARTIFACT_MB.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import paramiko

from edgekit.errors import (
    ConnectError,
    DeviceDiskFull,
    KeyFileError,
    TransportError,
)
from edgekit.target import Target
from edgekit.transport import ssh_exec, ssh_keys
from edgekit.transport.base import PutResult, RunResult, Transport, sha256_file
from edgekit.transport.ssh_jump import JumpChain
from edgekit.transport.ssh_link import Link

PRUNE_ARTIFACT_DAYS = 14
PRUNE_ARTIFACT_MB = 2048


class SshTransport(Transport):
    """One SSH connection to a target; connects on first use. Relative remote paths (and the default cwd
    of `run`) are the target's work dir; `~/` is the remote home."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.name = target.name
        self._sftp: paramiko.SFTPClient | None = None
        self._home = ""
        self.work_dir = ""
        self._link = Link(target, self.connect)  # the client under deadlines; connects on first use
        self._partials: set[str] = set()  # this connection's unfinished uploads: removed at the next connect
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
        key = str(Path(t.key).expanduser()) if t.key else None
        if key is not None and not Path(key).is_file():
            raise KeyFileError(
                f"key file not found: {key}",
                where=f"target {t.name}, field `key`",
                hint="--set key=PATH (a private key file), or remove `key` to use ssh-agent",
            )
        try:
            sock = self._chain.open(client, key)
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
            )
        except TransportError:
            client.close()
            self._chain.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise ssh_keys.changed_key_error(exc, t, self.address) from None
        except paramiko.SSHException as exc:
            client.close()
            if ssh_keys.is_unknown_key(exc):
                raise ssh_keys.unknown_key_error(t, self.address) from None
            if isinstance(exc, paramiko.AuthenticationException):
                raise ConnectError(
                    f"authentication refused for user {t.user!r} (key {key or 'agent/default'})",
                    where=self.address,
                    hint="check `user` and `key` of the target",
                ) from None
            if "banner" in str(exc) or "No existing session" in str(exc):
                raise ConnectError(
                    f"no SSH server answered within {t.connect_timeout:g} s (the port accepts connections "
                    "but sent no SSH banner)",
                    where=self.address,
                    hint="is this the device's SSH port? (a Pi: 22, Termux: 8022; `--set port=N`)",
                ) from None
            raise ConnectError(f"SSH failed: {exc}", where=self.address) from None
        except (TimeoutError, OSError) as exc:
            client.close()
            reason = (
                "connection refused"
                if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError)
                else exc
            )
            raise ConnectError(
                f"cannot reach {self.address}: {reason}",
                where=self.address,
                hint="is the device on and sshd running? (`edgekit emu up NAME` for an emulated one)",
            ) from None
        self._link.client = client
        client.get_transport().set_keepalive(max(1, int(t.io_timeout / 2)))
        self._home = ssh_exec.exec_simple(self._link, 'printf %s "$HOME"').strip() or "/"
        self.work_dir = self._abs(t.work_dir)
        ssh_exec.exec_simple(self._link, self._prune_script())
        self._partials.clear()
        return self

    def _prune_script(self) -> str:
        """Leftovers of earlier runs: partial uploads older than an hour (never a concurrent run's; this
        connection's own at once), run folders older than a day, stale artifact folders (age, then size)."""
        w = shlex.quote(self.work_dir)
        own = " ".join(shlex.quote(p) for p in sorted(self._partials))
        cap_kb = PRUNE_ARTIFACT_MB * 1024
        return (
            f"mkdir -p -- {w} && cd {w} && {{ find . -name '.*.edgekit-*' -mmin +60 -type f -delete; "
            + (f"rm -f -- {own}; " if own else "")
            + "[ -d runs ] && find runs -mindepth 1 -maxdepth 1 -type d -mmin +1440 -exec rm -rf {} +; "
            f"[ -d artifacts ] && find artifacts -mindepth 1 -maxdepth 1 -type d -mtime +{PRUNE_ARTIFACT_DAYS} "
            "-exec rm -rf {} +; "
            "[ -d artifacts ] && total=$(du -sk artifacts | cut -f1) && for d in $(ls -1tr artifacts); do "
            f'[ "$total" -le {cap_kb} ] && break; '
            '[ -n "$(find "artifacts/$d" -maxdepth 0 -mmin +1440)" ] || continue; '
            's=$(du -sk "artifacts/$d" | cut -f1); rm -rf -- "artifacts/$d"; total=$((total - s)); done; '
            "} >/dev/null 2>&1; true"
        )

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

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._link.client is not None:
            transport = self._link.client.get_transport()
            self._link.client.close()
            if transport is not None and self._chain.proxy_command is not None:
                transport.join(timeout=5)  # its last act closes the ProxyCommand: before that is reaped below
            self._link.client = None
        self._chain.close()

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            client = self._link.connected()
            with self._link.deadline("opening SFTP", self.target.io_timeout):
                self._sftp = client.open_sftp()
                self._sftp.get_channel().settimeout(self.target.io_timeout)
        return self._sftp

    def _abs(self, remote: str) -> str:
        """Absolute remote path: `~/` is the remote home, relative paths are the work dir (connects)."""
        self.connect()
        if remote == "~" or remote.startswith("~/"):
            return str(PurePosixPath(self._home) / remote[2:]) if len(remote) > 1 else self._home
        if remote.startswith("/"):
            return remote
        return str(PurePosixPath(self.work_dir or self._home) / remote)

    # -- files -------------------------------------------------------------------------------------
    def put(self, local: Path, remote: str) -> PutResult:
        local = Path(local)
        if not local.is_file():
            raise TransportError(f"no such local file {local}", where=f"put to {self.name}")
        self.connect()
        digest = sha256_file(local)
        path = self._abs(remote)
        parent = str(PurePosixPath(path).parent)
        q = shlex.quote(path)
        have = ssh_exec.exec_simple(
            self._link,
            f"mkdir -p -- {shlex.quote(parent)} && {{ {self._sha_cmd(path)}; }} && "
            f"touch -c -- {q} {shlex.quote(parent)} 2>/dev/null; true",
        ).strip()
        if have == digest:
            return PutResult(local, path, digest, 0, True)  # touched: in use, not stale
        tmp = f"{parent}/.{PurePosixPath(path).name}.edgekit-{secrets.token_hex(4)}"
        size = local.stat().st_size
        self._partials.add(tmp)
        try:
            with self._link.deadline(f"upload of {local.name}", size / 100_000 + self.target.io_timeout):
                self.sftp.put(str(local), tmp, confirm=True)
        except TransportError:
            raise  # DeviceTimeout, ConnectionLost: the partial file goes at the next connect (see _partials)
        except (OSError, paramiko.SSHException) as exc:
            ssh_exec.exec_simple(self._link, f"rm -f -- {shlex.quote(tmp)}")
            self._partials.discard(tmp)
            free = self.free_bytes(parent)
            if free is not None and free < size + (1 << 20):
                raise DeviceDiskFull(
                    f"the device's disk is full: {local.name} needs {_mb(size)}, {_mb(free)} free in {parent} "
                    f"(upload discarded; sftp said: {exc or type(exc).__name__})",
                    free=free,
                    needed=size,
                    where=self.address,
                    hint=_DISK_HINT,
                ) from None
            raise TransportError(
                f"upload of {local.name} failed: {exc}", where=f"{self.address}:{path}"
            ) from None
        self._partials.discard(tmp)
        check = (
            f'[ "$({self._sha_cmd(tmp)})" = {digest} ] && mv -f -- {shlex.quote(tmp)} {shlex.quote(path)}'
            f" && echo ok || {{ rm -f -- {shlex.quote(tmp)}; echo mismatch; }}"
        )
        if ssh_exec.exec_simple(self._link, check).strip() != "ok":
            raise TransportError(
                f"sha256 of the uploaded {local.name} does not match; upload discarded",
                where=f"{self.address}:{path}",
            )
        return PutResult(local, path, digest, local.stat().st_size, False)

    def free_bytes(self, remote: str = ".") -> int | None:
        """Bytes available to this user on the file system holding `remote` (its nearest existing parent);
        None when the device cannot say (no POSIX df)."""
        path = self._abs(remote)
        out = ssh_exec.exec_simple(
            self._link,
            f'p={shlex.quote(path)}; while [ ! -e "$p" ] && [ "$p" != / ]; do '
            'p=$(dirname "$p"); done; df -Pk -- "$p" 2>/dev/null | awk \'NR==2 {print $4}\'',
        )
        text = out.strip()
        return int(text) * 1024 if text.isdigit() else None

    def bytes_to_send(self, pairs: list[tuple[Path, str]]) -> int:
        """How many bytes uploading `pairs` (local, remote) would send: files the device lacks or holds
        different (one round trip for all of them)."""
        if not pairs:
            return 0
        script = "; ".join(
            f"printf '%s\\n' \"$({self._sha_cmd(self._abs(remote))})\"" for _l, remote in pairs
        )
        have = ssh_exec.exec_simple(self._link, script).split("\n")
        return sum(
            Path(local).stat().st_size
            for i, (local, _r) in enumerate(pairs)
            if (have[i].strip() if i < len(have) else "") != sha256_file(Path(local))
        )

    def sha256(self, remote: str) -> str | None:
        """The sha256 of a remote file, or None when it does not exist."""
        return ssh_exec.exec_simple(self._link, self._sha_cmd(self._abs(remote))).strip() or None

    def _sha_cmd(self, path: str) -> str:
        """sha256 of path on the device (nothing if absent): sha256sum, or the device python without it."""
        q = shlex.quote(path)
        py = (
            "import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],'rb'); "
            "[h.update(b) for b in iter(lambda: f.read(1<<20), b'')]; print(h.hexdigest())"
        )
        return (
            f"if [ -f {q} ]; then if command -v sha256sum >/dev/null 2>&1; then sha256sum -- {q} | "
            f"cut -c1-64; else {ssh_exec.quoted_command(self.target.python)} -c {shlex.quote(py)} {q}; fi; fi"
        )

    def get(self, remote: str, local: Path) -> Path:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        path = self._abs(remote)
        tmp = local.with_name(f".{local.name}.part")
        try:
            with self._link.deadline(f"download of {PurePosixPath(path).name}", 600 + self.target.io_timeout):
                self.sftp.get(path, str(tmp))
        except TransportError:
            tmp.unlink(missing_ok=True)
            raise
        except (OSError, paramiko.SSHException) as exc:
            tmp.unlink(missing_ok=True)
            raise TransportError(f"cannot download {path}: {exc}", where=self.address) from None
        tmp.replace(local)
        return local

    def mkdir(self, remote: str) -> None:
        ssh_exec.exec_simple(self._link, f"mkdir -p -- {shlex.quote(self._abs(remote))}", check=True)

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


_DISK_HINT = (
    "free space on the device (old runs under the work dir's runs/ and artifacts/ are safe to delete), "
    "or --set work_dir=PATH on a larger disk"
)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"
