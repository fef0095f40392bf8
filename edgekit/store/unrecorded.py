"""Results the store could not take (a server gone, a damaged file, a full disk): kept as deploy JSON in the data
dir (deploy: else in the system's temporary folder, keep_somewhere), for `edgekit runs import FILE` once the store
is back. Two results of one recipe in the same second get a file each."""

from __future__ import annotations

import os
import shlex
import stat
import tempfile
import time
from pathlib import Path

from edgekit.errors import EdgekitError, OutputFileError
from edgekit.paths import data_dir, data_path, disk_full_text, out_of_space, write_atomic
from edgekit.results import DeployResult


def unrecorded_path(result: DeployResult) -> Path:
    """DATA_DIR/unrecorded/RECIPE-TIME.json (RECIPE-TIME-2.json... when that is taken)."""
    return _free_name(data_dir() / "unrecorded", _name(result))


def _name(result: DeployResult) -> str:
    return f"{result.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"


def _free_name(folder: Path, stem: str) -> Path:
    """folder/STEM.json, or STEM-2.json, STEM-3.json... : a second result in the same second never overwrites the
    first (a nightly's recipes, two deploys at once)."""
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    return path


def import_command(kept: Path, store_url: str | None) -> str:
    """The command that records `kept` in the store it was meant for (`store_url`: a Store's command_url, or a
    --store as given, or None for the default store): a printed `runs import` without `--store` went to the
    default SQLite file, not the team's server."""
    from edgekit.store.location import command_url

    store = f" --store {shlex.quote(command_url(store_url))}" if store_url else ""
    return f"edgekit runs import {shlex.quote(str(kept))}{store}"


def keep_unrecorded(result: DeployResult) -> Path:
    """Write `result` where the import command can find it; the file written."""
    return write_atomic(unrecorded_path(result), result.model_dump_json(indent=1))


def spare_folder() -> Path:
    """Where results go when the data dir's disk cannot take them: this user's folder in the system's temporary
    folder ($TMPDIR/edgekit-unrecorded-UID); one name for every user let another user make it first."""
    return Path(tempfile.gettempdir()) / f"edgekit-unrecorded-{os.getuid()}"


def own_spare_folder() -> Path:
    """spare_folder, made (0700) when absent; OutputFileError when what is there is not a folder of this user's
    that only they can write (another user's, a symlink, open to others): what they planted there would take the
    result, or lead the write elsewhere."""
    folder = spare_folder()
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
    except OSError as exc:
        raise OutputFileError(
            f"cannot write {folder}: {exc.strerror or exc}",
            hint="set TMPDIR to a folder you can write, on a disk with room",
        ) from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a folder (a symlink or a file)"
        raise OutputFileError(
            f"not keeping results in {folder}: it is {kind} owned by uid {st.st_uid} with mode "
            f"{stat.S_IMODE(st.st_mode):o}, not a folder of yours (uid {os.getuid()}) only you can write",
            hint=f"remove {folder} if you made it, or set TMPDIR to a folder of yours",
        )
    return folder


def keep_somewhere(result: DeployResult) -> tuple[Path | None, list[str]]:
    """keep_unrecorded, and when the data dir cannot take the file (its disk full, read-only), the system's
    temporary folder: (the file written, None when no place could take it; why each place tried failed, a full
    disk as DiskFull naming the disk and its free space)."""
    stem = _name(result)
    text = result.model_dump_json(indent=1)
    failed: list[str] = []
    for folder in (data_path() / "unrecorded", spare_folder()):
        path = folder / f"{stem}.json"
        try:
            if folder == spare_folder():
                own_spare_folder()  # checked before anything in it is looked at
            path = _free_name(folder, stem)
            return write_atomic(path, text), failed
        except (EdgekitError, OSError) as exc:
            failed.append(
                disk_full_text(path.parent)
                if out_of_space(exc)
                else (exc.message if isinstance(exc, EdgekitError) else f"cannot write {path}: {exc}")
            )
    return None, failed
