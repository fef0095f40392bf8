"""Results the store could not take (a server gone, a damaged file, a full disk): kept as deploy JSON in the data
dir (deploy: else in the system's temporary folder, keep_somewhere), for `edgekit runs import FILE` once the store
is back. Two results of one recipe in the same second get a file each."""

from __future__ import annotations

import shlex
import tempfile
import time
from pathlib import Path

from edgekit.errors import EdgekitError
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
    """Where results go when the data dir's disk cannot take them: the system's temporary folder ($TMPDIR)."""
    return Path(tempfile.gettempdir()) / "edgekit-unrecorded"


def keep_somewhere(result: DeployResult) -> tuple[Path | None, list[str]]:
    """keep_unrecorded, and when the data dir cannot take the file (its disk full, read-only), the system's
    temporary folder: (the file written, None when no place could take it; why each place tried failed, a full
    disk as DiskFull naming the disk and its free space)."""
    stem = _name(result)
    text = result.model_dump_json(indent=1)
    failed: list[str] = []
    for folder in (data_path() / "unrecorded", spare_folder()):
        path = _free_name(folder, stem)
        try:
            return write_atomic(path, text), failed
        except (EdgekitError, OSError) as exc:
            failed.append(
                disk_full_text(path.parent)
                if out_of_space(exc)
                else (exc.message if isinstance(exc, EdgekitError) else f"cannot write {path}: {exc}")
            )
    return None, failed
