"""Files on the device over an SSH link: uploads (sha256-checked, atomic, skipped when unchanged), downloads,
the device's free space, and the leftovers of earlier runs.

The device's disk is checked before an upload (`free_bytes`, `bytes_to_send`); an upload that fails for lack of
space is a DeviceDiskFull (free vs needed bytes). At connect, leftovers are pruned (`prune`): partial uploads
older than an hour, and at once this connection's own and those of an edgekit on this machine that is gone (killed
mid-upload: the upload's name says whose it is, work_prune.partial_name), run folders older than a day (a failed
run's, never pulled), artifact folders unused for PRUNE_ARTIFACT_DAYS days, and the oldest day-old artifact folders
while `artifacts/` exceeds PRUNE_ARTIFACT_MB. SFTP requests time out after `io_timeout`; an upload or a download
after `io_timeout` of silence (no bytes taken or acknowledged: a slow link goes on). A download is refused before it
starts when the device's file is over the download limit (limits.check_download_size: DeviceFileTooLarge). A device
whose SSH server offers no SFTP subsystem (refused, or it ends at once) while the connection still answers is a
TransportError saying so and what to install (exit 1), not a dropped link.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import paramiko

from edgekit.errors import DeviceDiskFull, RemotePathIsFolder, TransportError, WorkDirError
from edgekit.transport.base import PutResult, sha256_file
from edgekit.transport.limits import check_download_size
from edgekit.transport.ssh_exec import close_quietly, exec_simple, quoted_command
from edgekit.transport.ssh_link import Link
from edgekit.transport.work_prune import (  # the rule, one for every work dir (a local one: work_prune.prune)
    device_prune_script,
    owner_gone,
    partial_name,
)

_FAULT_HINT = (  # WorkDirError.device_fault: the disk, not the path (exit 1)
    "not a path given wrong: check the device's disk (`dmesg | tail`, `df -h`, `mount`; an SD card remounted "
    "read-only after errors needs fsck or replacing), or give a work dir on another disk: --set work_dir=PATH"
)
# the lines of put_many's and upload_room's scripts, told apart from anything a login prints
_PUT_MARK, _DIR_MARK, _DF_MARK = "edgekit-put-", "edgekit-dir-", "edgekit-df:"
_SCRIPT_S_PER_FILE = 120.0  # put_many's and upload_room's scripts: put()'s bound, for each file (hashed)
_NO_DIR = "edgekit-no-dir:"  # the first word of what _in_dir prints when the folder cannot be made or written
_DISK_HINT = (
    "free space on the device (old runs under the work dir's runs/ and artifacts/ are safe to delete), "
    "or --set work_dir=PATH on a larger disk"
)


_NO_SFTP_HINT = (
    "install openssh-sftp-server (Debian/Raspberry Pi OS) or `pkg install openssh` (Termux) on the device; a "
    "hand-written sshd_config needs `Subsystem sftp internal-sftp` (then reload sshd); dropbear needs an "
    "sftp-server beside it"
)


def _still_answers(client: paramiko.SSHClient) -> bool:
    """Whether the SSH connection still answers a request (after a channel of it closed): a keepalive the server
    must reply to (success or failure), then the transport still up. A device whose sshd refused a subsystem
    answers; a dropped link does not (the wait ends when the transport dies, or at the caller's deadline)."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        return False
    transport.global_request("keepalive@openssh.com", wait=True)
    return bool(transport.is_active() and transport.saved_exception is None)


class RemoteFiles:
    """One link's SFTP session (opened on first use) and the uploads it has not finished.

    `abs_path` is the transport's: `~/` is the remote home, relative paths are the work dir (it connects)."""

    def __init__(self, link: Link, abs_path: Callable[[str], str]) -> None:
        self.link = link
        self.target = link.target
        # this connection's unfinished uploads, removed at its next connect; a killed edgekit's are told by their
        # names (prune)
        self.partials: set[str] = set()
        self._abs = abs_path
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            client = self.link.connected()
            with self.link.deadline("opening SFTP", self.target.io_timeout):
                try:
                    self._sftp = client.open_sftp()
                except (EOFError, paramiko.SSHException) as exc:
                    if not _still_answers(client):
                        raise  # the link itself is gone: the deadline says so (ConnectionLost)
                    raise TransportError(
                        "the device's SSH server offers no SFTP subsystem, which edgekit copies files with "
                        f"(it refused or ended the SFTP session: {str(exc).rstrip(': .') or type(exc).__name__}); "
                        "commands still run",
                        where=self.link.address,
                        hint=_NO_SFTP_HINT,
                    ) from None
                self._sftp.get_channel().settimeout(self.target.io_timeout)
        return self._sftp

    def close(self) -> None:
        sftp, self._sftp = self._sftp, None
        if sftp is not None:
            close_quietly(sftp)  # best effort: the link may be gone

    def put(self, local: Path, remote: str) -> PutResult:
        """`local` at `remote` (relative to the work dir): skipped and touched when the device holds it already,
        else sent under a partial name, its sha256 checked and renamed (put_many of one file)."""
        return self.put_many([(Path(local), remote)])[0]

    def put_many(self, pairs: list[tuple[Path, str]], dirs: Sequence[str] = ()) -> list[PutResult]:
        """put() of each (local, remote) pair in two round trips instead of two per file (about 0.3 s each even on
        127.0.0.1: a session, a shell): one script makes every parent folder, hashes and touches what the device
        holds; the changed files go up by SFTP under partial names; one script checks each sha256 and renames.

        The last pair for a remote path wins, as put() after put() leaves it: only it is sent (or skipped when the
        device holds it); an earlier pair for that path sends nothing, and its result is the last one's file
        (skipped, 0 bytes). A remote path that is a folder is RemotePathIsFolder; a script that outlives its bound
        is RemoteTimeout naming its step."""
        locals_ = [Path(local) for local, _remote in pairs]
        for local in locals_:
            if not local.is_file():
                raise TransportError(f"no such local file {local}", where=f"put to {self.target.name}")
        if not pairs and not dirs:
            return []
        self.link.connected()
        digests = [sha256_file(local) for local in locals_]
        paths = [self._abs(remote) for _local, remote in pairs]
        last = {path: i for i, path in enumerate(paths)}  # each remote path's deciding pair: its last
        have = self._held(list(last), [self._abs(d) for d in dirs])
        results: dict[int, PutResult] = {}
        sent: list[tuple[int, str]] = []  # (pair, its partial upload) to check and rename
        for n, (path, i) in enumerate(last.items()):
            if have.get(n) == digests[i]:
                results[i] = PutResult(locals_[i], path, digests[i], 0, True)  # touched: in use, not stale
            else:
                sent.append((i, self._upload(locals_[i], path, [tmp for _i, tmp in sent])))
        if sent:
            self._settle(sent, locals_, paths, digests)
            for i, _tmp in sent:
                results[i] = PutResult(locals_[i], paths[i], digests[i], locals_[i].stat().st_size, False)
        for i, path in enumerate(paths):
            w = last[path]  # i superseded by a later pair for its path (w): what w left there
            results.setdefault(i, PutResult(locals_[w], path, digests[w], 0, True))
        return [results[i] for i in range(len(pairs))]

    def _settle(
        self, sent: list[tuple[int, str]], locals_: list[Path], paths: list[str], digests: list[str]
    ) -> None:
        """One script for every (pair, partial) in `sent`: its sha256 checked and the partial renamed onto its path,
        or removed. A path that is a folder is refused before the rename (`mv` would move the file into it; GNU
        `mv -T` is not on busybox or Termux); a failed check and a failed rename are said as such."""
        checks = []
        for i, tmp in sent:
            said = f"{_PUT_MARK}{i}="  # the mark of this file's answer
            q, t = shlex.quote(paths[i]), shlex.quote(tmp)
            checks.append(
                f"if [ -d {q} ]; then rm -f -- {t}; echo {said}folder; "
                f'elif [ "$({self.sha_cmd(tmp)})" != {digests[i]} ]; then rm -f -- {t}; echo {said}sha; '
                f"elif e=$(mv -f -- {t} {q} 2>&1); then echo {said}ok; "
                f"else rm -f -- {t}; printf '{said}mv %s\\n' \"$(printf %s \"$e\" | tr '\\n' ' ')\"; fi"
            )
        # each file's check keeps put()'s bound of its own (a large model hashed under emulation)
        out = exec_simple(
            self.link,
            "; ".join(checks),
            timeout=_SCRIPT_S_PER_FILE * len(sent),
            step=f"checking the sha256 of {len(sent)} uploaded file(s) and renaming them into place",
        )
        answers: dict[int, str] = {}
        for line in out.splitlines():
            key, _, word = line.strip().partition("=")
            if key.startswith(_PUT_MARK) and key[len(_PUT_MARK) :].isdigit():
                answers.setdefault(int(key[len(_PUT_MARK) :]), word)
        self.partials.difference_update(tmp for _i, tmp in sent)  # each renamed or removed by the script
        for i, _tmp in sent:
            answer, name, where = answers.get(i, ""), locals_[i].name, f"{self.link.address}:{paths[i]}"
            if answer == "ok":
                continue
            if answer == "folder":
                raise RemotePathIsFolder(
                    f"the remote path {paths[i]} is a folder on the device: {name} was not put there (nor into "
                    "it); upload discarded",
                    path=paths[i],
                    where=self.link.address,
                    hint="give the file's own path (the folder's name plus the file's), or remove the folder",
                )
            if answer.startswith("mv"):
                why = answer[2:].strip() or "mv failed"
                raise TransportError(
                    f"the uploaded {name} passed its sha256 check but cannot be renamed into place: {why}; upload "
                    "discarded",
                    where=where,
                )
            if answer == "sha":
                raise TransportError(
                    f"sha256 of the uploaded {name} does not match; upload discarded", where=where
                )
            raise TransportError(
                f"the device did not confirm the upload of {name} (its check script said {answer or 'nothing'!r})",
                where=where,
            )

    def _held(self, paths: list[str], dirs: list[str]) -> dict[int, str]:
        """The sha256 of each path the device holds (by index; absent: ''), every parent and each of `dirs` made
        (WorkDirError when one cannot be) and every held file and parent touched (in use, not stale), in one
        round trip."""
        parents: dict[str, list[int]] = {}
        for i, path in enumerate(paths):
            parents.setdefault(str(PurePosixPath(path).parent), []).append(i)
        for folder in dirs:
            parents.setdefault(folder, [])
        script = []
        for n, (parent, members) in enumerate(parents.items()):
            hashes = "; ".join(
                f"printf '{_PUT_MARK}{i}=%s\\n' \"$({self.sha_cmd(paths[i])})\"; "
                f"touch -c -- {shlex.quote(paths[i])} {shlex.quote(parent)} 2>/dev/null"
                for i in members
            )
            script.append(f"echo {_DIR_MARK}{n}; {self._in_dir(parent, hashes or 'true')}")
        out = exec_simple(
            self.link,
            "; ".join(script),
            timeout=_SCRIPT_S_PER_FILE * max(1, len(paths)),  # never 0: folders alone (put_many([], dirs))
            step=f"making the upload's folders and hashing the {len(paths)} file(s) the device may hold",
        )
        sections = out.split(_DIR_MARK)
        have: dict[int, str] = {}
        for n, parent in enumerate(parents):
            section = next((s for s in sections if s.split("\n", 1)[0].strip() == str(n)), "")
            body = section.split("\n", 1)[1] if "\n" in section else ""
            self._check_dir(parent, body.lstrip())
            for line in body.splitlines():
                key, _, digest = line.strip().partition("=")
                if key.startswith(_PUT_MARK) and key[len(_PUT_MARK) :].isdigit():
                    have[int(key[len(_PUT_MARK) :])] = digest
        return have

    def _upload(self, local: Path, path: str, pending: list[str]) -> str:
        """`local` sent by SFTP to a partial name beside `path` (returned); on a failure the device answered (not
        the link's), it and the `pending` partials of this batch are removed and the error named as put() does."""
        parent = str(PurePosixPath(path).parent)
        tmp = f"{parent}/{partial_name(PurePosixPath(path).name)}"
        size = local.stat().st_size
        self.partials.add(tmp)
        try:
            with self._transfer(f"upload of {local.name}", size) as moved:
                self.sftp.put(str(local), tmp, callback=moved, confirm=True)
        except TransportError:
            raise  # DeviceTimeout, ConnectionLost: the partial files go at the next connect (see partials)
        except (OSError, paramiko.SSHException) as exc:
            gone = [tmp, *pending]
            exec_simple(self.link, "rm -f -- " + " ".join(shlex.quote(t) for t in gone))
            self.partials.difference_update(gone)
            free = self.free_bytes(parent)
            if free is not None and free < size + (1 << 20):
                raise DeviceDiskFull(
                    f"the device's disk is full: {local.name} needs {_mb(size)}, {_mb(free)} free in {parent} "
                    f"(upload discarded; sftp said: {exc or type(exc).__name__})",
                    free=free,
                    needed=size,
                    where=self.link.address,
                    hint=_DISK_HINT,
                ) from None
            raise TransportError(
                f"upload of {local.name} failed: {exc}", where=f"{self.link.address}:{path}"
            ) from None
        return (
            tmp  # in `partials` until checked: a link lost before that leaves it to the next connect's prune
        )

    def get(self, remote: str, local: Path) -> Path:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        path = self._abs(remote)
        tmp = local.with_name(f".{local.name}.part")
        try:
            with self.link.deadline(f"download of {PurePosixPath(path).name}", self.target.io_timeout):
                size = self.sftp.stat(path).st_size or 0
            check_download_size(size, path, self.link.address)
            with self._transfer(f"download of {PurePosixPath(path).name}", size, "received") as moved:
                self.sftp.get(path, str(tmp), callback=moved)
        except TransportError:
            tmp.unlink(missing_ok=True)
            raise
        except (OSError, paramiko.SSHException) as exc:
            tmp.unlink(missing_ok=True)
            raise TransportError(f"cannot download {path}: {exc}", where=self.link.address) from None
        tmp.replace(local)
        return local

    @contextmanager
    def _transfer(self, what: str, size: int, verb: str = "sent") -> Iterator[Callable[[int, int], None]]:
        """An upload or download under a limit on silence, not on its whole (a slow link is not a frozen device):
        the link is cut when for io_timeout no bytes move and the device acknowledges nothing (no SFTP answer, no
        window opened); the whole-run deadline (a push) or the pull's own (deploy.finish.FINISH_S) bounds the
        rest. Yields the callback paramiko reports bytes to. The channel's own timeout is lifted meanwhile: a slow device opens its SSH window about every 100 kB,
        which took longer than io_timeout below 20 kB/s, and the watchdog has the say."""
        sftp = self.sftp
        chan = sftp.get_channel()
        moved = [0]

        def report(done: int, _total: int) -> None:
            moved[0] = done

        def progress() -> tuple[object, str]:
            state = (
                moved[0],
                chan.out_window_size,
                len(chan.in_buffer),
                len(getattr(sftp, "_expecting", ())),
            )
            return state, f"{_kb(moved[0])} of {_kb(size)} {verb}"

        chan.settimeout(None)
        try:
            with self.link.deadline(what, self.target.io_timeout, progress=progress):
                yield report
        finally:
            chan.settimeout(self.target.io_timeout)

    def mkdir(self, remote: str) -> None:
        path = self._abs(remote)
        self._check_dir(path, exec_simple(self.link, self._in_dir(path, "true")).strip())

    @staticmethod
    def _in_dir(folder: str, then: str) -> str:
        """A script that makes `folder` and runs `then` when it is a folder this user can write; else prints
        _NO_DIR and why (mkdir's own message, or that it cannot be written): a failure nothing used to say, the
        upload after it failing as "No such file"."""
        f = shlex.quote(folder)
        probe = shlex.quote(f"{folder}/.edgekit-write-test")  # its error tells a read-only disk from a mode
        # the write test's EROFS is the file system's doing, not this user's: said so ("not writable by this user"
        # sent people to chmod a folder on a disk mounted read-only)
        return (
            f"if e=$(mkdir -p -- {f} 2>&1); then if [ -w {f} ]; then {then}; else w=$(touch -- {probe} 2>&1; "
            f"rm -f -- {probe}); case $w in *'Read-only file system'*) r='its file system is mounted read-only';; "
            f"*) r='the folder is not writable by this user';; esac; printf '{_NO_DIR} %s%s\\n' \"$r\" "
            f'"${{w:+ ($w)}}"; fi; else printf \'{_NO_DIR} %s\\n\' "$e"; fi; true'
        )

    def _check_dir(self, folder: str, out: str) -> None:
        """Raise WorkDirError when `out` of an _in_dir script says `folder` cannot be made or written."""
        if not out.startswith(_NO_DIR):
            return
        why = " ".join(out[len(_NO_DIR) :].split()) or "mkdir failed"
        t = self.target
        work_dir = self._abs(".")
        fault = _FAULT_HINT if WorkDirError.device_fault(folder, why) else None
        if PurePosixPath(folder).is_relative_to(work_dir):
            shown = work_dir if folder == work_dir else f"{work_dir} (for {folder})"
            raise WorkDirError(
                f"the work dir {shown} cannot be created or written on the device: {why}",
                path=folder,
                why=why,
                where=f"{self.link.address} (target {t.name}, field `work_dir`: {t.work_dir!r})",
                hint=fault
                or "give a work dir this login can write on the device: --set work_dir=PATH (a folder in its home, "
                f"e.g. ~/edgekit, or on a larger disk), or `work_dir:` in {t.source or 'the target file'}",
            )
        raise WorkDirError(
            f"the folder {folder} cannot be created or written on the device: {why}",
            path=folder,
            why=why,
            where=self.link.address,
            hint=fault
            or "a path this login can write on the device (a relative one is in the target's work dir)",
        )

    def free_bytes(self, remote: str = ".") -> int | None:
        """Bytes available to this user on the file system holding `remote` (its nearest existing parent);
        None when the device cannot say (no POSIX df)."""
        path = self._abs(remote)
        out = exec_simple(
            self.link,
            f'p={shlex.quote(path)}; while [ ! -e "$p" ] && [ "$p" != / ]; do '
            'p=$(dirname "$p"); done; df -Pk -- "$p" 2>/dev/null | awk \'NR==2 {print $4}\'',
        )
        text = out.strip()
        return int(text) * 1024 if text.isdigit() else None

    def bytes_to_send(self, pairs: list[tuple[Path, str]]) -> int:
        """How many bytes uploading `pairs` (local, remote) would send: files the device lacks or holds
        different (one round trip for all of them), each remote path once, as its last pair (put_many sends only
        that one)."""
        if not pairs:
            return 0
        last = _last_per_path(pairs, self._abs)
        script = "; ".join(f"printf '%s\\n' \"$({self.sha_cmd(path)})\"" for path in last)
        have = exec_simple(self.link, script).split("\n")
        return _to_send(pairs, last, lambda n: have[n].strip() if n < len(have) else "")

    def upload_room(self, pairs: list[tuple[Path, str]]) -> tuple[int | None, int]:
        """Transport.upload_room in one round trip (mkdir, df and bytes_to_send's hashes were three)."""
        work = self._abs(".")
        df = f"df -Pk -- {shlex.quote(work)} 2>/dev/null | awk 'NR==2 {{print $4}}'"
        then = f"printf '{_DF_MARK}%s\\n' \"$({df})\""
        last = _last_per_path(pairs, self._abs)
        for n, path in enumerate(last):
            then += f"; printf '{_PUT_MARK}{n}=%s\\n' \"$({self.sha_cmd(path)})\""
        out = exec_simple(
            self.link, self._in_dir(work, then), timeout=_SCRIPT_S_PER_FILE * max(1, len(last))
        ).strip()
        self._check_dir(work, out)
        lines = [line.strip() for line in out.splitlines()]
        kb = next((line[len(_DF_MARK) :] for line in lines if line.startswith(_DF_MARK)), "")
        if not kb.isdigit():
            return None, 0
        have = {}
        for line in lines:
            if line.startswith(_PUT_MARK):
                index, _, digest = line[len(_PUT_MARK) :].partition("=")
                have[index] = digest
        return int(kb) * 1024, _to_send(pairs, last, lambda n: have.get(str(n), ""))

    def sha256(self, remote: str) -> str | None:
        """The sha256 of a remote file, or None when it does not exist."""
        return exec_simple(self.link, self.sha_cmd(self._abs(remote))).strip() or None

    def sha_cmd(self, path: str) -> str:
        """sha256 of path on the device (nothing if absent): sha256sum, or the device python without it. The file
        is sha256sum's stdin: given by name, GNU sha256sum escapes a name holding a backslash or a newline and
        starts its line with `\\`, which is no digest."""
        q = shlex.quote(path)
        py = (
            "import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],'rb'); "
            "[h.update(b) for b in iter(lambda: f.read(1<<20), b'')]; print(h.hexdigest())"
        )
        return (
            f"if [ -f {q} ]; then if command -v sha256sum >/dev/null 2>&1; then sha256sum < {q} | "
            f"cut -c1-64; else {quoted_command(self.target.python)} -c {shlex.quote(py)} {q}; fi; fi"
        )

    def prune(self, work_dir: str) -> None:
        """The work dir's leftovers at connect (work_prune.device_prune_script), then the partial uploads of this machine's edgekit
        processes that are gone (work_prune.owner_gone: one killed mid-upload, whose in-memory `partials` died with
        it; the files on the device are the record). A running one's stay, and another machine's go by age."""
        listed = exec_simple(self.link, device_prune_script(work_dir, self.partials)).splitlines()
        self.partials.clear()
        gone = [
            p for p in listed if p.startswith("./") and ".." not in PurePosixPath(p).parts and owner_gone(p)
        ]
        if gone:
            names = " ".join(shlex.quote(p) for p in gone)
            exec_simple(self.link, f"cd {shlex.quote(work_dir)} && rm -f -- {names}; true")


def _last_per_path(pairs: list[tuple[Path, str]], abs_path: Callable[[str], str]) -> dict[str, int]:
    """Each remote path (absolute) of `pairs` and the index of its last pair, the one put_many sends."""
    return {abs_path(remote): i for i, (_local, remote) in enumerate(pairs)}


def _to_send(pairs: list[tuple[Path, str]], last: dict[str, int], held: Callable[[int], str]) -> int:
    """Bytes of the last pair of each path (`last`) whose file the device does not hold (`held`: the sha256 it has
    of the n-th path, '' when none): a path listed twice counts once, as it is sent once."""
    return sum(
        Path(pairs[i][0]).stat().st_size
        for n, i in enumerate(last.values())
        if held(n) != sha256_file(Path(pairs[i][0]))
    )


def _kb(n: int) -> str:
    return f"{n / 1e3:.0f} kB"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"
