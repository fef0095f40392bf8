"""Results the store could not take (a server gone, a damaged file): kept as deploy JSON in the data dir, for
`edgekit runs import FILE` once the store is back. deploy and nightly write them the same way."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from edgekit.paths import data_dir, write_atomic
from edgekit.results import DeployResult


def unrecorded_path(result: DeployResult) -> Path:
    """DATA_DIR/unrecorded/RECIPE-TIME.json."""
    return data_dir() / "unrecorded" / f"{result.recipe}-{time.strftime('%Y%m%d-%H%M%S')}.json"


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
