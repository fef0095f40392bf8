"""The leftovers of earlier runs in a work dir, and the rule that bounds them: on a device at every connect
(device_prune_script, in shell), and in a work dir on this machine (the local transport's: `host` and `local`
targets) every time a run opens it (open_transport).

The rule: partial uploads older than an hour (at once, a device's whose uploader was an edgekit process of this
machine that is gone: partial_name, owner_gone); run folders older than a day (a failed run's: a run that ends
removes its own); artifact copies (artifacts/KEY16/) and, here, input copies (inputs/SHA16.npy) unused for
PRUNE_ARTIFACT_DAYS days, then the oldest day-old ones while they hold more than PRUNE_ARTIFACT_MB. An upload of a file
the work dir holds already touches it (a use). Only names edgekit makes are touched: a work dir set to a folder of
the user's may hold runs/ and artifacts/ of their own.

Every deploy and every bench on the host copied each artifact into the local work dir in full, and nothing removed
them: a nightly's copies grew without bound. A hard link to the cache's file instead was considered and left out:
the agent runs as the same user, so a runtime writing to its model file would change the cache's entry.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import os
import re
import secrets
import shlex
import shutil
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edgekit import paths

PRUNE_ARTIFACT_DAYS = 14
PRUNE_ARTIFACT_MB = 2048
RUN_KEPT_S = 24 * 3600  # a failed run's folder (its request, its log) stays a day
PARTIAL_KEPT_S = 3600  # an upload still going (another run's) is younger

_STAMP = "[0-9]" * 8 + "-" + "[0-9]" * 6 + "-" + "[0-9a-f]" * 6
# the run folders edgekit makes on a device: deploy's runs/<YYYYmmdd-HHMMSS>-<6 hex>-<target>, bench's and
# profile's runs/<kind>-<the same>-<target> (deploy.orchestrate, cli.bench.run_folder)
RUN_GLOBS = (f"{_STAMP}-*", f"bench-{_STAMP}-*", f"profile-{_STAMP}-*")
ARTIFACT_GLOB = "[0-9a-f]" * 16  # artifacts/<the first 16 hex digits of the conversion key> (deploy.request)
INPUTS_GLOB = (
    "[0-9a-f]" * 16 + ".npy"
)  # inputs/<the first 16 hex digits of their sha256>.npy (deploy.request)
PARTIAL_GLOB = ".*.edgekit-*"  # an upload's temporary name, beside its file (transport.base, ssh_files)
# how deep under the work dir edgekit uploads (a partial upload is beside its file): agent.py in it, inputs/ and
# wheels/ one folder down, artifacts/KEY/ and runs/RUN/ two. The prune looks no deeper: a work dir of `~` held the
# whole home, walked at every connect
PARTIAL_DEPTH = 3


# an upload's temporary name says who writes it: this machine (machine_tag, 8 hex) and this process (its pid and
# its start in clock ticks since boot, so a pid used again is not taken for it), then 8 random hex digits
_OWNED = re.compile(r"\.edgekit-(?P<machine>[0-9a-f]{8})p(?P<pid>[0-9]+)t(?P<start>[0-9]+)-[0-9a-f]{8}$")


@functools.cache
def machine_tag() -> str | None:
    """This machine as the partial uploads it writes name it: its host name, this boot (a pid means nothing after a
    reboot) and the pid namespace (a container's pids are not the host's), or None where /proc cannot say (not
    Linux): its uploads then name no owner and go by age alone. Times are avoided: the wall clock moves."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return hashlib.sha256(f"{socket.gethostname()}|{boot}|{pidns}".encode()).hexdigest()[:8]


def _started(pid: int) -> str | None:
    """When process PID started (clock ticks since boot, /proc/PID/stat's 22nd field), None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after the name, which may hold spaces: field 3 on
    return fields[19] if len(fields) > 19 and fields[19].isdigit() else None


def partial_name(name: str) -> str:
    """The temporary name an upload of NAME is written under beside it (PARTIAL_GLOB): `.NAME.edgekit-OWNER-XXXXXXXX`,
    OWNER this machine and process, so that a later connect can tell an upload whose edgekit was killed (owner_gone)
    from one still going; `.NAME.edgekit-XXXXXXXX` where this machine cannot say who it is."""
    machine, pid = machine_tag(), os.getpid()
    started = _started(pid)
    owner = f"{machine}p{pid}t{started}-" if machine and started else ""
    return f".{name}.edgekit-{owner}{secrets.token_hex(4)}"


def owner_gone(path: str) -> bool:
    """Whether the upload a partial file (by its name) belongs to can never finish: written by an edgekit process of
    this machine that is no longer running (killed mid-upload). False for another machine's, an older edgekit's
    (no owner in its name) and a running process's: those go by age (PARTIAL_KEPT_S)."""
    owned = _OWNED.search(path)
    if owned is None or owned["machine"] != machine_tag():
        return False
    return not _alive(int(owned["pid"]), owned["start"])


def _alive(pid: int, start: str) -> bool:
    """Whether the process that started at `start` (clock ticks since boot) as PID may still run. Where /proc shows
    PID, by its start (a reused pid is another process); where it does not (another user's process under /proc's
    hidepid or systemd's ProtectProc=invisible: a colleague's upload to the same device account), by the kernel:
    only a pid no process holds is gone. An unreadable /proc read as gone removed their upload mid-write."""
    started = _started(pid)
    if started is not None:
        return started == start
    try:
        os.kill(pid, 0)  # signal 0: delivers nothing, says whether the pid is held
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: held by another user's process
        return True
    return True


@dataclass(frozen=True)
class Leftover:
    """One removable thing in a work dir."""

    path: Path
    kind: str  # "run" (a run folder), "artifact" or "inputs" (a copy), "partial" (an unfinished upload)
    size_bytes: int
    last_used: float  # epoch seconds: its mtime (an upload that finds it unchanged touches it)


def scan(work_dir: Path) -> list[Leftover]:
    """What edgekit made in `work_dir` that a prune may remove, oldest use first."""
    found = [_leftover(p, "run") for p in _named(work_dir / "runs", RUN_GLOBS, folders=True)]
    found += [
        _leftover(p, "artifact") for p in _named(work_dir / "artifacts", (ARTIFACT_GLOB,), folders=True)
    ]
    found += [_leftover(p, "inputs") for p in _named(work_dir / "inputs", (INPUTS_GLOB,), folders=False)]
    found += [_leftover(p, "partial") for p in _partials(work_dir)]
    return sorted((f for f in found if f.last_used > 0), key=lambda f: f.last_used)


def stale(found: list[Leftover], now: float | None = None) -> list[Leftover]:
    """What the rule removes of `found` (scan's)."""
    now = time.time() if now is None else now
    out = [f for f in found if f.kind == "partial" and f.last_used < now - PARTIAL_KEPT_S]
    out += [f for f in found if f.kind == "run" and f.last_used < now - RUN_KEPT_S]
    copies = [f for f in found if f.kind in ("artifact", "inputs")]  # oldest first
    old = [f for f in copies if f.last_used < now - PRUNE_ARTIFACT_DAYS * 86400]
    kept = [f for f in copies if f not in old]
    total = sum(f.size_bytes for f in kept)
    for f in kept:
        if total <= PRUNE_ARTIFACT_MB << 20:
            break
        if f.last_used < now - RUN_KEPT_S:  # a copy used today may be a running run's
            old.append(f)
            total -= f.size_bytes
    return out + old


def prune(work_dir: Path, now: float | None = None) -> list[Leftover]:
    """Remove what the rule says from a work dir on this machine; never fails (another run may remove the same).
    What another run used since the scan stays (remove)."""
    return [f for f in stale(scan(work_dir), now) if remove(f.path, f.last_used)]


def remove(path: Path, last_used: float | None = None) -> bool:
    """Remove a file or folder: renamed aside first (`.pruning-<hex>-NAME`, beside it: run_files lists what a
    stop left), then deleted; False when it stays or was gone already. With `last_used` (its mtime when the prune
    chose it) one used since is put back: a run sharing the work dir (a nightly and a manual bench on the host)
    may have found the copy unchanged and touched it (transport.base.copy_file_atomically) between this prune's
    scan and now, and its agent is about to load it; one touched after the rename is copied again by that run."""
    aside = path.with_name(f".pruning-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        os.rename(path, aside)
    except OSError:  # gone already (another prune), or not ours to move
        return False
    folder = aside.is_dir() and not aside.is_symlink()
    try:
        used_since = last_used is not None and aside.lstat().st_mtime != last_used
    except OSError:
        used_since = False
    if used_since and _put_back(aside, path, folder):
        return False
    try:
        if folder:
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)
    except OSError:
        pass
    return True


def _put_back(aside: Path, path: Path, folder: bool) -> bool:
    """`aside` back at `path`; a folder the run that used it made again meanwhile (it found it gone) gets the
    files it lacks, the rest removed. False when nothing could go back."""
    try:
        os.rename(aside, path)  # a file the run copied again is replaced by the same bytes
        return True
    except OSError:
        if not folder or not path.is_dir():
            return False
    with contextlib.suppress(OSError):
        for part in aside.iterdir():
            if not (path / part.name).exists():
                os.rename(part, path / part.name)
    shutil.rmtree(aside, ignore_errors=True)
    return True


def size_bytes(path: Path) -> int:
    """Bytes a file or folder takes on disk (paths.disk_bytes)."""
    return paths.disk_bytes(path)


def _named(folder: Path, globs: tuple[str, ...], folders: bool) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return [
        p
        for p in entries
        if any(fnmatch.fnmatchcase(p.name, g) for g in globs)
        and not p.is_symlink()
        and (p.is_dir() if folders else p.is_file())
    ]


def _partials(work_dir: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(work_dir):
        depth = len(Path(root).relative_to(work_dir).parts)
        if depth + 1 >= PARTIAL_DEPTH:
            dirs[:] = []
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        found += [Path(root) / f for f in files if fnmatch.fnmatchcase(f, PARTIAL_GLOB)]
    return found


def _leftover(path: Path, kind: str) -> Leftover:
    try:
        used = path.lstat().st_mtime
    except OSError:  # gone meanwhile: dropped by scan
        used = 0.0
    return Leftover(path, kind, size_bytes(path), used)


def device_prune_script(work_dir: str, partials: Iterable[str]) -> str:
    """The shell script that prunes a device's work dir at connect (ssh_files.RemoteFiles.prune runs it). Leftovers
    of earlier runs: partial uploads older than an hour (never a concurrent run's; this connection's own, `partials`,
    at once; only as deep as edgekit uploads, PARTIAL_DEPTH), run folders older than a day, stale artifact folders
    (age, then size). Only names edgekit makes are touched (RUN_GLOBS, ARTIFACT_GLOB): a
    work dir set to a folder of the user's (`--set work_dir=PATH` on a larger disk, as the disk-space hint says)
    may hold runs/ and artifacts/ of their own, which a prune by age alone deleted. Prints the younger partial
    uploads this machine's edgekit wrote (partial_name), for RemoteFiles.prune to judge (owner_gone)."""
    w = shlex.quote(work_dir)
    own = " ".join(shlex.quote(p) for p in sorted(partials))
    cap_kb = PRUNE_ARTIFACT_MB * 1024
    runs = " -o ".join(f"-name '{g}'" for g in RUN_GLOBS)
    machine = machine_tag()
    listed = (
        f"find . -maxdepth {PARTIAL_DEPTH} -name '.*.edgekit-{machine}p*' -type f -print 2>/dev/null; "
        if machine
        else ""
    )
    return (
        f"mkdir -p -- {w} && cd {w} && {{ {{ find . -maxdepth {PARTIAL_DEPTH} -name '.*.edgekit-*' -mmin +60 "
        "-type f -delete; "
        + (f"rm -f -- {own}; " if own else "")
        + f"[ -d runs ] && find runs -mindepth 1 -maxdepth 1 -type d \\( {runs} \\) -mmin +1440 "
        "-exec rm -rf {} +; "
        f"[ -d artifacts ] && find artifacts -mindepth 1 -maxdepth 1 -type d -name '{ARTIFACT_GLOB}' "
        f"-mtime +{PRUNE_ARTIFACT_DAYS} -exec rm -rf {{}} +; "
        "[ -d artifacts ] && total=$(du -sk artifacts | cut -f1) && for d in $(ls -1tr artifacts); do "
        f'[ "$total" -le {cap_kb} ] && break; '
        f'case "$d" in {ARTIFACT_GLOB}) ;; *) continue ;; esac; '
        '[ -n "$(find "artifacts/$d" -maxdepth 0 -mmin +1440)" ] || continue; '
        's=$(du -sk "artifacts/$d" | cut -f1); rm -rf -- "artifacts/$d"; total=$((total - s)); done; '
        f"}} >/dev/null 2>&1; {listed}}}; true"
    )
