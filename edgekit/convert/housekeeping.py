"""What the conversion cache holds, and removing what is no longer used (`edgekit cache`).

The cache (paths.cache_dir()) grows with every recipe, format and setting converted; nothing in it is ever needed
again once its recipe changed, but nothing else removes it. Its parts:
- artifact entries `KEY/` (cache.py): the files of one format, artifact.json, cached fidelity numbers;
- prepared ONNX models `onnx/KEY/` (onnx.py): the exported or simplified model every artifact starts from;
- onnx2tf's INT8 runs `onnx2tf/KEY/` (tflite_runs.py): the SavedModel and .tflite files one run wrote, which
  `analyze --fix` and a recipe's `int8.tflite_float_ops` quantize again (and their damaged and unfinished ones);
- damaged entries `KEY.damaged/` (set aside by cache.lookup, kept for a look), and leftovers: `KEY.tmp-*`
  folders and converter work folders under `work/` that a killed run left behind;
- beside the cache folder, in the data dir: instruction counts `counts/KEY.json` (estimate/counts.py: one
  counting run under qemu each, seconds to minutes to make again) and the zero-weight copies of bare .param files
  `zero-weights/HASH/` (estimate/zero_weights.py; their .bin is sparse, so their size is what they take on disk).
An entry's last use is the time its artifact.json (or the ONNX's meta.json) was last written or served: a lookup
that serves an entry touches it (cache.lookup, onnx._intact), so a recipe deployed every night stays.
`prune` removes what was not used within the window, every damaged entry, and leftovers older than a day (a
younger one may be a conversion in progress, or a failed tool run's log: edgekit keeps those a day anyway). Each folder is renamed before it is deleted, so a run looking it up at
that moment sees a miss and converts again, never half an entry. Anything else under the cache folder (runtime
homes such as `openvino-home/`) is neither counted nor touched.

An entry looked up is used for minutes after (a deploy pushes its files, times the host on its ONNX): `prune --all`
during a nightly removed the ONNX the host was about to load, and the night failed. So every edgekit command but
prune holds the cache shared while it runs (`in_use`, taken by the CLI), and prune takes it exclusively or says
which commands hold it (`CacheBusy`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit import paths
from edgekit.errors import EdgekitError
from edgekit.flock import exclusive_within

KEY = re.compile(r"[0-9a-f]{64}")
LEFTOVER_AGE_S = (
    paths.WORK_KEPT_S
)  # younger, a folder may be a conversion still running, or a failed one's log
KINDS = ("artifact", "onnx", "onnx2tf", "count", "zero-weights", "damaged", "leftover")
COUNT_KEY = re.compile(r"[0-9a-f]{32}")
ZERO_KEY = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Entry:
    """One removable unit of the cache."""

    path: Path  # a folder; a count is one file
    kind: str  # one of KINDS
    label: str  # the artifact's format, "onnx", or what the leftover is
    size_bytes: int
    last_used: float  # epoch seconds
    busy: bool = False  # a running command's (a run folder it holds): never removed


LOCK_FILE = ".in-use.lock"  # in the cache folder: shared by running commands, exclusive for prune


class CacheBusy(EdgekitError):
    """prune found the cache in use by another edgekit command: removing what it serves would fail it."""

    exit_code = 1


class CacheLockError(EdgekitError):
    """prune could not take the cache's lock at all (another user's lock file, a file system without locks)."""

    exit_code = 1


PRUNE_WAIT_S = 120.0  # a command waits this long for a prune removing entries, then goes on without the lock


_PENDING: list[tuple[Path, contextlib.ExitStack]] = []  # in_use calls whose cache folder did not exist yet


@contextlib.contextmanager
def in_use(root: Path | None = None) -> Iterator[None]:
    """Hold the cache shared while a command runs. While a prune removes entries (seconds) the command waits,
    saying so, at most PRUNE_WAIT_S (a prune stopped with Ctrl-Z must not stop every command, the nightly's
    too), then goes on without the lock. A cache folder that cannot be created (a read-only data dir) or a file
    system without locks (NFS without lockd: ENOLCK) is used without it: the lock guards against a prune, and
    must never stop a command that worked before it. With no cache folder yet (a command that fails leaves none)
    the lock is taken when the command makes it (`claim`, before its first entry): a convert started before the
    folder existed held nothing, and `prune --all` removed the ONNX it had just prepared."""
    with contextlib.ExitStack() as stack:
        root = paths.data_path() / "cache" if root is None else root  # found, never created here
        pending = (root, stack)
        try:
            if root.is_dir():
                _take(root, stack)
            else:
                _PENDING.append(pending)
        except OSError:
            pass
        try:
            yield
        finally:
            if pending in _PENDING:
                _PENDING.remove(pending)


def _take(root: Path, stack: contextlib.ExitStack) -> None:
    try:
        handle = stack.enter_context(open(root / LOCK_FILE, "a+"))  # noqa: SIM115 - readable: shared locks on NFSv4
        _shared(handle)
    except OSError:
        pass


def claim() -> Path:
    """The cache folder, made if missing, held shared for a running command whose `in_use` found none: called
    before a command writes its first entry, so a prune never removes what it is making."""
    root = paths.cache_dir()
    while _PENDING:
        wanted, stack = _PENDING.pop()
        if wanted.is_dir():
            _take(wanted, stack)
    return root


def _shared(handle: Any) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        print(
            f"edgekit: waiting for `edgekit cache prune` to finish removing cache entries (at most "
            f"{PRUNE_WAIT_S:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    deadline = time.monotonic() + PRUNE_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            continue
    print("edgekit: the prune still holds the cache; going on without waiting", file=sys.stderr, flush=True)


@contextlib.contextmanager
def exclusive(root: Path | None = None, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the cache exclusively (prune, while it removes entries); CacheBusy when another command still holds
    it after `wait_s` (0: at once), CacheLockError when the lock cannot be taken at all (a lock file of another
    user's, NFS)."""
    root = paths.cache_dir() if root is None else root
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / LOCK_FILE, "a+")  # noqa: SIM115 - closed by the `with handle` below
    except OSError as exc:
        raise CacheLockError(
            f"cannot open the cache's lock file: {exc.strerror}",
            where=str(root / LOCK_FILE),
            hint="prune removes entries only under the lock; run it as the user who owns the cache",
        ) from None
    with handle:
        try:
            exclusive_within(handle, wait_s, poll_s=1.0)  # a cron prune beside a nightly
        except BlockingIOError:
            raise CacheBusy(
                "another edgekit command is using the conversion cache (a deploy, convert or nightly): removing "
                "entries now could remove files it is about to use",
                where=str(root),
                hint="prune when it has finished (`pgrep -af edgekit` lists what runs), or give --wait SECONDS "
                "(a cron prune beside a nightly); --dry-run lists what would go without removing anything",
            ) from None
        except OSError as exc:  # ENOLCK on NFS without lockd
            raise CacheLockError(
                f"cannot lock the cache: {exc.strerror}",
                where=str(root),
                hint="a file system without locks (NFS without lockd) cannot tell a running command from none: "
                "stop edgekit's other commands, then remove entries by hand (`edgekit cache` lists them)",
            ) from None
        yield


def scan(root: Path | None = None) -> list[Entry]:
    """Every entry of the cache, oldest use first."""
    root = paths.cache_dir() if root is None else root
    found: list[Entry] = []
    for path in _dirs(root):
        name = path.name
        if KEY.fullmatch(name):
            found.append(_entry(path, "artifact", _format_of(path), path / "artifact.json"))
        elif name.endswith(".damaged") and KEY.fullmatch(name.removesuffix(".damaged")):
            found.append(_entry(path, "damaged", "damaged entry", path))
        elif ".tmp-" in name and KEY.fullmatch(name.split(".tmp-")[0]):
            found.append(_entry(path, "leftover", "unfinished entry", path))
        elif name.startswith(".pruning-"):  # an earlier prune stopped between the rename and the removal
            found.append(_entry(path, "leftover", "interrupted removal", path))
    for path in _dirs(root / "onnx"):
        if KEY.fullmatch(path.name):
            found.append(_entry(path, "onnx", "onnx", path / "meta.json"))
    for path in _dirs(root / "onnx2tf"):
        name = path.name
        if KEY.fullmatch(name):
            found.append(_entry(path, "onnx2tf", "onnx2tf INT8 run", path / "meta.json"))
        elif name.endswith(".damaged") and KEY.fullmatch(name.removesuffix(".damaged")):
            found.append(_entry(path, "damaged", "damaged onnx2tf run", path))
        elif ".tmp-" in name and KEY.fullmatch(name.split(".tmp-")[0]):
            found.append(_entry(path, "leftover", "unfinished onnx2tf run", path))
        elif name.startswith(".pruning-"):
            found.append(_entry(path, "leftover", "interrupted removal", path))
    for path in _dirs(root / "work"):
        found.append(_entry(path, "leftover", "converter work folder", path))
    data = root.parent  # the cache folder is the data dir's `cache`; counts and zero weights sit beside it
    for path in _files(data / "counts"):
        if path.suffix == ".json" and COUNT_KEY.fullmatch(path.stem):
            found.append(_entry(path, "count", _count_label(path), path))
    for path in _dirs(data / "zero-weights"):
        if ZERO_KEY.fullmatch(path.name):
            params = sorted(path.glob("*.param"))
            label = f"zero weights of {params[0].name}" if params else "zero weights"
            found.append(_entry(path, "zero-weights", label, path))
    return sorted(found, key=lambda e: e.last_used)


def to_prune(entries: Iterable[Entry], cutoff: float | None, now: float | None = None) -> list[Entry]:
    """What `prune` removes: entries last used before `cutoff` (None: every entry), every damaged entry, and
    leftovers older than LEFTOVER_AGE_S (a day)."""
    now = time.time() if now is None else now
    out = []
    for e in entries:
        if e.busy:
            continue
        if e.kind == "leftover":
            if e.last_used < now - LEFTOVER_AGE_S:
                out.append(e)
        elif e.kind == "damaged" or cutoff is None or e.last_used < cutoff:
            out.append(e)
    return out


def remove(entry: Entry) -> bool:
    """Delete one entry: renamed aside first (a concurrent lookup then misses and converts again), then
    removed. False when it is gone already (another prune, or a run replaced it)."""
    aside = entry.path.with_name(f".pruning-{uuid.uuid4().hex[:8]}-{entry.path.name}")
    try:
        entry.path.rename(aside)
    except FileNotFoundError:
        return False
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)
    return True


def touch(path: Path) -> None:
    """Mark a cache entry as used now (its metadata file's mtime); a read-only cache keeps its old time."""
    try:
        os.utime(path)
    except OSError:
        pass


def _dirs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    except FileNotFoundError:
        return []


def _files(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_file() and not p.is_symlink()]
    except FileNotFoundError:
        return []


def _count_label(path: Path) -> str:
    """ "model.param on pi4-emu, 1 thread" from a count entry; a torn one is still listed (and pruned)."""
    import json

    try:
        data = json.loads(path.read_text())
        threads = int(data["threads"])
        return f"count of {Path(str(data['artifact'])).name} on {data['device']}, {threads} thread{'s' * (threads != 1)}"
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable count"


def _entry(path: Path, kind: str, label: str, stamp: Path) -> Entry:
    try:
        used = stamp.stat().st_mtime
    except OSError:  # no metadata file: the folder's own time
        used = path.stat().st_mtime
    return Entry(path, kind, label, _size(path), used)


def _format_of(folder: Path) -> str:
    import json

    try:
        return str(json.loads((folder / "artifact.json").read_text())["format"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable entry"


def _size(folder: Path) -> int:
    """Bytes of the folder's files on disk (paths.disk_bytes: a sparse zero .bin its blocks, not its length)."""
    return paths.disk_bytes(folder)
