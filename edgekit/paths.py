"""Where edgekit finds its files and keeps its per-user state (the artifact cache, emulated devices, the
results store).

`EDGEKIT_HOME` overrides the default per-user data directory (tests point it at a temporary folder). Nothing
here assumes a source checkout: the example targets are package data, and what only a checkout has
(constraints.txt, .venv-lab) is looked up through `source_checkout()`, which is None in an installed wheel.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
import uuid
from pathlib import Path

import platformdirs

from edgekit.errors import OutputFileError, UsageError

PACKAGE_DIR = Path(__file__).resolve().parent
# The example targets (pi4, pi5, phone, the emulated ones, local): the repository's top-level targets/, which
# edgekit/targets links to in the source tree and a wheel carries as package data.
SHIPPED_TARGETS = PACKAGE_DIR / "targets"


def source_checkout() -> Path | None:
    """The source tree edgekit runs from (an editable install, or the repository on sys.path); None for an
    installed wheel, where files next to the package are not edgekit's."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "targets").is_dir() else None


def constraints_file() -> Path | None:
    """The lock of the host toolchain (device wheels are pinned to match it): $EDGEKIT_CONSTRAINTS, else the
    checkout's constraints.txt, else None (an installed edgekit then uses its runtime registry's pins)."""
    given = os.environ.get("EDGEKIT_CONSTRAINTS")
    if given:
        return Path(given)
    root = source_checkout()
    return root / "constraints.txt" if root is not None and (root / "constraints.txt").is_file() else None


def data_path() -> Path:
    """Where the data dir is, without creating it (data_dir() creates it). `~` in EDGEKIT_HOME is the home folder
    (a service's environment file does not expand it: a folder named `~` was made in the current one)."""
    root = os.environ.get("EDGEKIT_HOME")
    return Path(root).expanduser() if root else Path(platformdirs.user_data_dir("edgekit"))


def data_dir() -> Path:
    return _make_dir(data_path(), "EDGEKIT_HOME")


def _make_dir(path: Path, variable: str) -> Path:
    """`path` made if missing (its parents too). A path that cannot be a folder (a file, a folder under a file,
    a read-only place) is the setting's fault: a named error (exit 2) saying the variable and what to do, not an
    internal error of every command. A full disk stays the disk's error."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            return path
        reason = "it is not a folder"
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        reason = f"it cannot be made ({exc.strerror or exc})"
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        reason = f"{str(blocker)!r} is a file, not a folder"
    given = os.environ.get(variable)
    raise UsageError(
        f"edgekit cannot keep its files in {str(path)!r}: {reason}",
        where=f"${variable}" if given else f"{variable} (not set: the default folder)",
        hint=f"set {variable} to a folder you can write (it is made if missing)"
        + (", or unset it to use the default" if given else ""),
    )


def cache_dir() -> Path:
    """Content-addressed conversion artifacts."""
    return _sub("cache")


def emu_dir() -> Path:
    """Emulated device assets (sysroot, wheels) and running device state."""
    root = os.environ.get("EDGEKIT_EMU_HOME")
    if root:
        return _make_dir(Path(root).expanduser(), "EDGEKIT_EMU_HOME")
    return _make_dir(data_dir() / "emu", "EDGEKIT_HOME")


def models_dir() -> Path:
    """Models built or trained here (zoo), cached by builder and seed."""
    return _sub("models")


def runs_dir() -> Path:
    """Deploy working folders and pulled-back outputs."""
    return _sub("runs")


WORK_KEPT_S = 24 * 3600  # a failed tool run's folder (its log) stays a day; so does an interrupted one's


def work_dir(kind: str) -> Path:
    """A fresh scratch folder name under cache/work for one tool run (onnx2tf, MNN, a converter), not yet made.
    Folders untouched for WORK_KEPT_S are removed first: a run that succeeds removes its own; a failed onnx2tf run
    keeps it for the log its error points at (a Keras export removes its own on every way out, its error carries
    the tool's words); a killed run leaves it behind."""
    root = cache_dir() / "work"
    now = time.time()
    for old in root.glob("*") if root.is_dir() else []:
        try:
            if now - old.stat().st_mtime > WORK_KEPT_S:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        except OSError:
            continue  # another process removed it first
    return root / f"{kind}-{uuid.uuid4().hex[:12]}"


def _sub(name: str) -> Path:
    return _make_dir(data_dir() / name, "EDGEKIT_HOME")


def data_folder(path: Path) -> Path:
    """A folder in the data dir (a run's under runs/), made if missing; one that cannot be made (a read-only data
    dir) is the named error of EDGEKIT_HOME (exit 2), not an internal error after the conversions."""
    return _make_dir(path, "EDGEKIT_HOME")


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` (parents created) through a temporary file beside it, so a reader never sees a
    half-written file. OutputFileError (named, exit 1) when it cannot; no temporary file is left behind. The
    temporary file gets a fresh random name, created only if absent and not through a symlink: a fixed name in a
    folder another user can write let them plant a symlink there that this write followed."""
    if (
        path.exists() and not path.is_file()
    ):  # os.replace would put a regular file in place of a device or pipe
        raise OutputFileError(
            f"cannot write {path}: it exists and is not a regular file (a folder, device, pipe or socket)",
            hint="give the path of a file to write",
        )
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a fresh random name, created only if absent and never through a symlink; mode 0666 less the umask, as a
        # plain write gives (the kernel applies the umask: no guess of it)
        tmp = path.with_name(f".{path.name[:200]}.{uuid.uuid4().hex[:12]}.tmp")
        flags = (
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        )
        fd = os.open(tmp, flags, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        raise OutputFileError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="give a path in a folder you can write, on a disk with room",
        ) from exc
    return path


DISK_FULL_BYTES = (
    16 << 20
)  # a tool that failed with less than this free on its disk most likely ran out of it


def disk_full(folder: Path, log: Path | None = None) -> bool:
    """Whether a tool that failed in `folder` ran out of disk: its log says so, or the disk has almost nothing
    free (a tool's own error for it varies: 'No space left on device', a truncated write, a crash)."""
    try:
        if shutil.disk_usage(folder).free < DISK_FULL_BYTES:
            return True
    except OSError:
        return False
    try:
        return log is not None and "No space left on device" in log.read_text(errors="replace")[-20000:]
    except OSError:
        return False


def _free(path: Path) -> tuple[Path, int] | None:
    """(the nearest existing folder at or above `path`, the free bytes of its disk), or None when unreadable."""
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return folder, shutil.disk_usage(folder).free
    except OSError:
        return None


def low_disk_note(threshold: int) -> str | None:
    """'the disk holding DATA_DIR has N MB free ...' when it has less than `threshold` bytes free, else None."""
    found = _free(data_path())
    if found is None or found[1] >= max(threshold, 1):
        return None
    return (
        f"the disk holding {data_path()} (edgekit's cache, runs and store) has {found[1] / 1e6:.1f} MB free: "
        "free some space, or set EDGEKIT_HOME to a folder on a bigger disk"
    )


def free_space_note(path: Path) -> str | None:
    """'the disk holding FOLDER has N MB free' for the disk a failed write went to (not always the data dir's:
    a tool's temporary folder under /tmp), or None when it cannot be read."""
    found = _free(path)
    return (
        None
        if found is None
        else f"the disk holding {found[0]} has {found[1] / 1e6:.1f} MB free: free some space there"
    )


def out_of_space(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from (write_atomic's OutputFileError), is a full disk or quota."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__
    return False


def disk_full_text(path: Path) -> str:
    """'DiskFull: no space left on the disk holding FOLDER (N MB free): free some space there', the words of a
    write to `path` that ran out of disk (as nightly and the CLI's DiskFull say it)."""
    found = _free(path)
    if found is None:
        return f"DiskFull: no space left on the disk holding {path}: free some space there"
    return (
        f"DiskFull: no space left on the disk holding {found[0]} ({found[1] / 1e6:.1f} MB free): free some "
        "space there"
    )


def disk_bytes(path: Path) -> int:
    """Bytes a file or folder's files take on disk: a sparse file (a zero .bin) its blocks, not its length;
    links not followed; a file gone meanwhile counts nothing."""
    names = (
        [str(path)] if not path.is_dir() else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    )
    total = 0
    for name in names:
        try:
            st = os.lstat(name)
        except OSError:
            continue
        total += min(st.st_size, st.st_blocks * 512)
    return total
