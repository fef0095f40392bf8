"""The files runs leave on this machine outside the conversion cache, bounded as they are made and listed and
pruned with the cache (`edgekit cache`, `cache prune`).

- runs/ in the data dir: one folder per deploy (YYYYmmdd-HHMMSS-6hex: the inputs it sent, 19 MB for mobilenetv2,
  and each target's requests, results and pulled outputs), per bench and profile (bench-..., profile-...), and
  analyze --fix's builds (runs/analyze/...). A command makes its folder through `run_folder`, which holds the
  folder's IN_USE lock while the command runs (no prune removes a folder in use) and first prunes the folders of
  earlier commands by a device's rule for artifacts: unused for 14 days, then the oldest day-old ones while runs/
  holds more than 2 GB (transport.work_prune's PRUNE_ARTIFACT_DAYS and PRUNE_ARTIFACT_MB). The results store holds
  every figure of a run; its folder is only what the run sent and pulled.
- local/<target>/ in the data dir: the local transport's work dir (host and `local` targets), whose artifact and
  input copies and failed runs' folders are pruned by the device's rule when a run opens it (transport.work_prune).

Before, nothing removed either: every deploy kept its inputs and outputs and every host measurement a full copy of
each artifact, so a nightly grew without bound, and `cache prune --all` left them while `edgekit cache` said empty.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import os
import time
from collections.abc import Iterator
from pathlib import Path

from edgekit import paths
from edgekit.convert.housekeeping import Entry, claim
from edgekit.flock import shared_within
from edgekit.transport import work_prune

IN_USE = ".in-use.lock"  # in a run folder: held shared by the command writing it
IN_USE_WAIT_S = 5.0  # for its lock, a run waits out the probes of other commands' prunes (each microseconds)
KINDS = ("run", "host copy")  # the kinds of housekeeping.Entry this module lists, after the cache's
_STAMP = "[0-9]" * 8 + "-" + "[0-9]" * 6 + "-" + "[0-9a-f]" * 6
RUN_NAMES = {  # the folders edgekit makes under runs/ (deploy.orchestrate, cli.bench.run_folder), and what they are
    _STAMP: "deploy run",
    f"bench-{_STAMP}": "bench run",
    f"profile-{_STAMP}": "profile run",
}
ANALYZE_NAME = "*-" + "[0-9]" * 8 + "-" + "[0-9]" * 6  # runs/analyze/<recipe>-<format>-<date>-<time>
COPY_LABELS = {
    "run": "agent run folder",
    "artifact": "host copy of an artifact",
    "inputs": "host copy of inputs",
    "partial": "unfinished host copy",
}


@contextlib.contextmanager
def run_folder(name: str) -> Iterator[Path]:
    """runs/NAME, made for one command's run and held while it runs (a prune leaves it); the folders of earlier
    runs are pruned by the rule first. The command holds the cache too (housekeeping.claim): a `cache prune` is
    refused while it runs, as while any command that uses the cache runs."""
    claim()
    folder = paths.data_folder(paths.runs_dir() / name)
    handle = None
    with contextlib.suppress(OSError):  # no lock (a file system without): the age rule still keeps it a day
        handle = open(folder / IN_USE, "a+")  # noqa: SIM115 - closed when the run ends
        # waited for: another command's prune probes every folder's lock exclusively for a moment (busy), and a
        # LOCK_NB that met the probe failed, leaving this folder looking idle for the whole run
        shared_within(handle, IN_USE_WAIT_S, poll_s=0.01)
    try:
        prune_runs()
        yield folder
    finally:
        if handle is not None:
            (folder / IN_USE).unlink(missing_ok=True)
            handle.close()


def prune_runs(now: float | None = None) -> list[Entry]:
    """Remove the folders of earlier runs under runs/ by the rule (never one in use); what was removed."""
    now = time.time() if now is None else now
    runs = [e for e in _runs(paths.data_path() / "runs") if not e.busy]  # oldest first
    old = [e for e in runs if e.last_used < now - work_prune.PRUNE_ARTIFACT_DAYS * 86400]
    kept = [e for e in runs if e not in old]
    total = sum(e.size_bytes for e in kept)
    for e in kept:
        if total <= work_prune.PRUNE_ARTIFACT_MB << 20:
            break
        if e.last_used < now - work_prune.RUN_KEPT_S:
            old.append(e)
            total -= e.size_bytes
    for e in old:
        if not busy(e.path):
            work_prune.remove(e.path, e.last_used)  # one a command used since the scan stays
    return old


def scan(data: Path | None = None) -> list[Entry]:
    """The run folders under runs/ and what the local work dirs under local/ hold, as cache entries (kinds "run"
    and "host copy"), oldest use first."""
    data = paths.data_path() if data is None else data
    found = _runs(data / "runs") + _interrupted(data / "runs", "run")
    for work in _dirs(data / "local"):
        for f in work_prune.scan(work):
            kind = "run" if f.kind == "run" else "host copy"
            found.append(
                Entry(f.path, kind, f"{COPY_LABELS[f.kind]} ({work.name})", f.size_bytes, f.last_used)
            )
        for sub, kind in (("runs", "run"), ("artifacts", "host copy"), ("inputs", "host copy")):
            found += _interrupted(work / sub, kind)
    return sorted(found, key=lambda e: e.last_used)


def _interrupted(folder: Path, kind: str) -> list[Entry]:
    """What a prune stopped between its rename and its removal left (housekeeping.remove's `.pruning-` names)."""
    try:
        names = [p for p in folder.iterdir() if p.name.startswith(".pruning-") and not p.is_symlink()]
    except OSError:
        return []
    return [
        Entry(p, kind, "interrupted removal", work_prune.size_bytes(p), p.lstat().st_mtime) for p in names
    ]


def busy(folder: Path) -> bool:
    """Whether a running command holds `folder` (its IN_USE lock); a lock that cannot be tested counts as held.
    A run removes its lock file as it ends: a probe that opened it before and then took its lock finds the path
    gone (the run ended: not busy), and one that finds another file there now (a command that took the folder
    since) counts it as held."""
    lock = folder / IN_USE
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # ENOLCK: no locks here; the folder's age decides
        return False
    else:
        try:
            now = os.lstat(lock)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        held = os.fstat(fd)
        return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)
    finally:
        os.close(fd)


def _runs(root: Path) -> list[Entry]:
    found = []
    for path in _dirs(root):
        label = next((what for glob, what in RUN_NAMES.items() if fnmatch.fnmatchcase(path.name, glob)), None)
        if label is not None:
            found.append(_entry(path, label))
    found += [
        _entry(p, "analyze --fix builds")
        for p in _dirs(root / "analyze")
        if fnmatch.fnmatchcase(p.name, ANALYZE_NAME)
    ]
    return sorted(found, key=lambda e: e.last_used)


def _entry(path: Path, label: str) -> Entry:
    try:
        used = path.stat().st_mtime
    except OSError:
        used = 0.0
    return Entry(path, "run", label, work_prune.size_bytes(path), used, busy(path))


def _dirs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
