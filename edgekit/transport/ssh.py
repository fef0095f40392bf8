"""SSH transport (paramiko) for boards, phones and emulated devices.

Host keys are checked against the target's own known_hosts file only: an unknown key is refused unless the
target opts in with `accept_new: true` (then it is recorded), and a changed key is always refused. Emulated
devices pin their key (the device's known_hosts file written by `edgekit emu up`).

Each command runs as `exec` of the login shell sshd started for it; sshd makes that shell a session leader,
so its pid (printed first, on stderr) is the process group of everything the command starts. On timeout
that group is killed from a second channel and RemoteTimeout raised.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import select
import shlex
import time
from pathlib import Path, PurePosixPath

import paramiko

from edgekit.errors import ConnectError, HostKeyError, KeyFileError, RemoteTimeout, TransportError
from edgekit.target import Target
from edgekit.transport.base import PutResult, RunResult, Transport

_PID_MARK = "EDGEKIT_PGID "
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _RecordNewKey(paramiko.MissingHostKeyPolicy):
    """accept_new: trust a first-seen key and write it to the target's known_hosts file."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class SshTransport(Transport):
    """One SSH connection to a target; connects on first use. Relative remote paths (and the default cwd
    of `run`) are the target's work dir; `~/` is the remote home."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.name = target.name
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._home = ""
        self.work_dir = ""

    # -- connection -------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    def connect(self) -> SshTransport:
        if self._client is not None:
            return self
        t = self.target
        known_hosts = Path(t.known_hosts).expanduser()
        client = paramiko.SSHClient()
        if known_hosts.is_file():
            client.load_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(_RecordNewKey(known_hosts) if t.accept_new else paramiko.RejectPolicy())
        key = str(Path(t.key).expanduser()) if t.key else None
        if key is not None and not Path(key).is_file():
            raise KeyFileError(f"key file not found: {key}", where=f"target {t.name}, field `key`",
                               hint="--set key=PATH (a private key file), or remove `key` to use ssh-agent")
        try:
            client.connect(t.host or "", port=t.port, username=t.user, key_filename=key,
                           look_for_keys=key is None, allow_agent=key is None, timeout=t.connect_timeout,
                           banner_timeout=t.connect_timeout, auth_timeout=t.connect_timeout)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"host key CHANGED: {exc.key.get_name()} {exc.key.fingerprint} is not the key recorded in "
                f"{known_hosts}; refusing to connect (nothing was sent)", where=self.address,
                hint=f"if the device was really re-installed, remove its line: ssh-keygen -R "
                     f"'[{t.host}]:{t.port}' -f {known_hosts}, then accept the new key") from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyError(
                    f"unknown host key (not in {known_hosts}); refusing to connect", where=self.address,
                    hint=f"check the device's key, then: ssh-keyscan -p {t.port} {t.host} >> {known_hosts}"
                         f"  (or trust the first key: --set accept_new=true)") from None
            if isinstance(exc, paramiko.AuthenticationException):
                raise ConnectError(f"authentication refused for user {t.user!r} (key {key or 'agent/default'})",
                                   where=self.address, hint="check `user` and `key` of the target") from None
            if "banner" in str(exc) or "No existing session" in str(exc):
                raise ConnectError(
                    f"no SSH server answered within {t.connect_timeout:g} s (the port accepts connections "
                    "but sent no SSH banner)", where=self.address,
                    hint="is this the device's SSH port? (a Pi: 22, Termux: 8022; `--set port=N`)") from None
            raise ConnectError(f"SSH failed: {exc}", where=self.address) from None
        except (TimeoutError, OSError) as exc:
            client.close()
            reason = "connection refused" if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) else exc
            raise ConnectError(f"cannot reach {self.address}: {reason}", where=self.address,
                               hint="is the device on and sshd running? (`edgekit emu up NAME` for an "
                                    "emulated one)") from None
        self._client = client
        self._home = self._exec_simple("printf %s \"$HOME\"").strip() or "/"
        self.work_dir = self._abs(t.work_dir)
        self._exec_simple(f"mkdir -p -- {shlex.quote(self.work_dir)}")
        return self

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._connected().open_sftp()
        return self._sftp

    def _connected(self) -> paramiko.SSHClient:
        self.connect()
        if self._client is None:  # connect() sets it or raises
            raise ConnectError("not connected", where=self.address)
        return self._client

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
        have = self._exec_simple(f"mkdir -p -- {shlex.quote(parent)} && {{ {self._sha_cmd(path)}; }}").strip()
        if have == digest:
            return PutResult(local, path, digest, 0, True)
        tmp = f"{parent}/.{PurePosixPath(path).name}.edgekit-{secrets.token_hex(4)}"
        try:
            self.sftp.put(str(local), tmp, confirm=True)
        except (OSError, paramiko.SSHException) as exc:
            self._exec_simple(f"rm -f -- {shlex.quote(tmp)}")
            raise TransportError(f"upload of {local.name} failed: {exc}", where=f"{self.address}:{path}") from None
        check = (f"[ \"$({self._sha_cmd(tmp)})\" = {digest} ] && mv -f -- {shlex.quote(tmp)} {shlex.quote(path)}"
                 f" && echo ok || {{ rm -f -- {shlex.quote(tmp)}; echo mismatch; }}")
        if self._exec_simple(check).strip() != "ok":
            raise TransportError(f"sha256 of the uploaded {local.name} does not match; upload discarded",
                                 where=f"{self.address}:{path}")
        return PutResult(local, path, digest, local.stat().st_size, False)

    def sha256(self, remote: str) -> str | None:
        """The sha256 of a remote file, or None when it does not exist."""
        return self._exec_simple(self._sha_cmd(self._abs(remote))).strip() or None

    def _sha_cmd(self, path: str) -> str:
        """sha256 of path on the device (nothing if absent): sha256sum, or the device python without it."""
        q = shlex.quote(path)
        py = ("import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],'rb'); "
              "[h.update(b) for b in iter(lambda: f.read(1<<20), b'')]; print(h.hexdigest())")
        return (f"if [ -f {q} ]; then if command -v sha256sum >/dev/null 2>&1; then sha256sum -- {q} | "
                f"cut -c1-64; else {_quoted_command(self.target.python)} -c {shlex.quote(py)} {q}; fi; fi")

    def get(self, remote: str, local: Path) -> Path:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        path = self._abs(remote)
        tmp = local.with_name(f".{local.name}.part")
        try:
            self.sftp.get(path, str(tmp))
        except (OSError, paramiko.SSHException) as exc:
            tmp.unlink(missing_ok=True)
            raise TransportError(f"cannot download {path}: {exc}", where=self.address) from None
        tmp.replace(local)
        return local

    def mkdir(self, remote: str) -> None:
        self._exec_simple(f"mkdir -p -- {shlex.quote(self._abs(remote))}", check=True)

    # -- commands ----------------------------------------------------------------------------------
    def run(self, argv: list[str], *, timeout: float, cwd: str | None = None,
            env: dict[str, str] | None = None) -> RunResult:
        self.connect()
        command = " ".join(shlex.quote(str(a)) for a in argv)
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in _checked_env(env).items())
        where = shlex.quote(self._abs(cwd) if cwd else self.work_dir)
        wrapped = f"echo {_PID_MARK}$$ >&2; cd {where} && exec env {assignments} {command}"
        start = time.monotonic()
        chan = self._connected().get_transport().open_session()  # type: ignore[union-attr]
        chan.exec_command(wrapped)
        out, err, timed_out = _collect(chan, start + timeout)
        pgid, err_text = _split_pid(err.decode(errors="replace"))
        if timed_out:
            chan.close()
            survivors = self._kill_group(pgid) if pgid else "unknown process group"
            exc = RemoteTimeout(f"`{command}` did not finish within {timeout:g} s and was stopped"
                                + (f" (still alive: {survivors})" if survivors else ""), where=self.address)
            exc.stdout, exc.stderr, exc.pgid = out.decode(errors="replace"), err_text, pgid  # type: ignore[attr-defined]
            raise exc
        status = chan.recv_exit_status()
        chan.close()
        return RunResult(command, status, out.decode(errors="replace"), err_text, time.monotonic() - start)

    def _kill_group(self, pgid: int) -> str:
        """TERM then KILL the command's process group; return '' when no live (non-zombie) member is left.

        Zombies are ignored: on a device whose init does not reap, orphans stay as zombies but run nothing.
        """
        live = (f"ps -eo pid=,pgid=,stat= 2>/dev/null | awk -v g={pgid} "
                "'$2==g && $3 !~ /^Z/ {printf \"%s \", $1}'")
        script = (f"kill -TERM -- -{pgid} 2>/dev/null; i=0; while [ -n \"$({live})\" ] && [ $i -lt 20 ]; "
                  f"do sleep 0.1; i=$((i+1)); done; kill -KILL -- -{pgid} 2>/dev/null; sleep 0.1; {live}; true")
        return self._exec_simple(script).strip()

    def _exec_simple(self, command: str, *, check: bool = False, timeout: float = 120.0) -> str:
        """A short helper command (no pid marker); returns stdout."""
        chan = self._connected().get_transport().open_session()  # type: ignore[union-attr]
        chan.exec_command(command)
        out, err, timed_out = _collect(chan, time.monotonic() + timeout)
        status = -1 if timed_out else chan.recv_exit_status()
        chan.close()
        if check and status != 0:
            raise TransportError(f"`{command}` failed ({status}): {err.decode(errors='replace').strip()}",
                                 where=self.address)
        return out.decode(errors="replace")


def _quoted_command(command: str) -> str:
    return " ".join(shlex.quote(part) for part in shlex.split(command))


def _checked_env(env: dict[str, str] | None) -> dict[str, str]:
    for key in env or {}:
        if not _ENV_NAME.match(key):
            raise TransportError(f"invalid environment variable name {key!r}", where="run(env=...)")
    return dict(env or {})


def _collect(chan: paramiko.Channel, deadline: float) -> tuple[bytearray, bytearray, bool]:
    """Read stdout/stderr until the command exits and its streams close, or the deadline passes."""
    out, err = bytearray(), bytearray()
    while True:
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        if chan.exit_status_ready() and (chan.eof_received or chan.closed):
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            return out, err, False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return out, err, True
        select.select([chan], [], [], min(remaining, 0.05))


def _split_pid(stderr: str) -> tuple[int | None, str]:
    first, _, rest = stderr.partition("\n")
    if first.startswith(_PID_MARK) and first[len(_PID_MARK):].isdigit():
        return int(first[len(_PID_MARK):]), rest
    return None, stderr
